//! The one request pipeline every front end (KServe v2 HTTP and gRPC, TF Serving REST) shares
//! after it has parsed its wire format: check inputs against the model, decode images off the
//! async runtime, queue on the model's batcher, then shape the requested outputs (including
//! Triton's classification extension).

use crate::admission::{DecodeBudget, DecodeLimits};
use crate::models::LoadedModel;
use crate::preprocess;
use spindle_core::config::{ModelConfig, TensorSpec};
use spindle_core::dtype::DataType;
use spindle_core::error::{ErrorKind, InferError};
use spindle_core::tensor::{Tensor, TensorData};
use std::sync::Arc;
use std::time::Duration;

/// Server-wide request limits that are not per model.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Decoded pixels allowed per image.
    pub max_image_pixels: u64,
    /// The bytes image decoding may hold, server-wide and per request.
    pub decode: DecodeBudget,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_image_pixels: preprocess::DEFAULT_MAX_IMAGE_PIXELS,
            decode: DecodeBudget::new(DecodeLimits::default()),
        }
    }
}

/// One output a caller asked for.
#[derive(Debug, Clone)]
pub struct OutputRequest {
    /// Index into the config's outputs.
    pub index: usize,
    /// HTTP: raw bytes after the JSON rather than a JSON array.
    pub binary: bool,
    /// Return the top k classes as `score:index[:label]` strings instead of the tensor.
    pub classification: Option<usize>,
}

/// A parsed request in the config's input order, not yet checked against the model.
#[derive(Debug)]
pub struct InferRequest {
    /// The caller's request id, echoed back.
    pub id: Option<String>,
    /// One tensor per config input, in config order.
    pub inputs: Vec<Tensor>,
    /// Outputs to return, in order.
    pub outputs: Vec<OutputRequest>,
    /// Server-side timeout.
    pub timeout: Option<Duration>,
}

/// One output of an answered request.
#[derive(Debug)]
pub struct AnsweredOutput {
    /// Output name.
    pub name: String,
    /// Its value (BYTES strings for classification).
    pub tensor: Tensor,
    /// Whether the caller asked for it as raw bytes (HTTP binary extension).
    pub binary: bool,
}

/// A computed request.
#[derive(Debug)]
pub struct InferAnswer {
    /// Requested outputs, in the requested order.
    pub outputs: Vec<AnsweredOutput>,
    /// Time queued.
    pub queue_time: Duration,
    /// Time of the batch computation that included this request.
    pub compute_time: Duration,
    /// Rows in that batch.
    pub batch_rows: usize,
}

/// Whether an input may arrive as `dtype`: its own type, or BYTES when the server preprocesses
/// it (encoded images). Front ends call this before decoding element data.
pub fn accepts_dtype(spec: &TensorSpec, dtype: DataType) -> Result<(), InferError> {
    if dtype == spec.dtype || (dtype == DataType::Bytes && spec.preprocess.is_some()) {
        return Ok(());
    }
    let also = match spec.preprocess {
        Some(pre) => format!(" (or BYTES holding {} input)", pre.name()),
        None => String::new(),
    };
    Err(InferError::invalid(format!(
        "input '{}': expected datatype {}{also} but got {dtype}",
        spec.name, spec.dtype
    )))
}

/// Places a request's named input tensors into the config's input order, whatever the wire
/// format: unknown names, repeats and missing inputs are refused with the same messages.
pub struct InputSlots<'a> {
    config: &'a ModelConfig,
    slots: Vec<Option<Tensor>>,
}

impl<'a> InputSlots<'a> {
    /// Empty slots for `config`'s inputs.
    pub fn new(config: &'a ModelConfig) -> InputSlots<'a> {
        InputSlots {
            config,
            slots: vec![None; config.inputs.len()],
        }
    }

    /// The config index of input `name`, which must be known and not yet given.
    pub fn index(&self, name: &str) -> Result<usize, InferError> {
        let config = self.config;
        let Some(index) = config.inputs.iter().position(|s| s.name == name) else {
            return Err(InferError::invalid(format!(
                "unknown input '{name}' for model '{}' (expected: {})",
                config.name,
                spindle_core::config::spec_names(&config.inputs)
            )));
        };
        if self.slots[index].is_some() {
            return Err(InferError::invalid(format!(
                "input '{name}' is given twice"
            )));
        }
        Ok(index)
    }

    /// Fills slot `index` (from [`InputSlots::index`]).
    pub fn set(&mut self, index: usize, tensor: Tensor) {
        self.slots[index] = Some(tensor);
    }

    /// Every input in config order, or the first missing one named with its signature.
    pub fn finish(self) -> Result<Vec<Tensor>, InferError> {
        let config = self.config;
        config
            .inputs
            .iter()
            .zip(self.slots)
            .map(|(spec, slot)| {
                slot.ok_or_else(|| {
                    InferError::invalid(format!(
                        "missing input '{}' ({} {}) for model '{}'",
                        spec.name,
                        spec.dtype,
                        spec.dims_display(),
                        config.name
                    ))
                })
            })
            .collect()
    }
}

/// Finds an output by name.
pub fn output_index(config: &ModelConfig, name: &str) -> Result<usize, InferError> {
    config
        .outputs
        .iter()
        .position(|s| s.name == name)
        .ok_or_else(|| {
            InferError::invalid(format!(
                "unknown output '{name}' for model '{}' (available: {})",
                config.name,
                spindle_core::config::spec_names(&config.outputs)
            ))
        })
}

/// Checks one requested output's parameters, whatever the protocol: `classification` (given as
/// `Some(Some(k))` when present and a whole number, `Some(None)` when present but not one) and
/// no parameter outside `known`.
pub fn output_parameters<'a>(
    output: &str,
    classification: Option<Option<u64>>,
    mut keys: impl Iterator<Item = &'a String>,
    known: &[&str],
) -> Result<Option<usize>, InferError> {
    if let Some(key) = keys.find(|k| !known.contains(&k.as_str())) {
        return Err(InferError::invalid(format!(
            "output '{output}': unsupported parameter '{key}' (supported: {})",
            known.join(", ")
        )));
    }
    match classification {
        None => Ok(None),
        Some(Some(k)) if k > 0 => Ok(Some(k as usize)),
        Some(_) => Err(InferError::invalid(format!(
            "output '{output}': classification must be a positive whole number of classes"
        ))),
    }
}

