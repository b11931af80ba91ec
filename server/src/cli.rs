//! The `spindle` command line. Arguments are parsed and validated here, before anything binds;
//! a bad value exits with code 64 (EX_USAGE) and a message that names it.

use crate::serve::{ServeConfig, Server, stop_signal};
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

/// Spindle: a small, fast inference server for ONNX models, speaking KServe v2 over HTTP.
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
    /// Serve a model repository over HTTP (KServe v2 / Open Inference Protocol).
    Serve(ServeArgs),
    /// Write the model zoo (cifar10, inception_v3, criteo_ctr) as a model repository of real ONNX files.
    Zoo(ZooArgs),
    /// Load-test running servers: closed-loop concurrency sweeps, latency percentiles, CSV/JSON.
    Loadtest(spindle_loadtest::LoadtestArgs),
    /// Measure: in-process engine throughput (the limit serving is judged against).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Generate data sets (Criteo click logs).
    #[command(subcommand)]
    Data(crate::criteo_cmd::DataCommand),
    /// Fit models on raw data (Criteo CTR).
    #[command(subcommand)]
    Train(crate::criteo_cmd::TrainCommand),
    /// Batch-score raw Criteo shards: one output part per shard, _SUCCESS when all are done.
    Score(crate::criteo_cmd::ScoreArgs),
}

/// `spindle bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run a model in-process on an engine at several batch sizes: images/s and latency.
    Engine(crate::bench::EngineBenchArgs),
}

/// `spindle serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Model repository: DIR/<model>/config.toml and DIR/<model>/<version>/model.onnx.
    #[arg(long, required_unless_present = "demo")]
    pub repo: Option<PathBuf>,
    /// Serve the built-in zoo, writing it first if missing (into --repo, or the user cache
    /// directory ~/.cache/spindle/demo-repo).
    #[arg(long)]
    pub demo: bool,
    /// HTTP address. Loopback by default; serving on all interfaces (0.0.0.0:8000) is an
    /// explicit choice.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub http_addr: SocketAddr,
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
}

/// `spindle zoo`.
#[derive(Args, Debug)]
pub struct ZooArgs {
    /// Directory to write the repository into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
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
        Command::Zoo(args) => zoo(args),
        Command::Loadtest(args) => {
            spindle_loadtest::run(args).await?;
            Ok(())
        }
        Command::Bench(BenchCommand::Engine(args)) => {
            tokio::task::spawn_blocking(move || crate::bench::run(&args)).await??;
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

fn zoo(args: ZooArgs) -> anyhow::Result<()> {
    for model in &args.models {
        let built = spindle_zoo::build(*model, args.seed);
        eprintln!(
            "{}: {} parameters, {:.2} M multiply-adds per image",
            model.name(),
            built.parameters,
            built.multiply_adds as f64 / 1e6
        );
    }
    let dirs = spindle_zoo::write_zoo(&args.out, args.seed, &args.models)
        .with_context(|| format!("writing the zoo into {}", args.out.display()))?;
    for dir in dirs {
        println!("{}", dir.display());
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let stop = stop_signal().context("installing the SIGTERM and Ctrl-C handlers")?;
    let repo = match (&args.repo, args.demo) {
        (Some(repo), _) => repo.clone(),
        (None, _) => default_demo_repo(),
    };
    if args.demo {
        ensure_demo_repo(&repo)?;
    }
    if !repo.is_dir() {
        return Err(UsageError(format!(
            "--repo {}: no such directory (create one with `spindle zoo --out {}`, or use --demo)",
            repo.display(),
            repo.display()
        ))
        .into());
    }
    let config = ServeConfig {
        repo,
        engine: args.engine,
        device: args.device,
        max_body: args.max_body,
        shutdown_grace: args.shutdown_grace,
    };
    let server = Server::load(config).await?;
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another server using it? pick another with --http-addr)",
                args.http_addr
            )
        })?;
    server.run(listener, stop).await
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
