//! Image scoring on the real Hadoop 3 cluster of `scripts/hadoop.sh`: parts written to HDFS
//! (renamed into place, `_SUCCESS`, reruns that skip finished shards), and `spindle score
//! --yarn` running executors as run-once YARN containers started from the uploaded tarball, on
//! the CPU partition, writing to HDFS, their summaries merged by the submitting command.

use spindle_loader::{HDFS_RETRY, Storage};
use spindle_score::images::InputFormat;
use spindle_score::images::backend::LocalImages;
use spindle_score::images::input::{Io, expand};
use spindle_score::images::job::{ImageJob, ImageSummary};
use spindle_score::images::output::Share;
use spindle_score::images::synth::{self, SynthConfig};
use spindle_tests::hadoop3::{self, Hadoop3, spindle};
use spindle_tests::hdfs::unique_dir;
use spindle_tests::zoo_repo;
use spindle_zoo::ZooModel;
use std::time::{Duration, Instant};

const SHARDS: [&str; 4] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
];

/// Writes four synthetic CIFAR-10 shards of 25 images each under `dir/data` on HDFS.
async fn upload_shards(dir: &str) -> Storage {
    let local = tempfile::tempdir().unwrap();
    synth::write_cifar10(&SynthConfig {
        out: local.path().to_path_buf(),
        records: 100,
        shards: SHARDS.len(),
        seed: 5,
        classes: 10,
        gzip: false,
    })
    .unwrap();
    let data = Storage::new(&format!("{dir}/data"), HDFS_RETRY).unwrap();
    for name in SHARDS {
        let bytes = std::fs::read(local.path().join(name)).unwrap();
        data.write(name, &bytes).await.unwrap();
    }
    data
}

