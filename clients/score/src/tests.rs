use super::backend::LocalFactory;
use super::*;
use prost::Message;
use spindle_core::engine::EngineChoice;
use spindle_criteo::generate::{GenerateConfig, generate};
use spindle_criteo::shard::Compression;
use spindle_criteo::spec::FeatureSpec;
use std::path::PathBuf;

/// A repository with a criteo_ctr whose weights are a fixed function of the id (no training
/// needed to test scoring), and two days of generated data, one day gzipped.
fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = FeatureSpec::criteo_default();
    let weights: Vec<f32> = (0..spec.id_space)
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 2000.0 - 0.25)
        .collect();
    let repo = dir.path().join("repo");
    spindle_zoo::write_model(&repo, &spindle_zoo::ctr::built(&spec, &weights, -3.1), 1).unwrap();
    let data = dir.path().join("data");
    for (day, compression) in [(0, Compression::None), (1, Compression::Gzip)] {
        let config = GenerateConfig {
            out: data.join(format!("gen{day}")),
            days: 1,
            rows_per_day: 1500,
            shards_per_day: 2,
            compression,
            seed: 11 + day,
        };
        generate(&config, &|_| {}).unwrap();
    }
    (dir, repo, data)
}

fn job(inputs: Vec<PathBuf>, output: &Path) -> ScoreJob {
    ScoreJob {
        inputs: inputs.iter().map(|p| Shard::local(p)).collect(),
        output: output.to_string_lossy().into_owned(),
        share: Share::ALL,
        batch: 700,
        workers: 2,
        max_errors: 1000,
    }
}

fn shards(data: &Path) -> Vec<PathBuf> {
    spindle_criteo::shard::expand_glob(&format!("{}/gen*/day_0/part-*", data.display())).unwrap()
}

fn factory(repo: &Path) -> LocalFactory {
    LocalFactory::open(&repo.to_string_lossy(), "criteo_ctr", EngineChoice::Tract).unwrap()
}

/// Weights and bias read back out of the ONNX file's initializers.
fn onnx_weights(repo: &Path) -> (Vec<f32>, f32) {
    let bytes = std::fs::read(repo.join("criteo_ctr/1/model.onnx")).unwrap();
    let model = spindle_zoo::onnx::ModelProto::decode(bytes.as_slice()).unwrap();
    let graph = model.graph.unwrap();
    let floats = |name: &str| -> Vec<f32> {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some(name))
            .unwrap();
        t.raw_data
            .as_ref()
            .unwrap()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    (floats("weights"), floats("bias")[0])
}

fn read_parts(output: &Path) -> Vec<(PathBuf, String)> {
    let mut parts: Vec<_> =
        spindle_criteo::shard::expand_glob(&format!("{}/**/*.tsv", output.display()))
            .unwrap()
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p.strip_prefix(output).unwrap().to_path_buf(), text)
            })
            .collect();
    parts.sort();
    parts
}

#[test]
fn scores_agree_with_the_onnx_file_computed_by_hand() {
    let (dir, repo, data) = fixture();
    let output = dir.path().join("out");
    let inputs = shards(&data);
    assert_eq!(inputs.len(), 4);
    let summary = job(inputs.clone(), &output).run(&factory(&repo)).unwrap();
    assert!(
        summary.complete && output.join(SUCCESS).is_file(),
        "{summary:?}"
    );
    assert_eq!((summary.rows, summary.shards_scored), (3000, 4));
    assert_eq!(summary.labelled_rows, 3000);
    assert!(summary.log_loss.is_some() && summary.auc.is_some());

    let (weights, bias) = onnx_weights(&repo);
    let transformer = Transformer::new(FeatureSpec::criteo_default()).unwrap();
    let mut ids = vec![0i64; transformer.fields()];
    for input in &inputs {
        let relative = input.strip_prefix(&data).unwrap().with_extension("");
        let name = format!("{}.tsv", relative.file_name().unwrap().to_str().unwrap());
        let part = std::fs::read_to_string(output.join(relative.with_file_name(name))).unwrap();
        let mut raw = String::new();
        std::io::Read::read_to_string(
            &mut spindle_criteo::shard::open_shard(input).unwrap(),
            &mut raw,
        )
        .unwrap();
        assert_eq!(part.lines().count(), raw.lines().count());
        for (line_number, (raw_line, scored)) in raw.lines().zip(part.lines()).enumerate() {
            let label = transformer
                .transform(raw_line.as_bytes(), &mut ids)
                .unwrap()
                .unwrap();
            let logit = f64::from(bias)
                + ids
                    .iter()
                    .map(|&i| f64::from(weights[i as usize]))
                    .sum::<f64>();
            let by_hand = 1.0 / (1.0 + (-logit).exp());
            let cols: Vec<&str> = scored.split('\t').collect();
            assert_eq!(cols[0], (line_number + 1).to_string());
            let p: f64 = cols[1].parse().unwrap();
            assert!(
                (p - by_hand).abs() < 1e-6,
                "{}:{}: scored {p}, by hand {by_hand}",
                input.display(),
                line_number + 1
            );
            assert_eq!(cols[2], if label { "1" } else { "0" });
        }
    }
}

