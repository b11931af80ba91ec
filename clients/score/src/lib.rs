//! The batch-scoring client: scores raw Criteo shards (local or HDFS-style directories) and
//! image datasets ([`images`]: CIFAR-10 binary, TFRecord, image files), one output part per
//! input shard, in-process or through running servers.
//!
//! - this module: the job ([`ScoreJob`]), its summary and its [`Progress`] reports.
//! - [`backend`]: where batches are scored: [`backend::LocalFactory`] runs the model in-process
//!   with the same engines the server uses, [`backend::RemoteFactory`] sends batches to
//!   servers through the client library (load spread, retries).
//!
//! Workers (one per core) take shards from a shared list. Each reads its shard (plain, gz or
//! bz2; one on HDFS is first downloaded to a local temporary file and streamed from there),
//! transforms rows with the model's own `features.toml`, scores batches on its
//! [`backend::ScoreBackend`], and writes `row<TAB>probability[<TAB>label]` lines to a hidden
//! temporary file that is renamed into place (or, for an `hdfs://` output, uploaded and
//! renamed there) only when the shard is complete. A rerun therefore skips finished parts and
//! redoes unfinished ones; `_SUCCESS` is written only when every shard is done. Malformed rows
//! are counted and skipped up to `--max-errors`; an unreadable shard fails alone and the job
//! exits non-zero. An executor of a YARN job scores only its [`Share`] of the shards, as an
//! image job's does, and leaves `_SUCCESS` to the job ([`merge_summaries`]).

pub mod backend;
pub mod images;

use anyhow::Context;
use backend::{BackendFactory, ScoreBackend};
pub use images::input::Shard;
use images::input::{Io, LocalFile};
use images::job::part_names;
use images::output::Output;
pub use images::output::Share;
use serde::{Deserialize, Serialize};
use spindle_core::{Tensor, TensorData};
use spindle_criteo::metrics::LogLoss;
use spindle_criteo::shard::{LineChunks, lines, open_shard_stream};
use spindle_criteo::transform::{RowProblem, Transformer};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// Marker written when every shard is scored.
pub const SUCCESS: &str = "_SUCCESS";

/// Malformed rows listed by name in the summary.
const EXAMPLES: usize = 10;

/// Bins of the streaming AUC: probabilities are bucketed, so memory stays fixed however many
/// rows are scored (AUC is exact up to ties inside one bin of width 2^-20).
const AUC_BINS: usize = 1 << 20;

/// Bins an executor's summary carries for the job's AUC: coarser (ties inside a width of
/// 2^-16 count half), so a summary stays small (at most 65,536 entries).
const MERGE_BINS: usize = 1 << 16;

/// What a job does.
pub struct ScoreJob {
    /// Input shards, sorted: local files ([`Shard::local`]) or on HDFS
    /// ([`images::input::expand`]).
    pub inputs: Vec<Shard>,
    /// Output directory: a local path or `hdfs://...`.
    pub output: String,
    /// Which of the shards this process scores ([`Share::ALL`] unless it is one executor of
    /// several; then it writes no `_SUCCESS`).
    pub share: Share,
    /// Rows per backend call.
    pub batch: usize,
    /// Worker threads.
    pub workers: usize,
    /// Malformed rows tolerated before the job stops.
    pub max_errors: u64,
}

/// Where a job reports its progress: the command line draws a bar, tests and scripts use
/// [`Silent`]. Called from the worker threads.
pub trait Progress: Sync {
    /// The job has `shards` shards left to score.
    fn start(&self, _shards: u64) {}
    /// One more shard is finished; `rows` rows are scored so far, at `rate` rows/s.
    fn shard_done(&self, _rows: u64, _rate: f64) {}
    /// The job is over (the bar can go).
    fn finish(&self) {}
}

/// No progress reports.
pub struct Silent;

impl Progress for Silent {}

