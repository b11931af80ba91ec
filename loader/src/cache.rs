//! The local cache of model versions: what the server loads from, and what it can fall back to
//! when HDFS is down at startup.
//!
//! ```text
//! <cache>/<model>/<N>/model.onnx     verified copy (size and sha256 sidecar)
//! <cache>/<model>/<N>/config.toml    the model's config when this version was fetched
//! <cache>/<model>/<N>/labels.txt     its labels, if any
//! <cache>/<model>/<N>/FINGERPRINT    the repository listing it was fetched from
//! <cache>/<model>/<N>/GOOD           written once the version loaded and served
//! <cache>/<model>/.fetch-<N>-<pid>    a download in progress
//! <cache>/.owner                      the owning server's lock (see `cache_dir.rs`)
//! ```
//!
//! A version is fetched into a hidden temporary directory, every file synced, then the directory
//! is renamed into place: a crash never leaves a half-written version that looks complete.

use crate::error::{Mismatch, RepoError};
use crate::repository::{ModelEntry, ModelRepository, VersionEntry, check_name, parse_config};
use crate::storage::blocking;
use crate::{CONFIG_FILE, FEATURES_FILE, LABELS_FILE, MODEL_FILE, SHA256_FILE};
use spindle_core::config::ModelConfig;
use std::path::{Path, PathBuf};

const FINGERPRINT_FILE: &str = "FINGERPRINT";
const GOOD_FILE: &str = "GOOD";
/// Prefix of the temporary directory a version is downloaded into, beside the versions.
pub(crate) const FETCH_PREFIX: &str = ".fetch-";

/// A model version on local disk, verified.
#[derive(Clone, Debug)]
pub struct CachedVersion {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: u64,
    /// Its directory in the cache.
    pub dir: PathBuf,
    /// The config it is served with.
    pub config: ModelConfig,
    /// Class labels, if any.
    pub labels: Option<Vec<String>>,
    /// The repository fingerprint it was fetched from.
    pub fingerprint: String,
    /// Bytes downloaded to get it (0 when the cache already held it).
    pub downloaded_bytes: u64,
}

impl CachedVersion {
    /// Path of its model file.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// Reads its model file. Blocking: call it where the engine loads the model, off the
    /// runtime.
    pub fn read_model(&self) -> Result<Vec<u8>, RepoError> {
        std::fs::read(self.model_path()).map_err(|e| RepoError::io(&self.model_path(), e))
    }
}

/// The cache directory.
#[derive(Clone, Debug)]
pub struct ModelCache {
    root: PathBuf,
}

/// What `fetch` found in the cache: a copy to reuse, or the temporary directory to download into.
enum Prepared {
    Reuse(Box<CachedVersion>),
    Download(PathBuf),
}

