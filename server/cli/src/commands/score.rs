//! `spindle score`: batch-scores raw Criteo shards with the batch-scoring client
//! (`spindle-score`), in-process or through running servers, and prints its summary.

use crate::progress::progress_bar;
use anyhow::Context;
use clap::Args;
use spindle_core::UsageError;
use spindle_criteo::shard::expand_glob;
use spindle_score::{Progress, ScoreSummary};
use std::path::PathBuf;

/// `spindle score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Model to score with.
    #[arg(long, default_value = "criteo_ctr")]
    pub model: String,
    /// Input shards: a file or a quoted glob like 'data/day_*/part-*'.
    #[arg(long)]
    pub input: String,
    /// Output directory: one part per input shard, then _SUCCESS.
    #[arg(long)]
    pub output: PathBuf,
    /// Run the model in-process (needs --repo).
    #[arg(long, requires = "repo", conflicts_with = "server")]
    pub local: bool,
    /// Model repository (a directory or hdfs:// URL), for --local.
    #[arg(long)]
    pub repo: Option<String>,
    /// Score through running servers instead, comma separated (http://HOST:PORT or
    /// grpc://HOST:PORT; at least one http:// to read the model's feature spec). Load is spread
    /// over them; 429, 503 and connection errors are retried with backoff.
    #[arg(long, value_delimiter = ',')]
    pub server: Vec<String>,
    /// Engine for --local: auto, ort or tract.
    #[arg(long, default_value = "auto", value_parser = |s: &str| s.parse::<spindle_core::engine::EngineChoice>())]
    pub engine: spindle_core::engine::EngineChoice,
    /// Rows per engine call.
    #[arg(long, default_value_t = 4096)]
    pub batch: usize,
    /// Worker threads (shards scored at once); default: one per core.
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Malformed rows tolerated; one more stops the job with a non-zero exit and no _SUCCESS.
    #[arg(long, default_value_t = 1000)]
    pub max_errors: u64,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs `spindle score`; an incomplete job is an error after the summary is printed.
pub fn run(args: ScoreArgs) -> anyhow::Result<ScoreSummary> {
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    let factory: Box<dyn spindle_score::backend::BackendFactory> = match (
        args.local,
        &args.repo,
        args.server.is_empty(),
    ) {
        (true, Some(repo), _) => Box::new(spindle_score::backend::LocalFactory::open(
            repo,
            &args.model,
            args.engine,
        )?),
        (false, _, false) => Box::new(spindle_score::backend::RemoteFactory::open(
            &args.server,
            &args.model,
        )?),
        _ => {
            return Err(UsageError(
                    "say where to score: --local --repo REPO runs the model in-process, --server URL[,URL...] sends it to running servers".into(),
                )
                .into());
        }
    };
    let inputs = expand_glob(&args.input).map_err(|e| UsageError(format!("--input: {e}")))?;
    let job = spindle_score::ScoreJob {
        inputs,
        output: args.output.clone(),
        batch: args.batch,
        workers: args.jobs.unwrap_or_else(spindle_server::available_cores),
        max_errors: args.max_errors,
    };
    let bar = ShardBar(progress_bar(
        Some(job.inputs.len() as u64),
        args.quiet,
        "{bar:30} {pos}/{len} shards  {msg}  eta {eta}",
    ));
    let summary = job.run_with_progress(factory.as_ref(), &bar)?;
    print_score_summary(&summary);
    if let Some(path) = &args.summary {
        let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing --summary {}", path.display()))?;
    }
    if summary.stopped_on_errors {
        anyhow::bail!(
            "stopped: more than --max-errors {} malformed rows; fix the input or raise --max-errors (no {} written)",
            args.max_errors,
            spindle_score::SUCCESS
        );
    }
    if !summary.shards_failed.is_empty() {
        anyhow::bail!(
            "{} shard(s) could not be scored (listed above); the others are complete, and a rerun scores only what is missing",
            summary.shards_failed.len()
        );
    }
    Ok(summary)
}

fn print_score_summary(s: &ScoreSummary) {
    println!(
        "{}: {} rows in {:.2}s, {:.0} rows/s",
        s.backend, s.rows, s.seconds, s.rows_per_s
    );
    println!(
        "shards: {} scored, {} already complete, {} failed",
        s.shards_scored,
        s.shards_skipped,
        s.shards_failed.len()
    );
    for failure in &s.shards_failed {
        println!("  failed: {failure}");
    }
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

/// The job's progress as a bar of shards, with the rows scored so far and their rate.
struct ShardBar(indicatif::ProgressBar);

impl Progress for ShardBar {
    fn start(&self, shards: u64) {
        self.0.set_length(shards);
    }

    fn shard_done(&self, rows: u64, rate: f64) {
        self.0.inc(1);
        self.0.set_message(format!("{rows} rows  {rate:.0} rows/s"));
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
