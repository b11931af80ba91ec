//! KServe v2 over gRPC: the metadata check and the request, prepared once per target, and one
//! attempt on a worker's own channel (one HTTP/2 connection per worker, as HTTP workers have).

use crate::inputs::InputTensor;
use crate::metadata::{ModelMetadata, TensorMetadata};
use crate::tally::{ErrorClass, Outcome};
use crate::target::Target;
use anyhow::Context;
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// A worker's gRPC client.
pub type GrpcClient = GrpcInferenceServiceClient<Channel>;

/// The request for one target, encoded once (or several, from real samples, sent in turn);
/// workers clone it.
#[derive(Debug)]
pub struct GrpcTemplate {
    endpoint: Endpoint,
    requests: Vec<pb::ModelInferRequest>,
    next: AtomicUsize,
    url: String,
    token: Option<MetadataValue<Ascii>>,
}

fn endpoint(target: &Target) -> anyhow::Result<Endpoint> {
    let scheme = if target.is_tls() { "https" } else { "http" };
    let endpoint = Channel::from_shared(format!("{scheme}://{}", target.authority()))
        .with_context(|| format!("{}: not a gRPC address", target.url))?
        .tcp_nodelay(true);
    match &target.grpc_tls {
        None => Ok(endpoint),
        Some(tls) => endpoint
            .tls_config(tls.clone())
            .with_context(|| format!("{}: TLS setup", target.url)),
    }
}

/// The bearer token as gRPC metadata, converted once per target.
fn token(target: &Target) -> anyhow::Result<Option<MetadataValue<Ascii>>> {
    target
        .authorization
        .as_ref()
        .map(|value| {
            MetadataValue::try_from(value.as_bytes())
                .context("the token cannot travel as gRPC metadata")
        })
        .transpose()
}

/// `message` as a call carrying the token, if any.
fn authorized<T>(message: T, token: Option<&MetadataValue<Ascii>>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", token.clone());
    }
    request
}

impl GrpcTemplate {
    /// Requests for `model` on `target` that take each set of inputs in turn.
    pub fn rotating(
        target: &Target,
        model: &str,
        version: Option<&str>,
        requests: &[&[InputTensor]],
    ) -> anyhow::Result<GrpcTemplate> {
        anyhow::ensure!(!requests.is_empty(), "no requests to send");
        let request = |inputs: &[InputTensor]| pb::ModelInferRequest {
            model_name: model.to_string(),
            model_version: version.unwrap_or_default().to_string(),
            id: String::new(),
            parameters: HashMap::new(),
            inputs: inputs
                .iter()
                .map(|t| pb::model_infer_request::InferInputTensor {
                    name: t.name.clone(),
                    datatype: t.datatype.clone(),
                    shape: t.shape.iter().map(|&d| d as i64).collect(),
                    parameters: HashMap::new(),
                    contents: None,
                })
                .collect(),
            outputs: Vec::new(),
            raw_input_contents: inputs.iter().map(|t| t.raw.clone()).collect(),
        };
        Ok(GrpcTemplate {
            endpoint: endpoint(target)?,
            requests: requests.iter().map(|inputs| request(inputs)).collect(),
            next: AtomicUsize::new(0),
            url: target.url.clone(),
            token: token(target)?,
        })
    }

    /// Opens a channel (one HTTP/2 connection).
    pub async fn connect(&self) -> anyhow::Result<GrpcClient> {
        let channel = self.endpoint.connect().await?;
        Ok(GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// A fresh client for `target` (for statistics; workers use [`GrpcTemplate::connect`]).
    pub async fn client(target: &Target) -> anyhow::Result<GrpcClient> {
        let channel = endpoint(target)?
            .connect()
            .await
            .with_context(|| format!("{}: cannot connect over gRPC", target.url))?;
        Ok(GrpcInferenceServiceClient::new(channel))
    }

    /// `message` as a call to `target`, with its token (for statistics).
    pub fn request<T>(target: &Target, message: T) -> anyhow::Result<tonic::Request<T>> {
        Ok(authorized(message, token(target)?.as_ref()))
    }

    /// One `ModelInfer`, classified like an HTTP answer.
    pub async fn attempt(&self, client: &mut GrpcClient) -> Outcome {
        let request = match self.requests.as_slice() {
            [one] => one,
            many => &many[self.next.fetch_add(1, Ordering::Relaxed) % many.len()],
        };
        match client
            .model_infer(authorized(request.clone(), self.token.as_ref()))
            .await
        {
            Ok(response) => {
                let micros = |name: &str| {
                    response
                        .metadata()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                };
                let outcome = Outcome::Success {
                    queue_us: micros("x-spindle-queue-us"),
                    compute_us: micros("x-spindle-compute-us"),
                };
                let answer = response.into_inner();
                if answer.outputs.is_empty() {
                    return Outcome::Failure(
                        ErrorClass::InvalidResponse,
                        format!("{}: an answer without outputs", self.url),
                    );
                }
                outcome
            }
            Err(status) => {
                use tonic::Code;
                let class = match status.code() {
                    Code::ResourceExhausted if status.message().contains("queue is full") => {
                        ErrorClass::TooManyRequests
                    }
                    Code::InvalidArgument
                    | Code::NotFound
                    | Code::ResourceExhausted
                    | Code::FailedPrecondition => ErrorClass::ClientError,
                    Code::DeadlineExceeded => ErrorClass::Timeout,
                    Code::Unavailable if status.message().contains("transport") => {
                        ErrorClass::Connection
                    }
                    _ => ErrorClass::ServerError,
                };
                Outcome::Failure(
                    class,
                    format!("{}: {:?}: {}", self.url, status.code(), status.message()),
                )
            }
        }
    }
}

/// Fetches the model's metadata over gRPC, so an unreachable server or unknown model is a clear
/// error before any load is sent.
pub async fn fetch_metadata(
    target: &Target,
    model: &str,
    version: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ModelMetadata> {
    let call = async {
        let channel = endpoint(target)?
            .connect()
            .await
            .with_context(|| format!("{}: cannot connect over gRPC", target.url))?;
        let mut client = GrpcInferenceServiceClient::new(channel);
        let question = pb::ModelMetadataRequest {
            name: model.to_string(),
            version: version.unwrap_or_default().to_string(),
        };
        let answer = client
            .model_metadata(authorized(question, token(target)?.as_ref()))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated => anyhow::anyhow!(
                    "{}",
                    crate::metadata::refused_credentials(
                        &target.url,
                        "UNAUTHENTICATED",
                        s.message()
                    )
                ),
                code => anyhow::anyhow!("{}: {code:?}: {}", target.url, s.message()),
            })?
            .into_inner();
        let tensors = |list: Vec<pb::model_metadata_response::TensorMetadata>| {
            list.into_iter()
                .map(|t| TensorMetadata {
                    name: t.name,
                    datatype: t.datatype,
                    shape: t.shape,
                })
                .collect()
        };
        anyhow::Ok(ModelMetadata {
            name: answer.name,
            versions: answer.versions,
            inputs: tensors(answer.inputs),
            outputs: tensors(answer.outputs),
        })
    };
    tokio::time::timeout(timeout, call)
        .await
        .with_context(|| format!("{}: no gRPC answer within {timeout:?}", target.url))?
}
