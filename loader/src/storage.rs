//! Where a repository's bytes live: a local directory or HDFS (through `hdfs-native`, no JVM).
//!
//! Every operation takes a path relative to the repository root, built by this crate from
//! validated names, so nothing reaches outside the root. HDFS operations are retried with
//! exponential backoff on errors that a retry can cure (NameNode unreachable or in safe mode,
//! DataNode read failures); a download that fails midway resumes from the last byte written.

use crate::error::RepoError;
use futures::StreamExt;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often and how patiently HDFS operations are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts over about three seconds: long enough to ride out a DataNode restart or a
    /// NameNode leaving safe mode, short enough that a poll against a dead NameNode ends quickly.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// The longest one metadata operation (list, stat, small read or write) may take before it
/// counts as a failed attempt: a hung connection must not stall polling forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

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
    Hdfs {
        /// The client (one NameNode connection, shared).
        client: Client,
        /// `hdfs://authority` (host:port or a name service from `HADOOP_CONF_DIR`).
        base: String,
        /// The root directory's absolute path on HDFS, without a trailing '/'.
        root: String,
        /// Retry settings.
        retry: RetryPolicy,
    },
}

/// Whether `location` names HDFS (`hdfs://` or `viewfs://`) rather than a local directory.
pub fn is_hdfs(location: &str) -> bool {
    location.starts_with("hdfs://") || location.starts_with("viewfs://")
}

