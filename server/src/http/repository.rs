//! The repository extension of KServe v2 / Triton: the index, and model load/unload (only with
//! `--model-control explicit`; Triton's CVE-2023-31036 came from this API being on).

use super::error::ApiError;
use crate::repository::ControlError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use spindle_core::error::{ErrorKind, InferError};

/// The repository routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/repository/index", post(index).get(index_all))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload))
}

async fn index_all(State(state): State<AppState>) -> Json<Value> {
    Json(json!(state.repository.index(false)))
}

/// `POST` takes Triton's optional body `{"ready": true}` (only ready versions).
async fn index(State(state): State<AppState>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let ready_only = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        let request: Value = serde_json::from_slice(&body).map_err(|e| {
            InferError::new(
                ErrorKind::InvalidInput,
                format!(
                    "repository index request: invalid JSON ({e}); send {{}} or {{\"ready\": true}}"
                ),
            )
        })?;
        request
            .get("ready")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Ok(Json(json!(state.repository.index(ready_only))))
}

async fn load(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .repository
        .load_model(&model)
        .await
        .map_err(api_error)?;
    Ok(Json(json!({})))
}

async fn unload(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .repository
        .unload_model(&model)
        .await
        .map_err(api_error)?;
    Ok(Json(json!({})))
}

fn api_error(e: ControlError) -> ApiError {
    InferError::from(e).into()
}
