//! Admission of requests: at most `--max-inflight` requests are served at once over HTTP and gRPC
//! together. One more is refused at once, before its body is read or decoded: 503 with
//! `Retry-After` on HTTP, RESOURCE_EXHAUSTED on gRPC. Since each admitted request may buffer up
//! to `--max-body` (or `--grpc-max-message`) bytes, the limit bounds what requests in flight can
//! hold. Health checks and `/metrics` are never refused, so probes see the truth.
//!
//! Images are admitted a second time, by what they cost to decode ([`DecodeBudget`]): a small
//! JPEG may declare a picture that takes hundreds of megabytes to decode, so the bytes of
//! decoding in progress are bounded server-wide (`--max-decode-bytes`) and per request
//! (`--max-request-decode-bytes`), from the images' headers, before any is decoded.

use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use spindle_core::error::{ErrorKind, InferError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared count of requests in flight.
#[derive(Clone, Debug)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    max: usize,
}

impl InFlight {
    /// At most `max` requests at once.
    pub fn new(max: usize) -> InFlight {
        InFlight {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A permit, or `None` when `max` requests are in flight.
    fn permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// What a refused caller is told.
    fn refusal(&self) -> String {
        format!(
            "the server is at its limit of {} requests in flight (--max-inflight); retry shortly",
            self.max
        )
    }
}

/// Limits on the memory image decoding may hold (see [`DecodeBudget`]).
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Bytes that the decoding of all requests in flight may hold at once.
    pub max_bytes: u64,
    /// Bytes that one request's images may take; a request over it is refused outright.
    pub max_request_bytes: u64,
    /// How long a request waits for its share of `max_bytes` before it is refused.
    pub wait: Duration,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_bytes: 1 << 30,
            max_request_bytes: 512 << 20,
            wait: Duration::from_secs(1),
        }
    }
}

/// Permits count KiB rather than bytes, so that one request's share fits the semaphore's `u32`
/// (up to 4 TiB).
const UNIT: u64 = 1024;

/// The server-wide budget of decoded-image bytes, shared by every front end. A request takes its
/// cost ([`crate::preprocess::decode_cost`]) before its images are decoded and gives it back
/// when their tensors have been handed to the batcher. Waiters are served in order, so a large
/// request is not starved by a stream of small ones.
#[derive(Clone, Debug)]
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    limits: DecodeLimits,
}

impl DecodeBudget {
    /// A budget of `limits.max_bytes`.
    pub fn new(limits: DecodeLimits) -> DecodeBudget {
        let units = limits.max_bytes.div_ceil(UNIT);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(
                usize::try_from(units)
                    .unwrap_or(Semaphore::MAX_PERMITS)
                    .min(Semaphore::MAX_PERMITS),
            )),
            limits,
        }
    }

    /// Takes `cost` bytes (described as `what`) from the budget, waiting up to `limits.wait`.
    /// A cost over the per-request cap (or over the whole budget) is refused at once as
    /// [`ErrorKind::TooLarge`]; a budget still spent after the wait as
    /// [`ErrorKind::Overloaded`] with a retry hint. Zero costs nothing.
    pub async fn take(
        &self,
        cost: u64,
        what: &str,
    ) -> Result<Option<OwnedSemaphorePermit>, InferError> {
        if cost == 0 {
            return Ok(None);
        }
        let limits = &self.limits;
        for (cap, flag) in [
            (limits.max_request_bytes, "--max-request-decode-bytes"),
            (limits.max_bytes, "--max-decode-bytes"),
        ] {
            if cost > cap {
                return Err(InferError::new(
                    ErrorKind::TooLarge,
                    format!(
                        "decoding {what} needs about {}, over the server's cap of {} ({flag}); send smaller images or fewer per request",
                        mib(cost),
                        mib(cap)
                    ),
                ));
            }
        }
        let units = u32::try_from(cost.div_ceil(UNIT)).unwrap_or(u32::MAX);
        let waited =
            tokio::time::timeout(limits.wait, self.permits.clone().acquire_many_owned(units)).await;
        match waited {
            Ok(Ok(permit)) => Ok(Some(permit)),
            Ok(Err(_closed)) => Err(InferError::new(
                ErrorKind::Unavailable,
                "the image-decoding budget is closed (the server is stopping)",
            )),
            Err(_elapsed) => {
                tracing::debug!(cost, "request refused: the decode budget is spent");
                let mut e = InferError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "the server's image-decoding budget of {} (--max-decode-bytes) is in use by other requests; {what} needs {}; retry shortly",
                        mib(limits.max_bytes),
                        mib(cost)
                    ),
                );
                e.retry_after = Some(Duration::from_secs(1));
                Err(e)
            }
        }
    }
}

