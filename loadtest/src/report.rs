//! Results: per-window and per-level numbers, the console table, and the CSV (perf_analyzer's
//! columns) and JSON files.

use crate::options::{Load, Protocol, format_rate};
use crate::server_stats::{ServerBreakdown, TimingSource};
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

/// The measurement of one level (all of its windows merged).
#[derive(Serialize, Debug, Clone)]
pub struct LevelResult {
    /// The load applied.
    pub load: Load,
    /// Concurrent closed-loop connections; in rate mode the in-flight bound.
    pub concurrency: usize,
    /// Requests scheduled per second (rate mode only).
    pub rate_rps: Option<f64>,
    /// Rate mode: requests that found every in-flight slot busy at their scheduled time and were
    /// sent late (their latency includes the wait). Always 0 in closed-loop mode.
    pub late: u64,
    /// Rate mode: the longest wait between a request's scheduled and actual send time, in
    /// microseconds.
    pub max_send_delay_us: u64,
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
    /// Where the server columns come from: the server's statistics, or response headers.
    pub server_timing: TimingSource,
    /// Mean server queue time per request, microseconds (0 when the server reports nothing).
    pub server_queue_us: f64,
    /// Mean server compute time per request (input + infer + output), microseconds.
    pub server_compute_us: f64,
    /// Mean time preparing inputs per request (statistics only; 0 from headers).
    pub server_compute_input_us: f64,
    /// Mean engine time per request (from headers: the whole compute time).
    pub server_compute_infer_us: f64,
    /// Mean time preparing outputs per request (statistics only; 0 from headers).
    pub server_compute_output_us: f64,
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

impl Report {
    /// Whether the levels are open-loop request rates.
    pub fn is_rate(&self) -> bool {
        self.levels
            .first()
            .is_some_and(|l| matches!(l.load, Load::Rate { .. }))
    }
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
    /// Summarises a level from its merged windows and, when read, the servers' statistics
    /// (which take precedence over the response headers' timings).
    pub fn new(
        load: Load,
        rows: usize,
        total: &Tally,
        windows: Vec<WindowResult>,
        stable: bool,
        server: Option<ServerBreakdown>,
    ) -> Self {
        let duration_s: f64 = windows.iter().map(|w| w.duration_s).sum();
        let duration = Duration::from_secs_f64(duration_s);
        let throughput_rps = per_second(total.successes, duration);
        let (concurrency, rate_rps) = match load {
            Load::Concurrency(c) => (c, None),
            Load::Rate {
                rps, max_in_flight, ..
            } => (max_in_flight, Some(rps)),
        };
        let (server_timing, queue, input, infer, output) = match server {
            Some(s) => (
                TimingSource::Statistics,
                s.queue_us,
                s.compute_input_us,
                s.compute_infer_us,
                s.compute_output_us,
            ),
            None => (
                TimingSource::Headers,
                mean_of(total.queue_us),
                0.0,
                mean_of(total.compute_us),
                0.0,
            ),
        };
        LevelResult {
            load,
            concurrency,
            rate_rps,
            late: total.late,
            max_send_delay_us: total.max_send_delay_us,
            requests: total.successes,
            errors: total.errors.clone(),
            throughput_rps,
            inferences_per_s: throughput_rps * rows as f64,
            p50_us: total.percentile_us(50.0),
            p90_us: total.percentile_us(90.0),
            p95_us: total.percentile_us(95.0),
            p99_us: total.percentile_us(99.0),
            mean_us: total.mean_us(),
            server_timing,
            server_queue_us: queue,
            server_compute_us: input + infer + output,
            server_compute_input_us: input,
            server_compute_infer_us: infer,
            server_compute_output_us: output,
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

/// The console table's heading; `rate` for open-loop runs.
pub fn table_header(rate: bool) -> String {
    format!(
        "{:>12} {:>12} {:>11} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
        if rate { "Rate req/s" } else { "Concurrency" },
        "Inferences/s",
        "Requests/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "late",
        "stable"
    )
}

/// One level as a console table row.
pub fn table_row(level: &LevelResult) -> String {
    let (load, late) = match level.load {
        Load::Concurrency(c) => (c.to_string(), "-".to_string()),
        Load::Rate { rps, .. } => (format_rate(rps), level.late.to_string()),
    };
    format!(
        "{:>12} {:>12.1} {:>11.1} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>6}",
        load,
        level.inferences_per_s,
        level.throughput_rps,
        ms(level.p50_us),
        ms(level.p90_us),
        ms(level.p95_us),
        ms(level.p99_us),
        level.errors.total,
        late,
        if level.stable { "yes" } else { "no" }
    )
}

/// A verbose line for one window of the level `label` ("concurrency 4").
pub fn window_line(label: &str, index: usize, window: &WindowResult) -> String {
    format!(
        "  {label} window {}: {:.1} req/s, p50 {} ms, p99 {} ms, {} errors",
        index + 1,
        window.throughput_rps,
        ms(window.p50_us),
        ms(window.p99_us),
        window.errors
    )
}

/// Prints the final table, and the first error of every level that had any.
pub fn print_table(report: &Report) {
    println!("{}", table_header(report.is_rate()));
    for level in &report.levels {
        println!("{}", table_row(level));
    }
    for level in report.levels.iter().filter(|l| l.errors.total > 0) {
        println!(
            "{}: {} errors ({}); first: {}",
            level.load.label(),
            level.errors.total,
            error_classes(&level.errors),
            level.first_error.as_deref().unwrap_or("-")
        );
    }
}

/// Failures by class, as the table's notes and [`all_failed`] print them.
fn error_classes(e: &ErrorCounts) -> String {
    format!(
        "429: {}, other 4xx: {}, 5xx: {}, timeout: {}, connection: {}, invalid: {}",
        e.too_many_requests,
        e.client_error,
        e.server_error,
        e.timeout,
        e.connection,
        e.invalid_response
    )
}

/// When every measured request of `level` failed, what to tell the user: the level, the
/// failures by class and the first one's message. Such a level measured nothing, so the run
/// stops there and fails rather than report throughputs of refusals.
pub fn all_failed(level: &LevelResult) -> Option<String> {
    (level.requests == 0 && level.errors.total > 0).then(|| {
        format!(
            "every request at {} failed ({} errors: {}); nothing was measured. First error: {}",
            level.load.label(),
            level.errors.total,
            error_classes(&level.errors),
            level.first_error.as_deref().unwrap_or("-")
        )
    })
}

/// The CSV heading, perf_analyzer's columns (the first is "Request Rate" in rate mode, as in
/// perf_analyzer).
pub const CSV_HEADER: &str = "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,\
Server Compute Input,Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency";

/// Writes the levels as CSV in microseconds. Client Send and Client Recv are not measured
/// separately and read 0; Network+Server Send/Recv is the mean latency less the server stages.
pub fn write_csv(report: &Report, out: &mut impl Write) -> io::Result<()> {
    if report.is_rate() {
        writeln!(out, "Request Rate{}", &CSV_HEADER["Concurrency".len()..])?;
    } else {
        writeln!(out, "{CSV_HEADER}")?;
    }
    for l in &report.levels {
        let queue = l.server_queue_us.round();
        let input = l.server_compute_input_us.round();
        let infer = l.server_compute_infer_us.round();
        let output = l.server_compute_output_us.round();
        let network = (l.mean_us - queue - input - infer - output)
            .max(0.0)
            .round();
        writeln!(
            out,
            "{},{:.1},0,{network},{queue},{input},{infer},{output},0,{},{},{},{}",
            match l.load {
                Load::Concurrency(c) => c.to_string(),
                Load::Rate { rps, .. } => format_rate(rps),
            },
            l.inferences_per_s,
            l.p50_us,
            l.p90_us,
            l.p95_us,
            l.p99_us
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
        let level = LevelResult::new(Load::Concurrency(4), 2, &tally, vec![window], true, None);
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

        // The server's statistics replace the headers' timings.
        let stats = ServerBreakdown {
            requests: 10,
            queue_us: 50.0,
            compute_input_us: 20.0,
            compute_infer_us: 400.0,
            compute_output_us: 30.0,
        };
        let mut levels = vec![LevelResult::new(
            Load::Concurrency(4),
            2,
            &tally,
            Vec::new(),
            true,
            Some(stats),
        )];
        assert_eq!(levels[0].server_timing, TimingSource::Statistics);
        let report = Report {
            levels: std::mem::take(&mut levels),
            ..report
        };
        let mut csv = Vec::new();
        write_csv(&report, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        assert_eq!(
            text.lines().nth(1),
            Some("4,0.0,0,500,50,20,400,30,0,1000,1000,1000,1000")
        );
    }
}
