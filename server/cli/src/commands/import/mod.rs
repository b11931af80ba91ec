//! `spindle import tf`: from a TensorFlow SavedModel or TF1 checkpoint (local or on HDFS) to a
//! served, verified version in a model repository.
//!
//! The flow: fetch the source into a temp dir (`source.rs`), run the embedded `import_tf.py`
//! with the user's Python (`python.rs`: TensorFlow reads the signature, tf2onnx converts, one
//! random batch goes through TensorFlow), build `config.toml` from the signature and run the same
//! batch through the engine Spindle will serve it with (`verify.rs`), and only when the outputs
//! agree within the tolerance, publish the version atomically the way `spindle repo publish`
//! does. With `--features` (`features.rs`), a Criteo model's row transform is published inside
//! the version and its ids input takes raw TSV rows.

mod features;
mod python;
mod source;
mod verify;

use anyhow::Context;
use clap::{Args, Subcommand};
use spindle_core::config::Preprocess;
use spindle_core::engine::EngineChoice;
use spindle_loader::{HDFS_RETRY, ModelRepository};
use std::path::PathBuf;

/// `spindle import` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Import a TensorFlow SavedModel or TF1 checkpoint: convert it to ONNX with tf2onnx, check
    /// that Spindle's engine answers a random batch as TensorFlow does, and publish it as a new
    /// version of a model (config.toml derived from the signature).
    Tf(TfImportArgs),
}

/// `spindle import tf` arguments.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["saved_model", "checkpoint"])))]
pub struct TfImportArgs {
    /// A SavedModel directory (TF2 or Keras `model.export`), local or hdfs://host:port/path.
    #[arg(long, value_name = "PATH")]
    pub saved_model: Option<String>,
    /// A TF1-style checkpoint, local or hdfs://: the directory holding the `checkpoint` file (its
    /// latest model.ckpt-N is used) or a prefix like DIR/model.ckpt-1000 (with its .meta graph).
    /// Needs --inputs and --outputs.
    #[arg(long, value_name = "PATH", requires_all = ["inputs", "outputs"])]
    pub checkpoint: Option<String>,
    /// Checkpoints: the graph tensors fed, comma separated, each TENSOR or NAME=TENSOR (e.g.
    /// `images` or `images=input:0`); NAME is what clients send, default the tensor's name.
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub inputs: Vec<String>,
    /// Checkpoints: the graph tensors answered, like --inputs (e.g.
    /// `probabilities=softmax_linear/Softmax`).
    #[arg(long, value_delimiter = ',', value_name = "C")]
    pub outputs: Vec<String>,
    /// Repository to publish into: a directory or hdfs://host:port/path.
    #[arg(long)]
    pub repo: String,
    /// Model name in the repository.
    #[arg(long)]
    pub model: String,
    /// Version number (default: the newest plus one).
    #[arg(long)]
    pub version: Option<u64>,
    /// SavedModels: the signature to serve.
    #[arg(long, default_value = "serving_default")]
    pub signature: String,
    /// ONNX opset tf2onnx converts to.
    #[arg(long, default_value_t = 17)]
    pub opset: u32,
    /// Python with tensorflow and tf2onnx (default: $SPINDLE_TF_PYTHON, else python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Largest max |TensorFlow - Spindle| allowed on the verification batch; above it nothing is
    /// published.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    pub tolerance: f64,
    /// Let clients send encoded JPEG/PNG to the first input, prepared server-side as the model
    /// was evaluated: cifar10_image or inception_image.
    #[arg(long, value_parser = parse_image_preprocess)]
    pub preprocess: Option<Preprocess>,
    /// A features.toml (the Criteo row transform: integer bucket boundaries, hash buckets,
    /// crosses; see docs/criteo.md) for a model exported as the graph after the id lookup. It is
    /// published inside the version and the first input, which must be INT64 [None, F] with F
    /// the ids per row the file makes, takes raw TSV rows too (preprocess = "criteo_rows"): the
    /// server turns them into ids with this transform, which gives TensorFlow's own ids
    /// (to_hash_bucket_fast, Bucketize + 1, sparse.cross_hashed; docs/tensorflow.md). The
    /// verification batch draws each id from its feature's range.
    #[arg(long, value_name = "FILE", conflicts_with = "preprocess")]
    pub features: Option<PathBuf>,
    /// Class names, one per line, installed beside config.toml (for `--top K` answers).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// max_batch_size in the config.toml written.
    #[arg(long, default_value_t = 64)]
    pub max_batch_size: usize,
    /// Engine to verify with, and to write into config.toml when not auto: auto (ONNX Runtime
    /// when ORT_DYLIB_PATH or an installed library is found, else tract), ort or tract.
    #[arg(long, default_value = "auto", value_parser = crate::args::parse_engine)]
    pub engine: EngineChoice,
    /// Rows in the random verification batch.
    #[arg(long, default_value_t = 2)]
    pub verify_batch: usize,
}

