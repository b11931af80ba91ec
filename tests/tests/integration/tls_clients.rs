//! The commands that call servers, against a server with TLS and a bearer token: `spindle
//! loadtest` over https:// and grpcs:// (every request served, and counted by the server as
//! many times as loadtest counted it; a wrong token stops the run naming 401 and
//! --token-file) and `spindle score --server https://...` for images and Criteo rows (scored,
//! or refused with 401 without the token). Each goes through the command line's own parser, so
//! the shared --ca-cert/--token-file flags are tested where users meet them.

use crate::tls::{Pki, TOKEN, tls_server_with};
use clap::Parser;
use spindle_cli::{Cli, Command};
use spindle_client::ClientSecurity;
use spindle_criteo::generate::{GenerateConfig, generate};
use spindle_criteo::shard::Compression;
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use spindle_tests::TestServer;
use spindle_zoo::ZooModel;
use std::path::Path;

fn cli(argv: &[&str]) -> Cli {
    let argv = std::iter::once("spindle").chain(argv.iter().copied());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// Inferences the server counted for `model`, read over gRPC with TLS and the token.
async fn served(server: &TestServer, pki: &Pki, model: &str) -> u64 {
    let credentials = ClientSecurity {
        ca_cert: Some(pki.ca_path()),
        ..Default::default()
    }
    .load()
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.grpc_addr))
        .unwrap()
        .tls_config(credentials.grpc_tls.unwrap())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ModelStatisticsRequest {
        name: model.to_string(),
        version: String::new(),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let stats = GrpcInferenceServiceClient::new(channel)
        .model_statistics(request)
        .await
        .unwrap()
        .into_inner();
    stats.model_stats.iter().map(|m| m.inference_count).sum()
}

/// `spindle loadtest` parsed from `argv` and run; its report, or its error as the user sees it.
async fn loadtest(argv: &[&str]) -> Result<spindle_loadtest::Report, String> {
    let Command::Loadtest(args) = cli(argv).command else {
        panic!("not a loadtest command line: {argv:?}")
    };
    spindle_loadtest::run(args)
        .await
        .map_err(|e| format!("{e:#}"))
}

fn write(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_over_tls_counts_what_the_server_served() {
    let pki = Pki::new("server");
    let server = tls_server_with(&pki, &[ZooModel::Cifar10], None, true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = pki.ca_path().display().to_string();
    let token = write(&dir.path().join("token"), &format!("{TOKEN}\n"));
    let wrong = write(&dir.path().join("wrong"), "not-our-token\n");
    let https = format!("https://{}", server.addr);
    let grpcs = format!("grpcs://{}", server.grpc_addr);

    let mut sent = 0;
    for (url, protocol) in [
        (&https, "http-binary"),
        (&https, "http-json"),
        (&grpcs, "grpc"),
    ] {
        let report = loadtest(&[
            "loadtest",
            "--url",
            url,
            "--model",
            "cifar10",
            "--protocol",
            protocol,
            "--ca-cert",
            &ca,
            "--token-file",
            &token,
            "--concurrency",
            "3",
            "--warmup",
            "0s",
            "--window",
            "30s",
            "--max-requests",
            "45",
        ])
        .await
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));
        let level = &report.levels[0];
        assert_eq!(
            (level.requests, level.errors.total),
            (45, 0),
            "{protocol}: {:?}",
            level.first_error
        );
        sent += 45;
        assert_eq!(
            served(&server, &pki, "cifar10").await,
            sent,
            "{protocol}: the server counted what loadtest sent"
        );
    }

    // A wrong token stops the run before any load, naming the refusal and the option.
    for url in [&https, &grpcs] {
        let protocol = if url == &grpcs { "grpc" } else { "http-binary" };
        let error = loadtest(&[
            "loadtest",
            "--url",
            url,
            "--model",
            "cifar10",
            "--protocol",
            protocol,
            "--ca-cert",
            &ca,
            "--token-file",
            &wrong,
            "--max-requests",
            "5",
        ])
        .await
        .unwrap_err();
        // HTTP names the status, gRPC its code: each as its protocol's users know it.
        let refusal = if url == &grpcs {
            "UNAUTHENTICATED"
        } else {
            "401"
        };
        assert!(
            error.contains(refusal) && error.contains("--token-file"),
            "{url}: {error}"
        );
    }
    // TLS asked for, plain URL given: refused before anything is sent in clear.
    let plain = format!("http://{}", server.addr);
    let error = loadtest(&[
        "loadtest",
        "--url",
        &plain,
        "--model",
        "cifar10",
        "--ca-cert",
        &ca,
        "--token-file",
        &token,
    ])
    .await
    .unwrap_err();
    assert!(error.contains("https://"), "{error}");
    assert_eq!(served(&server, &pki, "cifar10").await, sent);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_through_a_tls_server_with_a_token() {
    let pki = Pki::new("server");
    let server = tls_server_with(&pki, &[ZooModel::Cifar10, ZooModel::CriteoCtr], None, true).await;
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.display().to_string();
    let ca = s(&pki.ca_path());
    let token = write(&dir.path().join("token"), &format!("{TOKEN}\n"));
    let https = format!("https://{}", server.addr);

    let images = dir.path().join("images");
    spindle_cli::run(cli(&[
        "data",
        "cifar10",
        "--out",
        &s(&images),
        "--records",
        "20",
        "--shards",
        "2",
    ]))
    .await
    .unwrap();
    let rows = dir.path().join("rows");
    generate(
        &GenerateConfig {
            out: rows.clone(),
            days: 1,
            rows_per_day: 300,
            shards_per_day: 1,
            compression: Compression::None,
            seed: 5,
        },
        &|_| {},
    )
    .unwrap();

    // Image scoring sends one probe image first, to learn the class names.
    for (model, input, expected, probes) in [
        ("cifar10", format!("{}/data_batch_*", s(&images)), 20, 1),
        ("criteo_ctr", format!("{}/day_0/part-*", s(&rows)), 300, 0),
    ] {
        let summary = dir.path().join(format!("{model}.json"));
        let score = |out: &str, token: Option<&str>| {
            let mut argv = vec![
                "score".to_string(),
                "--model".into(),
                model.into(),
                "--server".into(),
                https.clone(),
                "--ca-cert".into(),
                ca.clone(),
                "--input".into(),
                input.clone(),
                "--output".into(),
                s(&dir.path().join(out)),
                "--summary".into(),
                s(&summary),
                "--quiet".into(),
            ];
            if let Some(token) = token {
                argv.extend(["--token-file".into(), token.into()]);
            }
            cli(&argv.iter().map(String::as_str).collect::<Vec<_>>())
        };
        spindle_cli::run(score(&format!("{model}-scores"), Some(token.as_str())))
            .await
            .unwrap_or_else(|e| panic!("{model}: {e:#}"));
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let scored = json["records"].as_u64().or(json["rows"].as_u64());
        assert_eq!(scored, Some(expected), "{model}: {json}");
        assert_eq!(
            served(&server, &pki, model).await,
            expected + probes,
            "{model}"
        );

        // Without the token: refused with the server's 401, nothing scored.
        let error = spindle_cli::run(score(&format!("{model}-refused"), None))
            .await
            .unwrap_err();
        let error = format!("{error:#}");
        assert!(error.contains("401"), "{model}: {error}");
        assert_eq!(
            served(&server, &pki, model).await,
            expected + probes,
            "{model}"
        );
    }
    server.stop().await.unwrap();
}
