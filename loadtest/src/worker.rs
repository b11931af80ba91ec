//! A closed-loop worker: it owns one keep-alive connection and sends requests back to back,
//! classifying each answer and recording it in its own [`Tally`].

use crate::grpc::{GrpcClient, GrpcTemplate};
use crate::http1::{Answer, HEADER_LENGTH, Http1Connection, Http1Error};
use crate::payload::RequestTemplate;
use crate::tally::{ErrorClass, Outcome, Tally};
use crate::target::{ServerStream, Target};
use hyper::StatusCode;
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
    Http(Http1Connection<ServerStream>),
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
        let now = Instant::now();
        let timer = std::pin::pin!(tokio::time::sleep_until((now + self.timeout).into()));
        self.send_with(connection, timer, now).await
    }

    /// [`Exchange::send`] for a caller that sends request after request: `now` is the time
    /// just read, and `timer` a timer of its own, moved to this request's deadline. Moving a
    /// registered timer later is an atomic store, where a fresh timeout per request would
    /// register and remove a timer each time (and read the clock again).
    pub async fn send_with(
        &self,
        connection: &mut Option<Open>,
        mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
        now: Instant,
    ) -> Sent {
        timer.as_mut().reset((now + self.timeout).into());
        let mut sent_at = now;
        let outcome = tokio::select! {
            biased;
            outcome = self.attempt(connection, &mut sent_at) => outcome,
            () = timer => Outcome::Failure(
                ErrorClass::Timeout,
                format!(
                    "{}: no answer within {}",
                    self.target.url,
                    humantime::format_duration(self.timeout)
                ),
            ),
        };
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

    /// One request, reconnecting first if needed. `sent_at` holds the time the request was
    /// asked for and is read again after a new connection is made, so latency excludes
    /// connecting.
    async fn attempt(&self, connection: &mut Option<Open>, sent_at: &mut Instant) -> Outcome {
        let usable = match connection.as_mut() {
            Some(Open::Http(open)) => open.reusable() && !open.closed_while_idle(*sent_at),
            // A channel reconnects by itself; a broken one fails its call and is replaced.
            Some(Open::Grpc(_)) => true,
            None => false,
        };
        if !usable {
            let opened = match &self.template {
                Template::Http(_) => match self.target.connect_stream().await {
                    Ok(stream) => Ok(Open::Http(Http1Connection::new(stream))),
                    Err(e) => Err(e.into()),
                },
                Template::Grpc(grpc) => grpc.connect().await.map(Open::Grpc),
            };
            match opened {
                Ok(open) => {
                    *connection = Some(open);
                    *sent_at = Instant::now();
                }
                Err(e) => {
                    *connection = None;
                    return Outcome::Failure(
                        ErrorClass::Connection,
                        format!("cannot connect to {}: {e:#}", self.target.url),
                    );
                }
            }
        }
        let (Some(open), template) = (connection.as_mut(), &self.template) else {
            unreachable!("connected above")
        };
        let (sender, template) = match (open, template) {
            (Open::Grpc(client), Template::Grpc(grpc)) => return grpc.attempt(client).await,
            (Open::Http(sender), Template::Http(http)) => (sender, http),
            _ => unreachable!("a worker's connection matches its template"),
        };
        match sender.exchange(template.request()).await {
            Ok(answer) if answer.status == 200 => success(&answer, &self.target.url),
            Ok(answer) => failure(&answer, &self.target.url),
            Err(e @ Http1Error::Malformed(_)) => Outcome::Failure(
                ErrorClass::InvalidResponse,
                format!("{}: {e}", self.target.url),
            ),
            Err(e @ Http1Error::Io(_)) => {
                Outcome::Failure(ErrorClass::Connection, format!("{}: {e}", self.target.url))
            }
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
    /// Sends requests until the level stops or its budget runs out. Two clock reads per
    /// request, as wrk makes: when it leaves and when its answer is complete.
    pub async fn run(self) {
        let mut connection: Option<Open> = None;
        let mut timer = std::pin::pin!(tokio::time::sleep(self.exchange.timeout));
        while self.control.next_ticket() {
            let now = Instant::now();
            let sent = self
                .exchange
                .send_with(&mut connection, timer.as_mut(), now)
                .await;
            let latency = Instant::now().saturating_duration_since(sent.sent_at);
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

/// Checks a 200 answer's body length against its binary-tensor header.
fn success(answer: &Answer, url: &str) -> Outcome {
    let received = answer.body_len;
    if let Some(value) = &answer.header_length {
        let json_len = match value {
            Ok(n) => *n,
            Err(text) => {
                return Outcome::Failure(
                    ErrorClass::InvalidResponse,
                    format!("{url}: {HEADER_LENGTH} is {text:?}, not a byte count"),
                );
            }
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
        queue_us: answer.queue_us,
        compute_us: answer.compute_us,
    }
}

/// Classifies an answer other than 200, keeping the start of the server's message.
fn failure(answer: &Answer, url: &str) -> Outcome {
    let class = match answer.status {
        429 => ErrorClass::TooManyRequests,
        400..=499 => ErrorClass::ClientError,
        500..=599 => ErrorClass::ServerError,
        _ => ErrorClass::InvalidResponse,
    };
    let status = StatusCode::from_u16(answer.status)
        .map_or_else(|_| answer.status.to_string(), |s| s.to_string());
    let message = String::from_utf8_lossy(&answer.error_body);
    Outcome::Failure(class, format!("{url}: {status}: {}", message.trim()))
}
