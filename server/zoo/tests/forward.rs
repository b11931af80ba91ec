//! Loads each zoo model into tract from its bytes and runs real forward passes.

use spindle_zoo::rng::NormalRng;
use spindle_zoo::{BuiltModel, ZooModel, build};
use std::sync::OnceLock;
use tract_onnx::prelude::*;

/// Inception takes a second or two to build, so the tests share one copy.
fn inception() -> &'static BuiltModel {
    static MODEL: OnceLock<BuiltModel> = OnceLock::new();
    MODEL.get_or_init(|| build(ZooModel::InceptionV3, 42))
}

/// Runs `built` on `batch` seeded pseudo-random images (unit-variance normals, like standardised
/// pixels) and returns the output rows.
fn run(built: &BuiltModel, batch: usize, seed: u64) -> Vec<Vec<f32>> {
    let image: Vec<usize> = built.config.inputs[0].dims[1..]
        .iter()
        .map(|&d| d as usize)
        .collect();
    let mut shape = vec![batch];
    shape.extend(&image);
    let mut rng = NormalRng::new(seed);
    let data: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.next_normal() as f32)
        .collect();

    let plan = tract_onnx::onnx()
        .model_for_read(&mut &built.onnx[..])
        .expect("tract reads the file")
        .with_input_fact(0, f32::fact(&shape).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the model")
        .into_runnable()
        .unwrap();
    let input = Tensor::from_shape(&shape, &data).unwrap();
    let outputs = plan
        .run(tvec!(input.into()))
        .expect("the forward pass runs");
    let probabilities = outputs[0].to_plain_array_view::<f32>().unwrap();
    let classes = built.config.outputs[0].dims[1] as usize;
    assert_eq!(probabilities.shape(), [batch, classes]);
    probabilities
        .outer_iter()
        .map(|row| row.iter().copied().collect())
        .collect()
}

/// Every row is a probability distribution that is neither one-hot nor flat, with moderate
/// logits, and no two rows (different images) are the same.
fn check_rows(rows: &[Vec<f32>]) {
    for (i, row) in rows.iter().enumerate() {
        assert!(
            row.iter().all(|p| p.is_finite() && *p >= 0.0),
            "row {i}: {row:?}"
        );
        let sum: f32 = row.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "row {i} sums to {sum}");
        let max = row.iter().copied().fold(0.0, f32::max);
        let min = row.iter().copied().fold(1.0, f32::min);
        // ln p is the logits less a constant, so its spread is the logits' spread.
        let logits: Vec<f64> = row.iter().map(|&p| f64::from(p).ln()).collect();
        let mean = logits.iter().sum::<f64>() / logits.len() as f64;
        let variance =
            logits.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / logits.len() as f64;
        let spread = variance.sqrt();
        eprintln!(
            "row {i}: max {max} min {min} (flat would be {}), logit std {spread:.3}",
            1.0 / row.len() as f32
        );
        assert!((0.3..4.0).contains(&spread), "row {i}: logit std {spread}");
        assert!(max < 0.9, "row {i} is nearly one-hot: max {max}");
        assert!(
            max > 1.2 / row.len() as f32,
            "row {i} is nearly flat: max {max}"
        );
    }
    for i in 1..rows.len() {
        let diff = rows[0]
            .iter()
            .zip(&rows[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!("row 0 vs row {i}: max difference {diff}");
        assert!(
            diff > 1e-5,
            "rows 0 and {i} are the same for different images"
        );
    }
}

#[test]
fn cifar10_runs_in_tract() {
    let built = build(ZooModel::Cifar10, 42);
    check_rows(&run(&built, 2, 1));
}

#[test]
fn inception_v3_counts() {
    let built = inception();
    eprintln!(
        "inception: {} parameters, {} multiply-adds, {} bytes",
        built.parameters,
        built.multiply_adds,
        built.onnx.len()
    );
    assert_eq!(built.parameters, 23_819_401);
    assert!(
        (5.6e9..5.8e9).contains(&(built.multiply_adds as f64)),
        "{}",
        built.multiply_adds
    );
}

#[test]
fn inception_v3_is_deterministic() {
    let again = build(ZooModel::InceptionV3, 42);
    assert!(again.onnx == inception().onnx, "same seed, different bytes");
}

#[test]
fn inception_v3_runs_in_tract() {
    check_rows(&run(inception(), 2, 2));
}
