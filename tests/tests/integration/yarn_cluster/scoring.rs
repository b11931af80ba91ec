//! `spindle score --yarn-service RM/NAME` through the deployment's real replicas, checked
//! against the same job run in-process.

use super::{CPU_NODES, served};
use crate::score_images::assert_same_scores;
use spindle_tests::hadoop3::{Hadoop3, spindle};
use std::path::Path;
use std::time::Duration;

/// Scores 48 synthetic CIFAR-10 images (2 shards) through the READY replicas of `service`
/// found through the RM, then in-process (`--local`) from the same HDFS repository: both
/// replicas answered some of the batches, and the parts agree record by record (labels and
/// classes equal, probabilities within 1e-5: the replicas batch images as their queue
/// gathers them, and a different batch shape may round the last bits differently).
pub(super) fn score_through_the_replicas(cluster: &Hadoop3, service: &str, repo: &str, port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.display().to_string();
    let data = dir.path().join("data");
    let limit = Duration::from_secs(120);
    let (ok, out, err) = spindle(
        &[
            "data",
            "cifar10",
            "--out",
            &s(&data),
            "--records",
            "48",
            "--shards",
            "2",
        ],
        limit,
    );
    assert!(ok, "spindle data cifar10: {out} {err}");
    let input = format!("{}/data_batch_*", s(&data));
    let score = |output: &Path, target: &[&str]| {
        let common = [
            "score", "--model", "cifar10", "--input", &input, "--top", "2", "--batch", "4",
            "--quiet",
        ];
        let (ok, out, err) = spindle(
            &[&common[..], &["--output", &s(output)], target].concat(),
            limit,
        );
        assert!(ok, "spindle score {target:?}: {out} {err}");
        out
    };

    let before = CPU_NODES.map(|h| served(h, port));
    let remote = dir.path().join("remote");
    let rm_service = format!("{}/{service}", cluster.rm);
    let out = score(
        &remote,
        &["--yarn-service", &rm_service, "--yarn-user", &cluster.user],
    );
    assert!(out.contains("2 READY replica(s)"), "{out}");
    assert!(out.contains("48 images"), "{out}");
    let after = CPU_NODES.map(|h| served(h, port));
    assert!(
        after[0] > before[0] && after[1] > before[1],
        "spindle score --yarn-service reached {CPU_NODES:?}: {before:?} -> {after:?}"
    );

    let local = dir.path().join("local");
    let out = score(&local, &["--local", "--repo", repo]);
    assert!(out.contains("48 images"), "{out}");
    for part in ["data_batch_1.bin.tsv", "data_batch_2.bin.tsv"] {
        assert_same_scores(&local.join(part), &remote.join(part));
        // A header and the shard's 24 records.
        let text = std::fs::read_to_string(remote.join(part)).unwrap();
        assert_eq!(text.lines().count(), 25, "{part}: {text}");
    }
    assert!(remote.join("_SUCCESS").is_file());
}
