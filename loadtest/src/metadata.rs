//! Fetching a model's KServe v2 metadata from every target before any load is sent, so that an
//! unreachable server or an unknown model is a clear error up front.

use crate::target::Target;
use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, header};
use serde::Deserialize;
use std::time::Duration;

/// A model's metadata (`GET /v2/models/{model}`), as far as the load generator needs it.
#[derive(Deserialize, Debug, Clone)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// Versions the server has ready.
    #[serde(default)]
    pub versions: Vec<String>,
    /// The inputs to generate.
    pub inputs: Vec<TensorMetadata>,
    /// The outputs to ask for.
    #[serde(default)]
    pub outputs: Vec<TensorMetadata>,
}

/// One input or output in the metadata.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// KServe v2 datatype name (FP32, INT64, ...).
    pub datatype: String,
    /// Dimensions; -1 marks a variable one.
    pub shape: Vec<i64>,
}

/// The path of a model's v2 endpoints, with or without a version.
pub fn model_path(model: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("/v2/models/{model}/versions/{v}"),
        None => format!("/v2/models/{model}"),
    }
}

/// Fetches the model's metadata from one target.
pub async fn fetch(
    target: &Target,
    model: &str,
    version: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ModelMetadata> {
    let (status, body) = get(
        target,
        &model_path(model, version),
        timeout,
        "model metadata",
    )
    .await?;
    let what = match version {
        Some(v) => format!("model '{model}' version {v}"),
        None => format!("model '{model}'"),
    };
    if status == StatusCode::UNAUTHORIZED {
        bail!(
            "{}",
            refused_credentials(&target.url, status, &server_message(&body))
        );
    }
    if status == StatusCode::NOT_FOUND {
        bail!(
            "{} does not serve {what}: {}",
            target.url,
            server_message(&body)
        );
    }
    if status != StatusCode::OK {
        bail!(
            "{}: metadata request for {what} failed with {status}: {}",
            target.url,
            server_message(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| {
        format!(
            "{}: the metadata of {what} is not KServe v2 model metadata",
            target.url
        )
    })
}

/// `GET path` on a fresh connection within `timeout`; `what` names the request in errors.
pub async fn get(
    target: &Target,
    path: &str,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(target.uri(path)?)
        .header(header::HOST, target.host.clone())
        .header(header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))?;
    if let Some(token) = &target.authorization {
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, token.clone());
    }
    let exchange = async {
        let mut connection = target
            .connect()
            .await
            .map_err(|e| anyhow!("cannot connect: {e:#}"))?;
        let response = connection.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| {
            anyhow!(
                "{}: no answer to the {what} request within {}",
                target.url,
                humantime::format_duration(timeout)
            )
        })?
        .with_context(|| format!("{} is unreachable", target.url))
}

/// What a server that refused the credentials (HTTP 401, gRPC UNAUTHENTICATED) is reported as:
/// the refusal, and the option that fixes it.
pub fn refused_credentials(url: &str, refusal: impl std::fmt::Display, message: &str) -> String {
    format!(
        "{url} refused the request's credentials ({refusal}: {message}); give a token it accepts with --token-file FILE (or the SPINDLE_TOKEN environment variable)"
    )
}

/// The `error` field of a KServe error body, or the body itself.
pub fn server_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.error,
        Err(_) if body.is_empty() => "(empty response body)".to_string(),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// Checks that every target describes the model's inputs the same way as the first.
pub fn check_consistent(targets: &[Target], metadata: &[ModelMetadata]) -> anyhow::Result<()> {
    let first = &metadata[0];
    for (target, other) in targets.iter().zip(metadata).skip(1) {
        if other.inputs != first.inputs {
            bail!(
                "{} and {} disagree on model '{}': inputs {:?} vs {:?}",
                targets[0].url,
                target.url,
                first.name,
                first.inputs,
                other.inputs
            );
        }
    }
    Ok(())
}
