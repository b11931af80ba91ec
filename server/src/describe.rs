//! What the server tells clients about a model beyond its metadata, in Triton's shapes: the
//! model configuration (`GET /v2/models/{m}/config`, gRPC `ModelConfig`) and the cumulative
//! statistics (`GET /v2/models/{m}/stats`, gRPC `ModelStatistics`). Built once here; the HTTP
//! front end serialises these structs to JSON and the gRPC one converts them to messages.

use crate::models::{LoadedModel, ModelManager};
use serde::Serialize;
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::statistics::{BatchSnapshot, DurationSnapshot};
use std::collections::BTreeMap;

/// Protocol extensions this server supports (server metadata, HTTP and gRPC).
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "classification",
    "model_configuration",
    "statistics",
];

/// Triton's `TYPE_*` name of a datatype.
pub fn triton_type(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "TYPE_BOOL",
        DataType::U8 => "TYPE_UINT8",
        DataType::I8 => "TYPE_INT8",
        DataType::I16 => "TYPE_INT16",
        DataType::I32 => "TYPE_INT32",
        DataType::I64 => "TYPE_INT64",
        DataType::F32 => "TYPE_FP32",
        DataType::F64 => "TYPE_FP64",
        DataType::Bytes => "TYPE_STRING",
    }
}

/// One input or output in Triton's model configuration.
#[derive(Serialize, Debug, Clone)]
pub struct TritonTensor {
    /// Name.
    pub name: String,
    /// `TYPE_FP32`, ...
    pub data_type: &'static str,
    /// Dims without the batch dimension when the model batches (Triton's convention).
    pub dims: Vec<i64>,
    /// Outputs with class labels name the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_filename: Option<String>,
}

/// Triton's dynamic batching settings.
#[derive(Serialize, Debug, Clone)]
pub struct TritonBatching {
    /// Batch sizes aimed for.
    pub preferred_batch_size: Vec<usize>,
    /// Longest wait for a fuller batch.
    pub max_queue_delay_microseconds: u64,
}

/// Triton's instance group.
#[derive(Serialize, Debug, Clone)]
pub struct TritonInstanceGroup {
    /// Group name.
    pub name: String,
    /// `KIND_CPU` or `KIND_GPU`.
    pub kind: &'static str,
    /// Instances.
    pub count: usize,
    /// GPU ids for `KIND_GPU`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<i32>,
}

/// The platform a model version reports in v2 metadata (HTTP and gRPC) and in its Triton
/// configuration: every Spindle model is an ONNX file, and the name says which runtime runs it,
/// as Triton's `onnxruntime_onnx` does, so both front ends and both endpoints agree.
pub fn platform(engine: &str) -> &'static str {
    if engine == "ort" {
        "onnxruntime_onnx"
    } else {
        "tract_onnx"
    }
}

/// The model configuration of a loaded version, as Triton reports one.
#[derive(Serialize, Debug, Clone)]
pub struct TritonConfig {
    /// Model name.
    pub name: String,
    /// The platform, as [`platform`] names it.
    pub platform: &'static str,
    /// The engine serving it (`onnxruntime` or `tract`).
    pub backend: &'static str,
    /// Largest batch, 0 without a batch dimension.
    pub max_batch_size: usize,
    /// Inputs.
    pub input: Vec<TritonTensor>,
    /// Outputs.
    pub output: Vec<TritonTensor>,
    /// Batching.
    pub dynamic_batching: TritonBatching,
    /// Instances.
    pub instance_group: Vec<TritonInstanceGroup>,
    /// `model.onnx`.
    pub default_model_filename: &'static str,
    /// Spindle settings Triton has no field for (input preprocessing), as string parameters.
    pub parameters: BTreeMap<String, TritonParameter>,
}

/// Triton's `{"string_value": ...}` parameter.
#[derive(Serialize, Debug, Clone)]
pub struct TritonParameter {
    /// The value.
    pub string_value: String,
}

/// The configuration of a loaded model version.
pub fn model_config(model: &LoadedModel) -> TritonConfig {
    let config = &model.config;
    let strip = |dims: &[i64]| -> Vec<i64> {
        if config.max_batch_size > 0 {
            dims[1..].to_vec()
        } else {
            dims.to_vec()
        }
    };
    let tensor = |spec: &spindle_core::config::TensorSpec, labels: bool| TritonTensor {
        name: spec.name.clone(),
        data_type: triton_type(spec.dtype),
        dims: strip(&spec.dims),
        label_filename: labels.then(|| "labels.txt".to_string()),
    };
    let has_labels = model.labels.is_some();
    let mut parameters = BTreeMap::new();
    for spec in &config.inputs {
        if let Some(pre) = spec.preprocess {
            parameters.insert(
                format!("preprocess.{}", spec.name),
                TritonParameter {
                    string_value: pre.name().to_string(),
                },
            );
        }
    }
    if let Some(text) = &model.features_text {
        parameters.insert(
            "features.toml".to_string(),
            TritonParameter {
                string_value: text.clone(),
            },
        );
    }
    let (kind, gpus) = match model.device {
        spindle_core::engine::Device::Cpu => ("KIND_CPU", Vec::new()),
        spindle_core::engine::Device::Cuda(n) => ("KIND_GPU", vec![n as i32]),
    };
    TritonConfig {
        name: model.name.clone(),
        platform: platform(model.engine),
        backend: if model.engine == "ort" {
            "onnxruntime"
        } else {
            model.engine
        },
        max_batch_size: config.max_batch_size,
        input: config.inputs.iter().map(|s| tensor(s, false)).collect(),
        output: config
            .outputs
            .iter()
            .map(|s| tensor(s, has_labels))
            .collect(),
        dynamic_batching: TritonBatching {
            preferred_batch_size: config.preferred_batch_sizes.clone(),
            max_queue_delay_microseconds: config.max_queue_delay.as_micros() as u64,
        },
        instance_group: vec![TritonInstanceGroup {
            name: model.name.clone(),
            kind,
            count: model.instances,
            gpus,
        }],
        default_model_filename: "model.onnx",
        parameters,
    }
}

