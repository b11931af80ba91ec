//! The repository layout on any [`Storage`]: scanning models and versions, and publishing a
//! version atomically.

use crate::error::RepoError;
use crate::storage::{FileInfo, RetryPolicy, Storage, sha256_hex_yielding};
use crate::{CONFIG_FILE, LABELS_FILE, MODEL_FILE, SHA256_FILE, SUCCESS_FILE};
use spindle_core::config::{ConfigError, ModelConfig, is_valid_name};

/// One integer version directory, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// The integer version.
    pub version: u64,
    /// The files in its directory.
    pub files: Vec<FileInfo>,
    /// Names, sizes and times of the files (and of the model's config and labels): when this
    /// changes, a version that failed is worth trying again.
    pub fingerprint: String,
}

impl VersionEntry {
    /// A file of this version by name.
    pub fn file(&self, name: &str) -> Option<&FileInfo> {
        self.files.iter().find(|f| f.name == name && !f.is_dir)
    }

    /// Whether the directory holds a model file.
    pub fn has_model(&self) -> bool {
        self.file(MODEL_FILE).is_some()
    }

    /// Whether a writer marked the version complete with `_SUCCESS`.
    pub fn has_success_marker(&self) -> bool {
        self.file(SUCCESS_FILE).is_some()
    }
}

/// One model directory, as scanned.
#[derive(Debug)]
pub struct ModelEntry {
    /// Directory name, which is the model name.
    pub name: String,
    /// The parsed config, or why it could not be used.
    pub config: Result<ModelConfig, RepoError>,
    /// The config's text, kept so a cached copy carries exactly what was served.
    pub config_text: Option<String>,
    /// Class labels from `labels.txt`, if present.
    pub labels_text: Option<String>,
    /// Integer version directories, oldest first (complete or not).
    pub versions: Vec<VersionEntry>,
}

impl ModelEntry {
    /// Versions that may be served: a model file, and a `_SUCCESS` marker when the config asks
    /// for one.
    pub fn complete_versions(&self) -> Vec<&VersionEntry> {
        let need_marker = self.config.as_ref().is_ok_and(|c| c.require_success_marker);
        self.versions
            .iter()
            .filter(|v| v.has_model() && (!need_marker || v.has_success_marker()))
            .collect()
    }

    /// The versions the model's policy wants served, oldest first.
    pub fn wanted_versions(&self) -> Vec<&VersionEntry> {
        let Ok(config) = &self.config else {
            return Vec::new();
        };
        let complete = self.complete_versions();
        let numbers: Vec<u64> = complete.iter().map(|v| v.version).collect();
        let wanted = config.version_policy.select(&numbers);
        complete
            .into_iter()
            .filter(|v| wanted.contains(&v.version))
            .collect()
    }

    /// A version by number.
    pub fn version(&self, version: u64) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// A model repository: local directory or HDFS.
#[derive(Clone, Debug)]
pub struct ModelRepository {
    storage: Storage,
    location: String,
}

impl ModelRepository {
    /// Opens an existing repository at `location` (a directory or `hdfs://` URL).
    pub async fn open(location: &str, retry: RetryPolicy) -> Result<ModelRepository, RepoError> {
        let repo = ModelRepository::connect(location, retry)?;
        match repo.storage.list("").await? {
            Some(_) => Ok(repo),
            None => Err(RepoError::Root {
                location: location.to_string(),
                cause: format!(
                    "no such directory (create it with `spindle zoo --out {location}` or `spindle repo publish {location} MODEL FILE --config config.toml`)"
                ),
            }),
        }
    }

    /// A repository handle without touching storage (for publishing into a new repository, or
    /// for reading a cache when storage is down).
    pub fn connect(location: &str, retry: RetryPolicy) -> Result<ModelRepository, RepoError> {
        Ok(ModelRepository {
            storage: Storage::new(location, retry)?,
            location: location.trim_end_matches('/').to_string(),
        })
    }

