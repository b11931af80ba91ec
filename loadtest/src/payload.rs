//! Inference request bodies, encoded once per run: the KServe v2 binary tensor extension (a JSON
//! header, then raw bytes) or plain JSON. Workers clone the [`RequestTemplate`], never re-encode.

use crate::inputs::InputTensor;
use crate::options::Protocol;
use crate::target::Target;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

pub use crate::http1::HEADER_LENGTH;

/// An encoded request body.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The complete body.
    pub body: Bytes,
    /// Length of the JSON header when binary tensors follow it.
    pub header_len: Option<usize>,
}

/// Encodes the inputs with the binary tensor extension, asking for every output in binary.
pub fn encode_binary(inputs: &[InputTensor], outputs: &[String]) -> Payload {
    let header = json!({
        "inputs": inputs.iter().map(|t| json!({
            "name": t.name,
            "shape": t.shape,
            "datatype": t.datatype,
            "parameters": { "binary_data_size": t.raw.len() },
        })).collect::<Vec<_>>(),
        "outputs": outputs.iter().map(|o| json!({
            "name": o,
            "parameters": { "binary_data": true },
        })).collect::<Vec<_>>(),
    });
    let mut body = serde_json::to_vec(&header).expect("a JSON value always serialises");
    let header_len = body.len();
    body.reserve_exact(inputs.iter().map(|t| t.raw.len()).sum());
    for tensor in inputs {
        body.extend_from_slice(&tensor.raw);
    }
    Payload {
        body: Bytes::from(body),
        header_len: Some(header_len),
    }
}

/// Encodes the inputs as plain KServe v2 JSON (flat `data` arrays).
pub fn encode_json(inputs: &[InputTensor]) -> Payload {
    let body = json!({
        "inputs": inputs.iter().map(|t| json!({
            "name": t.name,
            "shape": t.shape,
            "datatype": t.datatype,
            "data": t.json_data(),
        })).collect::<Vec<Value>>(),
    });
    let body = serde_json::to_vec(&body).expect("a JSON value always serialises");
    Payload {
        body: Bytes::from(body),
        header_len: None,
    }
}

/// Encodes the inputs in TensorFlow Serving's row format: one `instances` entry per batch row,
/// the row's nested values (or an object by input name when the model has several inputs).
pub fn encode_tf_rest(inputs: &[InputTensor]) -> Payload {
    let rows = inputs
        .first()
        .map_or(0, |t| t.shape.first().copied().unwrap_or(1));
    let per_input: Vec<Vec<Value>> = inputs
        .iter()
        .map(|t| {
            let Value::Array(flat) = t.json_data() else {
                unreachable!("json_data is an array")
            };
            let inner = t.shape.get(1..).unwrap_or(&[]);
            let per_row = inner.iter().product::<usize>().max(1);
            flat.chunks(per_row).map(|row| nest(row, inner)).collect()
        })
        .collect();
    let instances: Vec<Value> = (0..rows)
        .map(|r| match inputs {
            [_] => per_input[0][r].clone(),
            _ => Value::Object(
                inputs
                    .iter()
                    .zip(&per_input)
                    .map(|(t, values)| (t.name.clone(), values[r].clone()))
                    .collect(),
            ),
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "instances": instances }))
        .expect("a JSON value always serialises");
    Payload {
        body: Bytes::from(body),
        header_len: None,
    }
}

/// Nests a flat run of values into lists of `shape`.
fn nest(flat: &[Value], shape: &[usize]) -> Value {
    match shape.split_first() {
        None => flat.first().cloned().unwrap_or(Value::Null),
        Some((&n, rest)) => {
            let step = rest.iter().product::<usize>().max(1);
            Value::Array(
                (0..n)
                    .map(|i| nest(&flat[i * step..(i + 1) * step], rest))
                    .collect(),
            )
        }
    }
}

/// Encodes the inputs for an HTTP protocol (gRPC requests are built by [`crate::grpc`]).
pub fn encode(protocol: Protocol, inputs: &[InputTensor], outputs: &[String]) -> Payload {
    match protocol {
        Protocol::HttpBinary | Protocol::Grpc => encode_binary(inputs, outputs),
        Protocol::HttpJson => encode_json(inputs),
        Protocol::TfRest => encode_tf_rest(inputs),
    }
}

/// The inference requests to one target, encoded once: each a complete HTTP/1.1 request
/// (request line, headers, body) in one buffer that is written as it is, so sending costs no
/// formatting and no allocation. One request, or several (real samples) sent in rotation.
#[derive(Debug)]
pub struct RequestTemplate {
    requests: Vec<Bytes>,
    next: AtomicUsize,
}

impl RequestTemplate {
    /// Prepares requests to `path` (e.g. `/v2/models/m/infer`) on `target`.
    pub fn new(target: &Target, path: &str, payload: &Payload) -> anyhow::Result<Self> {
        Self::rotating(target, path, std::slice::from_ref(payload))
    }

