//! The model repository's failure handling and the cache directory's lifecycle, on a local
//! repository: transient failures (a cache that cannot be written) are tried again at the next
//! poll and never remembered; permanent ones (a model the engine refuses) are skipped, logged
//! and counted once, until the version's files change; a model whose engine is unavailable
//! spares the others; and `spindle serve` child processes leave no cache directory behind
//! however they end (SIGTERM, Ctrl-C, an error), remove the one a SIGKILLed server left at the
//! next start, and reuse a configured `--cache-dir`.

use serde_json::Value;
use spindle_core::engine::EngineChoice;
use spindle_tests::{ServeProcess, get_json, metric_sum, serve_config, start};
use spindle_zoo::ZooModel;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Writes cifar10 (seed `seed`) as `version` of model `name` (config name and engine set).
fn write_cifar10(repo: &Path, name: &str, version: u64, seed: u64, engine: EngineChoice) {
    let mut built = spindle_zoo::build(ZooModel::Cifar10, seed);
    built.config.name = name.to_string();
    built.config.engine = engine;
    spindle_zoo::write_model(repo, &built, version).unwrap();
}

/// The state and reason of `model`'s `version` in the repository index.
async fn index_row(base: &str, model: &str, version: &str) -> (String, String) {
    let index: Value = reqwest::Client::new()
        .post(format!("{base}/v2/repository/index"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = index
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == model && r["version"] == version)
        .cloned()
        .unwrap_or(Value::Null);
    (
        row["state"].as_str().unwrap_or("absent").to_string(),
        row["reason"].as_str().unwrap_or_default().to_string(),
    )
}

async fn wait_for_state(base: &str, model: &str, version: &str, state: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let (now, reason) = index_row(base, model, version).await;
        if now == state {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{model} version {version} not {state} within {limit:?}: {now} {reason}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `spindle_model_load_failures_total` of `model` for `reason`.
async fn failures(base: &str, model: &str, reason: &str) -> f64 {
    let sample =
        format!("spindle_model_load_failures_total{{model=\"{model}\",reason=\"{reason}\"}}");
    metric_sum(base, &sample).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_permanent_ones_wait_for_new_files() {
    let repo = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    write_cifar10(repo.path(), "cifar10", 1, 1, EngineChoice::Auto);
    write_cifar10(repo.path(), "blocked", 1, 2, EngineChoice::Auto);
    // A file where `blocked`'s cache directory belongs: its download cannot be written.
    std::fs::write(cache.path().join("blocked"), b"in the way").unwrap();
    let mut config = serve_config(repo.path());
    config.poll_interval = Duration::from_millis(200);
    config.cache_dir = Some(cache.path().to_path_buf());
    let server = start(config).await.unwrap();
    let base = server.url("");

    let (state, reason) = index_row(&base, "blocked", "1").await;
    assert_eq!(state, "UNAVAILABLE", "{reason}");
    assert!(
        reason.contains("transient") && reason.contains(&cache.path().display().to_string()),
        "{reason}"
    );
    // Tried at every poll, logged and counted once while the reason stays the same.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(failures(&base, "blocked", "io").await, 1.0);
    std::fs::remove_file(cache.path().join("blocked")).unwrap();
    wait_for_state(&base, "blocked", "1", "READY", Duration::from_secs(30)).await;

    // Version 2 of cifar10 is not ONNX: a permanent failure, skipped while its files stay.
    let v2 = repo.path().join("cifar10/2");
    std::fs::create_dir_all(repo.path().join("cifar10/.v2")).unwrap();
    std::fs::write(repo.path().join("cifar10/.v2/model.onnx"), b"not a model").unwrap();
    std::fs::rename(repo.path().join("cifar10/.v2"), &v2).unwrap();
    wait_for_state(
        &base,
        "cifar10",
        "2",
        "UNAVAILABLE",
        Duration::from_secs(30),
    )
    .await;
    let (_, reason) = index_row(&base, "cifar10", "2").await;
    assert!(
        !reason.contains("transient") && reason.contains(&v2.display().to_string()),
        "{reason}"
    );
    assert_eq!(index_row(&base, "cifar10", "1").await.0, "READY");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        failures(&base, "cifar10", "invalid_model").await,
        1.0,
        "a version whose files did not change was tried again"
    );
    // New files in the version: tried again, and served.
    let good = spindle_zoo::build(ZooModel::Cifar10, 3).onnx;
    std::fs::write(v2.join("model.onnx.tmp"), &good).unwrap();
    std::fs::rename(v2.join("model.onnx.tmp"), v2.join("model.onnx")).unwrap();
    wait_for_state(&base, "cifar10", "2", "READY", Duration::from_secs(30)).await;
    server.stop().await.unwrap();
}

/// A free loopback address for a child server.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Starts `spindle serve` on `repo` with `TMPDIR=tmp` and `env`, and `extra` flags.
fn spawn_serve(repo: &Path, tmp: &Path, env: &[(&str, &str)], extra: &[&str]) -> ServeProcess {
    let addr = free_addr();
    let child = Command::new(spindle_tests::spindle_binary())
        .args(["serve", "--no-grpc", "--poll-interval", "200ms"])
        .arg("--repo")
        .arg(repo)
        .arg("--http-addr")
        .arg(addr.to_string())
        .args(extra)
        .env("TMPDIR", tmp)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ServeProcess {
        child,
        url: format!("http://{addr}"),
    }
}

/// The `spindle-cache-*` directories under `tmp`.
fn caches(tmp: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("spindle-cache-"))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Sends `signal` (TERM, INT) and waits up to 30 s for the process to exit; its exit code.
async fn stop_with(server: &mut ServeProcess, signal: &str) -> Option<i32> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
    wait_exit(server).await
}

async fn wait_exit(server: &mut ServeProcess) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "spindle serve did not exit within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_removes_its_cache_however_it_ends_and_the_next_start_cleans_up_after_a_kill() {
    let repo = spindle_tests::zoo_repo(&[ZooModel::Cifar10]);
    let tmp = tempfile::tempdir().unwrap();
    let tract = ["--engine", "tract"];

    let mut first = spawn_serve(repo.path(), tmp.path(), &[], &tract);
    first.wait_ready(Duration::from_secs(60)).await.unwrap();
    let left = caches(tmp.path());
    assert_eq!(left.len(), 1, "{left:?}");
    let owner = std::fs::read_to_string(left[0].join(".owner")).unwrap();
    assert!(owner.contains(&first.child.id().to_string()), "{owner}");
    assert!(left[0].join("cifar10/1/model.onnx").is_file());
    // SIGKILL runs no cleanup: the directory stays...
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert_eq!(caches(tmp.path()), left);
    // ...until the next start, which removes it.
    let mut second = spawn_serve(repo.path(), tmp.path(), &[], &tract);
    second.wait_ready(Duration::from_secs(60)).await.unwrap();
    let now = caches(tmp.path());
    assert!(
        now.len() == 1 && now[0] != left[0],
        "the killed server's cache is still there: {now:?}"
    );
    // SIGTERM: drained, and the cache removed.
    assert_eq!(stop_with(&mut second, "TERM").await, Some(0));
    assert_eq!(caches(tmp.path()), Vec::<PathBuf>::new());
    // Ctrl-C (SIGINT) the same.
    let mut third = spawn_serve(repo.path(), tmp.path(), &[], &tract);
    third.wait_ready(Duration::from_secs(60)).await.unwrap();
    assert_eq!(stop_with(&mut third, "INT").await, Some(0));
    assert_eq!(caches(tmp.path()), Vec::<PathBuf>::new());
    // An error exit: a repository where no model loads.
    let broken = tempfile::tempdir().unwrap();
    write_cifar10(broken.path(), "cifar10", 1, 1, EngineChoice::Auto);
    std::fs::write(broken.path().join("cifar10/1/model.onnx"), b"not a model").unwrap();
    let mut failing = spawn_serve(broken.path(), tmp.path(), &[], &tract);
    assert_eq!(wait_exit(&mut failing).await, Some(1));
    assert_eq!(caches(tmp.path()), Vec::<PathBuf>::new());

    // A configured --cache-dir is reused after a kill (nothing downloaded again), held by one
    // server at a time, and kept at exit.
    let configured = tmp.path().join("configured");
    let dir = configured.to_str().unwrap();
    let with_dir = ["--engine", "tract", "--cache-dir", dir];
    let mut fourth = spawn_serve(repo.path(), tmp.path(), &[], &with_dir);
    fourth.wait_ready(Duration::from_secs(60)).await.unwrap();
    fourth.child.kill().unwrap();
    fourth.child.wait().unwrap();
    let mut fifth = spawn_serve(repo.path(), tmp.path(), &[], &with_dir);
    fifth.wait_ready(Duration::from_secs(60)).await.unwrap();
    assert_eq!(
        metric_sum(&fifth.url, "spindle_repository_bytes_downloaded_total").await,
        0.0,
        "the cached copy was not reused"
    );
    let output = Command::new(spindle_tests::spindle_binary())
        .args([
            "serve",
            "--no-grpc",
            "--engine",
            "tract",
            "--cache-dir",
            dir,
        ])
        .arg("--repo")
        .arg(repo.path())
        .arg("--http-addr")
        .arg(free_addr().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("in use by spindle serve, process")
            && stderr.contains(&fifth.child.id().to_string()),
        "{stderr}"
    );
    assert_eq!(stop_with(&mut fifth, "TERM").await, Some(0));
    assert!(configured.join("cifar10/1/model.onnx").is_file());
    assert_eq!(caches(tmp.path()), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_engine_is_unavailable_spares_the_others() {
    let repo = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(repo.path(), "cifar10", 1, 1, EngineChoice::Auto);
    write_cifar10(repo.path(), "needs_ort", 1, 2, EngineChoice::Ort);
    // No ONNX Runtime: cifar10 (engine auto) falls back to tract, needs_ort cannot load.
    let env = [("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")];
    let mut server = spawn_serve(repo.path(), tmp.path(), &env, &[]);
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let base = server.url.clone();
    assert_eq!(index_row(&base, "cifar10", "1").await.0, "READY");
    let (state, reason) = index_row(&base, "needs_ort", "1").await;
    assert!(
        state == "UNAVAILABLE" && reason.contains("engine unavailable"),
        "{state}: {reason}"
    );
    // Polls go on for the others while needs_ort fails at each of them.
    write_cifar10(repo.path(), "cifar10", 2, 3, EngineChoice::Auto);
    wait_for_state(&base, "cifar10", "2", "READY", Duration::from_secs(30)).await;
    let model: Value = get_json(&format!("{base}/v2/models/cifar10")).await;
    assert_eq!(model["versions"], serde_json::json!(["2"]), "{model}");
    assert_eq!(
        failures(&base, "needs_ort", "engine_unavailable").await,
        1.0,
        "an unchanged failure is counted once"
    );
    assert_eq!(stop_with(&mut server, "TERM").await, Some(0));
}
