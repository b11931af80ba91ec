//! Inception v3 (Szegedy et al. 2015) as TF-slim and Keras define it, without the auxiliary
//! head, at 299x299 and 1001 classes (index 0 is "background", the TF-slim convention).
//!
//! Batch norm is folded into the convolutions, so each convolution has weights and a bias (BN's
//! beta); dropout is left out since it is the identity at inference. Block names follow TF-slim
//! (`Mixed_5b` ... `Mixed_7c`); Keras calls the same blocks `mixed0` ... `mixed10`.

use crate::builder::{Finished, GraphBuilder, Padding, Value};

/// Per-image input shape, NHWC without the batch axis.
pub const INPUT_SHAPE: [usize; 3] = [299, 299, 3];

/// Number of classes, background included.
pub const CLASSES: usize = 1001;

/// Biases start slightly positive so that every ReLU passes something at first.
const BIAS: f32 = 0.01;

/// Gain on He-normal for the convolutions. At 1, conv + ReLU layers keep the mean square of
/// their activations level; without batch norm the max-pools still raise it, but the features
/// the classifier sees end with a mean square near 5 (see [`LOGITS_GAIN`]), far from any f32
/// limit, so no damping is needed.
const CONV_GAIN: f32 = 1.0;

/// Gain on the classifier's He-normal weights. The pooled features' mean square is about 5
/// (unit-variance inputs), so gain 1 would give logits a standard deviation near 3.1, spread
/// over some 20 units across the 1001 classes; at 0.5 it is about 1.6 (measured in
/// `tests/forward.rs`).
const LOGITS_GAIN: f32 = 0.5;

/// Builds the graph from `seed`; input `images`, output `probabilities`.
pub fn build(seed: u64) -> Finished {
    let mut g = GraphBuilder::new(seed, BIAS, CONV_GAIN);
    let images = g.input("images", &INPUT_SHAPE);
    let x = g.transpose("to_nchw", &images, &[0, 3, 1, 2]);

    // Stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35.
    let x = conv(&mut g, "Conv2d_1a_3x3", &x, 32, [3, 3], 2, Padding::Valid);
    let x = conv(&mut g, "Conv2d_2a_3x3", &x, 32, [3, 3], 1, Padding::Valid);
    let x = conv(&mut g, "Conv2d_2b_3x3", &x, 64, [3, 3], 1, Padding::Same);
    let x = g.max_pool("MaxPool_3a_3x3", &x, 3, 2, Padding::Valid);
    let x = conv(&mut g, "Conv2d_3b_1x1", &x, 80, [1, 1], 1, Padding::Valid);
    let x = conv(&mut g, "Conv2d_4a_3x3", &x, 192, [3, 3], 1, Padding::Valid);
    let x = g.max_pool("MaxPool_5a_3x3", &x, 3, 2, Padding::Valid);

    // 35x35: 256, 288, 288 channels.
    let x = block_35(&mut g, "Mixed_5b", &x, 32);
    let x = block_35(&mut g, "Mixed_5c", &x, 64);
    let x = block_35(&mut g, "Mixed_5d", &x, 64);
    // 17x17: 768 channels.
    let x = reduce_35_to_17(&mut g, "Mixed_6a", &x);
    let x = block_17(&mut g, "Mixed_6b", &x, 128);
    let x = block_17(&mut g, "Mixed_6c", &x, 160);
    let x = block_17(&mut g, "Mixed_6d", &x, 160);
    let x = block_17(&mut g, "Mixed_6e", &x, 192);
    // 8x8: 1280, then 2048 channels.
    let x = reduce_17_to_8(&mut g, "Mixed_7a", &x);
    let x = block_8(&mut g, "Mixed_7b", &x);
    let x = block_8(&mut g, "Mixed_7c", &x);
    assert_eq!(x.shape, [2048, 8, 8]);

    let x = g.global_avg_pool("AvgPool", &x);
    let x = g.flatten("PreLogits", &x);
    let logits = g.dense("Logits", &x, CLASSES, LOGITS_GAIN);
    let probabilities = g.softmax("probabilities", &logits);
    g.finish(
        "inception_v3",
        "Inception v3 (no aux head, BN folded) with seeded random weights (spindle-zoo).",
        &[&probabilities],
    )
}

/// Convolution + bias + ReLU; `kernel` is `[height, width]`.
fn conv(
    g: &mut GraphBuilder,
    name: &str,
    x: &Value,
    filters: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: Padding,
) -> Value {
    g.conv_relu(name, x, filters, kernel, stride, padding)
}

/// A stride-1 SAME convolution, what every branch inside a block uses.
fn same(g: &mut GraphBuilder, name: &str, x: &Value, filters: usize, kernel: [usize; 2]) -> Value {
    conv(g, name, x, filters, kernel, 1, Padding::Same)
}

/// Mixed_5b/c/d: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1.
fn block_35(g: &mut GraphBuilder, name: &str, x: &Value, pool_filters: usize) -> Value {
    let b0 = same(g, &format!("{name}/Branch_0/Conv2d_0a_1x1"), x, 64, [1, 1]);

    let b1 = same(g, &format!("{name}/Branch_1/Conv2d_0a_1x1"), x, 48, [1, 1]);
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0b_5x5"),
        &b1,
        64,
        [5, 5],
    );

    let b2 = same(g, &format!("{name}/Branch_2/Conv2d_0a_1x1"), x, 64, [1, 1]);
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0b_3x3"),
        &b2,
        96,
        [3, 3],
    );
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0c_3x3"),
        &b2,
        96,
        [3, 3],
    );

    let b3 = g.avg_pool(
        &format!("{name}/Branch_3/AvgPool_0a_3x3"),
        x,
        3,
        1,
        Padding::Same,
    );
    let b3 = same(
        g,
        &format!("{name}/Branch_3/Conv2d_0b_1x1"),
        &b3,
        pool_filters,
        [1, 1],
    );

    g.concat(name, &[&b0, &b1, &b2, &b3])
}