    /// Prepares requests to `path` on `target` that take `payloads` in turn (all encoded the
    /// same way, for one protocol).
    pub fn rotating(target: &Target, path: &str, payloads: &[Payload]) -> anyhow::Result<Self> {
        anyhow::ensure!(!payloads.is_empty(), "no request bodies to send");
        let content_type = if payloads[0].header_len.is_some() {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let uri = target.uri(path)?;
        let host = target.authority();
        let requests = payloads
            .iter()
            .map(|p| {
                let mut head = format!(
                    "POST {uri} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n\
                     content-length: {}\r\n",
                    p.body.len()
                );
                if let Some(len) = p.header_len {
                    head.push_str(&format!("{HEADER_LENGTH}: {len}\r\n"));
                }
                if let Some(token) = &target.authorization {
                    // Encoded once with the request: a token costs nothing per request.
                    head.push_str("authorization: ");
                    head.push_str(token.to_str().unwrap_or_default());
                    head.push_str("\r\n");
                }
                head.push_str("\r\n");
                let mut wire = Vec::with_capacity(head.len() + p.body.len());
                wire.extend_from_slice(head.as_bytes());
                wire.extend_from_slice(&p.body);
                Bytes::from(wire)
            })
            .collect();
        Ok(RequestTemplate {
            requests,
            next: AtomicUsize::new(0),
        })
    }

    /// The next request to send, as bytes for the wire; with several, the next one in turn.
    pub fn request(&self) -> &[u8] {
        match self.requests.as_slice() {
            [one] => one,
            many => &many[self.next.fetch_add(1, Ordering::Relaxed) % many.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::ElementType;

    fn tensor(
        name: &str,
        raw: Vec<u8>,
        shape: Vec<usize>,
        element: ElementType,
        datatype: &str,
    ) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            element,
            shape,
            raw,
        }
    }

    #[test]
    fn binary_layout_is_header_then_raw_tensors() {
        let a = tensor(
            "a",
            1.5f32.to_le_bytes().repeat(2),
            vec![1, 2],
            ElementType::F32,
            "FP32",
        );
        let b = tensor(
            "b",
            vec![7, 0, 0, 0, 0, 0, 0, 0],
            vec![1, 1],
            ElementType::I64,
            "INT64",
        );
        let payload = encode_binary(&[a.clone(), b.clone()], &["y".to_string()]);
        let n = payload.header_len.unwrap();
        let header: Value = serde_json::from_slice(&payload.body[..n]).unwrap();
        assert_eq!(header["inputs"][0]["name"], "a");
        assert_eq!(header["inputs"][0]["shape"], json!([1, 2]));
        assert_eq!(header["inputs"][0]["datatype"], "FP32");
        assert_eq!(header["inputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(header["inputs"][1]["parameters"]["binary_data_size"], 8);
        assert_eq!(
            header["outputs"][0],
            json!({"name": "y", "parameters": {"binary_data": true}})
        );
        assert_eq!(payload.body.len(), n + 16);
        assert_eq!(&payload.body[n..n + 8], &a.raw[..]);
        assert_eq!(&payload.body[n + 8..], &b.raw[..]);
    }

    #[test]
    fn tf_rest_rows_nest_each_row() {
        let a = tensor(
            "a",
            [1.0f32, 2.0, 3.0, 4.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            vec![2, 2],
            ElementType::F32,
            "FP32",
        );
        let payload = encode_tf_rest(&[a]);
        let body: Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(body, json!({"instances": [[1.0, 2.0], [3.0, 4.0]]}));
    }

    #[test]
    fn json_body_carries_flat_data() {
        let a = tensor(
            "a",
            0.25f32.to_le_bytes().repeat(3),
            vec![1, 3],
            ElementType::F32,
            "FP32",
        );
        let payload = encode_json(&[a]);
        assert_eq!(payload.header_len, None);
        let body: Value = serde_json::from_slice(&payload.body).unwrap();
        assert_eq!(body["inputs"][0]["data"], json!([0.25, 0.25, 0.25]));
        assert_eq!(body["inputs"][0]["shape"], json!([1, 3]));
    }

    #[tokio::test]
    async fn requests_carry_the_header_length() {
        let target = Target::resolve("http://127.0.0.1:9", &Default::default())
            .await
            .unwrap();
        let a = tensor("a", vec![1, 2, 3, 4], vec![4], ElementType::U8, "UINT8");
        let payload = encode_binary(&[a], &[]);
        let template = RequestTemplate::new(&target, "/v2/models/m/infer", &payload).unwrap();
        let request = template.request();
        let split = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&request[..split]).unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "POST /v2/models/m/infer HTTP/1.1");
        assert!(lines.contains(&"host: 127.0.0.1:9"), "{head}");
        assert!(
            lines.contains(&"content-type: application/octet-stream"),
            "{head}"
        );
        let length = format!("content-length: {}", payload.body.len());
        assert!(lines.contains(&length.as_str()), "{head}");
        let header = format!("{HEADER_LENGTH}: {}", payload.header_len.unwrap());
        assert!(lines.contains(&header.as_str()), "{head}");
        assert_eq!(&request[split + 4..], &payload.body[..]);
    }
}
