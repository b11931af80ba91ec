"""`spindle import tf` against TensorFlow itself: models trained or exported by TensorFlow programs
(models/), imported by the real binary, served by `spindle serve`, and asked through KServe v2
HTTP (JSON and binary), KServe v2 gRPC and TF Serving REST; every answer must be TensorFlow's own
within 1e-4. Then the refusals: each bad input gets a message that names it, and nothing is
published.

Time on 2 shared cores: the CIFAR-10 checkpoint trains 200 steps (~15 s) and imports in ~8 s;
Inception v3 exports (~25 s), converts and verifies (~60 s); each refusal costs one TensorFlow
start (~5 s).
"""
import os
import shutil
import sys
import tempfile
import unittest
import uuid

import numpy as np

import harness

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))

import bad_models  # noqa: E402
import cifar10_train  # noqa: E402
import inception_v3  # noqa: E402

TOLERANCE = 1e-4
PYTHON = sys.executable


def import_tf(*args, check=True):
    return harness.spindle("import", "tf", "--python", PYTHON, *args, check=check, timeout=900)


def assert_protocols_agree(test, server, model, input_name, batch, expected):
    """The same batch through HTTP v2 JSON and binary, gRPC v2 and TF REST: each within
    TOLERANCE of TensorFlow's `expected` (the model's only output)."""
    inputs = [(input_name, batch)]
    answers = {
        "HTTP v2 JSON": harness.http_v2_infer(server.http, model, inputs),
        "HTTP v2 binary": harness.http_v2_infer(server.http, model, inputs, binary=True),
        "gRPC v2": harness.grpc_v2_infer(server.grpc, model, inputs),
        "TF REST": harness.tf_rest_predict(server.http, model, inputs),
    }
    for protocol, outputs in answers.items():
        test.assertEqual(len(outputs), 1, f"{protocol}: {list(outputs)}")
        got = np.asarray(next(iter(outputs.values())), dtype=np.float64)
        test.assertEqual(got.shape, expected.shape, protocol)
        diff = float(np.max(np.abs(got - expected)))
        print(f"{model} {protocol}: max |spindle - tensorflow| = {diff:.3e}")
        test.assertLess(diff, TOLERANCE, f"{protocol} differs from TensorFlow by {diff}")


