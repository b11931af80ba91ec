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
use spindle_loader::{ModelEntry, ModelRepository, RepoError, read_model_file};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

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
    /// Engine instances (workers).
    pub instances: usize,
    /// The model's queue.
    pub batcher: Batcher,
}

/// One line of the repository index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version, when the entry is about one.
    pub version: Option<u64>,
    /// Serving.
    pub ready: bool,
    /// Why not, when not.
    pub reason: String,
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

    /// The repository index as Triton reports it: every model version with its state
    /// (`READY` or `UNAVAILABLE`) and, for failures, the reason. A model whose config failed is
    /// listed once without a version.
    pub fn index(&self) -> Vec<IndexEntry> {
        let models = self.models.read().expect("model table lock");
        let mut out = Vec::new();
        for (name, record) in models.iter() {
            if let Some(reason) = &record.failure {
                out.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    ready: false,
                    reason: reason.clone(),
                });
            }
            for (version, state) in &record.versions {
                let (ready, reason) = match state {
                    VersionState::Ready(_) => (true, String::new()),
                    VersionState::Failed(reason) => (false, reason.clone()),
                };
                out.push(IndexEntry {
                    name: name.clone(),
                    version: Some(*version),
                    ready,
                    reason,
                });
            }
        }
        out
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

    /// Loads the newest version of every model in `repo`. Must run on a thread that may block,
    /// inside the tokio runtime (batchers spawn their task on it). A model that fails is recorded
    /// with its reason and the others still load. Returns how many versions are ready, or the
    /// first engine-availability error (a missing library or device is fatal: it would fail every
    /// model the same way).
    pub fn load_repository(
        &self,
        repo: &ModelRepository,
        engines: &Engines,
    ) -> Result<usize, anyhow::Error> {
        let entries = repo.scan()?;
        if entries.is_empty() {
            tracing::warn!(repo = %repo.root().display(), "model repository holds no models");
        }
        let mut ready = 0;
        for entry in entries {
            match self.load_entry(entry, engines) {
                Ok(true) => ready += 1,
                Ok(false) => {}
                Err(fatal) => return Err(fatal.into()),
            }
        }
        Ok(ready)
    }

    /// Loads one model's newest version; `Ok(false)` when it failed (recorded), `Err` when the
    /// engine itself is unavailable.
    fn load_entry(&self, entry: ModelEntry, engines: &Engines) -> Result<bool, EngineError> {
        let name = entry.name.clone();
        let config = match entry.config {
            Ok(config) => config,
            Err(e) => {
                self.record_failure(&name, None, "config", &e.to_string());
                return Ok(false);
            }
        };
        let latest = entry
            .versions
            .last()
            .expect("configs without versions are errors")
            .clone();
        let started = Instant::now();
        let loaded = read_model_file(&latest.model_path)
            .map_err(|e: RepoError| EngineError::InvalidModel(e.to_string()))
            .and_then(|bytes| {
                let engine = engines.for_model(&config)?;
                let options = engines.load_options(engine.as_ref(), &config);
                let runners = engine.load(&bytes, &config, &options)?;
                Ok((engine.name(), options, runners))
            });
        let (engine, options, runners) = match loaded {
            Ok(parts) => parts,
            Err(EngineError::Unavailable(why)) => return Err(EngineError::Unavailable(why)),
            Err(e) => {
                let reason = format!("{}: {e}", latest.model_path.display());
                let class = match e {
                    EngineError::SignatureMismatch(_) => "signature",
                    _ => "invalid_model",
                };
                self.record_failure(&name, Some(latest.version), class, &reason);
                return Ok(false);
            }
        };
        let settings = BatchSettings {
            max_batch_size: config.max_batch_size,
            preferred_batch_sizes: config.preferred_batch_sizes.clone(),
            max_queue_delay: config.max_queue_delay,
            max_queue_size: config.max_queue_size,
        };
        let metrics = self.metrics.for_model(&name, latest.version);
        let batcher = Batcher::start(&name, settings, runners, metrics);
        tracing::info!(
            model = %name,
            version = latest.version,
            engine,
            device = %options.device,
            instances = options.instances,
            threads = options.intra_op_threads,
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        let model = Arc::new(LoadedModel {
            name: name.clone(),
            version: latest.version,
            config,
            labels: entry.labels,
            engine,
            device: options.device,
            instances: options.instances,
            batcher,
        });
        let mut models = self.models.write().expect("model table lock");
        let record = models.entry(name).or_default();
        record.failure = None;
        record
            .versions
            .insert(latest.version, VersionState::Ready(model));
        self.metrics.models_loaded.inc();
        Ok(true)
    }

    fn record_failure(&self, name: &str, version: Option<u64>, class: &str, reason: &str) {
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