/// `{"count": n, "ns": t}`.
#[derive(Serialize, Debug, Clone, Copy, Default)]
pub struct StatDuration {
    /// Events.
    pub count: u64,
    /// Summed nanoseconds.
    pub ns: u64,
}

impl From<DurationSnapshot> for StatDuration {
    fn from(s: DurationSnapshot) -> Self {
        StatDuration {
            count: s.count,
            ns: s.ns,
        }
    }
}

/// Triton's `inference_stats`.
#[derive(Serialize, Debug, Clone, Default)]
pub struct InferenceStats {
    /// Successful requests.
    pub success: StatDuration,
    /// Failed requests.
    pub fail: StatDuration,
    /// Queue wait of successful requests.
    pub queue: StatDuration,
    /// Joining inputs.
    pub compute_input: StatDuration,
    /// Engine time.
    pub compute_infer: StatDuration,
    /// Splitting outputs.
    pub compute_output: StatDuration,
    /// Always zero: Spindle has no response cache.
    pub cache_hit: StatDuration,
    /// Always zero: Spindle has no response cache.
    pub cache_miss: StatDuration,
}

/// Triton's per-batch-size statistics.
#[derive(Serialize, Debug, Clone)]
pub struct BatchStats {
    /// Rows in the batch.
    pub batch_size: u64,
    /// Joining inputs.
    pub compute_input: StatDuration,
    /// Engine time.
    pub compute_infer: StatDuration,
    /// Splitting outputs.
    pub compute_output: StatDuration,
}

impl From<BatchSnapshot> for BatchStats {
    fn from(b: BatchSnapshot) -> Self {
        BatchStats {
            batch_size: b.batch_size,
            compute_input: b.compute_input.into(),
            compute_infer: b.compute_infer.into(),
            compute_output: b.compute_output.into(),
        }
    }
}

/// Statistics of one model version.
#[derive(Serialize, Debug, Clone)]
pub struct ModelStatistics {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Milliseconds since the epoch of the last inference; 0 if none.
    pub last_inference: u64,
    /// Rows inferred.
    pub inference_count: u64,
    /// Batches executed.
    pub execution_count: u64,
    /// Per-request statistics.
    pub inference_stats: InferenceStats,
    /// Per-batch-size statistics.
    pub batch_stats: Vec<BatchStats>,
}

fn statistics_of(model: &LoadedModel) -> ModelStatistics {
    let stats = &model.batcher.metrics().stats;
    ModelStatistics {
        name: model.name.clone(),
        version: model.version.to_string(),
        last_inference: stats.last_inference_ms(),
        inference_count: stats.inference_count(),
        execution_count: stats.execution_count(),
        inference_stats: InferenceStats {
            success: stats.success.snapshot().into(),
            fail: stats.fail.snapshot().into(),
            queue: stats.queue.snapshot().into(),
            compute_input: stats.compute_input.snapshot().into(),
            compute_infer: stats.compute_infer.snapshot().into(),
            compute_output: stats.compute_output.snapshot().into(),
            ..Default::default()
        },
        batch_stats: stats.batch_stats().into_iter().map(Into::into).collect(),
    }
}

/// Statistics of every ready version (`name` = None), of every ready version of one model
/// (`version` = None), or of one version. Unknown names and versions are 404s.
pub fn statistics(
    models: &ModelManager,
    name: Option<&str>,
    version: Option<&str>,
) -> Result<Vec<ModelStatistics>, InferError> {
    let loaded = match (name, version) {
        (None, _) => models.all_ready(),
        (Some(name), Some(version)) => vec![models.lookup(name, Some(version))?],
        (Some(name), None) => {
            // Make an unknown model a 404 with the list of known ones.
            models.lookup(name, None).map(|_| ()).or_else(|e| {
                if e.kind == spindle_core::error::ErrorKind::NotFound {
                    Err(e)
                } else {
                    Ok(())
                }
            })?;
            models
                .all_ready()
                .into_iter()
                .filter(|m| m.name == name)
                .collect()
        }
    };
    Ok(loaded.iter().map(|m| statistics_of(m)).collect())
}