#[test]
fn a_rerun_after_an_interruption_redoes_only_what_is_missing_and_matches() {
    let (dir, repo, data) = fixture();
    let output = dir.path().join("out");
    let factory = factory(&repo);
    job(shards(&data), &output).run(&factory).unwrap();
    let complete = read_parts(&output);

    // An interrupted run: one part never renamed (a half-written temporary left behind), no
    // _SUCCESS.
    let (victim, _) = &complete[2];
    std::fs::remove_file(output.join(victim)).unwrap();
    std::fs::remove_file(output.join(SUCCESS)).unwrap();
    let stale = output.join(victim).with_file_name(format!(
        ".{}.tmp",
        victim.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&stale, b"1\t0.5\n2\t0.").unwrap();

    let summary = job(shards(&data), &output).run(&factory).unwrap();
    assert_eq!((summary.shards_scored, summary.shards_skipped), (1, 3));
    assert_eq!(summary.rows, 750);
    assert!(summary.complete && output.join(SUCCESS).is_file());
    assert!(!stale.exists(), "the stale temporary is replaced");
    assert_eq!(read_parts(&output), complete);
}

#[test]
fn malformed_rows_are_counted_named_and_capped() {
    let (dir, repo, data) = fixture();
    let bad = data.join("gen0/day_0/part-00000");
    let mut text = std::fs::read_to_string(&bad).unwrap();
    text = text.replacen("\t", "\tnot-a-number\t", 1); // line 1: 41 columns
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines[4] = lines[4].replacen("\t", "\t12x", 1); // line 5: I1 is not an integer
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();

    let output = dir.path().join("tolerant");
    let summary = job(shards(&data), &output).run(&factory(&repo)).unwrap();
    assert!(summary.complete, "{summary:?}");
    assert_eq!((summary.malformed_rows, summary.rows), (2, 2998));
    let first = format!("{}:1: expected 39", bad.display());
    assert!(
        summary
            .malformed_examples
            .iter()
            .any(|e| e.starts_with(&first)),
        "{:?}",
        summary.malformed_examples
    );
    let fifth = format!("{}:5: column 2 (I1)", bad.display());
    assert!(
        summary
            .malformed_examples
            .iter()
            .any(|e| e.starts_with(&fifth)),
        "{:?}",
        summary.malformed_examples
    );

    let strict = dir.path().join("strict");
    let mut capped = job(shards(&data), &strict);
    capped.max_errors = 1;
    let summary = capped.run(&factory(&repo)).unwrap();
    assert!(summary.stopped_on_errors && !summary.complete);
    assert!(!strict.join(SUCCESS).exists());
}

#[test]
fn line_numbers_count_empty_lines_crlf_and_a_last_line_without_its_end() {
    let (dir, repo, data) = fixture();
    let shard = data.join("gen0/day_0/part-00000");
    let text = std::fs::read_to_string(&shard).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let rows = lines.len();
    lines.insert(2, ""); // line 3: empty, one column
    let crlf = lines[5].to_string() + "\r"; // line 6: CRLF, still a good row
    lines[5] = &crlf;
    std::fs::write(&shard, lines.join("\n")).unwrap(); // no newline after the last row

    let output = dir.path().join("out");
    let summary = job(vec![shard.clone()], &output)
        .run(&factory(&repo))
        .unwrap();
    assert_eq!((summary.rows, summary.malformed_rows), (rows as u64, 1));
    let third = format!("{}:3: expected 39", shard.display());
    assert!(
        summary.malformed_examples[0].starts_with(&third),
        "{:?}",
        summary.malformed_examples
    );
    let (_, part) = read_parts(&output).pop().unwrap();
    let numbers: Vec<&str> = part
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(
        numbers[..3],
        ["1", "2", "4"],
        "line 3 is skipped, not renumbered"
    );
    assert_eq!(numbers.last(), Some(&(rows + 1).to_string().as_str()));
}

#[test]
fn a_corrupt_shard_fails_by_name_while_the_others_are_scored() {
    let (dir, repo, data) = fixture();
    let corrupt = data.join("gen1/day_0/part-00001.gz");
    std::fs::write(&corrupt, b"\x1f\x8b\x08\x00 this is not deflate data").unwrap();
    let output = dir.path().join("out");
    let summary = job(shards(&data), &output).run(&factory(&repo)).unwrap();
    assert!(!summary.complete && !output.join(SUCCESS).exists());
    assert_eq!(summary.shards_scored, 3);
    assert_eq!(summary.shards_failed.len(), 1);
    assert!(
        summary.shards_failed[0].starts_with(&corrupt.display().to_string()),
        "{:?}",
        summary.shards_failed
    );
    assert_eq!(
        read_parts(&output).len(),
        3,
        "no part for the corrupt shard"
    );
}

#[test]
fn output_rows_are_formatted_exactly() {
    let mut out = Vec::new();
    write_row(&mut out, 12, 0.033_f32, Some(true));
    write_row(&mut out, 7, 1.0, None);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "12\t0.033000000\t1\n7\t1.000000000\n"
    );
    assert_eq!(binned_auc(&[[1, 0], [0, 1]]), Some(1.0));
    assert_eq!(binned_auc(&[[1, 1]]), Some(0.5));
}

