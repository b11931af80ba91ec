//! `spindle data`: generated data sets. `criteo` writes Criteo-format days whose labels come
//! from a known model (`spindle_criteo::generate`); `cifar10` and `tfrecord` write synthetic
//! image datasets in those exact formats (`spindle_score::images::synth`). This module parses
//! arguments and shows progress.

use crate::progress::progress_bar;
use anyhow::Context;
use clap::{Args, Subcommand};
use spindle_core::UsageError;
use spindle_criteo::generate::{GenerateConfig, GenerateReport, REPORT_FILE, generate};
use spindle_criteo::shard::Compression;
use spindle_score::images::synth::{self, Encoding, SynthConfig, SynthReport};
use std::path::PathBuf;

/// `spindle data` subcommands.
#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Generate realistic Criteo-format days whose labels come from a known model.
    Criteo(DataCriteoArgs),
    /// Write CIFAR-10 binary batches (data_batch_N.bin: 1 label byte + 3,072 pixel bytes per
    /// record) of SYNTHETIC 32x32 images: made-up patterns per class, not photographs.
    Cifar10(DataImagesArgs),
    /// Write TFRecord shards of tf.train.Example (image/encoded, image/class/label,
    /// image/format) holding SYNTHETIC JPEG or PNG images: made-up patterns, not photographs.
    Tfrecord(DataTfrecordArgs),
}

/// Runs a `spindle data` subcommand.
pub fn run(command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Criteo(args) => data(args).map(drop),
        DataCommand::Cifar10(args) => {
            let report = synth::write_cifar10(&args.config()?)?;
            print_images(&report, "CIFAR-10 binary", &args);
            Ok(())
        }
        DataCommand::Tfrecord(args) => {
            if args.width == 0 || args.height == 0 {
                return Err(UsageError("--width and --height must be at least 1".into()).into());
            }
            let report = synth::write_tfrecord(
                &args.images.config()?,
                args.width,
                args.height,
                args.encoding,
            )?;
            print_images(&report, "TFRecord", &args.images);
            Ok(())
        }
    }
}

/// What both image datasets take.
#[derive(Args, Debug)]
pub struct DataImagesArgs {
    /// Directory to write the shards into.
    #[arg(long)]
    pub out: PathBuf,
    /// Records in all.
    #[arg(long)]
    pub records: u64,
    /// Files to spread them over.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// Classes; labels are drawn from 0..CLASSES.
    #[arg(long, default_value_t = 10)]
    pub classes: u32,
    /// Gzip each file (name ends in .gz); the scorer reads both.
    #[arg(long)]
    pub gzip: bool,
    /// Seed; the same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl DataImagesArgs {
    fn config(&self) -> anyhow::Result<SynthConfig> {
        if self.records == 0 || self.shards == 0 || self.classes == 0 {
            return Err(UsageError(
                "--records, --shards and --classes must each be at least 1".into(),
            )
            .into());
        }
        Ok(SynthConfig {
            out: self.out.clone(),
            records: self.records,
            shards: self.shards,
            seed: self.seed,
            classes: self.classes,
            gzip: self.gzip,
        })
    }
}

/// `spindle data tfrecord`.
#[derive(Args, Debug)]
pub struct DataTfrecordArgs {
    #[command(flatten)]
    images: DataImagesArgs,
    /// Image width in pixels (ImageNet's photos are typically 500x375).
    #[arg(long, default_value_t = 500)]
    pub width: u32,
    /// Image height in pixels.
    #[arg(long, default_value_t = 375)]
    pub height: u32,
    /// Image encoding: jpeg or png.
    #[arg(long, default_value = "jpeg", value_parser = parse_encoding)]
    pub encoding: Encoding,
}

fn parse_encoding(s: &str) -> Result<Encoding, String> {
    match s {
        "jpeg" | "jpg" => Ok(Encoding::Jpeg),
        "png" => Ok(Encoding::Png),
        other => Err(format!("unknown encoding '{other}'; expected jpeg or png")),
    }
}

fn print_images(report: &SynthReport, format: &str, args: &DataImagesArgs) {
    println!(
        "wrote {} synthetic images ({format}, {} classes; made-up patterns, not photographs) in {} files, {} bytes, to {}",
        report.records,
        args.classes,
        report.files.len(),
        report.bytes,
        args.out.display()
    );
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
