//! One concurrency level: start its workers, let them warm up, then measure window after window
//! until throughput is stable, the window limit is reached or the request budget runs out. The
//! warm-up and window loop ([`measure`]) is shared with the open-loop mode ([`crate::open_loop`]).

use crate::options::Load;
use crate::report::{LevelResult, WindowResult, window_line};
use crate::server_stats::{ServerBreakdown, StatsProbe};
use crate::tally::Tally;
use crate::target::Target;
use crate::worker::{Exchange, LevelControl, Template, Worker};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Windows that must agree before a level counts as stable (as perf_analyzer does).
pub const STABLE_WINDOWS: usize = 3;

/// How every level is measured.
#[derive(Debug, Clone)]
pub struct LevelSettings {
    /// Load before measuring, discarded.
    pub warmup: Duration,
    /// One measurement window.
    pub window: Duration,
    /// Windows at most.
    pub max_windows: usize,
    /// Stability threshold, percent.
    pub stability: f64,
    /// Requests per level at most, warmup included.
    pub max_requests: Option<u64>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Threads the closed-loop workers run on, each with a single-threaded runtime.
    pub threads: usize,
    /// Inferences per request.
    pub rows: usize,
    /// Print a line per window.
    pub verbose: bool,
    /// Reads the servers' statistics before and after each level; `None` when they have none
    /// (the server columns then come from response headers).
    pub stats: Option<Arc<StatsProbe>>,
}

/// The servers and the prepared request for each (same order).
#[derive(Debug, Clone)]
pub struct Targets {
    /// Servers under test.
    pub servers: Vec<Arc<Target>>,
    /// The request for each server.
    pub templates: Vec<Template>,
}

/// Measures one concurrency level.
pub async fn run_level(
    concurrency: usize,
    targets: &Targets,
    settings: &LevelSettings,
) -> LevelResult {
    let control = Arc::new(LevelControl::new(settings.max_requests));
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let slots: Vec<Arc<Mutex<Tally>>> = (0..concurrency)
        .map(|_| Arc::new(Mutex::new(Tally::new(settings.timeout))))
        .collect();
    // Workers are dealt round-robin to `threads` threads, each with its own single-threaded
    // runtime: a worker, its connection's I/O task and their wake-ups stay on one thread, with
    // no work-stealing scheduler between them (as wrk's event loop per thread).
    let threads = settings.threads.clamp(1, concurrency);
    let mut groups: Vec<Vec<Worker>> = (0..threads).map(|_| Vec::new()).collect();
    for (index, slot) in slots.iter().enumerate() {
        groups[index % threads].push(Worker {
            exchange: targets.exchange(index, settings.timeout),
            control: control.clone(),
            tally: slot.clone(),
        });
    }
    let mut started = Vec::with_capacity(threads);
    for (index, group) in groups.into_iter().enumerate() {
        // Every thread holds a sender; the channel closes when the last one has finished.
        let done = done_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || run_workers(group, done));
        match thread {
            Ok(handle) => started.push(handle),
            Err(e) => {
                // Without its thread a group sends nothing; the others still measure.
                println!("  concurrency {concurrency}: cannot start load thread {index}: {e}");
            }
        }
    }
    drop(done_tx);

    let label = format!("concurrency {concurrency}");
    let measured = measure(&label, slots, &mut done_rx, settings).await;
    control.stop();
    // Workers finish their request in flight (bounded by the timeout); the channel closes when
    // every thread is done. A panic is already reported and must not hide the other levels.
    while done_rx.recv().await.is_some() {}
    for handle in started {
        let _ = handle.join();
    }
    LevelResult::new(
        Load::Concurrency(concurrency),
        settings.rows,
        &measured.total,
        measured.windows,
        measured.stable,
        measured.server,
    )
}

/// Runs `workers` to the end on a single-threaded runtime of this thread, then drops `done`.
fn run_workers(workers: Vec<Worker>, done: mpsc::Sender<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            println!("  cannot build a load thread's runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let tasks: Vec<_> = workers
            .into_iter()
            .map(|worker| tokio::spawn(worker.run()))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    });
    // The connections' I/O tasks end with the runtime, before the level is reported finished.
    drop(runtime);
    drop(done);
}

impl Targets {
    /// The exchange for the `index`-th connection: targets are assigned round-robin.
    pub fn exchange(&self, index: usize, timeout: Duration) -> Exchange {
        let pick = index % self.servers.len();
        Exchange {
            target: self.servers[pick].clone(),
            template: self.templates[pick].clone(),
            timeout,
        }
    }
}

