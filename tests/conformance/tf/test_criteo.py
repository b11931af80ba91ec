"""The Criteo logistic regression built with TensorFlow's own feature ops (models/criteo_tf.py:
decode_csv, Bucketize, to_hash_bucket_fast, sparse.cross_hashed) from the features.toml Spindle
uses (`spindle data criteo` writes it beside its rows), trained a few steps in TensorFlow on
Spindle's generated rows, exported as the graph after the id lookup and imported with
`spindle import tf --features`, so the server takes raw TSV rows.

(a) Spindle's transform gives exactly TensorFlow's ids (categoricals, integer buckets offset by
    one, crosses) on generated rows and on rows of empty fields and edge values: seen through a
    model that answers its ids unchanged, served on raw rows beside the imported one.
(b) The imported model served on raw rows answers as TensorFlow does end to end (TensorFlow doing
    its own feature ops on the same rows) within 1e-6, over KServe v2 HTTP (JSON and binary),
    KServe v2 gRPC, TF Serving REST and TF Serving gRPC.

Time on 2 shared cores: TensorFlow's start (5-25 s) and 20 training steps, then the import (a
second TensorFlow start, tf2onnx, verification) while this process computes TensorFlow's side.
"""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import harness

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))

import criteo_tf  # noqa: E402

TOLERANCE = 1e-6
MODEL, ECHO = "criteo_tf", "criteo_ids"


def edge_rows():
    """Unlabelled rows of empty fields and edge values, every one of which Spindle accepts."""
    tokens = ["68fd1e64", "80e26c9b", "FB936136", "00000000", "ffffffff", "7e0ccccf", "de7995b8",
              "1f89b562", "a73ee510", "a8cd5504", "b2cb9c98", "37c9c164", "2824a5f6", "1adce6ef",
              "8ba8b39a", "891b62e7", "e5ba7672", "f54016b9", "21ddcdc9", "b1252a9d", "07b5194c",
              "0b153874", "3a171ecb", "c5c50484", "e8b83407", "9727dd16"]
    rows = ["\t" * 38]  # every field empty
    # Each integer exactly on, just below and just above boundaries, negative, zero, extremes,
    # and the spellings TensorFlow's to_number takes (+5, surrounding spaces, leading zeros).
    values = ["-1", "0", "1", "2", "3", "4", "5", "6", "7", "8", "15", "16", "65535", "65536",
              "65537", "-9223372036854775808", "9223372036854775807", "-0", "007", "+5", " 9",
              "12 ", "123456789012345678", "-65536", "4096", "32767"]
    for k in range(0, len(values), 13):
        ints = (values[k:k + 13] + ["1"] * 13)[:13]
        rows.append("\t".join(ints + tokens))
    # Missing values in every crossed column, one at a time and all together (C1 x C2, C5 x C9,
    # I1 x C6 in the default spec), and tokens alone with every integer missing.
    for missing in ([0], [1], [0, 1], [4], [8], [5], [4, 5, 8]):
        cats = [("" if c in missing else t) for c, t in enumerate(tokens)]
        rows.append("\t".join(["", "3"] + ["1"] * 11 + cats))
    rows.append("\t".join([""] * 13 + tokens))
    rows.append("\t".join(["2"] * 13 + [""] * 26))
    return rows


def as_bytes(rows):
    """Rows as a BYTES tensor for the harness's KServe v2 helpers."""
    value = np.empty(len(rows), dtype=object)
    value[:] = rows
    return value


def only(outputs):
    """The lone output of a model's answer ({name: array})."""
    (value,) = outputs.values()
    return value


