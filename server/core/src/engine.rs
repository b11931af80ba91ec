//! The small, synchronous trait every engine implements.
//!
//! An engine compiles one ONNX model into `instances` independent [`Runner`]s. Each runner is
//! owned by one worker thread, so engines whose sessions need `&mut self` (ONNX Runtime) need no
//! lock, and engines whose plans are shareable (tract) simply clone an `Arc`.

use crate::config::ModelConfig;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which engine a model asks for (in `config.toml`) or the server is told to use (`--engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// ONNX Runtime when its library can be loaded, tract otherwise.
    #[default]
    Auto,
    /// ONNX Runtime only.
    Ort,
    /// tract only.
    Tract,
}

impl FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(EngineChoice::Auto),
            "ort" | "onnxruntime" => Ok(EngineChoice::Ort),
            "tract" => Ok(EngineChoice::Tract),
            other => Err(format!(
                "unknown engine '{other}' (expected auto, ort or tract)"
            )),
        }
    }
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// Host CPU.
    #[default]
    Cpu,
    /// CUDA GPU with the given ordinal.
    Cuda(u32),
}

impl FromStr for Device {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device '{other}' (expected cpu, cuda or cuda:N)")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Number of runners to create (one per worker thread).
    pub instances: usize,
    /// Threads each runner may use inside one run (ONNX Runtime's intra-op pool; ignored by
    /// single-threaded engines).
    pub intra_op_threads: usize,
    /// When idle intra-op threads spin rather than sleep (ONNX Runtime only).
    pub intra_op_spinning: crate::config::Spinning,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_engines() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert!("gpu".parse::<Device>().unwrap_err().contains("cuda:N"));
        assert_eq!(
            "tract".parse::<EngineChoice>().unwrap(),
            EngineChoice::Tract
        );
        assert!("trt".parse::<EngineChoice>().is_err());
    }
}