impl Storage {
    /// Storage for a location: `hdfs://host:port/path`, `hdfs://nameservice/path`, or a local
    /// directory. Connects lazily: nothing is contacted yet.
    pub fn new(location: &str, retry: RetryPolicy) -> Result<Storage, RepoError> {
        if !is_hdfs(location) {
            return Ok(Storage::Local(PathBuf::from(location)));
        }
        let root_error = |cause: String| RepoError::Root {
            location: location.to_string(),
            cause,
        };
        let (scheme, rest) = location.split_once("://").expect("checked by is_hdfs");
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(root_error(format!(
                "no NameNode in the URL (write {scheme}://host:port/path or {scheme}://nameservice/path)"
            )));
        }
        let root = normalize_root(path).map_err(root_error)?;
        let base = format!("{scheme}://{authority}");
        // hdfs-native reads HADOOP_CONF_DIR (core-site.xml, hdfs-site.xml) for name services,
        // HA NameNodes, Kerberos and delegation tokens. Its own failover loop defaults to 15
        // attempts with sleeps up to 15 s, which kept a poll against a stopped NameNode hanging
        // for minutes; a short failover round here, and our backoff around it, bound that.
        let client = ClientBuilder::new()
            .with_url(base.clone())
            .with_config([
                ("dfs.client.failover.max.attempts", "2"),
                ("dfs.client.failover.sleep.base.millis", "100"),
                ("dfs.client.failover.sleep.max.millis", "500"),
            ])
            .build()
            .map_err(|e| root_error(format!("cannot create an HDFS client: {e}")))?;
        Ok(Storage::Hdfs {
            client,
            base,
            root,
            retry,
        })
    }

    /// The full path or URL of `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        match self {
            Storage::Local(root) => join_local(root, rel).display().to_string(),
            Storage::Hdfs { base, root, .. } => format!("{base}{}", join_hdfs(root, rel)),
        }
    }

    /// Whether this is HDFS.
    pub fn is_hdfs(&self) -> bool {
        matches!(self, Storage::Hdfs { .. })
    }

    /// Lists a directory, sorted by name; `None` when it does not exist.
    pub async fn list(&self, rel: &str) -> Result<Option<Vec<FileInfo>>, RepoError> {
        let mut entries = match self {
            Storage::Local(root) => {
                let dir = join_local(root, rel);
                let read = match std::fs::read_dir(&dir) {
                    Ok(read) => read,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(self.io(rel, e)),
                };
                let mut entries = Vec::new();
                for entry in read {
                    let entry = entry.map_err(|e| self.io(rel, e))?;
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    // Follows symlinks, so a repository may link to models kept elsewhere.
                    let Ok(meta) = std::fs::metadata(entry.path()) else {
                        continue;
                    };
                    entries.push(FileInfo {
                        name,
                        is_dir: meta.is_dir(),
                        len: if meta.is_dir() { 0 } else { meta.len() },
                        modified_ms: modified_ms(&meta),
                    });
                }
                entries
            }
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                let listed = self.retry(rel, || client.list_status(&path, false)).await;
                match listed {
                    Ok(statuses) => statuses
                        .into_iter()
                        .map(|s| FileInfo {
                            name: s.path.rsplit('/').next().unwrap_or_default().to_string(),
                            is_dir: s.isdir,
                            len: s.length as u64,
                            modified_ms: s.modification_time,
                        })
                        .collect(),
                    Err(RetryError::NotFound) => return Ok(None),
                    Err(RetryError::Failed(e)) => return Err(e),
                }
            }
        };
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(entries))
    }

    /// Reads a small file whole; `None` when it does not exist.
    pub async fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
        match self {
            Storage::Local(root) => match std::fs::read(join_local(root, rel)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.io(rel, e)),
            },
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                let read = self
                    .retry(rel, || async {
                        let reader = client.read(&path).await?;
                        let bytes = reader.read_range(0, reader.file_length()).await?;
                        Ok(bytes.to_vec())
                    })
                    .await;
                match read {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(RetryError::NotFound) => Ok(None),
                    Err(RetryError::Failed(e)) => Err(e),
                }
            }
        }
    }

    /// Copies `rel` into the local file `dest` (created; synced to disk before returning) and
    /// returns its length and sha256 (lowercase hex). An HDFS read that fails midway is resumed
    /// from the last byte written, so a DataNode lost during a download costs a retry, not the
    /// whole file.
    pub async fn download(&self, rel: &str, dest: &Path) -> Result<(u64, String), RepoError> {
        let dest_io = |e: std::io::Error| RepoError::Io {
            path: dest.display().to_string(),
            cause: e.to_string(),
            unreachable: false,
        };
        let mut file = std::fs::File::create(dest).map_err(dest_io)?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        match self {
            Storage::Local(root) => {
                let src = join_local(root, rel);
                let mut input = std::fs::File::open(&src).map_err(|e| self.io(rel, e))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = input.read(&mut buf).map_err(|e| self.io(rel, e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    file.write_all(&buf[..n]).map_err(dest_io)?;
                    written += n as u64;
                }
            }
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                let mut attempts = Attempts::new(self.retry_policy());
                loop {
                    let attempt: Result<(), HdfsError> = async {
                        let reader = client.read(&path).await?;
                        let len = reader.file_length();
                        let start = written as usize;
                        if start > len {
                            return Err(HdfsError::OperationFailed(format!(
                                "file shrank to {len} bytes during the download"
                            )));
                        }
                        let mut stream = reader.read_range_stream(start, len - start);
                        while let Some(chunk) = stream.next().await {
                            let chunk = chunk?;
                            hasher.update(&chunk);
                            file.write_all(&chunk)?;
                            written += chunk.len() as u64;
                        }
                        Ok(())
                    }
                    .await;
                    match attempt {
                        Ok(()) => break,
                        Err(error) => attempts
                            .failed(self, rel, error)
                            .await
                            .map_err(|e| e.into_error(self, rel))?,
                    }
                }
            }
        }
        file.sync_all().map_err(dest_io)?;
        Ok((written, hex(&hasher.finalize())))
    }

    /// Writes a whole file, replacing any previous one; parents are created.
    pub async fn write(&self, rel: &str, data: &[u8]) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => {
                let path = join_local(root, rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| self.io(rel, e))?;
                }
                let mut file = std::fs::File::create(&path).map_err(|e| self.io(rel, e))?;
                file.write_all(data).map_err(|e| self.io(rel, e))?;
                file.sync_all().map_err(|e| self.io(rel, e))
            }
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                let options = WriteOptions::default().overwrite(true).create_parent(true);
                self.retry(rel, || async {
                    let mut writer = client.create(&path, &options).await?;
                    writer
                        .write_bytes(bytes::Bytes::copy_from_slice(data))
                        .await?;
                    writer.close().await
                })
                .await
                .map_err(|e| e.into_error(self, rel))
            }
        }
    }

    /// Creates a directory and its parents.
    pub async fn mkdirs(&self, rel: &str) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => {
                std::fs::create_dir_all(join_local(root, rel)).map_err(|e| self.io(rel, e))
            }
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                self.retry(rel, || client.mkdirs(&path, 0o755, true))
                    .await
                    .map_err(|e| e.into_error(self, rel))
            }
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
            Storage::Local(root) => std::fs::rename(join_local(root, from), join_local(root, to))
                .map_err(|e| self.io(to, e)),
            Storage::Hdfs { client, root, .. } => {
                let (src, dst) = (join_hdfs(root, from), join_hdfs(root, to));
                // Not retried: a rename whose answer was lost may have happened, and a second
                // attempt would then fail confusingly.
                client.rename(&src, &dst, false).await.map_err(|e| {
                    let (_, unreachable) = classify(&e);
                    RepoError::Io {
                        path: self.display(to),
                        cause: format!("rename from {} failed: {e}", self.display(from)),
                        unreachable,
                    }
                })
            }
        }
    }

    /// Deletes a file or directory tree; a missing one is not an error.
    pub async fn delete(&self, rel: &str) -> Result<(), RepoError> {
        match self {
            Storage::Local(root) => {
                let path = join_local(root, rel);
                let result = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                match result {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(rel, e)),
                    _ => Ok(()),
                }
            }
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                match self.retry(rel, || client.delete(&path, true)).await {
                    Ok(_) | Err(RetryError::NotFound) => Ok(()),
                    Err(RetryError::Failed(e)) => Err(e),
                }
            }
        }
    }

    /// Whether `rel` exists (file or directory).
    pub async fn exists(&self, rel: &str) -> Result<bool, RepoError> {
        match self {
            Storage::Local(root) => Ok(join_local(root, rel).exists()),
            Storage::Hdfs { client, root, .. } => {
                let path = join_hdfs(root, rel);
                match self.retry(rel, || client.get_file_info(&path)).await {
                    Ok(_) => Ok(true),
                    Err(RetryError::NotFound) => Ok(false),
                    Err(RetryError::Failed(e)) => Err(e),
                }
            }
        }
    }

    fn io(&self, rel: &str, e: std::io::Error) -> RepoError {
        RepoError::Io {
            path: self.display(rel),
            cause: e.to_string(),
            unreachable: false,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        match self {
            Storage::Hdfs { retry, .. } => *retry,
            Storage::Local(_) => RetryPolicy {
                attempts: 1,
                ..RetryPolicy::default()
            },
        }
    }

    /// Runs an HDFS operation, retrying with backoff while the error is one a retry can cure.
    async fn retry<T, F, Fut>(&self, rel: &str, mut op: F) -> Result<T, RetryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HdfsError>>,
    {
        let mut attempts = Attempts::new(self.retry_policy());
        loop {
            let outcome = tokio::time::timeout(OPERATION_TIMEOUT, op())
                .await
                .unwrap_or_else(|_| {
                    Err(HdfsError::IOError(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {OPERATION_TIMEOUT:?}"),
                    )))
                });
            match outcome {
                Ok(value) => return Ok(value),
                Err(error) => attempts.failed(self, rel, error).await?,
            }
        }
    }
}

