//! `spindle serve`: loads a repository (or writes and loads the demo zoo), binds the HTTP and
//! gRPC listeners and serves until SIGTERM or Ctrl-C, then drains. The server itself is
//! `spindle_server::serve`; this module turns arguments into its configuration.

use crate::args::{parse_bytes, parse_device, parse_engine, parse_model_control};
use anyhow::Context;
use clap::Args;
use spindle_core::UsageError;
use spindle_core::config::parse_duration;
use spindle_core::engine::{Device, EngineChoice};
use spindle_server::http::listener::ConnectionLimits;
use spindle_server::security::{Security, ServerTls, TlsFiles, Tokens};
use spindle_server::serve::{Listeners, ServeConfig, Server, stop_signal};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `spindle serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model repository: DIR/<model>/config.toml and DIR/<model>/<version>/model.onnx; DIR may
    /// be hdfs://host:port/path or hdfs://nameservice/path (with HADOOP_CONF_DIR).
    #[arg(long, required_unless_present = "demo")]
    pub repo: Option<String>,
    /// How often to poll the repository for new versions, e.g. 10s; 0 turns polling off.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Keep verified copies of model versions here; a start while HDFS is down then serves
    /// the last good copies. One server at a time: it is locked while in use, and kept at exit.
    /// Default: a new spindle-cache-* directory under TMPDIR, removed at exit (SIGTERM and
    /// Ctrl-C included); one left by a server that was killed is removed at the next start.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// poll: serve every model of the repository; explicit: also allow
    /// POST /v2/repository/models/{m}/load and /unload.
    #[arg(long, default_value = "poll", value_parser = parse_model_control)]
    pub model_control: spindle_server::repository::ModelControl,
    /// Serve the built-in zoo, writing it first if missing (into --repo, or the user cache
    /// directory ~/.cache/spindle/demo-repo).
    #[arg(long)]
    pub demo: bool,
    /// HTTP address. Loopback by default; serving on all interfaces (0.0.0.0:8000) is an
    /// explicit choice.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
    /// gRPC address (KServe v2 `inference.GRPCInferenceService` and `grpc.health.v1.Health`).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub grpc_addr: SocketAddr,
    /// Serve HTTP only.
    #[arg(long)]
    pub no_grpc: bool,
    /// Largest gRPC message accepted or sent, e.g. 64MiB (larger requests get RESOURCE_EXHAUSTED).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub grpc_max_message: usize,
    /// Largest decoded image accepted by image inputs, in pixels (width x height); guards
    /// against decompression bombs.
    #[arg(long, default_value_t = spindle_server::preprocess::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Memory that image decoding may hold at once, all requests together, e.g. 1GiB. Each
    /// request's share is known from its images' headers before any is decoded: about 21
    /// bytes per pixel of a JPEG photo (decoded pixels, decoder state, the float copy) plus
    /// the model's input tensors. A request that finds the budget spent waits up to 1 s, then
    /// gets 429 with Retry-After (gRPC: RESOURCE_EXHAUSTED). This bounds what images can add to
    /// the server's memory, whatever they declare.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub max_decode_bytes: usize,
    /// Memory that one request's images may take to decode (same count as --max-decode-bytes);
    /// a request over it gets 413 (gRPC: RESOURCE_EXHAUSTED) before anything is decoded. The
    /// default 512MiB fits one 24-megapixel JPEG; raise it with --max-image-pixels.
    #[arg(long, default_value = "512MiB", value_parser = parse_bytes)]
    pub max_request_decode_bytes: usize,
    /// Engine: auto (ONNX Runtime when its library loads, else tract), ort, or tract.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    pub engine: EngineChoice,
    /// Device: cpu, cuda or cuda:N (CUDA needs the ort engine and a GPU build of ONNX Runtime;
    /// there is no silent fall back to the CPU).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// HTTP connections served at once; one more is answered 503 (Retry-After) and closed.
    /// Each open connection costs a file descriptor and a few KiB of buffers.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers, and on a kept-alive connection to start
    /// its next request; then the connection is closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// Time a client has to send a whole request body once its headers arrived (408 after).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Requests served at once over HTTP and gRPC together; one more is answered at once,
    /// before its body is read: 503 with Retry-After (gRPC: RESOURCE_EXHAUSTED). Each may
    /// buffer up to --max-body (gRPC: --grpc-max-message), so this times that bounds the
    /// memory requests in flight can hold. Health checks and /metrics are never refused.
    #[arg(long, default_value_t = 512)]
    pub max_inflight: usize,
    /// Largest request body accepted, e.g. 64MiB (larger bodies get 413).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub max_body: usize,
    /// How long in-flight requests may run after SIGTERM or Ctrl-C, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Serve HTTPS and gRPC over TLS with this certificate chain (PEM, leaf first); needs
    /// --tls-key. HTTP/2 is offered by ALPN; plain HTTP to the port gets a 400.
    #[arg(long, requires = "tls_key", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM) on both ports (mutual TLS); a
    /// client without one, or with another CA's, fails the handshake.
    #[arg(long, requires = "tls_cert", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` (gRPC: `authorization` metadata) with one of
    /// the tokens in FILE, one per line (blank lines and # comments skipped); others get 401 /
    /// UNAUTHENTICATED. Health endpoints stay open for probes (unless --auth-health):
    /// /v2/health/live and /ready, gRPC's grpc.health.v1.Health, ServerLive and ServerReady. Use with TLS: a token sent in
    /// clear text can be read on the way.
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// With --auth-token-file: the health endpoints want a token too (probes must send one).
    /// Without it they stay open, which YARN's and most load balancers' probes need.
    #[arg(long, requires = "auth_token_file")]
    pub auth_health: bool,
    /// Threads for the HTTP and gRPC front ends (the engines run on threads of their own).
    /// Default: half the cores this process may use, at least 1. The engines want the cores
    /// too, and fewer front-end threads interrupt them less: on 2 cores, one front-end thread
    /// served cifar10 at concurrency 4 and 16 with 2-15 % more requests/s and a lower p99 than
    /// two, and the same at 1 and 64.
    #[arg(long)]
    pub io_threads: Option<std::num::NonZeroUsize>,
}

