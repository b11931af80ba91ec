//! A repository on HDFS, through `hdfs-native` (no JVM). Every operation but rename is retried
//! (see `retry.rs`); a download resumes from the last byte written.
//!
//! Kerberos: with a [`KerberosLogin`] set for the process, every client logs in from that
//! keytab (MIT's GSSAPI, `libgssapi_krb5.so.2`, loaded at run time by `hdfs-native`, keeps the
//! ticket in a private in-memory cache and gets a new one from the keytab when it expires, so a
//! long-running `serve` stays logged in); without one, a secured cluster is reached with the
//! ticket cache of `kinit` (`KRB5CCNAME`). An authentication failure is never retried.

use super::namenode::NamenodeClient;
use super::retry::{self, Attempts, RetryError, classify};
use super::sink::FileSink;
use super::{FileInfo, RetryPolicy};
use crate::error::{HdfsFailure, RepoError};
use futures::StreamExt;
use hdfs_native::{HdfsError, WriteOptions};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// How much of a local file [`HdfsStorage::upload`] reads before sending it on: what an
/// upload holds, besides the HDFS writer's own packet queue.
pub const UPLOAD_CHUNK: usize = 1 << 20;

/// A Kerberos identity from a keytab, for every HDFS client (and the ResourceManager's SPNEGO)
/// of this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosLogin {
    /// The keytab file.
    pub keytab: PathBuf,
    /// The principal to log in as, e.g. `spindle@EXAMPLE.COM` (its key must be in the keytab).
    pub principal: String,
}

static KERBEROS_LOGIN: OnceLock<KerberosLogin> = OnceLock::new();

/// Makes every HDFS client created from now on log in as `login.principal` from `login.keytab`.
/// Set once, at start-up, before any repository is opened: a process has one identity. The
/// keytab must be a readable file; whether it holds the principal's key shows at the first call.
pub fn set_kerberos_login(login: KerberosLogin) -> Result<(), String> {
    if login.principal.trim().is_empty() {
        return Err("--principal is empty: name the Kerberos principal whose key the keytab holds, e.g. spindle@EXAMPLE.COM".into());
    }
    if let Err(e) = File::open(&login.keytab) {
        return Err(format!(
            "--keytab {}: cannot read it ({e}); expected a Kerberos keytab file",
            login.keytab.display()
        ));
    }
    let wanted = login.clone();
    KERBEROS_LOGIN.set(login).or_else(|_| {
        if kerberos_login() == Some(&wanted) {
            Ok(())
        } else {
            Err("a different Kerberos login is already set for this process".into())
        }
    })
}

/// The process's Kerberos login, if [`set_kerberos_login`] set one.
pub fn kerberos_login() -> Option<&'static KerberosLogin> {
    KERBEROS_LOGIN.get()
}

/// For a connection closed on us: a NameNode that requires Kerberos closes it, without an
/// answer, when a client offers none, and a DataNode that requires SASL resets it; a crashed
/// or restarting daemon does too, so this is a hint, not a diagnosis.
pub(super) fn disconnected_hint(error: &HdfsError) -> Option<&'static str> {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset};
    match error {
        HdfsError::IOError(e) if matches!(e.kind(), ConnectionAborted | ConnectionReset) => Some(
            "; if the cluster is secured with Kerberos, its NameNode closes and its DataNodes reset connections that do not speak its security: set HADOOP_CONF_DIR to the cluster's configuration (hadoop.security.authentication, dfs.data.transfer.protection) and kinit, or pass --keytab FILE --principal NAME",
        ),
        _ => None,
    }
}

/// What to do about an error that says Kerberos authentication failed; `None` for any other
/// error. Such an error is never cured by a retry (see `retry::classify`).
pub(super) fn kerberos_hint(error: &HdfsError) -> Option<String> {
    let auth_failed = match error {
        HdfsError::GSSAPIError(..) | HdfsError::SASLError(_) | HdfsError::NoSASLMechanism => true,
        HdfsError::RPCError(class, message) | HdfsError::FatalRPCError(class, message) => {
            class.ends_with("AccessControlException")
                && (message.contains("authenticat") || message.contains("KERBEROS"))
        }
        _ => false,
    };
    if !auth_failed {
        return None;
    }
    Some(match kerberos_login() {
        Some(login) => format!(
            "Kerberos authentication to HDFS failed logging in as {} from the keytab {}: check that the keytab holds that principal's current key (klist -kt {}), and KRB5_CONFIG for the realm's KDC",
            login.principal,
            login.keytab.display(),
            login.keytab.display()
        ),
        None => "Kerberos authentication to HDFS failed: this cluster needs Kerberos credentials; get a ticket with `kinit PRINCIPAL` (see klist), or pass --keytab FILE --principal NAME".into(),
    })
}

