//! A small KServe v2 server for the load generator's tests: it serves `/v2/models/m` metadata and
//! answers `/v2/models/m/infer` by checking the request and echoing its tensor back, with
//! scripted faults. It runs on its own thread and runtime, like a separate process would.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the server does with the n-th inference request (cycling through the script).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer with this status and a KServe error body.
    Status(u16),
    /// Claim a longer binary header than the body has.
    ShortBody,
    /// Answer normally after a pause.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
}

/// The name of the server's thread (to tell its CPU time from the client's).
pub const SERVER_THREAD: &str = "test-server";

/// A running test server.
pub struct TestServer {
    /// Its base URL.
    pub url: String,
    /// Inference requests received.
    pub infer_requests: Arc<AtomicU64>,
    /// Inference requests the server found malformed (answered 400).
    pub malformed: Arc<AtomicU64>,
}

impl TestServer {
    /// Inference requests received so far.
    pub fn infers(&self) -> u64 {
        self.infer_requests.load(Ordering::SeqCst)
    }
}

struct State {
    shape: Vec<i64>,
    statistics: bool,
    script: Vec<Fault>,
    infer_requests: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
}

/// Per-request server timings the statistics endpoint reports, in nanoseconds: queue, compute
/// input, compute infer, compute output (different from the headers' 100 and 250 µs, so a test
/// sees which it got).
pub const STATS_NS: [u64; 4] = [40_000, 10_000, 200_000, 5_000];

/// Starts a server for model `m` with one FP32 input `x` of `shape` and one output `y`, without
/// a statistics endpoint.
pub fn start(shape: &[i64], script: Vec<Fault>) -> TestServer {
    start_server(shape, script, false)
}

/// Like [`start`], and serves `GET /v2/models/m/stats` with [`STATS_NS`] per request.
pub fn start_with_statistics(shape: &[i64], script: Vec<Fault>) -> TestServer {
    start_server(shape, script, true)
}

fn start_server(shape: &[i64], script: Vec<Fault>, statistics: bool) -> TestServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(State {
        shape: shape.to_vec(),
        statistics,
        script: if script.is_empty() {
            vec![Fault::None]
        } else {
            script
        },
        infer_requests: Arc::new(AtomicU64::new(0)),
        malformed: Arc::new(AtomicU64::new(0)),
    });
    let server = TestServer {
        url,
        infer_requests: state.infer_requests.clone(),
        malformed: state.malformed.clone(),
    };
    let thread = std::thread::Builder::new().name(SERVER_THREAD.into());
    thread
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| handle(request, state.clone()));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })
        .unwrap();
    server
}

/// An address nothing listens on.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

type Reply = Result<Response<Full<Bytes>>, std::io::Error>;

fn json_reply(status: StatusCode, body: &Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

async fn handle(request: Request<Incoming>, state: Arc<State>) -> Reply {
    let path = request.uri().path().to_string();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/v2/models/m") => json_reply(
            StatusCode::OK,
            &json!({
                "name": "m", "versions": ["1"], "platform": "test",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": state.shape}],
                "outputs": [{"name": "y", "datatype": "FP32", "shape": state.shape}],
            }),
        ),
        (&Method::GET, "/v2/models/m/stats") if state.statistics => {
            let n = state.infer_requests.load(Ordering::SeqCst);
            let pair = |ns: u64| json!({"count": n, "ns": n * ns});
            json_reply(
                StatusCode::OK,
                &json!({"model_stats": [{"name": "m", "version": "1", "inference_stats": {
                    "success": pair(1_000_000), "fail": pair(0), "queue": pair(STATS_NS[0]),
                    "compute_input": pair(STATS_NS[1]), "compute_infer": pair(STATS_NS[2]),
                    "compute_output": pair(STATS_NS[3])}, "batch_stats": []}]}),
            )
        }
        (&Method::GET, other) if other.starts_with("/v2/models/") => {
            let name = other.trim_start_matches("/v2/models/");
            json_reply(
                StatusCode::NOT_FOUND,
                &json!({"error": format!("model '{name}' is not loaded")}),
            )
        }
        (&Method::POST, "/v2/models/m/infer") => infer(request, &state).await,
        _ => json_reply(StatusCode::NOT_FOUND, &json!({"error": "no such route"})),
    }
}

