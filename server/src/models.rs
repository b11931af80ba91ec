//! The model manager: which model versions are loaded, which failed and why.
//!
//! Front ends look models up here by name and optional version; everything after the lookup goes
//! through the model's [`Batcher`].

use crate::engines::Engines;
use spindle_core::batcher::{BatchSettings, Batcher};
use spindle_core::config::ModelConfig;
use spindle_core::engine::EngineError;
use spindle_core::error::{ErrorKind, InferError};
use spindle_core::metrics::Metrics;
use spindle_core::tensor::Tensor;
use spindle_loader::CachedVersion;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A model version that is loaded and serving.
pub struct LoadedModel {
    /// Model name.
    pub name: String,
    /// Version number.
    pub version: u64,
    /// Its config.
    pub config: ModelConfig,
    /// Class labels, if the model has them.
    pub labels: Option<Vec<String>>,
    /// Engine name (`ort`, `tract`).
    pub engine: &'static str,
    /// Device it runs on.
    pub device: spindle_core::engine::Device,
    /// The version's row transform (`features.toml`), for models that take raw rows.
    pub features: Option<Arc<spindle_criteo::transform::Transformer>>,
    /// `features.toml` as written, served in the model config so remote scorers transform rows
    /// exactly as the server does.
    pub features_text: Option<String>,
    /// Engine instances (workers).
    pub instances: usize,
    /// The model's queue.
    pub batcher: Batcher,
}

/// The version's `features.toml`, compiled, when its config has a `criteo_rows` input (which
/// cannot be served without it) or the file is present.
#[allow(clippy::type_complexity)]
fn read_features(
    cached: &CachedVersion,
) -> Result<
    (
        Option<Arc<spindle_criteo::transform::Transformer>>,
        Option<String>,
    ),
    LoadFailure,
> {
    let path = cached.dir.join(spindle_loader::FEATURES_FILE);
    let needed = cached
        .config
        .inputs
        .iter()
        .any(|s| s.preprocess == Some(spindle_core::config::Preprocess::CriteoRows));
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !needed => return Ok((None, None)),
        // Present (or needed) but unreadable: storage trouble, not the version's fault.
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(LoadFailure::Retry {
                class: "io",
                reason: format!("{}: {e}", path.display()),
            });
        }
        Err(e) => {
            return Err(LoadFailure::Failed {
                class: "features",
                reason: format!(
                    "{}: {e} (an input takes criteo_rows, which needs the features.toml the model was trained with)",
                    path.display()
                ),
            });
        }
    };
    let transformer = spindle_criteo::spec::FeatureSpec::from_toml(&text)
        .map_err(|e| e.to_string())
        .and_then(|spec| {
            spindle_criteo::transform::Transformer::new(spec).map_err(|e| e.to_string())
        })
        .map_err(|e| LoadFailure::Failed {
            class: "features",
            reason: format!("{}: {e}", path.display()),
        })?;
    for spec in &cached.config.inputs {
        if spec.preprocess == Some(spindle_core::config::Preprocess::CriteoRows)
            && spec.dims.get(1) != Some(&(transformer.fields() as i64))
        {
            return Err(LoadFailure::Failed {
                class: "features",
                reason: format!(
                    "{}: makes {} ids per row but input '{}' takes {:?}; they must come from the same training run",
                    path.display(),
                    transformer.fields(),
                    spec.name,
                    spec.dims
                ),
            });
        }
    }
    Ok((Some(Arc::new(transformer)), Some(text)))
}

/// One row of zeros for every input: enough to make the engine run every kernel once.
fn warmup_inputs(config: &ModelConfig) -> Vec<Tensor> {
    config
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .dims
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let count: usize = shape.iter().product();
            let width = spec.dtype.size().unwrap_or(4);
            Tensor::from_le_bytes(spec.dtype, shape, &vec![0u8; count * width])
                .expect("zeros of the declared shape always decode")
        })
        .collect()
}

