//! Which engine runs a model and on which device: chosen in `config.toml` or on the command line,
//! read by the config schema and by every engine. These types live apart from both so that the
//! config does not depend on the engine trait (the engine trait already depends on the config).

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
