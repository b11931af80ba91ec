//! Failure kinds, the runtime kept free during a fetch, and cache directory ownership.

use super::*;
use std::path::Path;
use std::time::{Duration, Instant};

async fn published(root: &Path, name: &str, model: &[u8]) -> ModelRepository {
    let repo = ModelRepository::open(root.to_str().unwrap(), HDFS_RETRY)
        .await
        .unwrap();
    let config = crate::tests::config(name);
    repo.publish(name, model, Some(1), Some(&config), None)
        .await
        .unwrap();
    repo
}

#[tokio::test]
async fn a_cache_write_failure_is_transient_and_the_next_fetch_succeeds() {
    let repo_dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = published(repo_dir.path(), "m", b"onnx bytes").await;
    let entry = repo.model("m").await.unwrap();
    let cache = ModelCache::new(cache_dir.path()).unwrap();
    // A file where the model's cache directory belongs: every local write under it fails.
    std::fs::write(cache_dir.path().join("m"), b"in the way").unwrap();
    let err = cache
        .fetch(&repo, &entry, entry.version(1).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Io { .. }) && err.kind() == FailureKind::Transient,
        "{err:?}"
    );
    assert_eq!(err.class(), "io");
    assert!(
        err.to_string()
            .contains(&cache_dir.path().display().to_string()),
        "{err}"
    );
    std::fs::remove_file(cache_dir.path().join("m")).unwrap();
    let fetched = cache
        .fetch(&repo, &entry, entry.version(1).unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.read_model().unwrap(), b"onnx bytes");
}

#[tokio::test]
async fn a_checksum_mismatch_is_permanent() {
    let repo_dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = published(repo_dir.path(), "m", b"v1").await;
    std::fs::write(repo_dir.path().join("m/1").join(MODEL_FILE), b"v9").unwrap();
    let entry = repo.model("m").await.unwrap();
    let err = ModelCache::new(cache_dir.path())
        .unwrap()
        .fetch(&repo, &entry, entry.version(1).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RepoError::Verify {
                cause: Mismatch::Sha256 { .. },
                ..
            }
        ) && err.kind() == FailureKind::Permanent,
        "{err:?}"
    );
}

#[tokio::test]
async fn a_model_that_cannot_be_read_spares_the_others_scan() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = published(repo_dir.path(), "good", b"onnx").await;
    published(repo_dir.path(), "bad", b"onnx").await;
    std::fs::write(repo_dir.path().join("bad").join(CONFIG_FILE), [0xff, 0xfe]).unwrap();
    let models = repo.scan().await.unwrap();
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["bad", "good"]);
    let err = models[0].config.as_ref().unwrap_err();
    assert!(
        matches!(err, RepoError::NotText { .. }) && err.kind() == FailureKind::Permanent,
        "{err:?}"
    );
    assert!(err.to_string().contains("bad/config.toml"), "{err}");
    assert!(models[1].config.is_ok());
}

/// Runs `work` beside a 5 ms timer task on the same runtime: what `work` returned, how long it
/// took, and the longest gap the timer saw meanwhile. On a one-thread runtime, work that holds
/// the thread shows as a gap as long as itself.
async fn beside_a_ticker<T>(work: impl Future<Output = T>) -> (T, Duration, Duration) {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
            longest
        })
    };
    // Let the ticker start before the work.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    let out = work.await;
    let took = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    (out, took, ticker.await.unwrap())
}

/// Fails when the timer stalled for more than 1/`share` of `took` (skipped when `took` is too
/// short to tell).
fn assert_runtime_stayed_free(what: &str, took: Duration, longest: Duration, share: u32) {
    eprintln!("{what}: {took:?}; longest timer gap meanwhile: {longest:?}");
    if took < Duration::from_millis(150) {
        spindle_core::skip::record(&format!(
            "{what} took only {took:?}, too short to tell a blocked runtime from a free one"
        ));
        return;
    }
    assert!(
        longest < (took / share).max(Duration::from_millis(50)),
        "the runtime stalled for {longest:?} during a {took:?} {what}"
    );
}

fn large_model() -> Vec<u8> {
    (0..128u32 << 20).map(|i| (i % 251) as u8).collect()
}

