//! Batcher behaviour under tokio's paused clock: what closes a batch, what is refused, what is
//! never computed.

use super::*;
use crate::engine::EngineError;
use crate::metrics::Metrics;
use crate::tensor::TensorData;
use std::sync::{Condvar, Mutex};

/// A runner that doubles its input, logs each batch's values, fails batches containing a
/// negative value, and can be held closed to simulate a busy engine.
#[derive(Clone, Default)]
struct Probe {
    batches: Arc<Mutex<Vec<Vec<f32>>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Probe {
    fn close(&self) {
        *self.gate.0.lock().unwrap() = true;
    }

    fn open(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }

    fn batches(&self) -> Vec<Vec<f32>> {
        self.batches.lock().unwrap().clone()
    }
}

impl Runner for Probe {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let TensorData::F32(values) = &inputs[0].data else {
            panic!("probe takes FP32");
        };
        self.batches.lock().unwrap().push(values.clone());
        let (lock, cvar) = &*self.gate;
        let _held = cvar
            .wait_while(lock.lock().unwrap(), |closed| *closed)
            .unwrap();
        if values.iter().any(|&v| v < 0.0) {
            return Err(EngineError::Run("negative input".into()));
        }
        let doubled = values.iter().map(|v| v * 2.0).collect();
        Ok(vec![
            Tensor::new(inputs[0].shape.clone(), TensorData::F32(doubled)).unwrap(),
        ])
    }
}

fn settings(max_batch_size: usize, delay_ms: u64, max_queue_size: usize) -> BatchSettings {
    BatchSettings {
        max_batch_size,
        preferred_batch_sizes: vec![],
        max_queue_delay: Duration::from_millis(delay_ms),
        max_queue_size,
        idle_spin: Duration::ZERO,
    }
}

fn start(probe: &Probe, settings: BatchSettings) -> Batcher {
    let metrics = Metrics::new().for_model("probe", 1);
    Batcher::start("probe", settings, vec![Box::new(probe.clone())], metrics)
}

fn row(value: f32) -> Vec<Tensor> {
    vec![Tensor::new(vec![1, 1], TensorData::F32(vec![value])).unwrap()]
}

fn spawn_infer(
    batcher: &Batcher,
    value: f32,
) -> tokio::task::JoinHandle<Result<InferOutput, InferError>> {
    let batcher = batcher.clone();
    tokio::spawn(async move { batcher.infer(row(value), 1, None).await })
}

/// Lets spawned tasks (and the delay timer) run until they block.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// Waits (in real time) until the probe has started `n` batches.
async fn until_batches(probe: &Probe, n: usize) {
    let start = std::time::Instant::now();
    while probe.batches().len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "probe never ran {n} batches"
        );
        std::thread::sleep(Duration::from_millis(1));
        tokio::task::yield_now().await;
    }
}