/// `bytes` in MiB, for messages.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Paths that are never refused.
fn exempt_http(path: &str) -> bool {
    path.starts_with("/v2/health/") || path == "/metrics"
}

/// axum middleware: holds a permit while the request runs, or answers 503 at once.
pub async fn admit_http(
    axum::extract::State(in_flight): axum::extract::State<InFlight>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if exempt_http(request.uri().path()) {
        return next.run(request).await;
    }
    let Some(permit) = in_flight.permit() else {
        tracing::debug!(max = in_flight.max, "request refused: too many in flight");
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": in_flight.refusal() })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let response = next.run(request).await;
    drop(permit);
    response
}

/// A decision made before a gRPC call runs: let it in, holding a guard until its answer is
/// ready, or answer it with a status at once, before its message is read.
pub trait GrpcPredicate: Clone {
    /// What an admitted call holds while it runs (a permit), or `()`.
    type Guard: Send + 'static;
    /// Admits the call to `path` with these `headers`, or refuses it.
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<Self::Guard, tonic::Status>;
}

/// A tower layer for tonic's server that lets calls through [`GrpcPredicate`] `P`: the
/// in-flight limit ([`GrpcAdmissionLayer`]) and the bearer tokens
/// ([`crate::security::auth::GrpcAuthLayer`]) are both this gate.
#[derive(Clone, Debug)]
pub struct GrpcGateLayer<P> {
    predicate: P,
}

impl<P> GrpcGateLayer<P> {
    /// Admits calls through `predicate`.
    pub fn new(predicate: P) -> GrpcGateLayer<P> {
        GrpcGateLayer { predicate }
    }
}

impl<S, P: Clone> tower::Layer<S> for GrpcGateLayer<P> {
    type Service = GrpcGate<S, P>;

    fn layer(&self, inner: S) -> GrpcGate<S, P> {
        GrpcGate {
            inner,
            predicate: self.predicate.clone(),
        }
    }
}

/// The service [`GrpcGateLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcGate<S, P> {
    inner: S,
    predicate: P,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, P, B, RB> tower::Service<http::Request<B>> for GrpcGate<S, P>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    P: GrpcPredicate,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self
            .predicate
            .admit(request.uri().path(), request.headers())
        {
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
            Ok(guard) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(guard);
                    response
                })
            }
        }
    }
}

/// The in-flight limit for gRPC calls (health checks exempt).
pub type GrpcAdmissionLayer = GrpcGateLayer<InFlight>;

impl GrpcPredicate for InFlight {
    type Guard = Option<OwnedSemaphorePermit>;

    fn admit(&self, path: &str, _: &http::HeaderMap) -> Result<Self::Guard, tonic::Status> {
        if crate::security::auth::OPEN_GRPC_PATHS.contains(&path) {
            return Ok(None);
        }
        match self.permit() {
            Some(permit) => Ok(Some(permit)),
            None => {
                tracing::debug!(max = self.max, "gRPC call refused: too many in flight");
                Err(tonic::Status::resource_exhausted(self.refusal()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_bytes: u64, max_request_bytes: u64) -> DecodeBudget {
        DecodeBudget::new(DecodeLimits {
            max_bytes,
            max_request_bytes,
            wait: Duration::from_millis(50),
        })
    }

    #[tokio::test]
    async fn a_spent_budget_refuses_after_the_wait_and_comes_back() {
        let budget = budget(10 << 20, 8 << 20);
        let held = budget.take(6 << 20, "the first").await.unwrap();
        assert!(held.is_some());
        let refused = budget.take(6 << 20, "the second").await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Overloaded);
        assert_eq!(refused.retry_after, Some(Duration::from_secs(1)));
        assert!(
            refused.message.contains("--max-decode-bytes")
                && refused.message.contains("the second"),
            "{}",
            refused.message
        );
        // What is left still admits a smaller request; the whole comes back with the permit.
        assert!(budget.take(4 << 20, "a small one").await.unwrap().is_some());
        drop(held);
        assert!(budget.take(6 << 20, "the second").await.unwrap().is_some());
        assert!(budget.take(0, "no images").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_request_over_its_cap_is_refused_at_once() {
        let budget = budget(10 << 20, 8 << 20);
        let refused = budget
            .take(9 << 20, "this request's image")
            .await
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::TooLarge);
        assert!(
            refused.message.contains("--max-request-decode-bytes")
                && refused.message.contains("9.0 MiB"),
            "{}",
            refused.message
        );
        // A per-request cap above the whole budget: the budget is the cap.
        let budget = super::tests::budget(4 << 20, 8 << 20);
        let refused = budget.take(5 << 20, "it").await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::TooLarge);
        assert!(
            refused.message.contains("--max-decode-bytes"),
            "{}",
            refused.message
        );
    }
}