fn parse_image_preprocess(s: &str) -> Result<Preprocess, String> {
    match s {
        "cifar10_image" => Ok(Preprocess::Cifar10Image),
        "inception_image" => Ok(Preprocess::InceptionImage),
        other => Err(format!(
            "'{other}' is not an image preprocessing (use cifar10_image or inception_image)"
        )),
    }
}

/// Runs a `spindle import` subcommand.
pub async fn run(command: ImportCommand) -> anyhow::Result<()> {
    match command {
        ImportCommand::Tf(args) => import_tf(args).await,
    }
}

async fn import_tf(args: TfImportArgs) -> anyhow::Result<()> {
    spindle_loader::check_name(&args.model)?;
    if args.tolerance.is_nan() || args.tolerance < 0.0 {
        anyhow::bail!("--tolerance {}: must be 0 or more", args.tolerance);
    }
    if args.verify_batch == 0 || args.verify_batch > args.max_batch_size {
        anyhow::bail!(
            "--verify-batch {} must be between 1 and --max-batch-size {}",
            args.verify_batch,
            args.max_batch_size
        );
    }
    let features = args
        .features
        .as_deref()
        .map(features::Features::read)
        .transpose()?;
    let labels = args
        .labels
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p).with_context(|| format!("reading --labels {}", p.display()))
        })
        .transpose()?;
    let work = tempfile::Builder::new()
        .prefix("spindle-import-tf-")
        .tempdir()
        .context("creating the import's temp dir")?;
    let (kind, location) = match (&args.saved_model, &args.checkpoint) {
        (Some(path), _) => (python::SourceKind::SavedModel, path.as_str()),
        (None, Some(path)) => (python::SourceKind::Checkpoint, path.as_str()),
        (None, None) => unreachable!("clap requires one of --saved-model and --checkpoint"),
    };
    let local = source::fetch(kind, location, &work.path().join("source")).await?;
    let request = python::Request {
        source: kind,
        path: local,
        display: location.to_string(),
        signature: args.signature.clone(),
        inputs: args.inputs.clone(),
        outputs: args.outputs.clone(),
        opset: args.opset,
        batch: args.verify_batch,
        seed: 20261201,
        id_ranges: features.as_ref().map(features::Features::id_ranges),
    };
    let python = python::interpreter(args.python.as_deref());
    eprintln!(
        "import: converting {location} with {} (TensorFlow, tf2onnx opset {})",
        python.display(),
        args.opset
    );
    let converted = {
        let work = work.path().to_path_buf();
        tokio::task::spawn_blocking(move || python::convert(&python, &work, &request)).await??
    };
    eprintln!(
        "import: converted with TensorFlow {} and tf2onnx {}; {} bytes of ONNX",
        converted.tensorflow,
        converted.tf2onnx,
        converted.onnx.len()
    );
    let mut config = verify::config(&args, &converted)?;
    if let Some(features) = &features {
        features.apply(&mut config)?;
    }
    let checked = {
        let (config, converted, engine) = (config.clone(), converted.clone(), args.engine);
        tokio::task::spawn_blocking(move || verify::compare(engine, &config, &converted)).await??
    };
    for output in &checked.outputs {
        eprintln!(
            "import: verify: output '{}' max |TensorFlow - {}| = {:.3e} over {} values",
            output.name, checked.engine, output.max_abs_diff, output.values
        );
    }
    if checked.max_abs_diff() > args.tolerance || checked.max_abs_diff().is_nan() {
        anyhow::bail!(
            "not published: {} answers the verification batch differently from TensorFlow (max \
             abs diff {:.3e} > --tolerance {:e}); the conversion changed the model's results",
            checked.engine,
            checked.max_abs_diff(),
            args.tolerance
        );
    }
    let repo = ModelRepository::connect(&args.repo, HDFS_RETRY)?;
    // The row transform belongs to the version: the server reads it beside the model.
    let version_files: Vec<(&str, &[u8])> = features
        .iter()
        .map(|f| (spindle_loader::FEATURES_FILE, f.text.as_bytes()))
        .collect();
    let version = repo
        .publish_with(
            &args.model,
            &converted.onnx,
            args.version,
            Some(&config.to_toml()),
            labels.as_deref(),
            &version_files,
        )
        .await?;
    eprintln!(
        "import: verified within {:e} (max abs diff {:.3e} on {}), published",
        args.tolerance,
        checked.max_abs_diff(),
        checked.engine
    );
    println!(
        "{}",
        repo.storage().display(&format!("{}/{version}", args.model))
    );
    Ok(())
}
