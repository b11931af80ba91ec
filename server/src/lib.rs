//! Spindle's server: the pieces behind `spindle serve`.
//!
//! - [`engines`]: picks ONNX Runtime or tract for each model, and their instance counts.
//! - [`models`]: the model manager: loaded versions, failures and their reasons.
//! - [`http`]: the KServe v2 HTTP front end and `/metrics`.
//! - [`repository`]: keeps served versions in step with the repository (polling, hot swap).
//! - [`repo_cmd`]: `spindle repo publish` and `spindle repo ls`.
//! - [`serve`]: loads a repository, binds and serves until a stop signal, then drains.
//! - [`bench`]: `spindle bench engine`, the in-process limit serving is measured against.
//! - [`cli`]: the `spindle` command line.
//!
//! The inference core (tensors, configs, the batcher, errors, metrics) lives in `spindle-core`;
//! the front ends here only parse, look up a model, call its batcher and encode the answer.

pub mod bench;
pub mod cli;
pub mod engines;
pub mod http;
pub mod models;
pub mod repo_cmd;
pub mod repository;
pub mod serve;
