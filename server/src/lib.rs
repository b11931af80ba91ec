//! Spindle's server: the pieces behind `spindle serve`.
//!
//! - [`engines`]: picks ONNX Runtime or tract for each model, and their instance counts.
//! - [`models`]: the model manager: loaded versions, failures and their reasons.
//! - [`infer`]: the request pipeline all front ends share after parsing: checks, image
//!   preprocessing ([`preprocess`]), the batcher, classification.
//! - [`http`]: KServe v2 and TF Serving REST over HTTP, statistics, `/metrics`.
//! - [`describe`]: Triton-shaped model configuration and statistics for both front ends.
//! - [`grpc`]: KServe v2 over gRPC and the standard gRPC health service.
//! - [`repository`]: keeps served versions in step with the repository (polling, hot swap).
//! - [`repo_cmd`]: `spindle repo publish` and `spindle repo ls`.
//! - [`serve`]: loads a repository, binds and serves until a stop signal, then drains.
//! - [`replicas`]: `spindle replicas`, N local serve processes (optionally core-pinned).
//! - [`yarn`]: `spindle yarn`: the YARN Services spec, packaging, deploy/flex/status.
//! - [`bench`]: `spindle bench engine`, the in-process limit serving is measured against;
//!   [`bench_preprocess`]: `spindle bench preprocess`, the cost of decoding an image.
//! - [`cli`]: the `spindle` command line; [`infer_cmd`] is `spindle infer`, [`infer_repeat`]
//!   its `--repeat-for` callers.
//! - [`criteo_cmd`]: `spindle data criteo` and `spindle train criteo`, and `spindle score`'s arguments.
//! - [`score`]: batch scoring of raw Criteo shards behind a small backend trait.
//!
//! The inference core (tensors, configs, the batcher, errors, metrics) lives in `spindle-core`;
//! the front ends here only parse, look up a model, call its batcher and encode the answer.

pub mod bench;
pub mod bench_preprocess;
pub mod cli;
pub mod criteo_cmd;
pub mod describe;
pub mod engines;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod infer_cmd;
pub mod infer_repeat;
pub mod models;
pub mod preprocess;
pub mod replicas;
pub mod repo_cmd;
pub mod repository;
pub mod score;
pub mod serve;
pub mod yarn;

/// The cores this process may use (its CPU affinity and cgroup quota), at least 1: what the
/// default thread and instance counts are sized from.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
