//! `spindle zoo`: writes the model zoo (real ONNX files built in Rust) into a directory, or
//! publishes it version by version to an hdfs:// repository.

use crate::args::parse_zoo_model;
use anyhow::Context;
use clap::Args;
use spindle_loader::{FEATURES_FILE, HDFS_RETRY, MODEL_FILE, ModelRepository};

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

/// Runs `spindle zoo`.
pub async fn run(args: ZooArgs) -> anyhow::Result<()> {
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
        for path in publish_dir(local.path(), &args.out).await? {
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

/// `spindle zoo --out hdfs://...`: writes the zoo locally, then publishes each model.
async fn publish_dir(local: &std::path::Path, repo: &str) -> anyhow::Result<Vec<String>> {
    let target = ModelRepository::connect(repo, HDFS_RETRY)?;
    let source = ModelRepository::open(&local.display().to_string(), HDFS_RETRY).await?;
    let mut published = Vec::new();
    for model in source.scan().await? {
        for version in &model.versions {
            let path = local
                .join(&model.name)
                .join(version.version.to_string())
                .join(MODEL_FILE);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let rel = format!("{}/{}", model.name, version.version);
            if target.storage().exists(&rel).await? {
                tracing::info!(path = %target.storage().display(&rel), "already published; skipping");
                continue;
            }
            // A tabular model's features.toml belongs to its version: the server hashes raw
            // rows with it.
            let features = path.with_file_name(FEATURES_FILE);
            let features = match std::fs::read(&features) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", features.display())),
            };
            let extra: Vec<(&str, &[u8])> = features
                .iter()
                .map(|text| (FEATURES_FILE, text.as_slice()))
                .collect();
            let v = target
                .publish_with(
                    &model.name,
                    &bytes,
                    Some(version.version),
                    model.config_text.as_deref(),
                    model.labels_text.as_deref(),
                    &extra,
                )
                .await?;
            published.push(target.storage().display(&format!("{}/{v}", model.name)));
        }
    }
    Ok(published)
}
