//! `spindle score`: batch-scores raw Criteo shards or image datasets with the batch-scoring
//! client (`spindle-score`), in-process or through running servers, and prints its summary.
//! The input's format decides which: `--format`, or judged from the first shard. Either can
//! also be scored as a YARN job (`--yarn`, in [`score_yarn`]): executors in containers, each
//! running this command on its share of the shards (`--executor I/N`).

#[path = "score_yarn.rs"]
mod score_yarn;

use crate::progress::progress_bar;
use anyhow::Context;
use clap::Args;
use spindle_core::UsageError;
use spindle_criteo::shard::expand_glob;
use spindle_score::images::InputFormat;
use spindle_score::images::backend::{ImageModel, LocalImages, RemoteImages};
use spindle_score::images::input::{Io, expand};
use spindle_score::images::job::{ImageJob, ImageSummary};
use spindle_score::images::output::{Output, Share, executor_summary};
use spindle_score::{Progress, ScoreSummary};
use std::path::PathBuf;

/// `spindle score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Model to score with.
    #[arg(long, default_value = "criteo_ctr")]
    pub model: String,
    /// Input shards: a file, a directory or a quoted glob like 'data/day_*/part-*', on local
    /// disk or hdfs:// (on HDFS only the last component may hold wildcards). Plain or gzip
    /// (.gz); Criteo rows also bzip2 (.bz2).
    #[arg(long)]
    pub input: String,
    /// Input format: criteo (raw TSV rows), cifar10 (CIFAR-10 binary), tfrecord (TFRecord of
    /// tf.train.Example with image/encoded and image/class/label), files (a directory of
    /// JPEG/PNG files), list (a file of PATH[<TAB>LABEL] lines), or auto: a directory is files,
    /// .bin is cifar10, .txt/.list is list, a file opening with a valid TFRecord header is
    /// tfrecord, anything else criteo.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Images: classes written per record (top1, p1, ... topK, pK).
    #[arg(long, default_value_t = 1)]
    pub top: usize,
    /// Output directory: one part per input shard, then _SUCCESS. A local directory or
    /// hdfs://namenode:port/path (parts are written under a temporary name and renamed).
    #[arg(long)]
    pub output: String,
    /// Run the model in-process (needs --repo).
    #[arg(long, requires = "repo", conflicts_with_all = ["server", "yarn_service", "yarn"])]
    pub local: bool,
    /// Model repository (a directory or hdfs:// URL), for --local and --yarn.
    #[arg(long)]
    pub repo: Option<String>,
    /// Score through running servers instead, comma separated (http://HOST:PORT or
    /// grpc://HOST:PORT; at least one http:// to read the model's feature spec). Load is spread
    /// over them; 429, 503 and connection errors are retried with backoff.
    #[arg(long, value_delimiter = ',')]
    pub server: Vec<String>,
    /// TLS and token options for --server and --yarn-service.
    #[command(flatten)]
    pub security: spindle_client::ClientSecurityArgs,
    /// Score through the READY containers of a YARN service instead: RM/NAME, like
    /// http://rm:8088/cifar (listed once, before scoring).
    #[arg(long, conflicts_with = "server")]
    pub yarn_service: Option<String>,
    /// Engine for --local: auto, ort or tract.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<spindle_core::engine::EngineChoice>())]
    pub engine: spindle_core::engine::EngineChoice,
    /// Rows or images per engine call or request; default 4096 rows, or the model's
    /// max_batch_size images.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Worker threads (shards read and prepared at once); default: one per core.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Images: batches classified at once (in-process engine instances, or requests in
    /// flight to the servers); default 1 in-process, --jobs through servers.
    #[arg(long)]
    pub engines: Option<usize>,
    /// Images in-process: threads each engine instance uses inside one batch; default: the
    /// cores divided among the engine instances.
    #[arg(long)]
    pub intra_op_threads: Option<usize>,
    /// Malformed rows or bad records tolerated; one more stops the job with a non-zero exit
    /// and no _SUCCESS.
    #[arg(long, default_value_t = 1000)]
    pub max_errors: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Score only executor I of N's share of the shards (those at positions I, I+N, ... of
    /// the sorted list), write this executor's summary to OUTPUT/_summary/executor-I.json and
    /// no _SUCCESS: what each container of a --yarn job runs.
    #[arg(long, value_name = "I/N", conflicts_with = "yarn")]
    pub executor: Option<Share>,
    /// The YARN job.
    #[command(flatten)]
    pub yarn_job: score_yarn::YarnJobArgs,
}

