//! Spindle's inference core.
//!
//! Everything here is independent of how requests arrive (HTTP, gRPC) and of how models run
//! (ONNX Runtime, tract):
//!
//! - [`dtype`] and [`tensor`]: element types and row-major tensors, with the KServe binary layout.
//! - [`config`]: a model's `config.toml`: its schema (inputs, outputs, batching settings, with
//!   their defaults and rules) and the checks a request's tensors pass against it.
//! - `placement`: which engine and which device a model runs on (re-exported by [`engine`]).
//! - [`engine`]: the small trait engines implement; each loaded model becomes N [`engine::Runner`]s.
//! - [`batcher`]: the per-model dynamic batcher: a bounded queue whose due batches go to worker
//!   threads that each own one runner (the queue side and the worker side in submodules).
//! - [`signature`]: checks a model's declared inputs and outputs against its config (engines use it).
//! - [`error`]: error kinds and the one table mapping them to HTTP and gRPC codes.
//! - [`metrics`]: the Prometheus metrics every front end and the batcher record, through the
//!   `metrics` facade into one registry per server.
//! - [`statistics`]: Triton-style cumulative per-model statistics (`ModelStatistics`).
//! - [`retry`]: the retry policy (attempts, exponential backoff) storage and clients share.
//!
//! A request flows: front end parses it into [`tensor::Tensor`]s -> validates them against the
//! [`config::ModelConfig`] -> [`batcher::Batcher::infer`] queues it and, when a worker
//! is idle, hands it the queued requests as one batch (a busy worker takes the next batch itself
//! when it finishes) -> the worker runs it on its runner ->
//! outputs are split back and each caller's oneshot is answered.

pub mod batcher;
pub mod config;
pub mod dtype;
pub mod engine;
pub mod error;
pub mod metrics;
mod placement;
pub mod retry;
pub mod signature;
pub mod skip;
pub mod statistics;
pub mod tensor;
pub mod version_policy;

pub use config::ModelConfig;
pub use dtype::DataType;
pub use error::{ErrorKind, InferError, UsageError};
pub use tensor::{Tensor, TensorData};