/// A directory on HDFS: one shared NameNode client and the retry settings for it.
#[derive(Clone, Debug)]
pub struct HdfsStorage {
    /// Replaced after a call timed out (see `namenode.rs`).
    pub(super) client: NamenodeClient,
    /// `hdfs://authority` (host:port or a name service from `HADOOP_CONF_DIR`).
    base: String,
    /// The root directory's absolute path on HDFS, without a trailing '/'.
    root: String,
    pub(super) retry: RetryPolicy,
}

impl HdfsStorage {
    /// Storage for an `hdfs://` or `viewfs://` location; nothing is contacted yet.
    pub(super) fn new(location: &str, retry: RetryPolicy) -> Result<HdfsStorage, RepoError> {
        let root_error = |cause: String| RepoError::Root {
            location: location.to_string(),
            cause,
        };
        let (scheme, rest) = location
            .split_once("://")
            .expect("checked by storage::is_hdfs");
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
        let client = NamenodeClient::new(&base)
            .map_err(|e| root_error(format!("cannot create an HDFS client: {e}")))?;
        Ok(HdfsStorage {
            client,
            base,
            root,
            retry,
        })
    }

    /// The full URL of `rel`, for messages.
    pub(super) fn display(&self, rel: &str) -> String {
        format!("{}{}", self.base, self.path(rel))
    }

    /// The absolute HDFS path of `rel`.
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            if self.root.is_empty() {
                "/".into()
            } else {
                self.root.clone()
            }
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// Unsorted: the caller sorts every backend's listing the same way.
    pub(super) async fn list(&self, rel: &str) -> Result<Option<Vec<FileInfo>>, RepoError> {
        let path = &self.path(rel);
        let listed = retry::run(
            self,
            rel,
            |c| async move { c.list_status(path, false).await },
        )
        .await;
        match listed {
            Ok(statuses) => Ok(Some(
                statuses
                    .into_iter()
                    .map(|s| FileInfo {
                        name: s.path.rsplit('/').next().unwrap_or_default().to_string(),
                        is_dir: s.isdir,
                        len: s.length as u64,
                        modified_ms: s.modification_time,
                    })
                    .collect(),
            )),
            Err(RetryError::NotFound) => Ok(None),
            Err(RetryError::Failed(e)) => Err(e),
        }
    }