/// Counts attempts of one operation and waits between them.
struct Attempts {
    policy: RetryPolicy,
    attempt: u32,
    backoff: Duration,
}

impl Attempts {
    fn new(policy: RetryPolicy) -> Attempts {
        Attempts {
            policy,
            attempt: 1,
            backoff: policy.first_backoff,
        }
    }

    /// After a failed attempt: waits and returns `Ok` when another attempt is worth making,
    /// otherwise the final error.
    async fn failed(
        &mut self,
        storage: &Storage,
        rel: &str,
        error: HdfsError,
    ) -> Result<(), RetryError> {
        if is_not_found(&error) {
            return Err(RetryError::NotFound);
        }
        let (retryable, unreachable) = classify(&error);
        if !retryable || self.attempt >= self.policy.attempts {
            let tries = if self.attempt > 1 {
                format!(" (after {} attempts)", self.attempt)
            } else {
                String::new()
            };
            let hint = if unreachable {
                "; is the NameNode up? (check the URL, and HADOOP_CONF_DIR for name services)"
            } else {
                ""
            };
            return Err(RetryError::Failed(RepoError::Io {
                path: storage.display(rel),
                cause: format!("{error}{tries}{hint}"),
                unreachable,
            }));
        }
        tracing::debug!(path = %storage.display(rel), attempt = self.attempt, %error, "HDFS operation failed; retrying");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.policy.max_backoff);
        self.attempt += 1;
        Ok(())
    }
}

