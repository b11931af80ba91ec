//! Spindle's Criteo click-through-rate pipeline, with one feature transform for the trainer, the
//! batch scorer and the server, so a model sees exactly the ids it was fitted on.
//!
//! - [`farmhash`]: FarmHash `Fingerprint64`, as TensorFlow's `to_hash_bucket_fast` uses it.
//! - [`spec`]: the declarative feature spec (`features.toml`) and its validation.
//! - [`transform`]: raw Criteo TSV rows to INT64 ids, one row or a batch of BYTES elements.
//! - [`generate`]: realistic synthetic days whose labels come from a known model.
//! - [`metrics`]: log loss and AUC.
//! - [`rng`]: the seeded generator behind the data.
//! - [`train`]: streaming FTRL-Proximal logistic regression.
//! - [`swar`]: byte tests eight at a time, behind the transform's fast path.
//! - [`shard`]: reading plain, gzip and bzip2 shards; expanding `--data`/`--input` globs.
//! - [`text`]: decimal integers into byte buffers, for the generator and the scorer.
//!
//! A row flows: TSV line -> [`transform::Transformer::transform`] -> `F` ids in one shared id
//! space -> the model (gather weights, sum, add bias, sigmoid).

pub mod farmhash;
pub mod generate;
pub mod metrics;
pub mod rng;
pub mod shard;
pub mod spec;
pub mod swar;
pub mod text;
pub mod train;
pub mod transform;
