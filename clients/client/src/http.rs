//! KServe v2 over HTTP/1.1 (plain or TLS) with the binary tensor extension, over a keep-alive
//! connection pool.

use crate::security::Credentials;
use crate::types::{
    ClientError, InferRequest, InferResponse, ModelMetadata, NamedTensor, TensorMetadata,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value, json};
use spindle_core::dtype::DataType;
use spindle_core::tensor::{Tensor, TensorData};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

const HEADER_LENGTH: &str = "inference-header-content-length";

/// One HTTP endpoint.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    base: String,
    client: HyperClient<HttpsConnector<HttpConnector>, Parts>,
    authorization: Option<HeaderValue>,
}

impl HttpTransport {
    /// A transport to `base` (`http://host:port`, or `https://host:port` with a TLS
    /// configuration in `credentials`); connections open on first use and are reused.
    pub(crate) fn new(base: &str, credentials: &Credentials) -> HttpTransport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        // The TLS wrapper passes http:// through; it needs a configuration even then.
        connector.enforce_http(false);
        let tls = credentials.http_tls.as_deref().cloned().unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        HttpTransport {
            base: base.trim_end_matches('/').to_string(),
            client: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build(connector),
            authorization: credentials.authorization.clone(),
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Parts,
        header_len: Option<usize>,
    ) -> Result<(hyper::HeaderMap, Bytes), ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(body)
            .map_err(|e| ClientError::Config(format!("{}{path}: {e}", self.base)))?;
        if let Some(token) = &self.authorization {
            request.headers_mut().insert(AUTHORIZATION, token.clone());
        }
        if let Some(n) = header_len {
            request
                .headers_mut()
                .insert(HEADER_LENGTH, HeaderValue::from(n));
            request.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| ClientError::Connection {
                endpoint: self.base.clone(),
                message: error_chain(&e),
            })?;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| ClientError::Connection {
                endpoint: self.base.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        if parts.status != StatusCode::OK {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            let retry_after = parts
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(ClientError::Server {
                endpoint: self.base.clone(),
                status: parts.status.as_u16(),
                message,
                retry_after,
            });
        }
        Ok((parts.headers, bytes))
    }

