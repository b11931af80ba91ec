//! The model repository on a real HDFS (scripts/hdfs.sh; no mock): publish, serve, infer; hot
//! swap under load with zero failed requests; corrupt versions rejected with their reason; a
//! NameNode outage; a DataNode lost during a download; a cold start from the cache.

use reqwest::StatusCode;
use serde_json::{Value, json};
use spindle_loader::{HDFS_RETRY, ModelRepository, RepoError, SHA256_FILE};
use spindle_server::repository::ModelControl;
use spindle_server::serve::ServeConfig;
use spindle_tests::hadoop3;
use spindle_tests::hdfs::{OwnCluster, shared_url, unique_dir};
use spindle_tests::{TestServer, serve_config, start};
use spindle_zoo::ZooModel;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const PIXELS: usize = 24 * 24 * 3;

fn request() -> Value {
    let data: Vec<f32> = (0..PIXELS).map(|i| (i % 255) as f32 / 255.0).collect();
    json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": data}]})
}

/// cifar10's ONNX bytes (distinct per seed), config and labels.
fn cifar10(seed: u64) -> (Vec<u8>, String, String) {
    let built = spindle_zoo::build(ZooModel::Cifar10, seed);
    let labels = built.labels.unwrap_or_default().join("\n");
    (built.onnx, built.config.to_toml(), labels)
}

async fn repo(url: &str) -> ModelRepository {
    ModelRepository::connect(url, HDFS_RETRY).unwrap()
}

async fn publish(repo: &ModelRepository, seed: u64, version: Option<u64>) -> u64 {
    let (onnx, config, labels) = cifar10(seed);
    repo.publish("cifar10", &onnx, version, Some(&config), Some(&labels))
        .await
        .unwrap()
}

fn hdfs_config(url: &str, poll: Duration, cache: Option<&std::path::Path>) -> ServeConfig {
    let mut config = serve_config(std::path::Path::new("/unused"));
    config.repo = url.to_string();
    config.poll_interval = poll;
    config.cache_dir = cache.map(|p| p.to_path_buf());
    config
}

async fn infer(client: &reqwest::Client, server: &TestServer) -> (StatusCode, Value) {
    let response = client
        .post(server.url("/v2/models/cifar10/infer"))
        .json(&request())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(server: &TestServer, path: &str) -> Value {
    spindle_tests::get_json(&server.url(path)).await
}

async fn metric(server: &TestServer, name: &str) -> f64 {
    spindle_tests::metric_sum(&server.url(""), name).await
}

/// Waits until `check` holds, polling every 100 ms; panics with `what` after `limit`.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn versions(server: &TestServer) -> Value {
    get(server, "/v2/models/cifar10").await["versions"].clone()
}

/// The repository tests that only read and write run on both HDFS generations our users have:
/// Hadoop 2.7.3 (scripts/hdfs.sh, the compatibility cluster) and the Hadoop 3 cluster of
/// scripts/hadoop.sh, each in a directory of its own. One `#[tokio::test]` per cluster, so a
/// failure says which and each skips on its own switch (SPINDLE_SKIP_HDFS, SPINDLE_SKIP_HADOOP3).
macro_rules! on_both_clusters {
    ($case:ident, $hadoop2:ident, $hadoop3:ident, $($flavor:tt)*) => {
        #[tokio::test($($flavor)*)]
        async fn $hadoop2() {
            let Some(base) = shared_url() else { return };
            $case(base).await;
        }

        #[tokio::test($($flavor)*)]
        async fn $hadoop3() {
            let Some(cluster) = hadoop3::cluster() else { return };
            $case(cluster.hdfs).await;
        }
    };
}