/// Why a version could not be built.
#[derive(Debug)]
pub enum LoadFailure {
    /// The engine itself is unavailable (a missing library or device): every model that needs
    /// it fails the same way; the others still load.
    Fatal(EngineError),
    /// This version is bad; `class` labels the metric, `reason` names the file and problem.
    Failed {
        /// Metric label: invalid_model, signature, ...
        class: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading the version's local copy failed (storage, not the model): worth another try.
    Retry {
        /// Metric label: io, ...
        class: &'static str,
        /// What failed, naming the file.
        reason: String,
    },
}

/// State of one model version.
#[derive(Clone)]
pub enum VersionState {
    /// Serving.
    Ready(Arc<LoadedModel>),
    /// Could not be loaded; the reason names the file or field.
    Failed(String),
}

/// A model name and its versions.
#[derive(Clone, Default)]
pub struct ModelRecord {
    /// Versions by number.
    pub versions: BTreeMap<u64, VersionState>,
    /// A failure that concerns the model as a whole (a broken config).
    pub failure: Option<String>,
    /// TF Serving version labels from the model's current `config.toml` (read at every sync, so
    /// a relabel needs no reload).
    pub version_labels: BTreeMap<String, u64>,
}

impl ModelRecord {
    /// The newest ready version.
    pub fn latest_ready(&self) -> Option<&Arc<LoadedModel>> {
        self.versions.values().rev().find_map(|state| match state {
            VersionState::Ready(model) => Some(model),
            VersionState::Failed(_) => None,
        })
    }
}

/// Every model the server knows of.
pub struct ModelManager {
    models: RwLock<BTreeMap<String, ModelRecord>>,
    metrics: Metrics,
}

impl ModelManager {
    /// An empty manager recording into `metrics`.
    pub fn new(metrics: Metrics) -> ModelManager {
        ModelManager {
            models: RwLock::new(BTreeMap::new()),
            metrics,
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Number of models known (ready or failed).
    pub fn model_count(&self) -> usize {
        self.models.read().expect("model table lock").len()
    }

    /// The ready versions of `name`, oldest first.
    pub fn ready_versions(&self, name: &str) -> Vec<u64> {
        let models = self.models.read().expect("model table lock");
        models.get(name).map_or_else(Vec::new, |record| {
            record
                .versions
                .iter()
                .filter(|(_, state)| matches!(state, VersionState::Ready(_)))
                .map(|(v, _)| *v)
                .collect()
        })
    }

    /// Every ready version of every model, by name then version.
    pub fn all_ready(&self) -> Vec<Arc<LoadedModel>> {
        let models = self.models.read().expect("model table lock");
        models
            .values()
            .flat_map(|record| record.versions.values())
            .filter_map(|state| match state {
                VersionState::Ready(model) => Some(model.clone()),
                VersionState::Failed(_) => None,
            })
            .collect()
    }

    /// Finds the model version a request names, or the newest ready one.
    pub fn lookup(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<LoadedModel>, InferError> {
        let models = self.models.read().expect("model table lock");
        let Some(record) = models.get(name) else {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            return Err(InferError::not_found(format!(
                "unknown model '{name}' (available: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let Some(version) = version else {
            return record.latest_ready().cloned().ok_or_else(|| {
                let reason = record
                    .failure
                    .clone()
                    .or_else(|| {
                        record.versions.values().find_map(|s| match s {
                            VersionState::Failed(reason) => Some(reason.clone()),
                            VersionState::Ready(_) => None,
                        })
                    })
                    .unwrap_or_else(|| "no version loaded".into());
                InferError::new(
                    ErrorKind::Unavailable,
                    format!("model '{name}' is not available: {reason}"),
                )
            });
        };
        let number: u64 = version.parse().map_err(|_| {
            InferError::not_found(format!(
                "model '{name}' has no version '{version}' (versions are integers)"
            ))
        })?;
        match record.versions.get(&number) {
            Some(VersionState::Ready(model)) => Ok(model.clone()),
            Some(VersionState::Failed(reason)) => Err(InferError::new(
                ErrorKind::Unavailable,
                format!("model '{name}' version {number} failed to load: {reason}"),
            )),
            None => {
                let have: Vec<String> = record.versions.keys().map(u64::to_string).collect();
                Err(InferError::not_found(format!(
                    "model '{name}' has no version {number} (loaded: {})",
                    if have.is_empty() {
                        "none".to_string()
                    } else {
                        have.join(", ")
                    }
                )))
            }
        }
    }

    /// Sets a model's version labels (from its current config), when the model is known.
    pub fn set_version_labels(&self, name: &str, labels: &BTreeMap<String, u64>) {
        if let Some(record) = self.models.write().expect("model table lock").get_mut(name)
            && record.version_labels != *labels
        {
            record.version_labels = labels.clone();
        }
    }

    /// The loaded version a TF Serving version label selects, from the model's current
    /// `[version_labels]`. An unknown label, or one naming a version that is not loaded, is
    /// NotFound naming the label and the labels there are.
    pub fn lookup_label(&self, name: &str, label: &str) -> Result<Arc<LoadedModel>, InferError> {
        // An unknown or unavailable model is answered as any request for it is.
        self.lookup(name, None)?;
        let models = self.models.read().expect("model table lock");
        let record = models.get(name);
        let labels = record.map(|r| &r.version_labels);
        let Some(&version) = labels.and_then(|l| l.get(label)) else {
            let known: Vec<String> = labels
                .into_iter()
                .flatten()
                .map(|(l, v)| format!("{l} = {v}"))
                .collect();
            return Err(InferError::not_found(format!(
                "model '{name}' has no version label '{label}' ({})",
                if known.is_empty() {
                    "it has none; set [version_labels] in its config.toml".to_string()
                } else {
                    format!("labels: {}", known.join(", "))
                }
            )));
        };
        match record.and_then(|r| r.versions.get(&version)) {
            Some(VersionState::Ready(model)) => Ok(model.clone()),
            _ => {
                let loaded: Vec<String> = record
                    .into_iter()
                    .flat_map(|r| &r.versions)
                    .filter(|(_, s)| matches!(s, VersionState::Ready(_)))
                    .map(|(v, _)| v.to_string())
                    .collect();
                Err(InferError::not_found(format!(
                    "model '{name}' version label '{label}' names version {version}, which is not loaded (loaded: {})",
                    loaded.join(", ")
                )))
            }
        }
    }

    /// Builds a servable model version from a verified local copy: engine, runners, batcher.
    /// Must run on a thread that may block, inside the tokio runtime (the batcher spawns its
    /// task on it). Nothing is put in the table yet: the caller warms the version up first.
    pub fn build(
        &self,
        cached: &CachedVersion,
        engines: &Engines,
    ) -> Result<LoadedModel, LoadFailure> {
        let config = cached.config.clone();
        let model_path = cached.model_path();
        let (features, features_text) = read_features(cached)?;
        // A cache read error says nothing about the model: tried again at the next poll.
        let bytes = cached.read_model().map_err(|e| LoadFailure::Retry {
            class: e.class(),
            reason: e.to_string(),
        })?;
        let loaded = engines.for_model(&config).and_then(|engine| {
            let options = engines.load_options(engine.as_ref(), &config);
            let runners = engine.load(&bytes, &config, &options)?;
            Ok((engine.name(), options, runners))
        });
        let (engine, options, mut runners) = match loaded {
            Ok(parts) => parts,
            Err(EngineError::Unavailable(why)) => {
                return Err(LoadFailure::Fatal(EngineError::Unavailable(why)));
            }
            Err(e) => {
                let class = match e {
                    EngineError::SignatureMismatch(_) => "signature",
                    _ => "invalid_model",
                };
                return Err(LoadFailure::Failed {
                    class,
                    reason: format!("{}: {e}", model_path.display()),
                });
            }
        };
        // One batch through the first runner before the version can take requests: the first
        // real request does not pay for lazy initialisation, and a model that loads but cannot
        // run never serves. Done here, before the batcher exists, so it is not counted as a
        // request in the metrics.
        if let Some(runner) = runners.first_mut() {
            runner
                .run(warmup_inputs(&config))
                .map_err(|e| LoadFailure::Failed {
                    class: "warmup",
                    reason: format!("{}: the warm-up batch failed: {e}", model_path.display()),
                })?;
        }
        let settings = BatchSettings {
            max_batch_size: config.max_batch_size,
            preferred_batch_sizes: config.preferred_batch_sizes.clone(),
            max_queue_delay: config.max_queue_delay,
            max_queue_size: config.max_queue_size,
            idle_spin: config.idle_spin,
        };
        let metrics = self.metrics.for_model(&cached.model, cached.version);
        let batcher = Batcher::start(&cached.model, settings, runners, metrics);
        tracing::info!(
            model = %cached.model,
            version = cached.version,
            engine,
            device = %options.device,
            instances = options.instances,
            threads = options.intra_op_threads,
            // Only ONNX Runtime has intra-op threads that spin.
            spinning = if engine == "ort" { options.intra_op_spinning.as_str() } else { "-" },
            idle_spin = %spindle_core::config::format_duration(config.idle_spin),
            "model version built"
        );
        Ok(LoadedModel {
            name: cached.model.clone(),
            version: cached.version,
            config,
            labels: cached.labels.clone(),
            features,
            features_text,
            engine,
            device: options.device,
            instances: options.instances,
            batcher,
        })
    }

    /// Puts a ready version in the table. From now on requests without a version get it if it
    /// is the newest; requests already running on an older version finish there, because they
    /// hold their own `Arc` of it.
    pub fn insert_ready(&self, model: Arc<LoadedModel>) {
        let mut models = self.models.write().expect("model table lock");
        let record = models.entry(model.name.clone()).or_default();
        record.failure = None;
        let previous = record
            .versions
            .insert(model.version, VersionState::Ready(model));
        if !matches!(previous, Some(VersionState::Ready(_))) {
            self.metrics.models_loaded.inc();
        }
    }

    /// Takes a version out of the table; its batcher stops once the last request holding it is
    /// answered. Returns whether it was there.
    pub fn remove_version(&self, name: &str, version: u64) -> bool {
        let mut models = self.models.write().expect("model table lock");
        let Some(record) = models.get_mut(name) else {
            return false;
        };
        let removed = record.versions.remove(&version);
        if matches!(removed, Some(VersionState::Ready(_))) {
            self.metrics.models_loaded.dec();
        }
        if record.versions.is_empty() && record.failure.is_none() {
            models.remove(name);
        }
        removed.is_some()
    }

    /// Takes a whole model out of the table (unloaded, or gone from the repository).
    pub fn remove_model(&self, name: &str) {
        let mut models = self.models.write().expect("model table lock");
        if let Some(record) = models.remove(name) {
            let ready = record
                .versions
                .values()
                .filter(|s| matches!(s, VersionState::Ready(_)))
                .count();
            self.metrics.models_loaded.sub(ready as i64);
        }
    }

    /// A copy of one model's record.
    pub fn record(&self, name: &str) -> Option<ModelRecord> {
        self.models
            .read()
            .expect("model table lock")
            .get(name)
            .cloned()
    }

    /// Every model's record, by name (for the repository index).
    pub fn records(&self) -> BTreeMap<String, ModelRecord> {
        self.models.read().expect("model table lock").clone()
    }

    /// Clears a model-wide failure (its config is good again).
    pub fn clear_model_failure(&self, name: &str) {
        if let Some(record) = self.models.write().expect("model table lock").get_mut(name) {
            record.failure = None;
        }
    }

    /// Records that a model (`version: None`) or one version failed, with its reason; counted in
    /// the load-failure metric under `class`. Ready versions are untouched: they keep serving.
    pub fn record_failure(&self, name: &str, version: Option<u64>, class: &str, reason: &str) {
        tracing::error!(model = %name, version, reason = %reason, "model failed to load");
        self.metrics
            .load_failures
            .with_label_values(&[name, class])
            .inc();
        let mut models = self.models.write().expect("model table lock");
        let record = models.entry(name.to_string()).or_default();
        match version {
            Some(v) => {
                record
                    .versions
                    .insert(v, VersionState::Failed(reason.to_string()));
            }
            None => record.failure = Some(reason.to_string()),
        }
    }
}
