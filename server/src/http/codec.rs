//! KServe v2 inference requests and responses over HTTP: JSON tensors, and the binary tensor
//! data extension (`Inference-Header-Content-Length`: a JSON header, then raw little-endian
//! tensors in input order).

use crate::infer::{
    AnsweredOutput, InferAnswer, InferRequest, InputSlots, OutputRequest, accepts_dtype,
    all_outputs, output_index, output_parameters,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spindle_core::config::{ModelConfig, TensorSpec};
use spindle_core::dtype::DataType;
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData};
use std::time::Duration;

/// The JSON part of a v2 inference request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestHeader {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputHeader>,
    #[serde(default)]
    outputs: Option<Vec<OutputHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputHeader {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutputHeader {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Parses a request body. `header_len` is the `Inference-Header-Content-Length` value when the
/// body carries binary tensors after its JSON.
pub fn parse_request(
    config: &ModelConfig,
    body: &[u8],
    header_len: Option<usize>,
) -> Result<InferRequest, InferError> {
    let (json, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(InferError::invalid(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let header: RequestHeader =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            InferError::invalid(format!(
                "malformed request JSON at '{}': {}",
                e.path(),
                e.inner()
            ))
        })?;
    let timeout = match header.parameters.get("timeout") {
        None => None,
        Some(v) => Some(Duration::from_micros(v.as_u64().ok_or_else(|| {
            InferError::invalid(format!(
                "parameter 'timeout' must be a whole number of microseconds, got {v}"
            ))
        })?)),
    };
    let binary_output_default =
        bool_param(&header.parameters, "binary_data_output")?.unwrap_or(false);

    let mut slots = InputSlots::new(config);
    for input in header.inputs {
        let index = slots.index(&input.name)?;
        slots.set(
            index,
            decode_input(&config.inputs[index], input, &mut binary)?,
        );
    }
    if !binary.is_empty() {
        return Err(InferError::invalid(format!(
            "{} bytes of binary data follow the JSON header but no input claims them (binary_data_size)",
            binary.len()
        )));
    }
    let inputs = slots.finish()?;
    let outputs = choose_outputs(config, header.outputs, binary_output_default)?;
    Ok(InferRequest {
        id: header.id,
        inputs,
        outputs,
        timeout,
    })
}

fn bool_param(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, InferError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(InferError::invalid(format!(
            "parameter '{key}' must be true or false, got {other}"
        ))),
    }
}

fn decode_input(
    spec: &TensorSpec,
    input: InputHeader,
    binary: &mut &[u8],
) -> Result<Tensor, InferError> {
    let name = &spec.name;
    let dtype: DataType = input
        .datatype
        .parse()
        .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))?;
    accepts_dtype(spec, dtype)?;
    let binary_size = match input.parameters.get("binary_data_size") {
        None => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            InferError::invalid(format!(
                "input '{name}': binary_data_size must be a byte count, got {v}"
            ))
        })? as usize),
    };
    let tensor = match (binary_size, input.data) {
        (Some(_), Some(_)) => {
            return Err(InferError::invalid(format!(
                "input '{name}' has both 'data' and binary_data_size; send one"
            )));
        }
        (Some(size), None) => {
            if size > binary.len() {
                return Err(InferError::invalid(format!(
                    "input '{name}': binary_data_size is {size} but only {} binary bytes remain",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(size);
            *binary = rest;
            Tensor::from_le_bytes(dtype, input.shape, mine)
                .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))?
        }
        (None, Some(data)) => {
            let mut elements = TensorData::with_capacity(
                dtype,
                spindle_core::tensor::element_count(&input.shape).min(1 << 20),
            );
            flatten_json(&data, &mut elements, name)?;
            Tensor::new(input.shape, elements)
                .map_err(|e| InferError::invalid(format!("input '{name}': {e}")))?
        }
        (None, None) => {
            return Err(InferError::invalid(format!(
                "input '{name}' has no 'data' and no binary_data_size parameter"
            )));
        }
    };
    Ok(tensor)
}

/// Appends the elements of a (possibly nested) JSON array in row-major order.
fn flatten_json(value: &Value, out: &mut TensorData, input: &str) -> Result<(), InferError> {
    for leaf in spindle_core::tensor::json_leaves(value) {
        push_json_element(leaf, out, input)?;
    }
    Ok(())
}

/// Appends one JSON scalar to `out`, converted to its element type; the error names the input
/// and the element's index.
pub fn push_json_element(
    value: &Value,
    out: &mut TensorData,
    input: &str,
) -> Result<(), InferError> {
    let index = out.len();
    let bad = |what: &str| {
        InferError::invalid(format!(
            "input '{input}': element {index} is {value}, not {what}"
        ))
    };
    match out {
        TensorData::F32(v) => {
            let x = value.as_f64().ok_or_else(|| bad("a number"))?;
            // 1e39 would become infinity and the outputs NaN (null in JSON): refuse it here.
            if (x as f32).is_infinite() {
                return Err(bad("within FP32's range (about ±3.4e38)"));
            }
            v.push(x as f32)
        }
        TensorData::F64(v) => v.push(value.as_f64().ok_or_else(|| bad("a number"))?),
        TensorData::I64(v) => v.push(value.as_i64().ok_or_else(|| bad("an INT64 integer"))?),
        TensorData::I32(v) => v.push(int_in_range(value).ok_or_else(|| bad("an INT32 integer"))?),
        TensorData::I16(v) => v.push(int_in_range(value).ok_or_else(|| bad("an INT16 integer"))?),
        TensorData::I8(v) => v.push(int_in_range(value).ok_or_else(|| bad("an INT8 integer"))?),
        TensorData::U8(v) => v.push(int_in_range(value).ok_or_else(|| bad("a UINT8 integer"))?),
        TensorData::Bool(v) => v.push(value.as_bool().ok_or_else(|| bad("true or false"))?),
        TensorData::Bytes(v) => v.push(
            value
                .as_str()
                .ok_or_else(|| bad("a string"))?
                .as_bytes()
                .to_vec(),
        ),
    }
    Ok(())
}

fn int_in_range<T: TryFrom<i64>>(value: &Value) -> Option<T> {
    value.as_i64().and_then(|v| T::try_from(v).ok())
}

fn choose_outputs(
    config: &ModelConfig,
    requested: Option<Vec<OutputHeader>>,
    binary_default: bool,
) -> Result<Vec<OutputRequest>, InferError> {
    let Some(requested) = requested else {
        return Ok(all_outputs(config, binary_default));
    };
    requested
        .into_iter()
        .map(|out| {
            let index = output_index(config, &out.name)?;
            let binary = bool_param(&out.parameters, "binary_data")?.unwrap_or(binary_default);
            let classification = output_parameters(
                &out.name,
                out.parameters.get("classification").map(Value::as_u64),
                out.parameters.keys(),
                &["binary_data", "classification"],
            )?;
            Ok(OutputRequest {
                index,
                binary,
                classification,
            })
        })
        .collect()
}

#[derive(Serialize)]
struct ResponseHeader<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// Borrows tensor elements for serialisation without copying them into `Value`s.
struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::U8(v) => v.serialize(s),
            TensorData::I8(v) => v.serialize(s),
            TensorData::I16(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::Bytes(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// An encoded response body and, when it carries binary tensors, the JSON header's length.
pub struct EncodedResponse {
    /// The body.
    pub body: Vec<u8>,
    /// `Some(n)`: the first n bytes are JSON, the rest raw tensors.
    pub header_len: Option<usize>,
}

/// Encodes a computed request's outputs.
pub fn encode_response(
    config: &ModelConfig,
    version: u64,
    id: Option<&str>,
    answer: &InferAnswer,
) -> EncodedResponse {
    let mut binary = Vec::new();
    let outputs_json = answer
        .outputs
        .iter()
        .map(
            |AnsweredOutput {
                 name,
                 tensor,
                 binary: raw,
             }| {
                let (parameters, data) = if *raw {
                    let before = binary.len();
                    tensor.write_le_bytes(&mut binary);
                    (
                        Some(BinarySize {
                            binary_data_size: binary.len() - before,
                        }),
                        None,
                    )
                } else {
                    (None, Some(JsonData(&tensor.data)))
                };
                OutputJson {
                    name,
                    datatype: tensor.dtype().name(),
                    shape: &tensor.shape,
                    parameters,
                    data,
                }
            },
        )
        .collect();
    let header = ResponseHeader {
        model_name: &config.name,
        model_version: version.to_string(),
        id,
        outputs: outputs_json,
    };
    let mut body = serde_json::to_vec(&header).expect("response header serialises");
    if !answer.outputs.iter().any(|o| o.binary) {
        return EncodedResponse {
            body,
            header_len: None,
        };
    }
    let header_len = body.len();
    body.extend_from_slice(&binary);
    EncodedResponse {
        body,
        header_len: Some(header_len),
    }
}
