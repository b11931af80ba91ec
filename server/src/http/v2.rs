//! KServe v2 routes: health, metadata, readiness and inference.

use super::codec::{encode_response, parse_off_runtime, parse_request};
use super::error::ApiError;
use crate::infer;
use crate::models::LoadedModel;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use spindle_core::config::TensorSpec;
use spindle_core::error::{ErrorKind, InferError};
use std::sync::Arc;

/// Header carrying the JSON part's length in binary-tensor bodies.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The v2 routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}", get(model_metadata))
        .route(
            "/v2/models/{model}/versions/{version}",
            get(version_metadata),
        )
        .route("/v2/models/{model}/ready", get(model_ready))
        .route(
            "/v2/models/{model}/versions/{version}/ready",
            get(version_ready),
        )
        .route("/v2/models/{model}/infer", post(infer))
        .route(
            "/v2/models/{model}/versions/{version}/infer",
            post(version_infer),
        )
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "spindle",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": crate::describe::EXTENSIONS,
    }))
}

async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.is_ready();
    if ready {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        // While starting or draining: probes learn when to look again.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(json!({ "ready": false })),
        )
            .into_response()
    }
}

fn specs_json(specs: &[TensorSpec]) -> Vec<Value> {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.dtype.name(), "shape": s.dims }))
        .collect()
}

fn metadata_json(state: &AppState, model: &LoadedModel) -> Value {
    let versions: Vec<String> = state
        .models
        .ready_versions(&model.name)
        .iter()
        .map(u64::to_string)
        .collect();
    json!({
        "name": model.name,
        "versions": versions,
        "platform": crate::describe::platform(model.engine),
        "inputs": specs_json(&model.config.inputs),
        "outputs": specs_json(&model.config.outputs),
        "parameters": { "engine": model.engine, "max_batch_size": model.config.max_batch_size },
    })
}

async fn model_metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = state.models.lookup(&model, None)?;
    Ok(Json(metadata_json(&state, &loaded)))
}

async fn version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let loaded = state.models.lookup(&model, Some(&version))?;
    Ok(Json(metadata_json(&state, &loaded)))
}

fn readiness(state: &AppState, model: &str, version: Option<&str>) -> Result<Response, ApiError> {
    let found = state.models.lookup(model, version);
    match found {
        Ok(_) if state.is_ready() => {
            Ok(Json(json!({ "name": model, "ready": true })).into_response())
        }
        Ok(_) => Err(InferError::new(ErrorKind::Unavailable, "server is shutting down").into()),
        Err(e) => Err(e.into()),
    }
}

async fn model_ready(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Response, ApiError> {
    readiness(&state, &model, None)
}

async fn version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    readiness(&state, &model, Some(&version))
}

async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_infer(state, &model, None, headers, body).await
}

async fn version_infer(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    run_infer(state, &model, Some(&version), headers, body).await
}

async fn run_infer(
    state: AppState,
    model: &str,
    version: Option<&str>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The body has been read by now (axum extracts it first): a client that did not send it
    // in time hears that (408) before anything about the server's state.
    let body = body.map_err(body_error)?;
    state.check_ready()?;
    let loaded: Arc<LoadedModel> = state.models.lookup(model, version)?;
    let header_len = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    InferError::invalid(format!(
                        "Inference-Header-Content-Length must be a byte count, got {value:?}"
                    ))
                })?,
        ),
    };
    let model = loaded.clone();
    let mut request = parse_off_runtime(body, move |body| {
        parse_request(&model.config, body, header_len)
    })
    .await?;
    // The pipeline never reads the id: take it rather than clone it for the response.
    let id = request.id.take();
    let answer = infer::run(&loaded, request, state.limits.clone()).await?;
    let encoded = encode_response(&loaded.config, loaded.version, id.as_deref(), &answer);
    let mut response = encoded.body.into_response();
    let headers = response.headers_mut();
    let content_type = if encoded.header_len.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(n) = encoded.header_len {
        headers.insert(HEADER_LENGTH, HeaderValue::from(n));
    }
    headers.insert(
        "x-spindle-queue-us",
        HeaderValue::from(answer.queue_time.as_micros() as u64),
    );
    headers.insert(
        "x-spindle-compute-us",
        HeaderValue::from(answer.compute_time.as_micros() as u64),
    );
    headers.insert("x-spindle-batch-rows", HeaderValue::from(answer.batch_rows));
    Ok(response)
}

pub(crate) fn body_error(rejection: BytesRejection) -> InferError {
    if let Some(timeout) = super::listener::is_body_timeout(&rejection) {
        InferError::new(ErrorKind::RequestTimeout, timeout.to_string())
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        InferError::new(
            ErrorKind::TooLarge,
            "request body is over the server's limit (raise it with --max-body, or send fewer rows per request)",
        )
    } else {
        InferError::invalid(format!("could not read the request body: {rejection}"))
    }
}
