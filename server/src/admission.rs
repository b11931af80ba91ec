//! Admission of requests: at most `--max-inflight` requests are served at once over HTTP and gRPC
//! together. One more is refused at once, before its body is read or decoded: 503 with
//! `Retry-After` on HTTP, RESOURCE_EXHAUSTED on gRPC. Since each admitted request may buffer up
//! to `--max-body` (or `--grpc-max-message`) bytes, the limit bounds what requests in flight can
//! hold. Health checks and `/metrics` are never refused, so probes see the truth.

use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
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
    let Some(permit) = in_flight.admit() else {
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

/// A tower layer for tonic's server: the same limit for gRPC calls (health checks exempt).
#[derive(Clone, Debug)]
pub struct GrpcAdmissionLayer {
    in_flight: InFlight,
}

impl GrpcAdmissionLayer {
    /// Admits calls against `in_flight`.
    pub fn new(in_flight: InFlight) -> GrpcAdmissionLayer {
        GrpcAdmissionLayer { in_flight }
    }
}

impl<S> tower::Layer<S> for GrpcAdmissionLayer {
    type Service = GrpcAdmission<S>;

    fn layer(&self, inner: S) -> GrpcAdmission<S> {
        GrpcAdmission {
            inner,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The service [`GrpcAdmissionLayer`] makes.
#[derive(Clone, Debug)]
pub struct GrpcAdmission<S> {
    inner: S,
    in_flight: InFlight,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcAdmission<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if crate::security::auth::OPEN_GRPC_PATHS.contains(&request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Some(permit) = self.in_flight.admit() else {
            tracing::debug!(
                max = self.in_flight.max,
                "gRPC call refused: too many in flight"
            );
            let status = tonic::Status::resource_exhausted(self.in_flight.refusal());
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await;
            drop(permit);
            response
        })
    }
}