on_both_clusters!(
    publish_serve_hot_swap_under_load_and_reject_corrupt_versions,
    hot_swap_under_load_on_hadoop2,
    hot_swap_under_load_on_hadoop3,
    flavor = "multi_thread",
    worker_threads = 4
);
on_both_clusters!(
    names_that_escape_the_root_are_refused_and_model_control_is_off_by_default,
    escaping_names_and_model_control_on_hadoop2,
    escaping_names_and_model_control_on_hadoop3,
);
on_both_clusters!(
    models_without_labels_serve_and_features_travel_with_the_version,
    missing_labels_and_features_on_hadoop2,
    missing_labels_and_features_on_hadoop3,
    flavor = "multi_thread",
    worker_threads = 2
);

async fn publish_serve_hot_swap_under_load_and_reject_corrupt_versions(base: String) {
    let url = unique_dir(&base, "hot-swap");
    let repo = repo(&url).await;
    assert_eq!(publish(&repo, 1, None).await, 1);
    let server = start(hdfs_config(&url, Duration::from_millis(300), None))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let (status, body) = infer(&client, &server).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["model_version"], "1");

    // Load runs while version 2 is published, downloaded, warmed up and swapped in.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server = Arc::new(server);
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, server, client) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            server.clone(),
            client.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = infer(&client, &server).await;
                if status == StatusCode::OK {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    eprintln!("failed request during the swap: {status} {body}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(publish(&repo, 2, None).await, 2);
    wait_for(Duration::from_secs(60), "version 2 to serve", || async {
        versions(&server).await == json!(["2"])
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the hot swap"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 10,
        "the load generator barely ran"
    );
    let (_, body) = infer(&client, &server).await;
    assert_eq!(body["model_version"], "2");
    assert_eq!(metric(&server, "spindle_model_current_version").await, 2.0);
    assert!(metric(&server, "spindle_repository_bytes_downloaded_total").await > 8e6);

    // Version 3 is not ONNX: rejected with its reason, version 2 keeps serving.
    repo.publish("cifar10", b"not an onnx model", Some(3), None, None)
        .await
        .unwrap();
    // Version 4 is a good model whose checksum sidecar disagrees (a corrupt upload).
    let (onnx, _, _) = cifar10(4);
    let storage = repo.storage();
    storage.mkdirs("cifar10/.upload-4").await.unwrap();
    storage
        .write("cifar10/.upload-4/model.onnx", &onnx)
        .await
        .unwrap();
    let wrong = format!("{}  model.onnx\n", "0".repeat(64));
    storage
        .write(
            &format!("cifar10/.upload-4/{SHA256_FILE}"),
            wrong.as_bytes(),
        )
        .await
        .unwrap();
    // Version 4 appears only after 3 has failed, so both are seen (the policy serves the newest).
    wait_for(Duration::from_secs(60), "version 3 to fail", || async {
        let index = get(&server, "/v2/repository/index").await;
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["version"] == "3" && r["state"] == "UNAVAILABLE")
    })
    .await;
    storage
        .rename("cifar10/.upload-4", "cifar10/4")
        .await
        .unwrap();
    wait_for(Duration::from_secs(60), "version 4 to fail", || async {
        let index = get(&server, "/v2/repository/index").await;
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["version"] == "4" && r["state"] == "UNAVAILABLE")
    })
    .await;
    let index = reqwest::Client::new()
        .post(server.url("/v2/repository/index"))
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let row = |v: &str| {
        index
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == v)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(row("2")["state"], "READY", "{index}");
    let reason = row("4")["reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("sha256 mismatch")
            && reason.contains(&format!("{url}/cifar10/4/model.onnx")),
        "{reason}"
    );
    let (status, body) = infer(&client, &server).await;
    assert_eq!(
        (status, body["model_version"].clone()),
        (StatusCode::OK, json!("2")),
        "{body}"
    );
    let response = client
        .post(server.url("/v2/models/cifar10/versions/4/infer"))
        .json(&request())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        metric(
            &server,
            "spindle_model_load_failures_total{model=\"cifar10\",reason=\"checksum\"}"
        )
        .await
            >= 1.0
    );
    assert!(
        metric(
            &server,
            "spindle_model_load_failures_total{model=\"cifar10\",reason=\"invalid_model\"}"
        )
        .await
            >= 1.0
    );
    // A failed version is not retried while its files are unchanged.
    let failures = metric(&server, "spindle_model_load_failures_total").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        metric(&server, "spindle_model_load_failures_total").await,
        failures
    );
    Arc::into_inner(server).unwrap().stop().await.unwrap();
}

