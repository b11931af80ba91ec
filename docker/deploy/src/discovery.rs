//! Discovery of a deployment's replicas from YARN: the READY containers of a YARN service
//! become the client's endpoints, refreshed in the background so a flex up or down, or a
//! replica restarting on another node, is followed. Between refreshes the client's retries
//! carry requests over a replica that has just gone.

use crate::yarn::rm::{ResourceManager, YarnError, default_user, split_service_url};
use spindle_client::{Client, ClientBuilder, ClientError, Discovered, Discovery};
use std::sync::Arc;
use std::time::Duration;

/// Why discovery could not produce a client.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The ResourceManager call failed.
    #[error(transparent)]
    Yarn(#[from] YarnError),
    /// The endpoints found could not be used.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The service exists but none of its containers is READY.
    #[error(
        "{rm}: service '{service}' has no READY container yet (check `spindle yarn status {service}`; containers turn READY once /v2/health/ready answers 200)"
    )]
    NoneReady {
        /// The ResourceManager.
        rm: String,
        /// The service.
        service: String,
    },
}

/// Where a YARN-discovered client finds its replicas.
#[derive(Clone, Debug)]
pub struct YarnService {
    rm: ResourceManager,
    name: String,
    /// `http`, or `https` for replicas deployed with TLS (the service's definition says).
    scheme: &'static str,
    port: u16,
}

impl YarnService {
    /// Looks up `http://RM_HOST:PORT/SERVICE` (the replicas' port comes from the service
    /// definition), calling as `user`, else as [`default_user`] (`$HADOOP_USER_NAME`, `$USER`),
    /// as `spindle yarn` does: Hadoop's Services API answers every call without `user.name`
    /// with "Null user", even where anonymous HTTP is allowed.
    pub async fn resolve(spec: &str, user: Option<String>) -> Result<YarnService, DiscoveryError> {
        let (base, name) = split_service_url(spec)?;
        let rm = ResourceManager::new(&base, user.or_else(default_user))?;
        let (scheme, port) = retry_transient(|| rm.service_endpoint(&name)).await?;
        Ok(YarnService {
            rm,
            name,
            scheme,
            port,
        })
    }

    /// The READY replicas' URLs now.
    pub async fn endpoints(&self) -> Result<Vec<String>, YarnError> {
        retry_transient(|| self.rm.ready_endpoints(&self.name, self.scheme, self.port)).await
    }

    /// The first READY replicas' URLs; an error when there is none.
    pub async fn require_endpoints(&self) -> Result<Vec<String>, DiscoveryError> {
        let urls = self.endpoints().await?;
        if urls.is_empty() {
            return Err(DiscoveryError::NoneReady {
                rm: self.rm.base().to_string(),
                service: self.name.clone(),
            });
        }
        Ok(urls)
    }
}

/// The client asks the ResourceManager again while no replica can be reached, and says the
/// service's state when it gives up waiting.
impl Discovery for YarnService {
    fn endpoints(&self) -> Discovered<'_, Result<Vec<String>, String>> {
        Box::pin(async move {
            YarnService::endpoints(self)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn describe(&self) -> Discovered<'_, String> {
        Box::pin(async move {
            let name = &self.name;
            let rm = self.rm.base();
            match self.rm.service(name).await {
                Ok(service) => match service["state"].as_str().unwrap_or("in an unknown state") {
                    "STOPPED" => format!(
                        "service '{name}' at {rm} is STOPPED; start it with `spindle yarn start {name} --rm {rm}`"
                    ),
                    state => format!(
                        "service '{name}' at {rm} is {state} with no replica reachable; see `spindle yarn status {name} --rm {rm}`"
                    ),
                },
                Err(e) => format!("service '{name}': its state is unknown ({e})"),
            }
        })
    }
}

/// Attempts at a listing the ResourceManager answers with a 5xx.
const TRANSIENT_ATTEMPTS: u64 = 4;

/// Retries 5xx answers a few times (0.25, 0.5, 0.75 s apart). Hadoop 3.4's RM reads a
/// service's definition from its JSON file on HDFS at every call, and a flex rewrites that
/// file: a listing that lands in between is answered 500 `No content to map due to
/// end-of-input` (seen on scripts/hadoop.sh's cluster with callers starting during a flex).
async fn retry_transient<T, F, Fut>(mut call: F) -> Result<T, YarnError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, YarnError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(YarnError::Status { status, .. })
                if status >= 500 && attempt < TRANSIENT_ATTEMPTS =>
            {
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Builds clients whose endpoints are a YARN service's replicas. A trait because the builder
/// belongs to the client library, which knows nothing of YARN.
#[allow(async_fn_in_trait)]
pub trait BuildFromYarn {
    /// A client over the READY containers of a YARN service (`http://RM_HOST:PORT/SERVICE`),
    /// re-listed every `refresh`. The refresher stops when the last clone of the client is
    /// dropped; a failed refresh keeps the last list (a ResourceManager restart does not stop
    /// traffic). A request that reaches no replica lists them again at once and waits up to
    /// `wait` for one (a stopped or restarting service), then fails naming the service's state;
    /// a zero `wait` fails such a request at once, and a service with no READY container then
    /// fails the build.
    async fn build_yarn_service(
        self,
        spec: &str,
        user: Option<String>,
        refresh: Duration,
        wait: Duration,
    ) -> Result<Client, DiscoveryError>;
}

impl BuildFromYarn for ClientBuilder {
    async fn build_yarn_service(
        self,
        spec: &str,
        user: Option<String>,
        refresh: Duration,
        wait: Duration,
    ) -> Result<Client, DiscoveryError> {
        let service = YarnService::resolve(spec, user).await?;
        let (urls, builder) = if wait.is_zero() {
            (service.require_endpoints().await?, self)
        } else {
            // None READY yet (or, while the service starts, Hadoop refusing the listing) is
            // no error: the first request waits for a replica.
            let urls = service.endpoints().await.unwrap_or_else(|e| {
                tracing::info!(error = %e, "no replica listed yet; the first request waits for one");
                Vec::new()
            });
            (urls, self.discovery(Arc::new(service.clone()), wait))
        };
        let client = builder.with_urls(urls.clone()).build()?;
        tracing::info!(service = %spec, endpoints = ?urls, "discovered replicas");
        let weak = client.downgrade();
        tokio::spawn(async move {
            let mut known = urls;
            loop {
                tokio::time::sleep(refresh).await;
                let found = service.endpoints().await;
                let Some(client) = Client::upgrade(&weak) else {
                    return;
                };
                match found {
                    Ok(urls) if urls != known => {
                        tracing::info!(endpoints = ?urls, "replicas changed");
                        if let Err(e) = client.set_endpoints(&urls) {
                            tracing::warn!(error = %e, "ignoring an unusable replica list");
                            continue;
                        }
                        known = urls;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing replicas failed; keeping the last list")
                    }
                }
            }
        });
        Ok(client)
    }
}