/// The result of a job, printed and optionally written as JSON.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScoreSummary {
    /// Backend description.
    pub backend: String,
    /// Rows scored in this run.
    pub rows: u64,
    /// Seconds this run took.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_s: f64,
    /// Shards scored in this run.
    pub shards_scored: usize,
    /// Shards whose output was already complete.
    pub shards_skipped: usize,
    /// Shards that could not be scored, with why.
    pub shards_failed: Vec<String>,
    /// Malformed rows skipped.
    pub malformed_rows: u64,
    /// The first few malformed rows, as `shard:line: problem`.
    pub malformed_examples: Vec<String>,
    /// Labelled rows among those scored.
    pub labelled_rows: u64,
    /// Log loss over labelled rows.
    pub log_loss: Option<f64>,
    /// AUC over labelled rows.
    pub auc: Option<f64>,
    /// Whether the job stopped on `--max-errors`.
    pub stopped_on_errors: bool,
    /// Whether `_SUCCESS` was written (for an executor: whether its share is complete).
    pub complete: bool,
    /// An executor's labelled rows as `[bin, negatives, positives]` over [`MERGE_BINS`] bins
    /// of the probability, non-empty bins only, for the job's AUC; empty for a whole job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auc_bins: Vec<[u64; 3]>,
}

#[derive(Default)]
struct Shared {
    malformed: AtomicU64,
    rows: AtomicU64,
    stop: AtomicBool,
    examples: Mutex<Vec<String>>,
    failed: Mutex<Vec<String>>,
    metrics: Mutex<(LogLoss, Vec<[u64; 2]>)>,
}

impl ScoreJob {
    /// Runs the job on `factory`'s backends. Returns the summary; the caller decides the exit
    /// code from `complete`.
    pub fn run(&self, factory: &dyn BackendFactory) -> anyhow::Result<ScoreSummary> {
        self.run_with_progress(factory, &Silent)
    }

    /// [`ScoreJob::run`], reporting each finished shard to `progress`.
    pub fn run_with_progress(
        &self,
        factory: &dyn BackendFactory,
        progress: &dyn Progress,
    ) -> anyhow::Result<ScoreSummary> {
        let started = Instant::now();
        let transformer = Transformer::new(factory.spec().clone())?;
        if self.inputs.is_empty() {
            anyhow::bail!("no input shards");
        }
        let io = Io::new()?;
        let output = Output::open(&self.output, &io)?;
        let (pending, skipped) =
            output.pending(&self.inputs, part_names(&self.inputs), self.share)?;
        let workers = self.workers.clamp(1, pending.len().max(1));
        let backends = if pending.is_empty() {
            Vec::new()
        } else {
            factory.backends(workers)?
        };
        let shared = Shared {
            metrics: Mutex::new((LogLoss::default(), vec![[0, 0]; AUC_BINS])),
            ..Shared::default()
        };
        let bar = progress;
        bar.start(pending.len() as u64);
        let next = AtomicUsize::new(0);
        let scored = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for mut backend in backends {
                let (pending, shared, transformer, next, scored, bar, io, output) = (
                    &pending,
                    &shared,
                    &transformer,
                    &next,
                    &scored,
                    &bar,
                    &io,
                    &output,
                );
                scope.spawn(move || {
                    while !shared.stop.load(Ordering::Relaxed) {
                        let Some((input, part)) = pending.get(next.fetch_add(1, Ordering::Relaxed))
                        else {
                            break;
                        };
                        let place = Place { io, output, part };
                        match self.score_shard(input, place, transformer, backend.as_mut(), shared)
                        {
                            Ok(true) => {
                                scored.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(false) => {}
                            Err(e) => shared
                                .failed
                                .lock()
                                .expect("no panics while held")
                                .push(format!("{}: {e:#}", input.display)),
                        }
                        let rows = shared.rows.load(Ordering::Relaxed);
                        let rate = rows as f64 / started.elapsed().as_secs_f64();
                        bar.shard_done(rows, rate);
                    }
                });
            }
        });
        bar.finish();