/// Every output, in config order, in one representation.
pub fn all_outputs(config: &ModelConfig, binary: bool) -> Vec<OutputRequest> {
    (0..config.outputs.len())
        .map(|index| OutputRequest {
            index,
            binary,
            classification: None,
        })
        .collect()
}

/// Runs a request on `model`: validation, preprocessing, batching, output shaping.
pub async fn run(
    model: &Arc<LoadedModel>,
    mut request: InferRequest,
    limits: Limits,
) -> Result<InferAnswer, InferError> {
    let config = &model.config;
    // Admission before work: a request's batch is known from its shapes alone, so one over
    // max_batch_size is refused before its images are decoded or its tensors copied (30,000
    // empty image elements once made the decoder reserve 32 GB).
    check_batch_limit(config, &request.inputs)?;
    // Held until the answer: the images' tensors, counted in it, live until their batch ran.
    let _decoding = if preprocess::needs_preparation(&config.inputs, &request.inputs) {
        // Admission by memory: the images' headers say what decoding them will hold; that
        // share of the server's budget is taken before anything is decoded.
        let max_pixels = limits.max_image_pixels;
        let cost = preprocess::decode_cost(&config.inputs, &request.inputs, max_pixels)?;
        let what = match cost.images {
            1 => format!("this request's image, {}", cost.largest),
            n => format!("this request's {n} images (the largest {})", cost.largest),
        };
        let permit = limits.decode.take(cost.total(), &what).await?;
        let specs = config.inputs.clone();
        let features = model.features.clone();
        let mut inputs = std::mem::take(&mut request.inputs);
        // Decoding is milliseconds of CPU per image: keep it off the async workers. The permit
        // goes along, so a caller that leaves mid-decode does not return the bytes early.
        let (prepared, permit) = tokio::task::spawn_blocking(move || {
            let prepared =
                preprocess::prepare_inputs(&specs, &mut inputs, max_pixels, features.as_deref());
            (prepared.map(|()| inputs), permit)
        })
        .await
        .map_err(|e| InferError::new(ErrorKind::Internal, format!("preprocessing failed: {e}")))?;
        request.inputs = prepared?;
        permit
    } else {
        None
    };
    for (spec, tensor) in config.inputs.iter().zip(&request.inputs) {
        spec.check(tensor).map_err(InferError::invalid)?;
    }
    let rows = batch_rows(config, &request.inputs)?;
    for out in &request.outputs {
        if let Some(k) = out.classification {
            check_classification(config, out.index, k)?;
        }
    }
    let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
    let inputs = std::mem::take(&mut request.inputs);
    let computed = model.batcher.infer(inputs, rows, deadline).await?;
    let mut produced: Vec<Option<Tensor>> = computed.outputs.into_iter().map(Some).collect();
    let mut outputs = Vec::with_capacity(request.outputs.len());
    for (i, out) in request.outputs.iter().enumerate() {
        let again = request.outputs[i + 1..]
            .iter()
            .any(|o| o.index == out.index);
        let tensor = if again {
            produced[out.index].clone()
        } else {
            produced[out.index].take()
        }
        .expect("each output is taken once, after its last clone");
        let tensor = match out.classification {
            Some(k) => classify(&tensor, k, model.labels.as_deref()),
            None => tensor,
        };
        outputs.push(AnsweredOutput {
            name: config.outputs[out.index].name.clone(),
            tensor,
            binary: out.binary,
        });
    }
    Ok(InferAnswer {
        outputs,
        queue_time: computed.queue_time,
        compute_time: computed.compute_time,
        batch_rows: computed.batch_rows,
    })
}

