//! The TensorFlow CIFAR-10 tutorial CNN (`cifar10.inference`), on 24x24 crops.
//!
//! conv 5x5x64, max-pool 3x3/2, LRN, conv 5x5x64, LRN, max-pool 3x3/2, then dense 384, 192
//! and 10, and a softmax. The graph takes and flattens NHWC tensors exactly as TF does, so a
//! checkpoint of the tutorial's weights would drop in (after reordering conv kernels to OIHW).

use crate::builder::{Finished, GraphBuilder, Padding};

/// Per-image input shape, NHWC without the batch axis.
pub const INPUT_SHAPE: [usize; 3] = [24, 24, 3];

/// Number of classes.
pub const CLASSES: usize = 10;

/// The class names, in output order.
pub const LABELS: [&str; CLASSES] = [
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

/// Biases start slightly positive so that every ReLU passes something at first.
const BIAS: f32 = 0.01;

/// Gain on the classifier's He-normal weights. The max-pools raise the activations' mean square
/// to about 4 by the last hidden layer (unit-variance inputs), so gain 1 would give logits a
/// standard deviation near 2.9 and a softmax close to one-hot; at 0.5 it is about 1.4 (measured
/// in `tests/forward.rs`).
const LOGITS_GAIN: f32 = 0.5;

/// Builds the graph from `seed`; input `images`, output `probabilities`.
pub fn build(seed: u64) -> Finished {
    let mut g = GraphBuilder::new(seed, BIAS, 1.0);
    let images = g.input("images", &INPUT_SHAPE);
    let x = g.transpose("to_nchw", &images, &[0, 3, 1, 2]);

    let x = g.conv_relu("conv1", &x, 64, [5, 5], 1, Padding::Same);
    let x = g.max_pool("pool1", &x, 3, 2, Padding::Same);
    let x = tf_lrn(&mut g, "norm1", &x);

    let x = g.conv_relu("conv2", &x, 64, [5, 5], 1, Padding::Same);
    let x = tf_lrn(&mut g, "norm2", &x);
    let x = g.max_pool("pool2", &x, 3, 2, Padding::Same);

    // Back to NHWC before flattening, so the 2304 features come in TF's order.
    let x = g.transpose("to_nhwc", &x, &[0, 2, 3, 1]);
    let x = g.flatten("flatten", &x);
    let x = g.dense("local3", &x, 384, 1.0);
    let x = g.relu("local3/relu", &x);
    let x = g.dense("local4", &x, 192, 1.0);
    let x = g.relu("local4/relu", &x);
    let logits = g.dense("logits", &x, CLASSES, LOGITS_GAIN);
    let probabilities = g.softmax("probabilities", &logits);
    g.finish(
        "cifar10",
        "TensorFlow CIFAR-10 tutorial CNN with seeded random weights (spindle-zoo).",
        &[&probabilities],
    )
}

/// TF's `lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75)`: TF sums 2*4+1 = 9 channels
/// and multiplies by alpha, ONNX multiplies by alpha/size, so ONNX's alpha is 0.001. See
/// [`GraphBuilder::lrn`] for why it is written with plain operators.
fn tf_lrn(g: &mut GraphBuilder, name: &str, x: &crate::builder::Value) -> crate::builder::Value {
    g.lrn(name, x, 9, 0.001, 0.75, 1.0)
}
