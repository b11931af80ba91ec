//! One open-loop request-rate level. A dispatcher thread wakes at each scheduled send time and
//! hands the request to a task holding one of `--max-in-flight` permits; connections come from
//! a per-target pool. When every permit is busy at a request's scheduled time, the request is
//! counted late and waits for a permit; its latency runs from its scheduled time, so waiting to
//! be sent is part of it (no coordinated omission).

use crate::level::{LevelSettings, Targets, measure};
use crate::options::Load;
use crate::rates::Schedule;
use crate::report::LevelResult;
use crate::tally::Tally;
use crate::worker::{LevelControl, Open, RECONNECT_PAUSE};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::{Semaphore, mpsc};

/// Seed of the Poisson schedule: fixed, so that runs are comparable.
const SCHEDULE_SEED: u64 = 0x5EED;

/// Idle connections to one target.
type Pool = Arc<Mutex<Vec<Open>>>;

/// Measures one request rate.
pub async fn run_rate_level(
    load: Load,
    targets: &Targets,
    settings: &LevelSettings,
) -> LevelResult {
    let Load::Rate {
        rps,
        arrivals,
        max_in_flight,
    } = load
    else {
        unreachable!("run_rate_level is only called for rate levels")
    };
    let tally = Arc::new(Mutex::new(Tally::new(settings.timeout)));
    let control = Arc::new(LevelControl::new(settings.max_requests));
    let permits = Arc::new(Semaphore::new(max_in_flight));
    let pools: Vec<Pool> = targets.servers.iter().map(|_| Pool::default()).collect();
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);

    // A thread rather than a task: std::thread::sleep wakes within tens of microseconds, while
    // tokio's timer rounds up to whole milliseconds, which would add up to 1 ms to every latency.
    let dispatcher = Dispatcher {
        runtime: tokio::runtime::Handle::current(),
        targets: targets.clone(),
        settings: settings.clone(),
        tally: tally.clone(),
        control: control.clone(),
        permits: permits.clone(),
        pools,
        schedule: Schedule::new(arrivals, rps, SCHEDULE_SEED),
    };
    std::thread::Builder::new()
        .name("loadtest-dispatch".into())
        .spawn(move || dispatcher.run(done_tx))
        .expect("the OS can start a thread");

    let measured = measure(&load.label(), vec![tally], &mut done_rx, settings).await;
    control.stop();
    // Closed once the dispatcher and every request it started have finished.
    while done_rx.recv().await.is_some() {}
    LevelResult::new(
        load,
        settings.rows,
        &measured.total,
        measured.windows,
        measured.stable,
        measured.server,
    )
}

struct Dispatcher {
    runtime: tokio::runtime::Handle,
    targets: Targets,
    settings: LevelSettings,
    tally: Arc<Mutex<Tally>>,
    control: Arc<LevelControl>,
    permits: Arc<Semaphore>,
    pools: Vec<Pool>,
    schedule: Schedule,
}

impl Dispatcher {
    /// Sends requests on schedule until the level stops or its budget runs out; `done` (and
    /// its clones in each request task) closes the level's channel when everything has ended.
    fn run(mut self, done: mpsc::Sender<()>) {
        let mut due = Instant::now();
        let mut index = 0usize;
        while self.control.next_ticket() {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let (permit, late) = match self.permits.clone().try_acquire_owned() {
                Ok(permit) => (permit, false),
                Err(_) => {
                    let waited = self.runtime.block_on(self.permits.clone().acquire_owned());
                    (waited.expect("the semaphore is never closed"), true)
                }
            };
            if self.control.stopped() {
                break;
            }
            let exchange = self.targets.exchange(index, self.settings.timeout);
            let pool = self.pools[index % self.pools.len()].clone();
            let tally = self.tally.clone();
            let done = done.clone();
            let scheduled = due;
            self.runtime.spawn(async move {
                let mut connection = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let sent = exchange.send(&mut connection).await;
                let latency = scheduled.elapsed();
                {
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    tally.record_schedule(late, sent.sent_at.saturating_duration_since(scheduled));
                    tally.record(sent.outcome, latency);
                }
                if let Some(open) = connection {
                    pool.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(open);
                }
                if sent.refused {
                    // Hold the permit a moment, so a dead server is not hammered.
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                drop(permit);
                drop(done);
            });
            index = index.wrapping_add(1);
            due += self.schedule.next_gap();
        }
    }
}