    /// The location as given (without a trailing '/').
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The storage backend.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Lists every model with its config and versions, sorted by name. Directories whose names
    /// are not valid model names (or start with '.') are skipped; a model that cannot be read
    /// is listed with the error as its config.
    pub async fn scan(&self) -> Result<Vec<ModelEntry>, RepoError> {
        let root = self
            .storage
            .list("")
            .await?
            .ok_or_else(|| RepoError::Root {
                location: self.location.clone(),
                cause: "no such directory".into(),
            })?;
        let mut models = Vec::new();
        for entry in root {
            if !entry.is_dir || entry.name.starts_with('.') {
                continue;
            }
            if !is_valid_name(&entry.name) {
                tracing::warn!(path = %self.storage.display(&entry.name), "skipping directory: not a valid model name");
                continue;
            }
            // One model that cannot be read (an unreadable directory, a config that is not
            // text) is reported as that model's failure, not the whole repository's: the
            // others are still brought in step. Only unreachable storage ends the scan.
            match self.scan_model(&entry.name).await {
                Ok(model) => models.push(model),
                Err(e) if e.is_unreachable() => return Err(e),
                Err(e) => models.push(ModelEntry {
                    name: entry.name.clone(),
                    config: Err(e),
                    config_text: None,
                    labels_text: None,
                    versions: Vec::new(),
                }),
            }
        }
        Ok(models)
    }

    /// Scans one model by name. Names that are invalid (or could escape the root, like `../x`)
    /// are refused before storage is touched.
    pub async fn model(&self, name: &str) -> Result<ModelEntry, RepoError> {
        check_name(name)?;
        if !self.storage.exists(name).await? {
            return Err(RepoError::NotFound(format!(
                "no model '{name}' in repository {}",
                self.location
            )));
        }
        self.scan_model(name).await
    }

    async fn scan_model(&self, name: &str) -> Result<ModelEntry, RepoError> {
        let files = self.storage.list(name).await?.unwrap_or_default();
        let model_files: Vec<&FileInfo> = files
            .iter()
            .filter(|f| !f.is_dir && (f.name == CONFIG_FILE || f.name == LABELS_FILE))
            .collect();
        let shared_fingerprint = fingerprint(model_files.into_iter());
        let mut versions = Vec::new();
        for dir in files.iter().filter(|f| f.is_dir) {
            // Only canonical integers: "01" would alias "1".
            let Ok(version) = dir.name.parse::<u64>() else {
                continue;
            };
            if version.to_string() != dir.name {
                continue;
            }
            let rel = format!("{name}/{version}");
            let files = self.storage.list(&rel).await?.unwrap_or_default();
            let fingerprint = format!("{shared_fingerprint};{}", fingerprint(files.iter()));
            versions.push(VersionEntry {
                version,
                files,
                fingerprint,
            });
        }
        versions.sort_by_key(|v| v.version);
        let config_rel = format!("{name}/{CONFIG_FILE}");
        let config_text = self.read_text(&config_rel).await?;
        let config = match &config_text {
            None => Err(RepoError::Config {
                path: self.storage.display(&config_rel),
                cause: ConfigError {
                    field: "config".into(),
                    message: "missing (every model needs a config.toml beside its versions)".into(),
                },
            }),
            Some(text) => parse_config(text, name, &self.storage.display(&config_rel)),
        };
        let config = config.and_then(|config| {
            if versions.iter().any(VersionEntry::has_model) {
                Ok(config)
            } else {
                Err(RepoError::NoVersions {
                    path: self.storage.display(name),
                })
            }
        });
        let labels_text = self.read_text(&format!("{name}/{LABELS_FILE}")).await?;
        Ok(ModelEntry {
            name: name.to_string(),
            config,
            config_text,
            labels_text,
            versions,
        })
    }

