//! Spindle's model repository.
//!
//! A repository is a directory of models:
//!
//! ```text
//! <repo>/<model>/config.toml      signature and serving settings (spindle_core::config)
//! <repo>/<model>/labels.txt       optional class names, one per line
//! <repo>/<model>/<N>/model.onnx   one directory per integer version N
//! ```
//!
//! Directories whose names are not integers are ignored (they may be uploads in progress).
//! [`ModelRepository::scan`] reads every model's config and versions without loading anything;
//! a model whose config is broken is reported with the file and field, and the others are
//! unaffected.
//!
//! Only local directories are read for now; HDFS comes behind the same type.

use spindle_core::config::{ConfigError, ModelConfig, is_valid_name};
use std::path::{Path, PathBuf};

/// The name of every model's config file.
pub const CONFIG_FILE: &str = "config.toml";
/// The name of the model file inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";
/// Optional class labels beside the config.
pub const LABELS_FILE: &str = "labels.txt";

/// A repository problem, naming the path involved. The underlying error is part of the message
/// (field `cause`, deliberately not `source`), so it is printed once, not again as a cause.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository root is missing or unreadable.
    #[error("model repository {path}: {cause}")]
    Root {
        /// The root given.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A file could not be read.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// A config file is invalid.
    #[error("{path}: {cause}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the field.
        cause: ConfigError,
    },
    /// A model directory holds no integer version directory with a model file.
    #[error("{path}: no version directory (expected {path}/1/{MODEL_FILE})")]
    NoVersions {
        /// The model directory.
        path: PathBuf,
    },
    /// A model or version that is not in the repository.
    #[error("{0}")]
    NotFound(String),
}

/// One version directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// The integer version.
    pub version: u64,
    /// Path of its `model.onnx`.
    pub model_path: PathBuf,
}

/// One model directory, as scanned.
#[derive(Debug)]
pub struct ModelEntry {
    /// Directory name, which is the model name.
    pub name: String,
    /// The model directory.
    pub dir: PathBuf,
    /// The parsed config, or why it could not be used.
    pub config: Result<ModelConfig, RepoError>,
    /// Class labels from `labels.txt`, if present.
    pub labels: Option<Vec<String>>,
    /// Versions with a model file, oldest first.
    pub versions: Vec<VersionEntry>,
}

impl ModelEntry {
    /// The newest version, if any.
    pub fn latest(&self) -> Option<&VersionEntry> {
        self.versions.last()
    }
}

/// A model repository on local disk.
#[derive(Clone, Debug)]
pub struct ModelRepository {
    root: PathBuf,
}

