//! Engine selection through the real server: tract and ONNX Runtime serve the same answers, and
//! asking for a GPU on a machine without one is a clear startup error, never a CPU fallback.

use serde_json::{Value, json};
use spindle_core::engine::{Device, EngineChoice};
use spindle_tests::{serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;

async fn predict(url: String, image: &[f32]) -> (String, Vec<f64>) {
    let client = reqwest::Client::new();
    let meta: Value = client
        .get(format!("{url}/v2/models/cifar10"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let body = json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": image}]});
    let answer: Value = client
        .post(format!("{url}/v2/models/cifar10/infer"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let probabilities = answer["outputs"][0]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    (
        meta["parameters"]["engine"].as_str().unwrap().to_string(),
        probabilities,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tract_and_onnx_runtime_serve_the_same_answers() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let image: Vec<f32> = (0..24 * 24 * 3).map(|i| (i % 97) as f32 / 97.0).collect();
    let mut answers = Vec::new();
    for engine in [EngineChoice::Tract, EngineChoice::Ort] {
        let mut config = serve_config(repo.path());
        config.engine = engine;
        let server = start(config).await.unwrap();
        answers.push(predict(server.url(""), &image).await);
        server.stop().await.unwrap();
    }
    assert_eq!(answers[0].0, "tract");
    assert_eq!(answers[1].0, "ort");
    let max_diff = answers[0]
        .1
        .iter()
        .zip(&answers[1].1)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(max_diff <= 1e-4, "tract and ORT differ by {max_diff}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_without_a_gpu_is_a_clear_startup_error() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    for engine in [EngineChoice::Auto, EngineChoice::Ort, EngineChoice::Tract] {
        let mut config = serve_config(repo.path());
        config.engine = engine;
        config.device = Device::Cuda(0);
        let err = start(config)
            .await
            .err()
            .expect("CUDA must not start on this machine");
        let message = format!("{err:#}");
        assert!(message.contains("cuda:0"), "{engine:?}: {message}");
    }
}