async fn list(storage: &Storage, rel: &str) -> Vec<String> {
    let mut names: Vec<String> = storage
        .list(rel)
        .await
        .unwrap()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_parts_go_to_hdfs_renamed_into_place_and_a_rerun_skips_them() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "score-hdfs-output");
    upload_shards(&dir).await;
    let output = format!("{dir}/out");
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let (input, out) = (format!("{dir}/data/data_batch_*.bin"), output.clone());
    let run = move |share: Share| -> ImageSummary {
        let io = Io::new().unwrap();
        let model = LocalImages::open(
            repo.path().to_str().unwrap(),
            "cifar10",
            Default::default(),
            1,
        )
        .unwrap();
        let job = ImageJob {
            shards: expand(&input, &io).unwrap(),
            format: InputFormat::Cifar10,
            output: out.clone(),
            share,
            batch: 16,
            workers: 2,
            engines: 1,
            top: 2,
            max_errors: 0,
        };
        job.run(&model, &io, &spindle_score::Silent).unwrap()
    };
    let run = std::sync::Arc::new(run);
    let again = run.clone();
    let first = tokio::task::spawn_blocking(move || again(Share::ALL))
        .await
        .unwrap();
    assert!(first.complete, "{first:?}");
    assert_eq!((first.records, first.shards_scored), (100, 4));
    let storage = Storage::new(&output, HDFS_RETRY).unwrap();
    let mut expected: Vec<String> = SHARDS.iter().map(|s| format!("{s}.tsv")).collect();
    expected.insert(0, "_SUCCESS".into());
    assert_eq!(list(&storage, "").await, expected, "no temporary is left");
    let part = storage.read("data_batch_3.bin.tsv").await.unwrap().unwrap();
    let text = String::from_utf8(part).unwrap();
    assert!(
        text.starts_with("record\tlabel\tlabel_name\ttop1\ttop1_name\tp1\ttop2\ttop2_name\tp2\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 26, "a header and 25 images");

    // One part lost: the rerun scores that shard alone, and _SUCCESS waits for it.
    storage.delete("data_batch_3.bin.tsv").await.unwrap();
    let again = run.clone();
    let second = tokio::task::spawn_blocking(move || again(Share::ALL))
        .await
        .unwrap();
    assert!(second.complete, "{second:?}");
    assert_eq!(
        (second.records, second.shards_scored, second.shards_skipped),
        (25, 1, 3)
    );
    let rescored = storage.read("data_batch_3.bin.tsv").await.unwrap().unwrap();
    assert_eq!(String::from_utf8(rescored).unwrap(), text);
    assert!(storage.exists("_SUCCESS").await.unwrap());

    // An executor's share: 1 of 2 takes the shards at positions 1 and 3, and leaves _SUCCESS
    // to its job (here: removes none, writes none).
    storage.delete("data_batch_2.bin.tsv").await.unwrap();
    storage.delete("data_batch_4.bin.tsv").await.unwrap();
    storage.delete("_SUCCESS").await.unwrap();
    let third = tokio::task::spawn_blocking(move || run("1/2".parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (third.records, third.shards_scored, third.shards_skipped),
        (50, 2, 0),
        "{third:?}"
    );
    assert!(!storage.exists("_SUCCESS").await.unwrap());
    assert_eq!(list(&storage, "").await.len(), 4);
}

/// `spindle score --yarn` with two executors of 1 vcore and 512 MB on the CPU partition (its
/// one NodeManager has 4 GB: both fit beside the service AM).
fn score_on_yarn(
    cluster: &Hadoop3,
    dir: &str,
    repo: &str,
    name: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let input = format!("{dir}/data/data_batch_*.bin");
    let output = format!("{dir}/out");
    let staging = format!("{dir}/staging");
    let mut args = vec![
        "score",
        "--model",
        "cifar10",
        "--repo",
        repo,
        "--input",
        &input,
        "--output",
        &output,
        "--yarn",
        &cluster.rm,
        "--yarn-user",
        &cluster.user,
        "--yarn-name",
        name,
        "--staging",
        &staging,
        "--executors",
        "2",
        "--queue",
        "CPU_Q",
        "--node-partition",
        "CPU",
        "--executor-cpus",
        "1",
        "--executor-memory",
        "512",
        "--yarn-timeout",
        "150s",
        "--top",
        "5",
    ];
    args.extend_from_slice(extra);
    spindle(&args, Duration::from_secs(180))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yarn_job_of_two_executors_scores_every_shard_and_a_rerun_only_the_missing_one() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "score-yarn");
    let data = upload_shards(&dir).await;
    let repo = format!("{dir}/models");
    let (ok, _, err) = spindle(
        &["zoo", "--out", &repo, "--models", "cifar10"],
        Duration::from_secs(120),
    );
    assert!(ok, "spindle zoo --out {repo}: {err}");
    let name = hadoop3::unique_name("score-yarn");
    // Destroyed by the job itself; the guard covers a job killed half-way.
    let _guard = hadoop3::Service::guard(&cluster, &name);
    let summary_file = tempfile::NamedTempFile::new().unwrap();
    let summary_path = summary_file.path().to_str().unwrap();

    let started = Instant::now();
    let (ok, out, err) = score_on_yarn(
        &cluster,
        &dir,
        &repo,
        &name,
        &["--summary", summary_path, "--quiet"],
    );
    assert!(ok, "the job failed:\n{out}\n{err}");
    eprintln!("the YARN job took {:?}", started.elapsed());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    assert_eq!(summary["records"], 100, "{summary}");
    assert_eq!(summary["shards_scored"], 4, "{summary}");
    assert_eq!(summary["complete"], true, "{summary}");
    assert!(summary["recall_at_5"].as_f64().is_some(), "{summary}");
    assert!(out.contains("2 executor(s) on YARN: 100 images"), "{out}");
    let output = Storage::new(&format!("{dir}/out"), HDFS_RETRY).unwrap();
    let files = list(&output, "").await;
    assert_eq!(
        files,
        [
            "_SUCCESS",
            "_summary",
            "data_batch_1.bin.tsv",
            "data_batch_2.bin.tsv",
            "data_batch_3.bin.tsv",
            "data_batch_4.bin.tsv"
        ]
    );
    // Executor I took the shards at positions I and I+2.
    for i in 0..2 {
        let bytes = output
            .read(&format!("_summary/executor-{i}.json"))
            .await
            .unwrap()
            .unwrap();
        let executor: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (&executor["records"], &executor["shards_scored"]),
            (&serde_json::json!(50), &serde_json::json!(2)),
            "executor {i}: {executor}"
        );
    }
    // The same precision as scoring in-process here.
    let local_out = tempfile::tempdir().unwrap();
    let local_summary = local_out.path().join("summary.json");
    let (ok, _, err) = spindle(
        &[
            "score",
            "--model",
            "cifar10",
            "--local",
            "--repo",
            &repo,
            "--input",
            &format!("{dir}/data/data_batch_*.bin"),
            "--output",
            local_out.path().join("parts").to_str().unwrap(),
            "--summary",
            local_summary.to_str().unwrap(),
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    let local: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&local_summary).unwrap()).unwrap();
    assert_eq!(summary["precision_at_1"], local["precision_at_1"]);
    assert!(
        !list(
            &Storage::new(&format!("{dir}/staging"), HDFS_RETRY).unwrap(),
            ""
        )
        .await
        .iter()
        .any(|f| f.ends_with(".tar.gz")),
        "the tarball was removed"
    );

    // A lost part whose shard is now cut short, with no bad record allowed: the rerun submits
    // again, scores only that shard (executor 1's), stops on the damage, and says so without
    // _SUCCESS.
    output.delete("data_batch_2.bin.tsv").await.unwrap();
    let whole = data.read("data_batch_2.bin").await.unwrap().unwrap();
    data.write("data_batch_2.bin", &whole[..whole.len() - 100])
        .await
        .unwrap();
    let rerun = hadoop3::unique_name("score-yarn");
    let _guard = hadoop3::Service::guard(&cluster, &rerun);
    let (ok, out, err) = score_on_yarn(&cluster, &dir, &repo, &rerun, &["--max-errors", "0"]);
    assert!(!ok, "a job stopped on a damaged shard must fail:\n{out}");
    assert!(
        err.contains("stopped: more than --max-errors 0 bad records"),
        "{err}"
    );
    assert!(
        out.contains("shards: 0 scored, 3 already complete, 0 failed"),
        "{out}"
    );
    assert!(out.contains("bad records (truncated): 1"), "{out}");
    assert!(
        out.contains("data_batch_2.bin:24: truncated record"),
        "{out}"
    );
    assert!(!output.exists("_SUCCESS").await.unwrap());
    assert!(!output.exists("data_batch_2.bin.tsv").await.unwrap());
    // The job destroyed its service.
    let rm =
        spindle_deploy::yarn::rm::ResourceManager::new(&cluster.rm, Some(cluster.user.clone()))
            .unwrap();
    assert!(!rm.exists(&rerun).await.unwrap());
}
