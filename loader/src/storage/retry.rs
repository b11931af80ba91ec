//! The HDFS retry engine: which errors a retry can cure, and the loop that paces attempts by
//! the shared [`RetryPolicy`](spindle_core::retry::RetryPolicy).

use super::RetryPolicy;
use super::hdfs::HdfsStorage;
use crate::error::{HdfsFailure, RepoError};
use hdfs_native::HdfsError;
use spindle_core::retry::Backoff;
use std::time::Duration;

/// The longest one metadata operation (list, stat, small read or write) may take before it
/// counts as a failed attempt: a hung connection must not stall polling forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs an HDFS operation, retrying with backoff while the error is one a retry can cure.
pub(super) async fn run<T, F, Fut>(
    storage: &HdfsStorage,
    rel: &str,
    mut op: F,
) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, HdfsError>>,
{
    let mut attempts = Attempts::new(storage.retry);
    loop {
        match timed(op()).await {
            Ok(value) => return Ok(value),
            Err(error) => attempts.failed(storage, rel, error).await?,
        }
    }
}

/// `op` under the per-operation timeout: running past it is a failed attempt.
pub(super) async fn timed<T>(
    op: impl Future<Output = Result<T, HdfsError>>,
) -> Result<T, HdfsError> {
    tokio::time::timeout(OPERATION_TIMEOUT, op)
        .await
        .unwrap_or_else(|_| {
            Err(HdfsError::IOError(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {OPERATION_TIMEOUT:?}"),
            )))
        })
}

/// Counts attempts of one operation and waits between them.
pub(super) struct Attempts {
    backoff: Backoff,
}

impl Attempts {
    pub(super) fn new(policy: RetryPolicy) -> Attempts {
        Attempts {
            backoff: policy.backoff(),
        }
    }

    /// After a failed attempt: waits and returns `Ok` when another attempt is worth making,
    /// otherwise the final error.
    pub(super) async fn failed(
        &mut self,
        storage: &HdfsStorage,
        rel: &str,
        error: HdfsError,
    ) -> Result<(), RetryError> {
        if is_not_found(&error) {
            return Err(RetryError::NotFound);
        }
        let (retryable, unreachable) = classify(&error);
        let attempt = self.backoff.attempts_made();
        let wait = if retryable {
            self.backoff.next_wait()
        } else {
            None
        };
        let Some(wait) = wait else {
            let hint = if unreachable {
                let kerberos = super::hdfs::disconnected_hint(&error).unwrap_or_default();
                format!(
                    "; is the NameNode up? (check the URL, and HADOOP_CONF_DIR for name services){kerberos}"
                )
            } else {
                super::hdfs::kerberos_hint(&error).map_or_else(String::new, |h| format!("; {h}"))
            };
            return Err(RetryError::Failed(RepoError::Hdfs {
                path: storage.display(rel),
                cause: HdfsFailure {
                    error,
                    attempts: attempt,
                    unreachable,
                    hint,
                },
            }));
        };
        tracing::debug!(path = %storage.display(rel), attempt, %error, "HDFS operation failed; retrying");
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// The outcome of a retried operation: a missing file is an answer, not a failure.
pub(super) enum RetryError {
    NotFound,
    Failed(RepoError),
}

impl RetryError {
    pub(super) fn into_error(self, storage: &HdfsStorage, rel: &str) -> RepoError {
        match self {
            // Listed a moment ago, gone now: a version being replaced; the next poll sees how.
            RetryError::NotFound => RepoError::Io {
                path: storage.display(rel),
                cause: std::io::ErrorKind::NotFound.into(),
            },
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
pub(super) fn classify(error: &HdfsError) -> (bool, bool) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
