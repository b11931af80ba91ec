//! The ONNX Runtime engine against the zoo's real models, and its parity with tract.
//!
//! These tests need ONNX Runtime 1.31 (see `spindle_engine_ort::find_library`). Without it they
//! fail with the message saying how to install it, unless `SPINDLE_SKIP_ORT=1` is set, in which
//! case they print why they skip.

use spindle_core::config::{ModelConfig, Spinning};
use spindle_core::engine::{Device, Engine, EngineError, LoadOptions, Runner};
use spindle_core::{DataType, Tensor, TensorData};
use spindle_engine_ort::OrtEngine;
use spindle_engine_tract::TractEngine;
use spindle_zoo::ZooModel;
use std::path::Path;
use std::time::Instant;

/// The engine, or `None` (with the reason printed) when the library is missing and
/// `SPINDLE_SKIP_ORT=1` allows skipping.
fn engine() -> Option<OrtEngine> {
    match OrtEngine::new() {
        Ok(engine) => Some(engine),
        Err(e) if std::env::var("SPINDLE_SKIP_ORT").as_deref() == Ok("1") => {
            spindle_core::skip::record(&format!(
                "ONNX Runtime is unavailable and SPINDLE_SKIP_ORT=1: {e}"
            ));
            None
        }
        Err(e) => panic!("{e}\n(set SPINDLE_SKIP_ORT=1 to skip the ONNX Runtime tests)"),
    }
}

fn options(instances: usize, threads: usize) -> LoadOptions {
    LoadOptions {
        instances,
        intra_op_threads: threads,
        intra_op_spinning: Default::default(),
        device: Device::Cpu,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

fn floats(output: &Tensor) -> &[f32] {
    match &output.data {
        TensorData::F32(v) => v,
        other => panic!("expected FP32, got {}", other.dtype()),
    }
}

fn load_error(
    engine: &OrtEngine,
    onnx: &[u8],
    config: &ModelConfig,
    options: &LoadOptions,
) -> EngineError {
    match engine.load(onnx, config, options) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e,
    }
}

#[test]
fn cifar10_runs_batches_of_one_and_five() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runners = engine
        .load(&model.onnx, &model.config, &options(2, 1))
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
            for row in floats(&outputs[0]).chunks(10) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-4, "row sums to {sum}");
            }
        }
    }
}

/// Each spinning mode makes a session that ONNX Runtime accepts and that computes the same
/// thing, run after run (the in-run mode stops and restarts the threads' spinning around each).
#[test]
fn every_spinning_mode_loads_and_agrees() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 5);
    let input = spindle_zoo::sample_images(3, &model.config, 2);
    let mut outputs = Vec::new();
    for spinning in [Spinning::Off, Spinning::InRun, Spinning::Always] {
        let options = LoadOptions {
            intra_op_spinning: spinning,
            ..options(1, 2)
        };
        let mut runners = engine.load(&model.onnx, &model.config, &options).unwrap();
        // Two runs: the second starts after the in-run mode stopped the threads spinning.
        let first = runners[0].run(vec![input.clone()]).unwrap();
        let second = runners[0].run(vec![input.clone()]).unwrap();
        let again = max_diff(floats(&first[0]), floats(&second[0]));
        assert!(
            again <= 1e-6,
            "{spinning}: the second run differs by {again}"
        );
        outputs.push((spinning, floats(&first[0]).to_vec()));
    }
    for (spinning, values) in &outputs[1..] {
        let diff = max_diff(values, &outputs[0].1);
        assert!(diff <= 1e-6, "{spinning} differs from off by {diff}");
    }
}

fn assert_parity(model: ZooModel, batch: usize) {
    let Some(engine) = engine() else { return };
    let built = spindle_zoo::build(model, 11);
    let input = spindle_zoo::sample_images(batch, &built.config, 4);
    let mut ort = engine
        .load(&built.onnx, &built.config, &options(1, 2))
        .unwrap();
    let mut tract = TractEngine
        .load(&built.onnx, &built.config, &options(1, 1))
        .unwrap();
    let a = ort[0].run(vec![input.clone()]).unwrap();
    let b = tract[0].run(vec![input]).unwrap();
    assert_eq!(a[0].shape, b[0].shape);
    let diff = max_diff(floats(&a[0]), floats(&b[0]));
    println!("{model} batch {batch}: max |ort - tract| = {diff:e}");
    assert!(diff <= 1e-4, "{model}: ort and tract differ by {diff}");
}

#[test]
fn ort_and_tract_agree_on_cifar10() {
    assert_parity(ZooModel::Cifar10, 2);
}

#[test]
fn ort_and_tract_agree_on_inception_v3() {
    assert_parity(ZooModel::InceptionV3, 1);
}

#[test]
fn wrong_run_shapes_are_run_errors() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runner = engine
        .load(&model.onnx, &model.config, &options(1, 1))
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
    let outputs = runner
        .run(vec![spindle_zoo::sample_images(2, &model.config, 1)])
        .unwrap();
    assert_eq!(outputs[0].shape, vec![2, 10]);
}

