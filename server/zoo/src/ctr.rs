//! The Criteo CTR model as ONNX: `ids` INT64 `[batch, F]` -> `Gather` from one weight per id ->
//! `ReduceSum` over the features -> `+ bias` -> `Sigmoid` -> `ctr` FP32 `[batch, 1]`. A logistic
//! regression over one-hot ids is exactly this: the sum of the weights of the ids that are on.
//!
//! [`fit_zoo_model`] fits the zoo's `criteo_ctr` on a small generated set (deterministic from the
//! seed, seconds); `spindle train criteo` fits on real shards and calls [`built`].

use crate::BuiltModel;
use crate::builder::BATCH_DIM;
use crate::onnx::{
    self, AttributeProto, AttributeType, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use prost::Message;
use spindle_core::config::TensorSpec;
use spindle_core::{DataType, ModelConfig};
use spindle_criteo::generate::{RowGenerator, calibrated_model};
use spindle_criteo::spec::FeatureSpec;
use spindle_criteo::train::{FtrlConfig, RowSource, TrainReport, train};
use spindle_criteo::transform::Transformer;
use std::sync::Arc;
use std::time::Duration;

/// The model's name in a repository.
pub const NAME: &str = "criteo_ctr";
/// The input: one id per feature.
pub const INPUT: &str = "ids";
/// The output: the click probability.
pub const OUTPUT: &str = "ctr";

fn value_info(name: &str, elem: onnx::DataType, width: usize) -> ValueInfoProto {
    let dim = |d: Dimension| d;
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto {
                    dim: vec![
                        dim(Dimension {
                            dim_param: Some(BATCH_DIM.to_string()),
                            ..Default::default()
                        }),
                        dim(Dimension {
                            dim_value: Some(width as i64),
                            ..Default::default()
                        }),
                    ],
                }),
            }),
            denotation: None,
        }),
        doc_string: None,
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: Some(output.to_string()),
        op_type: Some(op.to_string()),
        attribute,
        ..Default::default()
    }
}

/// The ONNX model for `weights` (one per id), `bias`, and `fields` ids per row.
pub fn model(weights: &[f32], bias: f32, fields: usize) -> ModelProto {
    let raw = |values: &[f32]| values.iter().flat_map(|w| w.to_le_bytes()).collect();
    let initializer = vec![
        TensorProto {
            dims: vec![weights.len() as i64],
            data_type: Some(onnx::DataType::Float as i32),
            name: Some("weights".into()),
            raw_data: Some(raw(weights)),
            ..Default::default()
        },
        TensorProto {
            dims: vec![1],
            data_type: Some(onnx::DataType::Float as i32),
            name: Some("bias".into()),
            raw_data: Some(raw(&[bias])),
            ..Default::default()
        },
        TensorProto {
            dims: vec![1],
            data_type: Some(onnx::DataType::Int64 as i32),
            name: Some("sum_axes".into()),
            raw_data: Some(1i64.to_le_bytes().to_vec()),
            ..Default::default()
        },
    ];
    let int = |name: &str, i: i64| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(i),
        ..Default::default()
    };
    let nodes = vec![
        node(
            "Gather",
            &["weights", INPUT],
            "gathered",
            vec![int("axis", 0)],
        ),
        node(
            "ReduceSum",
            &["gathered", "sum_axes"],
            "summed",
            vec![int("keepdims", 1)],
        ),
        node("Add", &["summed", "bias"], "logit", vec![]),
        node("Sigmoid", &["logit"], OUTPUT, vec![]),
    ];
    ModelProto {
        ir_version: Some(onnx::IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(onnx::OPSET_VERSION),
        }],
        producer_name: Some("spindle".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: None,
        doc_string: Some("Criteo CTR: logistic regression over hashed, bucketized ids".into()),
        graph: Some(GraphProto {
            node: nodes,
            name: Some(NAME.into()),
            initializer,
            input: vec![value_info(INPUT, onnx::DataType::Int64, fields)],
            output: vec![value_info(OUTPUT, onnx::DataType::Float, 1)],
            ..Default::default()
        }),
    }
}

