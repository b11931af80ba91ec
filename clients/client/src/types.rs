//! What goes in and comes out of the client.

use spindle_core::tensor::Tensor;
use std::sync::Arc;
use std::time::Duration;

/// Wire protocol of an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// KServe v2 over HTTP/1.1 with binary tensors.
    Http,
    /// KServe v2 over gRPC with raw contents.
    Grpc,
}

/// A named tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Input or output name.
    pub name: String,
    /// Its value.
    pub tensor: Tensor,
}

/// An input of a request. The tensor is shared: retries resend it, and the HTTP transport sends
/// its memory as part of the body, all without copying it.
#[derive(Clone, Debug, PartialEq)]
pub struct InferInput {
    /// Input name.
    pub name: String,
    /// Its value.
    pub tensor: Arc<Tensor>,
}

/// One output to ask for.
#[derive(Clone, Debug)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// Top-k classification instead of the tensor.
    pub classification: Option<usize>,
}

/// An inference request.
#[derive(Clone, Debug)]
pub struct InferRequest {
    /// Model name.
    pub model: String,
    /// Version; the newest ready one when `None`.
    pub version: Option<String>,
    /// Inputs.
    pub inputs: Vec<InferInput>,
    /// Outputs to return; all of them when empty.
    pub outputs: Vec<RequestedOutput>,
    /// Server-side timeout sent with the request (the server answers 504 / DEADLINE_EXCEEDED
    /// rather than computing it late).
    pub server_timeout: Option<Duration>,
}

impl InferRequest {
    /// A request for `model` with no inputs yet.
    pub fn new(model: impl Into<String>) -> InferRequest {
        InferRequest {
            model: model.into(),
            version: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
            server_timeout: None,
        }
    }

    /// Adds an input.
    pub fn input(mut self, name: impl Into<String>, tensor: Tensor) -> InferRequest {
        self.inputs.push(InferInput {
            name: name.into(),
            tensor: Arc::new(tensor),
        });
        self
    }

    /// Asks for an output, optionally as top-k classes.
    pub fn output(mut self, name: impl Into<String>, classification: Option<usize>) -> Self {
        self.outputs.push(RequestedOutput {
            name: name.into(),
            classification,
        });
        self
    }

    /// Pins a model version.
    pub fn version(mut self, version: impl Into<String>) -> InferRequest {
        self.version = Some(version.into());
        self
    }
}

/// An inference answer.
#[derive(Clone, Debug)]
pub struct InferResponse {
    /// Model that answered.
    pub model: String,
    /// Version that answered.
    pub version: String,
    /// Outputs, in the order returned.
    pub outputs: Vec<NamedTensor>,
}

impl InferResponse {
    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&Tensor> {
        self.outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| &o.tensor)
    }
}

/// One input or output of a model's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMetadata {
    /// Name.
    pub name: String,
    /// KServe datatype name.
    pub datatype: String,
    /// Shape; -1 is variable.
    pub shape: Vec<i64>,
}

/// A model's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelMetadata {
    /// Name.
    pub name: String,
    /// Ready versions.
    pub versions: Vec<String>,
    /// Inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error, Clone)]
pub enum ClientError {
    /// The server answered with an error (HTTP status, or the HTTP status matching the gRPC code).
    #[error("{endpoint}: server answered {status}: {message}")]
    Server {
        /// Endpoint URL.
        endpoint: String,
        /// HTTP status (gRPC codes are mapped to their HTTP equivalents).
        status: u16,
        /// The server's message.
        message: String,
        /// The server's Retry-After, if any.
        retry_after: Option<Duration>,
    },
    /// No connection, or it broke.
    #[error("{endpoint}: connection failed: {message} (is the server running and reachable?)")]
    Connection {
        /// Endpoint URL.
        endpoint: String,
        /// Details.
        message: String,
    },
    /// The client-side timeout passed.
    #[error(
        "{endpoint}: no answer within {timeout:?} (raise the timeout, or check the server's load)"
    )]
    Timeout {
        /// Endpoint URL.
        endpoint: String,
        /// The timeout.
        timeout: Duration,
    },
    /// No replica of a discovered deployment could be reached, however long the client
    /// waited for one (see `ClientBuilder::discovery`).
    #[error("no replica answered within {}s: {state} (last attempt: {last})", waited.as_secs())]
    NoReplica {
        /// How long the request waited.
        waited: Duration,
        /// The deployment's state, from its discovery, and what to do about it.
        state: String,
        /// How the last attempt failed.
        last: String,
    },
    /// The answer could not be understood, or the request could not be built.
    #[error("{0}")]
    Protocol(String),
    /// The client was configured wrongly.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Whether another attempt (on this or another endpoint) may succeed: overload, not ready,
    /// connection failures and timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Server { status, .. } => matches!(status, 429 | 502 | 503),
            ClientError::Connection { .. } | ClientError::Timeout { .. } => true,
            ClientError::NoReplica { .. } | ClientError::Protocol(_) | ClientError::Config(_) => {
                false
            }
        }
    }
}
