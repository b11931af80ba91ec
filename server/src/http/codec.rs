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

/// Bodies up to this size are parsed on the async worker they arrived on (a few hundred
/// microseconds at most); larger ones on tokio's blocking pool, so that a body of many megabytes
/// (a 59 MiB one took 2.4 s) never holds up health checks, other requests and gRPC.
pub const INLINE_PARSE_BYTES: usize = 64 << 10;

/// Runs `parse` over `body`: in place when the body is small, else on the blocking pool (see
/// [`INLINE_PARSE_BYTES`]). The body is dropped as soon as it has been parsed.
pub async fn parse_off_runtime<T, F>(body: bytes::Bytes, parse: F) -> Result<T, InferError>
where
    T: Send + 'static,
    F: FnOnce(&[u8]) -> Result<T, InferError> + Send + 'static,
{
    if body.len() <= INLINE_PARSE_BYTES {
        return parse(&body);
    }
    tokio::task::spawn_blocking(move || parse(&body))
        .await
        .map_err(|e| {
            InferError::new(
                spindle_core::error::ErrorKind::Internal,
                format!("parsing the request body failed: {e}"),
            )
        })?
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
    model_version: VersionString,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputJson<'a>>,
}

/// A version number written as the JSON string the protocol wants, straight into the body
/// (serde_json's `collect_str` formats without a `to_string()` per response).
struct VersionString(u64);

impl Serialize for VersionString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
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

/// Room reserved for the JSON header of a binary response: the model name, version, id and each
/// output's name, type and shape fit in this with room to spare, so the body is allocated once.
const HEADER_RESERVE: usize = 256;
const HEADER_RESERVE_PER_OUTPUT: usize = 128;

