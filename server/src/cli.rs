//! The `spindle` command line. Arguments are parsed and validated here, before anything binds;
//! a bad value exits with code 64 (EX_USAGE) and a message that names it.

use crate::serve::{Listeners, ServeConfig, Server, stop_signal};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use spindle_core::config::parse_duration;
use spindle_core::engine::{Device, EngineChoice};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Exit code for invalid usage or configuration (sysexits' EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// A command line that names something unusable (a repository that does not exist). `main`
/// exits with [`EXIT_USAGE`] for it, before anything binds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Spindle: a small, fast inference server for ONNX models, speaking KServe v2 (HTTP and gRPC)
/// and TensorFlow Serving REST.
#[derive(Parser, Debug)]
#[command(name = "spindle", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve a model repository: KServe v2 over HTTP and gRPC, TF Serving REST, /metrics.
    Serve(ServeArgs),
    /// Write the model zoo (cifar10, inception_v3, criteo_ctr) as a model repository of real ONNX files.
    Zoo(ZooArgs),
    /// Send one request to a running server and print the answer (an image, a JSON tensor, or
    /// TSV rows), e.g. `spindle infer --model cifar10 --image cat.png --top 3`.
    Infer(crate::infer_cmd::InferArgs),
    /// Load-test running servers: closed-loop concurrency sweeps, latency percentiles, CSV/JSON.
    Loadtest(spindle_loadtest::LoadtestArgs),
    /// Measure: in-process engine throughput (the limit serving is judged against).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Publish to and list a model repository (a directory or hdfs://).
    #[command(subcommand)]
    Repo(crate::repo_cmd::RepoCommand),
    /// Generate data sets (Criteo click logs).
    #[command(subcommand)]
    Data(crate::criteo_cmd::DataCommand),
    /// Fit models on raw data (Criteo CTR).
    #[command(subcommand)]
    Train(crate::criteo_cmd::TrainCommand),
    /// Batch-score raw Criteo shards: one output part per shard, _SUCCESS when all are done.
    Score(crate::criteo_cmd::ScoreArgs),
    /// Run N local `spindle serve` replicas on their own ports until Ctrl-C or SIGTERM.
    Replicas(crate::replicas::ReplicasArgs),
    /// Run replicas as a YARN service: spec, deploy, flex, status, stop, start, destroy.
    #[command(subcommand)]
    Yarn(crate::yarn::YarnCommand),
}

/// `spindle bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run a model in-process on an engine at several batch sizes: images/s and latency.
    Engine(crate::bench::EngineBenchArgs),
    /// Time decoding and preparing one encoded image, per preprocessing kind.
    Preprocess(crate::bench_preprocess::PreprocessBenchArgs),
}

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
    /// the last good copies (default: a temporary directory, removed at exit).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// poll: serve every model of the repository; explicit: also allow
    /// POST /v2/repository/models/{m}/load and /unload.
    #[arg(long, default_value = "poll", value_parser = parse_model_control)]
    pub model_control: crate::repository::ModelControl,
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
    #[arg(long, default_value_t = crate::preprocess::DEFAULT_MAX_IMAGE_PIXELS)]
    pub max_image_pixels: u64,
    /// Engine: auto (ONNX Runtime when its library loads, else tract), ort, or tract.
    #[arg(long, default_value = "auto", value_parser = parse_engine)]
    pub engine: EngineChoice,
    /// Device: cpu, cuda or cuda:N (CUDA needs the ort engine and a GPU build of ONNX Runtime;
    /// there is no silent fall back to the CPU).
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Largest request body accepted, e.g. 64MiB (larger bodies get 413).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub max_body: usize,
    /// How long in-flight requests may run after SIGTERM or Ctrl-C, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
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
        self.io_threads
            .map_or_else(|| (crate::available_cores() / 2).max(1), |n| n.get())
    }
}

/// `spindle zoo`.
#[derive(Args, Debug)]
pub struct ZooArgs {
    /// Directory to write the repository into (created if missing), or an hdfs:// URL.
    #[arg(long)]
    pub out: String,
    /// Seed of the He-initialised weights; the same seed writes byte-identical files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Models to write, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "cifar10,inception_v3,criteo_ctr", value_parser = parse_zoo_model)]
    pub models: Vec<spindle_zoo::ZooModel>,
}

fn parse_engine(s: &str) -> Result<EngineChoice, String> {
    s.parse()
}

fn parse_model_control(s: &str) -> Result<crate::repository::ModelControl, String> {
    s.parse()
}

fn parse_device(s: &str) -> Result<Device, String> {
    s.parse()
}

fn parse_zoo_model(s: &str) -> Result<spindle_zoo::ZooModel, String> {
    s.parse().map_err(|_| {
        let known: Vec<&str> = spindle_zoo::ZooModel::ALL
            .iter()
            .map(|m| m.name())
            .collect();
        format!("unknown zoo model '{s}' (available: {})", known.join(", "))
    })
}

/// Parses sizes like `64MiB`, `512KiB`, `1GiB`, `100MB` or a plain byte count.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (write it like 64MiB)"))?;
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit '{other}' in '{s}' (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Where `--demo` keeps its repository when `--repo` is not given.
pub fn default_demo_repo() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("spindle").join("demo-repo")
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Zoo(args) => zoo(args).await,
        Command::Infer(args) => crate::infer_cmd::run(args).await,
        Command::Repo(command) => crate::repo_cmd::run(command).await,
        Command::Yarn(command) => crate::yarn::run(command).await,
        Command::Replicas(args) => crate::replicas::run(args).await,
        Command::Loadtest(args) => {
            spindle_loadtest::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Engine(args)) => {
            tokio::task::spawn_blocking(move || crate::bench::run(&args)).await??;
            Ok(())
        }
        Command::Bench(BenchCommand::Preprocess(args)) => {
            tokio::task::spawn_blocking(move || crate::bench_preprocess::run(&args)).await??;
            Ok(())
        }
        Command::Data(crate::criteo_cmd::DataCommand::Criteo(args)) => {
            tokio::task::spawn_blocking(move || crate::criteo_cmd::data(args)).await??;
            Ok(())
        }
        Command::Train(crate::criteo_cmd::TrainCommand::Criteo(args)) => {
            tokio::task::spawn_blocking(move || crate::criteo_cmd::train_criteo(args)).await??;
            Ok(())
        }
        Command::Score(args) => {
            tokio::task::spawn_blocking(move || crate::criteo_cmd::score(args)).await??;
            Ok(())
        }
    }
}

async fn zoo(args: ZooArgs) -> anyhow::Result<()> {
    for model in &args.models {
        let built = spindle_zoo::build(*model, args.seed);
        eprintln!(
            "{}: {} parameters, {:.2} M multiply-adds per image",
            model.name(),
            built.parameters,
            built.multiply_adds as f64 / 1e6
        );
    }
    if spindle_loader::is_hdfs(&args.out) {
        // Written locally first, then published version by version: HDFS readers never see
        // a half-written model.
        let local = tempfile::tempdir().context("creating a temporary directory")?;
        spindle_zoo::write_zoo(local.path(), args.seed, &args.models)
            .with_context(|| format!("writing the zoo into {}", local.path().display()))?;
        for path in crate::repo_cmd::publish_dir(local.path(), &args.out).await? {
            println!("{path}");
        }
        return Ok(());
    }
    let dirs = spindle_zoo::write_zoo(std::path::Path::new(&args.out), args.seed, &args.models)
        .with_context(|| format!("writing the zoo into {}", args.out))?;
    for dir in dirs {
        println!("{}", dir.display());
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
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
