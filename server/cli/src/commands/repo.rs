//! `spindle repo publish` and `spindle repo ls`: write and inspect a model repository, local or
//! on HDFS, the way the server reads it.

use anyhow::Context;
use clap::{Args, Subcommand};
use spindle_loader::{
    FEATURES_FILE, HDFS_RETRY, MODEL_FILE, ModelCache, ModelRepository, SHA256_FILE, SUCCESS_FILE,
};
use std::path::PathBuf;

/// `spindle repo` subcommands.
#[derive(Subcommand, Debug)]
pub enum RepoCommand {
    /// Publish a model file as a new version (uploaded beside the versions, then renamed into
    /// place in one step, with a sha256 sidecar).
    Publish(PublishArgs),
    /// List models, their versions and whether each would be served.
    Ls(LsArgs),
    /// Download one version into a local directory, verified (size, sha256 sidecar) the way
    /// the server fetches it, and say how long the download took.
    Get(GetArgs),
}

/// `spindle repo publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// Repository: a directory or hdfs://host:port/path (hdfs://nameservice/path with
    /// HADOOP_CONF_DIR).
    pub repo: String,
    /// Model name.
    pub model: String,
    /// The ONNX file to publish.
    pub file: PathBuf,
    /// Version number (default: the newest plus one).
    #[arg(long)]
    pub version: Option<u64>,
    /// A config.toml to install for the model (needed for its first version).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A labels.txt to install beside the config.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// A features.toml to publish inside the version (tabular models served raw rows).
    #[arg(long)]
    pub features: Option<PathBuf>,
}

/// `spindle repo ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Repository: a directory or hdfs:// URL.
    pub repo: String,
}

/// `spindle repo get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// Repository: a directory or hdfs:// URL.
    pub repo: String,
    /// Model name.
    pub model: String,
    /// Directory to download into: the version lands in OUT/<model>/<version>/ (created if
    /// missing; a copy already there with the same listing is reused).
    #[arg(long)]
    pub out: PathBuf,
    /// Version number (default: the newest version the model's policy serves).
    #[arg(long)]
    pub version: Option<u64>,
}

/// Runs a `spindle repo` subcommand.
pub async fn run(command: RepoCommand) -> anyhow::Result<()> {
    match command {
        RepoCommand::Publish(args) => publish(args).await,
        RepoCommand::Ls(args) => ls(args).await,
        RepoCommand::Get(args) => get(args).await,
    }
}

async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let model = std::fs::read(&args.file)
        .with_context(|| format!("reading the model file {}", args.file.display()))?;
    let read_text = |path: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        path.as_ref()
            .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())))
            .transpose()
    };
    let config = read_text(&args.config)?;
    let labels = read_text(&args.labels)?;
    let features = read_text(&args.features)?;
    let extra: Vec<(&str, &[u8])> = features
        .iter()
        .map(|text| (FEATURES_FILE, text.as_bytes()))
        .collect();
    let repo = ModelRepository::connect(&args.repo, HDFS_RETRY)?;
    let version = repo
        .publish_with(
            &args.model,
            &model,
            args.version,
            config.as_deref(),
            labels.as_deref(),
            &extra,
        )
        .await?;
    println!(
        "{}",
        repo.storage().display(&format!("{}/{version}", args.model))
    );
    Ok(())
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let repo = ModelRepository::open(&args.repo, HDFS_RETRY).await?;
    let model = repo.model(&args.model).await?;
    let version = match args.version {
        Some(n) => model.version(n).filter(|v| v.has_model()).ok_or_else(|| {
            anyhow::anyhow!(
                "model '{}' has no version {n} with a {MODEL_FILE} in {}",
                args.model,
                repo.location()
            )
        })?,
        None => *model.wanted_versions().last().ok_or_else(|| {
            anyhow::anyhow!(
                "model '{}' has no version to serve in {} (see `spindle repo ls {}`)",
                args.model,
                repo.location(),
                repo.location()
            )
        })?,
    };
    let cache = ModelCache::new(&args.out)?;
    let fetched = cache.fetch(&repo, &model, version).await?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = fetched.downloaded_bytes;
    println!(
        "{}  {bytes} bytes downloaded in {seconds:.3} s ({:.1} MB/s)",
        fetched.model_path().display(),
        bytes as f64 / 1e6 / seconds.max(1e-9)
    );
    Ok(())
}

async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let repo = ModelRepository::open(&args.repo, HDFS_RETRY).await?;
    let models = repo.scan().await?;
    if models.is_empty() {
        println!("{}: no models", repo.location());
    }
    for model in models {
        match &model.config {
            Ok(config) => println!(
                "{}  (version policy: {:?})",
                model.name, config.version_policy
            ),
            Err(e) => println!("{}  BROKEN: {e}", model.name),
        }
        let wanted: Vec<u64> = model.wanted_versions().iter().map(|v| v.version).collect();
        let complete: Vec<u64> = model
            .complete_versions()
            .iter()
            .map(|v| v.version)
            .collect();
        for version in &model.versions {
            let size = version
                .file(MODEL_FILE)
                .map_or("-".to_string(), |f| format!("{} bytes", f.len));
            let state = if wanted.contains(&version.version) {
                "served"
            } else if complete.contains(&version.version) {
                "not wanted by the policy"
            } else if !version.has_model() {
                "incomplete: no model.onnx"
            } else {
                "incomplete: no _SUCCESS marker"
            };
            let checks = [
                (SHA256_FILE, version.file(SHA256_FILE).is_some()),
                (SUCCESS_FILE, version.has_success_marker()),
            ]
            .iter()
            .filter(|(_, present)| *present)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");
            println!("  {:>6}  {size:>16}  {state}  {checks}", version.version);
        }
    }
    Ok(())
}
