//! ONNX Runtime engine for Spindle (crate ort, load-dynamic).
//!
//! The library is loaded at run time, never linked: [`find_library`] looks for ONNX Runtime
//! 1.31 (`ORT_DYLIB_PATH`, the project's `.cache/venv`, or Python's `onnxruntime` package) and
//! [`init`] loads it once per process, turning every failure into
//! [`EngineError::Unavailable`] with a message that says how to fix it.
//!
//! [`OrtEngine`] gives each runner its own `Session` (`Session::run` takes `&mut self`), so
//! workers never share a lock. A CUDA device registers the CUDA execution provider with
//! `error_on_failure`, so a missing GPU or a CPU-only library is an error, not a silent
//! fallback to the CPU.
//!
//! - `library`: finding the shared library and reading versions from file names.
//! - `runtime`: loading it and creating the process's environment.
//! - the config-versus-model comparison is `spindle_core::signature`, shared with tract.
//! - `convert`: element types and tensors between Spindle and ONNX Runtime.

mod convert;
mod library;
mod runtime;

pub use library::{find_library, locate};
pub use runtime::init;

use ort::ep;
use ort::session::Session;
use ort::session::SessionInputValue;
use ort::session::builder::GraphOptimizationLevel;
use spindle_core::Tensor;
use spindle_core::config::{ModelConfig, Spinning, TensorSpec};
use spindle_core::engine::{Device, Engine, EngineError, LoadOptions, Runner};
use spindle_core::signature::{self, Declared};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// The ONNX Runtime engine. Creating one loads the library (see [`init`]).
#[derive(Clone)]
pub struct OrtEngine {
    runtime: runtime::Runtime,
}

impl std::fmt::Debug for OrtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtEngine")
            .field("library", &self.runtime.path)
            .finish()
    }
}

impl OrtEngine {
    /// Loads the library [`find_library`] finds (or reuses the one already loaded).
    pub fn new() -> Result<OrtEngine, EngineError> {
        Ok(OrtEngine {
            runtime: runtime::runtime(None)?,
        })
    }

    /// The library this engine runs on.
    pub fn library(&self) -> &Path {
        &self.runtime.path
    }

    fn session(&self, onnx: &[u8], options: &LoadOptions) -> Result<Session, EngineError> {
        let builder_error = |e: ort::Error<_>| {
            EngineError::Unavailable(format!("cannot configure an ONNX Runtime session: {e}"))
        };
        let mut builder = Session::builder(&self.runtime.environment)
            .map_err(|e| {
                EngineError::Unavailable(format!("cannot create an ONNX Runtime session: {e}"))
            })?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(builder_error)?
            .with_intra_threads(options.intra_op_threads.max(1))
            .map_err(builder_error)?
            .with_inter_threads(1)
            .map_err(builder_error)?
            .with_intra_op_spinning(options.intra_op_spinning != Spinning::Off)
            .map_err(builder_error)?;
        if options.intra_op_spinning == Spinning::InRun {
            // ONNX Runtime stops its threads spinning when the last concurrent run returns and
            // starts them again with the next run.
            builder = builder
                .with_config_entry("session.force_spinning_stop", "1")
                .map_err(builder_error)?;
        }
        if let Device::Cuda(id) = options.device {
            let cuda = ep::CUDA::default()
                .with_device_id(id as i32)
                .build()
                .error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                EngineError::Unavailable(format!(
                    "CUDA was requested ({}) but ONNX Runtime's CUDA execution provider is not available \
                     with {} ({}); install onnxruntime-gpu 1.31 and point ORT_DYLIB_PATH at its \
                     libonnxruntime.so.1.31.x, or use --device cpu",
                    options.device,
                    self.runtime.path.display(),
                    e.to_string().trim_end_matches('.')
                ))
            })?;
        }
        builder
            .commit_from_memory(onnx)
            .map_err(|e| EngineError::InvalidModel(e.to_string()))
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> &'static str {
        "ort"
    }

    /// Creates `options.instances` (at least one) sessions, checking the first against `config`.
    fn load(
        &self,
        onnx: &[u8],
        config: &ModelConfig,
        options: &LoadOptions,
    ) -> Result<Vec<Box<dyn Runner>>, EngineError> {
        let first = self.session(onnx, options)?;
        let signature = Arc::new(check_signature(&first, config)?);
        let mut runners: Vec<Box<dyn Runner>> = Vec::with_capacity(options.instances.max(1));
        runners.push(Box::new(OrtRunner {
            session: first,
            signature: Arc::clone(&signature),
        }));
        for _ in 1..options.instances {
            runners.push(Box::new(OrtRunner {
                session: self.session(onnx, options)?,
                signature: Arc::clone(&signature),
            }));
        }
        Ok(runners)
    }
}

/// The config's view of a model, shared by its runners.
struct Signature {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

fn check_signature(session: &Session, config: &ModelConfig) -> Result<Signature, EngineError> {
    for (kind, specs, outlets) in [
        ("input", &config.inputs, session.inputs()),
        ("output", &config.outputs, session.outputs()),
    ] {
        let names: Vec<String> = outlets.iter().map(|o| o.name().to_string()).collect();
        let slots = signature::match_names(kind, specs, &names)?;
        for (spec, slot) in specs.iter().zip(slots) {
            let ty = outlets[slot].dtype();
            let declared = Declared {
                dtype: convert::data_type(ty),
                dims: convert::dims(ty),
            };
            signature::check(kind, spec, &declared)?;
        }
    }
    Ok(Signature {
        inputs: config.inputs.clone(),
        outputs: config.outputs.clone(),
    })
}

/// One worker's session.
struct OrtRunner {
    session: Session,
    signature: Arc<Signature>,
}

impl Runner for OrtRunner {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let signature = &*self.signature;
        signature::check_run_inputs(&signature.inputs, &inputs)?;
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for (spec, tensor) in signature.inputs.iter().zip(inputs) {
            let value = convert::to_ort(tensor)
                .map_err(|e| EngineError::Run(format!("input '{}': {e}", spec.name)))?;
            values.push((Cow::Borrowed(spec.name.as_str()), value.into()));
        }
        let outputs = self
            .session
            .run(values)
            .map_err(|e| EngineError::Run(e.to_string()))?;
        signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    EngineError::Run(format!("the model did not produce output '{}'", spec.name))
                })?;
                convert::from_ort(value, spec.dtype)
                    .map_err(|e| EngineError::Run(format!("output '{}': {e}", spec.name)))
            })
            .collect()
    }
}