fn value(output: &InferOutput) -> f32 {
    match &output.outputs[0].data {
        TensorData::F32(v) => v[0],
        other => panic!("unexpected output {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_closes_when_it_reaches_max_size() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(4, 1000, 16));
    let handles: Vec<_> = (0..4).map(|i| spawn_infer(&batcher, i as f32)).collect();
    for (i, handle) in handles.into_iter().enumerate() {
        let out = handle.await.unwrap().unwrap();
        assert_eq!(
            value(&out),
            2.0 * i as f32,
            "answers go back to their callers"
        );
        assert_eq!(out.batch_rows, 4);
        assert!(
            out.queue_time < Duration::from_secs(1),
            "did not wait for the delay"
        );
    }
    assert_eq!(probe.batches(), vec![vec![0.0, 1.0, 2.0, 3.0]]);
}

#[tokio::test(start_paused = true)]
async fn a_partial_batch_closes_when_the_oldest_has_waited_the_delay() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(8, 10, 16));
    let handles: Vec<_> = (0..3).map(|i| spawn_infer(&batcher, i as f32)).collect();
    for handle in handles {
        let out = handle.await.unwrap().unwrap();
        assert_eq!(out.batch_rows, 3);
        assert!(
            out.queue_time >= Duration::from_millis(10),
            "{:?}",
            out.queue_time
        );
    }
    assert_eq!(probe.batches().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_zero_delay_the_next_batch_gathers_while_one_runs() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(8, 0, 16));
    probe.close();
    let first = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let rest: Vec<_> = (2..5).map(|i| spawn_infer(&batcher, i as f32)).collect();
    settle().await;
    probe.open();
    assert_eq!(first.await.unwrap().unwrap().batch_rows, 1);
    for handle in rest {
        assert_eq!(handle.await.unwrap().unwrap().batch_rows, 3);
    }
    assert_eq!(probe.batches(), vec![vec![1.0], vec![2.0, 3.0, 4.0]]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once_with_retry_after() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(1, 0, 2));
    probe.close();
    let running = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let queued: Vec<_> = (0..2).map(|i| spawn_infer(&batcher, i as f32)).collect();
    settle().await;
    let refused = batcher.infer(row(9.0), 1, None).await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Overloaded);
    assert!(refused.retry_after.is_some());
    probe.open();
    running.await.unwrap().unwrap();
    for handle in queued {
        handle.await.unwrap().unwrap();
    }
    assert!(
        !probe.batches().contains(&vec![9.0]),
        "refused request was computed"
    );
    // Once the queue drains, requests are admitted again.
    batcher.infer(row(3.0), 1, None).await.unwrap();
}

/// The `spindle_requests_total` samples of `metrics`, by outcome.
fn outcomes(metrics: &Metrics) -> Vec<(String, f64)> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("spindle_requests_total{"))
        .filter_map(|l| {
            let outcome = l.split("outcome=\"").nth(1)?.split('"').next()?;
            Some((outcome.to_string(), l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_request_past_its_deadline_is_answered_504_never_computed_and_counted_once() {
    let probe = Probe::default();
    let metrics = Metrics::new();
    let batcher = Batcher::start(
        "probe",
        settings(4, 0, 16),
        vec![Box::new(probe.clone())],
        metrics.for_model("probe", 1),
    );
    probe.close();
    let running = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let deadline = Instant::now() + Duration::from_millis(50);
    let err = batcher
        .infer(row(7.0), 1, Some(deadline))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::DeadlineExceeded);
    assert_eq!(err.kind.classify().http, 504);
    // The worker finds the expired request when it takes the next batch.
    probe.open();
    running.await.unwrap().unwrap();
    batcher.infer(row(2.0), 1, None).await.unwrap();
    assert_eq!(probe.batches(), vec![vec![1.0], vec![2.0]]);
    let mut counted = outcomes(&metrics);
    counted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        counted,
        [
            ("deadline_exceeded".to_string(), 1.0),
            ("success".to_string(), 2.0)
        ],
        "{}",
        metrics.render()
    );
}

#[tokio::test(start_paused = true)]
async fn requests_of_different_row_shapes_run_in_separate_batches() {
    // A model whose second dimension is -1: rows of 1 and of 2 values may both come.
    let probe = Probe::default();
    let batcher = start(&probe, settings(8, 0, 16));
    probe.close();
    let running = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let spawn = |shape: Vec<usize>, values: Vec<f32>| {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let input = Tensor::new(shape, TensorData::F32(values)).unwrap();
            batcher.infer(vec![input], 1, None).await
        })
    };
    let narrow = spawn(vec![1, 1], vec![5.0]);
    settle().await;
    let wide = spawn(vec![1, 2], vec![6.0, 7.0]);
    settle().await;
    let narrow_again = spawn(vec![1, 1], vec![8.0]);
    settle().await;
    probe.open();
    running.await.unwrap().unwrap();
    let answer = |out: InferOutput| {
        let TensorData::F32(v) = &out.outputs[0].data else {
            panic!("FP32 out")
        };
        (out.outputs[0].shape.clone(), v.clone())
    };
    assert_eq!(
        answer(narrow.await.unwrap().unwrap()),
        (vec![1, 1], vec![10.0])
    );
    assert_eq!(
        answer(wide.await.unwrap().unwrap()),
        (vec![1, 2], vec![12.0, 14.0])
    );
    assert_eq!(
        answer(narrow_again.await.unwrap().unwrap()),
        (vec![1, 1], vec![16.0])
    );
    // Queue order is kept: a request of another shape closes the batch before it.
    assert_eq!(
        probe.batches(),
        vec![vec![1.0], vec![5.0], vec![6.0, 7.0], vec![8.0]]
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_whose_caller_went_away_is_skipped() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(4, 0, 16));
    probe.close();
    let running = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let abandoned = spawn_infer(&batcher, 5.0);
    let kept = spawn_infer(&batcher, 6.0);
    settle().await;
    abandoned.abort();
    settle().await;
    probe.open();
    running.await.unwrap().unwrap();
    assert_eq!(value(&kept.await.unwrap().unwrap()), 12.0);
    assert_eq!(probe.batches(), vec![vec![1.0], vec![6.0]]);
    // The abandoned caller is no longer counted: a later lone caller still counts as lone.
    assert_eq!(batcher.shared.callers.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn one_engine_failure_is_answered_to_the_whole_batch_and_serving_goes_on() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(4, 0, 16));
    probe.close();
    let running = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    let bad = spawn_infer(&batcher, -1.0);
    let good = spawn_infer(&batcher, 2.0);
    settle().await;
    probe.open();
    running.await.unwrap().unwrap();
    for handle in [bad, good] {
        let err = handle.await.unwrap().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Internal);
        assert!(err.message.contains("negative input"), "{err}");
    }
    assert_eq!(value(&batcher.infer(row(4.0), 1, None).await.unwrap()), 8.0);
}

