//! The image-scoring job: shards in, one TSV part per shard out (a local directory or HDFS),
//! written under a hidden temporary name and renamed when the shard is complete, `_SUCCESS`
//! when every shard is, so a rerun scores only what is missing. An executor of a YARN job
//! scores only its [`Share`] of the shards and leaves `_SUCCESS` to the job.
//!
//! Threads: `workers` preparing threads each take whole shards, read their records, and turn
//! batches of them into the model's input ([`ImageModel::prepare`]: in-process, decoding and
//! preprocessing; through servers, nothing); `engines` classifier threads take prepared batches
//! from a bounded queue. A preparing thread prepares its next batch while its previous one is
//! being classified, so with more preparing threads than engine threads the engine, not the
//! JPEG decoder, sets the pace.
//!
//! A record that cannot be scored (bad checksum, cut file, not an Example, an image that does
//! not decode) is counted by kind, listed as `shard:record: why` among the first examples, and
//! left out of the part; past `max_errors` of them the job stops without `_SUCCESS`.

use super::backend::{Classifier, ClassifyError, ImageModel};
use super::input::{Io, Shard};
use super::output::{Output, Share};
use super::{InputFormat, Record, RecordProblem};
use crate::Progress;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use spindle_core::Tensor;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Problems listed by name in the summary, per kind.
pub(crate) const EXAMPLES: usize = 5;

/// What an image job does.
pub struct ImageJob {
    /// Input shards, sorted.
    pub shards: Vec<Shard>,
    /// Their format.
    pub format: InputFormat,
    /// Output directory: a local path or `hdfs://...`.
    pub output: String,
    /// Which of the shards this process scores ([`Share::ALL`] unless it is one executor of
    /// several; then it writes no `_SUCCESS`).
    pub share: Share,
    /// Images per classifier call (at most the model's `max_batch_size`).
    pub batch: usize,
    /// Preparing threads (shards read and prepared at once).
    pub workers: usize,
    /// Classifier threads (batches classified at once).
    pub engines: usize,
    /// Classes written per record (`--top`).
    pub top: usize,
    /// Bad records tolerated before the job stops.
    pub max_errors: u64,
}

/// Bad records of one kind.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorCount {
    /// How many.
    pub count: u64,
    /// The first few, as `shard:record: why`.
    pub examples: Vec<String>,
}

/// The result of an image job, printed and optionally written as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageSummary {
    /// Where it ran.
    pub backend: String,
    /// Images scored in this run.
    pub records: u64,
    /// Seconds this run took.
    pub seconds: f64,
    /// Images per second.
    pub images_per_s: f64,
    /// Shards scored in this run.
    pub shards_scored: usize,
    /// Shards whose part was already complete.
    pub shards_skipped: usize,
    /// Shards that could not be scored, with why.
    pub shards_failed: Vec<String>,
    /// Bad records by kind (`truncated`, `length_crc`, `data_crc`, `example`, `file`, `image`).
    pub errors: BTreeMap<String, ErrorCount>,
    /// Scored records that had a label.
    pub labelled: u64,
    /// Share of labelled records whose top class is the label.
    pub precision_at_1: Option<f64>,
    /// Share of labelled records whose label is among the top 5 (models with 5 classes or more).
    pub recall_at_5: Option<f64>,
    /// Whether the job stopped on `max_errors`.
    pub stopped_on_errors: bool,
    /// Whether `_SUCCESS` was written.
    pub complete: bool,
}

/// A batch sent to a classifier thread, and where its answer goes.
struct Work {
    input: Tensor,
    reply: mpsc::Sender<Result<Vec<f32>, ClassifyError>>,
}

#[derive(Default)]
struct Shared {
    records: AtomicU64,
    scored: AtomicUsize,
    bad: AtomicU64,
    stop: AtomicBool,
    labelled: AtomicU64,
    top1: AtomicU64,
    top5: AtomicU64,
    errors: Mutex<BTreeMap<String, ErrorCount>>,
    failed: Mutex<Vec<String>>,
}

