//! Spindle's serving library: everything behind `spindle serve`, and nothing else (no command
//! line, no deployment code).
//!
//! A request flows: a front end ([`http`] or [`grpc`]) parses it, checks readiness on the
//! shared [`state`], looks the model up in [`models`], and hands it to the pipeline in
//! [`infer`], which checks the tensors, preprocesses images and rows ([`preprocess`]), queues
//! it on the model's batcher (in `spindle-core`) and classifies the answer; the front end then
//! encodes it. Errors map to HTTP and gRPC codes through the core's one table.
//!
//! - [`http`]: KServe v2, TF Serving REST and Triton's extensions over HTTP, and `/metrics`.
//!   A new HTTP endpoint goes in a module here, merged in [`http::router`].
//! - [`grpc`]: KServe v2 over gRPC and the standard gRPC health service.
//! - [`state`]: [`state::AppState`], the state both front ends share, and the readiness guard.
//! - [`infer`]: the request pipeline the front ends share after parsing.
//! - [`preprocess`]: image decoding and preprocessing, Criteo rows.
//! - [`models`]: the model manager: loaded versions, failures and their reasons.
//! - [`engines`]: picks ONNX Runtime or tract for each model, and their instance counts.
//! - [`describe`]: Triton-shaped model configuration and statistics for both front ends.
//! - [`repository`]: keeps served versions in step with the repository (polling, hot swap).
//! - [`serve`]: loads a repository, serves on the listeners it is given until a stop signal,
//!   then drains.
//!
//! The inference core (tensors, configs, the batcher, errors, metrics) is `spindle-core`; the
//! engines are `spindle-engine-ort` and `spindle-engine-tract`; the `spindle` binary is
//! `spindle-cli`.

pub mod admission;
pub mod describe;
pub mod engines;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod models;
pub mod preprocess;
pub mod repository;
pub mod security;
pub mod serve;
pub mod state;

/// The cores this process may use (its CPU affinity and cgroup quota), at least 1: what the
/// default thread and instance counts are sized from.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
