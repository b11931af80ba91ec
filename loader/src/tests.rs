//! Repository tests on local storage; the same code paths run against a real HDFS in the
//! integration tests (`tests/tests/integration/hdfs.rs`).

use super::*;
use std::path::Path;

const CONFIG: &str = r#"
name = "m"
max_batch_size = 4
[[inputs]]
name = "x"
dtype = "FP32"
dims = [-1, 2]
[[outputs]]
name = "y"
dtype = "FP32"
dims = [-1, 2]
"#;

/// A valid config for a model named `name`.
pub(crate) fn config(name: &str) -> String {
    CONFIG.replace("\"m\"", &format!("\"{name}\""))
}

fn model(root: &Path, name: &str, config: &str, versions: &[&str]) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(CONFIG_FILE),
        config.replace("\"m\"", &format!("\"{name}\"")),
    )
    .unwrap();
    for v in versions {
        std::fs::create_dir_all(dir.join(v)).unwrap();
        std::fs::write(dir.join(v).join(MODEL_FILE), b"onnx").unwrap();
    }
}

async fn open(root: &Path) -> ModelRepository {
    ModelRepository::open(root.to_str().unwrap(), HDFS_RETRY)
        .await
        .unwrap()
}

#[tokio::test]
async fn finds_integer_versions_and_ignores_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    model(
        tmp.path(),
        "m",
        CONFIG,
        &["1", "10", "2", "tmp-upload", "01"],
    );
    std::fs::write(tmp.path().join("m/labels.txt"), "cat\ndog\n").unwrap();
    let models = open(tmp.path()).await.scan().await.unwrap();
    assert_eq!(models.len(), 1);
    let versions: Vec<u64> = models[0].versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, vec![1, 2, 10]);
    let wanted: Vec<u64> = models[0]
        .wanted_versions()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(wanted, vec![10], "default policy: the newest version");
    assert_eq!(models[0].labels_text.as_deref(), Some("cat\ndog\n"));
    assert!(models[0].config.is_ok());
}

#[tokio::test]
async fn version_policy_and_success_marker_choose_what_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let text =
        format!("version_policy = {{ latest = 2 }}\nrequire_success_marker = true\n{CONFIG}");
    model(tmp.path(), "m", &text, &["1", "2", "3"]);
    std::fs::write(tmp.path().join("m/1/_SUCCESS"), b"").unwrap();
    std::fs::write(tmp.path().join("m/2/_SUCCESS"), b"").unwrap();
    let entry = open(tmp.path()).await.model("m").await.unwrap();
    let wanted: Vec<u64> = entry.wanted_versions().iter().map(|v| v.version).collect();
    assert_eq!(wanted, vec![1, 2], "3 has no _SUCCESS yet");
}

#[tokio::test]
async fn a_broken_config_names_file_and_field_and_spares_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    model(tmp.path(), "good", CONFIG, &["1"]);
    model(
        tmp.path(),
        "bad",
        &CONFIG.replace("[-1, 2]\n[[outputs]]", "[2]\n[[outputs]]"),
        &["1"],
    );
    model(tmp.path(), "empty", CONFIG, &[]);
    let models = open(tmp.path()).await.scan().await.unwrap();
    let by_name = |n: &str| models.iter().find(|m| m.name == n).unwrap();
    assert!(by_name("good").config.is_ok());
    let err = by_name("bad").config.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("bad/config.toml") && err.contains("inputs[0].dims"),
        "{err}"
    );
    let err = by_name("empty").config.as_ref().unwrap_err().to_string();
    assert!(err.contains("no version directory"), "{err}");
}

#[tokio::test]
async fn config_name_must_match_directory() {
    let tmp = tempfile::tempdir().unwrap();
    model(tmp.path(), "m", CONFIG, &["1"]);
    std::fs::rename(tmp.path().join("m"), tmp.path().join("other")).unwrap();
    let models = open(tmp.path()).await.scan().await.unwrap();
    let err = models[0].config.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("differs from its directory name 'other'"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_root_and_escaping_names_are_refused() {
    let err = ModelRepository::open("/nonexistent/repo", HDFS_RETRY)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/repo") && err.contains("spindle zoo --out"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let repo = open(tmp.path()).await;
    for name in ["../x", "a/b", "..", ".hidden", ""] {
        assert!(
            matches!(repo.model(name).await, Err(RepoError::InvalidName(_))),
            "{name}"
        );
        let err = repo
            .publish(name, b"x", None, Some(&config("m")), None)
            .await;
        assert!(matches!(err, Err(RepoError::InvalidName(_))), "{name}");
    }
    assert!(!tmp.path().parent().unwrap().join("x").exists());
}

#[tokio::test]
async fn publish_then_fetch_verifies_size_and_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = open(tmp.path()).await;
    let err = repo
        .publish("m", b"v1", None, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--config"), "{err}");
    assert_eq!(
        repo.publish("m", b"v1", None, Some(&config("m")), Some("a\nb\n"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(repo.publish("m", b"v2", None, None, None).await.unwrap(), 2);
    let err = repo
        .publish("m", b"again", Some(2), None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Exists { .. }), "{err}");
    // No temporary directory is left beside the versions.
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("m"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");

    let cache = ModelCache::new(cache_dir.path()).unwrap();
    let entry = repo.model("m").await.unwrap();
    let fetched = cache
        .fetch(&repo, &entry, entry.version(2).unwrap())
        .await
        .unwrap();
    assert_eq!(fetched.read_model().unwrap(), b"v2");
    assert_eq!(fetched.downloaded_bytes, 2);
    assert_eq!(fetched.labels, Some(vec!["a".to_string(), "b".to_string()]));
    let again = cache
        .fetch(&repo, &entry, entry.version(2).unwrap())
        .await
        .unwrap();
    assert_eq!(
        again.downloaded_bytes, 0,
        "an unchanged version is not downloaded twice"
    );

    // Rewrite version 1's model in place: its sidecar no longer matches.
    std::fs::write(tmp.path().join("m/1/model.onnx"), b"v9").unwrap();
    let entry = repo.model("m").await.unwrap();
    let err = cache
        .fetch(&repo, &entry, entry.version(1).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Verify { .. }) && err.to_string().contains("sha256 mismatch"),
        "{err}"
    );
    assert!(
        !cache_dir.path().join("m/1").exists(),
        "a failed fetch leaves nothing behind"
    );

    assert!(cache.good_versions().await.is_empty());
    cache.mark_good("m", 2).await;
    let good = cache.good_versions().await;
    assert_eq!((good.len(), good[0].version), (1, 2));
}

#[tokio::test]
async fn version_files_are_published_and_fetched_with_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = open(tmp.path()).await;
    let features: &[u8] = b"[features]\n";
    let version = repo
        .publish_with(
            "m",
            b"v1",
            None,
            Some(&config("m")),
            None,
            &[(crate::FEATURES_FILE, features)],
        )
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("m/1").join(crate::FEATURES_FILE)).unwrap(),
        features
    );
    let entry = repo.model("m").await.unwrap();
    let cache = ModelCache::new(cache_dir.path()).unwrap();
    let fetched = cache
        .fetch(&repo, &entry, entry.version(version).unwrap())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(fetched.dir.join(crate::FEATURES_FILE)).unwrap(),
        features
    );
    for bad in ["../features.toml", crate::MODEL_FILE, crate::SHA256_FILE] {
        let err = repo
            .publish_with("m", b"v2", None, None, None, &[(bad, b"x")])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("beside the model"), "{bad}: {err}");
    }
    assert!(
        !tmp.path().join("m/2").exists(),
        "a refused publish writes nothing"
    );
}
