//! Fixtures for tests against a real HDFS (started by `scripts/hdfs.sh`; no mock).
//!
//! Tests that only read and write use the shared cluster named by `SPINDLE_HDFS_URL` (which
//! `scripts/test.sh` starts), each under its own directory. Tests that stop the NameNode or kill
//! DataNodes start their own cluster ([`OwnCluster`]) so the others are not disturbed. Without
//! `SPINDLE_HDFS_URL` a test fails, unless `SPINDLE_SKIP_HDFS=1` says to skip it on purpose.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The shared cluster's URL, or `None` when HDFS tests are skipped on purpose. Panics when the
/// cluster is simply missing: an HDFS test must never pass without HDFS.
pub fn shared_url() -> Option<String> {
    if let Ok(url) = std::env::var("SPINDLE_HDFS_URL") {
        return Some(url);
    }
    skip_or_fail()
}

fn skip_or_fail<T>() -> Option<T> {
    if std::env::var("SPINDLE_SKIP_HDFS").as_deref() == Ok("1") {
        spindle_core::skip::record("needs HDFS, and SPINDLE_SKIP_HDFS=1");
        return None;
    }
    panic!(
        "this test needs a real HDFS: run it through scripts/test.sh (which starts one with scripts/hdfs.sh), or start one with `scripts/hdfs.sh start` and set SPINDLE_HDFS_URL=$(scripts/hdfs.sh url); set SPINDLE_SKIP_HDFS=1 to skip HDFS tests knowingly"
    );
}

/// A fresh directory URL under `base` for one test.
pub fn unique_dir(base: &str, test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}/tests/{test}-{nanos}", base.trim_end_matches('/'))
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/hdfs.sh")
}

/// A cluster of this test's own (separate state directory and ports), stopped on drop.
pub struct OwnCluster {
    state: tempfile::TempDir,
    /// `hdfs://127.0.0.1:PORT`.
    pub url: String,
}

impl OwnCluster {
    /// Starts a NameNode and `datanodes` DataNodes; `None` when HDFS tests are skipped.
    pub fn start(datanodes: usize) -> Option<OwnCluster> {
        // The same switch as the shared cluster: HDFS tests run when one was provided.
        shared_url()?;
        let state = tempfile::Builder::new()
            .prefix("spindle-hdfs-test-")
            .tempdir()
            .expect("temporary directory");
        let mut cluster = OwnCluster {
            state,
            url: String::new(),
        };
        cluster.url = cluster.run(&["start", "--datanodes", &datanodes.to_string()]);
        Some(cluster)
    }

    /// Runs `scripts/hdfs.sh ARGS` for this cluster and returns its output.
    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("bash")
            .arg(script())
            .args(args)
            .env("SPINDLE_HDFS_DIR", self.state.path())
            .env_remove("SPINDLE_HDFS_PORT")
            .output()
            .expect("running scripts/hdfs.sh");
        assert!(
            output.status.success(),
            "scripts/hdfs.sh {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("SPINDLE_HDFS_DIR", self.state.path())
            .output();
    }
}
