//! Waiting for a discovered deployment's replicas: a client whose endpoints come from a
//! [`Discovery`] (a YARN service's READY containers) does not fail a request just because no
//! replica can be reached for a moment (a `stop`/`start`, a flex to 0, every replica
//! restarting). It asks the discovery again, waits and tries again, until a replica answers
//! or its wait ([`DEFAULT_REPLICA_WAIT`] unless set) has passed; then it fails with what the
//! discovery says about the deployment.
//!
//! Only "nobody there" waits this way: no endpoint known, or every known one refusing the
//! connection. A replica that answers with an error (429, 503) or does not answer in time is
//! retried by the client's retry policy and budget as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A future returned by a [`Discovery`].
pub type Discovered<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a client's endpoints come from, asked again when none of them can be reached.
/// Implemented outside this crate (the YARN discovery of `spindle-deploy`), which is why the
/// client library knows nothing of YARN.
pub trait Discovery: Send + Sync + std::fmt::Debug {
    /// The endpoints ready now (possibly none); `Err` says why they could not be listed.
    fn endpoints(&self) -> Discovered<'_, Result<Vec<String>, String>>;
    /// The deployment's state in a sentence, for the error of a caller that waited in vain:
    /// what it is called, what state it is in, what to do (e.g. "service S is STOPPED; start
    /// it with `spindle yarn start S`").
    fn describe(&self) -> Discovered<'_, String>;
}

/// How long a request waits for a replica of a discovered deployment, by default: longer
/// than a `spindle yarn stop`/`start` takes (about 15 s on our test cluster).
pub const DEFAULT_REPLICA_WAIT: Duration = Duration::from_secs(30);

/// The discovery is asked at most this often, however many callers are waiting.
const ASK_AT_MOST_EVERY: Duration = Duration::from_millis(500);

/// A client's discovery and how long its requests wait for a replica.
#[derive(Debug)]
pub(crate) struct Rediscovery {
    source: Arc<dyn Discovery>,
    /// How long a request may wait for a replica, from its first failure to reach one.
    pub(crate) wait: Duration,
    /// When the discovery was last asked. An async lock: one waiting caller asks at a time,
    /// the others find the answer in the endpoint list when they get the lock.
    asked: tokio::sync::Mutex<Option<Instant>>,
}

impl Rediscovery {
    pub(crate) fn new(source: Arc<dyn Discovery>, wait: Duration) -> Rediscovery {
        Rediscovery {
            source,
            wait,
            asked: tokio::sync::Mutex::new(None),
        }
    }

    /// The endpoints now, unless the discovery was asked moments ago (or failed to answer).
    pub(crate) async fn ask(&self) -> Option<Vec<String>> {
        let mut asked = self.asked.lock().await;
        if asked.is_some_and(|at| at.elapsed() < ASK_AT_MOST_EVERY) {
            return None;
        }
        let found = self.source.endpoints().await;
        *asked = Some(Instant::now());
        match found {
            Ok(urls) => Some(urls),
            Err(e) => {
                tracing::debug!(error = %e, "asking for the replicas again failed");
                None
            }
        }
    }

    /// What the discovery says about the deployment now.
    pub(crate) async fn describe(&self) -> String {
        self.source.describe().await
    }
}

/// One request's waiting: when it started and the pacing of its rounds.
#[derive(Debug, Default)]
pub(crate) struct Waiting {
    since: Option<Instant>,
    rounds: u32,
}

impl Waiting {
    /// Starts (or continues) waiting; how long to pause before the next round, or `None` when
    /// the wait is over. Pauses grow from 100 ms to 800 ms, jittered, so that callers waiting
    /// together do not arrive together.
    pub(crate) fn next_pause(&mut self, wait: Duration) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        let left = wait.checked_sub(since.elapsed())?;
        if left.is_zero() {
            return None;
        }
        let nominal = Duration::from_millis(100 << self.rounds.min(3));
        self.rounds += 1;
        let mut backoff = spindle_core::retry::RetryPolicy::new(2, nominal, nominal).backoff();
        Some(backoff.next_wait().unwrap_or(nominal).min(left))
    }

    /// How long this request has waited.
    pub(crate) fn waited(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Client, ClientError};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A deployment with no replica: lists `urls` (endpoints that refuse), counts the asks.
    #[derive(Debug, Default)]
    struct Gone {
        urls: Vec<String>,
        asked: AtomicU32,
    }

    impl Discovery for Gone {
        fn endpoints(&self) -> Discovered<'_, Result<Vec<String>, String>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(self.urls.clone()) })
        }

        fn describe(&self) -> Discovered<'_, String> {
            Box::pin(async { "service 's' is STOPPED".to_string() })
        }
    }

    /// A port nothing listens on (bound, then released).
    fn refusing() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    }

    async fn wait_in_vain(urls: Vec<String>) -> (ClientError, Duration, u32) {
        let gone = Arc::new(Gone {
            urls: urls.clone(),
            ..Gone::default()
        });
        let client = Client::builder(urls)
            .discovery(gone.clone(), Duration::from_millis(1500))
            .build()
            .unwrap();
        let started = std::time::Instant::now();
        let error = client.model_metadata("m").await.unwrap_err();
        (error, started.elapsed(), gone.asked.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn refused_everywhere_waits_asking_again_then_says_the_state() {
        let (error, took, asked) = wait_in_vain(vec![refusing(), refusing()]).await;
        assert!(
            matches!(&error, ClientError::NoReplica { waited, .. } if *waited >= Duration::from_millis(1500)),
            "{error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("is STOPPED") && message.contains("connection failed"),
            "{message}"
        );
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
            "{took:?}"
        );
        assert!((2..=4).contains(&asked), "asked {asked} times in 1.5 s");
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn no_replica_listed_waits_too() {
        let (error, took, asked) = wait_in_vain(Vec::new()).await;
        assert!(matches!(error, ClientError::NoReplica { .. }), "{error}");
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        assert!(asked >= 2, "asked {asked} times");
    }

    #[tokio::test]
    async fn without_discovery_a_refused_call_fails_as_before() {
        let client = Client::builder([refusing()]).build().unwrap();
        let error = client.model_metadata("m").await.unwrap_err();
        assert!(matches!(error, ClientError::Connection { .. }), "{error}");
    }
}
