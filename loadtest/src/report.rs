//! Results: per-window and per-level numbers, the console table, and the CSV (perf_analyzer's
//! columns) and JSON files.

use crate::args::Protocol;
use crate::tally::{ErrorCounts, Tally, mean_of};
use serde::Serialize;
use std::io::{self, Write};
use std::time::Duration;

/// The whole run.
#[derive(Serialize, Debug, Clone)]
pub struct Report {
    /// The model measured.
    pub model: String,
    /// Its version, when one was asked for.
    pub model_version: Option<String>,
    /// The servers load was spread across.
    pub urls: Vec<String>,
    /// Request encoding.
    pub protocol: Protocol,
    /// Inferences (rows) per request.
    pub rows_per_request: usize,
    /// One entry per concurrency level, in the order measured.
    pub levels: Vec<LevelResult>,
}

/// The measurement of one concurrency level (all of its windows merged).
#[derive(Serialize, Debug, Clone)]
pub struct LevelResult {
    /// Concurrent closed-loop connections.
    pub concurrency: usize,
    /// Successful requests measured.
    pub requests: u64,
    /// Failed requests measured, by class.
    pub errors: ErrorCounts,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Successful inferences (rows) per second.
    pub inferences_per_s: f64,
    /// Median latency of successful requests, microseconds.
    pub p50_us: u64,
    /// 90th percentile latency, microseconds.
    pub p90_us: u64,
    /// 95th percentile latency, microseconds.
    pub p95_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
    /// Mean latency, microseconds.
    pub mean_us: f64,
    /// Mean server queue time (`x-spindle-queue-us`), 0 when the server does not report it.
    pub server_queue_us: f64,
    /// Mean server compute time (`x-spindle-compute-us`), 0 when the server does not report it.
    pub server_compute_us: f64,
    /// Whether the last 3 windows agreed on throughput within `--stability`.
    pub stable: bool,
    /// Time measured (the windows' total), seconds.
    pub duration_s: f64,
    /// The first failure seen, to tell the user what went wrong.
    pub first_error: Option<String>,
    /// Each measurement window.
    pub windows: Vec<WindowResult>,
}

/// One measurement window.
#[derive(Serialize, Debug, Clone)]
pub struct WindowResult {
    /// Window length, seconds.
    pub duration_s: f64,
    /// Successful requests completed in it.
    pub requests: u64,
    /// Failed requests completed in it.
    pub errors: u64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Median latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile latency, microseconds.
    pub p99_us: u64,
}

impl WindowResult {
    /// Summarises a window's tally.
    pub fn new(tally: &Tally, elapsed: Duration) -> Self {
        WindowResult {
            duration_s: elapsed.as_secs_f64(),
            requests: tally.successes,
            errors: tally.errors.total,
            throughput_rps: per_second(tally.successes, elapsed),
            p50_us: tally.percentile_us(50.0),
            p99_us: tally.percentile_us(99.0),
        }
    }
}

impl LevelResult {
    /// Summarises a level from its merged windows.
    pub fn new(
        concurrency: usize,
        rows: usize,
        total: &Tally,
        windows: Vec<WindowResult>,
        stable: bool,
    ) -> Self {
        let duration_s: f64 = windows.iter().map(|w| w.duration_s).sum();
        let duration = Duration::from_secs_f64(duration_s);
        let throughput_rps = per_second(total.successes, duration);
        LevelResult {
            concurrency,
            requests: total.successes,
            errors: total.errors.clone(),
            throughput_rps,
            inferences_per_s: throughput_rps * rows as f64,
            p50_us: total.percentile_us(50.0),
            p90_us: total.percentile_us(90.0),
            p95_us: total.percentile_us(95.0),
            p99_us: total.percentile_us(99.0),
            mean_us: total.mean_us(),
            server_queue_us: mean_of(total.queue_us),
            server_compute_us: mean_of(total.compute_us),
            stable,
            duration_s,
            first_error: total.first_error.clone(),
            windows,
        }
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        0.0
    } else {
        count as f64 / elapsed.as_secs_f64()
    }
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The console table's heading.
pub fn table_header() -> String {
    format!(
        "{:>11} {:>12} {:>11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>6}",
        "Concurrency",
        "Inferences/s",
        "Requests/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "stable"
    )
}

/// One level as a console table row.
pub fn table_row(level: &LevelResult) -> String {
    format!(
        "{:>11} {:>12.1} {:>11.1} {:>10} {:>10} {:>10} {:>10} {:>8} {:>6}",
        level.concurrency,
        level.inferences_per_s,
        level.throughput_rps,
        ms(level.p50_us),
        ms(level.p90_us),
        ms(level.p95_us),
        ms(level.p99_us),
        level.errors.total,
        if level.stable { "yes" } else { "no" }
    )
}

/// A verbose line for one window.
pub fn window_line(concurrency: usize, index: usize, window: &WindowResult) -> String {
    format!(
        "  concurrency {concurrency} window {}: {:.1} req/s, p50 {} ms, p99 {} ms, {} errors",
        index + 1,
        window.throughput_rps,
        ms(window.p50_us),
        ms(window.p99_us),
        window.errors
    )
}

/// Prints the final table, and the first error of every level that had any.
pub fn print_table(report: &Report) {
    println!("{}", table_header());
    for level in &report.levels {
        println!("{}", table_row(level));
    }
    for level in report.levels.iter().filter(|l| l.errors.total > 0) {
        let e = &level.errors;
        println!(
            "concurrency {}: {} errors (429: {}, other 4xx: {}, 5xx: {}, timeout: {}, connection: {}, invalid: {}); first: {}",
            level.concurrency,
            e.total,
            e.too_many_requests,
            e.client_error,
            e.server_error,
            e.timeout,
            e.connection,
            e.invalid_response,
            level.first_error.as_deref().unwrap_or("-")
        );
    }
}

/// The CSV heading, perf_analyzer's columns.
pub const CSV_HEADER: &str = "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency";

/// Writes the levels as CSV in microseconds; the client-side and the server's input/output
/// stages are not measured separately and read 0.
pub fn write_csv(report: &Report, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")?;
    for l in &report.levels {
        let queue = l.server_queue_us.round();
        let compute = l.server_compute_us.round();
        let network = (l.mean_us - queue - compute).max(0.0).round();
        writeln!(
            out,
            "{},{:.1},0,{network},{queue},0,{compute},0,0,{},{},{},{}",
            l.concurrency, l.inferences_per_s, l.p50_us, l.p90_us, l.p95_us, l.p99_us
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::Outcome;

    #[test]
    fn csv_splits_latency_with_server_timings() {
        let mut tally = Tally::new(Duration::from_secs(1));
        for _ in 0..10 {
            tally.record(
                Outcome::Success {
                    queue_us: Some(100),
                    compute_us: Some(300),
                },
                Duration::from_micros(1000),
            );
        }
        let window = WindowResult::new(&tally, Duration::from_secs(1));
        let level = LevelResult::new(4, 2, &tally, vec![window], true);
        assert_eq!((level.throughput_rps, level.inferences_per_s), (10.0, 20.0));
        let report = Report {
            model: "m".into(),
            model_version: None,
            urls: vec![],
            protocol: Protocol::HttpBinary,
            rows_per_request: 2,
            levels: vec![level.clone()],
        };
        let mut csv = Vec::new();
        write_csv(&report, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0].split(',').count(), 13);
        assert_eq!(lines[1], "4,20.0,0,600,100,0,300,0,0,1000,1000,1000,1000");
        assert!(table_row(&level).contains("1.000"));
    }
}
