//! `spindle serve`: load the repository, bind, serve until told to stop, drain, exit.

use crate::engines::Engines;
use crate::http::router;
use crate::infer::Limits;
use crate::models::ModelManager;
use crate::repository::{ModelControl, RepositoryWatcher, SyncError};
use crate::security::{Security, ServerTls};
use crate::state::AppState;
use anyhow::Context;
use spindle_core::engine::{Device, EngineChoice};
use spindle_core::metrics::Metrics;
use spindle_loader::{CacheDir, HDFS_RETRY, ModelCache, ModelRepository};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything `serve` needs, validated before anything binds.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Model repository: a directory or an `hdfs://` URL.
    pub repo: String,
    /// How often the repository is polled for new versions; zero turns polling off.
    pub poll_interval: Duration,
    /// Where verified copies of model versions are kept; with one, a start while the
    /// repository is unreachable serves the last good copies. `None`: a temporary directory.
    pub cache_dir: Option<PathBuf>,
    /// Whether the load/unload API is on.
    pub model_control: ModelControl,
    /// `--engine`.
    pub engine: EngineChoice,
    /// `--device`.
    pub device: Device,
    /// Request body cap in bytes.
    pub max_body: usize,
    /// How long in-flight requests may take to finish after a stop signal.
    pub shutdown_grace: Duration,
    /// gRPC message cap in bytes, both directions.
    pub grpc_max_message: usize,
    /// Decoded pixels allowed per image input.
    pub max_image_pixels: u64,
    /// The bytes image decoding may hold, server-wide and per request.
    pub decode: crate::admission::DecodeLimits,
    /// Open HTTP connections, and how slowly clients may send.
    pub connections: crate::http::listener::ConnectionLimits,
    /// TLS and bearer tokens, on both front ends.
    pub security: Security,
}

/// The sockets a server answers on.
pub struct Listeners {
    /// KServe v2 and TF Serving REST over HTTP, and `/metrics`.
    pub http: TcpListener,
    /// KServe v2 over gRPC, when enabled.
    pub grpc: Option<TcpListener>,
}

/// A server whose models are loaded, ready to serve on a listener.
pub struct Server {
    state: AppState,
    config: ServeConfig,
    /// The cache directory, held (locked) until the server ends; a temporary one is removed then.
    _cache: CacheDir,
    /// TLS for both front ends, loaded from `config.security.tls`.
    tls: Option<ServerTls>,
}

impl Server {
    /// Loads every model of the repository. Fails when the repository cannot be read, when the
    /// requested engine or device is unavailable, or when not a single model could be loaded (so
    /// that a supervisor such as YARN restarts us rather than keeping a useless server).
    pub async fn load(config: ServeConfig) -> anyhow::Result<Server> {
        // Certificates first: a bad file should stop us before minutes of model loading.
        let tls = config
            .security
            .tls
            .as_ref()
            .map(ServerTls::load)
            .transpose()?;
        let repo = ModelRepository::connect(&config.repo, HDFS_RETRY)?;
        // Held until the server ends: its drop removes a temporary cache on every exit that
        // unwinds, and a start after one that did not (SIGKILL, an abort) removes what is left.
        // Filesystem work, so on the blocking pool.
        let configured = config.cache_dir.clone();
        let (cache_dir, cache) = tokio::task::spawn_blocking(move || {
            let dir = match configured {
                Some(dir) => CacheDir::configured(&dir)?,
                None => CacheDir::temporary()?,
            };
            let cache = ModelCache::new(dir.path())?;
            Ok::<_, spindle_loader::RepoError>((dir, cache))
        })
        .await??;
        let metrics = Metrics::new();
        let models = Arc::new(ModelManager::new(metrics));
        let engines = Arc::new(Engines::new(config.engine, config.device));
        let watcher = Arc::new(RepositoryWatcher::new(
            repo,
            cache,
            models.clone(),
            engines,
            config.model_control,
        ));
        match watcher.sync().await {
            Ok(()) => {}
            Err(SyncError::Repo(e)) if e.is_unreachable() => {
                let ready = watcher.load_from_cache().await?;
                if ready == 0 {
                    anyhow::bail!(
                        "{e}\nno cached copy to serve meanwhile (run with --cache-dir DIR so the next start can serve the last good versions while HDFS is down)"
                    );
                }
                tracing::warn!(error = %e, ready, "model repository unreachable: serving the last good copies from the cache until it comes back");
            }
            // One model's engine missing spares the others; with none serving, say why.
            Err(SyncError::Engine(e)) if models.all_ready().is_empty() => {
                return Err(SyncError::Engine(e).into());
            }
            Err(SyncError::Engine(e)) => {
                tracing::warn!(error = %e, "some models cannot be served: their engine is unavailable");
            }
            Err(e) => return Err(e.into()),
        }
        let total = models.model_count();
        let ready = models
            .records()
            .values()
            .filter(|r| r.latest_ready().is_some())
            .count();
        if ready == 0 && total > 0 {
            anyhow::bail!(
                "none of the {total} models in {} could be loaded (see the errors above)",
                config.repo
            );
        }
        if total == 0 {
            tracing::warn!(repo = %config.repo, "model repository holds no models");
        }
        tracing::info!(ready, failed = total - ready, "model repository loaded");
        Ok(Server {
            state: AppState {
                models,
                ready: Arc::new(AtomicBool::new(false)),
                limits: Limits {
                    max_image_pixels: config.max_image_pixels,
                    decode: crate::admission::DecodeBudget::new(config.decode),
                },
                repository: watcher,
            },
            config,
            _cache: cache_dir,
            tls,
        })
    }

    /// The repository watcher (tests inspect it).
    pub fn repository(&self) -> &Arc<RepositoryWatcher> {
        &self.state.repository
    }