    /// Reads a small text file of the repository; `None` when missing.
    pub async fn read_text(&self, rel: &str) -> Result<Option<String>, RepoError> {
        match self.storage.read(rel).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|cause| RepoError::NotText {
                    path: self.storage.display(rel),
                    cause,
                }),
        }
    }

    /// Publishes `model` (ONNX bytes) as a new version of `name` and returns its number: the
    /// files go into a hidden temporary directory beside the versions, with a sha256 sidecar,
    /// and that directory is renamed to the version number in one step, so readers never see
    /// a half-written version. `config` (and `labels`), when given, replace the model's; a
    /// model without a config needs one. `version` defaults to the newest plus one.
    pub async fn publish(
        &self,
        name: &str,
        model: &[u8],
        version: Option<u64>,
        config: Option<&str>,
        labels: Option<&str>,
    ) -> Result<u64, RepoError> {
        self.publish_with(name, model, version, config, labels, &[])
            .await
    }

    /// [`ModelRepository::publish`], with more files of the version (such as
    /// [`crate::FEATURES_FILE`]) written beside the model before the rename: `(file name, contents)`.
    pub async fn publish_with(
        &self,
        name: &str,
        model: &[u8],
        version: Option<u64>,
        config: Option<&str>,
        labels: Option<&str>,
        version_files: &[(&str, &[u8])],
    ) -> Result<u64, RepoError> {
        check_name(name)?;
        if let Some((file, _)) = version_files
            .iter()
            .find(|(file, _)| check_name(file).is_err() || [MODEL_FILE, SHA256_FILE].contains(file))
        {
            return Err(RepoError::Unpublishable {
                path: format!("{name}/{file}"),
                reason: format!(
                    "cannot be published beside the model: give a plain file name other than {MODEL_FILE} and {SHA256_FILE}"
                ),
            });
        }
        if model.is_empty() {
            return Err(RepoError::Unpublishable {
                path: format!("{name} (the file to publish)"),
                reason: "is empty; publish an ONNX model file".into(),
            });
        }
        self.storage.mkdirs(name).await?;
        let config_rel = format!("{name}/{CONFIG_FILE}");
        match config {
            Some(text) => {
                // Validate before writing, so a bad config never replaces a good one.
                parse_config(text, name, "the config given")?;
                self.storage.write(&config_rel, text.as_bytes()).await?;
            }
            None if !self.storage.exists(&config_rel).await? => {
                return Err(RepoError::Config {
                    path: self.storage.display(&config_rel),
                    cause: ConfigError {
                        field: "config".into(),
                        message: "missing: publish the first version with --config config.toml"
                            .into(),
                    },
                });
            }
            None => {}
        }
        if let Some(labels) = labels {
            let rel = format!("{name}/{LABELS_FILE}");
            self.storage.write(&rel, labels.as_bytes()).await?;
        }
        let version = match version {
            Some(v) => v,
            None => {
                let existing = self.storage.list(name).await?.unwrap_or_default();
                existing
                    .iter()
                    .filter(|f| f.is_dir)
                    .filter_map(|f| f.name.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1
            }
        };
        let target = format!("{name}/{version}");
        if self.storage.exists(&target).await? {
            return Err(RepoError::Exists {
                path: self.storage.display(&target),
            });
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = format!("{name}/.publish-{version}-{}-{nanos}", std::process::id());
        let result = async {
            self.storage.mkdirs(&tmp).await?;
            self.storage
                .write(&format!("{tmp}/{MODEL_FILE}"), model)
                .await?;
            let sidecar = format!("{}  {MODEL_FILE}\n", sha256_hex_yielding(model).await);
            self.storage
                .write(&format!("{tmp}/{SHA256_FILE}"), sidecar.as_bytes())
                .await?;
            for (file, contents) in version_files {
                self.storage
                    .write(&format!("{tmp}/{file}"), contents)
                    .await?;
            }
            self.storage.rename(&tmp, &target).await
        }
        .await;
        if result.is_err() {
            let _ = self.storage.delete(&tmp).await;
        }
        result.map(|()| version)
    }
}

/// Refuses names that are not valid model names, which includes anything with '/' or "..".
pub fn check_name(name: &str) -> Result<(), RepoError> {
    if is_valid_name(name) && !name.contains("..") {
        Ok(())
    } else {
        Err(RepoError::InvalidName(name.to_string()))
    }
}

/// Parses a config text and checks that it names the model directory it sits in.
pub(crate) fn parse_config(
    text: &str,
    dir_name: &str,
    path: &str,
) -> Result<ModelConfig, RepoError> {
    let config = ModelConfig::from_toml(text).map_err(|cause| RepoError::Config {
        path: path.to_string(),
        cause,
    })?;
    if config.name != dir_name {
        return Err(RepoError::Config {
            path: path.to_string(),
            cause: ConfigError {
                field: "name".into(),
                message: format!(
                    "'{}' differs from its directory name '{dir_name}'",
                    config.name
                ),
            },
        });
    }
    Ok(config)
}

fn fingerprint<'a>(files: impl Iterator<Item = &'a FileInfo>) -> String {
    files
        .map(|f| format!("{}:{}:{}", f.name, f.len, f.modified_ms))
        .collect::<Vec<_>>()
        .join(",")
}
