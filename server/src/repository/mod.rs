//! Keeps the served versions in step with the model repository: the startup load, polling, hot
//! swap, the cache fallback, and explicit model control.
//!
//! A new version goes through download (into the cache, verified), load, and a warm-up batch
//! before it enters the model table; only then is an older version that the policy no longer
//! wants taken out. Requests already running on the old version hold their own reference to it
//! and finish there. A version that fails is recorded with its reason; one whose files are
//! wrong (a permanent failure) is retried only when its files change, one that met a storage
//! error or an unavailable engine (transient) at the next poll. The versions already serving
//! are untouched, and one model's failure never stops the others' sync.

pub mod metrics;
pub mod poll;

use crate::engines::Engines;
use crate::models::{LoadFailure, LoadedModel, ModelManager, VersionState};
use metrics::RepositoryMetrics;
use serde::Serialize;
use spindle_core::engine::EngineError;
use spindle_loader::{
    CachedVersion, FailureKind, ModelCache, ModelEntry, ModelRepository, RepoError, VersionEntry,
    check_name,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Who decides which models are loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelControl {
    /// Every model in the repository, kept in step by polling.
    Poll,
    /// Every model found at startup; after that only `POST /v2/repository/models/{m}/load`
    /// and `/unload` change the set (polling still picks up new versions of loaded models).
    Explicit,
}

impl std::str::FromStr for ModelControl {
    type Err = String;
    fn from_str(s: &str) -> Result<ModelControl, String> {
        match s {
            "poll" => Ok(ModelControl::Poll),
            "explicit" => Ok(ModelControl::Explicit),
            _ => Err(format!(
                "unknown model control '{s}' (use poll or explicit)"
            )),
        }
    }
}

/// One row of the repository index (Triton's format).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version, when the row is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// READY or UNAVAILABLE.
    pub state: String,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A failure of the watcher as a whole (not of one version, which is recorded instead).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The repository could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The engine is unavailable; fatal at startup.
    #[error("engine unavailable: {0}")]
    Engine(EngineError),
}

/// The repository watcher. Cheap to share: the server, the poll task and the HTTP handlers
/// hold it in an `Arc`.
pub struct RepositoryWatcher {
    repo: ModelRepository,
    cache: ModelCache,
    models: Arc<ModelManager>,
    engines: Arc<Engines>,
    metrics: RepositoryMetrics,
    control: ModelControl,
    /// Explicit control: the models loaded by request (or found at startup).
    managed: Mutex<Option<BTreeSet<String>>>,
    /// Versions that failed, with the fingerprint of the files they failed with.
    failed: Mutex<HashMap<(String, u64), String>>,
    /// Model names seen in the latest scan (for the index).
    known: Mutex<BTreeSet<String>>,
    /// One sync at a time: the poll task and the control API must not load the same version
    /// twice.
    sync_lock: tokio::sync::Mutex<()>,
}