impl ServeArgs {
    /// The front ends' thread count (`--io-threads` or its default).
    pub fn io_threads(&self) -> usize {
        self.io_threads.map_or_else(
            || (spindle_server::available_cores() / 2).max(1),
            |n| n.get(),
        )
    }
}

/// Where `--demo` keeps its repository when `--repo` is not given.
pub fn default_demo_repo() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("spindle").join("demo-repo")
}

/// Runs `spindle serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let stop = stop_signal().context("installing the SIGTERM and Ctrl-C handlers")?;
    tracing::info!(io_threads = args.io_threads(), "front-end threads");
    let repo = match (&args.repo, args.demo) {
        (Some(repo), _) => repo.clone(),
        (None, _) => default_demo_repo().display().to_string(),
    };
    if !spindle_loader::is_hdfs(&repo) {
        let dir = std::path::Path::new(&repo);
        if args.demo {
            ensure_demo_repo(dir)?;
        }
        if !dir.is_dir() {
            return Err(UsageError(format!(
                "--repo {repo}: no such directory (create one with `spindle zoo --out {repo}`, or use --demo)"
            ))
            .into());
        }
    }
    let security = Security {
        tls: args.tls_cert.map(|cert| TlsFiles {
            cert,
            key: args
                .tls_key
                .expect("clap requires --tls-key with --tls-cert"),
            client_ca: args.tls_client_ca,
        }),
        tokens: args
            .auth_token_file
            .as_deref()
            .map(Tokens::load)
            .transpose()
            .map_err(|e| UsageError(e.to_string()))?
            .map(|tokens| {
                if args.auth_health {
                    tokens.guarding_health()
                } else {
                    tokens
                }
            }),
    };
    if args.max_inflight == 0 {
        return Err(UsageError("--max-inflight must be at least 1".into()).into());
    }
    if args.max_request_decode_bytes > args.max_decode_bytes {
        return Err(UsageError(format!(
            "--max-request-decode-bytes ({}) is over --max-decode-bytes ({}): no request that large could ever be served",
            args.max_request_decode_bytes, args.max_decode_bytes
        ))
        .into());
    }
    // Checked here too so that a bad certificate or key exits with the usage code (64).
    if let Some(files) = &security.tls {
        ServerTls::load(files).map_err(|e| UsageError(e.to_string()))?;
    }
    let config = ServeConfig {
        repo,
        poll_interval: args.poll_interval,
        cache_dir: args.cache_dir,
        model_control: args.model_control,
        engine: args.engine,
        device: args.device,
        max_body: args.max_body,
        shutdown_grace: args.shutdown_grace,
        grpc_max_message: args.grpc_max_message,
        max_image_pixels: args.max_image_pixels,
        decode: spindle_server::admission::DecodeLimits {
            max_bytes: args.max_decode_bytes as u64,
            max_request_bytes: args.max_request_decode_bytes as u64,
            ..Default::default()
        },
        connections: ConnectionLimits {
            max_connections: args.max_connections,
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            max_inflight: args.max_inflight,
        },
        security,
    };
    let server = Server::load(config).await?;
    let http = bind(args.http_addr, "--http-addr").await?;
    let grpc = if args.no_grpc {
        None
    } else {
        Some(bind(args.grpc_addr, "--grpc-addr").await?)
    };
    server.run(Listeners { http, grpc }, stop).await
}

async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("binding {addr} (is another server using it? pick another with {flag})")
    })
}

fn ensure_demo_repo(repo: &std::path::Path) -> anyhow::Result<()> {
    let missing: Vec<spindle_zoo::ZooModel> = spindle_zoo::ZooModel::ALL
        .into_iter()
        .filter(|m| !repo.join(m.name()).join("config.toml").is_file())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    tracing::info!(repo = %repo.display(), "writing the demo model zoo");
    spindle_zoo::write_zoo(repo, 1, &missing)
        .with_context(|| format!("writing the demo zoo into {}", repo.display()))?;
    Ok(())
}