impl ModelRepository {
    /// Opens a repository; the root must be an existing directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<ModelRepository, RepoError> {
        let root = root.into();
        let meta = std::fs::metadata(&root).map_err(|cause| RepoError::Root {
            path: root.clone(),
            cause,
        })?;
        if !meta.is_dir() {
            return Err(RepoError::Root {
                path: root,
                cause: std::io::Error::other("not a directory"),
            });
        }
        Ok(ModelRepository { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lists every model with its config and versions, sorted by name.
    pub fn scan(&self) -> Result<Vec<ModelEntry>, RepoError> {
        let mut models = Vec::new();
        for dir in read_dir_sorted(&self.root)? {
            let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !dir.is_dir() || name.starts_with('.') {
                continue;
            }
            if !is_valid_name(&name) {
                tracing::warn!(path = %dir.display(), "skipping directory: not a valid model name");
                continue;
            }
            models.push(self.scan_model(name, dir)?);
        }
        Ok(models)
    }

    /// Scans one model by name.
    pub fn model(&self, name: &str) -> Result<ModelEntry, RepoError> {
        if !is_valid_name(name) {
            return Err(RepoError::NotFound(format!(
                "'{name}' is not a valid model name"
            )));
        }
        let dir = self.root.join(name);
        if !dir.is_dir() {
            return Err(RepoError::NotFound(format!(
                "no model '{name}' in repository {}",
                self.root.display()
            )));
        }
        self.scan_model(name.to_string(), dir)
    }

    fn scan_model(&self, name: String, dir: PathBuf) -> Result<ModelEntry, RepoError> {
        let mut versions: Vec<VersionEntry> = read_dir_sorted(&dir)?
            .into_iter()
            .filter_map(|path| {
                let version = path.file_name()?.to_str()?.parse::<u64>().ok()?;
                let model_path = path.join(MODEL_FILE);
                model_path.is_file().then_some(VersionEntry {
                    version,
                    model_path,
                })
            })
            .collect();
        versions.sort_by_key(|v| v.version);
        let config_path = dir.join(CONFIG_FILE);
        let config = read_config(&config_path, &name).and_then(|config| {
            if versions.is_empty() {
                Err(RepoError::NoVersions { path: dir.clone() })
            } else {
                Ok(config)
            }
        });
        let labels_path = dir.join(LABELS_FILE);
        let labels = match std::fs::read_to_string(&labels_path) {
            Ok(text) => Some(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(cause) => {
                return Err(RepoError::Io {
                    path: labels_path,
                    cause,
                });
            }
        };
        Ok(ModelEntry {
            name,
            dir,
            config,
            labels,
            versions,
        })
    }
}

fn read_config(path: &Path, dir_name: &str) -> Result<ModelConfig, RepoError> {
    let text = std::fs::read_to_string(path).map_err(|cause| RepoError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let config = ModelConfig::from_toml(&text).map_err(|cause| RepoError::Config {
        path: path.to_path_buf(),
        cause,
    })?;
    if config.name != dir_name {
        return Err(RepoError::Config {
            path: path.to_path_buf(),
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

/// Reads a model file.
pub fn read_model_file(path: &Path) -> Result<Vec<u8>, RepoError> {
    std::fs::read(path).map_err(|cause| RepoError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, RepoError> {
    let io = |cause| RepoError::Io {
        path: dir.to_path_buf(),
        cause,
    };
    let mut paths = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
name = "m"
max_batch_size = 4
[[inputs]]
name = "x"
dtype = "FP32"
dims = [-1, 2]
[[outputs]]
name = "y"
dtype = "FP32"
dims = [-1, 2]
"#;

    fn model(root: &Path, name: &str, config: &str, versions: &[&str]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(CONFIG_FILE),
            config.replace("\"m\"", &format!("\"{name}\"")),
        )
        .unwrap();
        for v in versions {
            std::fs::create_dir_all(dir.join(v)).unwrap();
            std::fs::write(dir.join(v).join(MODEL_FILE), b"onnx").unwrap();
        }
    }

    #[test]
    fn finds_integer_versions_and_ignores_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        model(tmp.path(), "m", CONFIG, &["1", "10", "2", "tmp-upload"]);
        std::fs::write(tmp.path().join("m/labels.txt"), "cat\ndog\n").unwrap();
        let repo = ModelRepository::open(tmp.path()).unwrap();
        let models = repo.scan().unwrap();
        assert_eq!(models.len(), 1);
        let versions: Vec<u64> = models[0].versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, vec![1, 2, 10]);
        assert_eq!(models[0].latest().unwrap().version, 10);
        assert_eq!(
            models[0].labels.as_deref(),
            Some(&["cat".to_string(), "dog".to_string()][..])
        );
        assert!(models[0].config.is_ok());
    }

    #[test]
    fn a_broken_config_names_file_and_field_and_spares_the_others() {
        let tmp = tempfile::tempdir().unwrap();
        model(tmp.path(), "good", CONFIG, &["1"]);
        model(
            tmp.path(),
            "bad",
            &CONFIG.replace("[-1, 2]\n[[outputs]]", "[2]\n[[outputs]]"),
            &["1"],
        );
        model(tmp.path(), "empty", CONFIG, &[]);
        let models = ModelRepository::open(tmp.path()).unwrap().scan().unwrap();
        let by_name = |n: &str| models.iter().find(|m| m.name == n).unwrap();
        assert!(by_name("good").config.is_ok());
        let err = by_name("bad").config.as_ref().unwrap_err().to_string();
        assert!(
            err.contains("bad/config.toml") && err.contains("inputs[0].dims"),
            "{err}"
        );
        let err = by_name("empty").config.as_ref().unwrap_err().to_string();
        assert!(err.contains("no version directory"), "{err}");
    }

    #[test]
    fn config_name_must_match_directory() {
        let tmp = tempfile::tempdir().unwrap();
        model(tmp.path(), "m", CONFIG, &["1"]);
        std::fs::rename(tmp.path().join("m"), tmp.path().join("other")).unwrap();
        let models = ModelRepository::open(tmp.path()).unwrap().scan().unwrap();
        let err = models[0].config.as_ref().unwrap_err().to_string();
        assert!(
            err.contains("differs from its directory name 'other'"),
            "{err}"
        );
    }

    #[test]
    fn missing_root_and_escaping_names_are_refused() {
        let err = ModelRepository::open("/nonexistent/repo")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/repo"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let repo = ModelRepository::open(tmp.path()).unwrap();
        assert!(matches!(repo.model("../x"), Err(RepoError::NotFound(_))));
    }
}
