//! Per-model inference statistics as Triton reports them (`ModelStatistics` over gRPC,
//! `GET /v2/models/{m}/stats` over HTTP): cumulative counts and nanoseconds for successes,
//! failures, queueing and the three compute phases, plus per-batch-size execution statistics.
//!
//! Prometheus histograms answer "how is it going now"; these counters answer what Triton-aware
//! tools (perf_analyzer, `spindle loadtest`) ask: they subtract two snapshots to get the server's
//! own share of a measurement window.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A count of events and their summed duration.
#[derive(Default, Debug)]
pub struct DurationStat {
    count: AtomicU64,
    ns: AtomicU64,
}

impl DurationStat {
    /// Adds `n` events that together took `total`.
    pub fn add(&self, n: u64, total: Duration) {
        self.count.fetch_add(n, Ordering::Relaxed);
        self.ns.fetch_add(
            total.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// The current values.
    pub fn snapshot(&self) -> DurationSnapshot {
        DurationSnapshot {
            count: self.count.load(Ordering::Relaxed),
            ns: self.ns.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of a [`DurationStat`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurationSnapshot {
    /// Events.
    pub count: u64,
    /// Their summed duration in nanoseconds.
    pub ns: u64,
}

/// Time spent in each phase of one batch execution.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhaseTimes {
    /// Joining request tensors into the batch.
    pub input: Duration,
    /// The engine run.
    pub infer: Duration,
    /// Splitting outputs back per request.
    pub output: Duration,
}

/// Statistics of one batch size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchSnapshot {
    /// Rows in the batch.
    pub batch_size: u64,
    /// Joining inputs.
    pub compute_input: DurationSnapshot,
    /// Engine runs.
    pub compute_infer: DurationSnapshot,
    /// Splitting outputs.
    pub compute_output: DurationSnapshot,
}

/// Cumulative statistics of one model version. Cheap to record: atomics, and one short lock per
/// batch (not per request) for the per-batch-size table.
#[derive(Default, Debug)]
pub struct ModelStats {
    /// Requests answered successfully, with their time in the core.
    pub success: DurationStat,
    /// Requests that failed after reaching the model, with their time in the core.
    pub fail: DurationStat,
    /// Time successful requests waited in the queue.
    pub queue: DurationStat,
    /// Time successful requests spent having inputs joined.
    pub compute_input: DurationStat,
    /// Time successful requests spent in the engine.
    pub compute_infer: DurationStat,
    /// Time successful requests spent having outputs split.
    pub compute_output: DurationStat,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    batches: Mutex<BTreeMap<u64, [DurationSnapshot; 3]>>,
}

impl ModelStats {
    /// Records one successful batch of `rows` rows made of `requests` requests.
    pub fn record_batch(&self, rows: usize, requests: usize, phases: PhaseTimes) {
        let n = requests as u64;
        self.compute_input.add(n, phases.input * requests as u32);
        self.compute_infer.add(n, phases.infer * requests as u32);
        self.compute_output.add(n, phases.output * requests as u32);
        self.inference_count
            .fetch_add(rows as u64, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_inference_ms.store(now_ms, Ordering::Relaxed);
        let mut batches = self.batches.lock().expect("batch statistics lock");
        let entry = batches.entry(rows as u64).or_default();
        for (slot, time) in entry
            .iter_mut()
            .zip([phases.input, phases.infer, phases.output])
        {
            slot.count += 1;
            slot.ns += time.as_nanos().min(u64::MAX as u128) as u64;
        }
    }

    /// Rows inferred.
    pub fn inference_count(&self) -> u64 {
        self.inference_count.load(Ordering::Relaxed)
    }

    /// Batches executed.
    pub fn execution_count(&self) -> u64 {
        self.execution_count.load(Ordering::Relaxed)
    }

    /// Milliseconds since the Unix epoch of the last batch, 0 if none yet.
    pub fn last_inference_ms(&self) -> u64 {
        self.last_inference_ms.load(Ordering::Relaxed)
    }

    /// Per-batch-size statistics, smallest batch first.
    pub fn batch_stats(&self) -> Vec<BatchSnapshot> {
        let batches = self.batches.lock().expect("batch statistics lock");
        batches
            .iter()
            .map(|(&batch_size, [input, infer, output])| BatchSnapshot {
                batch_size,
                compute_input: *input,
                compute_infer: *infer,
                compute_output: *output,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_count_once_and_requests_count_each() {
        let stats = ModelStats::default();
        let phases = PhaseTimes {
            input: Duration::from_micros(10),
            infer: Duration::from_micros(100),
            output: Duration::from_micros(5),
        };
        stats.record_batch(8, 3, phases);
        stats.record_batch(8, 2, phases);
        stats.record_batch(1, 1, phases);
        assert_eq!(stats.execution_count(), 3);
        assert_eq!(stats.inference_count(), 17);
        assert_eq!(
            stats.compute_infer.snapshot(),
            DurationSnapshot {
                count: 6,
                ns: 600_000
            }
        );
        let per_size = stats.batch_stats();
        assert_eq!(per_size.len(), 2);
        assert_eq!(per_size[1].batch_size, 8);
        assert_eq!(per_size[1].compute_infer.count, 2);
        assert_eq!(per_size[1].compute_input.ns, 20_000);
        assert!(stats.last_inference_ms() > 0);
    }
}
