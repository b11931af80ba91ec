//! Engine selection through the real server: tract and ONNX Runtime serve the same answers, and
//! asking for a GPU serves on it where ONNX Runtime's GPU build is installed (the same answers
//! as the CPU) and is a clear startup error elsewhere, never a CPU fallback.

use serde_json::json;
use spindle_core::engine::{Device, EngineChoice};
use spindle_tests::{serve_config, start, zoo_repo};
use spindle_zoo::ZooModel;

async fn predict(url: String, image: &[f32]) -> (String, Vec<f64>) {
    let meta = spindle_tests::get_json(&format!("{url}/v2/models/cifar10")).await;
    let body = json!({"inputs": [{"name": "images", "shape": [1, 24, 24, 3], "datatype": "FP32", "data": image}]});
    let (_, answer) =
        spindle_tests::post_json(&format!("{url}/v2/models/cifar10/infer"), &body).await;
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

/// Whether the ONNX Runtime library this machine has can run CUDA: the GPU build
/// (onnxruntime-gpu) ships its CUDA provider beside the library; the CPU wheel does not.
fn ort_has_cuda() -> bool {
    spindle_engine_ort::find_library()
        .map(|lib| {
            lib.with_file_name("libonnxruntime_providers_cuda.so")
                .exists()
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_serves_where_it_can_and_is_a_clear_startup_error_elsewhere() {
    let repo = zoo_repo(&[ZooModel::Cifar10]);
    let image: Vec<f32> = (0..24 * 24 * 3).map(|i| (i % 89) as f32 / 89.0).collect();
    let mut cpu = serve_config(repo.path());
    cpu.engine = EngineChoice::Ort;
    let server = start(cpu).await.unwrap();
    let (_, on_cpu) = predict(server.url(""), &image).await;
    server.stop().await.unwrap();
    let cuda_here = ort_has_cuda();
    for engine in [EngineChoice::Auto, EngineChoice::Ort, EngineChoice::Tract] {
        let mut config = serve_config(repo.path());
        config.engine = engine;
        config.device = Device::Cuda(0);
        match start(config).await {
            // tract has no GPU; ONNX Runtime has one only in its GPU build.
            Ok(server) => {
                assert!(
                    cuda_here && engine != EngineChoice::Tract,
                    "{engine:?} started on cuda:0 without a CUDA-capable engine: a CPU fallback"
                );
                let (name, on_gpu) = predict(server.url(""), &image).await;
                server.stop().await.unwrap();
                assert_eq!(name, "ort");
                let max_diff = on_cpu
                    .iter()
                    .zip(&on_gpu)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(max_diff <= 1e-4, "CPU and CUDA differ by {max_diff}");
            }
            Err(err) => {
                let message = format!("{err:#}");
                assert!(message.contains("cuda:0"), "{engine:?}: {message}");
                assert!(
                    !cuda_here || engine == EngineChoice::Tract,
                    "{engine:?}: this ONNX Runtime has a CUDA provider, yet cuda:0 failed: {message}"
                );
            }
        }
    }
}
