"""The Criteo click-through logistic regression as a TensorFlow user builds it from Spindle's
`features.toml`, with TensorFlow's own feature ops on raw TSV rows:

- columns read by `tf.io.decode_csv` (tab-delimited, every field a string; an empty field is "");
- integers: `tf.strings.to_number` then `tf.raw_ops.Bucketize` over the feature's boundaries (the
  op behind feature columns' `bucketized_column`); Spindle's ids are those buckets offset by one,
  with 0 for a missing value;
- categoricals: `tf.strings.to_hash_bucket_fast` (FarmHash Fingerprint64 modulo the buckets), with
  the extra id `hash_buckets` for a missing value;
- crosses: `tf.sparse.cross_hashed` over the crossed columns as they are: the strings decode_csv
  read ("" when missing) and the integers' bucket ids;
- every feature's ids offset into one shared id space, in features.toml's order.

The model is the graph after that id lookup: ids INT64 [None, F] -> gather one weight per id ->
sum -> + bias -> sigmoid -> `ctr` [None, 1]. It trains a few Adam steps on labelled rows (weights
start random, so every id carries its own weight and a wrong id shows in the output), and
exports a SavedModel whose `serving_default` takes the ids. `spindle import tf --features` turns
it into a version that serves raw rows through Spindle's transform.

    python criteo_tf.py FEATURES_TOML ROWS_FILE EXPORT_DIR
"""
import sys
import tomllib

import numpy as np
import tensorflow as tf

INTEGERS = 13
CATEGORICALS = 26


class FeatureOps:
    """features.toml as TensorFlow ops: raw rows in, ids out."""

    def __init__(self, spec):
        self.spec = spec
        for f in spec["integer"]:
            # Bucketize takes float32 boundaries: an integer beyond 2^24 would move.
            if any(abs(b) > 2 ** 24 for b in f["boundaries"]):
                raise ValueError(f"{f['name']}: boundaries beyond 2^24 are not exact in "
                                 f"Bucketize's float32 boundaries")
        sizes = ([len(f["boundaries"]) + 2 for f in spec["integer"]]
                 + [f["hash_buckets"] + 1 for f in spec["categorical"]]
                 + [c["hash_buckets"] for c in spec.get("cross", [])])
        self.offsets = np.cumsum([0] + sizes[:-1]).astype(np.int64)
        self.id_space = int(sum(sizes))
        assert self.id_space == spec["id_space"], (self.id_space, spec["id_space"])
        self.fields = len(sizes)
        names = [f["name"] for f in spec["integer"]] + [f["name"] for f in spec["categorical"]]
        self.index = {name: i for i, name in enumerate(names)}

    def local_ids(self, rows, labelled):
        """Each feature's own id (before the offsets): INT64 [N, F]."""
        columns = tf.io.decode_csv(rows, record_defaults=[[""]] * (INTEGERS + CATEGORICALS
                                                                   + int(labelled)),
                                   field_delim="\t", use_quote_delim=False)
        if labelled:
            columns = columns[1:]
        integer_ids = []
        for i, feature in enumerate(self.spec["integer"]):
            text = columns[i]
            present = tf.not_equal(text, "")
            value = tf.strings.to_number(tf.where(present, text, "0"), out_type=tf.int64)
            bucket = tf.raw_ops.Bucketize(input=value,
                                          boundaries=[float(b) for b in feature["boundaries"]])
            integer_ids.append(tf.where(present, tf.cast(bucket, tf.int64) + 1, 0))
        categorical_ids = []
        for c, feature in enumerate(self.spec["categorical"]):
            text = columns[INTEGERS + c]
            buckets = feature["hash_buckets"]
            categorical_ids.append(tf.where(tf.equal(text, ""), tf.constant(buckets, tf.int64),
                                            tf.strings.to_hash_bucket_fast(text, buckets)))
        cross_ids = []
        for cross in self.spec.get("cross", []):
            parts = []
            for name in cross["features"]:
                i = self.index[name]
                parts.append(integer_ids[i] if i < INTEGERS else columns[i])
            crossed = tf.sparse.cross_hashed([tf.expand_dims(p, 1) for p in parts],
                                             num_buckets=cross["hash_buckets"])
            # Dense [N, 1] inputs: exactly one crossed value per row, in row order.
            tf.debugging.assert_equal(tf.shape(crossed.values)[0], tf.shape(rows)[0])
            cross_ids.append(crossed.values)
        return tf.stack(integer_ids + categorical_ids + cross_ids, axis=1)

    def ids(self, rows, labelled=False):
        """The model's input: every feature's id in the shared space, INT64 [N, F]."""
        return self.local_ids(rows, labelled) + tf.constant(self.offsets)[None, :]


class CriteoLogisticRegression(tf.Module):
    """One weight per id and a bias: the logistic regression over one-hot features."""

    def __init__(self, id_space, fields, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.weights = tf.Variable(rng.normal(0, 0.1, id_space).astype(np.float32))
        self.bias = tf.Variable(-3.0)
        self.serve = tf.function(
            lambda ids: {"ctr": self.probability(ids)},
            input_signature=[tf.TensorSpec([None, fields], tf.int64, name="ids")])

    def logit(self, ids):
        return tf.reduce_sum(tf.gather(self.weights, ids), axis=1, keepdims=True) + self.bias

    def probability(self, ids):
        return tf.sigmoid(self.logit(ids))


def train(spec_path, rows, steps=20, batch=256, seed=0):
    """Trains on labelled TSV rows (bytes, one per line) with TensorFlow's feature ops: returns
    (FeatureOps, model)."""
    with open(spec_path, "rb") as f:
        features = FeatureOps(tomllib.load(f))
    labels = np.array([int(r.split(b"\t", 1)[0]) for r in rows], np.float32)[:, None]
    model = CriteoLogisticRegression(features.id_space, features.fields, seed)
    optimizer = tf.keras.optimizers.Adam(0.05)
    rng = np.random.default_rng(seed)
    rows = np.array(rows, dtype=object)
    for _ in range(steps):
        pick = rng.integers(0, len(rows), batch)
        ids = features.ids(tf.constant(rows[pick]), labelled=True)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=labels[pick], logits=model.logit(ids)))
        optimizer.apply_gradients(zip(tape.gradient(loss, [model.weights, model.bias]),
                                      [model.weights, model.bias]))
    return features, model


def export(model, export_dir):
    tf.saved_model.save(model, export_dir, signatures={"serving_default": model.serve})
    return export_dir


def ids_echo_onnx(path, fields):
    """An ONNX model that answers its INT64 [N, F] `ids` input unchanged as `echo`: served with
    criteo_rows, it shows the ids Spindle's transform made of the rows sent."""
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["echo"])], "ids_echo",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", fields])],
        [helper.make_tensor_value_info("echo", TensorProto.INT64, ["batch", fields])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


if __name__ == "__main__":
    spec_path, rows_path, export_dir = sys.argv[1:4]
    with open(rows_path, "rb") as f:
        _, trained = train(spec_path, f.read().splitlines())
    print(export(trained, export_dir))