        let stopped = shared.stop.load(Ordering::Relaxed);
        let failed = shared.failed.into_inner().expect("threads joined");
        let complete = failed.is_empty() && !stopped;
        if complete && !self.share.is_partial() {
            output.write(SUCCESS, b"")?;
        }
        let (loss, bins) = shared.metrics.into_inner().expect("threads joined");
        let auc_bins = if self.share.is_partial() {
            coarse_bins(&bins)
        } else {
            Vec::new()
        };
        let rows = shared.rows.load(Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        Ok(ScoreSummary {
            backend: factory.describe(),
            rows,
            seconds,
            rows_per_s: rows as f64 / seconds.max(1e-9),
            shards_scored: scored.load(Ordering::Relaxed),
            shards_skipped: skipped,
            shards_failed: failed,
            malformed_rows: shared.malformed.load(Ordering::Relaxed),
            malformed_examples: shared.examples.into_inner().expect("threads joined"),
            labelled_rows: loss.rows(),
            log_loss: loss.mean(),
            auc: binned_auc(&bins),
            stopped_on_errors: stopped,
            complete,
            auc_bins,
        })
    }

    /// Scores one shard into its part. `Ok(false)` when the job was stopped meanwhile.
    fn score_shard(
        &self,
        input: &Shard,
        place: Place,
        transformer: &Transformer,
        backend: &mut dyn ScoreBackend,
        shared: &Shared,
    ) -> anyhow::Result<bool> {
        let temporary = place.output.local_temporary(place.part)?;
        let local = input.local_file(place.io)?;
        let result = self.score_into(input, &local, &temporary, transformer, backend, shared);
        drop(local);
        match result {
            Ok(true) => {
                place.output.publish_file(place.part, &temporary)?;
                Ok(true)
            }
            other => {
                let _ = std::fs::remove_file(&temporary);
                other
            }
        }
    }