impl RepositoryWatcher {
    /// A watcher over `repo`, fetching into `cache` and loading into `models`.
    pub fn new(
        repo: ModelRepository,
        cache: ModelCache,
        models: Arc<ModelManager>,
        engines: Arc<Engines>,
        control: ModelControl,
    ) -> RepositoryWatcher {
        let metrics = RepositoryMetrics::register(models.metrics().registry());
        RepositoryWatcher {
            repo,
            cache,
            models,
            engines,
            metrics,
            control,
            managed: Mutex::new(None),
            failed: Mutex::new(HashMap::new()),
            known: Mutex::new(BTreeSet::new()),
            sync_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &ModelRepository {
        &self.repo
    }

    /// The metric handles.
    pub fn metrics(&self) -> &RepositoryMetrics {
        &self.metrics
    }

    /// Scans the repository and brings every managed model in step with it. A version that
    /// fails is recorded, not returned; an error means the repository itself could not be read
    /// (or the engine is unavailable).
    pub async fn sync(&self) -> Result<(), SyncError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let entries = self.repo.scan().await?;
        let names: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
        if self.control == ModelControl::Explicit {
            let mut managed = self.managed.lock().expect("managed lock");
            // Startup in explicit mode: everything found is loaded once.
            managed.get_or_insert_with(|| names.clone());
        }
        *self.known.lock().expect("known lock") = names.clone();
        let managed = self.managed.lock().expect("managed lock").clone();
        let mut unreachable = None;
        let mut engine_failure = None;
        for entry in &entries {
            if managed.as_ref().is_some_and(|m| !m.contains(&entry.name)) {
                continue;
            }
            // One model's trouble (its storage unreachable, its engine missing) is reported
            // after the others have been brought in step, never instead of them.
            if let Err(e) = self.sync_model(entry).await {
                match e {
                    SyncError::Repo(e) if e.is_unreachable() => unreachable = Some(e),
                    SyncError::Engine(e) => {
                        tracing::error!(model = %entry.name, error = %e, "engine unavailable for this model");
                        engine_failure = Some(e);
                    }
                    other => return Err(other),
                }
            }
        }
        // Models gone from the repository stop serving (as in TF Serving and Triton).
        for name in self.models.records().keys() {
            if !names.contains(name) {
                tracing::info!(model = %name, "model removed from the repository; unloading");
                self.models.remove_model(name);
                self.metrics
                    .current_version
                    .with_label_values(&[name])
                    .set(0);
            }
        }
        if let Some(e) = engine_failure {
            return Err(SyncError::Engine(e));
        }
        match unreachable {
            Some(e) => Err(e.into()),
            None => {
                self.metrics.serving_from_cache.set(0);
                Ok(())
            }
        }
    }

    /// Brings one model in step: loads wanted versions that are neither ready nor failed with
    /// the same files, then unloads versions no longer wanted, but only once a wanted version
    /// is ready, so a model never goes dark because its newest version is broken.
    async fn sync_model(&self, entry: &ModelEntry) -> Result<(), SyncError> {
        if let Err(e) = &entry.config {
            let already = self.models.record(&entry.name).and_then(|r| r.failure);
            if already.as_deref() != Some(&e.to_string()) {
                self.models
                    .record_failure(&entry.name, None, e.class(), &e.to_string());
            }
            return Ok(());
        }
        self.models.clear_model_failure(&entry.name);
        let wanted = entry.wanted_versions();
        let record = self.models.record(&entry.name).unwrap_or_default();
        for version in &wanted {
            if matches!(
                record.versions.get(&version.version),
                Some(VersionState::Ready(_))
            ) {
                continue;
            }
            let key = (entry.name.clone(), version.version);
            let failed_with = self.failed.lock().expect("failed lock").get(&key).cloned();
            if failed_with.as_deref() == Some(version.fingerprint.as_str()) {
                continue;
            }
            self.load_version(entry, version).await?;
        }
        let record = self.models.record(&entry.name).unwrap_or_default();
        let wanted_numbers: Vec<u64> = wanted.iter().map(|v| v.version).collect();
        let wanted_ready = wanted_numbers
            .iter()
            .any(|v| matches!(record.versions.get(v), Some(VersionState::Ready(_))));
        for (version, state) in &record.versions {
            if wanted_numbers.contains(version) {
                continue;
            }
            let stale = match state {
                VersionState::Ready(_) => wanted_ready,
                // A failure of a version nobody wants any more is no longer news.
                VersionState::Failed(_) => true,
            };
            if stale {
                tracing::info!(model = %entry.name, version, "version no longer wanted; unloading");
                self.models.remove_version(&entry.name, *version);
                if matches!(state, VersionState::Ready(_)) {
                    self.cache.forget(&entry.name, *version).await;
                }
            }
        }
        // Labels follow config.toml at every sync; relabelling reloads nothing.
        if let Ok(config) = &entry.config {
            self.models
                .set_version_labels(&entry.name, &config.version_labels);
        }
        self.update_current_version(&entry.name);
        Ok(())
    }

    /// Downloads, loads and warms up one version, then swaps it in. A failure is recorded with
    /// its reason, and what follows depends on its kind: a permanent one (the files are wrong)
    /// is remembered, so the version is skipped until its files change; a transient one
    /// (storage, an unavailable engine) is not, so the next poll tries again. Returns an error
    /// only when storage became unreachable (the rest of this model waits for the next poll) or
    /// the engine is unavailable.
    async fn load_version(
        &self,
        entry: &ModelEntry,
        version: &VersionEntry,
    ) -> Result<(), SyncError> {
        let started = Instant::now();
        let name = &entry.name;
        tracing::info!(model = %name, version = version.version, "loading version");
        let cached = match self.cache.fetch(&self.repo, entry, version).await {
            Ok(cached) => cached,
            Err(e) => {
                match e.kind() {
                    FailureKind::Transient => {
                        self.retry_later(name, version.version, e.class(), &e.to_string());
                    }
                    FailureKind::Permanent => self.fail(name, version, e.class(), &e.to_string()),
                }
                return if e.is_unreachable() {
                    Err(e.into())
                } else {
                    Ok(())
                };
            }
        };
        self.metrics
            .bytes_downloaded
            .inc_by(cached.downloaded_bytes);
        match self.build_and_warm(&cached).await {
            Ok(model) => {
                self.models.insert_ready(model);
                self.cache.mark_good(name, version.version).await;
                self.failed
                    .lock()
                    .expect("failed lock")
                    .remove(&(name.clone(), version.version));
                let seconds = started.elapsed().as_secs_f64();
                self.metrics
                    .load_duration
                    .with_label_values(&[name])
                    .observe(seconds);
                tracing::info!(model = %name, version = version.version, load_ms = (seconds * 1e3) as u64, bytes = cached.downloaded_bytes, "version serving");
                Ok(())
            }
            Err(LoadFailure::Fatal(e)) => {
                self.retry_later(
                    name,
                    version.version,
                    "engine_unavailable",
                    &format!("engine unavailable: {e}"),
                );
                Err(SyncError::Engine(e))
            }
            Err(LoadFailure::Retry { class, reason }) => {
                self.retry_later(name, version.version, class, &reason);
                Ok(())
            }
            Err(LoadFailure::Failed { class, reason }) => {
                // Name the file where the user can fix it, not our cached copy.
                let source = self.repo.storage().display(&format!(
                    "{name}/{}/{}",
                    version.version,
                    spindle_loader::MODEL_FILE
                ));
                let reason = reason.replace(&cached.model_path().display().to_string(), &source);
                self.fail(name, version, class, &reason);
                self.cache.forget(name, version.version).await;
                Ok(())
            }
        }
    }

    /// A permanent failure: recorded (logged and counted once) and remembered with the files it
    /// failed with, so the version is skipped until they change.
    fn fail(&self, name: &str, version: &VersionEntry, class: &str, reason: &str) {
        self.models
            .record_failure(name, Some(version.version), class, reason);
        self.failed.lock().expect("failed lock").insert(
            (name.to_string(), version.version),
            version.fingerprint.clone(),
        );
    }

    /// A transient failure: shown in the version's status and counted, but logged and counted
    /// only when it first appears or its reason changes (not at every poll while it lasts), and
    /// not remembered, so the next poll tries the version again.
    fn retry_later(&self, name: &str, version: u64, class: &str, reason: &str) {
        let reason = format!("{reason} (transient: tried again at the next poll)");
        let already = self.models.record(name).is_some_and(|r| {
            matches!(r.versions.get(&version), Some(VersionState::Failed(known)) if *known == reason)
        });
        if !already {
            self.models
                .record_failure(name, Some(version), class, &reason);
        }
    }

    /// Builds the engine for a cached version; `ModelManager::build` runs one warm-up batch
    /// through it before it may serve.
    async fn build_and_warm(
        &self,
        cached: &CachedVersion,
    ) -> Result<Arc<LoadedModel>, LoadFailure> {
        let models = self.models.clone();
        let engines = self.engines.clone();
        let owned = cached.clone();
        let model = tokio::task::spawn_blocking(move || models.build(&owned, &engines))
            .await
            .map_err(|e| LoadFailure::Failed {
                class: "invalid_model",
                reason: format!("loading {} panicked: {e}", cached.model_path().display()),
            })??;
        Ok(Arc::new(model))
    }

    fn update_current_version(&self, name: &str) {
        let current = self
            .models
            .record(name)
            .and_then(|r| r.latest_ready().map(|m| m.version))
            .unwrap_or(0);
        self.metrics
            .current_version
            .with_label_values(&[name])
            .set(current as i64);
    }

    /// Serves every cached version marked good, for a start while the repository is
    /// unreachable. Returns how many versions serve.
    pub async fn load_from_cache(&self) -> Result<usize, SyncError> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let mut ready = 0;
        let mut engine_failure = None;
        for cached in self.cache.good_versions().await {
            match self.build_and_warm(&cached).await {
                Ok(model) => {
                    self.models.insert_ready(model);
                    self.update_current_version(&cached.model);
                    ready += 1;
                }
                // One model's engine missing spares the others.
                Err(LoadFailure::Fatal(e)) => {
                    self.retry_later(
                        &cached.model,
                        cached.version,
                        "engine_unavailable",
                        &format!("engine unavailable: {e}"),
                    );
                    engine_failure = Some(e);
                }
                Err(
                    LoadFailure::Failed { class, reason } | LoadFailure::Retry { class, reason },
                ) => {
                    self.models
                        .record_failure(&cached.model, Some(cached.version), class, &reason);
                }
            }
        }
        if ready > 0 {
            self.metrics.serving_from_cache.set(1);
        } else if let Some(e) = engine_failure {
            return Err(SyncError::Engine(e));
        }
        Ok(ready)
    }

