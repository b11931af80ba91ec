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
    /// core. A config that gives ONNX Runtime's threads per instance but not the instances, on
    /// the CPU, gets as many instances as fill the cores: `intra_op_threads = 1` alone means one
    /// single-threaded session per core, the shape that suits models with little work per row
    /// (Criteo's lookups), whose runs split across threads mostly wait for each other.
    pub fn load_options(&self, engine: &dyn Engine, config: &ModelConfig) -> LoadOptions {
        let cores = crate::available_cores();
        let (default_instances, threads_for) = if engine.name() == "tract" {
            (cores, 1)
        } else {
            (1, 0)
        };
        let instances = match (config.instance_count, config.intra_op_threads) {
            (Some(n), _) => n,
            (None, Some(threads)) if threads_for == 0 && matches!(self.device, Device::Cpu) => {
                (cores / threads.max(1)).max(1)
            }
            (None, _) => default_instances,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use spindle_core::engine::Runner;

    /// An engine that only has a name: `load_options` looks at nothing else.
    struct Named(&'static str);

    impl Engine for Named {
        fn name(&self) -> &'static str {
            self.0
        }

        fn load(
            &self,
            _: &[u8],
            _: &ModelConfig,
            _: &LoadOptions,
        ) -> Result<Vec<Box<dyn Runner>>, EngineError> {
            unreachable!("load_options never loads")
        }
    }

    fn shape(
        engines: &Engines,
        engine: &'static str,
        instances: Option<usize>,
        threads: Option<usize>,
    ) -> (usize, usize) {
        let mut config = spindle_zoo::ctr::config(42);
        config.instance_count = instances;
        config.intra_op_threads = threads;
        let options = engines.load_options(&Named(engine), &config);
        (options.instances, options.intra_op_threads)
    }

    #[test]
    fn threads_per_instance_alone_fill_the_cores_with_instances_on_the_cpu_only() {
        let cores = crate::available_cores();
        let cpu = Engines::new(EngineChoice::Auto, Device::Cpu);
        // ONNX Runtime: one session over every core unless told otherwise.
        assert_eq!(shape(&cpu, "ort", None, None), (1, cores));
        // Threads per instance alone: instances enough to give each core one thread.
        assert_eq!(shape(&cpu, "ort", None, Some(1)), (cores, 1));
        assert_eq!(shape(&cpu, "ort", None, Some(2 * cores)), (1, 2 * cores));
        // Instances alone share the cores; both given are taken as they are.
        assert_eq!(shape(&cpu, "ort", Some(cores), None), (cores, 1));
        assert_eq!(shape(&cpu, "ort", Some(3), Some(2)), (3, 2));
        // tract is single-threaded: one instance per core whatever the threads say.
        assert_eq!(shape(&cpu, "tract", None, Some(4)), (cores, 4));
        assert_eq!(shape(&cpu, "tract", None, None), (cores, 1));
        // A GPU session is one per device: threads per instance do not multiply it.
        let gpu = Engines::new(EngineChoice::Auto, Device::Cuda(0));
        assert_eq!(shape(&gpu, "ort", None, Some(1)), (1, 1));
    }

    #[test]
    fn the_zoo_serves_criteo_as_one_single_threaded_session_per_core() {
        let cpu = Engines::new(EngineChoice::Auto, Device::Cpu);
        let options = cpu.load_options(&Named("ort"), &spindle_zoo::ctr::config(42));
        assert_eq!(
            (options.instances, options.intra_op_threads),
            (crate::available_cores(), 1)
        );
    }
}
