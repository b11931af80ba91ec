//! `config.toml`: a model's signature and serving settings.
//!
//! ```toml
//! name = "cifar10"
//! max_batch_size = 64            # 0: the model takes no batch dimension
//! preferred_batch_sizes = [16, 32]
//! max_queue_delay = "0us"        # how long the oldest request may wait for a fuller batch
//! max_queue_size = 1024          # queued requests beyond this are refused (429)
//! instance_count = 1             # workers, each with its own engine instance
//! engine = "auto"                # auto | ort | tract
//!
//! [[inputs]]
//! name = "images"
//! dtype = "FP32"
//! dims = [-1, 24, 24, 3]         # -1 first: the batch dimension
//!
//! [[outputs]]
//! name = "probabilities"
//! dtype = "FP32"
//! dims = [-1, 10]
//! ```
//!
//! - `schema`: the types a `config.toml` reads into, their defaults, and the rules a config must
//!   follow before a model loads ([`ModelConfig::from_toml`], [`ModelConfig::validate`]).
//! - `checks`: whether a request's tensor fits its input's spec ([`TensorSpec::check`]); front
//!   ends call it per request, engines before each run.
//! - `duration`: durations written the way people write them (`500us`, `2ms`), in configs and on
//!   the command line.

mod checks;
mod duration;
mod schema;

pub use duration::{format_duration, parse_duration};
pub use schema::{
    ConfigError, DEFAULT_IDLE_SPIN, ModelConfig, Preprocess, Spinning, TensorSpec, is_valid_name,
    spec_names,
};
