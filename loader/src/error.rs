//! Repository errors. Each names the path (local path or `hdfs://` URL) and, where one exists,
//! the fix, keeps the error it came from as a typed value, and says by [`RepoError::kind`]
//! whether trying again can help: the server retries a [`FailureKind::Transient`] failure at
//! the next poll and skips a version that failed [`FailureKind::Permanent`]ly until its files
//! change.

use spindle_core::config::ConfigError;
use std::fmt;

/// Whether a failure says something about the files, or only about this attempt to read them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Storage could not be read or written just now (local I/O, HDFS unreachable or failing,
    /// a timeout): the same files may well load at the next attempt, so a version that failed
    /// this way is tried again at the next poll and never remembered as bad.
    Transient,
    /// The files themselves are wrong (an invalid config, a published file whose size or
    /// sha256 disagrees, text that is not UTF-8): the same files fail the same way every time,
    /// so the version is skipped until they change.
    Permanent,
}

/// A repository problem, naming the path involved. The underlying error is kept as a typed
/// field (`cause`) and is part of the message, deliberately not `source()`: callers print these
/// with `{:#}` chains, which would otherwise print it twice.
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
    /// Reading or writing a local file or directory failed.
    #[error("{path}: {cause}")]
    Io {
        /// Full path.
        path: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// An HDFS operation failed, after the retries a retry could help with.
    #[error("{path}: {cause}")]
    Hdfs {
        /// Full `hdfs://` URL.
        path: String,
        /// The HDFS error, with the attempts made and a hint.
        cause: HdfsFailure,
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
        cause: Mismatch,
    },
    /// A file that must be UTF-8 text (a config, labels, a checksum sidecar) is not.
    #[error("{path}: not UTF-8 text ({cause})")]
    NotText {
        /// The file.
        path: String,
        /// Where the bytes stop being UTF-8.
        cause: std::string::FromUtf8Error,
    },
    /// Something given to `publish` cannot be published.
    #[error("{path}: {reason}")]
    Unpublishable {
        /// The model or file named.
        path: String,
        /// Why, and what to give instead.
        reason: String,
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
    /// A `--cache-dir` that a running server holds.
    #[error(
        "cache directory {path} is in use by {owner} (two servers must not share a cache: give each its own --cache-dir, or stop the other)"
    )]
    CacheInUse {
        /// The cache directory.
        path: String,
        /// Who holds it, from its lock file.
        owner: String,
    },
}

/// How a downloaded file differs from what the repository promised.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// Its length differs from the listing's.
    #[error(
        "size mismatch: the listing says {listed} bytes, {read} were read (was it rewritten in place? publish a new version instead)"
    )]
    Size {
        /// Bytes listed.
        listed: u64,
        /// Bytes read.
        read: u64,
    },
    /// Its sha256 differs from its sidecar's.
    #[error(
        "sha256 mismatch: {file} says '{sidecar}', the file hashes to {actual} (corrupt or partial upload; publish it again as a new version)",
        file = crate::SHA256_FILE
    )]
    Sha256 {
        /// What the sidecar says.
        sidecar: String,
        /// What the file hashes to.
        actual: String,
    },
}

/// An HDFS failure: the client's error, how many attempts were made, and what to check.
#[derive(Debug)]
pub struct HdfsFailure {
    /// The last attempt's error.
    pub error: hdfs_native::HdfsError,
    /// Attempts made (1 when the error was not worth retrying).
    pub attempts: u32,
    /// Whether the cluster could not be reached (as opposed to refusing the operation).
    pub unreachable: bool,
    /// What to check (the NameNode, Kerberos), or empty.
    pub hint: String,
}

impl fmt::Display for HdfsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        f.write_str(&self.hint)
    }
}

impl RepoError {
    /// A local I/O failure on `path`.
    pub fn io(path: &std::path::Path, cause: std::io::Error) -> RepoError {
        RepoError::Io {
            path: path.display().to_string(),
            cause,
        }
    }

    /// Whether trying again later can succeed with the same files.
    pub fn kind(&self) -> FailureKind {
        match self {
            // Storage, not content: a full disk, a DataNode restart, a NameNode failover or an
            // expired ticket all pass. HDFS refusals (permissions) are transient too, as fixing
            // them changes no file's size or time, so a remembered failure would never be retried.
            RepoError::Io { .. } | RepoError::Hdfs { .. } | RepoError::Root { .. } => {
                FailureKind::Transient
            }
            RepoError::Config { .. }
            | RepoError::NoVersions { .. }
            | RepoError::Verify { .. }
            | RepoError::NotText { .. }
            | RepoError::Unpublishable { .. }
            | RepoError::InvalidName(_)
            | RepoError::NotFound(_)
            | RepoError::Exists { .. }
            | RepoError::CacheInUse { .. } => FailureKind::Permanent,
        }
    }

    /// Whether the error says storage could not be reached (as opposed to a bad file).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RepoError::Hdfs { cause, .. } if cause.unreachable)
    }

    /// A short class for metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            RepoError::Root { .. } => "root",
            RepoError::Hdfs { cause, .. } if cause.unreachable => "unreachable",
            RepoError::Hdfs { .. } => "hdfs",
            RepoError::Io { .. } => "io",
            RepoError::Config { .. } => "config",
            RepoError::NoVersions { .. } => "no_versions",
            RepoError::Verify { .. } => "checksum",
            RepoError::NotText { .. } => "not_text",
            RepoError::Unpublishable { .. } => "unpublishable",
            RepoError::InvalidName(_) => "invalid_name",
            RepoError::NotFound(_) => "not_found",
            RepoError::Exists { .. } => "exists",
            RepoError::CacheInUse { .. } => "cache_in_use",
        }
    }
}
