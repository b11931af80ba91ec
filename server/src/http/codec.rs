//! KServe v2 inference requests and responses over HTTP: JSON tensors, and the binary tensor
//! data extension (`Inference-Header-Content-Length`: a JSON header, then raw little-endian
//! tensors in input order).

mod elements;
mod request;

use crate::infer::{
    AnsweredOutput, InferAnswer, InferRequest, InputSlots, OutputRequest, all_outputs,
    output_index, output_parameters,
};
pub(crate) use elements::{B64Text, Column, Elements, Failure, Nested, Rectangle};
use request::{Context, InputData, InputHeader, OutputHeader, RequestSeed};
use serde::Serialize;
use serde::de::DeserializeSeed;
use serde_json::{Map, Value};
use spindle_core::config::ModelConfig;
use spindle_core::error::InferError;
use spindle_core::tensor::{Tensor, TensorData};
use std::time::Duration;

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
    let context = Context::new(config, json.len());
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let header = RequestSeed(&context)
        .deserialize(&mut deserializer)
        .and_then(|header| deserializer.end().map(|()| header));
    let header = match header {
        Ok(header) => header,
        Err(e) => return Err(context.into_error(e)),
    };
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
        slots.set(index, decode_input(config, input, &mut binary)?);
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
    config: &ModelConfig,
    input: InputHeader,
    binary: &mut &[u8],
) -> Result<Tensor, InferError> {
    let (spec, dtype, count) = request::admit(config, &input.name, &input.shape, &input.datatype)?;
    let name = &spec.name;
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
        }
        (None, Some(InputData::Typed(elements))) => Tensor::new(input.shape, elements),
        (None, Some(InputData::Raw(raw))) => {
            let elements = request::read_raw(raw, spec, dtype, &input.shape, count)?;
            Tensor::new(input.shape, elements)
        }
        (None, None) => {
            return Err(InferError::invalid(format!(
                "input '{name}' has no 'data' and no binary_data_size parameter"
            )));
        }
    };
    tensor.map_err(|e| InferError::invalid(format!("input '{name}': {e}")))
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
pub(crate) mod tests {
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

    fn parse(body: &str) -> Result<InferRequest, InferError> {
        parse_request(&config(), body.as_bytes(), None)
    }

    fn refused(body: &str) -> String {
        parse(body).unwrap_err().message
    }

    #[test]
    fn data_is_read_typed_and_flattened_in_any_field_order() {
        let header_first = r#"{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2.5], [3, 4]]}]}"#;
        let data_first = r#"{"inputs": [{"data": [1, 2.5, 3, 4], "datatype": "FP32", "shape": [2, 2], "name": "x"}]}"#;
        for body in [header_first, data_first] {
            let request = parse(body).unwrap();
            assert_eq!(request.inputs[0].shape, [2, 2]);
            assert_eq!(
                request.inputs[0].data,
                TensorData::F32(vec![1.0, 2.5, 3.0, 4.0])
            );
        }
    }