impl ImageJob {
    /// Runs the job on `model`, reporting finished shards to `progress`. The caller decides
    /// the exit code from the summary's `complete`.
    pub fn run(
        &self,
        model: &dyn ImageModel,
        io: &Io,
        progress: &dyn Progress,
    ) -> anyhow::Result<ImageSummary> {
        let started = Instant::now();
        if self.batch == 0 || self.top == 0 {
            anyhow::bail!("the batch and --top must be at least 1");
        }
        let output = Output::open(&self.output, io)?;
        // Part names come from every shard, so each executor names its share's parts as a
        // single process would.
        let (pending, skipped) =
            output.pending(&self.shards, part_names(&self.shards), self.share)?;
        let shared = Shared::default();
        progress.start(pending.len() as u64);
        if !pending.is_empty() {
            let classifiers = model.classifiers(self.engines.max(1))?;
            self.score_all(
                model,
                io,
                &output,
                &pending,
                classifiers,
                &shared,
                progress,
                started,
            );
        }
        progress.finish();

        let stopped = shared.stop.load(Ordering::Relaxed);
        let failed = shared.failed.into_inner().expect("threads joined");
        let complete = failed.is_empty() && !stopped;
        if complete && !self.share.is_partial() {
            output.write(crate::SUCCESS, b"")?;
        }
        let records = shared.records.load(Ordering::Relaxed);
        let labelled = shared.labelled.load(Ordering::Relaxed);
        let share = |n: &AtomicU64| {
            (labelled > 0).then(|| n.load(Ordering::Relaxed) as f64 / labelled as f64)
        };
        let seconds = started.elapsed().as_secs_f64();
        Ok(ImageSummary {
            backend: model.describe(),
            records,
            seconds,
            images_per_s: records as f64 / seconds.max(1e-9),
            shards_scored: shared.scored.load(Ordering::Relaxed),
            shards_skipped: skipped,
            shards_failed: failed,
            errors: shared.errors.into_inner().expect("threads joined"),
            labelled,
            precision_at_1: share(&shared.top1),
            recall_at_5: if model.classes() >= 5 {
                share(&shared.top5)
            } else {
                None
            },
            stopped_on_errors: stopped,
            complete,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn score_all(
        &self,
        model: &dyn ImageModel,
        io: &Io,
        output: &Output,
        pending: &[(&Shard, String)],
        classifiers: Vec<Box<dyn Classifier>>,
        shared: &Shared,
        progress: &dyn Progress,
        started: Instant,
    ) {
        // One batch waiting per classifier: enough to keep each busy, little memory held.
        let (queue, work) = mpsc::sync_channel::<Work>(classifiers.len());
        let work = Arc::new(Mutex::new(work));
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for mut classifier in classifiers {
                let work = Arc::clone(&work);
                scope.spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next batch.
                        let job = work.lock().expect("no panics while held").recv();
                        let Ok(job) = job else { break };
                        let _ = job.reply.send(classifier.classify(job.input));
                    }
                });
            }
            let workers = self.workers.clamp(1, pending.len());
            for _ in 0..workers {
                let queue = queue.clone();
                let next = &next;
                scope.spawn(move || {
                    while !shared.stop.load(Ordering::Relaxed) {
                        let Some((shard, part)) = pending.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            break;
                        };
                        let writer = ShardScorer {
                            job: self,
                            model,
                            shard,
                            shared,
                            queue: &queue,
                        };
                        match writer.score_into(part, io, output) {
                            Ok(true) => {
                                shared.scored.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(false) => {}
                            Err(e) => shared
                                .failed
                                .lock()
                                .expect("no panics while held")
                                .push(format!("{}: {e:#}", shard.display)),
                        }
                        let records = shared.records.load(Ordering::Relaxed);
                        progress
                            .shard_done(records, records as f64 / started.elapsed().as_secs_f64());
                    }
                });
            }
            // The classifier threads end when every preparing thread has dropped its sender.
            drop(queue);
        });
    }
}

/// One preparing thread's work on one shard.
struct ShardScorer<'a> {
    job: &'a ImageJob,
    model: &'a dyn ImageModel,
    shard: &'a Shard,
    shared: &'a Shared,
    queue: &'a mpsc::SyncSender<Work>,
}

/// A batch handed to a classifier, with the records it holds.
struct InFlight {
    records: Vec<Record>,
    answer: mpsc::Receiver<Result<Vec<f32>, ClassifyError>>,
}