/// Encodes a computed request's outputs. The body is sized first (the JSON header's estimate
/// plus every binary tensor's exact length) and each binary tensor is written into it once,
/// after the header, with no intermediate buffer.
pub fn encode_response(
    config: &ModelConfig,
    version: u64,
    id: Option<&str>,
    answer: &InferAnswer,
) -> EncodedResponse {
    let mut binary_len = 0;
    let outputs: Vec<OutputJson> = answer
        .outputs
        .iter()
        .map(
            |AnsweredOutput {
                 name,
                 tensor,
                 binary: raw,
             }| {
                let (parameters, data) = if *raw {
                    let size = tensor.le_byte_len();
                    binary_len += size;
                    (
                        Some(BinarySize {
                            binary_data_size: size,
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
        model_version: VersionString(version),
        id,
        outputs,
    };
    let mut body = Vec::with_capacity(
        HEADER_RESERVE
            + HEADER_RESERVE_PER_OUTPUT * answer.outputs.len()
            + id.map_or(0, str::len)
            + binary_len,
    );
    serde_json::to_writer(&mut body, &header).expect("response header serialises");
    if !answer.outputs.iter().any(|o| o.binary) {
        return EncodedResponse {
            body,
            header_len: None,
        };
    }
    let header_len = body.len();
    for output in answer.outputs.iter().filter(|o| o.binary) {
        write_le(&output.tensor, &mut body);
    }
    debug_assert_eq!(body.len(), header_len + binary_len);
    EncodedResponse {
        body,
        header_len: Some(header_len),
    }
}

/// Appends a tensor's raw little-endian bytes. On little-endian machines numeric elements are
/// already in wire order, so each tensor is one `memcpy`; BOOL, BYTES and big-endian machines
/// take the element-by-element path.
fn write_le(tensor: &Tensor, body: &mut Vec<u8>) {
    if cfg!(target_endian = "little") {
        let bytes: &[u8] = match &tensor.data {
            TensorData::U8(v) => v,
            TensorData::I8(v) => bytemuck::cast_slice(v),
            TensorData::I16(v) => bytemuck::cast_slice(v),
            TensorData::I32(v) => bytemuck::cast_slice(v),
            TensorData::I64(v) => bytemuck::cast_slice(v),
            TensorData::F32(v) => bytemuck::cast_slice(v),
            TensorData::F64(v) => bytemuck::cast_slice(v),
            TensorData::Bool(_) | TensorData::Bytes(_) => return tensor.write_le_bytes(body),
        };
        body.extend_from_slice(bytes);
    } else {
        tensor.write_le_bytes(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn answer(outputs: Vec<(&str, Tensor, bool)>) -> InferAnswer {
        InferAnswer {
            outputs: outputs
                .into_iter()
                .map(|(name, tensor, binary)| AnsweredOutput {
                    name: name.into(),
                    tensor,
                    binary,
                })
                .collect(),
            queue_time: Duration::ZERO,
            compute_time: Duration::ZERO,
            batch_rows: 1,
        }
    }

    fn config() -> ModelConfig {
        ModelConfig::from_toml(
            "name = \"m\"\nmax_batch_size = 8\n\
             [[inputs]]\nname = \"x\"\ndtype = \"FP32\"\ndims = [-1, 2]\n\
             [[outputs]]\nname = \"p\"\ndtype = \"FP32\"\ndims = [-1, 2]\n",
        )
        .unwrap()
    }

    #[test]
    fn binary_outputs_follow_the_header_once_each_in_an_exactly_sized_body() {
        let f32s = Tensor::new(vec![1, 3], TensorData::F32(vec![1.5, -2.0, 3.25])).unwrap();
        let i64s = Tensor::new(vec![2], TensorData::I64(vec![-7, 1 << 40])).unwrap();
        let bools = Tensor::new(vec![2], TensorData::Bool(vec![true, false])).unwrap();
        let strings = Tensor::new(
            vec![2],
            TensorData::Bytes(vec![b"cat".to_vec(), Vec::new()]),
        )
        .unwrap();
        let json = Tensor::new(vec![2], TensorData::I32(vec![4, 5])).unwrap();
        let outputs = vec![
            ("f", f32s.clone(), true),
            ("j", json, false),
            ("i", i64s.clone(), true),
            ("b", bools.clone(), true),
            ("s", strings.clone(), true),
        ];
        let encoded = encode_response(&config(), 12, Some("req-9"), &answer(outputs));
        let header_len = encoded
            .header_len
            .expect("binary outputs give a header length");
        let header: Value = serde_json::from_slice(&encoded.body[..header_len]).unwrap();
        assert_eq!(header["model_version"], "12");
        assert_eq!(header["id"], "req-9");
        assert_eq!(header["outputs"][1]["data"], serde_json::json!([4, 5]));
        let mut expected = Vec::new();
        for (i, tensor) in [(0, &f32s), (2, &i64s), (3, &bools), (4, &strings)] {
            let before = expected.len();
            tensor.write_le_bytes(&mut expected);
            assert_eq!(
                header["outputs"][i]["parameters"]["binary_data_size"],
                expected.len() - before,
                "output {i}"
            );
        }
        assert_eq!(&encoded.body[header_len..], &expected[..]);
        // Sized first: the body was allocated once, never grown (growth doubles the capacity).
        assert_eq!(
            encoded.body.capacity(),
            HEADER_RESERVE + HEADER_RESERVE_PER_OUTPUT * 5 + "req-9".len() + expected.len()
        );
    }

    #[test]
    fn json_only_responses_have_no_header_length() {
        let tensor = Tensor::new(vec![1, 2], TensorData::F32(vec![0.25, 0.75])).unwrap();
        let encoded = encode_response(&config(), 3, None, &answer(vec![("p", tensor, false)]));
        assert!(encoded.header_len.is_none());
        let body: Value = serde_json::from_slice(&encoded.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"model_name": "m", "model_version": "3", "outputs": [
                {"name": "p", "datatype": "FP32", "shape": [1, 2], "data": [0.25, 0.75]}
            ]})
        );
    }
}
