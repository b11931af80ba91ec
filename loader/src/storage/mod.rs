//! Where a repository's bytes live: a local directory (`local.rs`) or HDFS (`hdfs.rs`, through
//! `hdfs-native`, no JVM), behind one [`Storage`] enum.
//!
//! Every operation takes a path relative to the repository root, built by this crate from
//! validated names, so nothing reaches outside the root. HDFS operations are retried with
//! exponential backoff on errors that a retry can cure (NameNode unreachable or in safe mode,
//! DataNode read failures); a download that fails midway resumes from the last byte written.
//!
//! Local filesystem work (a local repository, and every download's destination file: writing,
//! hashing, fsync) runs on tokio's blocking pool, never on the runtime's workers: the server
//! polls the repository on the runtime that answers requests, and copying and syncing a large
//! model takes seconds.

mod hdfs;
mod local;
mod namenode;
mod retry;
mod sink;

use crate::error::RepoError;
pub use hdfs::{HdfsStorage, KerberosLogin, UPLOAD_CHUNK, kerberos_login, set_kerberos_login};
use sha2::{Digest, Sha256};
pub use spindle_core::retry::RetryPolicy;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The retry policy for HDFS: five attempts in all over about three seconds, long enough to
/// ride out a DataNode restart or a NameNode leaving safe mode, short enough that a poll
/// against a dead NameNode ends quickly.
pub const HDFS_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(200), Duration::from_secs(2));

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The last path component.
    pub name: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Length in bytes (0 for directories).
    pub len: u64,
    /// Modification time, milliseconds since the epoch.
    pub modified_ms: u64,
}

/// A repository's storage backend.
#[derive(Clone, Debug)]
pub enum Storage {
    /// A local directory.
    Local(PathBuf),
    /// A directory on HDFS.
    Hdfs(HdfsStorage),
}

/// Whether `location` names HDFS (`hdfs://` or `viewfs://`) rather than a local directory.
pub fn is_hdfs(location: &str) -> bool {
    location.starts_with("hdfs://") || location.starts_with("viewfs://")
}

impl Storage {
    /// Storage for a location: `hdfs://host:port/path`, `hdfs://nameservice/path`, or a local
    /// directory. Connects lazily: nothing is contacted yet. `retry` applies to HDFS only: a
    /// local failure is never cured by trying again.
    pub fn new(location: &str, retry: RetryPolicy) -> Result<Storage, RepoError> {
        if is_hdfs(location) {
            HdfsStorage::new(location, retry).map(Storage::Hdfs)
        } else {
            Ok(Storage::Local(PathBuf::from(location)))
        }
    }

