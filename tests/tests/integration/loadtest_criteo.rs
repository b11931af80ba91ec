//! `spindle loadtest` with generated ids against a real server serving criteo_ctr: the server
//! checks each id against its feature's slice of the id space, so the generator draws them from
//! those slices (read from the server's model configuration, or `--features` for a server that
//! does not describe the model) and every request is served. A run whose every request is
//! refused fails, saying so, instead of reporting the refusals' throughput.

use serde_json::Value;
use spindle_criteo::spec::FeatureSpec;
use spindle_loadtest::{ConcurrencyLevels, LoadtestArgs, Protocol, run};
use spindle_tests::{TestServer, start_zoo};
use spindle_zoo::ZooModel;
use std::time::Duration;

fn args(server: &TestServer, protocol: Protocol) -> LoadtestArgs {
    let url = match protocol {
        Protocol::Grpc => format!("grpc://{}", server.grpc_addr),
        _ => format!("http://{}", server.addr),
    };
    let mut args = LoadtestArgs::new(url, "criteo_ctr");
    args.protocol = protocol;
    args.batch = 16;
    args.concurrency = Some(ConcurrencyLevels(vec![2]));
    args.warmup = Duration::ZERO;
    args.window = Duration::from_secs(30);
    args.max_requests = Some(20);
    args
}

/// The features.toml the server describes for criteo_ctr.
async fn served_features(server: &TestServer) -> String {
    let config: Value = reqwest::get(server.url("/v2/models/criteo_ctr/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    config["parameters"]["features.toml"]["string_value"]
        .as_str()
        .expect("criteo_ctr's configuration carries its features.toml")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_criteo_ids_are_served_without_errors() {
    let server = start_zoo(&[ZooModel::CriteoCtr]).await.unwrap();
    for protocol in [Protocol::HttpBinary, Protocol::HttpJson, Protocol::Grpc] {
        let report = run(args(&server, protocol)).await.unwrap();
        let level = &report.levels[0];
        assert_eq!(
            (level.requests, level.errors.total),
            (20, 0),
            "{protocol}: {:?}",
            level.first_error
        );
        assert_eq!(report.rows_per_request, 16);
    }

    // --features, as for a peer without a model configuration: the same file is served too.
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features.toml");
    let text = served_features(&server).await;
    std::fs::write(&features, &text).unwrap();
    let mut with_file = args(&server, Protocol::HttpBinary);
    with_file.features = Some(features);
    let report = run(with_file).await.unwrap();
    assert_eq!(report.levels[0].errors.total, 0);

    // A features.toml whose first categorical feature has more buckets moves every later
    // feature's slice past the served ones: the server refuses each request, and the run fails
    // naming the level, the refusals and the server's reason.
    let mut spec = FeatureSpec::from_toml(&text).unwrap();
    let space = spec.id_space;
    spec.categorical[0].hash_buckets += space;
    spec.id_space += space;
    let shifted = dir.path().join("shifted.toml");
    std::fs::write(&shifted, spec.to_toml()).unwrap();
    let mut refused = args(&server, Protocol::HttpBinary);
    refused.features = Some(shifted);
    let error = format!("{:#}", run(refused).await.unwrap_err());
    assert!(
        error.contains("every request at concurrency 2 failed")
            && error.contains("other 4xx: 20")
            && error.contains("outside that feature's ids"),
        "{error}"
    );
    server.stop().await.unwrap();
}
