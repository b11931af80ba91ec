//! The worker side of the batcher: one thread per runner, which runs the batches it is handed
//! (joining the requests' inputs and splitting the outputs back), then keeps taking due batches
//! off the queue before it goes idle.

use super::InferOutput;
use super::queue::{Batch, Shared};
use crate::engine::{EngineError, Runner};
use crate::error::{ErrorKind, InferError};
use crate::statistics::PhaseTimes;
use crate::tensor::Tensor;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// One worker: runs the batch it is handed, then keeps taking due batches straight off the queue
/// until there are none, and only then goes idle.
pub(super) fn worker(
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
            run_batch(runner.as_mut(), batch, lone, shared);
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

/// Runs one batch and answers its requests. `lone`: the batch holds one request.
fn run_batch(runner: &mut dyn Runner, batch: Batch, lone: bool, shared: &Shared) {
    let metrics = &shared.metrics;
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
    if lone {
        // What the next lone caller checks for its answer for (`Shared::front_spin`), stored
        // before the answer goes out so that caller's next request sees it.
        shared
            .lone_compute_us
            .store(compute_time.as_micros() as u64, Ordering::Relaxed);
    }
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
