//! Repository errors. Each names the path (local path or `hdfs://` URL) and, where one exists,
//! the fix.

use spindle_core::config::ConfigError;

/// A repository problem, naming the path involved. Underlying errors are part of the message
/// (field `cause`, deliberately not `source`), so they are printed once, not again as a cause.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The repository location is not usable (a bad URL, a missing root).
    #[error("model repository {location}: {cause}")]
    Root {
        /// The location given.
        location: String,
        /// What is wrong.
        cause: String,
    },
    /// Reading or writing a file or directory failed (after retries, where retrying helps).
    #[error("{path}: {cause}")]
    Io {
        /// Full path or URL.
        path: String,
        /// The underlying error.
        cause: String,
        /// Whether storage was unreachable (HDFS down) rather than the file being wrong.
        unreachable: bool,
    },
    /// A config file is invalid.
    #[error("{path}: {cause}")]
    Config {
        /// The config file.
        path: String,
        /// What is wrong, naming the field.
        cause: ConfigError,
    },
    /// A model directory holds no integer version directory with a model file.
    #[error("{path}: no version directory (expected {path}/1/{file})", file = crate::MODEL_FILE)]
    NoVersions {
        /// The model directory.
        path: String,
    },
    /// A downloaded file differs from what the repository promised (size or sha256).
    #[error("{path}: {cause}")]
    Verify {
        /// The file in the repository.
        path: String,
        /// Expected and actual size or checksum.
        cause: String,
    },
    /// A model name that could escape the repository root or is otherwise invalid.
    #[error(
        "'{0}' is not a valid model name (use letters, digits, '_', '-' and '.', not starting with '.'; no '/')"
    )]
    InvalidName(String),
    /// A model or version that is not in the repository.
    #[error("{0}")]
    NotFound(String),
    /// Publishing a version that already exists.
    #[error("{path} already exists (versions are immutable; publish a new version number)")]
    Exists {
        /// The version directory.
        path: String,
    },
}

impl RepoError {
    /// Whether the error says storage could not be reached (as opposed to a bad file).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RepoError::Io {
                unreachable: true,
                ..
            }
        )
    }

    /// A short class for metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            RepoError::Root { .. } => "root",
            RepoError::Io {
                unreachable: true, ..
            } => "unreachable",
            RepoError::Io { .. } => "io",
            RepoError::Config { .. } => "config",
            RepoError::NoVersions { .. } => "no_versions",
            RepoError::Verify { .. } => "checksum",
            RepoError::InvalidName(_) => "invalid_name",
            RepoError::NotFound(_) => "not_found",
            RepoError::Exists { .. } => "exists",
        }
    }
}