/// The outcome of a retried operation: a missing file is an answer, not a failure.
enum RetryError {
    NotFound,
    Failed(RepoError),
}

impl RetryError {
    fn into_error(self, storage: &Storage, rel: &str) -> RepoError {
        match self {
            RetryError::NotFound => storage.io(rel, std::io::ErrorKind::NotFound.into()),
            RetryError::Failed(e) => e,
        }
    }
}

/// Whether an HDFS error says the path does not exist. Opening a missing file for reading
/// asks the NameNode for its block locations, which fails with a remote
/// `java.io.FileNotFoundException` (an RPC error), not with the crate's own `FileNotFound`.
fn is_not_found(error: &HdfsError) -> bool {
    match error {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) => class.ends_with("FileNotFoundException"),
        _ => false,
    }
}

/// Whether an HDFS error is worth retrying, and whether it means the cluster is unreachable.
fn classify(error: &HdfsError) -> (bool, bool) {
    match error {
        // Connection refused or reset: the NameNode (or a DataNode) is down or restarting.
        HdfsError::IOError(_) => (true, true),
        // DataNode trouble: the next attempt picks other replicas.
        HdfsError::DataTransferError(_)
        | HdfsError::ChecksumError
        | HdfsError::BlocksNotFound(_) => (true, false),
        HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) => {
            let transient = ["SafeMode", "Retriable", "Standby", "Connect", "Timeout"]
                .iter()
                .any(|t| class.contains(t));
            (transient, transient && !class.contains("SafeMode"))
        }
        HdfsError::OperationFailed(message) => {
            let transient = message.contains("DataNode") || message.contains("datanode");
            (transient, false)
        }
        _ => (false, false),
    }
}

fn normalize_root(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("'..' is not allowed in a repository path".into()),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/"))
        .trim_end_matches('/')
        .to_string())
}

fn join_hdfs(root: &str, rel: &str) -> String {
    if rel.is_empty() {
        if root.is_empty() {
            "/".into()
        } else {
            root.into()
        }
    } else {
        format!("{root}/{rel}")
    }
}

fn join_local(root: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

fn modified_ms(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hdfs_urls_and_refuses_escapes() {
        let s = Storage::new("hdfs://127.0.0.1:9000/models//zoo/", RetryPolicy::default()).unwrap();
        assert_eq!(s.display("m/1"), "hdfs://127.0.0.1:9000/models/zoo/m/1");
        let s = Storage::new("hdfs://127.0.0.1:9000", RetryPolicy::default()).unwrap();
        assert_eq!(s.display("m"), "hdfs://127.0.0.1:9000/m");
        let err = Storage::new("hdfs://nn:9000/a/../b", RetryPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("'..'"), "{err}");
        let err = Storage::new("hdfs:///models", RetryPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("no NameNode"), "{err}");
        assert!(
            !Storage::new("/tmp/x", RetryPolicy::default())
                .unwrap()
                .is_hdfs()
        );
    }

    #[test]
    fn a_remote_file_not_found_means_missing() {
        let remote = HdfsError::RPCError(
            "java.io.FileNotFoundException".into(),
            "File does not exist: /m/labels.txt".into(),
        );
        assert!(is_not_found(&remote));
        assert!(is_not_found(&HdfsError::FileNotFound("/m".into())));
        let other = HdfsError::RPCError("org.apache.hadoop.ipc.StandbyException".into(), "".into());
        assert!(!is_not_found(&other));
    }
}
