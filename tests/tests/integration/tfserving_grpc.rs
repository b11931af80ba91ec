//! TensorFlow Serving's gRPC API (`tensorflow.serving.PredictionService` and `ModelService`)
//! on a real server's gRPC port, with a tonic client generated from the same protos: Predict
//! with typed values and `tensor_content` answering as KServe v2 does, output_filter, version
//! selection, signature metadata, version status, and every malformed request answered with the
//! right code and a message naming what was wrong, while the server keeps serving.

use spindle_core::config::ModelConfig;
use spindle_core::version_policy::VersionPolicy;
use spindle_proto::google::protobuf::Int64Value;
use spindle_proto::inference as pb;
use spindle_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use spindle_proto::prost::Message;
use spindle_proto::tensorflow::serving as tfs;
use spindle_proto::tensorflow::serving::model_service_client::ModelServiceClient;
use spindle_proto::tensorflow::serving::model_spec::VersionChoice;
use spindle_proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use spindle_proto::tensorflow::tensor_shape_proto::Dim;
use spindle_proto::tensorflow::{DataType as TfType, TensorProto, TensorShapeProto};
use spindle_tests::{TestServer, serve_config, start, start_zoo};
use spindle_zoo::ZooModel;
use std::collections::HashMap;
use tonic::Code;
use tonic::transport::Channel;

const PIXELS: usize = 24 * 24 * 3;

pub(crate) fn images(n: usize, seed: usize) -> Vec<f32> {
    (0..n * PIXELS)
        .map(|i| ((i * 7 + seed * 13) % 97) as f32 / 97.0 - 0.5)
        .collect()
}

fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    })
}

/// A DT_FLOAT tensor of `n` images, in `float_val` or (as tf.make_tensor_proto writes it) in
/// `tensor_content`.
pub(crate) fn image_tensor(data: &[f32], content: bool) -> TensorProto {
    let n = (data.len() / PIXELS) as i64;
    let mut t = TensorProto {
        dtype: TfType::DtFloat as i32,
        tensor_shape: shape(&[n, 24, 24, 3]),
        ..Default::default()
    };
    if content {
        t.tensor_content = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    } else {
        t.float_val = data.to_vec();
    }
    t
}

fn spec(model: &str, version: Option<i64>) -> Option<tfs::ModelSpec> {
    Some(tfs::ModelSpec {
        name: model.into(),
        version_choice: version.map(|value| VersionChoice::Version(Int64Value { value })),
        signature_name: String::new(),
    })
}

pub(crate) fn predict_request(version: Option<i64>, input: TensorProto) -> tfs::PredictRequest {
    tfs::PredictRequest {
        model_spec: spec("cifar10", version),
        inputs: HashMap::from([("images".to_string(), input)]),
        output_filter: Vec::new(),
    }
}

pub(crate) async fn prediction(server: &TestServer) -> PredictionServiceClient<Channel> {
    PredictionServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap()
}

pub(crate) async fn model_service(server: &TestServer) -> ModelServiceClient<Channel> {
    ModelServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap()
}

/// KServe v2's answer for the same images, for comparison.
async fn kserve_probabilities(server: &TestServer, data: &[f32], version: &str) -> Vec<f32> {
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .unwrap();
    let request = pb::ModelInferRequest {
        model_name: "cifar10".into(),
        model_version: version.into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "images".into(),
            datatype: "FP32".into(),
            shape: vec![(data.len() / PIXELS) as i64, 24, 24, 3],
            ..Default::default()
        }],
        raw_input_contents: vec![data.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    };
    let answer = client.model_infer(request).await.unwrap().into_inner();
    answer.raw_output_contents[0]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The answered probabilities, after checking the answer's spec, dtype and shape.
pub(crate) fn probabilities(answer: &tfs::PredictResponse, rows: i64, version: i64) -> Vec<f32> {
    let spec = answer.model_spec.as_ref().expect("model_spec answered");
    assert_eq!(spec.name, "cifar10");
    assert_eq!(spec.signature_name, "serving_default");
    assert_eq!(
        spec.version_choice,
        Some(VersionChoice::Version(Int64Value { value: version }))
    );
    let out = &answer.outputs["probabilities"];
    assert_eq!(out.dtype, TfType::DtFloat as i32);
    assert_eq!(out.tensor_shape, shape(&[rows, 10]));
    out.float_val.clone()
}

