//! `spindle data criteo`: writes Criteo-format days whose labels come from a known model. The
//! generator is `spindle_criteo::generate`; this module parses arguments and shows progress.

use crate::progress::progress_bar;
use anyhow::Context;
use clap::{Args, Subcommand};
use spindle_core::UsageError;
use spindle_criteo::generate::{GenerateConfig, GenerateReport, REPORT_FILE, generate};
use spindle_criteo::shard::Compression;
use std::path::PathBuf;

/// `spindle data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Generate realistic Criteo-format days whose labels come from a known model.
    Criteo(DataCriteoArgs),
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
