//! The HDFS retry engine: which errors a retry can cure, and the loop that paces attempts by
//! the shared [`RetryPolicy`](spindle_core::retry::RetryPolicy).

use super::RetryPolicy;
use super::hdfs::HdfsStorage;
use crate::error::{HdfsFailure, RepoError};
use hdfs_native::{Client, HdfsError};
use spindle_core::retry::Backoff;
use std::time::Duration;
use tokio::time::Instant;

/// The longest one attempt at a metadata operation (list, stat, small read or write) may take
/// before it counts as failed. A timed-out attempt also replaces the client, whose NameNode
/// connection may be the hung one (`namenode.rs`).
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest one retried metadata operation may take, all its attempts and waits included:
/// a poll stuck on an unreachable NameNode fails (and says so in the log) within about this
/// long, rather than after every attempt has waited out its own timeout.
pub(super) const OPERATION_BUDGET: Duration = Duration::from_secs(20);

/// Runs an HDFS operation, retrying with backoff while the error is one a retry can cure and
/// the operation's [`OPERATION_BUDGET`] lasts. `op` gets the client to use for each attempt.
pub(super) async fn run<T, F, Fut>(
    storage: &HdfsStorage,
    rel: &str,
    mut op: F,
) -> Result<T, RetryError>
where
    F: FnMut(Client) -> Fut,
    Fut: Future<Output = Result<T, HdfsError>>,
{
    let mut attempts = Attempts::within(storage.retry, OPERATION_BUDGET);
    loop {
        match timed(storage, attempts.attempt_limit(), &mut op).await {
            Ok(value) => return Ok(value),
            Err(error) => attempts.failed(storage, rel, error).await?,
        }
    }
}

/// One attempt, given up after `limit`; a timeout replaces the storage's client, so that the
/// next attempt does not wait on the same connection.
pub(super) async fn timed<T, Fut>(
    storage: &HdfsStorage,
    limit: Duration,
    op: impl FnOnce(Client) -> Fut,
) -> Result<T, HdfsError>
where
    Fut: Future<Output = Result<T, HdfsError>>,
{
    let (generation, client) = storage.client.get();
    let outcome = tokio::time::timeout(limit, op(client)).await;
    if outcome.is_err() {
        storage.client.replace(generation);
    }
    outcome.unwrap_or_else(|_| Err(timed_out(limit)))
}

/// `op` (a step that talks to DataNodes, not the NameNode: no client to replace) given up
/// after `limit`.
pub(super) async fn bounded<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, HdfsError>>,
) -> Result<T, HdfsError> {
    tokio::time::timeout(limit, op)
        .await
        .unwrap_or_else(|_| Err(timed_out(limit)))
}

fn timed_out(limit: Duration) -> HdfsError {
    HdfsError::IOError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {limit:?}"),
    ))
}

/// Counts attempts of one operation and waits between them, within an optional time budget.
pub(super) struct Attempts {
    backoff: Backoff,
    /// When the operation started and how long it may take in all (`None`: no limit).
    budget: Option<(Instant, Duration)>,
}

impl Attempts {
    /// Attempts paced by `policy`, as many as it allows however long they take.
    pub(super) fn new(policy: RetryPolicy) -> Attempts {
        Attempts {
            backoff: policy.backoff(),
            budget: None,
        }
    }

    /// Attempts paced by `policy`, none started (nor waited for) after `budget` has passed.
    pub(super) fn within(policy: RetryPolicy, budget: Duration) -> Attempts {
        Attempts {
            backoff: policy.backoff(),
            budget: Some((Instant::now(), budget)),
        }
    }

    /// How long the next attempt may take: [`ATTEMPT_TIMEOUT`], or what is left of the budget.
    pub(super) fn attempt_limit(&self) -> Duration {
        self.left().map_or(ATTEMPT_TIMEOUT, |left| {
            left.clamp(Duration::from_millis(1), ATTEMPT_TIMEOUT)
        })
    }

    /// What is left of the budget (`None`: no budget).
    fn left(&self) -> Option<Duration> {
        self.budget
            .map(|(started, budget)| budget.saturating_sub(started.elapsed()))
    }

    /// After a failed attempt: waits and returns `Ok` when another attempt is worth making
    /// (a retryable error, attempts left, and the wait and some of the attempt fit in the
    /// budget), otherwise the final error.
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
        let wait = wait.filter(|wait| self.left().is_none_or(|left| *wait < left));
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

    fn storage() -> HdfsStorage {
        // Port 9 (discard): nothing is contacted by these tests, the operations are stand-ins.
        HdfsStorage::new("hdfs://127.0.0.1:9/repo", super::super::HDFS_RETRY).unwrap()
    }

    fn refused() -> HdfsError {
        HdfsError::IOError(std::io::ErrorKind::ConnectionRefused.into())
    }

    fn failure(outcome: Result<(), RetryError>) -> HdfsFailure {
        match outcome {
            Err(RetryError::Failed(RepoError::Hdfs { cause, .. })) => cause,
            Err(RetryError::Failed(other)) => panic!("not an HDFS failure: {other}"),
            Err(RetryError::NotFound) => panic!("not found"),
            Ok(()) => panic!("succeeded"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_attempt_leaves_the_next_one_a_new_client() {
        let storage = storage();
        let started = Instant::now();
        let mut calls = 0;
        let outcome = run(&storage, "m", |_client| {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    // The hung connection: no answer, ever.
                    std::future::pending::<()>().await;
                }
                Err::<(), _>(refused())
            }
        })
        .await;
        let cause = failure(outcome);
        assert_eq!(calls, 5, "every attempt of the policy was made");
        assert_eq!(cause.attempts, 5);
        assert!(cause.unreachable, "{cause}");
        assert_eq!(
            storage.client.generation(),
            1,
            "one new client, after the timeout"
        );
        let took = started.elapsed();
        assert!(
            took >= ATTEMPT_TIMEOUT && took < OPERATION_BUDGET,
            "took {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_never_answered_fails_within_its_budget() {
        let storage = storage();
        let started = Instant::now();
        let outcome = run(&storage, "m", |_client| {
            std::future::pending::<Result<(), _>>()
        })
        .await;
        let cause = failure(outcome);
        let took = started.elapsed();
        assert!(took <= OPERATION_BUDGET, "took {took:?}");
        assert_eq!(
            cause.attempts, 2,
            "the second attempt got what was left: {cause}"
        );
        assert!(cause.to_string().contains("no answer within"), "{cause}");
        assert_eq!(storage.client.generation(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_budget_every_attempt_is_made() {
        let storage = storage();
        let mut attempts = Attempts::new(storage.retry);
        let mut made = 1;
        while attempts.failed(&storage, "m", refused()).await.is_ok() {
            made += 1;
        }
        assert_eq!(made, storage.retry.max_attempts);
        assert_eq!(attempts.attempt_limit(), ATTEMPT_TIMEOUT);
    }
}
