//! [`Client`]: several endpoints, round-robin, retries with backoff.

use crate::discovery::{Discovery, Rediscovery, Waiting};
use crate::grpc::GrpcTransport;
use crate::http::HttpTransport;
use crate::security::{ClientSecurity, Credentials};
use crate::types::{ClientError, InferRequest, InferResponse, ModelMetadata, Protocol};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// How long an endpoint that failed to connect is passed over (unless no other is left).
pub const EJECT_FOR: Duration = Duration::from_secs(2);

use spindle_core::retry::RetryBudget;
pub use spindle_core::retry::RetryPolicy;

/// Retries allowed per call made, across a client's calls (linkerd's default share): a server
/// that keeps failing sees its callers' retries dry up rather than multiply its load.
pub const RETRY_BUDGET_RATIO: f64 = 0.2;

/// Unspent retries a client may bank: enough for a burst of failures (a replica going away
/// under many callers) to be retried in full.
pub const RETRY_BUDGET_CAP: f64 = 100.0;

/// The retry policy a [`Client`] starts with: five attempts in all (the first and four
/// retries), waiting 25 ms before the first retry and doubling up to 2 s.
pub const DEFAULT_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(25), Duration::from_secs(2));

#[derive(Clone, Debug)]
enum Transport {
    Http(HttpTransport),
    Grpc(GrpcTransport),
}

impl Transport {
    fn url(&self) -> &str {
        match self {
            Transport::Http(t) => t.url(),
            Transport::Grpc(t) => t.url(),
        }
    }
}

/// Builds a [`Client`].
#[derive(Debug)]
pub struct ClientBuilder {
    urls: Vec<String>,
    default_protocol: Protocol,
    timeout: Duration,
    retry: RetryPolicy,
    max_message: usize,
    security: ClientSecurity,
    rediscovery: Option<Rediscovery>,
}

impl ClientBuilder {
    /// TLS files and a bearer token (default: plain connections, no token).
    pub fn security(mut self, security: ClientSecurity) -> Self {
        self.security = security;
        self
    }

    /// Protocol for URLs given without a scheme (`host:port`); `http://` and `grpc://` URLs
    /// say their own.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.default_protocol = protocol;
        self
    }

    /// Per-attempt timeout (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry policy (default [`DEFAULT_RETRY`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Largest gRPC message sent or received (default 64 MiB).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// Replaces the endpoint list (discovery builds with the endpoints it found).
    pub fn with_urls(mut self, urls: Vec<String>) -> Self {
        self.urls = urls;
        self
    }

    /// Endpoints that come from `source` (a deployment's discovery): a request that can reach
    /// none of them asks `source` again and waits up to `wait` for a replica, rather than
    /// failing at once (see [`crate::discovery`]). The endpoint list may then start empty.
    pub fn discovery(mut self, source: Arc<dyn Discovery>, wait: Duration) -> Self {
        self.rediscovery = Some(Rediscovery::new(source, wait));
        self
    }

    /// The client; fails on an empty or malformed endpoint list (an empty one is allowed with
    /// a [`ClientBuilder::discovery`]).
    pub fn build(self) -> Result<Client, ClientError> {
        if self.urls.is_empty() && self.rediscovery.is_none() {
            return Err(ClientError::Config(
                "no endpoints given (pass at least one URL like http://127.0.0.1:8000)".into(),
            ));
        }
        let settings = TransportSettings {
            default_protocol: self.default_protocol,
            max_message: self.max_message,
            credentials: self.security.load()?,
        };
        let endpoints = self
            .urls
            .iter()
            .map(|url| transport(url, &settings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: RwLock::new(Arc::new(endpoints)),
                settings,
                ejected: Mutex::new(HashMap::new()),
                next: AtomicUsize::new(0),
                timeout: self.timeout,
                retry: self.retry,
                budget: RetryBudget::new(RETRY_BUDGET_RATIO, RETRY_BUDGET_CAP),
                rediscovery: self.rediscovery,
            }),
        })
    }
}