/// Runs `spindle score`; an incomplete job is an error after the summary is printed.
pub fn run(mut args: ScoreArgs) -> anyhow::Result<()> {
    if args.batch == Some(0) || args.top == 0 || args.jobs == Some(0) || args.engines == Some(0) {
        return Err(
            UsageError("--batch, --top, --jobs and --engines must be at least 1".into()).into(),
        );
    }
    if let Some(service) = &args.yarn_service {
        args.server = resolve_service(service, args.yarn_job.yarn_user.clone())?;
    }
    let format = detect_format(&args)?;
    match (format, &args.yarn_job.yarn) {
        (format, Some(_)) => score_yarn::run(&args, format),
        (Some(format), None) => run_images(&args, format),
        (None, None) => run_criteo(&args),
    }
}

/// The image format of `--input` (`--format`, or judged from its first shard); `None` for
/// Criteo rows.
fn detect_format(args: &ScoreArgs) -> anyhow::Result<Option<InputFormat>> {
    Ok(match args.format.as_str() {
        "criteo" => None,
        "auto" => {
            let io = Io::new()?;
            let shards =
                expand(&args.input, &io).map_err(|e| UsageError(format!("--input: {e:#}")))?;
            shards[0].detect(&io)?
        }
        other => Some(
            other
                .parse::<InputFormat>()
                .map_err(|e| UsageError(format!("--format: {e}; or criteo, or auto")))?,
        ),
    })
}

/// The READY replicas of `RM/NAME`, listed as `user` (default $HADOOP_USER_NAME, $USER,
/// $LOGNAME): Hadoop 3's Services API refuses a listing without `user.name`.
fn resolve_service(service: &str, user: Option<String>) -> anyhow::Result<Vec<String>> {
    let handle = tokio::runtime::Handle::current();
    let urls = handle.block_on(async {
        let found = spindle_deploy::YarnService::resolve(service, user).await?;
        found.require_endpoints().await
    });
    let urls = urls.with_context(|| format!("--yarn-service {service}"))?;
    println!(
        "{service}: {} READY replica(s): {}",
        urls.len(),
        urls.join(", ")
    );
    Ok(urls)
}

fn run_criteo(args: &ScoreArgs) -> anyhow::Result<()> {
    let factory: Box<dyn spindle_score::backend::BackendFactory> =
        match (args.local, &args.repo, args.server.is_empty()) {
            (true, Some(repo), _) => Box::new(spindle_score::backend::LocalFactory::open(
                repo,
                &args.model,
                args.engine,
            )?),
            (false, _, false) => Box::new(spindle_score::backend::RemoteFactory::open(
                &args.server,
                &args.model,
                args.security.load()?,
            )?),
            _ => return Err(where_to_score()),
        };
    let io = Io::new()?;
    let inputs = if spindle_loader::is_hdfs(&args.input) {
        expand(&args.input, &io).map_err(|e| UsageError(format!("--input: {e:#}")))?
    } else {
        let paths = expand_glob(&args.input).map_err(|e| UsageError(format!("--input: {e}")))?;
        paths
            .iter()
            .map(|p| spindle_score::Shard::local(p))
            .collect()
    };
    let job = spindle_score::ScoreJob {
        inputs,
        output: args.output.clone(),
        share: args.executor.unwrap_or(Share::ALL),
        batch: args.batch.unwrap_or(4096),
        workers: args.jobs.unwrap_or_else(spindle_server::available_cores),
        max_errors: args.max_errors,
    };
    let bar = ShardBar(
        "rows",
        progress_bar(
            Some(job.inputs.len() as u64),
            args.quiet,
            "{bar:30} {pos}/{len} shards  {msg}  eta {eta}",
        ),
    );
    let summary = job.run_with_progress(factory.as_ref(), &bar)?;
    print_score_summary(&summary);
    write_summary(args, &summary)?;
    publish_executor_summary(args, &summary, &io)?;
    outcome(
        args,
        summary.stopped_on_errors,
        summary.shards_failed.len(),
        "malformed rows",
    )
}

/// An incomplete job is an error, said after its summary was printed.
fn outcome(args: &ScoreArgs, stopped: bool, failed: usize, bad: &str) -> anyhow::Result<()> {
    if stopped {
        anyhow::bail!(
            "stopped: more than --max-errors {} {bad}; fix the input or raise --max-errors (no {} written)",
            args.max_errors,
            spindle_score::SUCCESS
        );
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} shard(s) could not be scored (listed above); the others are complete, and a rerun scores only what is missing"
        );
    }
    Ok(())
}

fn write_summary(args: &ScoreArgs, summary: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(path) = &args.summary {
        std::fs::write(path, summary_json(summary))
            .with_context(|| format!("writing --summary {}", path.display()))?;
    }
    Ok(())
}

fn summary_json(summary: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(summary).expect("the summary serialises") + "\n"
}

