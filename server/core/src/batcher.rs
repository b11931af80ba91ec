//! The dynamic batcher: one per loaded model version.
//!
//! Shape of the machinery (after text-embeddings-inference's queue):
//!
//! ```text
//! callers --(semaphore: max_queue_size)--> mpsc --> batcher task --(one batch)--> worker thread 0
//!    ^                                               |    ^                       worker thread 1
//!    +------------- oneshot per request -------------|----+---- "idle" ----------  ...
//! ```
//!
//! - Admission is a semaphore with `max_queue_size` permits; a request that finds none is refused
//!   at once as [`ErrorKind::Overloaded`] instead of waiting without bound. The permit is released
//!   when the request leaves the queue for a batch, so the bound is on *queued* requests.
//! - The batcher task owns the queue. It hands a batch to a worker only when that worker is idle,
//!   so while every worker is busy the next batch keeps growing (up to `max_batch_size`).
//! - With `max_queue_delay` = 0 (the default, as in Triton) an idle worker takes whatever is
//!   queued: nobody waits for a batch to fill unless waiting pays. With a delay, the batcher holds
//!   the queue until it reaches `max_batch_size` (or the largest preferred size) or the oldest
//!   request has waited the delay.
//! - Requests whose caller went away are dropped, not computed; a request whose deadline passes
//!   while queued is answered [`ErrorKind::DeadlineExceeded`] and never computed.
//! - Each worker thread owns one [`Runner`]; an engine failure is answered to every request of
//!   its batch, and the worker carries on.

use crate::engine::{EngineError, Runner};
use crate::error::{ErrorKind, InferError};
use crate::metrics::ModelMetrics;
use crate::statistics::PhaseTimes;
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
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
    submit: mpsc::UnboundedSender<Queued>,
    admission: Arc<Semaphore>,
    max_batch_size: usize,
    retry_after: Duration,
    metrics: ModelMetrics,
}

impl Batcher {
    /// Starts the batcher task (on the current tokio runtime) and one worker thread per runner.
    /// Worker threads are named `{name}-worker-{i}`. The batcher stops when every handle is
    /// dropped; workers stop when it does, after finishing their batch.
    pub fn start(
        name: &str,
        settings: BatchSettings,
        runners: Vec<Box<dyn Runner>>,
        metrics: ModelMetrics,
    ) -> Batcher {
        assert!(!runners.is_empty(), "a batcher needs at least one runner");
        let (submit, requests) = mpsc::unbounded_channel();
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(runners.len());
        for (id, runner) in runners.into_iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel::<Batch>();
            let idle = idle_tx.clone();
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name(format!("{name}-worker-{id}"))
                .spawn(move || worker(id, runner, rx, idle, metrics))
                .expect("spawning a worker thread");
            workers.push(tx);
        }
        let task = BatcherTask {
            settings: settings.clone(),
            queue: VecDeque::new(),
            queued_rows: 0,
            idle: (0..workers.len()).rev().collect(),
            workers,
            metrics: metrics.clone(),
        };
        tokio::spawn(task.run(requests, idle_rx));
        Batcher {
            submit,
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
        let queued = Queued {
            inputs,
            rows,
            deadline,
            enqueued: Instant::now(),
            reply,
            _permit: permit,
        };
        if self.submit.send(queued).is_err() {
            return Err(InferError::new(
                ErrorKind::Unavailable,
                "model is being unloaded; retry",
            ));
        }
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
                // Dropping `answer` closes the oneshot, so the batcher skips the request if it
                // is still queued: a request past its deadline is never computed.
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

struct BatcherTask {
    settings: BatchSettings,
    queue: VecDeque<Queued>,
    queued_rows: usize,
    idle: Vec<usize>,
    workers: Vec<std::sync::mpsc::Sender<Batch>>,
    metrics: ModelMetrics,
}

impl BatcherTask {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Queued>,
        mut idle_rx: mpsc::UnboundedReceiver<usize>,
    ) {
        let mut open = true;
        while open || !self.queue.is_empty() {
            self.dispatch();
            let wake = self.wake_time();
            tokio::select! {
                request = requests.recv(), if open => match request {
                    Some(request) => {
                        self.push(request);
                        // Take everything already waiting: one wake-up, one bigger batch.
                        while let Ok(request) = requests.try_recv() {
                            self.push(request);
                        }
                    }
                    None => open = false,
                },
                Some(id) = idle_rx.recv() => self.idle.push(id),
                _ = sleep_until_opt(wake), if wake.is_some() => {}
            }
        }
        // Dropping `workers` ends each worker's receive loop once its batch is done.
    }

    fn push(&mut self, request: Queued) {
        self.queued_rows += request.rows;
        self.queue.push_back(request);
        self.metrics.queue_depth.set(self.queue.len() as i64);
    }

    /// When the batcher must look again even if nothing arrives: the oldest request's delay
    /// running out, while a worker is idle.
    fn wake_time(&self) -> Option<Instant> {
        if self.idle.is_empty() || self.settings.max_queue_delay.is_zero() {
            return None;
        }
        self.queue
            .front()
            .map(|oldest| oldest.enqueued + self.settings.max_queue_delay)
    }

    fn batch_is_due(&self, now: Instant) -> bool {
        let Some(oldest) = self.queue.front() else {
            return false;
        };
        let s = &self.settings;
        if s.max_queue_delay.is_zero() || s.max_batch_size == 0 {
            return true;
        }
        let target = s
            .preferred_batch_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(s.max_batch_size);
        self.queued_rows >= target || now >= oldest.enqueued + s.max_queue_delay
    }

    fn dispatch(&mut self) {
        let now = Instant::now();
        while !self.idle.is_empty() && self.batch_is_due(now) {
            let batch = self.take_batch(now);
            self.metrics.queue_depth.set(self.queue.len() as i64);
            if batch.items.is_empty() {
                continue;
            }
            let id = self.idle.pop().expect("checked non-empty");
            if let Err(returned) = self.workers[id].send(batch) {
                // The worker thread died (a panicking engine). Answer its batch and retire it.
                for item in returned.0.items {
                    let _ = item.reply.send(Err(InferError::new(
                        ErrorKind::Internal,
                        "engine worker stopped unexpectedly",
                    )));
                }
            }
        }
    }

    /// Pops requests from the front into one batch, skipping abandoned and expired ones.
    fn take_batch(&mut self, now: Instant) -> Batch {
        let limit = self.settings.max_batch_size.max(1);
        let mut batch = Batch {
            items: Vec::new(),
            rows: 0,
            dispatched: now,
        };
        while let Some(front) = self.queue.front() {
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
            } = self.queue.pop_front().expect("front exists");
            drop(_permit);
            self.queued_rows -= rows;
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

async fn sleep_until_opt(wake: Option<Instant>) {
    if let Some(at) = wake {
        tokio::time::sleep_until(at).await;
    }
}

fn worker(
    id: usize,
    mut runner: Box<dyn Runner>,
    batches: std::sync::mpsc::Receiver<Batch>,
    idle: mpsc::UnboundedSender<usize>,
    metrics: ModelMetrics,
) {
    while let Ok(batch) = batches.recv() {
        run_batch(runner.as_mut(), batch, &metrics);
        if idle.send(id).is_err() {
            break;
        }
    }
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