/// What every transport of a client is built with.
#[derive(Debug)]
struct TransportSettings {
    default_protocol: Protocol,
    max_message: usize,
    credentials: Credentials,
}

/// One endpoint URL (`http://`, `https://`, `grpc://`, `grpcs://` or bare `host:port`) as a
/// transport. A bare `host:port` uses TLS when a CA was given; a plain-text scheme with a CA
/// given is refused rather than silently sent in clear.
fn transport(url: &str, settings: &TransportSettings) -> Result<Transport, ClientError> {
    let url = url.trim();
    let tls_configured = settings.credentials.http_tls.is_some();
    let (protocol, tls, rest) = if let Some(rest) = url.strip_prefix("grpc://") {
        (Protocol::Grpc, false, rest)
    } else if let Some(rest) = url.strip_prefix("grpcs://") {
        (Protocol::Grpc, true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Protocol::Http, false, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Protocol::Http, true, rest)
    } else if url.contains("://") {
        return Err(ClientError::Config(format!(
            "{url}: unsupported scheme (use http://, https://, grpc:// or grpcs://, then HOST:PORT)"
        )));
    } else {
        (settings.default_protocol, tls_configured, url)
    };
    if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
        return Err(ClientError::Config(format!(
            "{url}: expected HOST:PORT after the scheme"
        )));
    }
    if tls && !tls_configured {
        return Err(ClientError::Config(format!(
            "{url}: TLS needs the CA that signed the server's certificate (--ca-cert FILE)"
        )));
    }
    if !tls && tls_configured {
        return Err(ClientError::Config(format!(
            "{url}: a plain-text URL while a CA is given; use https:// or grpcs:// (or a bare HOST:PORT)"
        )));
    }
    let base = format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        rest.trim_end_matches('/')
    );
    let credentials = &settings.credentials;
    Ok(match protocol {
        Protocol::Http => Transport::Http(HttpTransport::new(&base, credentials)),
        Protocol::Grpc => Transport::Grpc(GrpcTransport::new(
            &base,
            settings.max_message,
            credentials,
        )?),
    })
}

#[derive(Debug)]
pub(crate) struct Inner {
    // Replaced as a whole when discovery finds a new set; callers take a snapshot per attempt,
    // so a refresh never blocks or breaks a request in flight. A std lock: held for a clone only.
    endpoints: RwLock<Arc<Vec<Transport>>>,
    settings: TransportSettings,
    // Endpoints that failed to connect, skipped until the instant given (passive health
    // checking, as Envoy's outlier detection does), so load moves off a dead replica at once.
    ejected: Mutex<HashMap<String, Instant>>,
    next: AtomicUsize,
    timeout: Duration,
    retry: RetryPolicy,
    // Shared by every clone: retries across all of this client's calls stay a share of them.
    budget: RetryBudget,
    // With discovered endpoints: asked again while no replica can be reached.
    rediscovery: Option<Rediscovery>,
}

/// A KServe v2 client over one or more endpoints (the replicas of a deployment). Cheap to
/// clone; clones share connections and the round-robin position.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

/// A [`Client`] handle that does not keep it alive; see [`Client::downgrade`].
#[derive(Clone)]
pub struct WeakClient(Weak<Inner>);

