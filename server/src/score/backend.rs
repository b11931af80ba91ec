//! Where batches are scored. The scorer only needs "ids in, probabilities out", so local
//! (in-process engine) and remote (servers over the client library) modes are two
//! implementations of [`ScoreBackend`], and the job does not know which it has.

use crate::engines::Engines;
use anyhow::Context;
use spindle_core::engine::{Device, EngineChoice, Runner};
use spindle_core::{Tensor, TensorData};
use spindle_criteo::spec::FeatureSpec;
use spindle_loader::{ModelRepository, read_model_file};
use std::path::Path;

/// Scores batches of ids. One per worker thread; `&mut self`, so a backend may own a session
/// or a connection without locks.
pub trait ScoreBackend: Send {
    /// Click probabilities of `ids` (INT64 `[rows, F]`), one per row, in order.
    fn score(&mut self, ids: Tensor) -> anyhow::Result<Vec<f32>>;
}

/// Creates the backends of a job: the model's feature spec (so rows are transformed exactly as
/// the model was trained) and one backend per worker.
pub trait BackendFactory {
    /// The feature spec of the model being scored.
    fn spec(&self) -> &FeatureSpec;
    /// `workers` independent backends.
    fn backends(&self, workers: usize) -> anyhow::Result<Vec<Box<dyn ScoreBackend>>>;
    /// A description for the summary, like `local ort criteo_ctr v3`.
    fn describe(&self) -> String;
}

/// Local mode: the model's newest version in a repository, on an in-process engine.
pub struct LocalFactory {
    spec: FeatureSpec,
    onnx: Vec<u8>,
    config: spindle_core::ModelConfig,
    engines: Engines,
    version: u64,
}

impl LocalFactory {
    /// Loads `model`'s newest version and its `features.toml` from `repo`.
    pub fn open(repo: &Path, model: &str, engine: EngineChoice) -> anyhow::Result<LocalFactory> {
        let repository = ModelRepository::open(repo)?;
        let entry = repository.model(model)?;
        let config = entry.config.map_err(anyhow::Error::from)?;
        let version = entry.versions.last().with_context(|| {
            format!(
                "model {model} in {} has no version directory",
                repo.display()
            )
        })?;
        let features = version
            .model_path
            .parent()
            .expect("a model file lives in its version directory")
            .join("features.toml");
        let text = std::fs::read_to_string(&features).with_context(|| {
            format!(
                "reading {} (scoring raw rows needs the feature spec the model was trained with; `spindle train criteo` writes it)",
                features.display()
            )
        })?;
        let spec =
            FeatureSpec::from_toml(&text).with_context(|| format!("in {}", features.display()))?;
        let input = config.inputs.first().context("the model has no input")?;
        if input.dims.get(1) != Some(&(spec.fields() as i64)) {
            anyhow::bail!(
                "{}: the model takes {:?} ids per row but its features.toml makes {}; the two must come from the same training run",
                version.model_path.display(),
                input.dims,
                spec.fields()
            );
        }
        Ok(LocalFactory {
            spec,
            onnx: read_model_file(&version.model_path)?,
            config,
            engines: Engines::new(engine, Device::Cpu),
            version: version.version,
        })
    }
}

impl BackendFactory for LocalFactory {
    fn spec(&self) -> &FeatureSpec {
        &self.spec
    }

    fn backends(&self, workers: usize) -> anyhow::Result<Vec<Box<dyn ScoreBackend>>> {
        let engine = self.engines.for_model(&self.config)?;
        let mut options = self.engines.load_options(engine.as_ref(), &self.config);
        // Parallelism comes from one worker per core, each with a single-threaded runner.
        options.instances = workers;
        options.intra_op_threads = 1;
        let runners = engine.load(&self.onnx, &self.config, &options)?;
        Ok(runners
            .into_iter()
            .map(|runner| Box::new(LocalBackend { runner }) as Box<dyn ScoreBackend>)
            .collect())
    }

    fn describe(&self) -> String {
        let engine = self
            .engines
            .for_model(&self.config)
            .map_or("?", |e| e.name());
        format!("local {engine} {} v{}", self.config.name, self.version)
    }
}

/// One in-process runner.
pub struct LocalBackend {
    runner: Box<dyn Runner>,
}

impl ScoreBackend for LocalBackend {
    fn score(&mut self, ids: Tensor) -> anyhow::Result<Vec<f32>> {
        let rows = ids.shape[0];
        let mut outputs = self.runner.run(vec![ids])?;
        let output = outputs.pop().context("the model returned no output")?;
        match output.data {
            TensorData::F32(p) if p.len() == rows => Ok(p),
            other => anyhow::bail!(
                "the model returned {} {} values for {rows} rows; expected FP32 [rows, 1]",
                other.len(),
                other.dtype()
            ),
        }
    }
}