class ImportTf(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="spindle-import-tf-test-")
        cls._cifar10 = None

    def cifar10_checkpoint(self):
        """The CIFAR-10 tutorial CNN trained 200 steps: (train dir, checkpoint prefix), once."""
        if self._cifar10 is None:
            train_dir = os.path.join(self.work, "cifar10_train")
            type(self)._cifar10 = (train_dir, cifar10_train.train(train_dir, steps=200))
        return self._cifar10

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_cifar10_checkpoint_from_hdfs(self):
        """The tutorial CNN, trained and checkpointed as cifar10_train.py does, imported from
        HDFS into a repository on HDFS, served from there."""
        # The Hadoop 2.7.3 HDFS when the run has one: hdfs_put's FsShell is that version's.
        url = os.environ.get("SPINDLE_HDFS_URL") or harness.require_hdfs(self)
        train_dir, prefix = self.cifar10_checkpoint()
        self.assertTrue(prefix.endswith("model.ckpt-200"), prefix)
        base = f"/spindle-import-tf-{uuid.uuid4().hex[:8]}"
        harness.hdfs_put(train_dir, url, f"{base}/cifar10_train")
        repo = f"{url}{base}/models"
        proc = import_tf("--checkpoint", f"{url}{base}/cifar10_train", "--inputs", "images",
                         "--outputs", "logits=softmax_linear/softmax_linear", "--repo", repo,
                         "--model", "cifar10_tf", "--preprocess", "cifar10_image")
        self.assertEqual(proc.stdout.strip(), f"{repo}/cifar10_tf/1")
        self.assertIn("max |TensorFlow - ", proc.stderr)
        self.assertIn("published", proc.stderr)

        # TensorFlow's answer, from the checkpoint itself, on a batch the import never saw.
        batch = np.random.default_rng(7).normal(0, 1, (4, 24, 24, 3)).astype(np.float32)
        expected = checkpoint_logits(prefix, batch)
        with harness.Server(repo) as server:
            assert_protocols_agree(self, server, "cifar10_tf", "images", batch, expected)

    def test_cifar10_refused_above_tolerance(self):
        """The CIFAR-10 CNN converts to within ~1e-6, not within 1e-9: with --tolerance 1e-9
        the import prints the difference and publishes nothing."""
        train_dir, _ = self.cifar10_checkpoint()
        repo = os.path.join(self.work, "repo-tolerance")
        proc = import_tf("--checkpoint", train_dir, "--inputs", "images", "--outputs",
                         "logits=softmax_linear/softmax_linear", "--repo", repo, "--model",
                         "cifar10_tf", "--tolerance", "1e-9", check=False)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("output 'logits' max |TensorFlow - ", proc.stderr)
        self.assertIn("not published", proc.stderr)
        self.assertIn("> --tolerance 1e-9", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(repo, "cifar10_tf")))

    def test_inception_v3_saved_model(self):
        """keras.applications.InceptionV3(weights=None), exported as a SavedModel."""
        import tensorflow as tf
        export_dir = inception_v3.export(os.path.join(self.work, "inception_v3"))
        repo = os.path.join(self.work, "repo-inception")
        proc = import_tf("--saved-model", export_dir, "--repo", repo, "--model", "inception_tf",
                         "--preprocess", "inception_image", "--verify-batch", "1")
        self.assertEqual(proc.stdout.strip(), os.path.join(repo, "inception_tf", "1"))
        with open(os.path.join(repo, "inception_tf", "config.toml")) as f:
            config = f.read()
        self.assertIn("dims = [-1, 299, 299, 3]", config)
        self.assertIn('preprocess = "inception_image"', config)
        self.assertIn("dims = [-1, 1000]", config)

        loaded = tf.saved_model.load(export_dir)
        function = loaded.signatures["serving_default"]
        (input_name,) = function.structured_input_signature[1]
        batch = np.random.default_rng(3).uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
        expected = next(iter(function(**{input_name: tf.constant(batch)}).values())).numpy()
        with harness.Server(repo) as server:
            assert_protocols_agree(self, server, "inception_tf", input_name, batch, expected)

    def test_refusals_name_the_problem_and_publish_nothing(self):
        paths = bad_models.export(os.path.join(self.work, "bad"))
        repo = os.path.join(self.work, "repo-refused")
        cases = [
            (["--saved-model", paths["no_batch"]],
             ["input 'x' is of shape [3, 4]", "shape [None, ...]"]),
            (["--saved-model", paths["unsupported_op"]],
             ["cannot convert these TensorFlow ops", "Igamma"]),
            (["--saved-model", paths["good"], "--signature", "predict"],
             ["has no signature 'predict'", "it has: serving_default"]),
            (["--saved-model", os.path.join(self.work, "bad")],
             ["is not a SavedModel: it has no saved_model.pb", "good"]),
            (["--checkpoint", paths["good"], "--inputs", "x", "--outputs", "y"],
             ["is not a checkpoint directory", "use --saved-model"]),
            (["--saved-model", paths["good"], "--python", "/nonexistent/python3"],
             ["cannot run the Python", "pip install 'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0'"]),
            (["--saved-model", paths["good"], "--tolerance", "-1"],
             ["--tolerance -1: must be 0 or more"]),
        ]
        for args, expected in cases:
            with self.subTest(args=args):
                python = [] if "--python" in args else ["--python", PYTHON]
                proc = harness.spindle("import", "tf", *python, *args, "--repo", repo,
                                       "--model", "refused", check=False, timeout=600)
                self.assertNotEqual(proc.returncode, 0, proc.stderr)
                for text in expected:
                    self.assertIn(text, proc.stderr)
                self.assertNotIn("Traceback", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(repo, "refused", "1")),
                         "a refused import published a version")


def checkpoint_logits(prefix, batch):
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta", clear_devices=True)
        saver.restore(session, prefix)
        return session.run("softmax_linear/softmax_linear:0", {"images:0": batch})


if __name__ == "__main__":
    unittest.main()