#[test]
fn executor_shares_write_the_same_parts_and_merge_into_the_whole_jobs_metrics() {
    let (dir, repo, data) = fixture();
    let factory = factory(&repo);
    let whole = dir.path().join("whole");
    let single = job(shards(&data), &whole).run(&factory).unwrap();
    let shared = dir.path().join("shared");
    let executors: Vec<ScoreSummary> = (0..2)
        .map(|index| {
            let mut executor = job(shards(&data), &shared);
            executor.share = Share { index, count: 2 };
            executor.run(&factory).unwrap()
        })
        .collect();
    // Each took two of the four shards and left _SUCCESS to its job.
    for executor in &executors {
        assert_eq!(executor.shards_scored, 2, "{executor:?}");
        assert!(executor.complete && !executor.auc_bins.is_empty());
    }
    assert!(!shared.join(SUCCESS).exists());
    assert_eq!(read_parts(&shared), read_parts(&whole));
    assert!(single.auc_bins.is_empty(), "a whole job carries no bins");

    let merged = merge_summaries("two".into(), &executors);
    assert!(merged.complete);
    assert_eq!(
        (merged.rows, merged.labelled_rows, merged.shards_scored),
        (single.rows, single.labelled_rows, 4)
    );
    let (loss, whole_loss) = (merged.log_loss.unwrap(), single.log_loss.unwrap());
    assert!((loss - whole_loss).abs() < 1e-12, "{loss} vs {whole_loss}");
    let (auc, whole_auc) = (merged.auc.unwrap(), single.auc.unwrap());
    assert!((auc - whole_auc).abs() < 1e-3, "{auc} vs {whole_auc}");
    // The summary an executor publishes is read back by its job.
    let json = serde_json::to_string(&executors[0]).unwrap();
    let back: ScoreSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(back.auc_bins, executors[0].auc_bins);
}