    fn score_into(
        &self,
        input: &Shard,
        local: &LocalFile,
        temporary: &Path,
        transformer: &Transformer,
        backend: &mut dyn ScoreBackend,
        shared: &Shared,
    ) -> anyhow::Result<bool> {
        let mut chunks = LineChunks::new(open_shard_stream(&local.path)?);
        let file = std::fs::File::create(temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        let mut part = PartWriter {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            text: Vec::with_capacity(1 << 16),
            loss: LogLoss::default(),
            bins: Vec::new(),
            in_flight: std::collections::VecDeque::new(),
        };
        let fields = transformer.fields();
        let mut batch = Batch::default();
        let mut number = 0u64;
        loop {
            let chunk = chunks
                .next_chunk()
                .with_context(|| format!("reading line {}", number + 1))?;
            if chunk.is_empty() {
                break;
            }
            for line in lines(chunk) {
                number += 1;
                let at = batch.ids.len();
                batch.ids.resize(at + fields, 0);
                match transformer.transform(line, &mut batch.ids[at..]) {
                    Ok(label) => {
                        batch.rows.push(number);
                        batch.labels.push(label);
                    }
                    Err(problem) => {
                        batch.ids.truncate(at);
                        self.malformed(input, number, problem, shared);
                    }
                }
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                if batch.rows.len() == self.batch {
                    part.score(&mut batch, fields, backend, shared)?;
                }
            }
        }
        if !batch.rows.is_empty() {
            part.score(&mut batch, fields, backend, shared)?;
        }
        part.write_answers(0, shared)?;
        part.finish(temporary, shared)?;
        Ok(true)
    }

    /// Counts a malformed row, keeps the first few as examples, and stops the job past
    /// `--max-errors`.
    fn malformed(&self, input: &Shard, number: u64, problem: RowProblem, shared: &Shared) {
        let seen = shared.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        let mut examples = shared.examples.lock().expect("no panics while held");
        if examples.len() < EXAMPLES {
            examples.push(format!("{}:{number}: {problem}", input.display));
        }
        drop(examples);
        if seen > self.max_errors {
            shared.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// One output part being written, with the metrics of its labelled rows.
struct PartWriter {
    out: std::io::BufWriter<std::fs::File>,
    text: Vec<u8>,
    loss: LogLoss,
    bins: Vec<(usize, bool)>,
    /// Batches submitted and not yet written, oldest first, each with its row numbers and
    /// labels. Dropped with the part when a shard fails, which abandons their requests.
    in_flight: std::collections::VecDeque<(backend::Scoring, Batch)>,
}

impl PartWriter {
    /// Submits `batch` to `backend` and empties it; writes the oldest answers first while more
    /// than the backend's depth would be in flight, so rows keep their input order and at most
    /// `depth` batches are held.
    fn score(
        &mut self,
        batch: &mut Batch,
        fields: usize,
        backend: &mut dyn ScoreBackend,
        shared: &Shared,
    ) -> anyhow::Result<()> {
        self.write_answers(backend.depth().saturating_sub(1), shared)?;
        let rows = batch.rows.len();
        // The next batch starts at this one's size: growing a 1.4 MB vector from empty, batch
        // after batch, cost the remote scorer reallocation copies and fresh-page faults.
        let ids = std::mem::replace(&mut batch.ids, Vec::with_capacity(rows * fields));
        let tensor =
            Tensor::new(vec![rows, fields], TensorData::I64(ids)).expect("rows x fields ids");
        let scoring = backend.submit(tensor)?;
        let submitted = Batch {
            ids: Vec::new(),
            rows: std::mem::replace(&mut batch.rows, Vec::with_capacity(rows)),
            labels: std::mem::replace(&mut batch.labels, Vec::with_capacity(rows)),
        };
        self.in_flight.push_back((scoring, submitted));
        Ok(())
    }

    /// Waits for and writes the oldest batches in flight until at most `keep` remain.
    fn write_answers(&mut self, keep: usize, shared: &Shared) -> anyhow::Result<()> {
        while self.in_flight.len() > keep {
            let (scoring, batch) = self.in_flight.pop_front().expect("more than keep");
            let probabilities = scoring.wait()?;
            self.text.clear();
            for ((&row, &label), &p) in batch.rows.iter().zip(&batch.labels).zip(&probabilities) {
                write_row(&mut self.text, row, p, label);
                if let Some(clicked) = label {
                    self.loss.add(f64::from(p), clicked);
                    self.bins.push((bin(p), clicked));
                }
            }
            self.out.write_all(&self.text)?;
            shared
                .rows
                .fetch_add(batch.rows.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Syncs the part to disk and adds its metrics to the job's.
    fn finish(self, temporary: &Path, shared: &Shared) -> anyhow::Result<()> {
        self.out
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
            .with_context(|| format!("writing {}", temporary.display()))?;
        let mut metrics = shared.metrics.lock().expect("no panics while held");
        metrics.0.merge(self.loss);
        for (b, clicked) in self.bins {
            metrics.1[b][usize::from(clicked)] += 1;
        }
        Ok(())
    }
}

/// Where one shard's part goes.
#[derive(Clone, Copy)]
struct Place<'a> {
    io: &'a Io,
    output: &'a Output,
    part: &'a str,
}

#[derive(Default)]
struct Batch {
    ids: Vec<i64>,
    rows: Vec<u64>,
    labels: Vec<Option<bool>>,
}

fn bin(p: f32) -> usize {
    ((p.clamp(0.0, 1.0) as f64 * AUC_BINS as f64) as usize).min(AUC_BINS - 1)
}

/// The non-empty bins of `bins` summed into [`MERGE_BINS`] coarser ones, as
/// `[bin, negatives, positives]`.
fn coarse_bins(bins: &[[u64; 2]]) -> Vec<[u64; 3]> {
    let width = bins.len().div_ceil(MERGE_BINS).max(1);
    bins.chunks(width)
        .enumerate()
        .filter_map(|(i, chunk)| {
            let [n, p] = chunk.iter().fold([0, 0], |[n, p], b| [n + b[0], p + b[1]]);
            (n + p > 0).then_some([i as u64, n, p])
        })
        .collect()
}

/// The summary of a Criteo job whose executors ran side by side: counts added up, the log
/// loss over every labelled row, the AUC from the executors' coarse bins, and the time of the
/// slowest executor (rows/s is the rows over it). Complete when every executor was.
pub fn merge_summaries(backend: String, executors: &[ScoreSummary]) -> ScoreSummary {
    let sum = |f: fn(&ScoreSummary) -> u64| executors.iter().map(f).sum::<u64>();
    let rows = sum(|s| s.rows);
    let labelled = sum(|s| s.labelled_rows);
    let loss: f64 = executors
        .iter()
        .map(|s| s.log_loss.unwrap_or(0.0) * s.labelled_rows as f64)
        .sum();
    let mut bins = vec![[0u64, 0u64]; MERGE_BINS];
    for &[bin, n, p] in executors.iter().flat_map(|s| &s.auc_bins) {
        if let Some(b) = bins.get_mut(bin as usize) {
            b[0] += n;
            b[1] += p;
        }
    }
    let (seconds, shards_scored, shards_skipped, shards_failed) =
        images::output::merge_shards(executors, |s| {
            (
                s.seconds,
                s.shards_scored,
                s.shards_skipped,
                &s.shards_failed,
            )
        });
    let mut examples: Vec<String> = executors
        .iter()
        .flat_map(|s| s.malformed_examples.iter().cloned())
        .collect();
    examples.truncate(EXAMPLES);
    ScoreSummary {
        backend,
        rows,
        seconds,
        rows_per_s: rows as f64 / seconds.max(1e-9),
        shards_scored,
        shards_skipped,
        shards_failed,
        malformed_rows: sum(|s| s.malformed_rows),
        malformed_examples: examples,
        labelled_rows: labelled,
        log_loss: (labelled > 0).then(|| loss / labelled as f64),
        auc: binned_auc(&bins),
        stopped_on_errors: executors.iter().any(|s| s.stopped_on_errors),
        complete: !executors.is_empty() && executors.iter().all(|s| s.complete),
        auc_bins: Vec::new(),
    }
}

/// AUC from per-bin (negatives, positives) counts; pairs in one bin count half.
fn binned_auc(bins: &[[u64; 2]]) -> Option<f64> {
    let (mut negatives_below, mut wins) = (0u64, 0.0f64);
    for &[negatives, positives] in bins {
        wins += positives as f64 * (negatives_below as f64 + negatives as f64 / 2.0);
        negatives_below += negatives;
    }
    let positives: u64 = bins.iter().map(|b| b[1]).sum();
    (positives > 0 && negatives_below > 0)
        .then(|| wins / (positives as f64 * negatives_below as f64))
}

/// `row<TAB>probability[<TAB>label]\n`, the probability with 9 decimals (error below 1e-9),
/// formatted by hand: this runs once per row and must not allocate.
fn write_row(out: &mut Vec<u8>, row: u64, p: f32, label: Option<bool>) {
    spindle_criteo::text::write_u64(out, row);
    out.push(b'\t');
    let scaled = (f64::from(p).clamp(0.0, 1.0) * 1e9).round() as u64;
    out.push(b'0' + (scaled / 1_000_000_000) as u8);
    out.push(b'.');
    let mut fraction = scaled % 1_000_000_000;
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    out.extend_from_slice(&digits);
    if let Some(clicked) = label {
        out.push(b'\t');
        out.push(if clicked { b'1' } else { b'0' });
    }
    out.push(b'\n');
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
