//! The small, synchronous trait every engine implements.
//!
//! An engine compiles one ONNX model into `instances` independent [`Runner`]s. Each runner is
//! owned by one worker thread, so engines whose sessions need `&mut self` (ONNX Runtime) need no
//! lock, and engines whose plans are shareable (tract) simply clone an `Arc`.

use crate::config::{ModelConfig, Spinning};
use crate::tensor::Tensor;

// Engines and their callers name these through `engine`, where they were first defined.
pub use crate::placement::{Device, EngineChoice};

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Number of runners to create (one per worker thread).
    pub instances: usize,
    /// Threads each runner may use inside one run (ONNX Runtime's intra-op pool; ignored by
    /// single-threaded engines).
    pub intra_op_threads: usize,
    /// When idle intra-op threads spin rather than sleep (ONNX Runtime only).
    pub intra_op_spinning: Spinning,
    /// Where to run.
    pub device: Device,
}

/// An engine failure. `Clone` so one failure can be answered to every request of a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The engine itself cannot be used here (library missing, device absent).
    #[error("{0}")]
    Unavailable(String),
    /// The model file could not be parsed or compiled.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The model's inputs or outputs differ from what `config.toml` declares.
    #[error("model does not match its config: {0}")]
    SignatureMismatch(String),
    /// A run failed.
    #[error("inference failed: {0}")]
    Run(String),
}

/// One instance of a loaded model, owned by one worker thread.
pub trait Runner: Send {
    /// Runs one batch. `inputs` follow the order of the config's `inputs`; the result must
    /// follow the order of its `outputs`, each with the batch as first dimension.
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError>;
}

/// An inference engine: compiles ONNX models into runners.
pub trait Engine: Send + Sync {
    /// Short name for logs and metrics (`ort`, `tract`).
    fn name(&self) -> &'static str;

    /// Parses and compiles `onnx`, checks its inputs and outputs against `config` (names,
    /// element types, ranks and fixed dimensions), and returns `options.instances` runners.
    fn load(
        &self,
        onnx: &[u8],
        config: &ModelConfig,
        options: &LoadOptions,
    ) -> Result<Vec<Box<dyn Runner>>, EngineError>;
}