/// What [`measure`] found.
pub struct Measured {
    /// Every measured window merged.
    pub total: Tally,
    /// Each window.
    pub windows: Vec<WindowResult>,
    /// Whether the last windows agreed.
    pub stable: bool,
    /// The servers' own per-request timings over the measured windows, when their statistics
    /// could be read before and after.
    pub server: Option<ServerBreakdown>,
}

/// Warms up, then measures windows until they agree, `max_windows` is reached, or every load
/// task has finished (`done` closed: the request budget is used up). `slots` are the tallies
/// the load tasks record into; they are swapped out at each window's end.
pub async fn measure(
    label: &str,
    slots: Vec<Arc<Mutex<Tally>>>,
    done_rx: &mut mpsc::Receiver<()>,
    settings: &LevelSettings,
) -> Measured {
    let mut collector = Collector {
        slots,
        spare: Tally::new(settings.timeout),
        window: Tally::new(settings.timeout),
    };
    let mut finished = false;
    if !settings.warmup.is_zero() {
        finished = all_finished(done_rx, settings.warmup).await;
        collector.collect();
        if finished {
            println!(
                "  {label}: --max-requests was used up during the warmup; nothing was measured"
            );
        }
    }

    let before = read_stats(label, settings).await;
    let mut total = Tally::new(settings.timeout);
    let mut windows: Vec<WindowResult> = Vec::new();
    let mut stable = false;
    while !finished && !stable && windows.len() < settings.max_windows {
        let start = Instant::now();
        finished = all_finished(done_rx, settings.window).await;
        let elapsed = start.elapsed();
        let tally = collector.collect();
        total.merge(tally);
        let window = WindowResult::new(tally, elapsed);
        if settings.verbose {
            println!("{}", window_line(label, windows.len(), &window));
        }
        windows.push(window);
        stable = is_stable(&windows, settings.stability);
    }
    let server = match before {
        Some(before) => read_stats(label, settings)
            .await
            .map(|after| after.breakdown_since(&before)),
        None => None,
    };
    Measured {
        total,
        windows,
        stable,
        server,
    }
}

/// The servers' statistics now, or `None` (said once per level) when they cannot be read.
async fn read_stats(
    label: &str,
    settings: &LevelSettings,
) -> Option<crate::server_stats::InferStats> {
    let probe = settings.stats.as_ref()?;
    match probe.read().await {
        Ok(stats) => Some(stats),
        Err(e) => {
            println!(
                "  {label}: cannot read server statistics ({e:#}); server columns come from response headers"
            );
            None
        }
    }
}

/// Waits up to `limit`; true when every worker has finished (request budget used up).
async fn all_finished(done: &mut mpsc::Receiver<()>, limit: Duration) -> bool {
    matches!(tokio::time::timeout(limit, done.recv()).await, Ok(None))
}

/// Gathers the workers' tallies at a window's end.
struct Collector {
    slots: Vec<Arc<Mutex<Tally>>>,
    spare: Tally,
    window: Tally,
}

impl Collector {
    /// Swaps each worker's tally for an empty one (holding its lock only for the swap) and
    /// merges them into the window's.
    fn collect(&mut self) -> &Tally {
        self.window.reset();
        for slot in &self.slots {
            std::mem::swap(
                &mut *slot.lock().unwrap_or_else(PoisonError::into_inner),
                &mut self.spare,
            );
            self.window.merge(&self.spare);
            self.spare.reset();
        }
        &self.window
    }
}

/// True when the last [`STABLE_WINDOWS`] windows' throughputs are each within `percent` of their
/// mean.
pub fn is_stable(windows: &[WindowResult], percent: f64) -> bool {
    let Some(last) = windows
        .len()
        .checked_sub(STABLE_WINDOWS)
        .map(|start| &windows[start..])
    else {
        return false;
    };
    let mean = last.iter().map(|w| w.throughput_rps).sum::<f64>() / last.len() as f64;
    last.iter()
        .all(|w| (w.throughput_rps - mean).abs() <= mean * percent / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(throughputs: &[f64]) -> Vec<WindowResult> {
        throughputs
            .iter()
            .map(|&t| WindowResult {
                duration_s: 1.0,
                requests: t as u64,
                errors: 0,
                throughput_rps: t,
                p50_us: 0,
                p99_us: 0,
            })
            .collect()
    }

    #[test]
    fn stability_needs_three_agreeing_windows() {
        assert!(!is_stable(&windows(&[100.0, 100.0]), 10.0));
        assert!(is_stable(&windows(&[50.0, 100.0, 105.0, 95.0]), 10.0));
        assert!(!is_stable(&windows(&[100.0, 100.0, 130.0]), 10.0));
        assert!(is_stable(&windows(&[100.0, 100.0, 130.0]), 20.0));
        assert!(
            is_stable(&windows(&[0.0, 0.0, 0.0]), 10.0),
            "a level where everything fails is steady too"
        );
    }
}