/// The fetch of a large version (copy, sha256, fsync) on a one-thread runtime: a timer task on
/// the same thread must keep running. Before the filesystem work moved to the blocking pool,
/// the timer stopped for the whole fetch.
#[tokio::test(flavor = "current_thread")]
async fn a_large_fetch_leaves_a_one_thread_runtime_free() {
    let repo_dir = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = published(repo_dir.path(), "big", &large_model()).await;
    let entry = repo.model("big").await.unwrap();
    let cache = ModelCache::new(cache_dir.path()).unwrap();
    let (fetched, took, longest) =
        beside_a_ticker(cache.fetch(&repo, &entry, entry.version(1).unwrap())).await;
    assert_eq!(fetched.unwrap().downloaded_bytes, 128 << 20);
    assert_runtime_stayed_free("fetch of 128 MiB", took, longest, 4);
}

/// Publishing hashes the model for its sha256 sidecar: in steps that yield, so the one thread
/// stays free (it was one ~0.5 s stall per 128 MiB before).
#[tokio::test(flavor = "current_thread")]
async fn a_large_publish_leaves_a_one_thread_runtime_free() {
    let repo_dir = tempfile::tempdir().unwrap();
    let repo = ModelRepository::open(repo_dir.path().to_str().unwrap(), HDFS_RETRY)
        .await
        .unwrap();
    let model = large_model();
    let config = crate::tests::config("big");
    let (version, took, longest) =
        beside_a_ticker(repo.publish("big", &model, None, Some(&config), None)).await;
    assert_eq!(version.unwrap(), 1);
    let sidecar = std::fs::read_to_string(repo_dir.path().join("big/1").join(SHA256_FILE)).unwrap();
    assert!(
        sidecar.starts_with(&storage::sha256_hex(&model)),
        "{sidecar}"
    );
    // Hashing alone was a ~230 ms stall in a ~1.2 s publish, so the bound is tighter here.
    assert_runtime_stayed_free("publish of 128 MiB", took, longest, 8);
}

#[test]
fn a_dead_servers_temporary_cache_is_removed_and_a_live_ones_kept() {
    let parent = tempfile::tempdir().unwrap();
    let live = CacheDir::temporary_in(parent.path()).unwrap();
    assert!(live.path().starts_with(parent.path()));
    std::fs::write(live.path().join("kept"), b"").unwrap();
    // A server killed with SIGKILL: its directory and an unlocked owner file remain.
    let dead = parent.path().join("spindle-cache-killed");
    std::fs::create_dir_all(dead.join("m/1")).unwrap();
    std::fs::write(dead.join(".owner"), "spindle serve, process 1\n").unwrap();
    // Something of another program, and an old server's directory still in use.
    std::fs::create_dir_all(parent.path().join("other-program")).unwrap();
    std::fs::create_dir_all(parent.path().join("spindle-cache-legacy")).unwrap();

    let next = CacheDir::temporary_in(parent.path()).unwrap();
    assert!(!dead.exists(), "the dead server's cache is removed");
    assert!(
        live.path().join("kept").exists(),
        "a live server's cache is kept"
    );
    assert!(parent.path().join("other-program").exists());
    assert!(
        parent.path().join("spindle-cache-legacy").exists(),
        "a lockless directory is left until it has aged"
    );
    let (live_path, next_path) = (live.path().to_path_buf(), next.path().to_path_buf());
    drop(live);
    drop(next);
    assert!(
        !live_path.exists() && !next_path.exists(),
        "removed on drop"
    );
}

#[test]
fn a_configured_cache_is_kept_held_by_one_server_and_cleaned_of_partial_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let first = CacheDir::configured(&cache).unwrap();
    std::fs::create_dir_all(cache.join("m/1")).unwrap();
    std::fs::create_dir_all(cache.join("m/.fetch-2-999")).unwrap();
    let err = CacheDir::configured(&cache).unwrap_err();
    assert!(
        matches!(err, RepoError::CacheInUse { .. })
            && err
                .to_string()
                .contains(&format!("process {}", std::process::id()))
            && err.to_string().contains("--cache-dir"),
        "{err}"
    );
    drop(first);
    assert!(
        cache.join("m/1").exists(),
        "a configured cache stays at exit"
    );
    let _again = CacheDir::configured(&cache).unwrap();
    assert!(cache.join("m/1").exists());
    assert!(
        !cache.join("m/.fetch-2-999").exists(),
        "a download its owner never finished is removed"
    );
}
