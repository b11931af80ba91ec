//! `spindle loadtest --input-data` against a real server on port 0: encoded images (HTTP binary,
//! gRPC, TF REST), Criteo TSV rows and KServe v2 JSON tensors are served without a single
//! error; samples that do not fit the model are refused, naming the file, before any request
//! reaches the server (its statistics show no inference).

use serde_json::{Value, json};
use spindle_criteo::generate::{GenerateConfig, generate};
use spindle_criteo::shard::{Compression, expand_glob, open_shard};
use spindle_loadtest::{ConcurrencyLevels, LoadtestArgs, Protocol, run};
use spindle_tests::{TestServer, start_zoo};
use spindle_zoo::ZooModel;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn args(url: String, model: &str, protocol: Protocol, data: &Path, batch: usize) -> LoadtestArgs {
    let mut args = LoadtestArgs::new(url, model);
    args.protocol = protocol;
    args.input_data = Some(data.to_path_buf());
    args.batch = batch;
    args.concurrency = Some(ConcurrencyLevels(vec![2]));
    args.warmup = Duration::ZERO;
    args.window = Duration::from_secs(30);
    args.max_requests = Some(24);
    args
}

fn url(server: &TestServer, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => format!("grpc://{}", server.grpc_addr),
        _ => format!("http://{}", server.addr),
    }
}