#[derive(Deserialize)]
struct InferHeader {
    inputs: Vec<InputHeader>,
}

#[derive(Deserialize)]
struct InputHeader {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    data: Option<Vec<f64>>,
}

async fn infer(request: Request<Incoming>, state: &State) -> Reply {
    let n = state.infer_requests.fetch_add(1, Ordering::SeqCst);
    let header_len = request
        .headers()
        .get("inference-header-content-length")
        .map(|v| v.to_str().unwrap().parse::<usize>());
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let fault = state.script[n as usize % state.script.len()];
    match fault {
        Fault::Status(code) => {
            return json_reply(
                StatusCode::from_u16(code).unwrap(),
                &json!({"error": format!("scripted {code}")}),
            );
        }
        Fault::Drop => return Err(std::io::Error::other("scripted drop")),
        Fault::Delay(pause) => tokio::time::sleep(pause).await,
        Fault::None | Fault::ShortBody => {}
    }
    let bad = |why: String| {
        state.malformed.fetch_add(1, Ordering::SeqCst);
        json_reply(StatusCode::BAD_REQUEST, &json!({ "error": why }))
    };
    let (json_part, binary) = match header_len {
        Some(Ok(n)) if n <= body.len() => (&body[..n], &body[n..]),
        Some(_) => return bad(format!("bad header length for a body of {}", body.len())),
        None => (&body[..], &[][..]),
    };
    let Ok(header) = serde_json::from_slice::<InferHeader>(json_part) else {
        return bad("malformed JSON header".into());
    };
    let [input] = &header.inputs[..] else {
        return bad("expected one input".into());
    };
    let elements: usize = input.shape.iter().product();
    let fixed_ok = input.shape.len() == state.shape.len()
        && input
            .shape
            .iter()
            .zip(&state.shape)
            .all(|(&got, &want)| want < 0 || got as i64 == want);
    if input.name != "x" || input.datatype != "FP32" || !fixed_ok {
        return bad(format!(
            "unexpected input {} {} {:?}",
            input.name, input.datatype, input.shape
        ));
    }
    if header_len.is_some() {
        let size = input
            .parameters
            .as_ref()
            .and_then(|p| p["binary_data_size"].as_u64());
        if size != Some(binary.len() as u64) || binary.len() != elements * 4 {
            return bad(format!(
                "binary_data_size {size:?} but {} bytes follow",
                binary.len()
            ));
        }
        let out = json!({"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": input.shape,
            "parameters": {"binary_data_size": binary.len()}}]});
        let mut bytes = serde_json::to_vec(&out).unwrap();
        let json_len = bytes.len()
            + if fault == Fault::ShortBody {
                binary.len() + 10
            } else {
                0
            };
        bytes.extend_from_slice(binary);
        let mut response = Response::new(Full::new(Bytes::from(bytes)));
        let headers = response.headers_mut();
        headers.insert("content-type", "application/octet-stream".parse().unwrap());
        headers.insert("inference-header-content-length", json_len.into());
        headers.insert("x-spindle-queue-us", 100.into());
        headers.insert("x-spindle-compute-us", 250.into());
        Ok(response)
    } else {
        let Some(data) = &input.data else {
            return bad("no data".into());
        };
        if data.len() != elements {
            return bad(format!("{} values for shape {:?}", data.len(), input.shape));
        }
        json_reply(
            StatusCode::OK,
            &json!({"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32",
            "shape": input.shape, "data": data}]}),
        )
    }
}
