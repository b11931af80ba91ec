//! KServe v2 over gRPC (plain or TLS) with raw contents, over one multiplexed HTTP/2 channel per endpoint.

use crate::security::Credentials;
use crate::types::{
    ClientError, InferRequest, InferResponse, ModelMetadata, NamedTensor, TensorMetadata,
};
use spindle_core::tensor::Tensor;
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use std::collections::HashMap;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// One gRPC endpoint.
#[derive(Clone, Debug)]
pub struct GrpcTransport {
    url: String,
    client: GrpcInferenceServiceClient<InterceptedService<Channel, Authorize>>,
}

/// Adds the bearer token, when there is one, to every call's metadata.
#[derive(Clone, Debug)]
pub(crate) struct Authorize(Option<MetadataValue<Ascii>>);

impl Interceptor for Authorize {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

impl GrpcTransport {
    /// A transport to `http://host:port`, or `https://host:port` with a TLS configuration in
    /// `credentials` (the channel connects lazily and reconnects by itself).
    pub(crate) fn new(
        url: &str,
        max_message: usize,
        credentials: &Credentials,
    ) -> Result<GrpcTransport, ClientError> {
        let mut endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| ClientError::Config(format!("{url}: not a gRPC address: {e}")))?
            .tcp_nodelay(true);
        if url.starts_with("https://")
            && let Some(tls) = &credentials.grpc_tls
        {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| ClientError::Config(format!("{url}: TLS setup: {e}")))?;
        }
        let token = credentials
            .authorization
            .as_ref()
            .map(|v| {
                MetadataValue::try_from(v.as_bytes())
                    .map_err(|_| ClientError::Config("the token is not valid gRPC metadata".into()))
            })
            .transpose()?;
        let channel = endpoint.connect_lazy();
        Ok(GrpcTransport {
            url: url.to_string(),
            client: GrpcInferenceServiceClient::with_interceptor(channel, Authorize(token))
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message),
        })
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, status: tonic::Status) -> ClientError {
        use tonic::Code;
        // A status the server sent has no source; one tonic made from a failed connection (a
        // refused TLS handshake, a reset) carries the transport error as its source.
        if let Some(cause) = std::error::Error::source(&status) {
            let mut message = status.message().to_string();
            let mut next = Some(cause);
            while let Some(e) = next {
                message = format!("{message}: {e}");
                next = e.source();
            }
            return ClientError::Connection {
                endpoint: self.url.clone(),
                message,
            };
        }
        let message = status.message().to_string();
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => 400,
            Code::NotFound => 404,
            // Overload and message size share RESOURCE_EXHAUSTED; only overload is retryable.
            Code::ResourceExhausted if message.contains("queue is full") => 429,
            // The server's --max-inflight: as over HTTP, a 503 worth a retry.
            Code::ResourceExhausted if message.contains("in flight") => 503,
            Code::ResourceExhausted => 413,
            Code::DeadlineExceeded => 504,
            // Not ready, shutting down, or the channel could not connect: all worth a retry.
            Code::Unavailable => 503,
            Code::Unimplemented => 501,
            Code::Unauthenticated => 401,
            Code::PermissionDenied => 403,
            _ => 500,
        };
        ClientError::Server {
            endpoint: self.url.clone(),
            status: http,
            message,
            retry_after: None,
        }
    }

    /// `ServerReady`.
    pub async fn server_ready(&self) -> Result<bool, ClientError> {
        let mut client = self.client.clone();
        let answer = client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .map_err(|s| self.error(s))?;
        Ok(answer.into_inner().ready)
    }

    /// `ModelMetadata`.
    pub async fn model_metadata(&self, model: &str) -> Result<ModelMetadata, ClientError> {
        let mut client = self.client.clone();
        let m = client
            .model_metadata(pb::ModelMetadataRequest {
                name: model.to_string(),
                version: String::new(),
            })
            .await
            .map_err(|s| self.error(s))?
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
        Ok(ModelMetadata {
            name: m.name,
            versions: m.versions,
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        })
    }

    /// `ModelInfer` with raw input contents.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResponse, ClientError> {
        let mut raw = Vec::with_capacity(request.inputs.len());
        let inputs = request
            .inputs
            .iter()
            .map(|input| {
                let mut bytes = Vec::with_capacity(input.tensor.le_byte_len());
                input.tensor.write_le_bytes(&mut bytes);
                raw.push(bytes);
                pb::model_infer_request::InferInputTensor {
                    name: input.name.clone(),
                    datatype: input.tensor.dtype().name().to_string(),
                    shape: input.tensor.shape.iter().map(|&d| d as i64).collect(),
                    parameters: HashMap::new(),
                    contents: None,
                }
            })
            .collect();
        let outputs = request
            .outputs
            .iter()
            .map(|o| pb::model_infer_request::InferRequestedOutputTensor {
                name: o.name.clone(),
                parameters: o
                    .classification
                    .map(|k| {
                        (
                            "classification".to_string(),
                            pb::InferParameter {
                                parameter_choice: Some(
                                    pb::infer_parameter::ParameterChoice::Int64Param(k as i64),
                                ),
                            },
                        )
                    })
                    .into_iter()
                    .collect(),
            })
            .collect();
        let mut parameters = HashMap::new();
        if let Some(t) = request.server_timeout {
            parameters.insert(
                "timeout".to_string(),
                pb::InferParameter {
                    parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(
                        t.as_micros() as i64,
                    )),
                },
            );
        }
        let message = pb::ModelInferRequest {
            model_name: request.model.clone(),
            model_version: request.version.clone().unwrap_or_default(),
            id: String::new(),
            parameters,
            inputs,
            outputs,
            raw_input_contents: raw,
        };
        let mut client = self.client.clone();
        let answer = client
            .model_infer(message)
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        if answer.raw_output_contents.len() != answer.outputs.len() {
            return Err(ClientError::Protocol(format!(
                "{}: answer has {} outputs but {} raw contents",
                self.url,
                answer.outputs.len(),
                answer.raw_output_contents.len()
            )));
        }
        let outputs = answer
            .outputs
            .into_iter()
            .zip(answer.raw_output_contents)
            .map(|(out, bytes)| {
                let dtype = out.datatype.parse().map_err(|e| {
                    ClientError::Protocol(format!("{}: output '{}': {e}", self.url, out.name))
                })?;
                let shape = out.shape.iter().map(|&d| d.max(0) as usize).collect();
                let tensor = Tensor::from_le_bytes(dtype, shape, &bytes).map_err(|e| {
                    ClientError::Protocol(format!("{}: output '{}': {e}", self.url, out.name))
                })?;
                Ok(NamedTensor {
                    name: out.name,
                    tensor,
                })
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        Ok(InferResponse {
            model: answer.model_name,
            version: answer.model_version,
            outputs,
        })
    }
}
