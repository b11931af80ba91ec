//! `spindle infer --repeat-for`: the same request sent over and over by several callers that
//! share one client library [`Client`] (round-robin, retries, passing over replicas that failed
//! to connect, discovery refreshes), and a summary of what those callers saw. This is the
//! caller's view of a deployment losing a replica or a network path; `spindle loadtest`, which
//! pins connections to servers and counts every failed attempt, is the instrument for servers.

use serde_json::{Value, json};
use spindle_client::{Client, InferRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Distinct error messages kept in the summary (the first of each kind is enough to act on).
const ERRORS_KEPT: usize = 5;

/// What the callers saw, in total and second by second.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u64>,
    failed: u64,
    versions: BTreeMap<String, u64>,
    errors: Vec<String>,
    /// Per second since the start: (answered, failed, slowest call in µs).
    seconds: Vec<(u64, u64, u64)>,
}

impl Seen {
    fn record(&mut self, second: usize, latency: Duration, outcome: Result<String, String>) {
        if self.seconds.len() <= second {
            self.seconds.resize(second + 1, (0, 0, 0));
        }
        let us = latency.as_micros() as u64;
        let slot = &mut self.seconds[second];
        slot.2 = slot.2.max(us);
        match outcome {
            Ok(version) => {
                slot.0 += 1;
                self.latencies_us.push(us);
                *self.versions.entry(version).or_default() += 1;
            }
            Err(message) => {
                slot.1 += 1;
                self.failed += 1;
                if self.errors.len() < ERRORS_KEPT && !self.errors.contains(&message) {
                    self.errors.push(message);
                }
            }
        }
    }

    fn summary(mut self, callers: usize, elapsed: Duration) -> Value {
        self.latencies_us.sort_unstable();
        let ms = |q: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
            self.latencies_us[i] as f64 / 1000.0
        };
        let answered = self.latencies_us.len() as u64;
        json!({
            "callers": callers,
            "seconds": elapsed.as_secs_f64(),
            "requests": answered + self.failed,
            "answered": answered,
            "failed": self.failed,
            "versions": self.versions,
            "latency_ms": { "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0) },
            "errors": self.errors,
            "timeline": self.seconds.iter().enumerate().map(|(t, (ok, failed, max))| {
                json!({ "second": t, "answered": ok, "failed": failed, "max_ms": *max as f64 / 1000.0 })
            }).collect::<Vec<_>>(),
        })
    }
}

/// Sends `request` from `callers` concurrent loops for `duration` and returns the summary as
/// JSON: requests, failures (with the first distinct messages), the versions that answered,
/// latency percentiles and a per-second timeline.
pub async fn repeat(
    client: &Client,
    request: &InferRequest,
    duration: Duration,
    callers: usize,
) -> Value {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let deadline = start + duration;
    let mut loops = Vec::with_capacity(callers);
    for _ in 0..callers {
        let (client, request, seen) = (client.clone(), request.clone(), seen.clone());
        loops.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = client
                    .infer(&request)
                    .await
                    .map(|answer| answer.version)
                    .map_err(|e| e.to_string());
                let second = sent.duration_since(start).as_secs() as usize;
                seen.lock().unwrap_or_else(PoisonError::into_inner).record(
                    second,
                    sent.elapsed(),
                    outcome,
                );
            }
        }));
    }
    for task in loops {
        // A caller loop only ends by its deadline; a panic in one is a bug worth surfacing.
        task.await.expect("caller loop panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    seen.summary(callers, start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_failures_versions_and_seconds() {
        let mut seen = Seen::default();
        seen.record(0, Duration::from_millis(10), Ok("1".into()));
        seen.record(0, Duration::from_millis(30), Ok("1".into()));
        seen.record(2, Duration::from_millis(900), Err("refused".into()));
        seen.record(2, Duration::from_millis(20), Err("refused".into()));
        seen.record(2, Duration::from_millis(20), Ok("2".into()));
        let s = seen.summary(2, Duration::from_secs(3));
        assert_eq!(s["requests"], 5);
        assert_eq!(s["failed"], 2);
        assert_eq!(s["versions"], json!({"1": 2, "2": 1}));
        assert_eq!(s["errors"], json!(["refused"]), "distinct messages only");
        assert_eq!(
            s["latency_ms"]["max"], 30.0,
            "failed calls are not latencies"
        );
        let timeline = s["timeline"].as_array().unwrap();
        assert_eq!(timeline.len(), 3);
        assert_eq!(timeline[1]["answered"], 0);
        assert_eq!(timeline[2]["failed"], 2);
        assert_eq!(timeline[2]["max_ms"], 900.0);
    }
}
