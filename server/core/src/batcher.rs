//! The dynamic batcher: one per loaded model version.
//!
//! Shape of the machinery:
//!
//! ```text
//! callers --(semaphore: max_queue_size)--> queue (mutex) --(one batch)--> worker thread 0
//!    ^                                       |   ^                          worker thread 1
//!    |                                       |   +--- a worker that finishes takes the next ...
//!    +----------- oneshot per request -------+------------------------------+
//! ```
//!
//! - Admission is a semaphore with `max_queue_size` permits; a request that finds none is refused
//!   at once as [`ErrorKind::Overloaded`] instead of waiting without bound. The permit is released
//!   when the request leaves the queue for a batch, so the bound is on *queued* requests.
//! - There is no dispatcher in the middle. The caller that queues a request hands the batch to an
//!   idle worker itself, and a worker that finishes a batch takes the next one off the queue
//!   before it goes idle. A request therefore costs two thread wake-ups (caller to worker, worker
//!   to caller); a dispatcher task would add two more (the request to it, and each worker's
//!   "idle" back to it), and on a 2-core machine each wake-up is a visible share of a 0.6 ms
//!   inference.
//! - A batch goes only to an idle worker, so while every worker is busy the next batch keeps
//!   growing (up to `max_batch_size`).
//! - An idle worker sleeps on its channel, except that after a batch of a single request it
//!   first keeps checking for `idle_spin` (default 300us): a lone caller's next request then
//!   finds it awake, one thread wake-up cheaper.
//! - Likewise a lone caller (no other request of this model in flight) first checks for its
//!   answer for about as long as the last lone batch took plus `idle_spin`, yielding between
//!   checks, so the worker's answer does not have to wake its runtime thread: the second
//!   wake-up. Runs over 2 ms skip this, since a wake-up is noise beside them.
//! - With `max_queue_delay` = 0 (the default, as in Triton) an idle worker takes whatever is
//!   queued: nobody waits for a batch to fill unless waiting pays. With a delay, the queue is held
//!   until it reaches `max_batch_size` (or the largest preferred size) or the oldest request has
//!   waited the delay; a small timer task (only in that mode) dispatches when the delay runs out.
//! - Requests whose caller went away are dropped, not computed; a request whose deadline passes
//!   while queued is answered [`ErrorKind::DeadlineExceeded`] and never computed.
//! - Each worker thread owns one [`Runner`]; an engine failure is answered to every request of
//!   its batch, and the worker carries on.
//! - Times are tokio's [`Instant`]s (worker threads enter the runtime), so the batcher's tests can
//!   run on tokio's paused clock.
//!
//! This file holds the handle callers use (admission, deadlines, metrics); `queue` forms batches
//! and hands them over, `worker` runs them.

mod queue;
mod worker;

use crate::engine::Runner;
use crate::error::{ErrorKind, InferError};
use crate::metrics::{IntGauge, ModelMetrics};
use crate::tensor::Tensor;
#[cfg(test)]
use queue::LONG_RUN;
use queue::{Batch, Queued, Shared, State, timer};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;
use worker::worker;

/// Batching settings of one model (from its config).
#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// Largest batch in rows; 0 means the model takes no batch dimension (one request a run).
    pub max_batch_size: usize,
    /// Batch sizes worth waiting for when `max_queue_delay` > 0.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a fuller batch.
    pub max_queue_delay: Duration,
    /// Requests that may wait in the queue.
    pub max_queue_size: usize,
    /// After a batch of a single request, how long the worker keeps checking for its next batch
    /// before it sleeps (zero: it sleeps at once). See `ModelConfig::idle_spin`.
    pub idle_spin: Duration,
}

impl BatchSettings {
    /// Whether a batch may wait to fill (a delay, and a batch dimension to fill).
    fn waits(&self) -> bool {
        !self.max_queue_delay.is_zero() && self.max_batch_size > 0
    }
}

/// What a computed request gets back.
#[derive(Debug)]
pub struct InferOutput {
    /// Outputs in the config's order, with this request's rows only.
    pub outputs: Vec<Tensor>,
    /// Time spent queued.
    pub queue_time: Duration,
    /// Engine time of the batch this request ran in.
    pub compute_time: Duration,
    /// Rows in that batch.
    pub batch_rows: usize,
}

/// Cheap, cloneable handle to one model version's queue.
#[derive(Clone)]
pub struct Batcher {
    shared: Arc<Shared>,
    // The last handle dropped closes the queue (see `Closer`).
    _closer: Arc<Closer>,
    admission: Arc<Semaphore>,
    max_batch_size: usize,
    retry_after: Duration,
    metrics: ModelMetrics,
}

struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.closed = true;
        // Only abandoned requests can be left: every live caller holds a handle.
        state.queue.clear();
        state.queued_rows = 0;
        state.workers.clear();
        drop(state);
        self.0.timer.notify_one();
    }
}

