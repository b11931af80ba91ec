//! Turns an [`InferError`] into an HTTP response, using the core's single error table.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use spindle_core::error::InferError;

/// An error on its way out as `{"error": "..."}` with the table's status code.
pub struct ApiError(pub InferError);

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let class = self.0.kind.classify();
        let status = StatusCode::from_u16(class.http).expect("table holds valid codes");
        if status.is_server_error() {
            tracing::warn!(class = class.label, error = %self.0.message, "request failed");
        } else {
            tracing::debug!(class = class.label, error = %self.0.message, "request refused");
        }
        let mut response =
            (status, Json(serde_json::json!({ "error": self.0.message }))).into_response();
        if let Some(after) = self.0.retry_after {
            let secs = after.as_secs().max(1).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs).expect("digits are a valid header"),
            );
        }
        response
    }
}
