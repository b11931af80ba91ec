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

use crate::engine::{EngineError, Runner};
use crate::error::{ErrorKind, InferError};
use crate::metrics::ModelMetrics;
use crate::statistics::PhaseTimes;
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::time::Instant;

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

type Reply = oneshot::Sender<Result<InferOutput, InferError>>;

struct Queued {
    inputs: Vec<Tensor>,
    rows: usize,
    deadline: Option<Instant>,
    enqueued: Instant,
    reply: Reply,
    // Held while queued; dropping it readmits one request.
    _permit: OwnedSemaphorePermit,
}

/// A request taken off the queue: its admission permit is already returned.
struct Item {
    inputs: Vec<Tensor>,
    rows: usize,
    enqueued: Instant,
    reply: Reply,
}

struct Batch {
    items: Vec<Item>,
    rows: usize,
    dispatched: Instant,
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

/// What callers, workers and the timer task share.
struct Shared {
    state: Mutex<State>,
    settings: BatchSettings,
    metrics: ModelMetrics,
    /// Wakes the timer task (delay mode only) when the oldest request or the idle set changed.
    timer: Notify,
}

struct State {
    queue: VecDeque<Queued>,
    queued_rows: usize,
    /// Workers waiting for a batch (their ids).
    idle: Vec<usize>,
    /// One batch channel per worker; emptied when the batcher closes, which ends idle workers.
    workers: Vec<std::sync::mpsc::Sender<Batch>>,
    closed: bool,
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
        self.metrics.in_flight.inc();
        // Decrements on every exit, including a caller that stops waiting.
        let _in_flight = scopeguard(&self.metrics.in_flight);
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
        self.shared.submit(queued, now)?;
        let answer = async {
            answer.await.unwrap_or_else(|_| {
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

struct InFlight<'a>(&'a prometheus::IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn scopeguard(gauge: &prometheus::IntGauge) -> InFlight<'_> {
    InFlight(gauge)
}

fn deadline_error() -> InferError {
    InferError::new(
        ErrorKind::DeadlineExceeded,
        "request timed out in the queue before it could be computed",
    )
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across engine work or user code, so a poisoned lock only means
        // a panic in this module's bookkeeping; the state is still consistent enough to go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues one request and, if a worker is idle and a batch is due, hands it over at once.
    fn submit(&self, request: Queued, now: Instant) -> Result<(), InferError> {
        let mut state = self.lock();
        if state.closed {
            return Err(InferError::new(
                ErrorKind::Unavailable,
                "model is being unloaded; retry",
            ));
        }
        let first = state.queue.is_empty();
        state.queued_rows += request.rows;
        state.queue.push_back(request);
        self.dispatch(&mut state, now);
        let waiting = !state.queue.is_empty() && !state.idle.is_empty();
        drop(state);
        if first && waiting && self.settings.waits() {
            // A new oldest request: the timer must learn when its delay runs out.
            self.timer.notify_one();
        }
        Ok(())
    }

    /// Hands due batches to idle workers.
    fn dispatch(&self, state: &mut State, now: Instant) {
        while !state.idle.is_empty() {
            let Some(batch) = self.next_batch(state, now) else {
                break;
            };
            let id = state.idle.pop().expect("checked non-empty");
            if let Err(returned) = state.workers[id].send(batch) {
                // The worker thread died (a panic outside the engine). Answer its batch; it is
                // not idle again, so it is retired.
                for item in returned.0.items {
                    let _ = item.reply.send(Err(InferError::new(
                        ErrorKind::Internal,
                        "engine worker stopped unexpectedly",
                    )));
                }
            }
        }
        self.metrics.queue_depth.set(state.queue.len() as i64);
    }

    /// The next batch if one is due now (skipping abandoned and expired requests).
    fn next_batch(&self, state: &mut State, now: Instant) -> Option<Batch> {
        while self.batch_is_due(state, now) {
            let batch = self.take_batch(state, now);
            if !batch.items.is_empty() {
                return Some(batch);
            }
        }
        None
    }

    /// When the queue must be looked at again even if nothing arrives: the oldest request's
    /// delay running out, while a worker is idle.
    fn wake_time(&self, state: &State) -> Option<Instant> {
        if state.idle.is_empty() || !self.settings.waits() {
            return None;
        }
        state
            .queue
            .front()
            .map(|oldest| oldest.enqueued + self.settings.max_queue_delay)
    }

    fn batch_is_due(&self, state: &State, now: Instant) -> bool {
        let Some(oldest) = state.queue.front() else {
            return false;
        };
        let s = &self.settings;
        if !s.waits() {
            return true;
        }
        let target = s
            .preferred_batch_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(s.max_batch_size);
        state.queued_rows >= target || now >= oldest.enqueued + s.max_queue_delay
    }

    /// Pops requests from the front into one batch, skipping abandoned and expired ones.
    fn take_batch(&self, state: &mut State, now: Instant) -> Batch {
        let limit = self.settings.max_batch_size.max(1);
        let mut batch = Batch {
            items: Vec::new(),
            rows: 0,
            dispatched: now,
        };
        while let Some(front) = state.queue.front() {
            let joins = batch.rows + front.rows <= limit && self.settings.max_batch_size > 0;
            if !batch.items.is_empty() && !joins {
                break;
            }
            let Queued {
                inputs,
                rows,
                deadline,
                enqueued,
                reply,
                _permit,
            } = state.queue.pop_front().expect("front exists");
            drop(_permit);
            state.queued_rows -= rows;
            if reply.is_closed() {
                // The caller went away (or gave up at its deadline): skip, do not compute.
                self.metrics.count_request("cancelled");
                continue;
            }
            if deadline.is_some_and(|d| d <= now) {
                let _ = reply.send(Err(deadline_error()));
                continue;
            }
            self.metrics
                .queue_duration
                .observe((now - enqueued).as_secs_f64());
            batch.rows += rows;
            batch.items.push(Item {
                inputs,
                rows,
                enqueued,
                reply,
            });
        }
        batch
    }
}

/// Delay mode only: dispatches when the oldest request's delay runs out.
async fn timer(shared: Arc<Shared>) {
    loop {
        let wake = {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            shared.dispatch(&mut state, Instant::now());
            shared.wake_time(&state)
        };
        match wake {
            None => shared.timer.notified().await,
            Some(at) => tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = shared.timer.notified() => {}
            },
        }
    }
}

/// One worker: runs the batch it is handed, then keeps taking due batches straight off the queue
/// until there are none, and only then goes idle.
fn worker(
    id: usize,
    mut runner: Box<dyn Runner>,
    batches: std::sync::mpsc::Receiver<Batch>,
    shared: &Shared,
) {
    // Whether the last batch held one request: the load of a lone caller, whose next request
    // is worth spinning for. Batches of several mean concurrent callers, whose HTTP and gRPC
    // work needs the core more than this thread does.
    let mut lone = false;
    while let Some(mut batch) = next_handed(
        &batches,
        if lone {
            shared.settings.idle_spin
        } else {
            Duration::ZERO
        },
    ) {
        loop {
            lone = batch.items.len() == 1;
            run_batch(runner.as_mut(), batch, &shared.metrics);
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let now = Instant::now();
            match shared.next_batch(&mut state, now) {
                Some(next) => {
                    shared.metrics.queue_depth.set(state.queue.len() as i64);
                    batch = next;
                }
                None => {
                    state.idle.push(id);
                    let waiting = !state.queue.is_empty();
                    drop(state);
                    if waiting && shared.settings.waits() {
                        // Idle with a queue that is not due yet: the timer takes it from here.
                        shared.timer.notify_one();
                    }
                    break;
                }
            }
        }
    }
}

/// The next batch handed to an idle worker: checked for `spin` first (yielding the core to
/// anything else runnable between checks), then waited for asleep. `None` once the batcher closed.
fn next_handed(batches: &std::sync::mpsc::Receiver<Batch>, spin: Duration) -> Option<Batch> {
    if !spin.is_zero() {
        let until = std::time::Instant::now() + spin;
        loop {
            match batches.try_recv() {
                Ok(batch) => return Some(batch),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return None,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= until {
                break;
            }
            std::thread::yield_now();
        }
    }
    batches.recv().ok()
}

fn run_batch(runner: &mut dyn Runner, batch: Batch, metrics: &ModelMetrics) {
    let started = std::time::Instant::now();
    let mut rows = Vec::with_capacity(batch.items.len());
    let mut replies = Vec::with_capacity(batch.items.len());
    let mut inputs = Vec::with_capacity(batch.items.len());
    let mut queue_times = Vec::with_capacity(batch.items.len());
    for item in batch.items {
        rows.push(item.rows);
        replies.push(item.reply);
        inputs.push(item.inputs);
        queue_times.push(batch.dispatched - item.enqueued);
    }
    let joined = join_inputs(inputs);
    let joined_at = std::time::Instant::now();
    // A panicking engine must not take its worker (and every later request) down with it.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run(joined)))
        .unwrap_or_else(|_| Err(EngineError::Run("engine panicked".to_string())))
        .map_err(|e| InferError::new(ErrorKind::Internal, e.to_string()));
    let ran_at = std::time::Instant::now();
    let result = result.and_then(|outputs| split_outputs(outputs, &rows, batch.rows));
    let compute_time = started.elapsed();
    metrics.compute_duration.observe(compute_time.as_secs_f64());
    metrics.batch_size.observe(batch.rows as f64);
    metrics.executions.inc();
    match result {
        Ok(per_request) => {
            metrics.inferences.inc_by(batch.rows as u64);
            let phases = PhaseTimes {
                input: joined_at - started,
                infer: ran_at - joined_at,
                output: ran_at.elapsed(),
            };
            metrics
                .stats
                .record_batch(batch.rows, per_request.len(), phases);
            for ((outputs, reply), queue_time) in
                per_request.into_iter().zip(replies).zip(queue_times)
            {
                metrics.stats.queue.add(1, queue_time);
                let _ = reply.send(Ok(InferOutput {
                    outputs,
                    queue_time,
                    compute_time,
                    batch_rows: batch.rows,
                }));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error.message, rows = batch.rows, "batch failed");
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Joins each input across requests along the batch axis (a lone request is moved, not copied).
fn join_inputs(mut per_request: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    if per_request.len() == 1 {
        return per_request.pop().expect("one request");
    }
    (0..per_request[0].len())
        .map(|i| {
            let parts: Vec<&Tensor> = per_request.iter().map(|r| &r[i]).collect();
            Tensor::concat(&parts)
        })
        .collect()
}

/// Splits each output back into the requests' rows; an engine that returns the wrong number of
/// rows fails the batch rather than misrouting answers.
fn split_outputs(
    outputs: Vec<Tensor>,
    rows: &[usize],
    total: usize,
) -> Result<Vec<Vec<Tensor>>, InferError> {
    let mut per_request: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for output in outputs {
        if rows.len() > 1 && output.batch() != total {
            return Err(InferError::new(
                ErrorKind::Internal,
                format!(
                    "engine returned an output of shape {:?} for a batch of {total} rows",
                    output.shape
                ),
            ));
        }
        for (slot, part) in per_request.iter_mut().zip(output.split(rows)) {
            slot.push(part);
        }
    }
    Ok(per_request)
}

#[cfg(test)]
#[path = "batcher_tests.rs"]
mod tests;