impl Batcher {
    /// Starts one worker thread per runner (named `{name}-worker-{i}`), and with a
    /// `max_queue_delay` a timer task on the current tokio runtime. The batcher closes when every
    /// handle is dropped; workers stop then, after finishing their batch.
    pub fn start(
        name: &str,
        settings: BatchSettings,
        runners: Vec<Box<dyn Runner>>,
        metrics: ModelMetrics,
    ) -> Batcher {
        assert!(!runners.is_empty(), "a batcher needs at least one runner");
        let (senders, receivers): (Vec<_>, Vec<_>) = runners
            .iter()
            .map(|_| std::sync::mpsc::channel::<Batch>())
            .unzip();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued_rows: 0,
                idle: (0..runners.len()).rev().collect(),
                workers: senders,
                closed: false,
            }),
            settings: settings.clone(),
            metrics: metrics.clone(),
            timer: Notify::new(),
            callers: AtomicUsize::new(0),
            lone_compute_us: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Handle::try_current().ok();
        for (id, (runner, batches)) in runners.into_iter().zip(receivers).enumerate() {
            let shared = shared.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("{name}-worker-{id}"))
                .spawn(move || {
                    // tokio's clock (paused in tests) for queue times and deadlines.
                    let _clock = runtime.as_ref().map(|r| r.enter());
                    worker(id, runner, batches, &shared)
                })
                .expect("spawning a worker thread");
        }
        if settings.waits() {
            tokio::spawn(timer(shared.clone()));
        }
        Batcher {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
            admission: Arc::new(Semaphore::new(settings.max_queue_size)),
            max_batch_size: settings.max_batch_size,
            // A queue drains in roughly one batch time; a short hint keeps retries prompt.
            retry_after: Duration::from_secs(1),
            metrics,
        }
    }

    /// The model version's metric handles.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Queues one request and waits for its answer. `inputs` must already be validated against
    /// the model's config and ordered as its inputs; `rows` is their shared first dimension (1 for
    /// models without a batch dimension).
    pub async fn infer(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<InferOutput, InferError> {
        let started = Instant::now();
        // Counted out on every exit, including a caller that stops waiting.
        let _in_flight = count_in_flight(&self.metrics.in_flight);
        let result = self.submit_and_wait(inputs, rows, deadline).await;
        self.metrics
            .request_duration
            .observe(started.elapsed().as_secs_f64());
        let elapsed = started.elapsed();
        match &result {
            Ok(_) => self.metrics.stats.success.add(1, elapsed),
            Err(_) => self.metrics.stats.fail.add(1, elapsed),
        }
        self.metrics.count_request(match &result {
            Ok(_) => "success",
            Err(e) => e.kind.classify().label,
        });
        result
    }

    async fn submit_and_wait(
        &self,
        inputs: Vec<Tensor>,
        rows: usize,
        deadline: Option<Instant>,
    ) -> Result<InferOutput, InferError> {
        if self.max_batch_size > 0 && rows > self.max_batch_size {
            return Err(InferError::invalid(format!(
                "batch of {rows} rows is larger than the model's max_batch_size {}; split the request",
                self.max_batch_size
            )));
        }
        let Ok(permit) = self.admission.clone().try_acquire_owned() else {
            let mut err = InferError::new(
                ErrorKind::Overloaded,
                "model queue is full; retry later or add instances",
            );
            err.retry_after = Some(self.retry_after);
            return Err(err);
        };
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        let queued = Queued {
            inputs,
            rows,
            deadline,
            enqueued: now,
            reply,
            _permit: permit,
        };
        let _caller = Caller::count(&self.shared.callers);
        let spin = self.shared.front_spin();
        self.shared.submit(queued, now)?;
        let answer = async {
            wait_spinning(answer, spin).await.unwrap_or_else(|| {
                Err(InferError::new(
                    ErrorKind::Internal,
                    "worker stopped before answering",
                ))
            })
        };
        match deadline {
            None => answer.await,
            Some(deadline) => tokio::select! {
                result = answer => result,
                // Dropping `answer` closes the oneshot, so a worker skips the request if it is
                // still queued: a request past its deadline is never computed.
                _ = tokio::time::sleep_until(deadline) => Err(deadline_error()),
            },
        }
    }
}

/// Counts one caller in [`Shared::callers`] while it waits.
struct Caller<'a>(&'a AtomicUsize);

impl<'a> Caller<'a> {
    fn count(callers: &'a AtomicUsize) -> Caller<'a> {
        callers.fetch_add(1, Ordering::Relaxed);
        Caller(callers)
    }
}

impl Drop for Caller<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits for the worker's answer, first by checking for it for `spin` (yielding the core to
/// other threads and the runtime to other tasks between checks), then asleep. `None` when the
/// worker dropped the request unanswered.
async fn wait_spinning<T>(mut answer: oneshot::Receiver<T>, spin: Duration) -> Option<T> {
    if !spin.is_zero() {
        let until = std::time::Instant::now() + spin;
        loop {
            match answer.try_recv() {
                Ok(value) => return Some(value),
                // A closed receiver must not be awaited (tokio panics): answer here.
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
    answer.await.ok()
}

/// Counts one request in [`ModelMetrics::in_flight`] while it lives.
struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a request in flight until the returned guard drops.
fn count_in_flight(gauge: &IntGauge) -> InFlight<'_> {
    gauge.inc();
    InFlight(gauge)
}

fn deadline_error() -> InferError {
    InferError::new(
        ErrorKind::DeadlineExceeded,
        "request timed out in the queue before it could be computed",
    )
}

#[cfg(test)]
#[path = "batcher_tests.rs"]
mod tests;