    /// `GET /v2/health/ready`.
    pub async fn server_ready(&self) -> Result<bool, ClientError> {
        match self
            .call(Method::GET, "/v2/health/ready", Parts::default(), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Server { status: 503, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/models/{m}`.
    pub async fn model_metadata(&self, model: &str) -> Result<ModelMetadata, ClientError> {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/v2/models/{model}"),
                Parts::default(),
                None,
            )
            .await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("{}: metadata is not JSON: {e}", self.base))
        })?;
        let tensors = |key: &str| -> Vec<TensorMetadata> {
            v[key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|t| TensorMetadata {
                            name: t["name"].as_str().unwrap_or_default().to_string(),
                            datatype: t["datatype"].as_str().unwrap_or_default().to_string(),
                            shape: t["shape"]
                                .as_array()
                                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(ModelMetadata {
            name: v["name"].as_str().unwrap_or(model).to_string(),
            versions: v["versions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            inputs: tensors("inputs"),
            outputs: tensors("outputs"),
        })
    }

    /// `GET /v2/models/{m}/config`: the served model's configuration as JSON.
    pub async fn model_config(&self, model: &str) -> Result<Value, ClientError> {
        let (_, body) = self
            .call(
                Method::GET,
                &format!("/v2/models/{model}/config"),
                Parts::default(),
                None,
            )
            .await?;
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("{}: model config is not JSON: {e}", self.base))
        })
    }

    /// `POST /v2/models/{m}[/versions/{v}]/infer` with binary inputs and outputs.
    pub async fn infer(&self, request: &InferRequest) -> Result<InferResponse, ClientError> {
        let inputs: Vec<Value> = request
            .inputs
            .iter()
            .map(|input| {
                json!({
                    "name": input.name,
                    "shape": input.tensor.shape,
                    "datatype": input.tensor.dtype().name(),
                    "parameters": {"binary_data_size": input.tensor.le_byte_len()},
                })
            })
            .collect();
        let outputs: Vec<Value> = request
            .outputs
            .iter()
            .map(|o| {
                let mut parameters = Map::new();
                parameters.insert("binary_data".into(), Value::Bool(true));
                if let Some(k) = o.classification {
                    parameters.insert("classification".into(), json!(k));
                }
                json!({"name": o.name, "parameters": parameters})
            })
            .collect();
        let mut parameters = Map::new();
        parameters.insert("binary_data_output".into(), Value::Bool(true));
        if let Some(t) = request.server_timeout {
            parameters.insert("timeout".into(), json!(t.as_micros() as u64));
        }
        let mut header = json!({"inputs": inputs, "parameters": parameters});
        if !outputs.is_empty() {
            header["outputs"] = Value::Array(outputs);
        }
        // The body goes out as its parts: the JSON header, then each tensor's own memory where
        // that is its wire layout (hyper hands the parts to one vectored write). A Criteo batch
        // is 1.4 MB; building the body in a growing buffer cost the batch scorer a tenth of its
        // CPU, and copying each tensor into a sized one, a twentieth.
        let header = serde_json::to_vec(&header).expect("request header serialises");
        let header_len = header.len();
        let mut body = Parts::default();
        body.push(Bytes::from(header));
        for input in &request.inputs {
            body.push(tensor_bytes(&input.tensor));
        }
        let path = match &request.version {
            Some(v) => format!("/v2/models/{}/versions/{v}/infer", request.model),
            None => format!("/v2/models/{}/infer", request.model),
        };
        let (headers, body) = self
            .call(Method::POST, &path, body, Some(header_len))
            .await?;
        parse_response(&self.base, &headers, &body)
    }
}

/// A tensor's bytes in the KServe binary layout: its own memory, shared, where that is the
/// layout; a copy otherwise (`BOOL`, `BYTES`, big-endian machines).
fn tensor_bytes(tensor: &Arc<Tensor>) -> Bytes {
    struct Wire(Arc<Tensor>);
    impl AsRef<[u8]> for Wire {
        fn as_ref(&self) -> &[u8] {
            self.0.le_bytes_view().expect("checked before wrapping")
        }
    }
    if tensor.le_bytes_view().is_some() {
        Bytes::from_owner(Wire(tensor.clone()))
    } else {
        let mut raw = Vec::with_capacity(tensor.le_byte_len());
        tensor.write_le_bytes(&mut raw);
        Bytes::from(raw)
    }
}

/// A request body of known length sent as the parts it was built from, so a tensor is not
/// copied into one buffer first; hyper sends it with `Content-Length`.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Parts {
    fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.remaining += part.len() as u64;
            self.parts.push_back(part);
        }
    }
}

impl Body for Parts {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.parts.pop_front().map(|part| {
            this.remaining -= part.len() as u64;
            Ok(Frame::data(part))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn parse_response(
    endpoint: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<InferResponse, ClientError> {
    let bad =
        |why: String| ClientError::Protocol(format!("{endpoint}: bad inference answer: {why}"));
    let header_len = match headers.get(HEADER_LENGTH) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n <= body.len())
            .ok_or_else(|| bad(format!("{HEADER_LENGTH} {v:?}")))?,
        None => body.len(),
    };
    let (json_part, mut binary) = body.split_at(header_len);
    let v: Value = serde_json::from_slice(json_part).map_err(|e| bad(e.to_string()))?;
    let mut outputs = Vec::new();
    for out in v["outputs"]
        .as_array()
        .ok_or_else(|| bad("no outputs".into()))?
    {
        let name = out["name"].as_str().unwrap_or_default().to_string();
        let dtype: DataType = out["datatype"]
            .as_str()
            .unwrap_or_default()
            .parse()
            .map_err(|e| bad(format!("output '{name}': {e}")))?;
        let shape: Vec<usize> = out["shape"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|d| d.as_u64().map(|d| d as usize))
                    .collect()
            })
            .unwrap_or_default();
        let tensor = match out["parameters"]["binary_data_size"].as_u64() {
            Some(size) => {
                let size = size as usize;
                if size > binary.len() {
                    return Err(bad(format!(
                        "output '{name}' claims {size} bytes, {} remain",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                Tensor::from_le_bytes(dtype, shape, mine)
            }
            None => Tensor::new(shape, json_elements(dtype, &out["data"])),
        }
        .map_err(|e| bad(format!("output '{name}': {e}")))?;
        outputs.push(NamedTensor { name, tensor });
    }
    Ok(InferResponse {
        model: v["model_name"].as_str().unwrap_or_default().to_string(),
        version: v["model_version"].as_str().unwrap_or_default().to_string(),
        outputs,
    })
}

fn json_elements(dtype: DataType, data: &Value) -> TensorData {
    let mut flat = Vec::new();
    fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            other => out.push(other),
        }
    }
    walk(data, &mut flat);
    match dtype {
        DataType::F32 => TensorData::F32(
            flat.iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN) as f32)
                .collect(),
        ),
        DataType::F64 => TensorData::F64(
            flat.iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect(),
        ),
        DataType::I64 => TensorData::I64(
            flat.iter()
                .map(|v| v.as_i64().unwrap_or_default())
                .collect(),
        ),
        DataType::I32 => TensorData::I32(
            flat.iter()
                .map(|v| v.as_i64().unwrap_or_default() as i32)
                .collect(),
        ),
        DataType::I16 => TensorData::I16(
            flat.iter()
                .map(|v| v.as_i64().unwrap_or_default() as i16)
                .collect(),
        ),
        DataType::I8 => TensorData::I8(
            flat.iter()
                .map(|v| v.as_i64().unwrap_or_default() as i8)
                .collect(),
        ),
        DataType::U8 => TensorData::U8(
            flat.iter()
                .map(|v| v.as_u64().unwrap_or_default() as u8)
                .collect(),
        ),
        DataType::Bool => TensorData::Bool(
            flat.iter()
                .map(|v| v.as_bool().unwrap_or_default())
                .collect(),
        ),
        DataType::Bytes => TensorData::Bytes(
            flat.iter()
                .map(|v| v.as_str().unwrap_or_default().as_bytes().to_vec())
                .collect(),
        ),
    }
}

/// The error and its sources on one line (hyper's top-level message alone is often just
/// "client error (Connect)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts, read as hyper reads them, are the header and each tensor's wire bytes, and
    /// their announced length is exact: numbers by their own memory, `BYTES` by a copy.
    #[tokio::test]
    async fn a_body_of_parts_is_the_wire_layout_with_its_exact_length() {
        let ids = Arc::new(Tensor::new(vec![2], TensorData::I64(vec![7, -1])).unwrap());
        let rows = Arc::new(
            Tensor::new(vec![2], TensorData::Bytes(vec![b"ab".to_vec(), vec![]])).unwrap(),
        );
        let mut body = Parts::default();
        body.push(Bytes::from_static(b"{}"));
        body.push(Bytes::new());
        body.push(tensor_bytes(&ids));
        body.push(tensor_bytes(&rows));
        let mut expected = b"{}".to_vec();
        ids.write_le_bytes(&mut expected);
        rows.write_le_bytes(&mut expected);
        assert_eq!(body.size_hint().exact(), Some(expected.len() as u64));
        // On a little-endian machine the numbers are sent from the tensor's memory, not a copy.
        if cfg!(target_endian = "little") {
            assert_eq!(
                tensor_bytes(&ids).as_ptr(),
                ids.le_bytes_view().expect("little-endian").as_ptr()
            );
        }
        let sent = body.collect().await.unwrap().to_bytes();
        assert_eq!(sent.as_ref(), expected.as_slice());
    }
}
