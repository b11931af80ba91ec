//! Triton's HTTP extensions that its clients and perf_analyzer use: model configuration and
//! statistics.
//!
//! `GET /v2/models/stats`, `GET /v2/models/{m}[/versions/{v}]/stats`,
//! `GET /v2/models/{m}[/versions/{v}]/config`.

use super::error::ApiError;
use crate::describe::{self, ModelStatistics, TritonConfig};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use serde::Serialize;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/models/{model}/stats", get(model_stats))
        .route(
            "/v2/models/{model}/versions/{version}/stats",
            get(version_stats),
        )
        .route("/v2/models/{model}/config", get(model_config))
        .route(
            "/v2/models/{model}/versions/{version}/config",
            get(version_config),
        )
}

#[derive(Serialize)]
struct StatsBody {
    model_stats: Vec<ModelStatistics>,
}

fn stats(
    state: &AppState,
    model: Option<&str>,
    version: Option<&str>,
) -> Result<Json<StatsBody>, ApiError> {
    let model_stats = describe::statistics(&state.models, model, version)?;
    Ok(Json(StatsBody { model_stats }))
}

async fn all_stats(State(state): State<AppState>) -> Result<Json<StatsBody>, ApiError> {
    stats(&state, None, None)
}

async fn model_stats(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<StatsBody>, ApiError> {
    stats(&state, Some(&model), None)
}

async fn version_stats(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<StatsBody>, ApiError> {
    stats(&state, Some(&model), Some(&version))
}

async fn model_config(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<TritonConfig>, ApiError> {
    let loaded = state.models.lookup(&model, None)?;
    Ok(Json(describe::model_config(&loaded)))
}

async fn version_config(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<TritonConfig>, ApiError> {
    let loaded = state.models.lookup(&model, Some(&version))?;
    Ok(Json(describe::model_config(&loaded)))
}
