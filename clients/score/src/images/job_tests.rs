//! The job against a stand-in model (no engine): parts, header, skipped and bad records,
//! metrics, `_SUCCESS`, reruns.

use super::*;
use crate::Silent;
use crate::images::backend::{Classifier, ClassifyError, ImageModel};
use crate::images::input::{Io, expand};
use crate::images::{example, tfrecord};
use spindle_core::TensorData;

/// Classifies by the image's first byte: class `b % 4`, with probability 0.7, the next class
/// 0.2, the others 0.05 each. "Preparing" refuses images starting with `!`.
struct ByFirstByte;

impl ImageModel for ByFirstByte {
    fn classes(&self) -> usize {
        6
    }
    fn labels(&self) -> Option<&[String]> {
        None
    }
    fn max_batch(&self) -> usize {
        3
    }
    fn prepare(&self, encoded: Vec<Vec<u8>>) -> Result<Tensor, String> {
        if let Some(i) = encoded.iter().position(|e| e.first() == Some(&b'!')) {
            return Err(format!("element {i}: starts with '!'"));
        }
        let firsts = encoded.iter().map(|e| f32::from(e[0])).collect::<Vec<_>>();
        Ok(Tensor::new(vec![firsts.len()], TensorData::F32(firsts)).unwrap())
    }
    fn check_one(&self, encoded: &[u8]) -> Result<(), String> {
        self.prepare(vec![encoded.to_vec()]).map(drop)
    }
    fn classifiers(&self, n: usize) -> anyhow::Result<Vec<Box<dyn Classifier>>> {
        Ok((0..n)
            .map(|_| Box::new(FirstByte) as Box<dyn Classifier>)
            .collect())
    }
    fn describe(&self) -> String {
        "stand-in".into()
    }
}

struct FirstByte;

impl Classifier for FirstByte {
    fn classify(&mut self, input: Tensor) -> Result<Vec<f32>, ClassifyError> {
        let TensorData::F32(firsts) = input.data else {
            unreachable!()
        };
        Ok(firsts
            .iter()
            .flat_map(|&b| {
                let top = b as usize % 4;
                (0..6).map(move |c| match c {
                    c if c == top => 0.7,
                    c if c == top + 1 => 0.2,
                    _ => 0.025,
                })
            })
            .collect())
    }
}

fn shard(records: &[(&[u8], i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (image, label) in records {
        tfrecord::write_record(
            &mut out,
            &example::image_example(image, Some(*label), "PNG"),
        );
    }
    out
}

#[test]
fn scores_every_good_record_reports_bad_ones_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    // Shard a: 5 records; the top class is the label for records 0, 1 and 3, record 4's label
    // is second; record 2 is refused by preparation.
    let a = shard(&[
        (b"\x00a", 0),
        (b"\x01b", 1),
        (b"!bad", 2),
        (b"\x02c", 2),
        (b"\x03d", 4),
    ]);
    std::fs::write(input.join("a.tfrecord"), &a).unwrap();
    // Shard b: its second record's data checksum is broken; the third is still scored.
    let mut b = shard(&[(b"\x00x", 0), (b"\x01y", 1), (b"\x02z", 5)]);
    let second = b.len() / 3 + 12;
    b[second + 3] ^= 0xff;
    std::fs::write(input.join("b.tfrecord"), &b).unwrap();

    let io = Io::new().unwrap();
    let job = ImageJob {
        shards: expand(&format!("{}/*.tfrecord", input.display()), &io).unwrap(),
        format: InputFormat::TfRecord,
        output: dir.path().join("out").display().to_string(),
        share: crate::images::output::Share::ALL,
        batch: 100,
        workers: 2,
        engines: 1,
        top: 2,
        max_errors: 10,
    };
    let summary = job.run(&ByFirstByte, &io, &Silent).unwrap();
    assert!(summary.complete, "{summary:?}");
    assert_eq!((summary.records, summary.shards_scored), (6, 2));
    assert_eq!(summary.errors["image"].count, 1);
    assert!(
        summary.errors["image"].examples[0]
            .ends_with("a.tfrecord:2: bad image: element 0: starts with '!'"),
        "{:?}",
        summary.errors
    );
    assert_eq!(summary.errors["data_crc"].count, 1);
    assert!(
        summary.errors["data_crc"].examples[0].contains("b.tfrecord:1: bad data checksum"),
        "{:?}",
        summary.errors
    );
    // Labelled and scored: a0 a1 a3 a4 b0 b2; top 1 right for a0 a1 a3 b0, top 5 for a4 too.
    assert_eq!(summary.labelled, 6);
    assert!(
        (summary.precision_at_1.unwrap() - 4.0 / 6.0).abs() < 1e-12,
        "{summary:?}"
    );
    // b2's label 5: class 2 leads, 3 next, then 0, 1, 4, 5 tied at 0.025 by index: not top 5.
    assert!(
        (summary.recall_at_5.unwrap() - 5.0 / 6.0).abs() < 1e-12,
        "{summary:?}"
    );

    let part = std::fs::read_to_string(dir.path().join("out/a.tfrecord.tsv")).unwrap();
    let lines: Vec<&str> = part.lines().collect();
    assert_eq!(lines[0], "record\tlabel\ttop1\tp1\ttop2\tp2");
    assert_eq!(lines[1], "0\t0\t0\t0.700000\t1\t0.200000");
    assert_eq!(
        lines[3], "3\t2\t2\t0.700000\t3\t0.200000",
        "record 2 is left out: {part}"
    );
    assert_eq!(lines.len(), 5);
    assert!(dir.path().join("out/_SUCCESS").is_file());

    // A rerun skips both parts; a removed part is scored again.
    std::fs::remove_file(dir.path().join("out/b.tfrecord.tsv")).unwrap();
    let again = job.run(&ByFirstByte, &io, &Silent).unwrap();
    assert_eq!(
        (again.shards_skipped, again.shards_scored, again.records),
        (1, 1, 2)
    );
}

#[test]
fn too_many_bad_records_stop_the_job_without_success() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(&[u8], i64)> = vec![(b"!x", 0); 5];
    std::fs::write(dir.path().join("s.tfrecord"), shard(&records)).unwrap();
    let io = Io::new().unwrap();
    let job = ImageJob {
        shards: expand(&format!("{}/s.tfrecord", dir.path().display()), &io).unwrap(),
        format: InputFormat::TfRecord,
        output: dir.path().join("out").display().to_string(),
        share: crate::images::output::Share::ALL,
        batch: 2,
        workers: 1,
        engines: 1,
        top: 1,
        max_errors: 2,
    };
    let summary = job.run(&ByFirstByte, &io, &Silent).unwrap();
    assert!(summary.stopped_on_errors && !summary.complete);
    assert!(!dir.path().join("out/_SUCCESS").exists());
    assert!(!dir.path().join("out/s.tfrecord.tsv").exists());
}
