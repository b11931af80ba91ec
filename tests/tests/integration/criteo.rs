//! Criteo CTR through the server: raw TSV rows and precomputed ids give the same click
//! probabilities over HTTP and gRPC; malformed rows are 400s naming the row and column; and batch
//! scoring through servers writes the same parts as scoring in-process.

use spindle_client::{Client, InferRequest};
use spindle_core::{Tensor, TensorData};
use spindle_criteo::generate::{GenerateConfig, generate};
use spindle_criteo::shard::{Compression, expand_glob, open_shard};
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::transform::Transformer;
use spindle_score::backend::{BackendFactory, LocalFactory, RemoteFactory};
use spindle_score::{ScoreJob, Shard, Share};
use spindle_tests::{TestServer, refusal, serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;
use std::io::BufRead;
use std::path::Path;

fn rows(data: &Path) -> Vec<Vec<u8>> {
    let shard = &expand_glob(&format!("{}/day_0/part-*", data.display())).unwrap()[0];
    open_shard(shard)
        .unwrap()
        .lines()
        .take(300)
        .map(|l| l.unwrap().into_bytes())
        .collect()
}

fn probabilities(t: &Tensor) -> Vec<f32> {
    match &t.data {
        TensorData::F32(v) => v.clone(),
        other => panic!("FP32 expected, got {}", other.dtype()),
    }
}

struct Fixture {
    server: TestServer,
    repo: tempfile::TempDir,
    data: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let repo = zoo_repo(&[ZooModel::CriteoCtr]);
    let data = tempfile::tempdir().unwrap();
    generate(
        &GenerateConfig {
            out: data.path().to_path_buf(),
            days: 1,
            rows_per_day: 2000,
            shards_per_day: 2,
            compression: Compression::None,
            seed: 5,
        },
        &|_| {},
    )
    .unwrap();
    let server = start(serve_config(repo.path())).await.unwrap();
    Fixture { server, repo, data }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_rows_and_ids_agree_over_http_and_grpc() {
    let f = fixture().await;
    let text = std::fs::read_to_string(f.repo.path().join("criteo_ctr/1/features.toml")).unwrap();
    let transformer = Transformer::new(FeatureSpec::from_toml(&text).unwrap()).unwrap();
    let rows = rows(f.data.path());
    let ids = transformer.ids_tensor(&rows).unwrap();
    let raw = Tensor::new(vec![rows.len()], TensorData::Bytes(rows.clone())).unwrap();
    for url in [
        format!("http://{}", f.server.addr),
        format!("grpc://{}", f.server.grpc_addr),
    ] {
        let client = Client::builder([url.clone()]).build().unwrap();
        let by_ids = client
            .infer(&InferRequest::new("criteo_ctr").input("ids", ids.clone()))
            .await
            .unwrap();
        let by_rows = client
            .infer(&InferRequest::new("criteo_ctr").input("ids", raw.clone()))
            .await
            .unwrap();
        let a = probabilities(by_ids.output("ctr").unwrap());
        let b = probabilities(by_rows.output("ctr").unwrap());
        assert_eq!(a.len(), rows.len());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6, "{url}: ids {x} vs rows {y}");
        }
        assert!(a.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    let mut bad = rows[..3].to_vec();
    bad[1] =
        b"0\tx\t\t\t\t\t\t\t\t\t\t\t\t\t68fd1e64\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t"
            .to_vec();
    let client = Client::builder([format!("http://{}", f.server.addr)])
        .build()
        .unwrap();
    let request = InferRequest::new("criteo_ctr")
        .input("ids", Tensor::new(vec![3], TensorData::Bytes(bad)).unwrap());
    let message = refusal(client.infer(&request).await, 400, "a malformed row");
    assert!(
        message.contains("input 'ids'") && message.contains("row 1") && message.contains("column"),
        "{message}"
    );

    // Ids sent already transformed must lie in their position's id space: one too large once
    // reached ONNX Runtime's Gather (a 500 for the whole batch), and a negative one was taken
    // from the end of the embedding (a wrong answer, 200). Both are the sender's error.
    let TensorData::I64(good) = &ids.data else {
        panic!("ids are INT64")
    };
    let fields = transformer.fields();
    for (position, id, what) in [
        (5, 1_000_000_000i64, "too large"),
        (fields + 30, -5, "negative"),
    ] {
        let mut values = good[..2 * fields].to_vec();
        values[position] = id;
        let tensor = Tensor::new(vec![2, fields], TensorData::I64(values)).unwrap();
        for url in [
            format!("http://{}", f.server.addr),
            format!("grpc://{}", f.server.grpc_addr),
        ] {
            let client = Client::builder([url.clone()]).build().unwrap();
            let request = InferRequest::new("criteo_ctr").input("ids", tensor.clone());
            let context = format!("{url}, {what} id");
            let message = refusal(client.infer(&request).await, 400, &context);
            assert!(
                message.contains("input 'ids'")
                    && message.contains(&format!("id {id} at row {}", position / fields))
                    && message.contains(&format!("position {}", position % fields)),
                "{context}: {message}"
            );
        }
    }
    // The server is unharmed.
    let client = Client::builder([format!("http://{}", f.server.addr)])
        .build()
        .unwrap();
    client
        .infer(&InferRequest::new("criteo_ctr").input("ids", ids.clone()))
        .await
        .unwrap();
    f.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_through_servers_matches_scoring_in_process() {
    let f = fixture().await;
    // Two servers, so the batches in flight from one worker go to both at once.
    let second = start(serve_config(f.repo.path())).await.unwrap();
    let inputs = expand_glob(&format!("{}/day_0/part-*", f.data.path().display())).unwrap();
    let out = tempfile::tempdir().unwrap();
    // 64 rows a batch: 16 batches per 1,000-row shard, far more than the 4 a worker keeps in
    // flight, so answers arrive while later batches are still being sent.
    let job = |dir: &str| ScoreJob {
        inputs: inputs.iter().map(|p| Shard::local(p)).collect(),
        output: out.path().join(dir).to_string_lossy().into_owned(),
        share: Share::ALL,
        batch: 64,
        workers: 2,
        max_errors: 10,
    };
    let (local_job, remote_job) = (job("local"), job("remote"));
    let repo = f.repo.path().to_string_lossy().into_owned();
    let servers = [
        format!("http://{}", f.server.addr),
        format!("http://{}", second.addr),
    ];
    let (local, remote) = tokio::task::spawn_blocking(move || {
        let local = LocalFactory::open(&repo, "criteo_ctr", Default::default()).unwrap();
        let remote = RemoteFactory::open(&servers, "criteo_ctr", Default::default())
            .unwrap()
            .in_flight(4);
        (
            local_job.run(&local).unwrap(),
            remote_job.run(&remote).unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(local.complete && remote.complete);
    assert_eq!(local.rows, 2000);
    assert_eq!(remote.rows, local.rows);
    assert_eq!(remote.log_loss.is_some(), local.log_loss.is_some());
    // Parts sit at paths relative to the inputs' common directory (here day_0 itself).
    for shard in ["part-00000.tsv", "part-00001.tsv"] {
        let read = |dir: &str| std::fs::read_to_string(out.path().join(dir).join(shard)).unwrap();
        let (a, b) = (read("local"), read("remote"));
        assert_eq!(a.lines().count(), 1000);
        assert_eq!(a.lines().count(), b.lines().count());
        for (x, y) in a.lines().zip(b.lines()) {
            let columns = |line: &str| line.split('\t').map(str::to_string).collect::<Vec<_>>();
            let (x_columns, y_columns) = (columns(x), columns(y));
            // Row numbers and labels exactly, in the input's order; probabilities as computed.
            assert_eq!(x_columns[0], y_columns[0], "rows out of order: {x} vs {y}");
            assert_eq!(x_columns.get(2), y_columns.get(2), "{x} vs {y}");
            let p = |c: &[String]| c[1].parse::<f64>().unwrap();
            assert!((p(&x_columns) - p(&y_columns)).abs() <= 1e-6, "{x} vs {y}");
        }
    }
    second.stop().await.unwrap();
    f.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_worker_keeps_batches_in_flight_and_gets_each_its_own_answer() {
    let f = fixture().await;
    let second = start(serve_config(f.repo.path())).await.unwrap();
    let text = std::fs::read_to_string(f.repo.path().join("criteo_ctr/1/features.toml")).unwrap();
    let transformer = Transformer::new(FeatureSpec::from_toml(&text).unwrap()).unwrap();
    let rows = rows(f.data.path());
    // Batches of different sizes and rows: an answer given to the wrong batch shows.
    let batches: Vec<Tensor> = [&rows[..40], &rows[40..110], &rows[110..200], &rows[200..]]
        .iter()
        .map(|part| transformer.ids_tensor(part).unwrap())
        .collect();
    let repo = f.repo.path().to_string_lossy().into_owned();
    let servers = [
        format!("http://{}", f.server.addr),
        format!("http://{}", second.addr),
    ];
    tokio::task::spawn_blocking(move || {
        let local = LocalFactory::open(&repo, "criteo_ctr", Default::default()).unwrap();
        let mut engine = local.backends(1).unwrap().pop().unwrap();
        let expected: Vec<Vec<f32>> = batches
            .iter()
            .map(|ids| engine.submit(ids.clone()).unwrap().wait().unwrap())
            .collect();
        let remote = RemoteFactory::open(&servers, "criteo_ctr", Default::default())
            .unwrap()
            .in_flight(4);
        let mut worker = remote.backends(1).unwrap().pop().unwrap();
        assert_eq!(worker.depth(), 4);
        // All four submitted before any is waited for; one more is abandoned unwaited.
        let scorings: Vec<_> = batches
            .iter()
            .map(|ids| worker.submit(ids.clone()).unwrap())
            .collect();
        drop(worker.submit(batches[0].clone()).unwrap());
        for (i, (scoring, expected)) in scorings.into_iter().zip(&expected).enumerate() {
            let got = scoring.wait().unwrap();
            assert_eq!(got.len(), expected.len(), "batch {i}");
            for (x, y) in got.iter().zip(expected) {
                assert!((x - y).abs() <= 1e-6, "batch {i}: remote {x} vs local {y}");
            }
        }
        // The worker goes on after an abandoned request.
        let again = worker.submit(batches[1].clone()).unwrap().wait().unwrap();
        assert_eq!(again.len(), expected[1].len());
    })
    .await
    .unwrap();
    second.stop().await.unwrap();
    f.server.stop().await.unwrap();
}