#[tokio::test]
async fn predict_answers_as_kserve_with_typed_values_and_tensor_content() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let mut client = prediction(&server).await;
    let data = images(3, 1);
    let expected = kserve_probabilities(&server, &data, "").await;
    for content in [false, true] {
        let answer = client
            .predict(predict_request(None, image_tensor(&data, content)))
            .await
            .unwrap()
            .into_inner();
        let got = probabilities(&answer, 3, 1);
        assert!(
            max_difference(&got, &expected) <= 1e-6,
            "tensor_content {content}: {got:?} against KServe's {expected:?}"
        );
        // Softmax rows: a real answer, not zeros.
        let row: f32 = got[..10].iter().sum();
        assert!((row - 1.0).abs() < 1e-4, "row sums to {row}");
    }
    // output_filter naming the one output, and signature_name spelled out, answer the same.
    let mut request = predict_request(Some(1), image_tensor(&data, true));
    request.output_filter = vec!["probabilities".into()];
    request.model_spec.as_mut().unwrap().signature_name = "serving_default".into();
    let answer = client.predict(request).await.unwrap().into_inner();
    assert_eq!(answer.outputs.len(), 1);
    assert!(max_difference(&probabilities(&answer, 3, 1), &expected) <= 1e-6);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metadata_is_the_serving_default_signature_def() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let mut client = prediction(&server).await;
    let answer = client
        .get_model_metadata(tfs::GetModelMetadataRequest {
            model_spec: spec("cifar10", None),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let answered = answer.model_spec.unwrap();
    assert_eq!(answered.name, "cifar10");
    assert_eq!(
        answered.version_choice,
        Some(VersionChoice::Version(Int64Value { value: 1 }))
    );
    let packed = &answer.metadata["signature_def"];
    assert_eq!(
        packed.type_url,
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let map = tfs::SignatureDefMap::decode(packed.value.as_slice()).unwrap();
    let signature = &map.signature_def["serving_default"];
    assert_eq!(signature.method_name, "tensorflow/serving/predict");
    let input = &signature.inputs["images"];
    assert_eq!(input.name, "images");
    assert_eq!(input.dtype, TfType::DtFloat as i32);
    assert_eq!(input.tensor_shape, shape(&[-1, 24, 24, 3]));
    let output = &signature.outputs["probabilities"];
    assert_eq!(output.dtype, TfType::DtFloat as i32);
    assert_eq!(output.tensor_shape, shape(&[-1, 10]));

    for (fields, expected) in [
        (vec![], "metadata_field is empty"),
        (
            vec!["signature_def".to_string(), "graph".to_string()],
            "metadata_field 'graph' is not supported",
        ),
    ] {
        let err = client
            .get_model_metadata(tfs::GetModelMetadataRequest {
                model_spec: spec("cifar10", None),
                metadata_field: fields,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        assert!(err.message().contains(expected), "{}", err.message());
    }
    let err = client
        .get_model_metadata(tfs::GetModelMetadataRequest {
            model_spec: spec("nope", None),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    server.stop().await.unwrap();
}

/// A repository where cifar10 has version 1 (seed 7), version 2 (other weights) and a version
/// 3 whose model file is junk, all three served (`version_policy = "all"`).
pub(crate) fn three_versions() -> tempfile::TempDir {
    let repo = spindle_tests::zoo_repo(&[ZooModel::Cifar10]);
    let second = spindle_zoo::build(ZooModel::Cifar10, 8);
    spindle_zoo::write_model(repo.path(), &second, 2).unwrap();
    let dir = repo.path().join("cifar10");
    std::fs::create_dir_all(dir.join("3")).unwrap();
    std::fs::write(dir.join("3/model.onnx"), b"this is not an onnx model").unwrap();
    let path = dir.join("config.toml");
    let mut config = ModelConfig::from_toml(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config.version_policy = VersionPolicy::All;
    std::fs::write(&path, config.to_toml()).unwrap();
    repo
}

#[tokio::test]
async fn versions_are_selected_and_reported() {
    let repo = three_versions();
    let mut server = start(serve_config(repo.path())).await.unwrap();
    server.keep(repo);
    let mut client = prediction(&server).await;
    let data = images(1, 2);
    let mut answers = Vec::new();
    for version in [1, 2] {
        let answer = client
            .predict(predict_request(Some(version), image_tensor(&data, false)))
            .await
            .unwrap()
            .into_inner();
        let got = probabilities(&answer, 1, version);
        let expected = kserve_probabilities(&server, &data, &version.to_string()).await;
        assert!(max_difference(&got, &expected) <= 1e-6, "version {version}");
        answers.push(got);
    }
    assert!(
        max_difference(&answers[0], &answers[1]) > 1e-4,
        "versions 1 and 2 have different weights, so they must answer differently"
    );
    // No version: the newest ready one (3 failed to load).
    let newest = client
        .predict(predict_request(None, image_tensor(&data, false)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probabilities(&newest, 1, 2), answers[1]);

    let refused = [
        (Some(3), Code::Unavailable, "version 3 failed to load"),
        (Some(9), Code::NotFound, "has no version 9"),
        (
            Some(-1),
            Code::InvalidArgument,
            "model_spec.version -1 is negative",
        ),
    ];
    for (version, code, expected) in refused {
        let err = client
            .predict(predict_request(version, image_tensor(&data, false)))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "version {version:?}: {err}");
        assert!(err.message().contains(expected), "{}", err.message());
    }
    let mut labelled = predict_request(None, image_tensor(&data, false));
    labelled.model_spec.as_mut().unwrap().version_choice =
        Some(VersionChoice::VersionLabel("stable".into()));
    // This config has no [version_labels] (version_labels.rs serves a model that has).
    let err = client.predict(labelled).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message()
            .contains("model 'cifar10' has no version label 'stable' (it has none"),
        "{}",
        err.message()
    );

    let mut models = model_service(&server).await;
    let status = models
        .get_model_status(tfs::GetModelStatusRequest {
            model_spec: spec("cifar10", None),
        })
        .await
        .unwrap()
        .into_inner()
        .model_version_status;
    let summary: Vec<(i64, i32, i32)> = status
        .iter()
        .map(|s| {
            let code = s.status.as_ref().unwrap().error_code;
            (s.version, s.state, code)
        })
        .collect();
    use spindle_proto::tensorflow::error::Code as TfCode;
    use tfs::model_version_status::State;
    assert_eq!(
        summary,
        [
            (1, State::Available as i32, TfCode::Ok as i32),
            (2, State::Available as i32, TfCode::Ok as i32),
            (3, State::End as i32, TfCode::Unknown as i32),
        ]
    );
    assert!(
        status[2]
            .status
            .as_ref()
            .unwrap()
            .error_message
            .contains("model.onnx"),
        "{:?}",
        status[2]
    );
    let one = models
        .get_model_status(tfs::GetModelStatusRequest {
            model_spec: spec("cifar10", Some(2)),
        })
        .await
        .unwrap()
        .into_inner()
        .model_version_status;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].version, 2);
    for (model_spec, code, expected) in [
        (spec("cifar10", Some(7)), Code::NotFound, "no version 7"),
        (spec("nope", None), Code::NotFound, "unknown model 'nope'"),
        (None, Code::InvalidArgument, "no model_spec"),
    ] {
        let err = models
            .get_model_status(tfs::GetModelStatusRequest { model_spec })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(err.message().contains(expected), "{}", err.message());
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_predictions_are_refused_and_the_server_keeps_serving() {
    let server = start_zoo(&[ZooModel::Cifar10]).await.unwrap();
    let mut client = prediction(&server).await;
    let data = images(2, 3);
    let good = || predict_request(None, image_tensor(&data, false));
    let with_input = |t: TensorProto| predict_request(None, t);

    let mut cases: Vec<(&str, tfs::PredictRequest, Code, &str)> = Vec::new();
    let mut r = good();
    r.model_spec.as_mut().unwrap().signature_name = "classify_images".into();
    cases.push((
        "signature",
        r,
        Code::InvalidArgument,
        "signature_name 'classify_images' is not a signature of model 'cifar10'",
    ));
    let mut r = good();
    r.model_spec = None;
    cases.push(("no spec", r, Code::InvalidArgument, "no model_spec"));
    let mut r = good();
    r.model_spec = spec("resnet", None);
    cases.push(("model", r, Code::NotFound, "unknown model 'resnet'"));
    let mut r = good();
    r.output_filter = vec!["logits".into()];
    cases.push((
        "output",
        r,
        Code::InvalidArgument,
        "unknown output 'logits' for model 'cifar10'",
    ));
    let mut r = good();
    r.output_filter = vec!["probabilities".into(), "probabilities".into()];
    cases.push((
        "output twice",
        r,
        Code::InvalidArgument,
        "names output 'probabilities' twice",
    ));
    let mut r = good();
    let t = r.inputs.remove("images").unwrap();
    r.inputs.insert("pixels".into(), t);
    cases.push((
        "input name",
        r,
        Code::InvalidArgument,
        "unknown input 'pixels'",
    ));
    let mut r = good();
    r.inputs.clear();
    cases.push((
        "no input",
        r,
        Code::InvalidArgument,
        "missing input 'images'",
    ));
    let mut t = image_tensor(&data, false);
    t.dtype = TfType::DtInt32 as i32;
    t.int_val = vec![1; t.float_val.len()];
    t.float_val.clear();
    cases.push((
        "dtype",
        with_input(t),
        Code::InvalidArgument,
        "input 'images': expected dtype DT_FLOAT (or DT_STRING holding cifar10_image input) but got DT_INT32",
    ));
    let mut t = image_tensor(&data, false);
    t.float_val.truncate(100);
    cases.push((
        "short",
        with_input(t),
        Code::InvalidArgument,
        "needs 3456 values but float_val holds 100",
    ));
    let mut t = image_tensor(&data, true);
    t.tensor_content.pop();
    cases.push((
        "content",
        with_input(t),
        Code::InvalidArgument,
        "input 'images' (tensor_content)",
    ));
    let mut t = image_tensor(&images(2, 3)[..2 * 24 * 24], false);
    t.tensor_shape = shape(&[2, 24, 24]);
    cases.push(("rank", with_input(t), Code::InvalidArgument, "images"));
    let mut t = image_tensor(&data, false);
    t.tensor_shape = shape(&[2, -24, 24, 3]);
    cases.push((
        "negative",
        with_input(t),
        Code::InvalidArgument,
        "has a negative size",
    ));
    let mut t = image_tensor(&data, false);
    t.tensor_shape = None;
    cases.push((
        "scalar",
        with_input(t),
        Code::InvalidArgument,
        "tensor_shape [] needs 1 values",
    ));
    let t = TensorProto {
        dtype: TfType::DtString as i32,
        tensor_shape: shape(&[1]),
        string_val: vec![b"not an image".to_vec()],
        ..Default::default()
    };
    cases.push(("image", with_input(t), Code::InvalidArgument, "images"));
    let big = images(129, 4);
    cases.push((
        "batch",
        with_input(image_tensor(&big, true)),
        Code::InvalidArgument,
        "max_batch_size 128",
    ));

    for (what, request, code, expected) in cases {
        let err = client.predict(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err}");
        assert!(
            err.message().contains(expected),
            "{what}: {} does not say {expected:?}",
            err.message()
        );
    }

    // A message that is not a PredictRequest (field 1 a varint where model_spec is a message),
    // and a method Spindle does not serve.
    let err = call(&server, "Predict", Int64Value { value: 5 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message()
            .contains("not a valid protobuf PredictRequest"),
        "{}",
        err.message()
    );
    let err = call(&server, "Classify", good()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err}");

    // Still serving.
    let answer = client.predict(good()).await.unwrap().into_inner();
    assert_eq!(probabilities(&answer, 2, 1).len(), 20);
    server.stop().await.unwrap();
}

/// Calls `tensorflow.serving.PredictionService/METHOD` with any message.
async fn call<M: Message + Send + 'static>(
    server: &TestServer,
    method: &str,
    message: M,
) -> Result<tfs::PredictResponse, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = format!("/tensorflow.serving.PredictionService/{method}")
        .parse()
        .unwrap();
    let codec = spindle_proto::codec::StrictCodec::<M, tfs::PredictResponse>::default();
    grpc.unary(tonic::Request::new(message), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn predict_is_unavailable_until_the_server_is_ready() {
    use spindle_core::engine::{Device, EngineChoice};
    use spindle_server::engines::Engines;
    use spindle_server::models::ModelManager;
    use spindle_server::repository::{ModelControl, RepositoryWatcher};
    use spindle_server::state::AppState;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    // A server's state before its models are loaded: ready is still false.
    let repo = spindle_tests::zoo_repo(&[ZooModel::Cifar10]);
    let cache = tempfile::tempdir().unwrap();
    let models = Arc::new(ModelManager::new(spindle_core::metrics::Metrics::new()));
    let watcher = RepositoryWatcher::new(
        spindle_loader::ModelRepository::connect(
            &repo.path().display().to_string(),
            spindle_loader::HDFS_RETRY,
        )
        .unwrap(),
        spindle_loader::ModelCache::new(cache.path()).unwrap(),
        models.clone(),
        Arc::new(Engines::new(EngineChoice::Auto, Device::Cpu)),
        ModelControl::Poll,
    );
    let state = AppState {
        models,
        ready: Arc::new(AtomicBool::new(false)),
        limits: Default::default(),
        repository: Arc::new(watcher),
    };
    let (prediction, _) = spindle_server::grpc::tfserving::services(&state, 1 << 20);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(prediction)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let mut client = PredictionServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let err = client
        .predict(predict_request(None, image_tensor(&images(1, 0), false)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("not ready"), "{}", err.message());
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
