//! What requests produced: successes with their latencies (an HDR histogram) and server
//! timings, and failures counted by class. One [`Tally`] per worker per window, merged by the
//! level's coordinator.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// HTTP 429: the server shed load.
    TooManyRequests,
    /// Any other 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// No complete answer within `--timeout`.
    Timeout,
    /// Connecting failed or the connection broke.
    Connection,
    /// Status 200 but a body that is missing or shorter than its header says, or an unexpected
    /// status such as 3xx.
    InvalidResponse,
}

/// Failed requests by class.
#[derive(Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// All failures.
    pub total: u64,
    /// HTTP 429 answers.
    pub too_many_requests: u64,
    /// Other 4xx answers.
    pub client_error: u64,
    /// 5xx answers.
    pub server_error: u64,
    /// Requests that timed out.
    pub timeout: u64,
    /// Connection failures.
    pub connection: u64,
    /// Malformed or unexpected answers.
    pub invalid_response: u64,
}

impl ErrorCounts {
    fn count(&mut self, class: ErrorClass) {
        self.total += 1;
        *match class {
            ErrorClass::TooManyRequests => &mut self.too_many_requests,
            ErrorClass::ClientError => &mut self.client_error,
            ErrorClass::ServerError => &mut self.server_error,
            ErrorClass::Timeout => &mut self.timeout,
            ErrorClass::Connection => &mut self.connection,
            ErrorClass::InvalidResponse => &mut self.invalid_response,
        } += 1;
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.total += other.total;
        self.too_many_requests += other.too_many_requests;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
        self.timeout += other.timeout;
        self.connection += other.connection;
        self.invalid_response += other.invalid_response;
    }
}

/// The result of one request.
#[derive(Debug)]
pub enum Outcome {
    /// Status 200 with a well-formed body.
    Success {
        /// `x-spindle-queue-us`, when the server sent it.
        queue_us: Option<u64>,
        /// `x-spindle-compute-us`, when the server sent it.
        compute_us: Option<u64>,
    },
    /// A failure and a short description (status and server message, or the I/O error).
    Failure(ErrorClass, String),
}

/// Counts and latencies of a set of requests.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latencies of successful requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Sum of those latencies, for an exact mean.
    pub latency_sum_us: u64,
    /// Successful requests.
    pub successes: u64,
    /// Failed requests by class.
    pub errors: ErrorCounts,
    /// Sum and count of server queue times reported.
    pub queue_us: (u64, u64),
    /// Sum and count of server compute times reported.
    pub compute_us: (u64, u64),
    /// The first failure's description, to show the user what went wrong.
    pub first_error: Option<String>,
    /// Open loop: requests that could not be sent at their scheduled time (every in-flight slot
    /// was busy).
    pub late: u64,
    /// Open loop: the longest delay between a request's scheduled and actual send time, µs.
    pub max_send_delay_us: u64,
}

impl Tally {
    /// An empty tally whose histogram tracks latencies up to `max_latency`.
    pub fn new(max_latency: Duration) -> Self {
        let high = (max_latency.as_micros() as u64).max(1000) * 2;
        Tally {
            latency_us: Histogram::new_with_bounds(1, high, 3)
                .expect("bounds are valid: 1 < high, 3 digits"),
            latency_sum_us: 0,
            successes: 0,
            errors: ErrorCounts::default(),
            queue_us: (0, 0),
            compute_us: (0, 0),
            first_error: None,
            late: 0,
            max_send_delay_us: 0,
        }
    }