impl ModelCache {
    /// A cache rooted at `root` (created if missing). Blocking: called once, at startup.
    pub fn new(root: impl Into<PathBuf>) -> Result<ModelCache, RepoError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| RepoError::io(&root, e))?;
        Ok(ModelCache { root })
    }

    /// Makes `version` of `model` available locally: reuses the cached copy when the repository
    /// still lists the same files, otherwise downloads and verifies every file (size against
    /// the listing, sha256 against `model.onnx.sha256` when the writer left one). Every local
    /// read, write, fsync and rename runs on the blocking pool (see `storage::blocking`).
    pub async fn fetch(
        &self,
        repo: &ModelRepository,
        model: &ModelEntry,
        version: &VersionEntry,
    ) -> Result<CachedVersion, RepoError> {
        let config = match &model.config {
            Ok(config) => config.clone(),
            Err(e) => {
                return Err(RepoError::NotFound(format!(
                    "model '{}' has no usable config: {e}",
                    model.name
                )));
            }
        };
        let (name, number) = (model.name.clone(), version.version);
        let this = self.clone();
        let fingerprint = version.fingerprint.clone();
        let prepared = blocking(move || this.reuse_or_prepare(&name, number, &fingerprint)).await?;
        let tmp = match prepared {
            Prepared::Reuse(cached) => return Ok(*cached),
            Prepared::Download(tmp) => tmp,
        };
        let downloaded = match download(repo, model, version, &tmp).await {
            Ok(n) => n,
            Err(e) => {
                let _ = blocking(move || {
                    let _ = std::fs::remove_dir_all(&tmp);
                    Ok(())
                })
                .await;
                return Err(e);
            }
        };
        // The files the server writes beside the downloaded ones, then the rename into place.
        let mut written = vec![
            (
                CONFIG_FILE,
                model
                    .config_text
                    .clone()
                    .unwrap_or_else(|| config.to_toml()),
            ),
            (FINGERPRINT_FILE, version.fingerprint.clone()),
        ];
        if version.file(LABELS_FILE).is_none()
            && let Some(labels) = &model.labels_text
        {
            written.push((LABELS_FILE, labels.clone()));
        }
        let (this, name) = (self.clone(), model.name.clone());
        let cached = blocking(move || this.install(&name, number, &tmp, &written)).await?;
        Ok(CachedVersion {
            downloaded_bytes: downloaded,
            ..cached
        })
    }

    /// Blocking: the cached copy when its fingerprint matches, or a fresh temporary directory.
    fn reuse_or_prepare(
        &self,
        model: &str,
        version: u64,
        fingerprint: &str,
    ) -> Result<Prepared, RepoError> {
        let dest = self.root.join(model).join(version.to_string());
        if read_string(&dest.join(FINGERPRINT_FILE)).as_deref() == Some(fingerprint)
            && let Ok(cached) = self.read_version(model, version)
        {
            return Ok(Prepared::Reuse(Box::new(cached)));
        }
        let tmp = self
            .root
            .join(model)
            .join(format!("{FETCH_PREFIX}{version}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| RepoError::io(&tmp, e))?;
        Ok(Prepared::Download(tmp))
    }

    /// Blocking: writes `files` into `tmp`, synced, and renames it into place.
    fn install(
        &self,
        model: &str,
        version: u64,
        tmp: &Path,
        files: &[(&str, String)],
    ) -> Result<CachedVersion, RepoError> {
        let dest = self.root.join(model).join(version.to_string());
        let installed = files
            .iter()
            .try_for_each(|(file, text)| write_synced(&tmp.join(file), text.as_bytes()))
            .and_then(|()| {
                let _ = std::fs::remove_dir_all(&dest);
                std::fs::rename(tmp, &dest).map_err(|e| RepoError::io(&dest, e))
            });
        if let Err(e) = installed {
            let _ = std::fs::remove_dir_all(tmp);
            return Err(e);
        }
        sync_dir(dest.parent().unwrap_or(&self.root));
        self.read_version(model, version)
    }

    /// Records that a cached version loaded and served: a cold start may use it.
    pub async fn mark_good(&self, model: &str, version: u64) {
        let path = self
            .root
            .join(model)
            .join(version.to_string())
            .join(GOOD_FILE);
        if let Err(e) = blocking(move || write_synced(&path, b"")).await {
            tracing::warn!(%e, "could not mark the cached copy good");
        }
    }

    /// Removes a cached version (it failed, or is no longer served).
    pub async fn forget(&self, model: &str, version: u64) {
        let dir = self.root.join(model).join(version.to_string());
        let _ = blocking(move || {
            let _ = std::fs::remove_dir_all(dir);
            Ok(())
        })
        .await;
    }

    /// Every cached version marked good, by model, oldest first: what a cold start serves when
    /// the repository cannot be reached.
    pub async fn good_versions(&self) -> Vec<CachedVersion> {
        let this = self.clone();
        blocking(move || Ok(this.good_versions_blocking()))
            .await
            .unwrap_or_default()
    }

    fn good_versions_blocking(&self) -> Vec<CachedVersion> {
        let mut found = Vec::new();
        let Ok(models) = std::fs::read_dir(&self.root) else {
            return found;
        };
        let mut names: Vec<String> = models
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| check_name(n).is_ok())
            .collect();
        names.sort();
        for name in names {
            let Ok(versions) = std::fs::read_dir(self.root.join(&name)) else {
                continue;
            };
            let mut numbers: Vec<u64> = versions
                .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse().ok())
                .collect();
            numbers.sort_unstable();
            for v in numbers {
                let dir = self.root.join(&name).join(v.to_string());
                if !dir.join(GOOD_FILE).is_file() {
                    continue;
                }
                match self.read_version(&name, v) {
                    Ok(cached) => found.push(cached),
                    Err(e) => tracing::warn!(%e, "skipping unreadable cached version"),
                }
            }
        }
        found
    }

    fn read_version(&self, model: &str, version: u64) -> Result<CachedVersion, RepoError> {
        let dir = self.root.join(model).join(version.to_string());
        let config_path = dir.join(CONFIG_FILE);
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| RepoError::io(&config_path, e))?;
        let config = parse_config(&text, model, &config_path.display().to_string())?;
        if !dir.join(MODEL_FILE).is_file() {
            return Err(RepoError::io(
                &dir.join(MODEL_FILE),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let labels =
            read_string(&dir.join(LABELS_FILE)).map(|t| t.lines().map(str::to_string).collect());
        Ok(CachedVersion {
            model: model.to_string(),
            version,
            config,
            labels,
            fingerprint: read_string(&dir.join(FINGERPRINT_FILE)).unwrap_or_default(),
            dir,
            downloaded_bytes: 0,
        })
    }
}

fn read_string(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), RepoError> {
    use std::io::Write;
    let io = |e| RepoError::io(path, e);
    let mut file = std::fs::File::create(path).map_err(io)?;
    file.write_all(data).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Makes a rename durable; best effort, as not every filesystem lets a directory be synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Downloads a version's files into `tmp` and checks them against the listing and the sha256
/// sidecar; returns the bytes downloaded.
async fn download(
    repo: &ModelRepository,
    model: &ModelEntry,
    version: &VersionEntry,
    tmp: &Path,
) -> Result<u64, RepoError> {
    let storage = repo.storage();
    let rel = |file: &str| format!("{}/{}/{file}", model.name, version.version);
    let (len, sha) = storage
        .download(&rel(MODEL_FILE), &tmp.join(MODEL_FILE))
        .await?;
    let mut downloaded = len;
    if let Some(listed) = version
        .file(MODEL_FILE)
        .map(|f| f.len)
        .filter(|&listed| listed != len)
    {
        return Err(RepoError::Verify {
            path: storage.display(&rel(MODEL_FILE)),
            cause: Mismatch::Size { listed, read: len },
        });
    }
    if version.file(SHA256_FILE).is_some() {
        let sidecar = repo.read_text(&rel(SHA256_FILE)).await?.unwrap_or_default();
        let want = sidecar
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_lowercase();
        if want != sha {
            return Err(RepoError::Verify {
                path: storage.display(&rel(MODEL_FILE)),
                cause: Mismatch::Sha256 {
                    sidecar: want,
                    actual: sha,
                },
            });
        }
    }
    for file in [LABELS_FILE, FEATURES_FILE] {
        if version.file(file).is_some() {
            let (len, _) = storage.download(&rel(file), &tmp.join(file)).await?;
            downloaded += len;
        }
    }
    Ok(downloaded)
}