fn run_images(args: &ScoreArgs, format: InputFormat) -> anyhow::Result<()> {
    let cores = spindle_server::available_cores();
    let workers = args.jobs.unwrap_or(cores);
    let model: Box<dyn ImageModel> = match (args.local, &args.repo, args.server.is_empty()) {
        (true, Some(repo), _) => {
            let engines = args.engines.unwrap_or(1);
            let threads = args.intra_op_threads.unwrap_or((cores / engines).max(1));
            Box::new(LocalImages::open(repo, &args.model, args.engine, threads)?)
        }
        (false, _, false) => Box::new(RemoteImages::open(
            &args.server,
            &args.model,
            args.batch.unwrap_or(0),
            args.security.load()?,
        )?),
        _ => return Err(where_to_score()),
    };
    let engines = args.engines.unwrap_or(if args.local { 1 } else { workers });
    let io = Io::new()?;
    let shards = expand(&args.input, &io).map_err(|e| UsageError(format!("--input: {e:#}")))?;
    let job = ImageJob {
        shards,
        format,
        output: args.output.clone(),
        share: args.executor.unwrap_or(Share::ALL),
        // The model's own max_batch_size caps it; without one, 64 images a call.
        batch: match (args.batch, model.max_batch()) {
            (Some(given), _) => given,
            (None, 0) => 64,
            (None, max) => max,
        },
        workers,
        engines,
        top: args.top,
        max_errors: args.max_errors,
    };
    let bar = ShardBar(
        "images",
        progress_bar(
            Some(job.shards.len() as u64),
            args.quiet,
            "{bar:30} {pos}/{len} shards  {msg}  eta {eta}",
        ),
    );
    let summary = job.run(model.as_ref(), &io, &bar)?;
    print_image_summary(&summary);
    write_summary(args, &summary)?;
    publish_executor_summary(args, &summary, &io)?;
    outcome(
        args,
        summary.stopped_on_errors,
        summary.shards_failed.len(),
        "bad records",
    )
}

/// An executor's summary, for the job that started it. Written before the outcome, so a failed
/// executor still reports what it did; renamed into place, so the job never reads it
/// half-written.
fn publish_executor_summary(
    args: &ScoreArgs,
    summary: &impl serde::Serialize,
    io: &Io,
) -> anyhow::Result<()> {
    if let Some(share) = args.executor {
        Output::open(&args.output, io)?.publish(
            &executor_summary(share.index),
            summary_json(summary).as_bytes(),
        )?;
    }
    Ok(())
}

fn where_to_score() -> anyhow::Error {
    UsageError(
        "say where to score: --local --repo REPO runs the model in-process, --server URL[,URL...] or --yarn-service RM/NAME sends it to running servers".into(),
    )
    .into()
}

fn print_shards(scored: usize, skipped: usize, failed: &[String]) {
    println!(
        "shards: {scored} scored, {skipped} already complete, {} failed",
        failed.len()
    );
    for failure in failed {
        println!("  failed: {failure}");
    }
}

fn print_image_summary(s: &ImageSummary) {
    println!(
        "{}: {} images in {:.2}s, {:.1} images/s",
        s.backend, s.records, s.seconds, s.images_per_s
    );
    print_shards(s.shards_scored, s.shards_skipped, &s.shards_failed);
    for (kind, errors) in &s.errors {
        println!("bad records ({kind}): {}", errors.count);
        for example in &errors.examples {
            println!("  {example}");
        }
    }
    if let Some(p1) = s.precision_at_1 {
        print!("labelled images {}: precision@1 {p1:.4}", s.labelled);
        match s.recall_at_5 {
            Some(r5) => println!("  recall@5 {r5:.4}"),
            None => println!(),
        }
    }
}

fn print_score_summary(s: &ScoreSummary) {
    println!(
        "{}: {} rows in {:.2}s, {:.0} rows/s",
        s.backend, s.rows, s.seconds, s.rows_per_s
    );
    print_shards(s.shards_scored, s.shards_skipped, &s.shards_failed);
    if s.malformed_rows > 0 {
        println!("malformed rows: {}", s.malformed_rows);
        for example in &s.malformed_examples {
            println!("  {example}");
        }
    }
    if let (Some(loss), Some(auc)) = (s.log_loss, s.auc) {
        println!(
            "labelled rows {}: log loss {loss:.5}  AUC {auc:.5}",
            s.labelled_rows
        );
    }
}

/// The job's progress as a bar of shards, with the rows or images (the unit) scored so far and
/// their rate.
struct ShardBar(&'static str, indicatif::ProgressBar);

impl Progress for ShardBar {
    fn start(&self, shards: u64) {
        self.1.set_length(shards);
    }

    fn shard_done(&self, rows: u64, rate: f64) {
        let unit = self.0;
        self.1.inc(1);
        self.1
            .set_message(format!("{rows} {unit}  {rate:.0} {unit}/s"));
    }

    fn finish(&self) {
        self.1.finish_and_clear();
    }
}