    /// Records one request.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Success {
                queue_us,
                compute_us,
            } => {
                let us = latency.as_micros() as u64;
                self.latency_us.saturating_record(us.max(1));
                self.latency_sum_us += us;
                self.successes += 1;
                if let Some(q) = queue_us {
                    self.queue_us = (self.queue_us.0 + q, self.queue_us.1 + 1);
                }
                if let Some(c) = compute_us {
                    self.compute_us = (self.compute_us.0 + c, self.compute_us.1 + 1);
                }
            }
            Outcome::Failure(class, detail) => {
                self.errors.count(class);
                self.first_error.get_or_insert(detail);
            }
        }
    }

    /// Records when an open-loop request left relative to its schedule (before its outcome).
    pub fn record_schedule(&mut self, late: bool, send_delay: Duration) {
        self.late += u64::from(late);
        self.max_send_delay_us = self.max_send_delay_us.max(send_delay.as_micros() as u64);
    }

    /// Adds another tally (made with the same `max_latency`) into this one.
    pub fn merge(&mut self, other: &Tally) {
        // Both histograms share bounds and recording saturates, so adding cannot go out of range.
        let _ = self.latency_us.add(&other.latency_us);
        self.latency_sum_us += other.latency_sum_us;
        self.successes += other.successes;
        self.errors.add(&other.errors);
        self.queue_us = (
            self.queue_us.0 + other.queue_us.0,
            self.queue_us.1 + other.queue_us.1,
        );
        self.compute_us = (
            self.compute_us.0 + other.compute_us.0,
            self.compute_us.1 + other.compute_us.1,
        );
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.late += other.late;
        self.max_send_delay_us = self.max_send_delay_us.max(other.max_send_delay_us);
    }

    /// Empties the tally, keeping its allocations.
    pub fn reset(&mut self) {
        self.latency_us.reset();
        self.latency_sum_us = 0;
        self.successes = 0;
        self.errors = ErrorCounts::default();
        self.queue_us = (0, 0);
        self.compute_us = (0, 0);
        self.first_error = None;
        self.late = 0;
        self.max_send_delay_us = 0;
    }

    /// Requests answered, successfully or not.
    pub fn requests(&self) -> u64 {
        self.successes + self.errors.total
    }

    /// Mean latency of successful requests in microseconds (0 without any).
    pub fn mean_us(&self) -> f64 {
        if self.successes == 0 {
            0.0
        } else {
            self.latency_sum_us as f64 / self.successes as f64
        }
    }

    /// Latency percentile (0-100) of successful requests in microseconds (0 without any).
    pub fn percentile_us(&self, percentile: f64) -> u64 {
        if self.successes == 0 {
            0
        } else {
            self.latency_us.value_at_quantile(percentile / 100.0)
        }
    }
}

/// Mean of a (sum, count) pair, 0 when nothing was reported.
pub fn mean_of((sum, count): (u64, u64)) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum as f64 / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_merges() {
        let mut a = Tally::new(Duration::from_secs(1));
        let mut b = Tally::new(Duration::from_secs(1));
        a.record(
            Outcome::Success {
                queue_us: Some(10),
                compute_us: Some(100),
            },
            Duration::from_micros(1000),
        );
        b.record(
            Outcome::Success {
                queue_us: None,
                compute_us: Some(300),
            },
            Duration::from_micros(3000),
        );
        b.record(
            Outcome::Failure(ErrorClass::TooManyRequests, "429 busy".into()),
            Duration::ZERO,
        );
        b.record(
            Outcome::Failure(ErrorClass::Timeout, "timed out".into()),
            Duration::ZERO,
        );
        a.merge(&b);
        assert_eq!((a.successes, a.errors.total, a.requests()), (2, 2, 4));
        assert_eq!((a.errors.too_many_requests, a.errors.timeout), (1, 1));
        assert_eq!(a.mean_us(), 2000.0);
        assert_eq!((mean_of(a.queue_us), mean_of(a.compute_us)), (10.0, 200.0));
        assert_eq!(a.first_error.as_deref(), Some("429 busy"));
        assert!((2990..=3010).contains(&a.percentile_us(99.0)));
        a.reset();
        assert_eq!(
            (a.requests(), a.percentile_us(50.0), a.mean_us()),
            (0, 0, 0.0)
        );
    }
}
