//! `spindle bench engine`: the physical limit. Runs one model in-process, straight on an
//! engine runner with no server, queue or network, at several batch sizes, and reports
//! images per second and latency per batch. Serving numbers are judged against these.

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use spindle_core::config::ModelConfig;
use spindle_core::engine::{Device, EngineChoice};
use spindle_loader::{HDFS_RETRY, MODEL_FILE, ModelRepository};
use spindle_server::engines::Engines;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `spindle bench engine` arguments.
#[derive(Args, Debug, Clone)]
pub struct EngineBenchArgs {
    /// Model repository: a directory or hdfs:// URL.
    #[arg(long)]
    pub repo: String,
    /// Model to run (its newest version).
    #[arg(long)]
    pub model: String,
    /// Engine: auto, ort or tract.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<EngineChoice>())]
    pub engine: EngineChoice,
    /// Device: cpu, cuda or cuda:N (CUDA needs the ort engine and ONNX Runtime's GPU build;
    /// it is never replaced by the CPU).
    #[arg(long, default_value = "cpu", value_parser = crate::args::parse_device)]
    pub device: Device,
    /// Batch sizes to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,16,32,64,128")]
    pub batches: Vec<usize>,
    /// Measuring time per batch size, e.g. 3s.
    #[arg(long, default_value = "3s", value_parser = spindle_core::config::parse_duration)]
    pub duration: Duration,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One batch size's result.
#[derive(Serialize, Debug, Clone)]
pub struct BatchResult {
    /// Rows per run.
    pub batch: usize,
    /// Runs measured.
    pub runs: usize,
    /// Rows per second.
    pub images_per_s: f64,
    /// Median time of one run, microseconds.
    pub p50_us: f64,
    /// 99th percentile time of one run, microseconds.
    pub p99_us: f64,
}

/// The whole measurement.
#[derive(Serialize, Debug, Clone)]
pub struct EngineBenchReport {
    /// Model name.
    pub model: String,
    /// Engine used.
    pub engine: String,
    /// Device it ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// Instances (runners) the engine was given; one is measured.
    pub intra_op_threads: usize,
    /// Per batch size.
    pub results: Vec<BatchResult>,
    /// The best throughput and the batch size that reached it.
    pub best: BatchResult,
}

/// Reads the newest complete version of `model` and its config.
async fn read_latest(repo: &str, model: &str) -> anyhow::Result<(ModelConfig, Vec<u8>)> {
    let repo = ModelRepository::open(repo, HDFS_RETRY).await?;
    let entry = repo.model(model).await?;
    let version = entry
        .complete_versions()
        .last()
        .map(|v| v.version)
        .context("model has no version")?;
    let config = entry.config.map_err(anyhow::Error::from)?;
    let rel = format!("{model}/{version}/{MODEL_FILE}");
    let bytes = repo
        .storage()
        .read(&rel)
        .await?
        .with_context(|| format!("{} vanished", repo.storage().display(&rel)))?;
    Ok((config, bytes))
}

/// Runs the benchmark, printing a table. Call it on a blocking thread of a tokio runtime.
pub fn run(args: &EngineBenchArgs) -> anyhow::Result<EngineBenchReport> {
    let (config, bytes) =
        tokio::runtime::Handle::current().block_on(read_latest(&args.repo, &args.model))?;
    let engines = Engines::new(args.engine, args.device);
    let engine = engines.for_model(&config)?;
    let mut options = engines.load_options(engine.as_ref(), &config);
    // One runner with every core is the in-process ceiling for ONNX Runtime, whatever threads
    // the config gives each of its serving instances (criteo_ctr's say one); tract gets one core.
    options.instances = 1;
    if engine.name() != "tract" {
        options.intra_op_threads = spindle_server::available_cores();
    }
    let mut runner = engine
        .load(&bytes, &config, &options)?
        .pop()
        .context("no runner")?;
    let spec = &config.inputs[0];
    let ids = spec.dtype == spindle_core::DataType::I64;
    if !(ids || spec.dtype == spindle_core::DataType::F32) || spec.row_elements().is_none() {
        anyhow::bail!(
            "spindle bench engine feeds FP32 or INT64 inputs with fixed dimensions; '{}' is {} {}",
            spec.name,
            spec.dtype,
            spec.dims_display()
        );
    }
    let mut results = Vec::new();
    eprintln!(
        "{} on {} {} ({} threads)",
        config.name,
        engine.name(),
        args.device,
        options.intra_op_threads
    );
    eprintln!(
        "{:>6} {:>12} {:>12} {:>12}",
        "batch", "images/s", "p50 ms", "p99 ms"
    );
    for &batch in &args.batches {
        if config.max_batch_size > 0 && batch > config.max_batch_size {
            eprintln!(
                "{batch:>6} skipped: above max_batch_size {}",
                config.max_batch_size
            );
            continue;
        }
        let input = if ids {
            // Feature ids in 0..=100, as `spindle loadtest` generates them: valid for any
            // embedding table, spread over rows rather than all one id.
            let mut shape = vec![batch];
            shape.extend(spec.dims[1..].iter().map(|&d| d as usize));
            let n = shape.iter().product::<usize>();
            let values = (0..n).map(|i| (i as i64 * 7919) % 101).collect();
            spindle_core::Tensor::new(shape, spindle_core::TensorData::I64(values))?
        } else {
            spindle_zoo::sample_images(batch, &config, 1)
        };
        // Warm up: first runs allocate and tune.
        for _ in 0..3 {
            runner.run(vec![input.clone()])?;
        }
        let mut times = Vec::new();
        let started = Instant::now();
        while started.elapsed() < args.duration || times.len() < 5 {
            let one = vec![input.clone()];
            let t = Instant::now();
            runner.run(one)?;
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let total_s: f64 = times.iter().sum::<f64>() / 1e6;
        times.sort_by(f64::total_cmp);
        let result = BatchResult {
            batch,
            runs: times.len(),
            images_per_s: (batch * times.len()) as f64 / total_s,
            p50_us: times[times.len() / 2],
            p99_us: times[(times.len() * 99 / 100).min(times.len() - 1)],
        };
        eprintln!(
            "{:>6} {:>12.1} {:>12.3} {:>12.3}",
            batch,
            result.images_per_s,
            result.p50_us / 1e3,
            result.p99_us / 1e3
        );
        results.push(result);
    }
    let best = results
        .iter()
        .max_by(|a, b| a.images_per_s.total_cmp(&b.images_per_s))
        .cloned()
        .context("no batch size measured")?;
    let report = EngineBenchReport {
        model: config.name.clone(),
        engine: engine.name().to_string(),
        device: args.device.to_string(),
        intra_op_threads: options.intra_op_threads,
        results,
        best,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}
