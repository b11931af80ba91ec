//! `spindle train criteo`: fits the CTR logistic regression (FTRL-Proximal) on raw Criteo shards
//! and publishes it as a new version of a model repository. The trainer is
//! `spindle_criteo::train` and the ONNX model `spindle_zoo::ctr`; this module parses arguments
//! and prints the report.

use crate::progress::progress_bar;
use anyhow::Context;
use clap::{Args, Subcommand};
use spindle_core::UsageError;
use spindle_criteo::generate::{GenerateReport, REPORT_FILE};
use spindle_criteo::shard::expand_glob;
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::train::{BayesReference, FtrlConfig, RowSource, TrainReport, train};
use spindle_criteo::transform::Transformer;
use std::path::{Path, PathBuf};

/// `spindle train` subcommands.
#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Fit the CTR logistic regression (FTRL-Proximal) on raw Criteo shards.
    Criteo(TrainCriteoArgs),
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
