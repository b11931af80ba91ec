//! Inference request bodies, encoded once per run: the KServe v2 binary tensor extension (a JSON
//! header, then raw bytes) or plain JSON. Workers clone the [`RequestTemplate`], never re-encode.

use crate::args::Protocol;
use crate::target::Target;
use crate::tensors::InputTensor;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use serde_json::{Value, json};

/// The header that carries the JSON part's length in binary-tensor bodies.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

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

/// Encodes the inputs for a protocol.
pub fn encode(protocol: Protocol, inputs: &[InputTensor], outputs: &[String]) -> Payload {
    match protocol {
        Protocol::HttpBinary => encode_binary(inputs, outputs),
        Protocol::HttpJson => encode_json(inputs),
    }
}

/// Everything needed to build one inference request to one target, prepared once.
#[derive(Debug)]
pub struct RequestTemplate {
    uri: Uri,
    host: HeaderValue,
    content_type: HeaderValue,
    header_len: Option<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl RequestTemplate {
    /// Prepares requests to `path` (e.g. `/v2/models/m/infer`) on `target`.
    pub fn new(target: &Target, path: &str, payload: &Payload) -> anyhow::Result<Self> {
        let content_type = if payload.header_len.is_some() {
            "application/octet-stream"
        } else {
            "application/json"
        };
        Ok(RequestTemplate {
            uri: target.uri(path)?,
            host: target.host.clone(),
            content_type: HeaderValue::from_static(content_type),
            header_len: payload
                .header_len
                .map(|n| (HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(n))),
            body: payload.body.clone(),
        })
    }

    /// A request sharing the pre-encoded body (a reference-count increment, no copy).
    pub fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.reserve(3);
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::CONTENT_TYPE, self.content_type.clone());
        if let Some((name, len)) = &self.header_len {
            headers.insert(name.clone(), len.clone());
        }
        request
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
        let target = Target::resolve("http://127.0.0.1:9").await.unwrap();
        let a = tensor("a", vec![1, 2, 3, 4], vec![4], ElementType::U8, "UINT8");
        let payload = encode_binary(&[a], &[]);
        let template = RequestTemplate::new(&target, "/v2/models/m/infer", &payload).unwrap();
        let request = template.request();
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/v2/models/m/infer");
        let len: usize = request.headers()[HEADER_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, payload.header_len.unwrap());
        assert_eq!(
            request.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:9");
    }
}
