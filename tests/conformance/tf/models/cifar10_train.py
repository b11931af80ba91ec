"""The TensorFlow CIFAR-10 tutorial CNN (tensorflow/models tutorials/image/cifar10: cifar10.py's
inference() and train(), cifar10_train.py's loop), trained on synthetic data and written as a TF1
checkpoint the way cifar10_train.py writes it: a tf.compat.v1 graph, MonitoredTrainingSession
saving `model.ckpt-N` (.meta, .index, .data-*) and the `checkpoint` file into train_dir.

What differs from the tutorial, and why: images come from a placeholder `images` [None, 24, 24, 3]
instead of the input queue (a served model needs a fed input; the tutorial's own eval graph feeds
24x24 crops), local3 reshapes to [-1, dim] instead of the fixed batch size, and the data is
synthetic (no downloads here): each image's class is which of ten fixed colour patterns it is
closest to, so a few hundred steps learn something.

    python cifar10_train.py TRAIN_DIR [STEPS]

Prints the checkpoint prefix. The served tensors: input `images`, output
`softmax_linear/softmax_linear` (the logits, as the tutorial names them).
"""
import sys

import numpy as np
import tensorflow as tf

v1 = tf.compat.v1
IMAGE_SIZE = 24
NUM_CLASSES = 10
BATCH_SIZE = 32
INITIAL_LEARNING_RATE = 0.1
LEARNING_RATE_DECAY_FACTOR = 0.1
NUM_EPOCHS_PER_DECAY = 350.0
MOVING_AVERAGE_DECAY = 0.9999
EXAMPLES_PER_EPOCH = 50000


def _variable_with_weight_decay(name, shape, stddev, wd):
    var = v1.get_variable(name, shape, initializer=v1.truncated_normal_initializer(stddev=stddev),
                          dtype=tf.float32)
    if wd is not None:
        v1.add_to_collection("losses", tf.multiply(tf.nn.l2_loss(var), wd, name="weight_loss"))
    return var


def _bias(name, shape, value):
    return v1.get_variable(name, shape, initializer=v1.constant_initializer(value))


def inference(images):
    """cifar10.py's inference(): conv1, pool1, norm1, conv2, norm2, pool2, local3, local4,
    softmax_linear."""
    with v1.variable_scope("conv1") as scope:
        kernel = _variable_with_weight_decay("weights", [5, 5, 3, 64], 5e-2, None)
        conv = tf.nn.conv2d(images, kernel, [1, 1, 1, 1], padding="SAME")
        conv1 = tf.nn.relu(tf.nn.bias_add(conv, _bias("biases", [64], 0.0)), name=scope.name)
    pool1 = tf.nn.max_pool2d(conv1, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME",
                             name="pool1")
    norm1 = tf.nn.lrn(pool1, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, name="norm1")
    with v1.variable_scope("conv2") as scope:
        kernel = _variable_with_weight_decay("weights", [5, 5, 64, 64], 5e-2, None)
        conv = tf.nn.conv2d(norm1, kernel, [1, 1, 1, 1], padding="SAME")
        conv2 = tf.nn.relu(tf.nn.bias_add(conv, _bias("biases", [64], 0.1)), name=scope.name)
    norm2 = tf.nn.lrn(conv2, 4, bias=1.0, alpha=0.001 / 9.0, beta=0.75, name="norm2")
    pool2 = tf.nn.max_pool2d(norm2, ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME",
                             name="pool2")
    with v1.variable_scope("local3") as scope:
        dim = int(np.prod(pool2.get_shape().as_list()[1:]))
        reshape = tf.reshape(pool2, [-1, dim])
        weights = _variable_with_weight_decay("weights", [dim, 384], 0.04, 0.004)
        local3 = tf.nn.relu(tf.matmul(reshape, weights) + _bias("biases", [384], 0.1),
                            name=scope.name)
    with v1.variable_scope("local4") as scope:
        weights = _variable_with_weight_decay("weights", [384, 192], 0.04, 0.004)
        local4 = tf.nn.relu(tf.matmul(local3, weights) + _bias("biases", [192], 0.1),
                            name=scope.name)
    with v1.variable_scope("softmax_linear") as scope:
        weights = _variable_with_weight_decay("weights", [192, NUM_CLASSES], 1 / 192.0, None)
        softmax_linear = tf.add(tf.matmul(local4, weights), _bias("biases", [NUM_CLASSES], 0.0),
                                name=scope.name)
    return softmax_linear


def loss(logits, labels):
    cross_entropy = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
        name="cross_entropy")
    v1.add_to_collection("losses", cross_entropy)
    return tf.add_n(v1.get_collection("losses"), name="total_loss")


def train_op(total_loss, global_step):
    """cifar10.py's train(): exponentially decayed SGD, then the moving averages of the
    variables (which the tutorial's eval restores; the served graph uses the trained ones)."""
    decay_steps = int(EXAMPLES_PER_EPOCH / BATCH_SIZE * NUM_EPOCHS_PER_DECAY)
    lr = v1.train.exponential_decay(INITIAL_LEARNING_RATE, global_step, decay_steps,
                                    LEARNING_RATE_DECAY_FACTOR, staircase=True)
    apply = v1.train.GradientDescentOptimizer(lr).minimize(total_loss, global_step=global_step)
    averages = v1.train.ExponentialMovingAverage(MOVING_AVERAGE_DECAY, global_step)
    with tf.control_dependencies([apply]):
        return averages.apply(v1.trainable_variables())


def synthetic_batch(rng, patterns, size):
    labels = rng.integers(0, NUM_CLASSES, size)
    images = patterns[labels] + rng.normal(0.0, 0.5, (size, IMAGE_SIZE, IMAGE_SIZE, 3))
    return images.astype(np.float32), labels.astype(np.int32)


def train(train_dir, steps=300, seed=0):
    """Trains for `steps` and returns the checkpoint prefix written last."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0.0, 1.0, (NUM_CLASSES, 1, 1, 3)).repeat(IMAGE_SIZE, 1).repeat(
        IMAGE_SIZE, 2)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        global_step = v1.train.get_or_create_global_step()
        images = v1.placeholder(tf.float32, [None, IMAGE_SIZE, IMAGE_SIZE, 3], name="images")
        labels = v1.placeholder(tf.int32, [None], name="labels")
        logits = inference(images)
        total_loss = loss(logits, labels)
        op = train_op(total_loss, global_step)
        with v1.train.MonitoredTrainingSession(
                checkpoint_dir=train_dir,
                hooks=[v1.train.StopAtStepHook(last_step=steps)],
                save_checkpoint_steps=max(steps // 2, 1),
                save_summaries_steps=None, save_summaries_secs=None,
                log_step_count_steps=None) as session:
            while not session.should_stop():
                x, y = synthetic_batch(rng, patterns, BATCH_SIZE)
                session.run(op, {images: x, labels: y})
    return tf.train.latest_checkpoint(train_dir)


if __name__ == "__main__":
    print(train(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300))
