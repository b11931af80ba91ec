//! The queue side of the batcher: admitted requests wait here until a batch is due, and due
//! batches go to idle workers, handed over by whoever notices first (the caller that queued, the
//! worker that finished, or in delay mode the timer task). Everything here runs under the one
//! queue lock, which is never held across engine work.

use super::{BatchSettings, InferOutput, deadline_error};
use crate::error::{ErrorKind, InferError};
use crate::metrics::ModelMetrics;
use crate::tensor::Tensor;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

/// Where a request's answer goes.
pub(super) type Reply = oneshot::Sender<Result<InferOutput, InferError>>;

pub(super) struct Queued {
    pub(super) inputs: Vec<Tensor>,
    pub(super) rows: usize,
    pub(super) deadline: Option<Instant>,
    pub(super) enqueued: Instant,
    pub(super) reply: Reply,
    // Held while queued; dropping it readmits one request.
    pub(super) _permit: OwnedSemaphorePermit,
}

/// A request taken off the queue: its admission permit is already returned.
pub(super) struct Item {
    pub(super) inputs: Vec<Tensor>,
    pub(super) rows: usize,
    pub(super) enqueued: Instant,
    pub(super) reply: Reply,
}

pub(super) struct Batch {
    pub(super) items: Vec<Item>,
    pub(super) rows: usize,
    pub(super) dispatched: Instant,
}

/// A run this long makes a lone caller sleep at once (`Shared::front_spin`).
pub(super) const LONG_RUN: Duration = Duration::from_millis(2);

/// What callers, workers and the timer task share.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) settings: BatchSettings,
    pub(super) metrics: ModelMetrics,
    /// Wakes the timer task (delay mode only) when the oldest request or the idle set changed.
    pub(super) timer: Notify,
    /// Callers waiting for an answer (queued or computing): one means a lone caller.
    pub(super) callers: AtomicUsize,
    /// How long the last batch of a single request took to compute, in microseconds.
    pub(super) lone_compute_us: AtomicU64,
}

pub(super) struct State {
    pub(super) queue: VecDeque<Queued>,
    pub(super) queued_rows: usize,
    /// Workers waiting for a batch (their ids).
    pub(super) idle: Vec<usize>,
    /// One batch channel per worker; emptied when the batcher closes, which ends idle workers.
    pub(super) workers: Vec<std::sync::mpsc::Sender<Batch>>,
    pub(super) closed: bool,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // The lock is never held across engine work or user code, so a poisoned lock only means
        // a panic in this module's bookkeeping; the state is still consistent enough to go on.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long a caller checks for its answer before it sleeps. Only a lone caller (the only
    /// one counted in `callers`) checks at all: concurrent callers' HTTP and gRPC work needs the
    /// runtime's threads. It checks for the last lone batch's compute time plus `idle_spin`,
    /// unless that batch took so long (over 2 ms) that one wake-up more is noise, or spinning
    /// is off.
    pub(super) fn front_spin(&self) -> Duration {
        let spin = self.settings.idle_spin;
        let compute = Duration::from_micros(self.lone_compute_us.load(Ordering::Relaxed));
        if self.callers.load(Ordering::Relaxed) != 1 || spin.is_zero() || compute > LONG_RUN {
            return Duration::ZERO;
        }
        compute + spin
    }

    /// Queues one request and, if a worker is idle and a batch is due, hands it over at once.
    pub(super) fn submit(&self, request: Queued, now: Instant) -> Result<(), InferError> {
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
    pub(super) fn next_batch(&self, state: &mut State, now: Instant) -> Option<Batch> {
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
            // Requests join along the batch axis only when every other dimension agrees: a
            // model with -1 beyond the batch dimension takes requests of different shapes, and
            // those run in batches of their own.
            let joins = batch.rows + front.rows <= limit
                && self.settings.max_batch_size > 0
                && batch
                    .items
                    .first()
                    .is_none_or(|first| same_row_shapes(&first.inputs, &front.inputs));
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
            if deadline.is_some_and(|d| d <= now) {
                // Past its deadline: never computed. The caller counts it (deadline_exceeded)
                // whether it gave up already or gets this answer, so it is not counted here.
                let _ = reply.send(Err(deadline_error()));
                continue;
            }
            if reply.is_closed() {
                // The caller went away: skip, do not compute. Nobody else counts it.
                self.metrics.count_request("cancelled");
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

/// Whether two requests' inputs agree in every dimension but the first, so that their rows can
/// be stacked.
fn same_row_shapes(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.shape.get(1..) == b.shape.get(1..) && a.dtype() == b.dtype())
}

/// Delay mode only: dispatches when the oldest request's delay runs out.
pub(super) async fn timer(shared: Arc<Shared>) {
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
