//! The tract engine against the zoo's real models.

use spindle_core::config::ModelConfig;
use spindle_core::engine::{Device, Engine, EngineError, LoadOptions, Runner};
use spindle_core::{DataType, Tensor, TensorData};
use spindle_engine_tract::TractEngine;
use spindle_zoo::ZooModel;
use std::time::Instant;

fn options(instances: usize) -> LoadOptions {
    LoadOptions {
        instances,
        intra_op_threads: 1,
        intra_op_spinning: Default::default(),
        device: Device::Cpu,
    }
}

fn probabilities(output: &Tensor) -> &[f32] {
    match &output.data {
        TensorData::F32(v) => v,
        other => panic!("expected FP32 probabilities, got {}", other.dtype()),
    }
}

fn load_error(onnx: &[u8], config: &ModelConfig) -> EngineError {
    match TractEngine.load(onnx, config, &options(1)) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e,
    }
}

#[test]
fn cifar10_runs_batches_of_one_and_five() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runners = TractEngine
        .load(&model.onnx, &model.config, &options(2))
        .unwrap();
    assert_eq!(runners.len(), 2);
    // Every runner handles every batch size, in any order.
    for (runner, batches) in runners.iter_mut().zip([[1, 5], [5, 1]]) {
        for batch in batches {
            let outputs = runner
                .run(vec![spindle_zoo::sample_images(batch, &model.config, 3)])
                .unwrap();
            assert_eq!(outputs.len(), 1);
            assert_eq!(outputs[0].shape, vec![batch, 10]);
            for row in probabilities(&outputs[0]).chunks(10) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4, "row sums to {sum}");
            }
        }
    }
}

#[test]
fn runners_agree_and_repeat_themselves() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runners = TractEngine
        .load(&model.onnx, &model.config, &options(2))
        .unwrap();
    let input = spindle_zoo::sample_images(3, &model.config, 9);
    let a = runners[0].run(vec![input.clone()]).unwrap();
    let b = runners[1].run(vec![input.clone()]).unwrap();
    let c = runners[0].run(vec![input]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn wrong_run_shapes_are_run_errors_and_the_runner_recovers() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runner = TractEngine
        .load(&model.onnx, &model.config, &options(1))
        .unwrap()
        .pop()
        .unwrap();
    let wrong = Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])).unwrap();
    match runner.run(vec![wrong]) {
        Err(EngineError::Run(message)) => {
            assert!(message.contains("'images'"), "{message}");
            assert!(message.contains("[-1, 24, 24, 3]"), "{message}");
            assert!(message.contains("[1, 3]"), "{message}");
        }
        other => panic!("expected a run error, got {other:?}"),
    }
    assert!(
        matches!(runner.run(vec![]), Err(EngineError::Run(m)) if m.contains("expected 1 inputs"))
    );
    let outputs = runner
        .run(vec![spindle_zoo::sample_images(2, &model.config, 1)])
        .unwrap();
    assert_eq!(outputs[0].shape, vec![2, 10]);
}

#[test]
fn a_lying_config_is_a_signature_mismatch() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);

    let mut renamed = model.config.clone();
    renamed.inputs[0].name = "pixels".into();
    let err = load_error(&model.onnx, &renamed);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("'pixels'"), "{err}");
    assert!(err.to_string().contains("images"), "{err}");

    let mut retyped = model.config.clone();
    retyped.inputs[0].dtype = DataType::I64;
    let err = load_error(&model.onnx, &retyped);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("input 'images'"), "{err}");
    assert!(err.to_string().contains("INT64"), "{err}");
    assert!(err.to_string().contains("FP32"), "{err}");

    let mut resized = model.config.clone();
    resized.inputs[0].dims = vec![-1, 32, 32, 3];
    let err = load_error(&model.onnx, &resized);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("input 'images'"), "{err}");
    assert!(err.to_string().contains("[-1, 32, 32, 3]"), "{err}");
    assert!(err.to_string().contains("[-1, 24, 24, 3]"), "{err}");

    let mut outputs = model.config.clone();
    outputs.outputs[0].dims = vec![-1, 1000];
    let err = load_error(&model.onnx, &outputs);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("output 'probabilities'"), "{err}");
    assert!(err.to_string().contains("[-1, 10]"), "{err}");
}

#[test]
fn garbage_is_an_invalid_model() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let err = load_error(b"this is not an onnx file", &model.config);
    assert!(matches!(err, EngineError::InvalidModel(_)), "{err:?}");
    let truncated = &model.onnx[..model.onnx.len() / 2];
    let err = load_error(truncated, &model.config);
    assert!(matches!(err, EngineError::InvalidModel(_)), "{err:?}");
}

#[test]
fn cuda_is_unavailable() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let options = LoadOptions {
        device: Device::Cuda(0),
        ..options(1)
    };
    match TractEngine.load(&model.onnx, &model.config, &options) {
        Err(EngineError::Unavailable(message)) => assert!(message.contains("cuda:0"), "{message}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(_) => panic!("tract cannot run on CUDA"),
    }
}

/// Prints tract's cifar10 throughput at batch 1 on one runner. Run with
/// `cargo test --release -p spindle-engine-tract -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a test"]
fn measure_cifar10_throughput() {
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runner: Box<dyn Runner> = TractEngine
        .load(&model.onnx, &model.config, &options(1))
        .unwrap()
        .pop()
        .unwrap();
    for batch in [1, 16] {
        let input = spindle_zoo::sample_images(batch, &model.config, 5);
        runner.run(vec![input.clone()]).unwrap();
        let runs = if batch == 1 { 400 } else { 40 };
        let start = Instant::now();
        for _ in 0..runs {
            runner.run(vec![input.clone()]).unwrap();
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "tract cifar10 batch {batch}: {:.0} images/s per runner ({:.2} ms per run)",
            (runs * batch) as f64 / seconds,
            seconds * 1000.0 / runs as f64
        );
    }
}
