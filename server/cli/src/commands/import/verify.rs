//! The serving config derived from the TensorFlow signature, and the check that the engine
//! Spindle serves the converted model with answers the verification batch as TensorFlow did.

use super::TfImportArgs;
use super::python::{Converted, Signed};
use anyhow::Context;
use spindle_core::config::{ModelConfig, TensorSpec};
use spindle_core::engine::{Device, EngineChoice};
use spindle_core::{Tensor, TensorData};
use spindle_server::engines::Engines;

/// `config.toml` for the import: names, dtypes and dims (-1 batch) from the signature.
pub fn config(args: &TfImportArgs, converted: &Converted) -> anyhow::Result<ModelConfig> {
    let spec = |s: &Signed| TensorSpec {
        name: s.name.clone(),
        dtype: s.tensor.dtype(),
        dims: s.dims.clone(),
        preprocess: None,
    };
    let mut inputs: Vec<TensorSpec> = converted.inputs.iter().map(spec).collect();
    if let Some(preprocess) = args.preprocess {
        inputs[0].preprocess = Some(preprocess);
    }
    let config = ModelConfig {
        name: args.model.clone(),
        max_batch_size: args.max_batch_size,
        preferred_batch_sizes: Vec::new(),
        max_queue_delay: std::time::Duration::ZERO,
        max_queue_size: 1024,
        instance_count: None,
        intra_op_threads: None,
        intra_op_spinning: Default::default(),
        idle_spin: spindle_core::config::DEFAULT_IDLE_SPIN,
        engine: args.engine,
        version_policy: Default::default(),
        version_labels: Default::default(),
        require_success_marker: false,
        inputs,
        outputs: converted.outputs.iter().map(spec).collect(),
    };
    config
        .validate()
        .context("the config.toml derived from the TensorFlow signature")?;
    Ok(config)
}

/// Per-output agreement between TensorFlow and the engine.
#[derive(Debug)]
pub struct OutputCheck {
    /// Output name.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Values compared.
    pub values: usize,
}

/// The whole verification.
#[derive(Debug)]
pub struct Checked {
    /// The engine that ran the batch (`ort`, `tract`).
    pub engine: &'static str,
    /// Per output.
    pub outputs: Vec<OutputCheck>,
}

impl Checked {
    /// The worst output's difference (NaN if any comparison was NaN).
    pub fn max_abs_diff(&self) -> f64 {
        self.outputs
            .iter()
            .map(|o| o.max_abs_diff)
            .fold(0.0, |a, b| {
                if a.is_nan() || b.is_nan() {
                    f64::NAN
                } else {
                    a.max(b)
                }
            })
    }
}

/// Loads the ONNX model on `choice`'s engine and runs TensorFlow's batch through it
/// (blocking).
pub fn compare(
    choice: EngineChoice,
    config: &ModelConfig,
    converted: &Converted,
) -> anyhow::Result<Checked> {
    let engines = Engines::new(choice, Device::Cpu);
    let engine = engines.for_model(config)?;
    let mut options = engines.load_options(engine.as_ref(), config);
    options.instances = 1;
    let mut runner = engine
        .load(&converted.onnx, config, &options)
        .with_context(|| format!("{} cannot load the converted model", engine.name()))?
        .pop()
        .context("the engine made no runner")?;
    let inputs = converted.inputs.iter().map(|s| s.tensor.clone()).collect();
    let answers = runner
        .run(inputs)
        .with_context(|| format!("{} failed on the verification batch", engine.name()))?;
    let outputs = converted
        .outputs
        .iter()
        .zip(&answers)
        .map(|(tf, ours)| compare_output(&tf.name, &tf.tensor, ours))
        .collect::<anyhow::Result<_>>()?;
    Ok(Checked {
        engine: engine.name(),
        outputs,
    })
}

fn compare_output(name: &str, tf: &Tensor, ours: &Tensor) -> anyhow::Result<OutputCheck> {
    if tf.shape != ours.shape {
        anyhow::bail!(
            "output '{name}': TensorFlow answered shape {:?}, the converted model {:?}",
            tf.shape,
            ours.shape
        );
    }
    let (a, b) = (as_f64(&tf.data, name)?, as_f64(&ours.data, name)?);
    let max_abs_diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f64, d| {
            if d.is_nan() || m.is_nan() {
                f64::NAN
            } else {
                m.max(d)
            }
        });
    Ok(OutputCheck {
        name: name.to_string(),
        max_abs_diff,
        values: a.len(),
    })
}

fn as_f64(data: &TensorData, name: &str) -> anyhow::Result<Vec<f64>> {
    Ok(match data {
        TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I16(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        TensorData::Bytes(_) => anyhow::bail!("output '{name}' is BYTES; it cannot be compared"),
    })
}
