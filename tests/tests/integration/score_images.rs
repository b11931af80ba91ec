//! Image batch scoring end to end: synthetic CIFAR-10 binary and TFRecord shards scored with the
//! zoo's cifar10 and inception_v3, in-process and through a real server on port 0, the two
//! giving the same numbers; damaged records reported and skipped; the `spindle data` and
//! `spindle score` commands; shards read from a real HDFS.

use clap::Parser;
use spindle_client::{Client, InferRequest};
use spindle_core::{Tensor, TensorData};
use spindle_score::Silent;
use spindle_score::images::backend::{ImageModel, LocalImages, RemoteImages};
use spindle_score::images::input::{Io, expand};
use spindle_score::images::job::{ImageJob, ImageSummary};
use spindle_score::images::synth::{self, Encoding, SynthConfig};
use spindle_score::images::{InputFormat, example, tfrecord};
use spindle_tests::{serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;
use std::path::Path;

fn synth_config(out: &Path, records: u64, shards: usize, classes: u32) -> SynthConfig {
    SynthConfig {
        out: out.to_path_buf(),
        records,
        shards,
        seed: 11,
        classes,
        gzip: false,
    }
}

fn job(pattern: &str, format: InputFormat, output: &Path, top: usize) -> ImageJob {
    ImageJob {
        shards: expand(pattern, &Io::new().unwrap()).unwrap(),
        format,
        output: output.display().to_string(),
        share: spindle_score::images::output::Share::ALL,
        batch: 8,
        workers: 2,
        engines: 1,
        top,
        max_errors: 100,
    }
}

fn run(job: &ImageJob, model: &dyn ImageModel) -> ImageSummary {
    job.run(model, &Io::new().unwrap(), &Silent).unwrap()
}

/// Every data row of a part: its columns.
fn rows(part: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(part)
        .unwrap_or_else(|e| panic!("{}: {e}", part.display()))
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// Two parts agree: same header, records, labels and classes; probabilities within 1e-5.
pub(crate) fn assert_same_scores(a: &Path, b: &Path) {
    let (a, b) = (rows(a), rows(b));
    assert_eq!(a.len(), b.len());
    assert_eq!(a[0], b[0], "headers");
    for (x, y) in a[1..].iter().zip(&b[1..]) {
        for (column, (u, v)) in a[0].iter().zip(x.iter().zip(y)) {
            if column.starts_with('p') {
                let (u, v) = (u.parse::<f64>().unwrap(), v.parse::<f64>().unwrap());
                assert!((u - v).abs() <= 1e-5, "{column}: {x:?} vs {y:?}");
            } else {
                assert_eq!(u, v, "{column}: {x:?} vs {y:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_and_through_a_server_give_the_same_numbers() {
    let repo = zoo_repo(&[ZooModel::Cifar10, ZooModel::InceptionV3]);
    let server = start(serve_config(repo.path())).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let cifar = data.path().join("cifar");
    synth::write_cifar10(&synth_config(&cifar, 40, 2, 10)).unwrap();
    let tf = data.path().join("tf");
    synth::write_tfrecord(&synth_config(&tf, 6, 2, 1000), 150, 110, Encoding::Jpeg).unwrap();

    let repo_path = repo.path().display().to_string();
    let url = format!("http://{}", server.addr);
    let (o, u) = (out.path().to_path_buf(), url.clone());
    let summaries = tokio::task::spawn_blocking(move || {
        let mut summaries = Vec::new();
        for (model, pattern, format, top) in [
            (
                "cifar10",
                format!("{}/data_batch_*.bin", cifar.display()),
                InputFormat::Cifar10,
                3,
            ),
            (
                "inception_v3",
                tf.display().to_string(),
                InputFormat::TfRecord,
                5,
            ),
        ] {
            let local = LocalImages::open(&repo_path, model, Default::default(), 1).unwrap();
            let remote =
                RemoteImages::open(std::slice::from_ref(&u), model, 0, Default::default()).unwrap();
            assert_eq!(local.labels(), remote.labels(), "{model}: class names");
            let a = run(
                &job(&pattern, format, &o.join(model).join("local"), top),
                &local,
            );
            let b = run(
                &job(&pattern, format, &o.join(model).join("remote"), top),
                &remote,
            );
            summaries.push((a, b));
        }
        summaries
    })
    .await
    .unwrap();
    for (local, remote) in &summaries {
        assert!(local.complete && remote.complete, "{local:?} {remote:?}");
        assert_eq!(local.records, remote.records);
        assert_eq!(local.precision_at_1, remote.precision_at_1);
        assert!(local.errors.is_empty(), "{:?}", local.errors);
    }
    assert_eq!(summaries[0].0.records, 40);
    assert_eq!(summaries[0].0.labelled, 40);
    assert!(summaries[0].0.recall_at_5.is_some());
    assert_eq!(summaries[1].0.records, 6);

    let cifar_out = out.path().join("cifar10");
    for part in ["data_batch_1.bin.tsv", "data_batch_2.bin.tsv"] {
        assert_same_scores(
            &cifar_out.join("local").join(part),
            &cifar_out.join("remote").join(part),
        );
        assert!(cifar_out.join("local").join("_SUCCESS").is_file());
    }
    let header = &rows(&cifar_out.join("local/data_batch_1.bin.tsv"))[0];
    // The zoo's cifar10 has labels.txt: class names ride along.
    assert_eq!(
        header.join(","),
        "record,label,label_name,top1,top1_name,p1,top2,top2_name,p2,top3,top3_name,p3"
    );
    let first = &rows(&cifar_out.join("local/data_batch_1.bin.tsv"))[1];
    let names: Vec<String> = std::fs::read_to_string(repo.path().join("cifar10/labels.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(first[4], names[first[3].parse::<usize>().unwrap()]);
    let inception = out.path().join("inception_v3");
    for part in [
        "images-00000-of-00002.tfrecord.tsv",
        "images-00001-of-00002.tfrecord.tsv",
    ] {
        assert_same_scores(
            &inception.join("local").join(part),
            &inception.join("remote").join(part),
        );
    }
    assert_eq!(
        rows(&inception.join("local/images-00000-of-00002.tfrecord.tsv"))[0].join(","),
        "record,label,top1,p1,top2,p2,top3,p3,top4,p4,top5,p5"
    );

    // The same record, sent alone to the server as the PNG the scorer made of it, gets the
    // scores the batch gave it.
    let batch = std::fs::read(data.path().join("cifar/data_batch_1.bin")).unwrap();
    let record = 5;
    let planes = &batch[record * 3073 + 1..(record + 1) * 3073];
    let png = spindle_score::images::cifar::to_png(planes);
    let client = Client::builder([url]).build().unwrap();
    let request = InferRequest::new("cifar10").input(
        "images",
        Tensor::new(vec![1], TensorData::Bytes(vec![png])).unwrap(),
    );
    let answer = client.infer(&request).await.unwrap();
    let Some(TensorData::F32(p)) = answer.output("probabilities").map(|t| &t.data) else {
        panic!("no probabilities: {answer:?}")
    };
    let row = &rows(&cifar_out.join("local/data_batch_1.bin.tsv"))[record + 1];
    assert_eq!(row[0], record.to_string());
    let top1: usize = row[3].parse().unwrap();
    let p1: f64 = row[5].parse().unwrap();
    assert!(
        (f64::from(p[top1]) - p1).abs() <= 1e-5,
        "alone {} vs batch {p1}",
        p[top1]
    );
    assert!(
        p.iter().all(|&q| q <= p[top1]),
        "the batch's top class is the single image's"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_records_are_reported_by_shard_and_record_and_the_rest_is_scored() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Five 32x32 PNG Examples per shard, as a TF builder writes them.
    let pngs: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            synth::encode(&[i * 40; 32 * 32 * 3], 32, 32, Encoding::Png)
                .unwrap()
                .0
        })
        .collect();
    let mut offsets = Vec::new();
    let mut shard = Vec::new();
    for (i, png) in pngs.iter().enumerate() {
        offsets.push(shard.len());
        tfrecord::write_record(
            &mut shard,
            &example::image_example(png, Some(i as i64), "PNG"),
        );
    }
    // a: record 1's data checksum broken, record 3 not an image.
    let mut a = shard.clone();
    a[offsets[1] + 20] ^= 0x55;
    let mut not_image = Vec::new();
    tfrecord::write_record(
        &mut not_image,
        &example::image_example(b"GIF89a....", Some(3), "GIF"),
    );
    let mut a2 = a[..offsets[3]].to_vec();
    a2.extend_from_slice(&not_image);
    a2.extend_from_slice(&a[offsets[4]..]);
    std::fs::write(data.path().join("a.tfrecord"), &a2).unwrap();
    // b: cut in the middle of record 4.
    std::fs::write(data.path().join("b.tfrecord"), &shard[..shard.len() - 7]).unwrap();

    let pattern = format!("{}/*.tfrecord", data.path().display());
    let repo_path = repo.path().display().to_string();
    let o = out.path().to_path_buf();
    let summary = tokio::task::spawn_blocking(move || {
        let local = LocalImages::open(&repo_path, "cifar10", Default::default(), 1).unwrap();
        run(&job(&pattern, InputFormat::TfRecord, &o, 1), &local)
    })
    .await
    .unwrap();
    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.records, 3 + 4);
    let example = |kind: &str| summary.errors[kind].examples.join(" | ");
    assert!(
        example("data_crc").contains("a.tfrecord:1: bad data checksum"),
        "{}",
        example("data_crc")
    );
    assert!(
        example("image").contains("a.tfrecord:3: bad image")
            && example("image").contains("not supported"),
        "{}",
        example("image")
    );
    assert!(
        example("truncated").contains("b.tfrecord:4: truncated record"),
        "{}",
        example("truncated")
    );
    let a_rows: Vec<String> = rows(&out.path().join("a.tfrecord.tsv"))[1..]
        .iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(a_rows, ["0", "2", "4"]);
    assert_eq!(rows(&out.path().join("b.tfrecord.tsv")).len(), 1 + 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_write_data_score_it_and_resume() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = |argv: Vec<String>| spindle_cli::Cli::try_parse_from(argv).unwrap();
    let s = |p: &Path| p.display().to_string();
    spindle_cli::run(cli([
        "spindle",
        "data",
        "cifar10",
        "--out",
        &s(&data),
        "--records",
        "30",
        "--shards",
        "3",
        "--gzip",
    ]
    .map(String::from)
    .to_vec()))
    .await
    .unwrap();
    let out = dir.path().join("scores");
    let summary = dir.path().join("summary.json");
    let score = [
        "spindle",
        "score",
        "--model",
        "cifar10",
        "--local",
        "--repo",
        &s(repo.path()),
        "--input",
        &format!("{}/data_batch_*", s(&data)),
        "--output",
        &s(&out),
        "--top",
        "2",
        "--quiet",
        "--summary",
        &s(&summary),
    ]
    .map(String::from)
    .to_vec();
    spindle_cli::run(cli(score.clone())).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["records"], 30);
    assert_eq!(json["shards_scored"], 3);
    assert!(
        json["precision_at_1"].as_f64().is_some() && json["recall_at_5"].as_f64().is_some(),
        "{json}"
    );
    assert!(json["images_per_s"].as_f64().unwrap() > 0.0);
    // The .gz goes from the part's name; a rerun finds every part done.
    assert_eq!(rows(&out.join("data_batch_3.bin.tsv")).len(), 1 + 10);
    let mut bad = score.clone();
    bad.extend(["--format".to_string(), "jpeg".to_string()]);
    spindle_cli::run(cli(score)).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(
        (json["records"].as_u64(), json["shards_skipped"].as_u64()),
        (Some(0), Some(3))
    );

    // A format it does not know is refused, naming the ones it does.
    let err = spindle_cli::run(cli(bad)).await.unwrap_err();
    assert!(
        format!("{err:#}").contains(
            "--format: unknown image format 'jpeg'; expected cifar10, tfrecord, files or list"
        ),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cifar10_shards_on_hdfs_score_like_local_ones() {
    let Some(base) = spindle_tests::hdfs::shared_url() else {
        return;
    };
    let url = spindle_tests::hdfs::unique_dir(&base, "score-images");
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    synth::write_cifar10(&synth_config(data.path(), 20, 2, 10)).unwrap();
    let storage = spindle_loader::Storage::new(&url, spindle_loader::HDFS_RETRY).unwrap();
    for name in ["data_batch_1.bin", "data_batch_2.bin"] {
        let bytes = std::fs::read(data.path().join(name)).unwrap();
        storage.write(name, &bytes).await.unwrap();
    }
    let repo_path = repo.path().display().to_string();
    let (o, local_pattern) = (
        out.path().to_path_buf(),
        format!("{}/data_batch_*.bin", data.path().display()),
    );
    let (a, b) = tokio::task::spawn_blocking(move || {
        let model = LocalImages::open(&repo_path, "cifar10", Default::default(), 1).unwrap();
        let a = run(
            &job(
                &format!("{url}/data_batch_*.bin"),
                InputFormat::Cifar10,
                &o.join("hdfs"),
                2,
            ),
            &model,
        );
        let b = run(
            &job(&local_pattern, InputFormat::Cifar10, &o.join("local"), 2),
            &model,
        );
        (a, b)
    })
    .await
    .unwrap();
    assert!(a.complete && b.complete);
    assert_eq!((a.records, a.precision_at_1), (b.records, b.precision_at_1));
    for part in ["data_batch_1.bin.tsv", "data_batch_2.bin.tsv"] {
        assert_same_scores(
            &out.path().join("hdfs").join(part),
            &out.path().join("local").join(part),
        );
    }
}
