//! Image and Criteo scoring on the real Hadoop 3 cluster of `scripts/hadoop.sh`: parts written
//! to HDFS (renamed into place, `_SUCCESS`, reruns that skip finished shards), and `spindle
//! score --yarn` running executors as run-once YARN containers started from the uploaded
//! tarball, on the CPU partition, writing to HDFS, their summaries merged by the submitting
//! command; an executor killed half-way is named with the shards it left, and a rerun scores
//! only those.

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
use std::path::Path;
use std::time::{Duration, Instant};

const SHARDS: [&str; 4] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
];

/// Writes four synthetic CIFAR-10 shards of 25 images each under `dir/data` on HDFS.
async fn upload_shards(dir: &str) -> Storage {
    upload_cifar10(dir, SHARDS.len(), 100).await
}

/// Writes `shards` synthetic CIFAR-10 shards of `records` images in all under `dir/data` on
/// HDFS (`data_batch_1.bin`, ...).
pub(crate) async fn upload_cifar10(dir: &str, shards: usize, records: u64) -> Storage {
    let local = tempfile::tempdir().unwrap();
    synth::write_cifar10(&SynthConfig {
        out: local.path().to_path_buf(),
        records,
        shards,
        seed: 5,
        classes: 10,
        gzip: false,
    })
    .unwrap();
    let data = Storage::new(&format!("{dir}/data"), HDFS_RETRY).unwrap();
    for i in 1..=shards {
        let name = format!("data_batch_{i}.bin");
        let bytes = std::fs::read(local.path().join(&name)).unwrap();
        data.write(&name, &bytes).await.unwrap();
    }
    data
}