/// Refuses a request whose batch dimension exceeds the model's `max_batch_size`, naming the
/// input, from the shapes alone.
fn check_batch_limit(config: &ModelConfig, inputs: &[Tensor]) -> Result<(), InferError> {
    if config.max_batch_size == 0 {
        return Ok(());
    }
    for (spec, tensor) in config.inputs.iter().zip(inputs) {
        check_batch_rows(config, &spec.name, &tensor.shape)?;
    }
    Ok(())
}

/// Refuses input `name` of `shape` when its batch dimension exceeds the model's
/// `max_batch_size`: what front ends check from a request's header, before its data.
pub fn check_batch_rows(
    config: &ModelConfig,
    name: &str,
    shape: &[usize],
) -> Result<(), InferError> {
    let rows = shape.first().copied().unwrap_or(0);
    if config.max_batch_size > 0 && rows > config.max_batch_size {
        return Err(InferError::invalid(format!(
            "input '{name}': batch of {rows} rows is larger than the model's max_batch_size {}; split the request",
            config.max_batch_size
        )));
    }
    Ok(())
}

fn batch_rows(config: &ModelConfig, inputs: &[Tensor]) -> Result<usize, InferError> {
    if config.max_batch_size == 0 {
        return Ok(1);
    }
    let rows = inputs[0].batch();
    if rows == 0 {
        return Err(InferError::invalid(format!(
            "input '{}' has an empty batch (first dimension 0)",
            config.inputs[0].name
        )));
    }
    if let Some((spec, t)) = config
        .inputs
        .iter()
        .zip(inputs)
        .find(|(_, t)| t.batch() != rows)
    {
        return Err(InferError::invalid(format!(
            "inputs disagree on the batch size: '{}' has {rows} rows but '{}' has {}",
            config.inputs[0].name,
            spec.name,
            t.batch()
        )));
    }
    Ok(rows)
}

fn check_classification(config: &ModelConfig, index: usize, k: usize) -> Result<(), InferError> {
    let spec = &config.outputs[index];
    let numeric = !matches!(spec.dtype, DataType::Bytes | DataType::Bool);
    if !numeric {
        return Err(InferError::invalid(format!(
            "output '{}': classification needs a numeric output, not {}",
            spec.name, spec.dtype
        )));
    }
    if k == 0 {
        return Err(InferError::invalid(format!(
            "output '{}': classification must ask for at least 1 class",
            spec.name
        )));
    }
    Ok(())
}

/// Triton's classification extension: per batch row, the top `k` entries of the last dimension
/// as `score:index[:label]`, highest first (ties by lower index). Shape `[rows, k']` where
/// `k' = min(k, classes)`; `[k']` for unbatched outputs.
pub fn classify(tensor: &Tensor, k: usize, labels: Option<&[String]>) -> Tensor {
    // An output whose last dimension is 0 has no classes: every row ranks nothing.
    let classes = tensor.shape.last().copied().unwrap_or(1);
    if classes == 0 {
        let mut shape = tensor.shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = 0;
        }
        return Tensor::new(shape, TensorData::Bytes(Vec::new())).expect("no elements");
    }
    let scores: Vec<f64> = match &tensor.data {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Bool(_) | TensorData::Bytes(_) => Vec::new(),
    };
    let keep = k.min(classes);
    let mut strings = Vec::with_capacity(scores.len() / classes * keep);
    for row in scores.chunks(classes) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &i in &order[..keep.min(row.len())] {
            let mut s = format!("{:.6}:{i}", row[i]);
            if let Some(label) = labels.and_then(|l| l.get(i)) {
                s.push(':');
                s.push_str(label);
            }
            strings.push(s.into_bytes());
        }
    }
    let mut shape = tensor.shape.clone();
    match shape.last_mut() {
        Some(last) => *last = keep,
        None => shape.push(keep),
    }
    Tensor::new(shape, TensorData::Bytes(strings)).expect("k strings per row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_an_output_without_classes_is_empty() {
        let empty = Tensor::new(vec![2, 0], TensorData::F32(Vec::new())).unwrap();
        let ranked = classify(&empty, 3, None);
        assert_eq!(ranked.shape, [2, 0]);
        assert_eq!(ranked.data.len(), 0);
    }

    #[test]
    fn classification_ranks_and_labels() {
        let t = Tensor::new(
            vec![2, 3],
            TensorData::F32(vec![0.1, 0.7, 0.2, 0.5, 0.25, 0.25]),
        )
        .unwrap();
        let labels = vec!["cat".to_string(), "dog".to_string()];
        let out = classify(&t, 2, Some(&labels));
        assert_eq!(out.shape, [2, 2]);
        let TensorData::Bytes(v) = &out.data else {
            panic!("BYTES expected")
        };
        let v: Vec<&str> = v.iter().map(|b| std::str::from_utf8(b).unwrap()).collect();
        // Index 2 has no label line: plain score:index.
        assert_eq!(
            v,
            [
                "0.700000:1:dog",
                "0.200000:2",
                "0.500000:0:cat",
                "0.250000:1:dog"
            ]
        );
        assert_eq!(classify(&t, 10, None).shape, [2, 3]);
    }
}