    pub(super) async fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let path = &self.path(rel);
        let read = retry::run(self, rel, |c| async move {
            let reader = c.read(path).await?;
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

    /// Copies `rel` into the new local file `dest` and returns its length and sha256; the
    /// file is written, hashed and synced on a blocking thread (`sink.rs`). A failed attempt
    /// resumes where the last one stopped. Not under the per-operation timeout: a large model
    /// may rightly take longer.
    pub(super) async fn download(
        &self,
        rel: &str,
        dest: &Path,
    ) -> Result<(u64, String), RepoError> {
        let path = &self.path(rel);
        let sink = FileSink::create(dest);
        let mut written: u64 = 0;
        let mut attempts = Attempts::new(self.retry);
        loop {
            let attempt: Result<bool, HdfsError> = async {
                // Opening asks the NameNode, under the attempt timeout; the blocks' bytes
                // come from DataNodes under hdfs-native's socket timeout.
                let reader = retry::timed(self, retry::ATTEMPT_TIMEOUT, |c| async move {
                    c.read(path).await
                })
                .await?;
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
                    let n = chunk.len() as u64;
                    if !sink.send(chunk).await {
                        // The local file failed: `finish` says how. No HDFS retry cures that.
                        return Ok(false);
                    }
                    written += n;
                }
                Ok(true)
            }
            .await;
            match attempt {
                Ok(_) => return sink.finish().await,
                Err(error) => {
                    if let Err(e) = attempts.failed(self, rel, error).await {
                        // The writer must be done with the file before the caller removes it.
                        let _ = sink.finish().await;
                        return Err(e.into_error(self, rel));
                    }
                }
            }
        }
    }

    pub(super) async fn write(&self, rel: &str, data: &[u8]) -> Result<(), RepoError> {
        let path = &self.path(rel);
        let options = &WriteOptions::default().overwrite(true).create_parent(true);
        retry::run(self, rel, |c| async move {
            let mut writer = c.create(path, options).await?;
            writer
                .write_bytes(bytes::Bytes::copy_from_slice(data))
                .await?;
            writer.close().await
        })
        .await
        .map_err(|e| e.into_error(self, rel))
    }

    /// Uploads the local file `src` to `rel` (replacing it; parents created), read and sent
    /// [`UPLOAD_CHUNK`] bytes at a time, so memory stays bounded however large the file is
    /// (a scorer's part can be gigabytes). A failed attempt starts over from the file's first
    /// byte (the writer replaces what an earlier attempt left). Not under the per-operation
    /// timeout as a whole, which a large file may rightly exceed; each chunk is.
    pub(super) async fn upload(&self, rel: &str, src: &Path) -> Result<u64, RepoError> {
        let path = self.path(rel);
        let options = WriteOptions::default().overwrite(true).create_parent(true);
        let mut attempts = Attempts::new(self.retry);
        loop {
            let (src_path, mut sent) = (src.to_path_buf(), 0u64);
            let mut file = Some(
                super::blocking(move || {
                    File::open(&src_path).map_err(|e| RepoError::io(&src_path, e))
                })
                .await?,
            );
            let attempt: Result<(), Result<HdfsError, RepoError>> = async {
                let (path, options) = (&path, &options);
                let mut writer = retry::timed(self, retry::ATTEMPT_TIMEOUT, |c| async move {
                    c.create(path, options).await
                })
                .await
                .map_err(Ok)?;
                loop {
                    // The local read runs on the blocking pool, one chunk at a time.
                    let (mut taken, src_path) =
                        (file.take().expect("put back below"), src.to_path_buf());
                    let (chunk, back) = super::blocking(move || {
                        let mut chunk = Vec::with_capacity(UPLOAD_CHUNK);
                        (&mut taken)
                            .take(UPLOAD_CHUNK as u64)
                            .read_to_end(&mut chunk)
                            .map_err(|e| RepoError::io(&src_path, e))?;
                        Ok((chunk, taken))
                    })
                    .await
                    .map_err(Err)?;
                    file = Some(back);
                    if chunk.is_empty() {
                        break;
                    }
                    sent += chunk.len() as u64;
                    retry::bounded(
                        retry::ATTEMPT_TIMEOUT,
                        writer.write_bytes(bytes::Bytes::from(chunk)),
                    )
                    .await
                    .map_err(Ok)?;
                }
                retry::bounded(retry::ATTEMPT_TIMEOUT, writer.close())
                    .await
                    .map_err(Ok)
            }
            .await;
            match attempt {
                Ok(()) => return Ok(sent),
                Err(Err(local)) => return Err(local),
                Err(Ok(error)) => {
                    if let Err(e) = attempts.failed(self, rel, error).await {
                        return Err(e.into_error(self, rel));
                    }
                }
            }
        }
    }

    pub(super) async fn mkdirs(&self, rel: &str) -> Result<(), RepoError> {
        let path = &self.path(rel);
        retry::run(
            self,
            rel,
            |c| async move { c.mkdirs(path, 0o755, true).await },
        )
        .await
        .map_err(|e| e.into_error(self, rel))
    }

    pub(super) async fn rename(&self, from: &str, to: &str) -> Result<(), RepoError> {
        let (src, dst) = (self.path(from), self.path(to));
        // Not retried: a rename whose answer was lost may have happened, and a second attempt
        // would then fail confusingly.
        let renamed = retry::timed(self, retry::ATTEMPT_TIMEOUT, |c| async move {
            c.rename(&src, &dst, false).await
        });
        renamed.await.map_err(|e| {
            let (_, unreachable) = classify(&e);
            let hint = kerberos_hint(&e).map_or_else(String::new, |h| format!("; {h}"));
            RepoError::Hdfs {
                path: self.display(to),
                cause: HdfsFailure {
                    error: e,
                    attempts: 1,
                    unreachable,
                    hint: format!(" (renaming {} to it){hint}", self.display(from)),
                },
            }
        })
    }

    pub(super) async fn delete(&self, rel: &str) -> Result<(), RepoError> {
        let path = &self.path(rel);
        match retry::run(self, rel, |c| async move { c.delete(path, true).await }).await {
            Ok(_) | Err(RetryError::NotFound) => Ok(()),
            Err(RetryError::Failed(e)) => Err(e),
        }
    }

    pub(super) async fn exists(&self, rel: &str) -> Result<bool, RepoError> {
        let path = &self.path(rel);
        match retry::run(self, rel, |c| async move { c.get_file_info(path).await }).await {
            Ok(_) => Ok(true),
            Err(RetryError::NotFound) => Ok(false),
            Err(RetryError::Failed(e)) => Err(e),
        }
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