/// `spindle zoo --out DIR/models --models MODEL`: the repository the executors read.
fn zoo_on_hdfs(dir: &str, model: &str) -> String {
    let repo = format!("{dir}/models");
    let (ok, _, err) = spindle(
        &["zoo", "--out", &repo, "--models", model],
        Duration::from_secs(120),
    );
    assert!(ok, "spindle zoo --out {repo}: {err}");
    repo
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

/// `spindle score --yarn` of cifar10 over `DIR/data/data_batch_*.bin` into `DIR/out`, with
/// two executors (see [`score_model_on_yarn`]).
fn score_on_yarn(
    cluster: &Hadoop3,
    dir: &str,
    repo: &str,
    name: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut extra = extra.to_vec();
    extra.extend(["--top", "5"]);
    let input = format!("{dir}/data/data_batch_*.bin");
    score_model_on_yarn(cluster, dir, repo, name, ("cifar10", &input), &extra)
}

/// `spindle score --yarn` of `model` over `input` into `DIR/out`, with two executors of 1
/// vcore and 512 MB on the CPU partition (its one NodeManager has 4 GB: both fit beside the
/// service AM).
fn score_model_on_yarn(
    cluster: &Hadoop3,
    dir: &str,
    repo: &str,
    name: &str,
    model_input: (&str, &str),
    extra: &[&str],
) -> (bool, String, String) {
    let extra = [&["--repo", repo][..], extra].concat();
    yarn_score_job(cluster, dir, name, model_input, "2", &extra)
}

/// `spindle score --yarn` of `model` over `input` into `DIR/out` (staging in `DIR/staging`),
/// with `executors` executors of 1 vcore and 512 MB on the CPU partition, and `extra` flags
/// (what they score with, first).
pub(crate) fn yarn_score_job(
    cluster: &Hadoop3,
    dir: &str,
    name: &str,
    (model, input): (&str, &str),
    executors: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let output = format!("{dir}/out");
    let staging = format!("{dir}/staging");
    let mut args = vec![
        "score",
        "--model",
        model,
        "--input",
        input,
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
        executors,
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
    let repo = zoo_on_hdfs(&dir, "cifar10");
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
    let input = format!("{dir}/data/data_batch_*.bin");
    let local = score_in_process(("cifar10", &repo), &input, &local_out.path().join("parts"));
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

/// `spindle score --local` of `model` from `repo` over `input` into the local directory
/// `parts` (ONNX Runtime, as the executors): its summary.
fn score_in_process((model, repo): (&str, &str), input: &str, parts: &Path) -> serde_json::Value {
    let summary = parts.with_extension("summary.json");
    let (ok, _, err) = spindle(
        &[
            "score",
            "--model",
            model,
            "--local",
            "--repo",
            repo,
            "--engine",
            "ort",
            "--input",
            input,
            "--output",
            parts.to_str().unwrap(),
            "--summary",
            summary.to_str().unwrap(),
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "spindle score --local {model} {input}: {err}");
    serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap()
}

/// The process ids whose command line holds every one of `words` (as whole arguments).
fn processes_with(words: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if words.iter().all(|w| args.contains(&w.as_bytes())) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_killed_half_way_is_named_with_its_shards_and_a_rerun_scores_only_those() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "score-yarn-killed");
    // Executor 1 takes shards 2, 4, 6 and 8: 1,600 images, seconds of work on one vcore.
    upload_cifar10(&dir, 8, 3_200).await;
    let repo = zoo_on_hdfs(&dir, "cifar10");
    let name = hadoop3::unique_name("score-killed");
    let _guard = hadoop3::Service::guard(&cluster, &name);
    let output = format!("{dir}/out");
    let job = {
        let (cluster, dir, repo, name) = (cluster.clone(), dir.clone(), repo.clone(), name.clone());
        std::thread::spawn(move || score_on_yarn(&cluster, &dir, &repo, &name, &[]))
    };
    // The executor is a process of a NodeManager on this machine: `spindle score ... --output
    // OUTPUT ... --executor 1/2`. Killed once it has started, before it can finish its share.
    let deadline = Instant::now() + Duration::from_secs(120);
    let victim = loop {
        if let Some(&pid) = processes_with(&[&output, "1/2", "--executor"]).first() {
            break pid;
        }
        assert!(
            !job.is_finished() && Instant::now() < deadline,
            "executor 1 never showed up as a process here"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -KILL {victim}");
    let (ok, out, err) = job.join().unwrap();
    assert!(!ok, "a job with a killed executor must fail:\n{out}\n{err}");
    assert!(
        err.contains("1 executor(s) ended without a summary"),
        "{err}"
    );
    assert!(out.contains("failed executor: 1 (container"), "{out}");
    let storage = Storage::new(&output, HDFS_RETRY).unwrap();
    assert!(!storage.exists("_SUCCESS").await.unwrap());
    // Executor 0's share is complete; each of executor 1's shards without a part is named.
    let files = list(&storage, "").await;
    let missing: Vec<String> = (1..=8)
        .map(|i| format!("data_batch_{i}.bin"))
        .filter(|shard| !files.contains(&format!("{shard}.tsv")))
        .collect();
    assert!(
        !missing.is_empty(),
        "executor 1 finished before it was killed: {files:?}"
    );
    for shard in &missing {
        let number: usize = shard[11..shard.len() - 4].parse().unwrap();
        assert_eq!(
            number % 2,
            0,
            "only executor 1's shards are missing: {missing:?}"
        );
        assert!(
            out.contains(&format!("{shard}: executor 1 ended without scoring it")),
            "{shard} not named:\n{out}"
        );
    }

    let rerun = hadoop3::unique_name("score-killed");
    let _guard = hadoop3::Service::guard(&cluster, &rerun);
    let summary_file = tempfile::NamedTempFile::new().unwrap();
    let summary_path = summary_file.path().to_str().unwrap();
    let (ok, out, err) = score_on_yarn(
        &cluster,
        &dir,
        &repo,
        &rerun,
        &["--summary", summary_path, "--quiet"],
    );
    assert!(ok, "the rerun failed:\n{out}\n{err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    assert_eq!(summary["shards_scored"], missing.len(), "{summary}");
    assert_eq!(summary["shards_skipped"], 8 - missing.len(), "{summary}");
    assert_eq!(summary["records"], 400 * missing.len(), "{summary}");
    assert!(storage.exists("_SUCCESS").await.unwrap());
}

/// Four generated Criteo shards of 600 rows each (two generated days, the second gzipped).
fn criteo_data() -> tempfile::TempDir {
    use spindle_criteo::generate::{GenerateConfig, generate};
    use spindle_criteo::shard::Compression;
    let data = tempfile::tempdir().unwrap();
    for (day, compression) in [(0, Compression::None), (1, Compression::Gzip)] {
        let config = GenerateConfig {
            out: data.path().join(format!("d{day}")),
            days: 1,
            rows_per_day: 1_200,
            shards_per_day: 2,
            compression,
            seed: 3 + day,
        };
        generate(&config, &|_| {}).unwrap();
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn criteo_rows_scored_as_a_yarn_job_into_hdfs_match_scoring_in_process() {
    let Some(cluster) = hadoop3::cluster() else {
        return;
    };
    let dir = unique_dir(&cluster.hdfs, "score-yarn-criteo");
    let local = criteo_data();
    let data = Storage::new(&format!("{dir}/data"), HDFS_RETRY).unwrap();
    let mut shards = Vec::new();
    for (day, ext) in [(0, ""), (1, ".gz")] {
        for part in ["part-00000", "part-00001"] {
            let name = format!("{part}-d{day}{ext}");
            let path = local.path().join(format!("d{day}/day_0/{part}{ext}"));
            data.write(&name, &std::fs::read(path).unwrap())
                .await
                .unwrap();
            shards.push(name);
        }
    }
    shards.sort();
    let repo = zoo_on_hdfs(&dir, "criteo_ctr");
    let name = hadoop3::unique_name("score-criteo");
    let _guard = hadoop3::Service::guard(&cluster, &name);
    let summary_file = tempfile::NamedTempFile::new().unwrap();
    let summary_path = summary_file.path().to_str().unwrap();
    let input = format!("{dir}/data/part-*");
    let (ok, out, err) = score_model_on_yarn(
        &cluster,
        &dir,
        &repo,
        &name,
        ("criteo_ctr", &input),
        &["--engine", "ort", "--summary", summary_path, "--quiet"],
    );
    assert!(ok, "the job failed:\n{out}\n{err}");
    assert!(out.contains("2 executor(s) on YARN: 2400 rows"), "{out}");
    let yarn: serde_json::Value =
        serde_json::from_slice(&std::fs::read(summary_path).unwrap()).unwrap();
    assert_eq!(
        (&yarn["rows"], &yarn["shards_scored"], &yarn["complete"]),
        (
            &serde_json::json!(2400),
            &serde_json::json!(4),
            &serde_json::json!(true)
        ),
        "{yarn}"
    );
    let output = Storage::new(&format!("{dir}/out"), HDFS_RETRY).unwrap();
    let parts: Vec<String> = shards
        .iter()
        .map(|s| format!("{}.tsv", s.trim_end_matches(".gz")))
        .collect();
    let mut expected = parts.clone();
    expected.extend(["_SUCCESS".to_string(), "_summary".to_string()]);
    expected.sort();
    assert_eq!(list(&output, "").await, expected);

    // In-process from the same HDFS shards into a local directory: the same parts, and the
    // metrics the executors' summaries merged into.
    let local_out = tempfile::tempdir().unwrap();
    let parts_dir = local_out.path().join("parts");
    let in_process = score_in_process(("criteo_ctr", &repo), &input, &parts_dir);
    assert_eq!(yarn["labelled_rows"], in_process["labelled_rows"]);
    let close = |key: &str, tolerance: f64| {
        let (a, b) = (
            yarn[key].as_f64().unwrap(),
            in_process[key].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() <= tolerance,
            "{key}: YARN {a}, in-process {b}"
        );
    };
    close("log_loss", 1e-9);
    // The job's AUC comes from coarser bins (ties within 2^-16 count half).
    close("auc", 1e-3);
    for part in &parts {
        let remote = output.read(part).await.unwrap().unwrap();
        let here = std::fs::read(parts_dir.join(part)).unwrap();
        assert!(remote == here, "{part} differs between YARN and in-process");
    }

    // In-process into HDFS: a lost part is scored again alone, and _SUCCESS comes back.
    output.delete(&parts[2]).await.unwrap();
    output.delete("_SUCCESS").await.unwrap();
    let out_url = format!("{dir}/out");
    let (ok, stdout, err) = spindle(
        &[
            "score",
            "--model",
            "criteo_ctr",
            "--local",
            "--repo",
            &repo,
            "--engine",
            "ort",
            "--input",
            &input,
            "--output",
            &out_url,
            "--quiet",
        ],
        Duration::from_secs(60),
    );
    assert!(ok, "{err}");
    assert!(
        stdout.contains("shards: 1 scored, 3 already complete, 0 failed"),
        "{stdout}"
    );
    let rescored = output.read(&parts[2]).await.unwrap().unwrap();
    assert!(rescored == std::fs::read(parts_dir.join(&parts[2])).unwrap());
    assert!(output.exists("_SUCCESS").await.unwrap());
    assert!(!list(&output, "").await.iter().any(|f| f.ends_with(".tmp")));
}
