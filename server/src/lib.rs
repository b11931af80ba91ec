//! Spindle's server: the pieces behind `spindle serve`.
//!
//! - [`engines`]: picks ONNX Runtime or tract for each model, and their instance counts.
//! - [`models`]: the model manager: loaded versions, failures and their reasons.
//! - [`http`]: the KServe v2 HTTP front end and `/metrics`.
//! - [`serve`]: loads a repository, binds and serves until a stop signal, then drains.
//! - [`bench`]: `spindle bench engine`, the in-process limit serving is measured against.
//! - [`criteo_cmd`]: `spindle data criteo` and `spindle train criteo`, and `spindle score`'s arguments.
//! - [`score`]: batch scoring of raw Criteo shards behind a small backend trait.
//! - [`cli`]: the `spindle` command line.
//!
//! The inference core (tensors, configs, the batcher, errors, metrics) lives in `spindle-core`;
//! the front ends here only parse, look up a model, call its batcher and encode the answer.

pub mod bench;
pub mod cli;
pub mod criteo_cmd;
pub mod engines;
pub mod http;
pub mod models;
pub mod score;
pub mod serve;
