//! Spindle's model zoo: the seed's architectures written as real ONNX files, in Rust.
//!
//! The zoo builds the models Spindle serves in tests, demos and benchmarks, with the real
//! architectures and seeded random weights, so nothing has to be downloaded or converted.
//!
//! - [`onnx`]: the subset of the ONNX protobuf schema the zoo writes, as `prost` messages.
//! - [`rng`]: a seeded, platform-independent normal generator for the weights.
//! - [`builder`]: a layer-by-layer graph builder that counts parameters and multiply-adds.
//! - [`cifar10`] and [`inception`]: the two CNN architectures.
//! - [`ctr`]: the Criteo CTR logistic regression, fitted on generated rows.
//! - This module: [`ZooModel`], [`build`] (one model in memory, with its `config.toml` contents)
//!   and [`write_zoo`] (a model repository on disk: `<name>/config.toml`, `<name>/1/model.onnx`,
//!   `<name>/labels.txt`).
//!
//! The same seed always gives byte-identical files.

pub mod builder;
pub mod cifar10;
pub mod ctr;
pub mod inception;
pub mod onnx;
pub mod rng;

use prost::Message;
use spindle_core::config::{Preprocess, TensorSpec};
use spindle_core::{DataType, ModelConfig, Tensor, TensorData};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A model the zoo can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ZooModel {
    /// The TensorFlow CIFAR-10 tutorial CNN: 24x24x3 in, 10 classes out.
    Cifar10,
    /// Inception v3: 299x299x3 in, 1001 classes out.
    InceptionV3,
    /// Criteo click-through rate: hashed ids in, click probability out.
    CriteoCtr,
}

impl ZooModel {
    /// Every model, in the order `spindle zoo` lists them.
    pub const ALL: [ZooModel; 3] = [
        ZooModel::Cifar10,
        ZooModel::InceptionV3,
        ZooModel::CriteoCtr,
    ];

    /// The model's name: its directory and its `config.toml` name.
    pub fn name(&self) -> &'static str {
        match self {
            ZooModel::Cifar10 => "cifar10",
            ZooModel::InceptionV3 => "inception_v3",
            ZooModel::CriteoCtr => ctr::NAME,
        }
    }
}

impl fmt::Display for ZooModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ZooModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ZooModel::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ZooModel::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown zoo model '{s}' (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// A built model: the ONNX file's bytes and everything written beside it.
#[derive(Clone)]
pub struct BuiltModel {
    /// The serialised ONNX `ModelProto`.
    pub onnx: Vec<u8>,
    /// Its `config.toml`, already validated.
    pub config: ModelConfig,
    /// Class names in output order, when the model has them.
    pub labels: Option<Vec<String>>,
    /// The feature spec (`features.toml`) of models that take transformed raw rows.
    pub features: Option<String>,
    /// Trainable parameters (weights and biases).
    pub parameters: u64,
    /// Multiply-adds per image through the convolutions and dense layers.
    pub multiply_adds: u64,
}

/// Builds `model` with weights drawn from `seed`.
pub fn build(model: ZooModel, seed: u64) -> BuiltModel {
    if model == ZooModel::CriteoCtr {
        return ctr::fit_zoo_model(seed).0;
    }
    let (finished, config, labels) = match model {
        ZooModel::Cifar10 => (
            cifar10::build(seed),
            config(model, 128, &cifar10::INPUT_SHAPE, cifar10::CLASSES),
            Some(cifar10::LABELS.iter().map(|l| l.to_string()).collect()),
        ),
        // No labels: the ImageNet class names are not something the zoo can make up.
        ZooModel::InceptionV3 => (
            inception::build(seed),
            config(model, 16, &inception::INPUT_SHAPE, inception::CLASSES),
            None,
        ),
        ZooModel::CriteoCtr => unreachable!("fitted above"),
    };
    if let Err(e) = config.validate() {
        panic!("the zoo's own config for {model} is invalid: {e}");
    }
    BuiltModel {
        onnx: finished.model.encode_to_vec(),
        config,
        labels,
        features: None,
        parameters: finished.parameters,
        multiply_adds: finished.multiply_adds,
    }
}

/// The serving config of a zoo model: `images` NHWC FP32 in, `probabilities` FP32 out.
fn config(model: ZooModel, max_batch_size: usize, image: &[usize], classes: usize) -> ModelConfig {
    let batched = |rest: &[usize]| {
        std::iter::once(-1)
            .chain(rest.iter().map(|&d| d as i64))
            .collect()
    };
    ModelConfig {
        name: model.name().to_string(),
        max_batch_size,
        preferred_batch_sizes: Vec::new(),
        max_queue_delay: Duration::ZERO,
        max_queue_size: 1024,
        instance_count: None,
        intra_op_threads: None,
        intra_op_spinning: Default::default(),
        idle_spin: spindle_core::config::DEFAULT_IDLE_SPIN,
        engine: Default::default(),
        version_policy: Default::default(),
        version_labels: Default::default(),
        require_success_marker: false,
        inputs: vec![TensorSpec {
            name: "images".to_string(),
            dtype: DataType::F32,
            dims: batched(image),
            // Clients may send JPEG/PNG instead of tensors; the server prepares them as the
            // model was evaluated in training.
            preprocess: match model {
                ZooModel::Cifar10 => Some(Preprocess::Cifar10Image),
                ZooModel::InceptionV3 => Some(Preprocess::InceptionImage),
                ZooModel::CriteoCtr => None,
            },
        }],
        outputs: vec![TensorSpec {
            name: "probabilities".to_string(),
            dtype: DataType::F32,
            dims: batched(&[classes]),
            preprocess: None,
        }],
    }
}

/// Writes `<out>/<name>/config.toml`, `<out>/<name>/1/model.onnx`, and `<out>/<name>/labels.txt`
/// when the model has labels. Creates directories; writes files under a temporary name then
/// renames. Returns the model directories.
pub fn write_zoo(out: &Path, seed: u64, models: &[ZooModel]) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::with_capacity(models.len());
    for &model in models {
        dirs.push(write_model(out, &build(model, seed), 1)?);
    }
    Ok(dirs)
}

