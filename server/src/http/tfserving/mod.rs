//! TensorFlow Serving's REST API, for applications written against it:
//!
//! - `POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict` with the row format (`instances` ->
//!   `predictions`) or the columnar format (`inputs` -> `outputs`); binary values as
//!   `{"b64": "..."}` (encoded images for preprocessed inputs);
//! - `GET /v1/models/{m}[/versions/{v}|/labels/{l}]`: version status;
//! - `GET /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata`: the `serving_default` signature.
//!
//! A label is one of config.toml's `[version_labels]`; an unknown one, or one naming a version
//! that is not loaded, is a 404 naming the label and the labels there are.
//!
//! Requests go through the same pipeline and batcher as KServe v2; errors are TF Serving's
//! `{"error": "..."}` with the status codes of the shared table.
//!
//! This module holds the routes and handlers; [`codec`] parses predict bodies and writes
//! predictions.

pub mod codec;

use codec::{Columns, Rows, parse_predict};

use super::error::ApiError;
use crate::infer;
use crate::models::LoadedModel;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Map, Value, json};
use spindle_core::config::TensorSpec;
use spindle_core::dtype::DataType;
use spindle_core::error::{ErrorKind, InferError};
use spindle_core::tensor::Tensor;
use std::sync::Arc;

/// The only signature a Spindle model has.
const SIGNATURE: &str = "serving_default";

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models/{model}", get(status).post(predict))
        .route(
            "/v1/models/{model}/versions/{version}",
            get(version_status).post(version_predict),
        )
        .route("/v1/models/{model}/metadata", get(metadata))
        .route(
            "/v1/models/{model}/versions/{version}/metadata",
            get(version_metadata),
        )
        .route(
            "/v1/models/{model}/labels/{label}",
            get(label_status).post(label_predict),
        )
        .route(
            "/v1/models/{model}/labels/{label}/metadata",
            get(label_metadata),
        )
}

/// The version number a label of `model` selects, as a path segment would give it.
fn label_version(state: &AppState, model: &str, label: &str) -> Result<String, InferError> {
    Ok(state.models.lookup_label(model, label)?.version.to_string())
}

/// Splits `name:verb`; only `predict` is served.
fn predict_target(segment: &str) -> Result<&str, InferError> {
    match segment.rsplit_once(':') {
        Some((name, "predict")) => Ok(name),
        Some((_, verb @ ("classify" | "regress"))) => Err(InferError::invalid(format!(
            ":{verb} needs a TensorFlow Example signature, which ONNX models do not have; use :predict"
        ))),
        Some((_, verb)) => Err(InferError::not_found(format!(
            "unknown method ':{verb}' (TF Serving REST serves :predict)"
        ))),
        None => Err(InferError::not_found(format!(
            "POST /v1/models/{segment} needs a method: /v1/models/{segment}:predict"
        ))),
    }
}

async fn predict(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = predict_target(&segment)?;
    run_predict(&state, name, None, body).await
}

async fn version_predict(
    State(state): State<AppState>,
    Path((model, segment)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let version = predict_target(&segment)?;
    run_predict(&state, &model, Some(version), body).await
}

async fn label_predict(
    State(state): State<AppState>,
    Path((model, segment)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let label = predict_target(&segment)?;
    let version = label_version(&state, &model, label)?;
    run_predict(&state, &model, Some(&version), body).await
}

async fn run_predict(
    state: &AppState,
    model: &str,
    version: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(super::v2::body_error)?;
    state.check_ready()?;
    let loaded = state.models.lookup(model, version)?;
    let model = loaded.clone();
    let (request, columnar) =
        super::codec::parse_off_runtime(body, move |body| parse_predict(&model, body)).await?;
    let answer = infer::run(&loaded, request, state.limits.clone()).await?;
    let outputs: Vec<(&str, &Tensor)> = answer
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), &o.tensor))
        .collect();
    let body = if columnar {
        json!({ "outputs": Columns(&outputs) })
    } else {
        json!({ "predictions": Rows(&outputs) })
    };
    Ok(Json(body))
}

fn tf_dtype(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "DT_BOOL",
        DataType::U8 => "DT_UINT8",
        DataType::I8 => "DT_INT8",
        DataType::I16 => "DT_INT16",
        DataType::I32 => "DT_INT32",
        DataType::I64 => "DT_INT64",
        DataType::F32 => "DT_FLOAT",
        DataType::F64 => "DT_DOUBLE",
        DataType::Bytes => "DT_STRING",
    }
}

fn status_json(state: &AppState, model: &str, version: Option<&str>) -> Result<Value, ApiError> {
    // 404 for an unknown model or version, with the known ones listed.
    let wanted: Option<u64> = match version {
        Some(v) => Some(
            state
                .models
                .lookup(model, Some(v))
                .map(|m| m.version)
                .or_else(|e| match e.kind {
                    ErrorKind::NotFound => Err(e),
                    _ => v.parse::<u64>().map_err(|_| e),
                })?,
        ),
        None => {
            if let Err(e) = state.models.lookup(model, None)
                && e.kind == ErrorKind::NotFound
            {
                return Err(e.into());
            }
            None
        }
    };
    let wanted = wanted.map(|v| v.to_string());
    let statuses: Vec<Value> = state
        .repository
        .index(false)
        .into_iter()
        .filter(|e| e.name == model && e.version.is_some())
        .filter(|e| wanted.is_none() || e.version == wanted)
        .map(|e| {
            let (state, code) = if e.state == "READY" {
                ("AVAILABLE", "OK")
            } else {
                ("END", "UNKNOWN")
            };
            json!({
                "version": e.version,
                "state": state,
                "status": { "error_code": code, "error_message": e.reason.unwrap_or_default() },
            })
        })
        .collect();
    Ok(json!({ "model_version_status": statuses }))
}

async fn status(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_json(&state, &model, None)?))
}

async fn version_status(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(status_json(&state, &model, Some(&version))?))
}

async fn label_status(
    State(state): State<AppState>,
    Path((model, label)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = label_version(&state, &model, &label)?;
    Ok(Json(status_json(&state, &model, Some(&version))?))
}

fn signature_tensors(specs: &[TensorSpec]) -> Value {
    let entries: Map<String, Value> = specs
        .iter()
        .map(|spec| {
            let dims: Vec<Value> = spec
                .dims
                .iter()
                .map(|d| json!({ "size": d.to_string(), "name": "" }))
                .collect();
            (
                spec.name.clone(),
                json!({
                    "dtype": tf_dtype(spec.dtype),
                    "tensor_shape": { "dim": dims, "unknown_rank": false },
                    "name": spec.name,
                }),
            )
        })
        .collect();
    Value::Object(entries)
}

fn metadata_json(model: &Arc<LoadedModel>) -> Value {
    json!({
        "model_spec": {
            "name": model.name,
            "signature_name": "",
            "version": model.version.to_string(),
        },
        "metadata": { "signature_def": { "signature_def": { SIGNATURE: {
            "inputs": signature_tensors(&model.config.inputs),
            "outputs": signature_tensors(&model.config.outputs),
            "method_name": "tensorflow/serving/predict",
        }}}},
    })
}

async fn metadata(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(metadata_json(&state.models.lookup(&model, None)?)))
}

async fn version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(metadata_json(
        &state.models.lookup(&model, Some(&version))?,
    )))
}

async fn label_metadata(
    State(state): State<AppState>,
    Path((model, label)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(metadata_json(
        &state.models.lookup_label(&model, &label)?,
    )))
}