/// Mixed_6a: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2.
fn reduce_35_to_17(g: &mut GraphBuilder, name: &str, x: &Value) -> Value {
    let b0 = conv(
        g,
        &format!("{name}/Branch_0/Conv2d_1a_3x3"),
        x,
        384,
        [3, 3],
        2,
        Padding::Valid,
    );

    let b1 = same(g, &format!("{name}/Branch_1/Conv2d_0a_1x1"), x, 64, [1, 1]);
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0b_3x3"),
        &b1,
        96,
        [3, 3],
    );
    let b1 = conv(
        g,
        &format!("{name}/Branch_1/Conv2d_1a_3x3"),
        &b1,
        96,
        [3, 3],
        2,
        Padding::Valid,
    );

    let b2 = g.max_pool(
        &format!("{name}/Branch_2/MaxPool_1a_3x3"),
        x,
        3,
        2,
        Padding::Valid,
    );

    g.concat(name, &[&b0, &b1, &b2])
}

/// Mixed_6b-e: 1x1 | 1x1 -> 1x7 -> 7x1 | 1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg-pool -> 1x1,
/// with `width` channels inside the factorised 7x7 branches.
fn block_17(g: &mut GraphBuilder, name: &str, x: &Value, width: usize) -> Value {
    let b0 = same(g, &format!("{name}/Branch_0/Conv2d_0a_1x1"), x, 192, [1, 1]);

    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0a_1x1"),
        x,
        width,
        [1, 1],
    );
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0b_1x7"),
        &b1,
        width,
        [1, 7],
    );
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0c_7x1"),
        &b1,
        192,
        [7, 1],
    );

    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0a_1x1"),
        x,
        width,
        [1, 1],
    );
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0b_7x1"),
        &b2,
        width,
        [7, 1],
    );
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0c_1x7"),
        &b2,
        width,
        [1, 7],
    );
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0d_7x1"),
        &b2,
        width,
        [7, 1],
    );
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0e_1x7"),
        &b2,
        192,
        [1, 7],
    );

    let b3 = g.avg_pool(
        &format!("{name}/Branch_3/AvgPool_0a_3x3"),
        x,
        3,
        1,
        Padding::Same,
    );
    let b3 = same(
        g,
        &format!("{name}/Branch_3/Conv2d_0b_1x1"),
        &b3,
        192,
        [1, 1],
    );

    g.concat(name, &[&b0, &b1, &b2, &b3])
}

/// Mixed_7a: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool 3x3/2.
fn reduce_17_to_8(g: &mut GraphBuilder, name: &str, x: &Value) -> Value {
    let b0 = same(g, &format!("{name}/Branch_0/Conv2d_0a_1x1"), x, 192, [1, 1]);
    let b0 = conv(
        g,
        &format!("{name}/Branch_0/Conv2d_1a_3x3"),
        &b0,
        320,
        [3, 3],
        2,
        Padding::Valid,
    );

    let b1 = same(g, &format!("{name}/Branch_1/Conv2d_0a_1x1"), x, 192, [1, 1]);
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0b_1x7"),
        &b1,
        192,
        [1, 7],
    );
    let b1 = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0c_7x1"),
        &b1,
        192,
        [7, 1],
    );
    let b1 = conv(
        g,
        &format!("{name}/Branch_1/Conv2d_1a_3x3"),
        &b1,
        192,
        [3, 3],
        2,
        Padding::Valid,
    );

    let b2 = g.max_pool(
        &format!("{name}/Branch_2/MaxPool_1a_3x3"),
        x,
        3,
        2,
        Padding::Valid,
    );

    g.concat(name, &[&b0, &b1, &b2])
}

/// Mixed_7b/c: 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | avg-pool -> 1x1.
fn block_8(g: &mut GraphBuilder, name: &str, x: &Value) -> Value {
    let b0 = same(g, &format!("{name}/Branch_0/Conv2d_0a_1x1"), x, 320, [1, 1]);

    let b1 = same(g, &format!("{name}/Branch_1/Conv2d_0a_1x1"), x, 384, [1, 1]);
    let b1a = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0b_1x3"),
        &b1,
        384,
        [1, 3],
    );
    let b1b = same(
        g,
        &format!("{name}/Branch_1/Conv2d_0c_3x1"),
        &b1,
        384,
        [3, 1],
    );
    let b1 = g.concat(&format!("{name}/Branch_1/concat"), &[&b1a, &b1b]);

    let b2 = same(g, &format!("{name}/Branch_2/Conv2d_0a_1x1"), x, 448, [1, 1]);
    let b2 = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0b_3x3"),
        &b2,
        384,
        [3, 3],
    );
    let b2a = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0c_1x3"),
        &b2,
        384,
        [1, 3],
    );
    let b2b = same(
        g,
        &format!("{name}/Branch_2/Conv2d_0d_3x1"),
        &b2,
        384,
        [3, 1],
    );
    let b2 = g.concat(&format!("{name}/Branch_2/concat"), &[&b2a, &b2b]);

    let b3 = g.avg_pool(
        &format!("{name}/Branch_3/AvgPool_0a_3x3"),
        x,
        3,
        1,
        Padding::Same,
    );
    let b3 = same(
        g,
        &format!("{name}/Branch_3/Conv2d_0b_1x1"),
        &b3,
        192,
        [1, 1],
    );

    g.concat(name, &[&b0, &b1, &b2, &b3])
}
