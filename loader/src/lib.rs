//! Spindle's model repository, on a local directory or on HDFS.
//!
//! A repository is a directory of models:
//!
//! ```text
//! <repo>/<model>/config.toml              signature, serving settings, version policy
//! <repo>/<model>/labels.txt               optional class names, one per line
//! <repo>/<model>/<N>/model.onnx           one directory per integer version N
//! <repo>/<model>/<N>/model.onnx.sha256    checksum sidecar, written by `spindle repo publish`
//! <repo>/<model>/<N>/_SUCCESS             completion marker, for writers that cannot rename
//! ```
//!
//! Directories whose names are not integers are ignored (they may be uploads in progress).
//!
//! - [`storage`]: one [`Storage`] over a local directory (`storage/local.rs`) or HDFS
//!   (`storage/hdfs.rs`, through `hdfs-native`); HDFS errors a retry can cure are retried
//!   (`storage/retry.rs`) under the [`RetryPolicy`] shared with the client, from `spindle-core`.
//! - [`repository`]: scanning models and versions, publishing a version atomically.
//! - [`cache`]: verified local copies the server loads from, and falls back to at startup.
//! - [`cache_dir`]: the server's ownership of its cache directory (a lock), removal at exit, and
//!   cleaning up after servers that died.
//! - [`error`]: errors naming the path and the fix, typed, each transient or permanent.
//!
//! Local filesystem work of the async API runs on tokio's blocking pool (`storage::blocking`).

pub mod cache;
pub mod cache_dir;
pub mod error;
pub mod repository;
pub mod storage;

pub use cache::{CachedVersion, ModelCache};
pub use cache_dir::CacheDir;
pub use error::{FailureKind, Mismatch, RepoError};
pub use repository::{ModelEntry, ModelRepository, VersionEntry, check_name};
pub use storage::{
    HDFS_RETRY, KerberosLogin, RetryPolicy, Storage, UPLOAD_CHUNK, is_hdfs, kerberos_login,
    set_kerberos_login,
};

/// The name of every model's config file.
pub const CONFIG_FILE: &str = "config.toml";
/// The name of the model file inside a version directory.
pub const MODEL_FILE: &str = "model.onnx";
/// Optional class labels beside the config (or inside a version directory).
pub const LABELS_FILE: &str = "labels.txt";
/// Optional feature description of a version (tabular models).
pub const FEATURES_FILE: &str = "features.toml";
/// The checksum sidecar of the model file: `<sha256 hex>  model.onnx`.
pub const SHA256_FILE: &str = "model.onnx.sha256";
/// The completion marker some writers leave instead of renaming.
pub const SUCCESS_FILE: &str = "_SUCCESS";

#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod tests;
