//! tract engine for Spindle: pure Rust, no native library.
//!
//! [`TractEngine::load`](spindle_core::engine::Engine::load) parses the ONNX bytes, pins every
//! input to the element type and shape the config declares (the batch dimension becomes a tract
//! symbol, so one plan serves every batch size), checks inputs and outputs against the config,
//! and optimises the model into one plan. tract runs a call on the calling thread only, so a
//! model served by N workers gets N runners sharing that plan through an `Arc`, each with its own
//! execution state.
//!
//! - the config-versus-model comparison is `spindle_core::signature`, shared with ONNX Runtime.
//! - `convert`: element types and tensors between Spindle and tract.

mod convert;

use spindle_core::config::{ModelConfig, TensorSpec};
use spindle_core::engine::{Device, Engine, EngineError, LoadOptions, Runner};
use spindle_core::signature::{self, Declared};
use spindle_core::{DataType, Tensor};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{GenericFactoid, ShapeFactoid};
use tract_onnx::tract_hir::internal::{DimFact, SimpleState};

/// The tract engine: CPU only, single-threaded per run.
#[derive(Clone, Copy, Debug, Default)]
pub struct TractEngine;

impl Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    /// Compiles the model once and returns `options.instances` (at least one) runners sharing it.
    fn load(
        &self,
        onnx: &[u8],
        config: &ModelConfig,
        options: &LoadOptions,
    ) -> Result<Vec<Box<dyn Runner>>, EngineError> {
        if options.device != Device::Cpu {
            return Err(EngineError::Unavailable(format!(
                "the tract engine runs on the CPU only but {} was requested; use --engine ort with onnxruntime-gpu for CUDA",
                options.device
            )));
        }
        let compiled =
            catch_unwind(AssertUnwindSafe(|| compile(onnx, config))).map_err(|panic| {
                EngineError::InvalidModel(format!(
                    "tract failed while compiling the model: {}",
                    panic_message(&panic)
                ))
            })??;
        let compiled = Arc::new(compiled);
        (0..options.instances.max(1))
            .map(|_| {
                let state = compiled.spawn()?;
                Ok(Box::new(TractRunner {
                    model: Arc::clone(&compiled),
                    state,
                }) as Box<dyn Runner>)
            })
            .collect()
    }
}

type Plan = TypedSimplePlan;
type State = SimpleState<TypedFact, Box<dyn TypedOp>>;

/// A model compiled for one config, shared by all its runners.
struct CompiledModel {
    plan: Arc<Plan>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// For each config input, its position among the plan's inputs.
    input_slots: Vec<usize>,
    /// For each config output, its position among the plan's outputs.
    output_slots: Vec<usize>,
}

impl CompiledModel {
    fn spawn(&self) -> Result<State, EngineError> {
        SimpleState::new(&self.plan)
            .map_err(|e| EngineError::InvalidModel(format!("tract could not prepare a run: {e:#}")))
    }
}

fn invalid(context: &str) -> impl Fn(TractError) -> EngineError + '_ {
    move |e| EngineError::InvalidModel(format!("{context}: {e:#}"))
}