impl Client {
    /// A builder for these endpoints (`http://host:port`, `grpc://host:port`, or `host:port`).
    pub fn builder<I, S>(urls: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            urls: urls.into_iter().map(Into::into).collect(),
            default_protocol: Protocol::Http,
            timeout: Duration::from_secs(30),
            retry: DEFAULT_RETRY,
            max_message: 64 << 20,
            security: ClientSecurity::default(),
            rediscovery: None,
        }
    }

    /// The endpoints' URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .map(|t| t.url().to_string())
            .collect()
    }

    /// Runs one inference: the next endpoint in turn; on a retryable failure (429, 503,
    /// connection, timeout) backs off and tries the following endpoint, up to the retry policy.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResponse, ClientError> {
        // Each attempt borrows the request: a Criteo batch is 1.4 MB of ids, and copying it per
        // attempt was a twentieth of the batch scorer's CPU.
        self.with_retries(|t| async move {
            match t {
                Transport::Http(h) => h.infer(request).await,
                Transport::Grpc(g) => g.infer(request).await,
            }
        })
        .await
    }

    /// A model's metadata.
    pub async fn model_metadata(&self, model: &str) -> Result<ModelMetadata, ClientError> {
        self.with_retries(|t| {
            let model = model.to_string();
            async move {
                match t {
                    Transport::Http(h) => h.model_metadata(&model).await,
                    Transport::Grpc(g) => g.model_metadata(&model).await,
                }
            }
        })
        .await
    }

    /// A model's configuration (`GET /v2/models/{m}/config`, a Spindle extension), from the
    /// first HTTP endpoint: gRPC has no such call.
    pub async fn model_config(&self, model: &str) -> Result<serde_json::Value, ClientError> {
        let endpoints = self.snapshot();
        let http = endpoints
            .iter()
            .find_map(|t| match t {
                Transport::Http(h) => Some(h.clone()),
                Transport::Grpc(_) => None,
            })
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "reading model {model}'s config needs an http:// or https:// endpoint"
                ))
            })?;
        match tokio::time::timeout(self.inner.timeout, http.model_config(model)).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout {
                endpoint: http.url().to_string(),
                timeout: self.inner.timeout,
            }),
        }
    }

    /// Readiness of every endpoint, in order (`Err` for unreachable ones).
    pub async fn ready(&self) -> Vec<Result<bool, ClientError>> {
        let endpoints = self.snapshot();
        let mut out = Vec::with_capacity(endpoints.len());
        for t in endpoints.iter() {
            let call = async {
                match t {
                    Transport::Http(h) => h.server_ready().await,
                    Transport::Grpc(g) => g.server_ready().await,
                }
            };
            out.push(match tokio::time::timeout(self.inner.timeout, call).await {
                Ok(r) => r,
                Err(_) => Err(ClientError::Timeout {
                    endpoint: t.url().to_string(),
                    timeout: self.inner.timeout,
                }),
            });
        }
        out
    }

    fn snapshot(&self) -> Arc<Vec<Transport>> {
        self.inner
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the endpoint list (discovery): transports of URLs already known are kept, with
    /// their open connections; an empty list is allowed and makes calls wait and retry.
    pub fn set_endpoints(&self, urls: &[String]) -> Result<(), ClientError> {
        let current = self.snapshot();
        let next = urls
            .iter()
            .map(|url| {
                let fresh = transport(url, &self.inner.settings)?;
                Ok(current
                    .iter()
                    .find(|t| t.url() == fresh.url())
                    .cloned()
                    .unwrap_or(fresh))
            })
            .collect::<Result<Vec<_>, ClientError>>()?;
        *self
            .inner
            .endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// A handle that does not keep the client alive (for background refreshers, such as
    /// deployment discovery, that must stop when the last caller drops the client).
    pub fn downgrade(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }

    /// The client behind a [`Client::downgrade`] handle, while any clone is alive.
    pub fn upgrade(weak: &WeakClient) -> Option<Client> {
        weak.0.upgrade().map(|inner| Client { inner })
    }

    /// The next endpoint in turn, preferring one this call has not tried yet and that has
    /// not failed to connect lately: a dead replica then costs a caller at most one attempt,
    /// instead of being drawn again by round-robin for each retry.
    fn pick(&self, endpoints: &[Transport], tried: &[String]) -> Transport {
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let ejected = self.inner.ejected.lock().unwrap_or_else(|e| e.into_inner());
        let usable = |t: &Transport| {
            !tried.iter().any(|u| u == t.url())
                && ejected.get(t.url()).is_none_or(|until| *until <= now)
        };
        let fresh = |t: &Transport| !tried.iter().any(|u| u == t.url());
        let n = endpoints.len();
        let order = (0..n).map(|k| &endpoints[(start + k) % n]);
        order
            .clone()
            .find(|t| usable(t))
            .or_else(|| order.clone().find(|t| fresh(t)))
            .unwrap_or(&endpoints[start % n])
            .clone()
    }

    /// Skips `url` for [`EJECT_FOR`] after a connection failure or timeout.
    fn eject(&self, url: &str) {
        let mut ejected = self.inner.ejected.lock().unwrap_or_else(|e| e.into_inner());
        ejected.insert(url.to_string(), Instant::now() + EJECT_FOR);
    }

    fn reinstate(&self, url: &str) {
        let mut ejected = self.inner.ejected.lock().unwrap_or_else(|e| e.into_inner());
        if !ejected.is_empty() {
            ejected.remove(url);
        }
    }

    async fn with_retries<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: Fn(Transport) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let inner = &self.inner;
        let mut backoff = inner.retry.backoff();
        inner.budget.deposit();
        let mut tried: Vec<String> = Vec::new();
        let mut waiting = Waiting::default();
        loop {
            let endpoints = self.snapshot();
            let (url, result) = if endpoints.is_empty() {
                // Discovery found no ready replica (all restarting, or flexed to 0): retryable,
                // the next refresh may find one.
                let e = ClientError::Connection {
                    endpoint: "(discovered endpoints)".into(),
                    message: "no ready replica is known right now".into(),
                };
                (String::new(), Err(e))
            } else {
                let transport = self.pick(&endpoints, &tried);
                let url = transport.url().to_string();
                let result = match tokio::time::timeout(inner.timeout, call(transport)).await {
                    Ok(r) => r,
                    Err(_) => Err(ClientError::Timeout {
                        endpoint: url.clone(),
                        timeout: inner.timeout,
                    }),
                };
                match &result {
                    Ok(_) => self.reinstate(&url),
                    Err(ClientError::Connection { .. } | ClientError::Timeout { .. }) => {
                        self.eject(&url)
                    }
                    Err(_) => {}
                }
                tried.push(url.clone());
                (url, result)
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            if let Some(rediscovery) = &inner.rediscovery
                && matches!(error, ClientError::Connection { .. })
            {
                if !self.all_tried(&endpoints, &tried) {
                    continue;
                }
                self.wait_for_replica(rediscovery, &mut waiting, error)
                    .await?;
                tried.clear();
                continue;
            }
            let attempt = backoff.attempts_made();
            let Some(next) = backoff.next_wait() else {
                return Err(error);
            };
            if !inner.budget.withdraw() {
                tracing::debug!(endpoint = %url, attempt, error = %error, "retry budget spent; not retrying");
                return Err(error);
            }
            // The server's Retry-After wins when it asks for longer than our own backoff.
            let wait = match &error {
                ClientError::Server {
                    retry_after: Some(after),
                    ..
                } => (*after).max(next),
                _ => next,
            }
            .min(inner.retry.max_backoff);
            tracing::debug!(endpoint = %url, attempt, ?wait, error = %error, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Whether every known endpoint was tried by this call or failed to connect lately.
    fn all_tried(&self, endpoints: &[Transport], tried: &[String]) -> bool {
        let now = Instant::now();
        let ejected = self.inner.ejected.lock().unwrap_or_else(|e| e.into_inner());
        endpoints.iter().all(|t| {
            tried.iter().any(|u| u == t.url())
                || ejected.get(t.url()).is_some_and(|until| *until > now)
        })
    }

    /// No replica could be reached (`error` says how the last attempt failed): asks the
    /// discovery again and pauses; the wait's final error once the client's wait has passed.
    async fn wait_for_replica(
        &self,
        rediscovery: &Rediscovery,
        waiting: &mut Waiting,
        error: ClientError,
    ) -> Result<(), ClientError> {
        let Some(pause) = waiting.next_pause(rediscovery.wait) else {
            return Err(ClientError::NoReplica {
                waited: waiting.waited(),
                state: rediscovery.describe().await,
                last: error.to_string(),
            });
        };
        if let Some(urls) = rediscovery.ask().await
            && let Err(e) = self.set_endpoints(&urls)
        {
            tracing::warn!(error = %e, "ignoring an unusable replica list");
        }
        tracing::debug!(?pause, error = %error, "no replica reachable; waiting for one");
        tokio::time::sleep(pause).await;
        Ok(())
    }
}
