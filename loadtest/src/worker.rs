//! A closed-loop worker: it owns one keep-alive connection and sends requests back to back,
//! classifying each answer and recording it in its own [`Tally`].

use crate::grpc::{GrpcClient, GrpcTemplate};
use crate::payload::{HEADER_LENGTH, RequestTemplate};
use crate::tally::{ErrorClass, Outcome, Tally};
use crate::target::{Connection, Target};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Pause after a connection failure, so that a dead server is not hammered in a tight loop.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Shared by a level's workers: when to stop, and how many requests may still be sent.
#[derive(Debug)]
pub struct LevelControl {
    stop: AtomicBool,
    budget: Option<AtomicU64>,
}

impl LevelControl {
    /// Control for a level that may send at most `max_requests` requests (`None`: no cap).
    pub fn new(max_requests: Option<u64>) -> Self {
        LevelControl {
            stop: AtomicBool::new(false),
            budget: max_requests.map(AtomicU64::new),
        }
    }

    /// Asks every worker to stop after its current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`LevelControl::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Takes permission to send one more request.
    pub fn next_ticket(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match &self.budget {
            None => true,
            Some(left) => left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

/// A prepared request, by protocol.
#[derive(Debug, Clone)]
pub enum Template {
    /// An HTTP request (KServe v2 binary or JSON, or TF Serving REST).
    Http(Arc<RequestTemplate>),
    /// A gRPC `ModelInfer`.
    Grpc(Arc<GrpcTemplate>),
}

/// An open connection, by protocol.
pub enum Open {
    /// A keep-alive HTTP/1 connection.
    Http(Connection),
    /// A gRPC channel (one HTTP/2 connection).
    Grpc(GrpcClient),
}

/// How one request is sent to one server: shared by closed-loop workers and open-loop senders.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The server the request goes to.
    pub target: Arc<Target>,
    /// The request it sends.
    pub template: Template,
    /// Per-request timeout, connecting included.
    pub timeout: Duration,
}

/// The result of one [`Exchange::send`].
pub struct Sent {
    /// What came back.
    pub outcome: Outcome,
    /// When the request left (after connecting), for closed-loop latency.
    pub sent_at: Instant,
    /// Whether connecting failed, so the caller should pause before retrying.
    pub refused: bool,
}

impl Exchange {
    /// Sends one request on `connection`, opening it first if needed, within the timeout.
    /// A broken connection is reset to `None`.
    pub async fn send(&self, connection: &mut Option<Open>) -> Sent {
        let mut sent_at = Instant::now();
        let attempt = tokio::time::timeout(self.timeout, self.attempt(connection, &mut sent_at));
        let outcome = attempt.await.unwrap_or_else(|_| {
            Outcome::Failure(
                ErrorClass::Timeout,
                format!(
                    "{}: no answer within {}",
                    self.target.url,
                    humantime::format_duration(self.timeout)
                ),
            )
        });
        let broken = matches!(
            outcome,
            Outcome::Failure(ErrorClass::Connection | ErrorClass::Timeout, _)
        );
        let refused = matches!(outcome, Outcome::Failure(ErrorClass::Connection, _));
        if broken {
            // After a timeout the connection may still carry the late answer: start afresh.
            *connection = None;
        }
        Sent {
            outcome,
            sent_at,
            refused,
        }
    }

    /// One request, reconnecting first if needed. `sent_at` is set once the connection is ready,
    /// so latency excludes connecting.
    async fn attempt(&self, connection: &mut Option<Open>, sent_at: &mut Instant) -> Outcome {
        let usable = match connection.as_mut() {
            Some(Open::Http(open)) => open.ready().await.is_ok(),
            // A channel reconnects by itself; a broken one fails its call and is replaced.
            Some(Open::Grpc(_)) => true,
            None => false,
        };
        if !usable {
            let opened = match &self.template {
                Template::Http(_) => self.target.connect().await.map(Open::Http),
                Template::Grpc(grpc) => grpc.connect().await.map(Open::Grpc),
            };
            match opened {
                Ok(open) => *connection = Some(open),
                Err(e) => {
                    *connection = None;
                    return Outcome::Failure(
                        ErrorClass::Connection,
                        format!("cannot connect to {}: {e:#}", self.target.url),
                    );
                }
            }
        }
        *sent_at = Instant::now();
        let (Some(open), template) = (connection.as_mut(), &self.template) else {
            unreachable!("connected above")
        };
        let (sender, template) = match (open, template) {
            (Open::Grpc(client), Template::Grpc(grpc)) => return grpc.attempt(client).await,
            (Open::Http(sender), Template::Http(http)) => (sender, http),
            _ => unreachable!("a worker's connection matches its template"),
        };
        let response = match sender.send_request(template.request()).await {
            Ok(response) => response,
            Err(e) => {
                return Outcome::Failure(
                    ErrorClass::Connection,
                    format!("{}: {e}", self.target.url),
                );
            }
        };
        let (parts, body) = response.into_parts();
        if parts.status == StatusCode::OK {
            check_success(&parts.headers, body, &self.target.url).await
        } else {
            failure(parts.status, body, &self.target.url).await
        }
    }
}

/// One closed-loop worker.
#[derive(Debug)]
pub struct Worker {
    /// The server and request this worker sends.
    pub exchange: Exchange,
    /// The level's stop flag and request budget.
    pub control: Arc<LevelControl>,
    /// Where results go; the coordinator swaps it out at each window's end.
    pub tally: Arc<Mutex<Tally>>,
}

impl Worker {
    /// Sends requests until the level stops or its budget runs out.
    pub async fn run(self) {
        let mut connection: Option<Open> = None;
        while self.control.next_ticket() {
            let sent = self.exchange.send(&mut connection).await;
            let latency = sent.sent_at.elapsed();
            self.tally
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .record(sent.outcome, latency);
            if sent.refused {
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

/// Reads a 200 answer's body without buffering it and checks its length against the
/// binary-tensor header.
async fn check_success(headers: &HeaderMap, mut body: Incoming, url: &str) -> Outcome {
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => received += frame.data_ref().map_or(0, |d| d.len()),
            Err(e) => {
                return Outcome::Failure(
                    ErrorClass::Connection,
                    format!("{url}: reading the answer: {e}"),
                );
            }
        }
    }
    if let Some(value) = headers.get(HEADER_LENGTH) {
        let Some(json_len) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
        else {
            return Outcome::Failure(
                ErrorClass::InvalidResponse,
                format!("{url}: {HEADER_LENGTH} is {value:?}, not a byte count"),
            );
        };
        if received < json_len {
            return Outcome::Failure(
                ErrorClass::InvalidResponse,
                format!(
                    "{url}: the body has {received} bytes, fewer than its {HEADER_LENGTH} of {json_len}"
                ),
            );
        }
    }
    if received == 0 {
        return Outcome::Failure(
            ErrorClass::InvalidResponse,
            format!("{url}: status 200 with an empty body"),
        );
    }
    Outcome::Success {
        queue_us: micros(headers, "x-spindle-queue-us"),
        compute_us: micros(headers, "x-spindle-compute-us"),
    }
}

fn micros(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Classifies a non-200 answer, keeping the server's message.
async fn failure(status: StatusCode, body: Incoming, url: &str) -> Outcome {
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Outcome::Failure(
                ErrorClass::Connection,
                format!("{url}: reading the {status} answer: {e}"),
            );
        }
    };
    let class = match status.as_u16() {
        429 => ErrorClass::TooManyRequests,
        400..=499 => ErrorClass::ClientError,
        500..=599 => ErrorClass::ServerError,
        _ => ErrorClass::InvalidResponse,
    };
    let message = String::from_utf8_lossy(&body[..body.len().min(300)]);
    Outcome::Failure(class, format!("{url}: {status}: {}", message.trim()))
}
