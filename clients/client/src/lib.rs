//! Spindle's client library: async KServe v2 over HTTP (binary tensor extension) and gRPC,
//! against one server or the replicas of a deployment.
//!
//! - [`Client`] ([`client`]): endpoints, round-robin load spread, timeouts, retries with
//!   jittered exponential backoff on 429, 503 and connection failures (honouring `Retry-After`),
//!   within a retry budget (a share of the calls made).
//! - [`http`] and [`grpc`]: one transport per protocol, each keeping its connections open.
//! - [`security`]: TLS (a private CA, optionally a client certificate) and bearer tokens.
//! - [`types`]: requests, responses, metadata and the error type.
//!
//! - [`discovery`]: with endpoints from a [`Discovery`], a request that can reach no replica
//!   asks it again and waits (up to a deadline) instead of failing at once.
//!
//! Finding the replicas of a YARN deployment is deployment code (`spindle-deploy`'s discovery),
//! which hands this client its endpoint lists and implements [`Discovery`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), spindle_client::ClientError> {
//! use spindle_client::{Client, InferRequest};
//! use spindle_core::{Tensor, TensorData};
//! let client = Client::builder(["http://127.0.0.1:8000", "grpc://127.0.0.1:8001"]).build()?;
//! let image = Tensor::new(vec![1, 24, 24, 3], TensorData::F32(vec![0.0; 1728])).unwrap();
//! let answer = client.infer(&InferRequest::new("cifar10").input("images", image)).await?;
//! println!("{:?}", answer.output("probabilities"));
//! # Ok(()) }
//! ```

pub mod client;
pub mod discovery;
pub mod grpc;
pub mod http;
pub mod security;
pub mod types;

pub use client::{Client, ClientBuilder, DEFAULT_RETRY, RetryPolicy};
pub use discovery::{DEFAULT_REPLICA_WAIT, Discovered, Discovery};
#[cfg(feature = "clap")]
pub use security::ClientSecurityArgs;
pub use security::{ClientSecurity, Credentials, TOKEN_ENV};
pub use types::{
    ClientError, InferInput, InferRequest, InferResponse, ModelMetadata, NamedTensor, Protocol,
};