/// Parses, checks against `config` and optimises.
fn compile(onnx: &[u8], config: &ModelConfig) -> Result<CompiledModel, EngineError> {
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &*onnx)
        .map_err(invalid("not a model tract can read"))?;

    let input_names: Vec<String> = model
        .input_outlets()
        .map_err(invalid("reading inputs"))?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    let output_names: Vec<String> = model
        .output_outlets()
        .map_err(invalid("reading outputs"))?
        .iter()
        .map(|&o| {
            model
                .outlet_label(o)
                .map_or_else(|| model.node(o.node).name.clone(), str::to_string)
        })
        .collect();
    let input_slots = signature::match_names("input", &config.inputs, &input_names)?;
    let output_slots = signature::match_names("output", &config.outputs, &output_names)?;

    let batch = model.symbols.new_with_prefix("batch");
    let mut substitutions = HashMap::new();
    for (spec, &slot) in config.inputs.iter().zip(&input_slots) {
        let declared_fact = model
            .input_fact(slot)
            .map_err(invalid("reading inputs"))?
            .clone();
        signature::check("input", spec, &declared_input(spec, &declared_fact))?;
        let Some(dt) = convert::datum_type(spec.dtype) else {
            return Err(EngineError::InvalidModel(format!(
                "input '{}' is BYTES, which the tract engine cannot run; use --engine ort",
                spec.name
            )));
        };
        let dims = spec
            .dims
            .iter()
            .enumerate()
            .map(|(j, &size)| {
                let declared = declared_fact.shape.dim(j);
                if size >= 0 {
                    // A model symbol the config pins is replaced everywhere it appears.
                    if let Some(GenericFactoid::Only(TDim::Sym(symbol))) = declared {
                        substitutions.insert(symbol, TDim::Val(size));
                    }
                    return GenericFactoid::Only(TDim::Val(size));
                }
                match declared {
                    Some(GenericFactoid::Only(dim)) => GenericFactoid::Only(dim),
                    _ if j == 0 && config.max_batch_size > 0 => {
                        GenericFactoid::Only(TDim::from(batch.clone()))
                    }
                    _ => GenericFactoid::Only(TDim::from(model.symbols.new_with_prefix("d"))),
                }
            })
            .collect::<TVec<DimFact>>();
        model
            .set_input_fact(
                slot,
                InferenceFact::dt_shape(dt, ShapeFactoid::closed(dims)),
            )
            .map_err(invalid("setting input shapes"))?;
    }
    model
        .set_symbols(&substitutions)
        .map_err(invalid("setting input shapes"))?;

    let typed = model.into_typed().map_err(invalid(
        "tract could not analyse the model with the config's input shapes",
    ))?;
    for (spec, &slot) in config.outputs.iter().zip(&output_slots) {
        let fact = typed
            .output_fact(slot)
            .map_err(invalid("reading outputs"))?;
        let declared = Declared {
            dtype: convert::data_type(fact.datum_type),
            dims: Some(fact.shape.iter().map(|d| d.as_i64()).collect()),
        };
        signature::check("output", spec, &declared)?;
    }
    let plan = typed
        .into_optimized()
        .map_err(invalid("tract could not optimise the model"))?
        .into_runnable()
        .map_err(invalid("tract could not plan the model"))?;
    Ok(CompiledModel {
        plan,
        inputs: config.inputs.clone(),
        outputs: config.outputs.clone(),
        input_slots,
        output_slots,
    })
}

/// What the ONNX file declares for an input, before the config's facts replace it.
fn declared_input(spec: &TensorSpec, fact: &InferenceFact) -> Declared {
    let dtype: Result<DataType, String> = match fact.datum_type {
        GenericFactoid::Only(dt) => convert::data_type(dt),
        GenericFactoid::Any => Ok(spec.dtype),
    };
    let dims = (!fact.shape.is_open()).then(|| {
        fact.shape
            .dims()
            .map(|d| match d {
                GenericFactoid::Only(dim) => dim.as_i64(),
                GenericFactoid::Any => None,
            })
            .collect()
    });
    Declared { dtype, dims }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without message".to_string())
}

/// One worker's handle on a compiled model: the shared plan and this worker's run state.
struct TractRunner {
    model: Arc<CompiledModel>,
    state: State,
}

impl Runner for TractRunner {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let model = &*self.model;
        signature::check_run_inputs(&model.inputs, &inputs)?;
        let mut slots: Vec<Option<TValue>> = (0..inputs.len()).map(|_| None).collect();
        for ((spec, tensor), &slot) in model.inputs.iter().zip(&inputs).zip(&model.input_slots) {
            let value = convert::to_tract(tensor)
                .map_err(|e| EngineError::Run(format!("input '{}': {e}", spec.name)))?;
            slots[slot] = Some(value.into_tvalue());
        }
        drop(inputs);
        let values = slots.into_iter().flatten().collect();
        let outputs = match self.state.run(values) {
            Ok(outputs) => outputs,
            Err(e) => {
                // A failed run can leave values and resolved symbols behind; start clean.
                self.state = model.spawn()?;
                return Err(EngineError::Run(format!("{e:#}")));
            }
        };
        model
            .outputs
            .iter()
            .zip(&model.output_slots)
            .map(|(spec, &slot)| {
                convert::from_tract(&outputs[slot])
                    .map_err(|e| EngineError::Run(format!("output '{}': {e}", spec.name)))
            })
            .collect()
    }
}