/// The serving config: `ids` INT64 `[-1, F]` in, `ctr` FP32 `[-1, 1]` out.
pub fn config(fields: usize) -> ModelConfig {
    ModelConfig {
        name: NAME.to_string(),
        max_batch_size: 4096,
        preferred_batch_sizes: Vec::new(),
        max_queue_delay: Duration::ZERO,
        max_queue_size: 1024,
        instance_count: None,
        // One single-threaded session per core (see `Engines::load_options`): a run is a few
        // hundred thousand table lookups, and split across threads it mostly waits for the
        // other half, spinning, which on cores shared with a batch scorer cost the server 10 %
        // more CPU per row (bench/criteo.sh, docs/performance.md).
        intra_op_threads: Some(1),
        intra_op_spinning: Default::default(),
        idle_spin: spindle_core::config::DEFAULT_IDLE_SPIN,
        engine: Default::default(),
        version_policy: Default::default(),
        version_labels: Default::default(),
        require_success_marker: false,
        inputs: vec![TensorSpec {
            name: INPUT.to_string(),
            dtype: DataType::I64,
            dims: vec![-1, fields as i64],
            // Raw TSV rows are accepted too, transformed by the version's features.toml.
            preprocess: Some(spindle_core::config::Preprocess::CriteoRows),
        }],
        outputs: vec![TensorSpec {
            name: OUTPUT.to_string(),
            dtype: DataType::F32,
            dims: vec![-1, 1],
            preprocess: None,
        }],
    }
}

/// A fitted model ready to write: ONNX, config and `features.toml`.
pub fn built(spec: &FeatureSpec, weights: &[f32], bias: f32) -> BuiltModel {
    assert_eq!(weights.len() as u64, spec.id_space, "one weight per id");
    let fields = spec.fields();
    BuiltModel {
        onnx: model(weights, bias, fields).encode_to_vec(),
        config: config(fields),
        labels: None,
        features: Some(spec.to_toml()),
        parameters: spec.id_space + 1,
        multiply_adds: fields as u64,
    }
}

/// Rows the zoo's model is fitted on, and validated on.
const ZOO_TRAIN_ROWS: usize = 150_000;
const ZOO_VALIDATION_ROWS: usize = 30_000;

/// Fits the zoo's `criteo_ctr` on generated rows: the same seed gives the same file.
pub fn fit_zoo_model(seed: u64) -> (BuiltModel, TrainReport) {
    let spec = FeatureSpec::criteo_default();
    let transformer = Transformer::new(spec.clone()).expect("the default spec is valid");
    let truth = calibrated_model(seed, &transformer);
    let rows = |stream: u64, n: usize| {
        let mut generator = RowGenerator::new(stream, &transformer, &truth);
        let mut bytes = Vec::with_capacity(n * 160);
        for _ in 0..n {
            generator.row(&mut bytes);
        }
        bytes
    };
    let train_rows =
        RowSource::Memory("zoo-train".into(), Arc::new(rows(seed ^ 1, ZOO_TRAIN_ROWS)));
    let validation = RowSource::Memory(
        "zoo-validation".into(),
        Arc::new(rows(seed ^ 2, ZOO_VALIDATION_ROWS)),
    );
    let config = FtrlConfig {
        passes: 2,
        ..FtrlConfig::default()
    };
    let fitted = train(
        &transformer,
        &[train_rows],
        &[validation],
        config,
        None,
        &|_| {},
    )
    .expect("generated rows are labelled and well-formed");
    (built(&spec, &fitted.weights, fitted.bias), fitted.report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zoo_model_is_deterministic_beats_the_base_rate_and_has_the_declared_signature() {
        let (first, report) = fit_zoo_model(3);
        let (second, _) = fit_zoo_model(3);
        assert!(first.onnx == second.onnx, "same seed, different bytes");
        let loss = report.validation_log_loss.unwrap();
        assert!(loss < report.base_rate_entropy, "{report:?}");

        let spec = FeatureSpec::from_toml(first.features.as_deref().unwrap()).unwrap();
        assert_eq!(first.config.inputs[0].dims, [-1, spec.fields() as i64]);
        first.config.validate().unwrap();
        let decoded = ModelProto::decode(first.onnx.as_slice()).unwrap();
        let graph = decoded.graph.unwrap();
        let ops: Vec<_> = graph
            .node
            .iter()
            .map(|n| n.op_type.clone().unwrap())
            .collect();
        assert_eq!(ops, ["Gather", "ReduceSum", "Add", "Sigmoid"]);
        let weights = graph.initializer[0].raw_data.as_ref().unwrap();
        assert_eq!(weights.len() as u64, 4 * spec.id_space);
    }
}