    /// Explicit control: loads (or reloads) a model now. Fails when the control mode is not
    /// explicit, the name is invalid, the model is not in the repository, or no version of it
    /// could be loaded (with the reason).
    pub async fn load_model(&self, name: &str) -> Result<(), ControlError> {
        self.check_control(name)?;
        let _one_at_a_time = self.sync_lock.lock().await;
        let entry = self.repo.model(name).await.map_err(|e| match e {
            RepoError::NotFound(m) => ControlError::NotFound(m),
            other => ControlError::Failed(other.to_string()),
        })?;
        self.managed
            .lock()
            .expect("managed lock")
            .get_or_insert_with(BTreeSet::new)
            .insert(name.to_string());
        // An explicit load retries versions that failed before.
        self.failed
            .lock()
            .expect("failed lock")
            .retain(|(model, _), _| model != name);
        self.sync_model(&entry)
            .await
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        let record = self.models.record(name).unwrap_or_default();
        if record.latest_ready().is_some() {
            return Ok(());
        }
        let reason = record.failure.clone().or_else(|| {
            record.versions.iter().find_map(|(v, s)| match s {
                VersionState::Failed(r) => Some(format!("version {v}: {r}")),
                VersionState::Ready(_) => None,
            })
        });
        Err(ControlError::Failed(format!(
            "model '{name}' could not be loaded: {}",
            reason.unwrap_or_else(|| "no servable version".into())
        )))
    }