#[tokio::test]
async fn a_batch_larger_than_the_maximum_is_invalid_input() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(2, 0, 16));
    let three = vec![Tensor::new(vec![3, 1], TensorData::F32(vec![1.0, 2.0, 3.0])).unwrap()];
    let err = batcher.infer(three, 3, None).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(err.message.contains("max_batch_size 2"), "{err}");
    assert!(probe.batches().is_empty());
}

#[tokio::test]
async fn dropping_every_handle_stops_the_workers() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(4, 0, 16));
    assert_eq!(value(&batcher.infer(row(1.0), 1, None).await.unwrap()), 2.0);
    // The worker's runner holds the other reference to the probe's log; it goes when the worker
    // thread ends.
    assert_eq!(Arc::strong_count(&probe.batches), 2);
    drop(batcher);
    let start = std::time::Instant::now();
    while Arc::strong_count(&probe.batches) > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the worker thread outlived its batcher"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test]
async fn a_spinning_worker_takes_the_next_request_and_stops_with_its_batcher() {
    let probe = Probe::default();
    let spin = Duration::from_secs(2);
    let batcher = start(
        &probe,
        BatchSettings {
            idle_spin: spin,
            ..settings(4, 0, 16)
        },
    );
    // Each lone request leaves the worker spinning; the next is handed to it mid-spin.
    for v in [1.0, 2.0, 3.0] {
        assert_eq!(
            value(&batcher.infer(row(v), 1, None).await.unwrap()),
            2.0 * v
        );
    }
    drop(batcher);
    // Closing is noticed mid-spin, not when the spin runs out.
    let start = std::time::Instant::now();
    while Arc::strong_count(&probe.batches) > 1 {
        assert!(
            start.elapsed() < spin / 2,
            "a spinning worker outlived its batcher"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[tokio::test(start_paused = true)]
async fn with_a_delay_a_worker_that_finishes_leaves_a_young_queue_to_the_timer() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(8, 10, 16));
    probe.close();
    // The first request waits out the delay alone, then holds the worker.
    let first = spawn_infer(&batcher, 1.0);
    // Advances the paused clock past the delay (the runtime idles while this sleeps).
    tokio::time::sleep(Duration::from_millis(11)).await;
    until_batches(&probe, 1).await;
    let second = spawn_infer(&batcher, 2.0);
    settle().await;
    probe.open();
    assert_eq!(first.await.unwrap().unwrap().batch_rows, 1);
    // The worker went idle with one young request queued: it runs once its delay is over.
    let out = second.await.unwrap().unwrap();
    assert_eq!(out.batch_rows, 1);
    assert!(
        out.queue_time >= Duration::from_millis(10),
        "{:?}",
        out.queue_time
    );
    assert_eq!(probe.batches(), vec![vec![1.0], vec![2.0]]);
}

#[tokio::test]
async fn a_lone_caller_checks_for_the_last_lone_run_plus_idle_spin_unless_that_run_was_long() {
    let probe = Probe::default();
    let idle_spin = Duration::from_millis(1);
    let batcher = start(
        &probe,
        BatchSettings {
            idle_spin,
            ..settings(4, 0, 16)
        },
    );
    let shared = &batcher.shared;
    // No caller in flight: nobody to spin for.
    assert_eq!(shared.front_spin(), Duration::ZERO);
    let lone = || Caller::count(&shared.callers);

    // A lone run of 5 ms: the next lone caller sleeps at once.
    probe.close();
    let slow = spawn_infer(&batcher, 1.0);
    until_batches(&probe, 1).await;
    std::thread::sleep(Duration::from_millis(5));
    probe.open();
    slow.await.unwrap().unwrap();
    assert_eq!(shared.callers.load(Ordering::Relaxed), 0);
    let caller = lone();
    assert_eq!(shared.front_spin(), Duration::ZERO);
    drop(caller);

    // A quick lone run: its time plus idle_spin, for a lone caller only. (On a loaded machine
    // a trivial run can still be preempted past 2 ms, so it gets a few tries.)
    let mut spin = Duration::ZERO;
    for _ in 0..20 {
        assert_eq!(value(&batcher.infer(row(2.0), 1, None).await.unwrap()), 4.0);
        let _caller = lone();
        spin = shared.front_spin();
        if !spin.is_zero() {
            break;
        }
    }
    assert!(
        spin >= idle_spin && spin <= idle_spin + LONG_RUN,
        "spin {spin:?}"
    );
    let caller = lone();
    let second = lone();
    assert_eq!(shared.front_spin(), Duration::ZERO, "two callers in flight");
    drop((caller, second));
    assert_eq!(shared.callers.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn with_idle_spin_off_a_lone_caller_sleeps_at_once() {
    let probe = Probe::default();
    let batcher = start(&probe, settings(4, 0, 16));
    assert_eq!(value(&batcher.infer(row(1.0), 1, None).await.unwrap()), 2.0);
    let _caller = Caller::count(&batcher.shared.callers);
    assert_eq!(batcher.shared.front_spin(), Duration::ZERO);
}

#[tokio::test]
async fn a_spinning_caller_takes_an_answer_sent_mid_spin_or_after_it() {
    // Sent mid-spin: taken when it comes, long before the spin runs out.
    let (reply, answer) = oneshot::channel();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        reply.send(7).unwrap();
    });
    let started = std::time::Instant::now();
    assert_eq!(
        wait_spinning(answer, Duration::from_secs(10)).await,
        Some(7)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    sender.join().unwrap();

    // Sent after the spin ran out: the caller waits for it asleep.
    let (reply, answer) = oneshot::channel();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        reply.send(8).unwrap();
    });
    assert_eq!(
        wait_spinning(answer, Duration::from_millis(1)).await,
        Some(8)
    );
    sender.join().unwrap();

    // A worker that goes away mid-spin is noticed at once (and not awaited, which would panic).
    let (reply, answer) = oneshot::channel::<u32>();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(5));
        drop(reply);
    });
    let started = std::time::Instant::now();
    assert_eq!(wait_spinning(answer, Duration::from_secs(10)).await, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    dropper.join().unwrap();

    // And one that goes away after the spin ran out.
    let (reply, answer) = oneshot::channel::<u32>();
    let dropper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        drop(reply);
    });
    assert_eq!(wait_spinning(answer, Duration::from_millis(1)).await, None);
    dropper.join().unwrap();
}
