//! The HTTP front end: KServe v2 / Open Inference Protocol, TensorFlow Serving REST, health, and
//! Prometheus metrics.
//!
//! - [`v2`]: health, server and model metadata, readiness, inference.
//! - [`codec`]: request parsing and response encoding, JSON and binary tensors.
//! - [`triton`]: Triton's model configuration and statistics extensions.
//! - [`tfserving`]: TensorFlow Serving's REST API (`/v1/models/...:predict`).
//! - [`repository`]: the repository index and explicit model load/unload.
//! - [`error`]: the JSON error body and status codes, from the core's error table.
//! - [`listener`]: connection admission, slow-client timeouts, HTTP/1.1 and h2c, the drain.

pub mod codec;
pub mod error;
pub mod listener;
pub mod repository;
pub mod tfserving;
pub mod triton;
pub mod v2;

use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::get;
use spindle_core::error::InferError;

/// The full router. `max_body` caps request bodies (413 beyond).
pub fn router(state: AppState, max_body: usize) -> Router {
    Router::new()
        .merge(v2::routes())
        .merge(triton::routes())
        .merge(tfserving::routes())
        .merge(repository::routes())
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    state.models.metrics().render()
}

async fn not_found(method: Method, uri: Uri) -> error::ApiError {
    InferError::not_found(format!(
        "no route for {method} {uri}; KServe v2 routes are under /v2 (GET /v2/models/{{model}} describes a model)"
    ))
    .into()
}
