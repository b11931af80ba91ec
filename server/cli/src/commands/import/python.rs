//! The TensorFlow side of `spindle import tf`: finds the user's Python, runs the embedded
//! `import_tf.py` in the import's temp dir and reads back what it wrote (the ONNX file, the
//! signature, the verification batch and TensorFlow's answers to it).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use spindle_core::{DataType, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The helper program, written into the temp dir and run with the user's Python.
const HELPER: &str = include_str!("import_tf.py");

/// The versions this import was tested with (docs/tensorflow.md, tests/conformance/tf).
pub const PIP_INSTALL: &str = "python3 -m venv ~/.cache/spindle/tfvenv && \
     ~/.cache/spindle/tfvenv/bin/pip install 'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0'";

/// What is imported.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A SavedModel directory.
    SavedModel,
    /// A TF1 checkpoint directory or prefix.
    Checkpoint,
}

/// What `import_tf.py` is asked to do (its REQUEST.json).
#[derive(Debug, Serialize)]
pub struct Request {
    /// SavedModel or checkpoint.
    pub source: SourceKind,
    /// The local copy.
    pub path: PathBuf,
    /// The path or URL the user gave, for messages.
    pub display: String,
    /// SavedModels: the signature key.
    pub signature: String,
    /// Checkpoints: TENSOR or NAME=TENSOR.
    pub inputs: Vec<String>,
    /// Checkpoints: TENSOR or NAME=TENSOR.
    pub outputs: Vec<String>,
    /// ONNX opset.
    pub opset: u32,
    /// Rows of the verification batch.
    pub batch: usize,
    /// Seed of the verification batch.
    pub seed: u64,
    /// `--features`: each id position's range, for the first input's verification batch.
    pub id_ranges: Option<Vec<std::ops::Range<i64>>>,
}

/// One input or output as the helper describes it.
#[derive(Debug, Deserialize, Clone)]
struct TensorFile {
    name: String,
    dtype: DataType,
    dims: Vec<i64>,
    shape: Vec<usize>,
    file: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    ok: bool,
    /// On refusal: not_saved_model, not_checkpoint, missing_signature, missing_tensor,
    /// unsupported_ops, no_batch_dimension, unknown_dimension, unsupported_dtype,
    /// conversion_failed or missing_packages.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    tensorflow: String,
    #[serde(default)]
    tf2onnx: String,
    #[serde(default)]
    inputs: Vec<TensorFile>,
    #[serde(default)]
    outputs: Vec<TensorFile>,
}

/// A signature entry with the verification batch's tensor (an input fed, or TensorFlow's output).
#[derive(Debug, Clone)]
pub struct Signed {
    /// The name clients use.
    pub name: String,
    /// Dims with -1 for the batch dimension.
    pub dims: Vec<i64>,
    /// The verification batch's values.
    pub tensor: Tensor,
}

/// A converted model and what TensorFlow answered.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The ONNX file.
    pub onnx: Vec<u8>,
    /// Inputs, with the verification batch.
    pub inputs: Vec<Signed>,
    /// Outputs, with TensorFlow's answers to the batch.
    pub outputs: Vec<Signed>,
    /// TensorFlow's version.
    pub tensorflow: String,
    /// tf2onnx's version.
    pub tf2onnx: String,
}

/// --python, else $SPINDLE_TF_PYTHON, else python3.
pub fn interpreter(given: Option<&Path>) -> PathBuf {
    given
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SPINDLE_TF_PYTHON").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

fn make_one(python: &Path) -> String {
    format!(
        "make one with: {PIP_INSTALL}\nthen pass --python ~/.cache/spindle/tfvenv/bin/python or \
         set SPINDLE_TF_PYTHON to it (this is {})",
        python.display()
    )
}

/// Runs the helper with `python` in `work` (blocking: TensorFlow takes seconds to minutes).
pub fn convert(python: &Path, work: &Path, request: &Request) -> anyhow::Result<Converted> {
    let helper = work.join("import_tf.py");
    std::fs::write(&helper, HELPER).with_context(|| format!("writing {}", helper.display()))?;
    let request_path = work.join("request.json");
    let mut body = serde_json::to_value(request)?;
    body["workdir"] = serde_json::Value::String(work.display().to_string());
    std::fs::write(&request_path, serde_json::to_vec_pretty(&body)?)?;
    let mut command = Command::new(python);
    command.arg(&helper).arg(&request_path).current_dir(work);
    // TensorFlow's C++ start-up chatter would bury a real failure's traceback.
    if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
        command.env("TF_CPP_MIN_LOG_LEVEL", "2");
    }
    let output = command.output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run the Python for the TensorFlow import, {}: {e}\n{}",
            python.display(),
            make_one(python)
        )
    })?;
    let result_path = work.join("result.json");
    if !output.status.success() || !result_path.exists() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        anyhow::bail!(
            "the TensorFlow import ({} import_tf.py) failed ({}):\n{}",
            python.display(),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let answer: Answer = serde_json::from_slice(&std::fs::read(&result_path)?)
        .with_context(|| format!("reading {}", result_path.display()))?;
    if !answer.ok {
        let message = if answer.kind == "missing_packages" {
            format!(
                "{}: spindle import tf needs tensorflow and tf2onnx; {}",
                answer.message,
                make_one(python)
            )
        } else {
            answer.message
        };
        // The helper's message already names what was wrong and what to do.
        anyhow::bail!("{message}");
    }
    let read = |files: &[TensorFile]| -> anyhow::Result<Vec<Signed>> {
        files
            .iter()
            .map(|f| {
                let raw = std::fs::read(work.join(&f.file))?;
                let tensor = Tensor::from_le_bytes(f.dtype, f.shape.clone(), &raw)
                    .with_context(|| format!("reading TensorFlow's '{}'", f.name))?;
                Ok(Signed {
                    name: f.name.clone(),
                    dims: f.dims.clone(),
                    tensor,
                })
            })
            .collect()
    };
    Ok(Converted {
        onnx: std::fs::read(work.join("model.onnx")).context("reading the converted model.onnx")?,
        inputs: read(&answer.inputs)?,
        outputs: read(&answer.outputs)?,
        tensorflow: answer.tensorflow,
        tf2onnx: answer.tf2onnx,
    })
}