    #[test]
    fn bad_elements_are_named_with_their_index() {
        let body = |data: &str| {
            format!(
                r#"{{"inputs": [{{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": {data}}}]}}"#
            )
        };
        let err = refused(&body("[0.5, 1e39]"));
        assert!(
            err.contains("input 'x': element 1 is 1e+39, not within FP32's range"),
            "{err}"
        );
        let err = refused(&body(r#"[0.5, "a"]"#));
        assert!(
            err.contains("input 'x': element 1 is \"a\", not a number"),
            "{err}"
        );
        let err = refused(&body("[0.5, null]"));
        assert!(err.contains("element 1 is null, not a number"), "{err}");
        let err = refused(&body(r#"[0.5, {"b64": "aGk="}]"#));
        assert!(err.contains("element 1 is an object"), "{err}");
        let err = refused(&body("[0.5]"));
        assert!(err.contains("needs 2 elements but 1 were given"), "{err}");
        let err = refused(&body("[0.5, 1e400]"));
        assert!(
            err.contains("malformed request JSON at 'inputs[0].data'"),
            "{err}"
        );
    }

    #[test]
    fn limits_in_the_header_stop_the_parse_before_the_data() {
        // What follows the point of refusal is never read: garbage there changes nothing.
        let garbage = "[".to_string() + &"1, ".repeat(1000) + "oops";
        let header = |name: &str, shape: &str, datatype: &str| {
            format!(
                r#"{{"inputs": [{{"name": "{name}", "shape": {shape}, "datatype": "{datatype}", "data": {garbage}"#
            )
        };
        let err = refused(&header("x", "[9, 2]", "FP32"));
        assert!(
            err.contains("batch of 9 rows") && err.contains("max_batch_size 8"),
            "{err}"
        );
        assert!(
            refused(&header("x", "[1, 3]", "FP32"))
                .contains("expected shape [-1, 2] but got [1, 3]")
        );
        let err = refused(&header("x", "[1, 2]", "FP32"));
        assert!(
            err.contains("shape [1, 2] needs 2 elements but more were given"),
            "{err}"
        );
        assert!(refused(&header("y", "[1, 2]", "FP32")).contains("unknown input 'y'"));
        let wrong_type = header("x", "[1, 2]", "INT64");
        assert!(refused(&wrong_type).contains("expected datatype FP32 but got INT64"));
    }

    #[test]
    fn malformed_headers_name_the_field() {
        let err = refused(
            r#"{"inputs": [{"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": []}]}"#,
        );
        assert!(
            err.contains("malformed request JSON at 'inputs[0].shape[0]'"),
            "{err}"
        );
        let err = refused(r#"{"inputs": [{"shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}"#);
        assert!(
            err.contains("'inputs[0]'") && err.contains("missing field `name`"),
            "{err}"
        );
        let err = refused(r#"{"inputs": [], "extra": 1}"#);
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = refused(
            r#"{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]} x"#,
        );
        assert!(err.contains("malformed request JSON"), "{err}");
        let err = refused(r#"{"inputs": [], "outputs": [{"name": "p", "parameters": 3}]}"#);
        assert!(err.contains("'outputs[0].parameters'"), "{err}");
    }

    /// An Inception v3 request's values (1x299x299x3), written as Python's `json.dumps` writes
    /// float32 values converted to float: about 2.9 MB of JSON.
    pub(crate) fn inception_values() -> (usize, String) {
        let count = 299 * 299 * 3;
        let mut values = String::with_capacity(count * 12);
        let mut seed = 0x2545_f491_u32;
        for i in 0..count {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let x = f64::from(seed as f32 / u32::MAX as f32 * 2.0 - 1.0);
            if i > 0 {
                values.push_str(", ");
            }
            values.push_str(&x.to_string());
        }
        (count, values)
    }

    /// Runs `parse` `rounds` times over `body` and prints the time each took.
    pub(crate) fn time_parse(what: &str, body: &[u8], rounds: u32, parse: impl Fn(&[u8])) {
        parse(body);
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            parse(body);
        }
        let each = started.elapsed() / rounds;
        println!(
            "{what}: {} bytes, {:.1} ms a request ({:.0} MB/s)",
            body.len(),
            each.as_secs_f64() * 1e3,
            body.len() as f64 / each.as_secs_f64() / 1e6
        );
    }

    /// Decoding speed of an Inception v3 request, and for comparison what the decoding before
    /// issue 17 did (a `serde_json::Value` tree, then each leaf converted):
    /// `cargo test -p spindle-server --lib --profile ci -- --ignored decoding_speed --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check: run it by name"]
    fn json_decoding_speed() {
        let config = ModelConfig::from_toml(
            "name = \"inception\"\nmax_batch_size = 8\n\
             [[inputs]]\nname = \"images\"\ndtype = \"FP32\"\ndims = [-1, 299, 299, 3]\n\
             [[outputs]]\nname = \"p\"\ndtype = \"FP32\"\ndims = [-1, 1000]\n",
        )
        .unwrap();
        let (count, values) = inception_values();
        let body = format!(
            r#"{{"inputs": [{{"name": "images", "shape": [1, 299, 299, 3], "datatype": "FP32", "data": [{values}]}}]}}"#
        );
        time_parse("v2 JSON, typed", body.as_bytes(), 20, |body| {
            let request = parse_request(&config, body, None).unwrap();
            assert_eq!(request.inputs[0].data.len(), count);
        });
        time_parse(
            "v2 JSON, Value tree then converted",
            body.as_bytes(),
            20,
            |body| {
                let tree: Value = serde_json::from_slice(body).unwrap();
                let leaves = spindle_core::tensor::json_leaves(&tree["inputs"][0]["data"]);
                let mut out = Vec::with_capacity(count);
                for leaf in leaves {
                    out.push(leaf.as_f64().unwrap() as f32);
                }
                assert_eq!(out.len(), count);
            },
        );
    }
}
