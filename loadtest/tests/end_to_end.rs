//! The load generator against a real (small) HTTP server: counts, error classes, server timings,
//! early failures, output files and stability.

mod support;

use spindle_loadtest::server_stats::TimingSource;
use spindle_loadtest::{Arrivals, ConcurrencyLevels, LoadtestArgs, Protocol, RateLevels, run};
use std::time::Duration;
use support::{Fault, dead_url, start, start_with_statistics};

/// Arguments for a short, deterministic run: no warmup, one long window, a request cap.
fn quick(url: &str, concurrency: &[usize], max_requests: u64) -> LoadtestArgs {
    let mut args = LoadtestArgs::new(url, "m");
    args.concurrency = Some(ConcurrencyLevels(concurrency.to_vec()));
    args.warmup = Duration::ZERO;
    args.window = Duration::from_secs(20);
    args.max_requests = Some(max_requests);
    args.timeout = Duration::from_secs(5);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fifth_request_rejected_is_counted_as_429() {
    let server = start(
        &[-1, 24, 24, 3],
        vec![
            Fault::None,
            Fault::None,
            Fault::None,
            Fault::None,
            Fault::Status(429),
        ],
    );
    let report = run(quick(&server.url, &[1, 4], 100)).await.unwrap();
    assert_eq!(server.infers(), 200, "max-requests caps each level");
    assert_eq!(
        server.malformed.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the server accepted every request"
    );
    for level in &report.levels {
        assert_eq!(level.requests, 80, "concurrency {}", level.concurrency);
        assert_eq!(level.errors.total, 20);
        assert_eq!(level.errors.too_many_requests, 20);
        assert!(level.first_error.as_deref().unwrap().contains("429"));
        assert!(level.throughput_rps > 0.0 && level.p50_us > 0 && level.p99_us >= level.p50_us);
        assert_eq!(
            (level.server_queue_us, level.server_compute_us),
            (100.0, 250.0)
        );
        assert_eq!(
            level.server_timing,
            TimingSource::Headers,
            "a server without statistics falls back to the headers"
        );
        assert!(
            !level.stable,
            "a level cut short by max-requests is not stable"
        );
    }
    assert_eq!(report.rows_per_request, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_classified() {
    let script = vec![
        Fault::None,
        Fault::Status(429),
        Fault::Status(400),
        Fault::Status(503),
        Fault::ShortBody,
    ];
    let server = start(&[-1, 8], script);
    let report = run(quick(&server.url, &[2], 50)).await.unwrap();
    let level = &report.levels[0];
    let e = &level.errors;
    assert_eq!(level.requests, 10);
    assert_eq!(
        (
            e.too_many_requests,
            e.client_error,
            e.server_error,
            e.invalid_response
        ),
        (10, 10, 10, 10)
    );
    assert_eq!((e.total, e.timeout, e.connection), (40, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_whose_every_request_is_refused_fails_the_run() {
    let server = start(&[-1, 8], vec![Fault::Status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = quick(&server.url, &[2, 4], 30);
    args.json = Some(dir.path().join("out.json"));
    let error = format!("{:#}", run(args).await.unwrap_err());
    assert!(
        error.contains("every request at concurrency 2 failed")
            && error.contains("other 4xx: 30")
            && error.contains("400"),
        "{error}"
    );
    assert_eq!(server.infers(), 30, "the sweep stops at the refused level");
    // What was measured is still written, with the refusals counted.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.json")).unwrap()).unwrap();
    assert_eq!(json["levels"].as_array().unwrap().len(), 1);
    assert_eq!(json["levels"][0]["errors"]["client_error"], 30);

    // One success among refusals is a measurement, not a failed run.
    let mixed = start(&[-1, 8], vec![Fault::Status(400), Fault::None]);
    let report = run(quick(&mixed.url, &[1], 10)).await.unwrap();
    assert_eq!(
        (report.levels[0].requests, report.levels[0].errors.total),
        (5, 5)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_dropped_connections_reconnect() {
    let script = vec![
        Fault::None,
        Fault::Delay(Duration::from_millis(800)),
        Fault::None,
        Fault::Drop,
    ];
    let server = start(&[-1, 8], script);
    let mut args = quick(&server.url, &[1], 40);
    args.timeout = Duration::from_millis(200);
    let report = run(args).await.unwrap();
    let e = &report.levels[0].errors;
    assert_eq!(
        (report.levels[0].requests, e.timeout, e.connection),
        (20, 10, 10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_json_requests_are_accepted() {
    let server = start(&[-1, 4, 4, 3], vec![]);
    let mut args = quick(&server.url, &[3], 30);
    args.batch = 4;
    args.protocol = Protocol::HttpJson;
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert_eq!((level.requests, level.errors.total), (30, 0));
    assert_eq!(report.rows_per_request, 4);
    assert!((level.inferences_per_s - 4.0 * level.throughput_rps).abs() < 1e-6);
    assert_eq!(
        level.server_queue_us, 0.0,
        "JSON answers carry no timing headers here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_spread_across_urls() {
    let (a, b) = (start(&[-1, 8], vec![]), start(&[-1, 8], vec![]));
    let mut args = quick(&a.url, &[4], 400);
    args.url.push(b.url.clone());
    let report = run(args).await.unwrap();
    assert_eq!(report.levels[0].requests, 400);
    assert_eq!(a.infers() + b.infers(), 400);
    assert!(
        a.infers() > 0 && b.infers() > 0,
        "a: {}, b: {}",
        a.infers(),
        b.infers()
    );
}

#[tokio::test]
async fn unreachable_url_fails_before_any_load() {
    let live = start(&[-1, 8], vec![]);
    let dead = dead_url();
    let mut args = quick(&live.url, &[1], 10);
    args.url.push(dead.clone());
    let error = format!("{:#}", run(args).await.unwrap_err());
    assert!(
        error.contains(&dead) && error.contains("unreachable"),
        "{error}"
    );
    assert_eq!(live.infers(), 0, "no load before every target is checked");
}

#[tokio::test]
async fn unknown_model_fails_with_the_servers_message() {
    let server = start(&[-1, 8], vec![]);
    let mut args = quick(&server.url, &[1], 10);
    args.model = "nope".into();
    let error = format!("{:#}", run(args).await.unwrap_err());
    assert!(error.contains(&server.url), "{error}");
    assert!(
        error.contains("does not serve model 'nope'")
            && error.contains("model 'nope' is not loaded"),
        "{error}"
    );
    assert_eq!(server.infers(), 0);
}

#[tokio::test]
async fn variable_dims_ask_for_fixed_shapes() {
    let server = start(&[-1, -1], vec![]);
    let error = format!("{:#}", run(quick(&server.url, &[1], 10)).await.unwrap_err());
    assert!(
        error.contains("fixed shapes") && error.contains("--shape x:N"),
        "{error}"
    );
    let mut args = quick(&server.url, &[1], 10);
    args.shape = vec!["x:16".parse().unwrap()];
    assert_eq!(run(args).await.unwrap().levels[0].errors.total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_load_stops_after_three_agreeing_windows_and_writes_files() {
    let server = start(&[-1, 8], vec![]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = quick(&server.url, &[2], u64::MAX);
    args.max_requests = None;
    args.warmup = Duration::from_millis(100);
    args.window = Duration::from_millis(200);
    args.stability = 100.0;
    args.csv = Some(dir.path().join("out.csv"));
    args.json = Some(dir.path().join("out.json"));
    args.chart = Some(dir.path().join("out.svg"));
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert!(level.stable);
    let svg = std::fs::read_to_string(dir.path().join("out.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<circle class=\"p99 point\"").count(), 1);
    assert_eq!(level.windows.len(), 3);
    assert!(
        (0.5..1.0).contains(&level.duration_s),
        "{}",
        level.duration_s
    );

    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with(
        "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue"
    ));
    assert!(lines[1].starts_with("2,"));
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!((cells[4], cells[6]), ("100", "250"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.json")).unwrap()).unwrap();
    assert_eq!(json["levels"][0]["concurrency"], 2);
    assert_eq!(json["protocol"], "http-binary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstable_levels_end_at_max_windows() {
    let server = start(&[-1, 8], vec![]);
    let mut args = quick(&server.url, &[1], u64::MAX);
    args.max_requests = None;
    args.window = Duration::from_millis(100);
    args.max_windows = 2;
    let report = run(args).await.unwrap();
    assert_eq!(report.levels[0].windows.len(), 2);
    assert!(!report.levels[0].stable);
}

/// How many requests per second one generator drives against the trivial server at concurrency
/// 16, and the CPU each side spends per request. Run with
/// `cargo test --release -p spindle-loadtest -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn generator_throughput_at_concurrency_16() {
    let server = start(&[-1, 16], vec![]);
    for client_threads in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(client_threads)
            .enable_all()
            .build()
            .unwrap();
        let mut args = quick(&server.url, &[16], u64::MAX);
        args.max_requests = None;
        args.warmup = Duration::from_secs(1);
        args.window = Duration::from_secs(2);
        args.max_windows = 3;
        let before = thread_cpu();
        let report = runtime.block_on(run(args)).unwrap();
        let after = thread_cpu();
        let level = &report.levels[0];
        let sent = level.throughput_rps * (level.duration_s + 1.0);
        println!(
            "THROUGHPUT client_threads={client_threads}: {:.0} req/s at concurrency 16 (p50 {} us, p99 {} us, errors {}); \
             CPU per request: client {:.1} us, server {:.1} us",
            level.throughput_rps,
            level.p50_us,
            level.p99_us,
            level.errors.total,
            (after.0 - before.0) / sent,
            (after.1 - before.1) / sent,
        );
        assert_eq!(level.errors.total, 0);
    }
}

/// CPU microseconds used so far by (every other thread, the server's thread), from /proc.
fn thread_cpu() -> (f64, f64) {
    let mut cpu = (0.0, 0.0);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        let fields: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of stat, in clock ticks (100 per second on Linux).
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        let micros = ticks * 10_000.0;
        if name == support::SERVER_THREAD {
            cpu.1 += micros
        } else {
            cpu.0 += micros
        }
    }
    cpu
}

/// Open-loop arguments: one measured window of `window` at each rate, no warm-up.
fn open_loop(url: &str, rates: &[f64], max_in_flight: usize, window: Duration) -> LoadtestArgs {
    let mut args = LoadtestArgs::new(url, "m");
    args.rate = Some(RateLevels(rates.to_vec()));
    args.max_in_flight = max_in_flight;
    args.warmup = Duration::ZERO;
    args.window = window;
    args.max_windows = 1;
    args.timeout = Duration::from_secs(5);
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_rate_is_kept_when_the_server_keeps_up() {
    let server = start(&[-1, 8], vec![]);
    let mut args = open_loop(&server.url, &[100.0], 16, Duration::from_secs(2));
    args.arrivals = Arrivals::Poisson;
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert_eq!(level.rate_rps, Some(100.0));
    assert_eq!(level.errors.total, 0);
    // Poisson arrivals over 2 s vary by about 1/sqrt(200) = 7 %; allow 25 %.
    assert!(
        (75.0..=125.0).contains(&level.throughput_rps),
        "{} req/s at a rate of 100/s",
        level.throughput_rps
    );
    assert!(report.is_rate());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_find_every_slot_busy_are_late_and_their_wait_counts() {
    // Two slots of 20 ms serve at most 100 requests/s; 200/s are scheduled.
    let server = start(&[-1, 8], vec![Fault::Delay(Duration::from_millis(20))]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = open_loop(&server.url, &[200.0], 2, Duration::from_secs(1));
    args.csv = Some(dir.path().join("rate.csv"));
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert!(level.throughput_rps <= 110.0, "{}", level.throughput_rps);
    assert!(
        level.late >= 50,
        "only {} late of {}",
        level.late,
        level.requests
    );
    // The backlog grows by 100 requests/s, so the last ones waited hundreds of milliseconds:
    // a generator that timed from the actual send would report about 20 ms.
    assert!(level.p99_us > 150_000, "p99 {} us", level.p99_us);
    assert!(
        level.max_send_delay_us > 150_000,
        "{}",
        level.max_send_delay_us
    );
    let csv = std::fs::read_to_string(dir.path().join("rate.csv")).unwrap();
    assert!(csv.starts_with("Request Rate,Inferences/Second"), "{csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("200,"), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_columns_come_from_the_servers_statistics() {
    let server = start_with_statistics(&[-1, 8], vec![]);
    let dir = tempfile::tempdir().unwrap();
    let mut args = quick(&server.url, &[2], 200);
    args.csv = Some(dir.path().join("out.csv"));
    let report = run(args).await.unwrap();
    let level = &report.levels[0];
    assert_eq!(level.server_timing, TimingSource::Statistics);
    assert_eq!(
        (
            level.server_queue_us,
            level.server_compute_input_us,
            level.server_compute_infer_us,
            level.server_compute_output_us
        ),
        (40.0, 10.0, 200.0, 5.0),
        "per-request means of the statistics' deltas, not the headers' 100 and 250"
    );
    let csv = std::fs::read_to_string(dir.path().join("out.csv")).unwrap();
    let cells: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(&cells[4..8], ["40", "10", "200", "5"]);
}