impl ShardScorer<'_> {
    /// Scores the shard into the part `part` of `output` (published whole at the end, see
    /// [`Output::publish`]); `Ok(false)` when the job was stopped meanwhile.
    fn score_into(&self, part: &str, io: &Io, output: &Output) -> anyhow::Result<bool> {
        match self.write_part(io)? {
            Some(bytes) => output.publish(part, &bytes).map(|()| true),
            None => Ok(false),
        }
    }

    /// The part's bytes; `None` when the job was stopped meanwhile.
    fn write_part(&self, io: &Io) -> anyhow::Result<Option<Vec<u8>>> {
        let mut out = PartWriter::new(self.job, self.model, self.job.format != InputFormat::Files);
        let batch_size = match self.model.max_batch() {
            0 => self.job.batch,
            max => self.job.batch.min(max),
        };
        let mut batch: Vec<Record> = Vec::with_capacity(batch_size);
        let mut in_flight: Option<InFlight> = None;
        let mut failure: Option<anyhow::Error> = None;
        self.shard
            .for_each_record(self.job.format, io, &mut |index, record| {
                match record {
                    Ok(record) => batch.push(record),
                    Err(problem) => self.bad(index, &problem),
                }
                if batch.len() == batch_size {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
                    if let Err(e) = self.pipeline(full, &mut in_flight, &mut out) {
                        failure = Some(e);
                    }
                }
                failure.is_none() && !self.shared.stop.load(Ordering::Relaxed)
            })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if self.shared.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        if !batch.is_empty() {
            self.pipeline(batch, &mut in_flight, &mut out)?;
        }
        if let Some(last) = in_flight.take() {
            self.finish(last, &mut out)?;
        }
        Ok(Some(out.out))
    }

    /// Prepares `records` while the previous batch is classified, then writes the previous
    /// batch and sends this one.
    fn pipeline(
        &self,
        records: Vec<Record>,
        in_flight: &mut Option<InFlight>,
        out: &mut PartWriter,
    ) -> anyhow::Result<()> {
        let (records, input) = self.prepare(records);
        if let Some(previous) = in_flight.take() {
            self.finish(previous, out)?;
        }
        if let Some(input) = input {
            *in_flight = Some(self.send(records, input)?);
        }
        Ok(())
    }

    /// The batch's input; images that fail alone are reported and left out.
    fn prepare(&self, records: Vec<Record>) -> (Vec<Record>, Option<Tensor>) {
        let encoded: Vec<Vec<u8>> = records.iter().map(|r| r.encoded.clone()).collect();
        match self.model.prepare(encoded) {
            Ok(input) => (records, Some(input)),
            Err(_) => {
                let good = self.drop_bad_images(records);
                let encoded = good.iter().map(|r| r.encoded.clone()).collect();
                match self.model.prepare(encoded) {
                    Ok(input) if !good.is_empty() => (good, Some(input)),
                    _ => (Vec::new(), None),
                }
            }
        }
    }

    /// Checks each image alone; reports and removes those that fail.
    fn drop_bad_images(&self, records: Vec<Record>) -> Vec<Record> {
        records
            .into_iter()
            .filter(|r| match self.model.check_one(&r.encoded) {
                Ok(()) => true,
                Err(why) => {
                    self.bad(r.index, &RecordProblem::Image(why));
                    false
                }
            })
            .collect()
    }

    fn send(&self, records: Vec<Record>, input: Tensor) -> anyhow::Result<InFlight> {
        let (reply, answer) = mpsc::channel();
        self.queue
            .send(Work { input, reply })
            .map_err(|_| anyhow::anyhow!("the classifier threads have stopped"))?;
        Ok(InFlight { records, answer })
    }

    /// Waits for a batch's probabilities and writes its rows. A batch the server refused is
    /// sifted image by image, and what is left sent again.
    fn finish(&self, batch: InFlight, out: &mut PartWriter) -> anyhow::Result<()> {
        let answer = batch.answer.recv().context("a classifier thread stopped")?;
        let (records, probabilities) = match answer {
            Ok(p) => (batch.records, p),
            Err(ClassifyError::Refused(why)) => {
                let good = self.drop_bad_images(batch.records);
                if good.is_empty() {
                    return Ok(());
                }
                let encoded = good.iter().map(|r| r.encoded.clone()).collect();
                let input = self
                    .model
                    .prepare(encoded)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let retry = self.send(good, input)?;
                match retry.answer.recv().context("a classifier thread stopped")? {
                    Ok(p) => (retry.records, p),
                    Err(e) => anyhow::bail!(
                        "a batch was refused ({why}), and again without its bad images: {e}"
                    ),
                }
            }
            Err(ClassifyError::Failed(e)) => return Err(e),
        };
        out.rows(&records, &probabilities, self.shared)?;
        self.shared
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Counts a bad record, keeps the first few of its kind, and stops the job past
    /// `max_errors`.
    fn bad(&self, index: u64, problem: &RecordProblem) {
        let seen = self.shared.bad.fetch_add(1, Ordering::Relaxed) + 1;
        let mut errors = self.shared.errors.lock().expect("no panics while held");
        let count = errors.entry(problem.kind().to_string()).or_default();
        count.count += 1;
        if count.examples.len() < EXAMPLES {
            count
                .examples
                .push(format!("{}:{index}: {problem}", self.shard.display));
        }
        drop(errors);
        if seen > self.job.max_errors {
            self.shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// One TSV part being written, in memory: a part is a line per image, small beside the shard
/// it comes from, and is published whole.
struct PartWriter<'a> {
    out: Vec<u8>,
    labels: Option<&'a [String]>,
    classes: usize,
    top: usize,
    label_column: bool,
    line: String,
    order: Vec<usize>,
}

impl<'a> PartWriter<'a> {
    /// Starts a part with its header: `record`, `label` (and `label_name`) when the input has
    /// labels, then `top1` (`top1_name`) `p1` ... up to `--top`.
    fn new(job: &ImageJob, model: &'a dyn ImageModel, label_column: bool) -> PartWriter<'a> {
        let labels = model.labels();
        let classes = model.classes();
        let mut header = String::from("record");
        if label_column {
            header.push_str("\tlabel");
            if labels.is_some() {
                header.push_str("\tlabel_name");
            }
        }
        let top = job.top.min(classes);
        for k in 1..=top {
            header.push_str(&format!("\ttop{k}"));
            if labels.is_some() {
                header.push_str(&format!("\ttop{k}_name"));
            }
            header.push_str(&format!("\tp{k}"));
        }
        header.push('\n');
        PartWriter {
            out: header.into_bytes(),
            labels,
            classes,
            top,
            label_column,
            line: String::new(),
            order: Vec::new(),
        }
    }

    /// The name of `class` (empty without `labels.txt`); tied to the labels, not to `self`,
    /// so it can be written into `self.line`.
    fn name(&self, class: usize) -> &'a str {
        self.labels
            .and_then(|l| l.get(class))
            .map_or("", String::as_str)
    }

    /// Writes one row per record and adds the labelled ones to the metrics.
    fn rows(
        &mut self,
        records: &[Record],
        probabilities: &[f32],
        shared: &Shared,
    ) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let ranked = self.top.max(5).min(self.classes);
        let (mut labelled, mut top1, mut top5) = (0, 0, 0);
        for (record, row) in records.iter().zip(probabilities.chunks(self.classes)) {
            self.order.clear();
            self.order.extend(0..self.classes);
            let by_score = |a: &usize, b: &usize| row[*b].total_cmp(&row[*a]).then(a.cmp(b));
            if ranked < self.classes {
                self.order.select_nth_unstable_by(ranked, by_score);
            }
            self.order[..ranked].sort_unstable_by(by_score);
            self.line.clear();
            write!(self.line, "{}", record.index).expect("to a String");
            if self.label_column {
                self.line.push('\t');
                if let Some(label) = record.label {
                    write!(self.line, "{label}").expect("to a String");
                }
                if self.labels.is_some() {
                    self.line.push('\t');
                    let name =
                        usize::try_from(record.label.unwrap_or(-1)).map_or("", |c| self.name(c));
                    self.line.push_str(name);
                }
            }
            for &class in &self.order[..self.top] {
                write!(self.line, "\t{class}").expect("to a String");
                if self.labels.is_some() {
                    let name = self.name(class);
                    write!(self.line, "\t{name}").expect("to a String");
                }
                write!(self.line, "\t{:.6}", row[class]).expect("to a String");
            }
            self.line.push('\n');
            self.out.extend_from_slice(self.line.as_bytes());
            if let Some(label) = record.label {
                labelled += 1;
                let hit = |n: usize| {
                    self.order[..n.min(ranked)]
                        .iter()
                        .any(|&c| c as i64 == label)
                };
                top1 += u64::from(hit(1));
                top5 += u64::from(hit(5));
            }
        }
        shared.labelled.fetch_add(labelled, Ordering::Relaxed);
        shared.top1.fetch_add(top1, Ordering::Relaxed);
        shared.top5.fetch_add(top5, Ordering::Relaxed);
        Ok(())
    }
}

/// The part each shard is scored into, in order: its path below the directory all the shards
/// share, without `.gz` or `.bz2`, plus `.tsv`.
pub fn part_names(shards: &[Shard]) -> Vec<String> {
    let common = common_prefix(shards);
    shards.iter().map(|s| part_name(&common, s)).collect()
}

/// The directory part of the shards' paths that they all share (up to a `/`).
fn common_prefix(shards: &[Shard]) -> String {
    let first = &shards[0].display;
    let mut end = first.rfind('/').map_or(0, |i| i + 1);
    for shard in &shards[1..] {
        while !shard.display.starts_with(&first[..end]) {
            end = first[..end.saturating_sub(1)]
                .rfind('/')
                .map_or(0, |i| i + 1);
        }
    }
    first[..end].to_string()
}

/// The part of a shard: its path below the common prefix, without `.gz` (or Criteo's `.bz2`),
/// plus `.tsv`.
fn part_name(common: &str, shard: &Shard) -> String {
    let relative = shard.display[common.len()..].trim_end_matches('/');
    let relative = [".gz", ".bz2"]
        .iter()
        .find_map(|ext| relative.strip_suffix(ext))
        .unwrap_or(relative);
    format!("{relative}.tsv")
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
