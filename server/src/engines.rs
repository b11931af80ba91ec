//! Chooses the engine for each model: `--engine` on the command line wins, then the model's
//! `engine` setting; `auto` means ONNX Runtime when its library loads, tract otherwise.

use spindle_core::config::ModelConfig;
use spindle_core::engine::{Device, Engine, EngineChoice, EngineError, LoadOptions};
use spindle_engine_ort::OrtEngine;
use spindle_engine_tract::TractEngine;
use std::sync::{Arc, OnceLock};

/// The engines available to this server, created lazily.
pub struct Engines {
    choice: EngineChoice,
    device: Device,
    ort: OnceLock<Result<Arc<OrtEngine>, EngineError>>,
    tract: Arc<TractEngine>,
}

impl Engines {
    /// Engines for `--engine choice` on `device`.
    pub fn new(choice: EngineChoice, device: Device) -> Engines {
        Engines {
            choice,
            device,
            ort: OnceLock::new(),
            tract: Arc::new(TractEngine),
        }
    }

    /// ONNX Runtime, initialised on first use; the error says how to install it.
    pub fn ort(&self) -> Result<Arc<OrtEngine>, EngineError> {
        self.ort
            .get_or_init(|| {
                let engine = OrtEngine::new().map(Arc::new);
                match &engine {
                    Ok(_) => tracing::info!("ONNX Runtime engine ready"),
                    Err(e) => tracing::info!(reason = %e, "ONNX Runtime engine unavailable"),
                }
                engine
            })
            .clone()
    }

    /// The engine for `config`, or why none can serve it.
    pub fn for_model(&self, config: &ModelConfig) -> Result<Arc<dyn Engine>, EngineError> {
        let choice = match self.choice {
            EngineChoice::Auto => config.engine,
            explicit => explicit,
        };
        let wants_gpu = matches!(self.device, Device::Cuda(_));
        match choice {
            EngineChoice::Ort => Ok(self.ort()? as Arc<dyn Engine>),
            EngineChoice::Tract if wants_gpu => Err(EngineError::Unavailable(format!(
                "tract runs on the CPU only, but --device {} was asked for; use --engine ort",
                self.device
            ))),
            EngineChoice::Tract => Ok(self.tract.clone()),
            // Asking for a GPU means ONNX Runtime or a clear failure, never a quiet CPU fallback.
            EngineChoice::Auto if wants_gpu => Ok(self.ort()? as Arc<dyn Engine>),
            EngineChoice::Auto => match self.ort() {
                Ok(ort) => Ok(ort),
                Err(_) => Ok(self.tract.clone()),
            },
        }
    }

    /// Instances and threads for `config` on `engine`: ONNX Runtime parallelises inside a run,
    /// so one instance gets every core; tract runs single-threaded, so it gets one instance per
    /// core.
    pub fn load_options(&self, engine: &dyn Engine, config: &ModelConfig) -> LoadOptions {
        let cores = crate::available_cores();
        let (default_instances, threads_for) = if engine.name() == "tract" {
            (cores, 1)
        } else {
            (1, 0)
        };
        let instances = config.instance_count.unwrap_or(default_instances);
        let intra_op_threads = config.intra_op_threads.unwrap_or(if threads_for == 0 {
            (cores / instances).max(1)
        } else {
            threads_for
        });
        LoadOptions {
            instances,
            intra_op_threads,
            intra_op_spinning: config.intra_op_spinning,
            device: self.device,
        }
    }
}
