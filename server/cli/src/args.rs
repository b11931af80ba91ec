//! The `spindle` command line. Arguments are parsed and validated here, before anything binds;
//! a bad value exits with code 64 (EX_USAGE) and a message that names it.

use crate::commands;
use clap::{Parser, Subcommand};
use spindle_core::engine::{Device, EngineChoice};

/// Exit code for invalid usage or configuration (sysexits' EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// Spindle: a small, fast inference server for ONNX models, speaking KServe v2 (HTTP and gRPC)
/// and TensorFlow Serving REST.
#[derive(Parser, Debug)]
#[command(name = "spindle", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// --keytab and --principal, for secured (Kerberos) clusters.
    #[command(flatten)]
    pub kerberos: crate::kerberos::KerberosArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve a model repository: KServe v2 over HTTP and gRPC, TF Serving REST, /metrics.
    Serve(commands::serve::ServeArgs),
    /// Write the model zoo (cifar10, inception_v3, criteo_ctr) as a model repository of real ONNX files.
    Zoo(commands::zoo::ZooArgs),
    /// Send one request to a running server and print the answer (an image, a JSON tensor, or
    /// TSV rows), e.g. `spindle infer --model cifar10 --image cat.png --top 3`.
    Infer(commands::infer::InferArgs),
    /// Load-test running servers: closed-loop concurrency sweeps, latency percentiles, CSV/JSON.
    Loadtest(spindle_loadtest::LoadtestArgs),
    /// Measure: in-process engine throughput (the limit serving is judged against).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Publish to and list a model repository (a directory or hdfs://).
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Import a trained model: `spindle import tf` converts a TensorFlow SavedModel or
    /// checkpoint to ONNX, verifies it against TensorFlow and publishes it to a repository.
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// Generate data sets (Criteo click logs; synthetic CIFAR-10 binary and TFRecord images).
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Fit models on raw data (Criteo CTR).
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
    /// Batch-score raw Criteo shards or image datasets (CIFAR-10 binary, TFRecord, image
    /// files): one output part per shard, _SUCCESS when all are done.
    Score(commands::score::ScoreArgs),
    /// Run N local `spindle serve` replicas on their own ports until Ctrl-C or SIGTERM.
    Replicas(spindle_deploy::replicas::ReplicasArgs),
    /// Run replicas as a YARN service: spec, deploy, flex, status, stop, start, destroy.
    #[command(subcommand)]
    Yarn(spindle_deploy::yarn::YarnCommand),
}

/// `spindle bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Run a model in-process on an engine at several batch sizes: images/s and latency.
    Engine(commands::bench::engine::EngineBenchArgs),
    /// Time decoding and preparing one encoded image, per preprocessing kind.
    Preprocess(commands::bench::preprocess::PreprocessBenchArgs),
}

pub(crate) fn parse_engine(s: &str) -> Result<EngineChoice, String> {
    s.parse()
}

pub(crate) fn parse_model_control(
    s: &str,
) -> Result<spindle_server::repository::ModelControl, String> {
    s.parse()
}

pub(crate) fn parse_device(s: &str) -> Result<Device, String> {
    s.parse()
}

pub(crate) fn parse_zoo_model(s: &str) -> Result<spindle_zoo::ZooModel, String> {
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
