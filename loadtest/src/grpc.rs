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
}

fn endpoint(target: &Target) -> anyhow::Result<Endpoint> {
    Ok(
        Channel::from_shared(format!("http://{}", target.authority()))
            .with_context(|| format!("{}: not a gRPC address", target.url))?
            .tcp_nodelay(true),
    )
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

    /// One `ModelInfer`, classified like an HTTP answer.
    pub async fn attempt(&self, client: &mut GrpcClient) -> Outcome {
        let request = match self.requests.as_slice() {
            [one] => one,
            many => &many[self.next.fetch_add(1, Ordering::Relaxed) % many.len()],
        };
        match client.model_infer(request.clone()).await {
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
        let answer = client
            .model_metadata(pb::ModelMetadataRequest {
                name: model.to_string(),
                version: version.unwrap_or_default().to_string(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("{}: {:?}: {}", target.url, s.code(), s.message()))?
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
