//! The gRPC front end: KServe v2's `inference.GRPCInferenceService` (what Triton's gRPC clients
//! speak) and the standard `grpc.health.v1.Health` service, sharing the HTTP front end's state,
//! request pipeline and error table.
//!
//! - [`service`]: the RPC handlers.
//! - [`codec`]: tensors to and from typed and raw contents.
//! - [`tfserving`]: TensorFlow Serving's `PredictionService` and `ModelService`.

pub mod codec;
pub mod service;
pub mod tfserving;

use crate::state::AppState;
use spindle_core::error::InferError;
use spindle_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use std::future::Future;
use tokio::net::TcpListener;

/// gRPC settings.
#[derive(Clone, Debug)]
pub struct GrpcSettings {
    /// Largest request message accepted (larger ones get `RESOURCE_EXHAUSTED`), and largest
    /// response sent.
    pub max_message: usize,
    /// TLS (and client certificates, when it has a client CA); `None` serves plain h2c.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    /// Bearer tokens every call but health checks must carry; `None`: no check.
    pub tokens: Option<crate::security::Tokens>,
    /// The in-flight limit shared with the HTTP front end.
    pub in_flight: crate::admission::InFlight,
}

/// The core's error as a gRPC status, with the code from the shared table.
pub fn status(error: InferError) -> tonic::Status {
    let class = error.kind.classify();
    if class.http >= 500 {
        tracing::warn!(class = class.label, error = %error.message, "gRPC request failed");
    } else {
        tracing::debug!(class = class.label, error = %error.message, "gRPC request refused");
    }
    tonic::Status::new(tonic::Code::from_i32(class.grpc as i32), error.message)
}

/// tonic refuses an over-cap request message with OUT_OF_RANGE before any handler runs; the
/// shared error table says a too-large request is RESOURCE_EXHAUSTED (as over HTTP it is 413), so
/// that answer is rewritten here, with a message that says how to raise the cap.
fn too_large_is_exhausted<B>(mut response: http::Response<B>, cap: usize) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v == "11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        // tonic percent-encodes the message (spaces as %20).
        .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if out_of_range && too_large {
        let code = spindle_core::error::ErrorKind::TooLarge.classify().grpc as i32;
        headers.insert("grpc-status", http::HeaderValue::from(code));
        // grpc-message is percent-encoded: spaces travel as %20.
        let message = format!(
            "request message is over the server's cap of {cap} bytes (raise it with --grpc-max-message, or send fewer rows per request)"
        )
        .replace(' ', "%20");
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_str(&message).expect("plain ASCII"),
        );
    }
    response
}

/// Serves gRPC on `listener` until `shutdown` completes. Readiness (and the health service's
/// SERVING status) follows the shared `ready` flag.
pub async fn serve(
    state: AppState,
    settings: GrpcSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GrpcInferenceServiceServer<service::InferenceService>>()
        .await;
    let inference = GrpcInferenceServiceServer::new(service::InferenceService::new(state.clone()))
        .max_decoding_message_size(settings.max_message)
        .max_encoding_message_size(settings.max_message);
    let (tf_prediction, tf_models) = tfserving::services(&state, settings.max_message);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let reporter = health_reporter.clone();
    let shutdown = async move {
        shutdown.await;
        reporter
            .set_not_serving::<GrpcInferenceServiceServer<service::InferenceService>>()
            .await;
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    let cap = settings.max_message;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = settings.tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .layer(crate::security::auth::GrpcAuthLayer::new(settings.tokens))
        .layer(crate::admission::GrpcAdmissionLayer::new(
            settings.in_flight,
        ))
        .layer(tower::util::MapResponseLayer::new(
            move |response: http::Response<tonic::body::Body>| {
                too_large_is_exhausted(response, cap)
            },
        ))
        .add_service(health_service)
        .add_service(inference)
        .add_service(tf_prediction)
        .add_service(tf_models)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