    /// The model manager (tests inspect it).
    pub fn models(&self) -> &Arc<ModelManager> {
        &self.state.models
    }

    /// Serves on the listeners until `shutdown` completes; then readiness goes false (HTTP and
    /// the gRPC health service), in-flight requests get up to the grace period to finish, and
    /// the call returns.
    pub async fn run(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr: SocketAddr = listeners.http.local_addr()?;
        let listener = listeners.http;
        let mut app = router(self.state.clone(), self.config.max_body);
        let tokens = self.config.security.tokens.clone();
        if let Some(tokens) = &tokens {
            app = app.layer(axum::middleware::from_fn_with_state(
                tokens.clone(),
                crate::security::auth::require_http_token,
            ));
        }
        // One limit for both front ends; checked before a body is read.
        let in_flight = crate::admission::InFlight::new(self.config.connections.max_inflight);
        app = app.layer(axum::middleware::from_fn_with_state(
            in_flight.clone(),
            crate::admission::admit_http,
        ));
        let scheme = if self.tls.is_some() { "HTTPS" } else { "HTTP" };
        let _polling = crate::repository::poll::spawn(
            self.state.repository.clone(),
            self.config.poll_interval,
        );
        let ready = self.state.ready.clone();
        ready.store(true, Ordering::Release);
        tracing::info!(%addr, tokens = tokens.is_some(), "serving KServe v2 and TF Serving REST over {scheme}");
        // One stop signal, watched by both front ends and the hard-stop timer.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal_ready = ready.clone();
        tokio::spawn(async move {
            shutdown.await;
            signal_ready.store(false, Ordering::Release);
            tracing::info!("stop requested: readiness is false, finishing in-flight requests");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|&stop| stop).await;
        };
        let http = crate::http::listener::serve(
            listener,
            app,
            self.config.connections,
            self.tls.as_ref().map(|tls| tls.http.clone()),
            stopped(stop_rx.clone()),
        );
        let grpc = match listeners.grpc {
            Some(grpc_listener) => {
                tracing::info!(addr = %grpc_listener.local_addr()?, "serving KServe v2 over gRPC");
                let settings = crate::grpc::GrpcSettings {
                    max_message: self.config.grpc_max_message,
                    tls: self.tls.as_ref().map(|tls| tls.grpc.clone()),
                    tokens,
                    in_flight,
                };
                let state = self.state.clone();
                let stop = stopped(stop_rx.clone());
                Some(tokio::spawn(crate::grpc::serve(
                    state,
                    settings,
                    grpc_listener,
                    stop,
                )))
            }
            None => None,
        };
        let grace = self.config.shutdown_grace;
        let hard_stop = {
            let stop = stopped(stop_rx.clone());
            async move {
                stop.await;
                tokio::time::sleep(grace).await;
            }
        };
        let stopping = move || *stop_rx.borrow();
        supervise(http, grpc, stopping, hard_stop).await?;
        tracing::info!("server stopped");
        Ok(())
    }
}

/// Runs both front ends until both have ended after a stop, or until `hard_stop`. The HTTP
/// listener has no failure of its own to report (a failed accept is logged and retried); gRPC's
/// serve can fail, and its task can panic: either ends the server at once with that error, so a
/// gRPC server that cannot serve fails `spindle serve` when it happens, not at the next stop.
async fn supervise(
    http: impl Future<Output = ()>,
    grpc: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    stopping: impl Fn() -> bool,
    hard_stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut grpc_done = grpc.is_none();
    let grpc = async move {
        match grpc {
            Some(task) => match task.await {
                Ok(result) => result.context("the gRPC server failed"),
                Err(e) => Err(anyhow::Error::new(e).context("the gRPC server panicked")),
            },
            None => Ok(()),
        }
    };
    tokio::pin!(http, grpc, hard_stop);
    let mut http_done = false;
    while !(http_done && grpc_done) {
        tokio::select! {
            () = &mut http, if !http_done => http_done = true,
            result = &mut grpc, if !grpc_done => {
                grpc_done = true;
                result?;
                if !stopping() {
                    anyhow::bail!("the gRPC server stopped before it was told to");
                }
            }
            () = &mut hard_stop => {
                tracing::warn!("grace period over; exiting with requests still in flight");
                break;
            }
        }
    }
    Ok(())
}

/// A future that completes on SIGTERM or Ctrl-C (SIGINT). The handlers are installed when this
/// is called, not when the future is first polled: `serve` calls it before loading models, so a
/// supervisor's SIGTERM during startup is never the default, abrupt exit.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_grpc_server_ends_serving_at_once() {
        let grpc = tokio::spawn(async { anyhow::bail!("address family not supported") });
        // HTTP would serve for ever, and no stop comes.
        let served = tokio::time::timeout(
            Duration::from_secs(5),
            supervise(
                std::future::pending(),
                Some(grpc),
                || false,
                std::future::pending(),
            ),
        )
        .await
        .expect("the failure ends serving without a stop");
        let message = format!("{:#}", served.unwrap_err());
        assert!(
            message.contains("the gRPC server failed")
                && message.contains("address family not supported"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn front_ends_that_end_after_a_stop_end_serving_cleanly() {
        let grpc = tokio::spawn(async { Ok(()) });
        supervise(async {}, Some(grpc), || true, std::future::pending())
            .await
            .unwrap();
        supervise(async {}, None, || false, std::future::pending())
            .await
            .unwrap();
        // A gRPC server that returns without a stop is a failure too.
        let grpc = tokio::spawn(async { Ok(()) });
        let early = supervise(
            std::future::pending(),
            Some(grpc),
            || false,
            std::future::pending(),
        );
        assert!(early.await.is_err());
    }
}