/// Inferences the server has counted for `model` (Triton statistics).
async fn inferences(server: &TestServer, model: &str) -> u64 {
    let stats: Value = reqwest::get(server.url(&format!("/v2/models/{model}/stats")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["model_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["inference_count"].as_u64().unwrap_or(0))
        .sum()
}

/// Four distinct images, two PNG and two JPEG, of different sizes.
fn images(dir: &Path) -> Vec<PathBuf> {
    (0..4u32)
        .map(|i| {
            let side = 20 + 10 * i;
            let image = image::RgbImage::from_fn(side, side + i, |x, y| {
                image::Rgb([(x * 7 + i) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
            });
            let path = dir.join(format!(
                "sample-{i}.{}",
                if i % 2 == 0 { "png" } else { "jpg" }
            ));
            image.save(&path).unwrap();
            path
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_samples_are_served_without_errors() {
    let server = start_zoo(&[ZooModel::Cifar10, ZooModel::CriteoCtr])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("images");
    std::fs::create_dir(&image_dir).unwrap();
    images(&image_dir);

    let mut served = 0;
    for (protocol, batch) in [
        (Protocol::HttpBinary, 3),
        (Protocol::Grpc, 1),
        (Protocol::TfRest, 2),
    ] {
        let report = run(args(
            url(&server, protocol),
            "cifar10",
            protocol,
            &image_dir,
            batch,
        ))
        .await
        .unwrap();
        let level = &report.levels[0];
        assert_eq!(
            (level.requests, level.errors.total),
            (24, 0),
            "{protocol}: {:?}",
            level.first_error
        );
        assert_eq!(report.rows_per_request, batch);
        served += 24 * batch as u64;
    }
    assert_eq!(inferences(&server, "cifar10").await, served);

    // A list file, relative to its own directory.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "images/sample-1.jpg\nimages/sample-2.png\n").unwrap();
    let report = run(args(
        url(&server, Protocol::HttpBinary),
        "cifar10",
        Protocol::HttpBinary,
        &list,
        1,
    ))
    .await
    .unwrap();
    assert_eq!(report.levels[0].errors.total, 0);

    // KServe v2 JSON tensors, two requests of different batch sizes, over HTTP JSON.
    let tensors = dir.path().join("tensors.json");
    let request = |n: usize| {
        json!({"inputs": [{"name": "images", "datatype": "FP32", "shape": [n, 24, 24, 3],
                           "data": vec![0.25f32; n * 24 * 24 * 3]}]})
    };
    std::fs::write(&tensors, json!([request(1), request(2)]).to_string()).unwrap();
    for protocol in [Protocol::HttpJson, Protocol::HttpBinary] {
        let report = run(args(
            url(&server, protocol),
            "cifar10",
            protocol,
            &tensors,
            1,
        ))
        .await
        .unwrap();
        assert_eq!(report.levels[0].errors.total, 0, "{protocol}");
    }

    // Criteo TSV rows, checked with the served version's features.toml.
    let data = tempfile::tempdir().unwrap();
    generate(
        &GenerateConfig {
            out: data.path().to_path_buf(),
            days: 1,
            rows_per_day: 500,
            shards_per_day: 1,
            compression: Compression::None,
            seed: 3,
        },
        &|_| {},
    )
    .unwrap();
    let shard = &expand_glob(&format!("{}/day_0/part-*", data.path().display())).unwrap()[0];
    let rows: Vec<String> = open_shard(shard)
        .unwrap()
        .lines()
        .take(100)
        .map(|l| l.unwrap())
        .collect();
    let tsv = dir.path().join("rows.tsv");
    std::fs::write(&tsv, rows.join("\n") + "\n").unwrap();
    for protocol in [Protocol::HttpBinary, Protocol::HttpJson, Protocol::Grpc] {
        let report = run(args(
            url(&server, protocol),
            "criteo_ctr",
            protocol,
            &tsv,
            16,
        ))
        .await
        .unwrap();
        let level = &report.levels[0];
        assert_eq!(level.errors.total, 0, "{protocol}: {:?}", level.first_error);
        assert_eq!(report.rows_per_request, 16);
    }
    server.stop().await.unwrap();
}

/// The error of a run that must be refused before any load.
async fn refused(url: &str, model: &str, protocol: Protocol, data: &Path) -> String {
    let run = run(args(url.to_string(), model, protocol, data, 1)).await;
    format!("{:#}", run.unwrap_err())
}

fn assert_says(error: &str, parts: &[&str]) {
    assert!(
        parts.iter().all(|p| error.contains(p)),
        "{parts:?}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_that_do_not_fit_are_refused_before_any_load() {
    let server = start_zoo(&[ZooModel::Cifar10, ZooModel::CriteoCtr])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image_dir = dir.path().join("images");
    std::fs::create_dir(&image_dir).unwrap();
    let files = images(&image_dir);
    let http = url(&server, Protocol::HttpBinary);
    let binary = Protocol::HttpBinary;

    // Images for a model without an image input.
    let e = refused(&http, "criteo_ctr", binary, &image_dir).await;
    assert_says(&e, &["images", "no input that takes images", "criteo_rows"]);
    // An image that does not decode, among good ones: named, over HTTP and gRPC.
    let broken = image_dir.join("broken.jpg");
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let e = refused(&http, "cifar10", binary, &image_dir).await;
    assert_says(&e, &["broken.jpg", "JPEG or PNG"]);
    let grpc = url(&server, Protocol::Grpc);
    let e = refused(&grpc, "cifar10", Protocol::Grpc, &image_dir).await;
    assert_says(&e, &["broken.jpg"]);
    // Binary images cannot ride in v2 JSON.
    let e = refused(&http, "cifar10", Protocol::HttpJson, &files[0]).await;
    assert_says(&e, &["http-json", "http-binary"]);
    // JSON tensors of the wrong datatype and shape.
    let tensors = dir.path().join("wrong.json");
    let wrong = json!({"inputs": [{"name": "images", "datatype": "FP64", "shape": [1, 32, 32, 3],
                                   "data": vec![0.5; 32 * 32 * 3]}]});
    std::fs::write(&tensors, wrong.to_string()).unwrap();
    let e = refused(&http, "cifar10", binary, &tensors).await;
    assert_says(
        &e,
        &["wrong.json", "FP64 [1, 32, 32, 3]", "FP32 [-1, 24, 24, 3]"],
    );
    // Rows that the model's features.toml cannot read: named by file and line.
    let tsv = dir.path().join("bad.tsv");
    std::fs::write(&tsv, "0\t1\t2\n").unwrap();
    let e = refused(&http, "criteo_ctr", binary, &tsv).await;
    assert_says(&e, &["bad.tsv line 1", "Criteo TSV rows"]);

    assert_eq!(inferences(&server, "cifar10").await, 0, "no load was sent");
    assert_eq!(
        inferences(&server, "criteo_ctr").await,
        0,
        "no load was sent"
    );
    server.stop().await.unwrap();
}
