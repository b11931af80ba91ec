//! The same model over every protocol a client may speak: KServe v2 HTTP (JSON and binary),
//! KServe v2 gRPC (typed and raw contents), TF Serving REST (row and columnar), with tensors and
//! with encoded images; classification, statistics, model configuration, gRPC health; and the
//! bad input of the protocols issue, each answered clearly while the server keeps serving.

use base64::Engine as _;
use image::ImageEncoder;
use reqwest::StatusCode;
use serde_json::{Value, json};
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use spindle_tests::{TestServer, serve_config, start, start_zoo, zoo_repo};
use spindle_zoo::ZooModel;
use std::collections::HashMap;
use tonic::transport::Channel;

const PIXELS: usize = 24 * 24 * 3;

fn image(seed: usize) -> Vec<f32> {
    (0..PIXELS)
        .map(|i| ((i * 7 + seed * 13) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn png(seed: u32, side: u32) -> Vec<u8> {
    let raw: Vec<u8> = (0..side * side * 3)
        .map(|i| ((i * 5 + seed * 11) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&raw, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn jpeg(seed: u32, side: u32) -> Vec<u8> {
    let raw: Vec<u8> = (0..side * side * 3)
        .map(|i| ((i / 3 + seed * 11) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&raw, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

async fn grpc(server: &TestServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20)
}

async fn post(server: &TestServer, path: &str, body: &Value) -> (StatusCode, Value) {
    spindle_tests::post_json(&server.url(path), body).await
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(server.url(path)).await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn floats(value: &Value) -> Vec<f32> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            n => out.push(n.as_f64().expect("a number") as f32),
        }
    }
    walk(value, &mut out);
    out
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// KServe's BYTES layout: each element with a 4-byte little-endian length.
fn bytes_elements(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        out.extend_from_slice(&(e.len() as u32).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

fn grpc_tensor_request(images: &[Vec<f32>], raw: bool) -> pb::ModelInferRequest {
    let data: Vec<f32> = images.iter().flatten().copied().collect();
    let input = pb::model_infer_request::InferInputTensor {
        name: "images".into(),
        datatype: "FP32".into(),
        shape: vec![images.len() as i64, 24, 24, 3],
        parameters: HashMap::new(),
        contents: (!raw).then(|| pb::InferTensorContents {
            fp32_contents: data.clone(),
            ..Default::default()
        }),
    };
    pb::ModelInferRequest {
        model_name: "cifar10".into(),
        inputs: vec![input],
        raw_input_contents: if raw {
            vec![data.iter().flat_map(|v| v.to_le_bytes()).collect()]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

/// Sends `bytes` as the body of a ModelInfer call, whatever they hold.
async fn raw_model_infer(
    server: &TestServer,
    bytes: Vec<u8>,
) -> Result<pb::ModelInferResponse, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/inference.GRPCInferenceService/ModelInfer",
    );
    grpc.unary(tonic::Request::new(bytes), path, RawCodec)
        .await
        .map(tonic::Response::into_inner)
}

/// Encodes a request as the bytes given; decodes answers as ModelInferResponse.
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = pb::ModelInferResponse;
    type Encoder = RawEncoder;
    type Decoder = spindle_proto::codec::StrictDecoder<pb::ModelInferResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        <spindle_proto::codec::StrictCodec<pb::ModelInferRequest, pb::ModelInferResponse> as tonic::codec::Codec>::decoder(
            &mut Default::default(),
        )
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

async fn http_binary(server: &TestServer, header: Value, raw: &[u8]) -> reqwest::Response {
    let mut body = serde_json::to_vec(&header).unwrap();
    let len = body.len();
    body.extend_from_slice(raw);
    reqwest::Client::new()
        .post(server.url("/v2/models/cifar10/infer"))
        .header("Inference-Header-Content-Length", len)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_gives_identical_outputs() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let images = vec![image(1), image(2)];
    let flat: Vec<f32> = images.iter().flatten().copied().collect();

    let (status, v2_json) = post(
        &server,
        "/v2/models/cifar10/infer",
        &json!({"inputs": [{"name": "images", "shape": [2, 24, 24, 3], "datatype": "FP32", "data": flat}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v2_json}");
    let reference = floats(&v2_json["outputs"][0]["data"]);
    assert_eq!(reference.len(), 20);

    let raw: Vec<u8> = flat.iter().flat_map(|v| v.to_le_bytes()).collect();
    let response = http_binary(
        &server,
        json!({"inputs": [{"name": "images", "shape": [2, 24, 24, 3], "datatype": "FP32",
                           "parameters": {"binary_data_size": raw.len()}}],
               "parameters": {"binary_data_output": true}}),
        &raw,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let header_len: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    assert_eq!(f32s(&body[header_len..]), reference, "HTTP binary");

    let mut client = grpc(&server).await;
    for raw in [false, true] {
        let answer = client
            .model_infer(grpc_tensor_request(&images, raw))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(answer.outputs[0].shape, [2, 10]);
        assert_eq!(
            f32s(&answer.raw_output_contents[0]),
            reference,
            "gRPC raw={raw}"
        );
    }

    let rows: Vec<Value> = images
        .iter()
        .map(|img| {
            let nested: Vec<Vec<Vec<f32>>> = img
                .chunks(24 * 3)
                .map(|row| row.chunks(3).map(|p| p.to_vec()).collect())
                .collect();
            json!(nested)
        })
        .collect();
    let (status, tf_rows) = post(
        &server,
        "/v1/models/cifar10:predict",
        &json!({"signature_name": "serving_default", "instances": rows}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tf_rows}");
    assert_eq!(floats(&tf_rows["predictions"]), reference, "TF rows");
    let (status, tf_cols) = post(
        &server,
        "/v1/models/cifar10/versions/1:predict",
        &json!({"inputs": {"images": rows}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tf_cols}");
    assert_eq!(floats(&tf_cols["outputs"]), reference, "TF columns");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_images_are_preprocessed_the_same_everywhere() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let images = vec![png(1, 32), jpeg(2, 32), png(3, 48)];
    let raw = bytes_elements(&images);
    let response = http_binary(
        &server,
        json!({"inputs": [{"name": "images", "shape": [3], "datatype": "BYTES",
                           "parameters": {"binary_data_size": raw.len()}}]}),
        &raw,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let v2: Value = response.json().await.unwrap();
    let reference = floats(&v2["outputs"][0]["data"]);
    assert_eq!(reference.len(), 30);
    // Softmax rows sum to one: the decoded images went through the model.
    assert!((reference[..10].iter().sum::<f32>() - 1.0).abs() < 1e-4);

    let b64: Vec<Value> = images
        .iter()
        .map(|i| json!({"b64": base64::engine::general_purpose::STANDARD.encode(i)}))
        .collect();
    let (status, tf) = post(
        &server,
        "/v1/models/cifar10:predict",
        &json!({"instances": b64}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{tf}");
    assert_eq!(floats(&tf["predictions"]), reference);

    let mut client = grpc(&server).await;
    let request = pb::ModelInferRequest {
        model_name: "cifar10".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "images".into(),
            datatype: "BYTES".into(),
            shape: vec![3, 1],
            parameters: HashMap::new(),
            contents: Some(pb::InferTensorContents {
                bytes_contents: images.clone(),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let answer = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(f32s(&answer.raw_output_contents[0]), reference);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classification_returns_labelled_top_k() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let img = image(5);
    let (status, plain) = post(
        &server,
        "/v2/models/cifar10/infer",
        &json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": img}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let probs = floats(&plain["outputs"][0]["data"]);
    let best = (0..10)
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap();
    let labels: Vec<&str> = vec![
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ];
    let (status, top) = post(
        &server,
        "/v2/models/cifar10/infer",
        &json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": img}],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 3}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(top["outputs"][0]["datatype"], "BYTES");
    assert_eq!(top["outputs"][0]["shape"], json!([1, 3]));
    let first = top["outputs"][0]["data"][0].as_str().unwrap().to_string();
    let parts: Vec<&str> = first.split(':').collect();
    assert_eq!(parts[1], best.to_string(), "{first}");
    assert_eq!(parts[2], labels[best], "{first}");
    assert!((parts[0].parse::<f32>().unwrap() - probs[best]).abs() < 1e-6);

    let mut client = grpc(&server).await;
    let mut request = grpc_tensor_request(&[img], true);
    request.outputs = vec![pb::model_infer_request::InferRequestedOutputTensor {
        name: "probabilities".into(),
        parameters: HashMap::from([(
            "classification".to_string(),
            pb::InferParameter {
                parameter_choice: Some(pb::infer_parameter::ParameterChoice::Int64Param(3)),
            },
        )]),
    }];
    let answer = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(answer.outputs[0].datatype, "BYTES");
    let raw = &answer.raw_output_contents[0];
    let len = u32::from_le_bytes(raw[..4].try_into().unwrap()) as usize;
    assert_eq!(std::str::from_utf8(&raw[4..4 + len]).unwrap(), first);

    let (status, err) = post(
        &server,
        "/v2/models/cifar10/infer",
        &json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": image(5)}],
                "outputs": [{"name": "probabilities", "parameters": {"classification": 0}}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"].as_str().unwrap().contains("classification"),
        "{err}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_config_and_health_agree_across_protocols() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let mut client = grpc(&server).await;
    for _ in 0..3 {
        client
            .model_infer(grpc_tensor_request(&[image(1), image(2)], true))
            .await
            .unwrap();
    }
    let (status, stats) = get(&server, "/v2/models/cifar10/stats").await;
    assert_eq!(status, StatusCode::OK);
    let s = &stats["model_stats"][0];
    assert_eq!(s["name"], "cifar10");
    assert_eq!(s["inference_count"], 6);
    assert_eq!(s["inference_stats"]["success"]["count"], 3);
    assert_eq!(s["inference_stats"]["compute_infer"]["count"], 3);
    assert!(
        s["inference_stats"]["compute_infer"]["ns"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(s["last_inference"].as_u64().unwrap() > 0);

    let g = client
        .model_statistics(pb::ModelStatisticsRequest {
            name: "cifar10".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let gs = &g.model_stats[0];
    assert_eq!(gs.inference_count, 6);
    assert_eq!(
        gs.inference_stats.as_ref().unwrap().success.unwrap().count,
        3
    );
    assert_eq!(gs.execution_count, s["execution_count"].as_u64().unwrap());
    let missing = client
        .model_statistics(pb::ModelStatisticsRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, config) = get(&server, "/v2/models/cifar10/config").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config["max_batch_size"], 128);
    assert_eq!(config["input"][0]["dims"], json!([24, 24, 3]));
    assert_eq!(config["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(config["output"][0]["label_filename"], "labels.txt");
    let gc = client
        .model_config(pb::ModelConfigRequest {
            name: "cifar10".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(gc.input[0].data_type, pb::DataType::TypeFp32 as i32);
    assert_eq!(gc.input[0].dims, [24, 24, 3]);

    let index = client
        .repository_index(pb::RepositoryIndexRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(index.models.len(), 1);
    assert_eq!(index.models[0].state, "READY");

    let meta = client
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(meta.extensions.iter().any(|e| e == "classification"));
    assert!(
        client
            .model_ready(pb::ModelReadyRequest {
                name: "cifar10".into(),
                version: "1".into()
            })
            .await
            .unwrap()
            .into_inner()
            .ready
    );
    assert!(
        !client
            .model_ready(pb::ModelReadyRequest {
                name: "nope".into(),
                version: String::new()
            })
            .await
            .unwrap()
            .into_inner()
            .ready
    );

    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tf_serving_status_metadata_and_bad_bodies() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let (status, body) = get(&server, "/v1/models/cifar10").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["model_version_status"][0]["state"], "AVAILABLE");
    let (status, body) = get(&server, "/v1/models/cifar10/versions/1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    let sig = &body["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(sig["inputs"]["images"]["dtype"], "DT_FLOAT");
    let (status, body) = get(&server, "/v1/models/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("nope"));

    let row = json!(vec![vec![vec![0.0f32; 3]; 24]; 24]);
    let mut short = vec![vec![vec![0.0f32; 3]; 24]; 24];
    short[3].pop();
    let fewer_rows = json!(vec![vec![vec![0.0f32; 3]; 24]; 23]);
    let cases = [
        (
            json!({"instances": [row], "inputs": [row]}),
            "mixes 'instances'",
        ),
        (
            json!({"instances": [row, fewer_rows]}),
            "every row must have the same shape",
        ),
        (
            json!({"instances": [row, short]}),
            "instances[1][3] has 23 entries",
        ),
        (json!({"inputs": [short]}), "ragged"),
        (
            json!({"instances": [row], "signature_name": "other"}),
            "serving_default",
        ),
        (json!({"instances": [{"b64": "@@@"}]}), "not valid base64"),
        (
            json!({"instances": [{"b64": "aGVsbG8="}]}),
            "not a JPEG or PNG",
        ),
        (json!({"rows": []}), "unknown field 'rows'"),
        (json!({}), "needs 'instances'"),
    ];
    for (body, expected) in cases {
        let (status, answer) = post(&server, "/v1/models/cifar10:predict", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{message} should say {expected}"
        );
    }
    let (status, answer) = post(&server, "/v1/models/cifar10:classify", &json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, _) = post(
        &server,
        "/v1/models/cifar10:predict",
        &json!({"instances": [row]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "still serving");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_and_raw_contents_are_clear_errors() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let mut config = serve_config(repo.path());
    config.max_image_pixels = 64 * 64;
    config.grpc_max_message = 1 << 20;
    let server = start(config).await.unwrap();
    let good = png(1, 32);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (good[..good.len() / 2].to_vec(), "corrupt or truncated"),
        (b"not an image at all".to_vec(), "not a JPEG or PNG"),
        (
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec(),
            "not supported",
        ),
        (Vec::new(), "empty element"),
        (png(2, 100), "over the server's cap"),
    ];
    for (bad, expected) in cases {
        let raw = bytes_elements(&[good.clone(), bad]);
        let response = http_binary(
            &server,
            json!({"inputs": [{"name": "images", "shape": [2], "datatype": "BYTES",
                               "parameters": {"binary_data_size": raw.len()}}]}),
            &raw,
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap();
        assert!(
            message.contains("input 'images' element 1") && message.contains(expected),
            "{message} should say {expected}"
        );
    }

    // 30,000 empty image elements (120 KB): refused from the shape alone, before any image is
    // decoded or any output reserved (this once aborted the server on a 32 GB allocation).
    let many = bytes_elements(&vec![Vec::new(); 30_000]);
    let response = http_binary(
        &server,
        json!({"inputs": [{"name": "images", "shape": [30_000], "datatype": "BYTES",
                           "parameters": {"binary_data_size": many.len()}}]}),
        &many,
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("input 'images'") && message.contains("max_batch_size"),
        "{message}"
    );

    let mut client = grpc(&server).await;
    let many = pb::ModelInferRequest {
        model_name: "cifar10".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "images".into(),
            datatype: "BYTES".into(),
            shape: vec![30_000],
            parameters: HashMap::new(),
            contents: Some(pb::InferTensorContents {
                bytes_contents: vec![Vec::new(); 30_000],
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let err = client.model_infer(many).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message().contains("max_batch_size"),
        "{}",
        err.message()
    );

    // Bytes that are no protobuf message: the sender's mistake, not a server fault.
    let err = raw_model_infer(&server, b"\xff\xff\xff\xff garbage".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .contains("not a valid protobuf ModelInferRequest"),
        "{}",
        err.message()
    );

    let mut wrong_size = grpc_tensor_request(&[image(1)], true);
    wrong_size.raw_input_contents[0].truncate(100);
    let err = client.model_infer(wrong_size).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("input 'images'"),
        "{}",
        err.message()
    );

    let mut wrong_type = grpc_tensor_request(&[image(1)], false);
    wrong_type.inputs[0].datatype = "INT64".into();
    let err = client.model_infer(wrong_type).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("expected datatype FP32"),
        "{}",
        err.message()
    );

    let mut short = grpc_tensor_request(&[image(1)], false);
    short.inputs[0]
        .contents
        .as_mut()
        .unwrap()
        .fp32_contents
        .pop();
    let err = client.model_infer(short).await.unwrap_err();
    assert!(
        err.message()
            .contains("needs 1728 elements but contents hold 1727"),
        "{}",
        err.message()
    );

    let huge = grpc_tensor_request(&vec![image(1); 200], true);
    let err = client.model_infer(huge).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(
        err.message().contains("--grpc-max-message"),
        "{}",
        err.message()
    );

    let mut unknown = grpc_tensor_request(&[image(1)], true);
    unknown.model_name = "nope".into();
    let err = client.model_infer(unknown).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let ok = client
        .model_infer(grpc_tensor_request(&[image(1)], true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.outputs[0].shape, [1, 10], "still serving");
    server.stop().await.unwrap();
}