async fn names_that_escape_the_root_are_refused_and_model_control_is_off_by_default(base: String) {
    let url = unique_dir(&base, "names");
    let repo = repo(&url).await;
    let (onnx, config, _) = cifar10(1);
    for name in ["../x", "..", "a/../../x", ".hidden"] {
        let err = repo
            .publish(name, &onnx, None, Some(&config), None)
            .await
            .unwrap_err();
        assert!(matches!(err, RepoError::InvalidName(_)), "{name}: {err}");
        assert!(
            matches!(repo.model(name).await, Err(RepoError::InvalidName(_))),
            "{name}"
        );
    }
    assert!(!repo.storage().exists("../x").await.unwrap_or(false));

    publish(&repo, 1, None).await;
    let server = start(hdfs_config(&url, Duration::ZERO, None))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/v2/repository/models/cifar10/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("--model-control explicit"),
        "{body}"
    );
    server.stop().await.unwrap();

    let mut config = hdfs_config(&url, Duration::ZERO, None);
    config.model_control = ModelControl::Explicit;
    let server = start(config).await.unwrap();
    let response = client
        .post(server.url("/v2/repository/models/..%2Fx/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = client
        .post(server.url("/v2/repository/models/cifar10/unload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(infer(&client, &server).await.0, StatusCode::NOT_FOUND);
    let index = get(&server, "/v2/repository/index").await;
    assert_eq!(
        index,
        json!([{"name": "cifar10", "state": "UNAVAILABLE", "reason": "unloaded"}])
    );
    let response = client
        .post(server.url("/v2/repository/models/cifar10/load"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(infer(&client, &server).await.0, StatusCode::OK);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn namenode_outage_keeps_serving_and_a_cold_start_uses_the_cache() {
    let Some(cluster) = OwnCluster::start(1) else {
        return;
    };
    let url = format!("{}/models", cluster.url);
    let repo = repo(&url).await;
    publish(&repo, 1, None).await;
    let cache = tempfile::tempdir().unwrap();
    let server = start(hdfs_config(
        &url,
        Duration::from_millis(300),
        Some(cache.path()),
    ))
    .await
    .unwrap();
    let client = reqwest::Client::new();
    assert_eq!(infer(&client, &server).await.0, StatusCode::OK);

    cluster.run(&["stop-namenode"]);
    wait_for(Duration::from_secs(60), "a poll error", || async {
        metric(&server, "spindle_repository_poll_errors_total").await >= 1.0
    })
    .await;
    let (status, body) = infer(&client, &server).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "serving must go on without the NameNode: {body}"
    );

    cluster.run(&["start-namenode"]);
    assert_eq!(publish(&repo, 2, None).await, 2);
    wait_for(
        Duration::from_secs(60),
        "version 2 after the NameNode came back",
        || async { versions(&server).await == json!(["2"]) },
    )
    .await;
    server.stop().await.unwrap();

    // Cold start with the NameNode down: the cache's last good copy serves, and says so.
    cluster.run(&["stop-namenode"]);
    let started = Instant::now();
    let server = start(hdfs_config(
        &url,
        Duration::from_millis(300),
        Some(cache.path()),
    ))
    .await
    .unwrap();
    eprintln!("cold start from the cache took {:?}", started.elapsed());
    let (status, body) = infer(&client, &server).await;
    assert_eq!(
        (status, body["model_version"].clone()),
        (StatusCode::OK, json!("2")),
        "{body}"
    );
    assert_eq!(
        metric(&server, "spindle_repository_serving_from_cache").await,
        1.0
    );
    server.stop().await.unwrap();

    // Without a warm cache the same start fails, naming the repository and the fix.
    let empty = tempfile::tempdir().unwrap();
    let err = match start(hdfs_config(&url, Duration::ZERO, Some(empty.path()))).await {
        Ok(_) => panic!("started without HDFS and without a cache"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&cluster.url) && err.contains("--cache-dir"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_survives_losing_a_datanode() {
    let Some(cluster) = OwnCluster::start(2) else {
        return;
    };
    // Many small blocks, each on both DataNodes: the reader goes to both, so whichever one dies
    // is serving some of the blocks still to be read.
    let client = hdfs_native::ClientBuilder::new()
        .with_url(cluster.url.clone())
        .build()
        .unwrap();
    let data: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let options = hdfs_native::WriteOptions::default()
        .block_size(1 << 20)
        .replication(2)
        .create_parent(true)
        .overwrite(true);
    // The NameNode refuses a new block while the one before is not yet reported replicated
    // (NotReplicatedYetException): Hadoop's own client retries that, hdfs-native does not, and
    // with 48 blocks on a loaded machine it happened in a CI run. The setup writes again.
    for attempt in 1.. {
        let written = async {
            let mut writer = client.create("/big/model.onnx", options.clone()).await?;
            writer.write_bytes(bytes::Bytes::from(data.clone())).await?;
            writer.close().await
        }
        .await;
        match written {
            Ok(()) => break,
            Err(e) if attempt < 4 && e.to_string().contains("NotReplicatedYet") => {
                eprintln!("writing /big/model.onnx, attempt {attempt}: {e}; writing again");
                // The half-written file still holds this client's lease, and a create over it
                // by the same client would be refused: delete it first.
                let _ = client.delete("/big/model.onnx", false).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => panic!("writing /big/model.onnx: {e}"),
        }
    }

    let storage =
        spindle_loader::Storage::new(&format!("{}/big", cluster.url), HDFS_RETRY).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let path = dest.path().join("model.onnx");
    // Kill a DataNode the NameNode still lists as live (it notices only after minutes): every
    // block's location list still names it, first for about half of them, so the reader must
    // fail over block by block. Killing it mid-download instead would race a download that
    // takes well under a second on a fast machine.
    cluster.run(&["kill-datanode", "1"]);
    let download = {
        let path = path.clone();
        tokio::spawn(async move { storage.download("model.onnx", &path).await })
    };
    let (len, sha) = download
        .await
        .unwrap()
        .expect("the download completes from the other DataNode");
    assert_eq!(len, data.len() as u64);
    assert_eq!(sha, spindle_loader::storage::sha256_hex(&data));
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

/// Models without labels.txt serve (HDFS reports a missing file as a remote
/// FileNotFoundException, which must read as missing), and a tabular model's features.toml,
/// published inside its version, is served with it: raw rows are scored.
async fn models_without_labels_serve_and_features_travel_with_the_version(base: String) {
    let url = unique_dir(&base, "no-labels");
    let repo = repo(&url).await;
    assert_eq!(repo.storage().read("nothing-here.txt").await.unwrap(), None);
    let criteo = spindle_zoo::build(ZooModel::CriteoCtr, 1);
    let features = criteo.features.clone().unwrap();
    assert!(criteo.labels.is_none());
    repo.publish_with(
        "criteo_ctr",
        &criteo.onnx,
        None,
        Some(&criteo.config.to_toml()),
        None,
        &[(spindle_loader::FEATURES_FILE, features.as_bytes())],
    )
    .await
    .unwrap();
    let entry = repo.model("criteo_ctr").await.unwrap();
    assert_eq!(entry.labels_text, None);
    let server = start(hdfs_config(&url, Duration::ZERO, None))
        .await
        .unwrap();
    let row = format!("1{}", "\t".repeat(39));
    let response = reqwest::Client::new()
        .post(server.url("/v2/models/criteo_ctr/infer"))
        .json(
            &json!({"inputs": [{"name": "ids", "shape": [1], "datatype": "BYTES", "data": [row]}]}),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await.unwrap();
}