#[test]
fn a_lying_config_is_a_signature_mismatch() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let options = options(1, 1);

    let mut renamed = model.config.clone();
    renamed.inputs[0].name = "pixels".into();
    let err = load_error(&engine, &model.onnx, &renamed, &options);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("'pixels'"), "{err}");
    assert!(err.to_string().contains("images"), "{err}");

    let mut retyped = model.config.clone();
    retyped.inputs[0].dtype = DataType::I64;
    let err = load_error(&engine, &model.onnx, &retyped, &options);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("input 'images'"), "{err}");
    assert!(err.to_string().contains("INT64"), "{err}");
    assert!(err.to_string().contains("FP32"), "{err}");

    let mut resized = model.config.clone();
    resized.inputs[0].dims = vec![-1, 32, 32, 3];
    let err = load_error(&engine, &model.onnx, &resized, &options);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("input 'images'"), "{err}");
    assert!(err.to_string().contains("[-1, 32, 32, 3]"), "{err}");
    assert!(err.to_string().contains("[-1, 24, 24, 3]"), "{err}");

    let mut outputs = model.config.clone();
    outputs.outputs[0].dims = vec![-1, 1000];
    let err = load_error(&engine, &model.onnx, &outputs, &options);
    assert!(matches!(err, EngineError::SignatureMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("output 'probabilities'"), "{err}");
}

#[test]
fn garbage_is_an_invalid_model() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let err = load_error(
        &engine,
        b"this is not an onnx file",
        &model.config,
        &options(1, 1),
    );
    assert!(matches!(err, EngineError::InvalidModel(_)), "{err:?}");
}

#[test]
fn cuda_is_used_or_refused_never_replaced_by_the_cpu() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let cuda = LoadOptions {
        device: Device::Cuda(0),
        ..options(1, 1)
    };
    // The CPU wheel ships no CUDA provider library; onnxruntime-gpu does.
    let has_cuda_provider = engine
        .library()
        .with_file_name("libonnxruntime_providers_cuda.so")
        .exists();
    match engine.load(&model.onnx, &model.config, &cuda) {
        Err(EngineError::Unavailable(message)) => {
            println!("{message}");
            assert!(message.contains("CUDA was requested (cuda:0)"), "{message}");
            assert!(message.contains("onnxruntime-gpu"), "{message}");
            assert!(!message.contains('\n'), "{message}");
            assert!(
                !has_cuda_provider,
                "the library has a CUDA provider but loading failed: {message}"
            );
        }
        Err(other) => panic!("expected Unavailable, got {other:?}"),
        Ok(mut runners) => {
            assert!(
                has_cuda_provider,
                "CUDA was requested from a library without a CUDA provider, and loading succeeded: \
                 it must have fallen back to the CPU"
            );
            let outputs = runners[0]
                .run(vec![spindle_zoo::sample_images(2, &model.config, 1)])
                .unwrap();
            assert_eq!(outputs[0].shape, vec![2, 10]);
        }
    }
}

#[test]
fn init_names_a_missing_library() {
    let path = Path::new("/nonexistent/libonnxruntime.so.1.31.1");
    match spindle_engine_ort::init(Some(path)) {
        Err(EngineError::Unavailable(message)) => {
            assert!(
                message.contains("/nonexistent/libonnxruntime.so.1.31.1"),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn init_refuses_other_versions_and_non_libraries_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("libonnxruntime.so.1.20.0");
    std::fs::write(&old, b"not a library").unwrap();
    match spindle_engine_ort::init(Some(&old)) {
        Err(EngineError::Unavailable(message)) => {
            assert!(message.contains("1.20.0"), "{message}");
            assert!(message.contains("1.31"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let fake = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, b"not a library").unwrap();
    match spindle_engine_ort::init(Some(&fake)) {
        Err(EngineError::Unavailable(message)) => {
            assert!(message.contains(&*fake.to_string_lossy()), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Prints ONNX Runtime's cifar10 throughput with 2 intra-op threads. Run with
/// `cargo test --release -p spindle-engine-ort -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a test"]
fn measure_cifar10_throughput() {
    let Some(engine) = engine() else { return };
    let model = spindle_zoo::build(ZooModel::Cifar10, 1);
    let mut runner: Box<dyn Runner> = engine
        .load(&model.onnx, &model.config, &options(1, 2))
        .unwrap()
        .pop()
        .unwrap();
    for batch in [1, 16, 64, 128] {
        let input = spindle_zoo::sample_images(batch, &model.config, 5);
        for _ in 0..3 {
            runner.run(vec![input.clone()]).unwrap();
        }
        let runs = (4000 / batch).max(20);
        let start = Instant::now();
        for _ in 0..runs {
            runner.run(vec![input.clone()]).unwrap();
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "ort cifar10 batch {batch:>3}: {:>7.0} images/s ({:.2} ms per run)",
            (runs * batch) as f64 / seconds,
            seconds * 1000.0 / runs as f64
        );
    }
}
