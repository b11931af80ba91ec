//! `spindle data criteo` and `spindle train criteo`: the Criteo pipeline's command-line edges.
//! The work is in `spindle-criteo` (generator, transform, trainer) and `spindle-zoo` (the ONNX
//! model); this module parses arguments, shows progress and prints reports.

use crate::cli::UsageError;
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use spindle_criteo::generate::{GenerateConfig, GenerateReport, REPORT_FILE, generate};
use spindle_criteo::shard::{Compression, expand_glob};
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::train::{BayesReference, FtrlConfig, RowSource, TrainReport, train};
use spindle_criteo::transform::Transformer;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// `spindle data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Generate realistic Criteo-format days whose labels come from a known model.
    Criteo(DataCriteoArgs),
}

/// `spindle train` subcommands.
#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Fit the CTR logistic regression (FTRL-Proximal) on raw Criteo shards.
    Criteo(TrainCriteoArgs),
}

/// `spindle data criteo`.
#[derive(Args, Debug)]
pub struct DataCriteoArgs {
    /// Directory to write day_<d>/part-<k> shards into.
    #[arg(long)]
    pub out: PathBuf,
    /// Days to write.
    #[arg(long, default_value_t = 1)]
    pub days: usize,
    /// Rows per day.
    #[arg(long)]
    pub rows_per_day: u64,
    /// Shards per day.
    #[arg(long, default_value_t = 1)]
    pub shards_per_day: usize,
    /// Compression: none, gz or bz2.
    #[arg(long, default_value = "none", value_parser = |s: &str| s.parse::<Compression>())]
    pub compress: Compression,
    /// Seed; the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `spindle train criteo`.
#[derive(Args, Debug)]
pub struct TrainCriteoArgs {
    /// Training shards: a file or a quoted glob like 'data/day_*/part-*'.
    #[arg(long)]
    pub data: String,
    /// Validation shards; by default the last shard matched by --data is held out.
    #[arg(long)]
    pub validation: Option<String>,
    /// Model repository to write criteo_ctr/<next version>/ into.
    #[arg(long)]
    pub out: PathBuf,
    /// Feature spec (features.toml); by default the generator's spec beside the data, else
    /// Spindle's default Criteo spec.
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// Passes over the training shards.
    #[arg(long, default_value_t = 3)]
    pub passes: usize,
    /// FTRL learning rate scale.
    #[arg(long, default_value_t = FtrlConfig::default().alpha)]
    pub alpha: f64,
    /// FTRL L1 strength.
    #[arg(long, default_value_t = FtrlConfig::default().l1)]
    pub l1: f64,
    /// FTRL L2 strength.
    #[arg(long, default_value_t = FtrlConfig::default().l2)]
    pub l2: f64,
}

/// A progress bar on stderr when it is a terminal and `quiet` is off; hidden otherwise, so logs
/// and CI output stay clean.
pub fn progress_bar(length: Option<u64>, quiet: bool, template: &str) -> ProgressBar {
    let bar = match length {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Runs `spindle data criteo`.
pub fn data(args: DataCriteoArgs) -> anyhow::Result<GenerateReport> {
    if args.days == 0 || args.shards_per_day == 0 || args.rows_per_day == 0 {
        return Err(UsageError(
            "--days, --rows-per-day and --shards-per-day must each be at least 1".into(),
        )
        .into());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let total = args.days as u64 * args.rows_per_day;
    let bar = progress_bar(
        Some(total),
        false,
        "{bar:40} {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
    );
    let config = GenerateConfig {
        out: args.out.clone(),
        days: args.days,
        rows_per_day: args.rows_per_day,
        shards_per_day: args.shards_per_day,
        compression: args.compress,
        seed: args.seed,
    };
    let report = generate(&config, &|rows| bar.inc(rows))
        .with_context(|| format!("writing Criteo shards into {}", args.out.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote {} rows in {} shards to {}",
        report.rows,
        report.shards.len(),
        args.out.display()
    );
    println!(
        "click rate {:.4}  Bayes log loss {:.5}  base-rate entropy {:.5}  (report: {})",
        report.click_rate,
        report.bayes_log_loss,
        report.base_rate_entropy,
        args.out.join(REPORT_FILE).display()
    );
    Ok(report)
}

/// The generator's report in the directory of the first shard or up to two levels above it.
fn find_generator_report(first_shard: &Path) -> Option<GenerateReport> {
    first_shard
        .ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(REPORT_FILE))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// The next integer version directory of `model_dir`.
fn next_version(model_dir: &Path) -> u64 {
    std::fs::read_dir(model_dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .map_or(1, |v| v + 1)
}

/// Runs `spindle train criteo`.
pub fn train_criteo(args: TrainCriteoArgs) -> anyhow::Result<TrainReport> {
    let mut shards = expand_glob(&args.data).map_err(|e| UsageError(format!("--data: {e}")))?;
    let validation = match &args.validation {
        Some(pattern) => {
            expand_glob(pattern).map_err(|e| UsageError(format!("--validation: {e}")))?
        }
        None if shards.len() > 1 => vec![shards.pop().expect("more than one")],
        None => {
            return Err(UsageError(format!(
                "--data '{}' matches one shard: give --validation GLOB, or more shards so the last can be held out",
                args.data
            ))
            .into());
        }
    };
    let generator = find_generator_report(&shards[0]);
    let spec = match &args.features {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --features {}", path.display()))?;
            FeatureSpec::from_toml(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => generator
            .as_ref()
            .map_or_else(FeatureSpec::criteo_default, |g| g.spec.clone()),
    };
    let transformer = Transformer::new(spec.clone())?;
    let bayes = generator
        .map(|g| -> anyhow::Result<BayesReference> {
            Ok(BayesReference {
                transformer: Transformer::new(g.spec)?,
                model: g.true_model,
            })
        })
        .transpose()?;
    let config = FtrlConfig {
        alpha: args.alpha,
        l1: args.l1,
        l2: args.l2,
        passes: args.passes,
        ..FtrlConfig::default()
    };
    eprintln!(
        "training on {} shards, validating on {}, {} passes, {} ids",
        shards.len(),
        validation.len(),
        config.passes,
        spec.id_space
    );
    let bar = progress_bar(None, false, "{spinner} {human_pos} rows  {per_sec}");
    let sources: Vec<RowSource> = shards.into_iter().map(RowSource::File).collect();
    let held_out: Vec<RowSource> = validation.into_iter().map(RowSource::File).collect();
    let fitted = train(
        &transformer,
        &sources,
        &held_out,
        config,
        bayes.as_ref(),
        &|rows| bar.inc(rows),
    )?;
    bar.finish_and_clear();
    let built = spindle_zoo::ctr::built(&spec, &fitted.weights, fitted.bias);
    let version = next_version(&args.out.join(spindle_zoo::ctr::NAME));
    let dir = spindle_zoo::write_model(&args.out, &built, version)
        .with_context(|| format!("writing the model into {}", args.out.display()))?;
    print_train_report(&fitted.report);
    println!("wrote {}", dir.join(version.to_string()).display());
    Ok(fitted.report)
}

fn print_train_report(r: &TrainReport) {
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.5}"));
    println!(
        "rows: train {} (per pass), validation {}",
        r.train_rows, r.validation_rows
    );
    println!(
        "train      log loss {:.5}  AUC {}   (progressive, last pass)",
        r.train_log_loss,
        opt(r.train_auc)
    );
    println!(
        "validation log loss {}  AUC {}",
        opt(r.validation_log_loss),
        opt(r.validation_auc)
    );
    println!(
        "validation Bayes log loss {}   base-rate entropy {:.5}   (click rate {:.4})",
        opt(r.bayes_log_loss),
        r.base_rate_entropy,
        r.click_rate
    );
    if r.malformed_rows > 0 {
        println!("malformed rows skipped: {}", r.malformed_rows);
        for example in &r.malformed_examples {
            println!("  {example}");
        }
    }
}

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
pub fn score(args: ScoreArgs) -> anyhow::Result<crate::score::ScoreSummary> {
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    let factory: Box<dyn crate::score::backend::BackendFactory> = match (
        args.local,
        &args.repo,
        args.server.is_empty(),
    ) {
        (true, Some(repo), _) => Box::new(crate::score::backend::LocalFactory::open(
            repo,
            &args.model,
            args.engine,
        )?),
        (false, _, false) => Box::new(crate::score::backend::RemoteFactory::open(
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
    let job = crate::score::ScoreJob {
        inputs,
        output: args.output.clone(),
        batch: args.batch,
        workers: args.jobs.unwrap_or_else(crate::available_cores),
        max_errors: args.max_errors,
        quiet: args.quiet,
    };
    let summary = job.run(factory.as_ref())?;
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
            crate::score::SUCCESS
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

fn print_score_summary(s: &crate::score::ScoreSummary) {
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