    /// Explicit control: stops serving a model; requests in flight on it finish.
    pub async fn unload_model(&self, name: &str) -> Result<(), ControlError> {
        self.check_control(name)?;
        let _one_at_a_time = self.sync_lock.lock().await;
        let was_managed = self
            .managed
            .lock()
            .expect("managed lock")
            .get_or_insert_with(BTreeSet::new)
            .remove(name);
        if !was_managed && self.models.record(name).is_none() {
            return Err(ControlError::NotFound(format!(
                "model '{name}' is not loaded"
            )));
        }
        self.models.remove_model(name);
        self.metrics
            .current_version
            .with_label_values(&[name])
            .set(0);
        tracing::info!(model = %name, "model unloaded on request");
        Ok(())
    }

    fn check_control(&self, name: &str) -> Result<(), ControlError> {
        if self.control != ModelControl::Explicit {
            return Err(ControlError::Disabled);
        }
        check_name(name).map_err(|e| ControlError::Invalid(e.to_string()))
    }

    /// The repository index: every version in the table with its state, and models of the
    /// repository that are not loaded.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let records = self.models.records();
        let mut rows = Vec::new();
        for (name, record) in &records {
            if let Some(reason) = &record.failure {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE".into(),
                    reason: Some(reason.clone()),
                });
            }
            for (version, state) in &record.versions {
                let (state, reason) = match state {
                    VersionState::Ready(_) => ("READY", None),
                    VersionState::Failed(reason) => ("UNAVAILABLE", Some(reason.clone())),
                };
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version.to_string()),
                    state: state.into(),
                    reason,
                });
            }
        }
        for name in self.known.lock().expect("known lock").iter() {
            if !records.contains_key(name) {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: "UNAVAILABLE".into(),
                    reason: Some("unloaded".into()),
                });
            }
        }
        if ready_only {
            rows.retain(|r| r.state == "READY");
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }
}

/// Why a model-control request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The server runs without `--model-control explicit`.
    #[error(
        "model control is disabled: start the server with --model-control explicit to load and unload models through the API"
    )]
    Disabled,
    /// An invalid model name.
    #[error("{0}")]
    Invalid(String),
    /// No such model.
    #[error("{0}")]
    NotFound(String),
    /// The load failed.
    #[error("{0}")]
    Failed(String),
}

impl From<ControlError> for spindle_core::error::InferError {
    /// Through the shared error table: refused requests are 400 / INVALID_ARGUMENT, unknown
    /// models 404 / NOT_FOUND, failed loads 503 / UNAVAILABLE.
    fn from(e: ControlError) -> Self {
        use spindle_core::error::{ErrorKind, InferError};
        let kind = match e {
            ControlError::Disabled | ControlError::Invalid(_) => ErrorKind::InvalidInput,
            ControlError::NotFound(_) => ErrorKind::NotFound,
            ControlError::Failed(_) => ErrorKind::Unavailable,
        };
        InferError::new(kind, e.to_string())
    }
}
