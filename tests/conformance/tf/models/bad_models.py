"""Small SavedModels that `spindle import tf` must refuse, each for one reason a user meets:

- no_batch: a signature whose input has a fixed first dimension ([3, 4]);
- unsupported_op: a signature using an op tf2onnx 1.17 cannot convert (tf.math.igamma);
- good: a batched dense layer (for the wrong-signature and wrong-flag cases).

    python bad_models.py OUT_DIR      writes OUT_DIR/{no_batch,unsupported_op,good}
"""
import os
import sys

import tensorflow as tf


class Dense(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[1, 2]))


def export(out_dir):
    paths = {}

    def save(name, module, fn):
        path = os.path.join(out_dir, name)
        tf.saved_model.save(module, path, signatures={"serving_default": fn})
        paths[name] = path

    fixed = Dense()
    save("no_batch", fixed, tf.function(
        lambda x: {"y": tf.matmul(x, fixed.w)},
        input_signature=[tf.TensorSpec([3, 4], tf.float32, name="x")]))
    odd = Dense()
    save("unsupported_op", odd, tf.function(
        lambda x: {"y": tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0)},
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")]))
    good = Dense()
    save("good", good, tf.function(
        lambda x: {"y": tf.matmul(x, good.w)},
        input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")]))
    return paths


if __name__ == "__main__":
    print(export(sys.argv[1]))