    /// The full path or URL of `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        match self {
            Storage::Local(root) => local::display(root, rel),
            Storage::Hdfs(hdfs) => hdfs.display(rel),
        }
    }

    /// Whether this is HDFS.
    pub fn is_hdfs(&self) -> bool {
        matches!(self, Storage::Hdfs(_))
    }

    /// Lists a directory, sorted by name; `None` when it does not exist.
    pub async fn list(&self, rel: &str) -> Result<Option<Vec<FileInfo>>, RepoError> {
        let entries = match self {
            Storage::Local(root) => on_local(root, rel, local::list).await?,
            Storage::Hdfs(hdfs) => hdfs.list(rel).await?,
        };
        Ok(entries.map(|mut entries| {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries
        }))
    }

    /// Reads a small file whole; `None` when it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
        match self {
            Storage::Local(root) => on_local(root, rel, local::read).await,
            Storage::Hdfs(hdfs) => hdfs.read(rel).await,
        }
    }

    /// Copies `rel` into the local file `dest` (created; synced to disk before returning) and
    /// returns its length and sha256 (lowercase hex). An HDFS read that fails midway is resumed
    /// from the last byte written, so a DataNode lost during a download costs a retry, not the
    /// whole file.
    pub async fn download(&self, rel: &str, dest: &Path) -> Result<(u64, String), RepoError> {
        match self {
            Storage::Local(root) => {
                let (root, rel, dest) = (root.clone(), rel.to_string(), dest.to_path_buf());
                blocking(move || local::download(&root, &rel, &dest)).await
            }
            Storage::Hdfs(hdfs) => hdfs.download(rel, dest).await,
        }
    }

    /// Writes a whole file, replacing any previous one; parents are created.
    pub async fn write(&self, rel: &str, data: &[u8]) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => {
                // A copy, so the blocking thread owns what it writes (publishing is a command,
                // not the server's hot path), made in steps so a large model does not hold the
                // runtime's thread while its pages are faulted in.
                let mut owned = Vec::with_capacity(data.len());
                for chunk in data.chunks(STEP) {
                    owned.extend_from_slice(chunk);
                    tokio::task::yield_now().await;
                }
                let (root, rel, data) = (root.clone(), rel.to_string(), owned);
                blocking(move || local::write(&root, &rel, &data)).await
            }
            Storage::Hdfs(hdfs) => hdfs.write(rel, data).await,
        }
    }

    /// Copies the local file `src` to `rel` (replacing it; parents created) without holding
    /// it in memory: on HDFS it is sent in chunks of [`UPLOAD_CHUNK`] bytes; locally it
    /// is copied on the blocking pool. Returns the bytes copied.
    pub async fn upload(&self, rel: &str, src: &Path) -> Result<u64, RepoError> {
        match self {
            Storage::Local(root) => {
                let (path, src) = (root.join(rel), src.to_path_buf());
                blocking(move || {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| RepoError::io(parent, e))?;
                    }
                    std::fs::copy(&src, &path).map_err(|e| RepoError::io(&path, e))
                })
                .await
            }
            Storage::Hdfs(hdfs) => hdfs.upload(rel, src).await,
        }
    }

    /// Creates a directory and its parents.
    pub async fn mkdirs(&self, rel: &str) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => on_local(root, rel, local::mkdirs).await,
            Storage::Hdfs(hdfs) => hdfs.mkdirs(rel).await,
        }
    }

    /// Renames `from` to `to`, failing if `to` exists. On HDFS this is one NameNode operation,
    /// which is what makes publishing atomic.
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), RepoError> {
        if self.exists(to).await? {
            return Err(RepoError::Exists {
                path: self.display(to),
            });
        }
        match self {
            Storage::Local(root) => {
                let (root, from, to) = (root.clone(), from.to_string(), to.to_string());
                blocking(move || local::rename(&root, &from, &to)).await
            }
            Storage::Hdfs(hdfs) => hdfs.rename(from, to).await,
        }
    }

    /// Deletes a file or directory tree; a missing one is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => on_local(root, rel, local::delete).await,
            Storage::Hdfs(hdfs) => hdfs.delete(rel).await,
        }
    }

    /// Whether `rel` exists (file or directory).
    pub async fn exists(&self, rel: &str) -> Result<bool, RepoError> {
        match self {
            Storage::Local(root) => {
                on_local(root, rel, |root, rel| Ok(local::exists(root, rel))).await
            }
            Storage::Hdfs(hdfs) => hdfs.exists(rel).await,
        }
    }
}

/// Runs `op` on a local repository's `root` and `rel` on the blocking pool.
async fn on_local<T: Send + 'static>(
    root: &Path,
    rel: &str,
    op: fn(&Path, &str) -> Result<T, RepoError>,
) -> Result<T, RepoError> {
    let (root, rel) = (root.to_path_buf(), rel.to_string());
    blocking(move || op(&root, &rel)).await
}

/// Runs filesystem work on tokio's blocking pool, so that a slow disk (an fsync of a large
/// model, a directory tree to remove) never holds a runtime worker that also serves requests.
/// A panic in `work` is resumed here, as if it had run inline.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RepoError> + Send + 'static,
) -> Result<T, RepoError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime shuts down, and then nobody waits for the answer.
        Err(e) => Err(RepoError::Io {
            path: "(local filesystem work)".into(),
            cause: std::io::Error::other(e),
        }),
    }
}

/// Lowercase hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// How much of a borrowed buffer async code copies or hashes between two yields: about a
/// millisecond of work.
const STEP: usize = 1 << 20;

/// [`sha256_hex`] for async callers that hold the bytes borrowed (so they cannot hand them to
/// the blocking pool): hashed 1 MiB at a time, yielding between steps, so that a model of
/// hundreds of MB (about a second of hashing) never holds a runtime thread for more than a
/// few milliseconds at once.
pub async fn sha256_hex_yielding(data: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for chunk in data.chunks(STEP) {
        hasher.update(chunk);
        tokio::task::yield_now().await;
    }
    hex(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hdfs_urls_and_refuses_escapes() {
        let s = Storage::new("hdfs://127.0.0.1:9000/models//zoo/", HDFS_RETRY).unwrap();
        assert_eq!(s.display("m/1"), "hdfs://127.0.0.1:9000/models/zoo/m/1");
        let s = Storage::new("hdfs://127.0.0.1:9000", HDFS_RETRY).unwrap();
        assert_eq!(s.display("m"), "hdfs://127.0.0.1:9000/m");
        let err = Storage::new("hdfs://nn:9000/a/../b", HDFS_RETRY).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
        let err = Storage::new("hdfs:///models", HDFS_RETRY).unwrap_err();
        assert!(err.to_string().contains("no NameNode"), "{err}");
        assert!(!Storage::new("/tmp/x", HDFS_RETRY).unwrap().is_hdfs());
    }
}