/// Writes one built model as version `version` of `<out>/<name>`: `<version>/model.onnx`,
/// `<version>/features.toml` when it has a feature spec (the transform belongs to the version),
/// `labels.txt` and `config.toml`. Returns the model directory.
pub fn write_model(out: &Path, built: &BuiltModel, version: u64) -> std::io::Result<PathBuf> {
    let dir = out.join(&built.config.name);
    let version = dir.join(version.to_string());
    std::fs::create_dir_all(&version)?;
    // The model file goes first and the config last, so a server scanning the directory
    // meanwhile never sees a config without its model.
    if let Some(features) = &built.features {
        write_atomically(&version.join("features.toml"), features.as_bytes())?;
    }
    write_atomically(&version.join("model.onnx"), &built.onnx)?;
    if let Some(labels) = &built.labels {
        let mut text = labels.join("\n");
        text.push('\n');
        write_atomically(&dir.join("labels.txt"), text.as_bytes())?;
    }
    write_atomically(&dir.join("config.toml"), built.config.to_toml().as_bytes())?;
    Ok(dir)
}

/// Writes `bytes` beside `path` under a hidden temporary name, then renames it into place, so
/// readers see either the old file or the whole new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = path.with_file_name(format!(".{file_name}.tmp"));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))
}

/// Deterministic pseudo-random inputs in [0, 1) for a model whose first input is FP32 with
/// fixed non-batch dimensions (the zoo's image models): what tests and benchmarks feed engines
/// and servers.
pub fn sample_images(batch: usize, config: &ModelConfig, seed: u64) -> Tensor {
    let mut shape = vec![batch];
    shape.extend(config.inputs[0].dims[1..].iter().map(|&d| d as usize));
    let mut rng = rng::NormalRng::new(seed);
    let data = (0..shape.iter().product::<usize>())
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
        .collect();
    Tensor::new(shape, TensorData::F32(data)).expect("shape and data agree")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for model in ZooModel::ALL {
            assert_eq!(model.name().parse::<ZooModel>().unwrap(), model);
        }
        let err = "resnet".parse::<ZooModel>().unwrap_err();
        assert!(err.contains("cifar10, inception_v3, criteo_ctr"), "{err}");
    }

    #[test]
    fn cifar10_counts_match_the_tutorial() {
        let built = build(ZooModel::Cifar10, 1);
        assert_eq!(built.parameters, 1_068_298);
        assert_eq!(built.multiply_adds, 18_470_784);
        // 4 bytes per parameter, the two LRNs' constant 64x64 band matrices and biases (not
        // parameters: nothing trains them), and a little graph structure.
        let constants = 2 * 4 * (64 * 64 + 64);
        let floor = 4 * 1_068_298 + constants;
        assert!(built.onnx.len() > floor && built.onnx.len() < floor + 16_384);
    }

    #[test]
    fn configs_validate_and_round_trip() {
        let built = build(ZooModel::Cifar10, 1);
        let config = &built.config;
        assert_eq!(config.max_batch_size, 128);
        assert_eq!(config.inputs[0].dims, [-1, 24, 24, 3]);
        assert_eq!(config.outputs[0].dims, [-1, 10]);
        assert_eq!(ModelConfig::from_toml(&config.to_toml()).unwrap(), *config);
        let labels = built.labels.unwrap();
        assert_eq!(labels.len(), 10);
        assert_eq!(
            (labels[0].as_str(), labels[9].as_str()),
            ("airplane", "truck")
        );
    }

    #[test]
    fn write_zoo_lays_out_a_repository_and_repeats_byte_for_byte() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let dirs = write_zoo(first.path(), 9, &[ZooModel::Cifar10]).unwrap();
        assert_eq!(dirs, [first.path().join("cifar10")]);
        write_zoo(second.path(), 9, &[ZooModel::Cifar10]).unwrap();

        for file in ["config.toml", "1/model.onnx", "labels.txt"] {
            let a = std::fs::read(first.path().join("cifar10").join(file)).unwrap();
            let b = std::fs::read(second.path().join("cifar10").join(file)).unwrap();
            assert!(a == b, "{file} differs between two runs with the same seed");
        }
        let config = std::fs::read_to_string(dirs[0].join("config.toml")).unwrap();
        assert_eq!(ModelConfig::from_toml(&config).unwrap().name, "cifar10");
        let labels = std::fs::read_to_string(dirs[0].join("labels.txt")).unwrap();
        assert_eq!(labels.lines().count(), 10);
        let leftovers: Vec<_> = std::fs::read_dir(&dirs[0])
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let other_seed = build(ZooModel::Cifar10, 10).onnx;
        assert!(other_seed != std::fs::read(dirs[0].join("1/model.onnx")).unwrap());
    }
}