def tfserving_grpc_rows(grpc_addr, model, rows):
    """Raw rows as a DT_STRING TensorProto over TF Serving's gRPC Predict (the
    tensorflow-serving-api client); returns the output `ctr`."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["ids"].CopyFrom(tf.make_tensor_proto(rows, dtype=tf.string))
    with grpc.insecure_channel(grpc_addr) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=120)
    return tf.make_ndarray(response.outputs["ctr"])


class CriteoFromTensorFlow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import tensorflow as tf
        cls.work = tempfile.TemporaryDirectory(prefix="spindle-criteo-tf-")
        work = cls.work.name
        data = os.path.join(work, "data")
        harness.spindle("data", "criteo", "--out", data, "--rows-per-day", 3000, "--seed", 7)
        cls.features_path = os.path.join(data, "features.toml")
        with open(os.path.join(data, "day_0", "part-00000"), "rb") as f:
            labelled = f.read().splitlines()
        features, model = criteo_tf.train(cls.features_path, labelled[:2500])
        export_dir = criteo_tf.export(model, os.path.join(work, "export"))

        # The import (its own TensorFlow, tf2onnx, the verification) runs while this process
        # works out TensorFlow's side.
        cls.repo = os.path.join(work, "repo")
        importer = subprocess.Popen(
            [harness.spindle_bin(), "import", "tf", "--python", sys.executable, "--saved-model",
             export_dir, "--repo", cls.repo, "--model", MODEL, "--features", cls.features_path],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # Held-out generated rows, labelled and not, and the edge rows.
            held_out = labelled[2500:2540]
            cls.groups = {
                "generated, labelled": (held_out[:20], True),
                "generated, unlabelled": ([r.split(b"\t", 1)[1] for r in held_out[20:]], False),
                "empty fields and edge values": ([r.encode() for r in edge_rows()], False),
            }
            cls.tf_local_ids, cls.tf_ids, cls.tf_ctr = {}, {}, {}
            for group, (rows, has_label) in cls.groups.items():
                batch = tf.constant(rows)
                cls.tf_local_ids[group] = features.local_ids(batch, has_label).numpy()
                ids = features.ids(batch, has_label)
                cls.tf_ids[group] = ids.numpy()
                cls.tf_ctr[group] = model.probability(ids).numpy().astype(np.float64)
            cls.offsets = features.offsets
            stdout, stderr = importer.communicate(timeout=600)
        finally:
            if importer.poll() is None:
                importer.kill()
                importer.wait()
        if importer.returncode != 0:
            raise AssertionError(f"spindle import tf exited {importer.returncode}:\n{stderr}")
        cls.import_stdout, cls.import_stderr = stdout, stderr

        # The ids echo: an INT64 identity served with the same features.toml on raw rows.
        echo_onnx = criteo_tf.ids_echo_onnx(os.path.join(work, "echo.onnx"), features.fields)
        echo_config = os.path.join(work, "echo.toml")
        with open(echo_config, "w") as f:
            f.write(f'name = "{ECHO}"\nmax_batch_size = 64\n\n'
                    f'[[inputs]]\nname = "ids"\ndtype = "INT64"\ndims = [-1, {features.fields}]\n'
                    f'preprocess = "criteo_rows"\n\n'
                    f'[[outputs]]\nname = "echo"\ndtype = "INT64"\n'
                    f'dims = [-1, {features.fields}]\n')
        harness.spindle("repo", "publish", cls.repo, ECHO, echo_onnx, "--config", echo_config,
                        "--features", cls.features_path)
        cls.server = harness.Server(cls.repo).__enter__()

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "server", None):
            cls.server.__exit__(None, None, None)
        cls.work.cleanup()

    def test_the_import_carries_features_toml_and_serves_raw_rows(self):
        self.assertEqual(self.import_stdout.strip(), os.path.join(self.repo, MODEL, "1"))
        self.assertIn("output 'ctr' max |TensorFlow - ", self.import_stderr)
        with open(self.features_path) as f, \
                open(os.path.join(self.repo, MODEL, "1", "features.toml")) as g:
            self.assertEqual(g.read(), f.read())
        with open(os.path.join(self.repo, MODEL, "config.toml")) as f:
            config = f.read()
        self.assertIn('preprocess = "criteo_rows"', config)
        self.assertIn("dims = [-1, 42]", config)

    def test_spindle_transform_gives_tensorflows_ids(self):
        kinds = [("integer (bucket + 1, 0 when missing)", slice(0, 13)),
                 ("categorical", slice(13, 39)), ("cross", slice(39, None))]
        for group, (rows, _) in self.groups.items():
            with self.subTest(group=group):
                got = only(harness.http_v2_infer(self.server.http, ECHO, [("ids", as_bytes(rows))]))
                expected = self.tf_ids[group]
                self.assertEqual(got.shape, expected.shape)
                for kind, columns in kinds:
                    wrong = np.argwhere(got[:, columns] != expected[:, columns])
                    if len(wrong):
                        r, c = wrong[0]
                        c += columns.start
                        self.fail(f"{kind} ids differ from TensorFlow's in {len(wrong)} places; "
                                  f"first: row {r} {rows[r]!r} position {c}: spindle "
                                  f"{got[r, c] - self.offsets[c]}, tensorflow "
                                  f"{self.tf_local_ids[group][r, c]} (before the offset "
                                  f"{self.offsets[c]})")
        # The rows did exercise what the test is about: missing values in every kind, and ids
        # beyond the first buckets.
        edge = self.tf_local_ids["empty fields and edge values"]
        self.assertTrue((edge[:, :13] == 0).any() and (edge[:, :13] == 21).any())
        self.assertTrue((edge[:, 13:39] == self.offsets[14:40] - self.offsets[13:39] - 1).any())

    def test_raw_rows_answer_as_tensorflow_over_every_protocol(self):
        for group, (rows, _) in self.groups.items():
            expected = self.tf_ctr[group]
            inputs = [("ids", as_bytes(rows))]
            http, grpc = self.server.http, self.server.grpc
            answers = {
                "HTTP v2 JSON": lambda: harness.http_v2_infer(http, MODEL, inputs),
                "HTTP v2 binary": lambda: harness.http_v2_infer(http, MODEL, inputs, binary=True),
                "gRPC v2": lambda: harness.grpc_v2_infer(grpc, MODEL, inputs),
                "TF REST": lambda: harness.tf_rest_predict(
                    http, MODEL, [("ids", np.array([r.decode() for r in rows]))]),
                "TF Serving gRPC": lambda: {"ctr": tfserving_grpc_rows(grpc, MODEL, rows)},
            }
            for protocol, ask in answers.items():
                with self.subTest(group=group, protocol=protocol):
                    got = np.asarray(only(ask()), dtype=np.float64)
                    self.assertEqual(got.shape, expected.shape)
                    diff = float(np.max(np.abs(got - expected)))
                    print(f"{MODEL} {group} {protocol}: max |spindle - tensorflow| = {diff:.3e}")
                    self.assertLess(diff, TOLERANCE, f"{protocol} differs by {diff}")
        # Different rows get different answers: the comparison is not of constants.
        self.assertGreater(np.ptp(self.tf_ctr["generated, unlabelled"]), 1e-3)


if __name__ == "__main__":
    unittest.main()
