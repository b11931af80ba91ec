"""Conformance: the clients our users already have, unchanged, against a running spindle.

tritonclient 2.73.0 (HTTP and gRPC) and TensorFlow Serving's REST formats through `requests`.
run.sh starts the server and sets SPINDLE_HTTP / SPINDLE_GRPC; each test fails on its own.
"""

import base64
import io
import os
import unittest

import numpy as np
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

HTTP = os.environ["SPINDLE_HTTP"]
GRPC = os.environ["SPINDLE_GRPC"]
# The second server: TLS with a private CA, and a bearer token required.
TLS_HTTP = os.environ["SPINDLE_TLS_HTTP"]
TLS_GRPC = os.environ["SPINDLE_TLS_GRPC"]
TLS_CA = os.environ["SPINDLE_TLS_CA"]
TLS_TOKEN = os.environ["SPINDLE_TLS_TOKEN"]
LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 24, 24, 3)).astype(np.float32)


def encoded(fmt, size, seed):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def http_client():
    return httpclient.InferenceServerClient(HTTP)


def grpc_client():
    return grpcclient.InferenceServerClient(GRPC)


def http_infer(data, binary):
    inp = httpclient.InferInput("images", list(data.shape), "FP32")
    inp.set_data_from_numpy(data, binary_data=binary)
    out = httpclient.InferRequestedOutput("probabilities", binary_data=binary)
    return http_client().infer("cifar10", [inp], outputs=[out]).as_numpy("probabilities")


def grpc_infer(data):
    inp = grpcclient.InferInput("images", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    return grpc_client().infer("cifar10", [inp]).as_numpy("probabilities")


class Health(unittest.TestCase):
    def test_http(self):
        c = http_client()
        self.assertTrue(c.is_server_live())
        self.assertTrue(c.is_server_ready())
        self.assertTrue(c.is_model_ready("cifar10"))
        self.assertTrue(c.is_model_ready("cifar10", "1"))
        self.assertFalse(c.is_model_ready("no_such_model"))

    def test_grpc(self):
        c = grpc_client()
        self.assertTrue(c.is_server_live())
        self.assertTrue(c.is_server_ready())
        self.assertTrue(c.is_model_ready("inception_v3"))
        self.assertFalse(c.is_model_ready("no_such_model"))


class Metadata(unittest.TestCase):
    def test_server(self):
        for meta in (http_client().get_server_metadata(),
                     grpc_client().get_server_metadata(as_json=True)):
            self.assertEqual(meta["name"], "spindle")
            self.assertIn("classification", meta["extensions"])

    def test_model(self):
        h = http_client().get_model_metadata("cifar10")
        g = grpc_client().get_model_metadata("cifar10", as_json=True)
        for meta in (h, g):
            self.assertEqual(meta["inputs"][0]["name"], "images")
            self.assertEqual(meta["inputs"][0]["datatype"], "FP32")
            self.assertEqual([int(d) for d in meta["inputs"][0]["shape"]], [-1, 24, 24, 3])
            self.assertEqual(meta["versions"], ["1"])

    def test_config(self):
        h = http_client().get_model_config("cifar10")
        g = grpc_client().get_model_config("cifar10", as_json=True)["config"]
        for config in (h, g):
            self.assertEqual(int(config["max_batch_size"]), 128)
            self.assertEqual(config["input"][0]["data_type"], "TYPE_FP32")
            self.assertEqual([int(d) for d in config["input"][0]["dims"]], [24, 24, 3])

    def test_repository_index(self):
        index = grpc_client().get_model_repository_index(as_json=True)["models"]
        names = sorted(m["name"] for m in index)
        self.assertEqual(names, ["cifar10", "inception_v3"])
        self.assertTrue(all(m["state"] == "READY" for m in index))


class Infer(unittest.TestCase):
    def test_protocols_agree_exactly(self):
        data = images(3, seed=1)
        reference = http_infer(data, binary=False)
        self.assertEqual(reference.shape, (3, 10))
        np.testing.assert_allclose(reference.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(http_infer(data, binary=True), reference)
        np.testing.assert_array_equal(grpc_infer(data), reference)

        # gRPC typed contents, through tritonclient's own stub and messages.
        request = service_pb2.ModelInferRequest(model_name="cifar10")
        tensor = request.inputs.add(name="images", datatype="FP32", shape=list(data.shape))
        tensor.contents.fp32_contents.extend(data.flatten().tolist())
        client = grpc_client()  # held: the stub's channel closes with its client
        answer = client._client_stub.ModelInfer(request)
        typed = np.frombuffer(answer.raw_output_contents[0], dtype=np.float32).reshape(3, 10)
        np.testing.assert_array_equal(typed, reference)

        rows = requests.post(f"http://{HTTP}/v1/models/cifar10:predict",
                             json={"instances": data.tolist()}, timeout=30)
        self.assertEqual(rows.status_code, 200, rows.text)
        np.testing.assert_array_equal(np.array(rows.json()["predictions"], np.float32), reference)
        cols = requests.post(f"http://{HTTP}/v1/models/cifar10/versions/1:predict",
                             json={"signature_name": "serving_default", "inputs": {"images": data.tolist()}},
                             timeout=30)
        self.assertEqual(cols.status_code, 200, cols.text)
        np.testing.assert_array_equal(np.array(cols.json()["outputs"], np.float32), reference)

    def test_classification(self):
        data = images(2, seed=2)
        probs = http_infer(data, binary=True)
        for client, mod in ((http_client(), httpclient), (grpc_client(), grpcclient)):
            inp = mod.InferInput("images", list(data.shape), "FP32")
            inp.set_data_from_numpy(data)
            out = mod.InferRequestedOutput("probabilities", class_count=3)
            top = client.infer("cifar10", [inp], outputs=[out]).as_numpy("probabilities")
            self.assertEqual(top.shape, (2, 3))
            for row in range(2):
                score, index, label = top[row][0].decode().split(":")
                best = int(np.argmax(probs[row]))
                self.assertEqual(int(index), best)
                self.assertEqual(label, LABELS[best])
                self.assertAlmostEqual(float(score), float(probs[row][best]), places=5)

    def test_images_as_bytes(self):
        pngs = [encoded("PNG", (32, 32), s) for s in range(2)]
        blob = np.array(pngs, dtype=np.object_)
        h = httpclient.InferInput("images", [2], "BYTES")
        h.set_data_from_numpy(blob, binary_data=True)
        via_http = http_client().infer("cifar10", [h]).as_numpy("probabilities")
        g = grpcclient.InferInput("images", [2], "BYTES")
        g.set_data_from_numpy(blob)
        via_grpc = grpc_client().infer("cifar10", [g]).as_numpy("probabilities")
        np.testing.assert_array_equal(via_http, via_grpc)
        tf = requests.post(f"http://{HTTP}/v1/models/cifar10:predict",
                           json={"instances": [{"b64": base64.b64encode(p).decode()} for p in pngs]},
                           timeout=30)
        self.assertEqual(tf.status_code, 200, tf.text)
        np.testing.assert_array_equal(np.array(tf.json()["predictions"], np.float32), via_http)

    def test_tf_rest_b64_jpeg_to_inception(self):
        photo = encoded("JPEG", (400, 300), 7)
        answer = requests.post(f"http://{HTTP}/v1/models/inception_v3:predict",
                               json={"instances": [{"images": {"b64": base64.b64encode(photo).decode()}}]},
                               timeout=60)
        self.assertEqual(answer.status_code, 200, answer.text)
        predictions = np.array(answer.json()["predictions"], np.float32)
        self.assertEqual(predictions.shape, (1, 1001))
        self.assertAlmostEqual(float(predictions.sum()), 1.0, places=4)

    def test_statistics(self):
        before = http_client().get_inference_statistics("cifar10")["model_stats"][0]
        http_infer(images(1), binary=True)
        after_h = http_client().get_inference_statistics("cifar10")["model_stats"][0]
        after_g = grpc_client().get_inference_statistics("cifar10", as_json=True)["model_stats"][0]
        success = lambda s: int(s["inference_stats"]["success"]["count"])
        self.assertGreaterEqual(success(after_h), success(before) + 1)
        self.assertGreaterEqual(success(after_g), success(after_h))
        self.assertGreater(int(after_g["inference_stats"]["compute_infer"]["ns"]), 0)


class Errors(unittest.TestCase):
    def test_unknown_model_raises_with_our_message(self):
        for client, mod in ((http_client(), httpclient), (grpc_client(), grpcclient)):
            inp = mod.InferInput("images", [1, 24, 24, 3], "FP32")
            inp.set_data_from_numpy(images(1))
            with self.assertRaises(InferenceServerException) as caught:
                client.infer("no_such_model", [inp])
            self.assertIn("unknown model 'no_such_model'", caught.exception.message())

    def test_wrong_shape_names_the_input(self):
        for client, mod in ((http_client(), httpclient), (grpc_client(), grpcclient)):
            data = np.zeros((1, 20, 20, 3), np.float32)
            inp = mod.InferInput("images", list(data.shape), "FP32")
            inp.set_data_from_numpy(data)
            with self.assertRaises(InferenceServerException) as caught:
                client.infer("cifar10", [inp])
            message = caught.exception.message()
            self.assertIn("input 'images'", message)
            self.assertIn("[-1, 24, 24, 3]", message)

    def test_corrupt_image_names_the_element(self):
        blob = np.array([encoded("PNG", (32, 32), 1), b"\x89PNG broken"], dtype=np.object_)
        inp = grpcclient.InferInput("images", [2], "BYTES")
        inp.set_data_from_numpy(blob)
        with self.assertRaises(InferenceServerException) as caught:
            grpc_client().infer("cifar10", [inp])
        self.assertIn("element 1", caught.exception.message())
        self.assertIn("INVALID_ARGUMENT", caught.exception.status())

    def test_tf_rest_errors(self):
        mixed = requests.post(f"http://{HTTP}/v1/models/cifar10:predict",
                              json={"instances": [1], "inputs": [1]}, timeout=10)
        self.assertEqual(mixed.status_code, 400)
        self.assertIn("mixes", mixed.json()["error"])
        missing = requests.get(f"http://{HTTP}/v1/models/no_such_model", timeout=10)
        self.assertEqual(missing.status_code, 404)
        self.assertIn("error", missing.json())


class Tls(unittest.TestCase):
    """tritonclient over TLS (verifying the server against our CA) with a bearer token."""

    def http_client(self):
        return httpclient.InferenceServerClient(TLS_HTTP, ssl=True, ssl_options={"ca_certs": TLS_CA})

    def grpc_client(self):
        return grpcclient.InferenceServerClient(TLS_GRPC, ssl=True, root_certificates=TLS_CA)

    def http_infer(self, client, data, headers):
        inp = httpclient.InferInput("images", list(data.shape), "FP32")
        inp.set_data_from_numpy(data, binary_data=True)
        out = httpclient.InferRequestedOutput("probabilities", binary_data=True)
        # A copy: tritonclient.http adds its own headers (an int Inference-Header-Content-Length
        # for binary data) to the dict it is given, which gRPC metadata then refuses.
        headers = dict(headers) if headers else None
        return client.infer("cifar10", [inp], outputs=[out], headers=headers).as_numpy("probabilities")

    def grpc_infer(self, client, data, headers):
        inp = grpcclient.InferInput("images", list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        return client.infer("cifar10", [inp], headers=headers).as_numpy("probabilities")

    def test_both_protocols_infer_with_the_token(self):
        data = images(3, seed=7)
        bearer = {"authorization": f"Bearer {TLS_TOKEN}"}
        over_http = self.http_infer(self.http_client(), data, bearer)
        over_grpc = self.grpc_infer(self.grpc_client(), data, bearer)
        plain = http_infer(data, True)
        self.assertEqual(over_http.shape, (3, 10))
        # The same model behind TLS answers exactly what the plain server does.
        np.testing.assert_array_equal(over_http, plain)
        np.testing.assert_array_equal(over_grpc, plain)
        np.testing.assert_allclose(over_http.sum(axis=1), 1.0, rtol=1e-5)

    def test_health_is_open_without_a_token(self):
        self.assertTrue(self.http_client().is_server_ready())
        self.assertTrue(self.grpc_client().is_server_live())

    def test_a_missing_or_wrong_token_is_refused(self):
        data = images(1)
        for headers in [None, {"authorization": "Bearer not-the-token"}]:
            with self.assertRaises(InferenceServerException) as caught:
                self.http_infer(self.http_client(), data, headers)
            self.assertEqual(caught.exception.status(), "401")
            self.assertIn("token", caught.exception.message())
            with self.assertRaises(InferenceServerException) as caught:
                self.grpc_infer(self.grpc_client(), data, headers)
            self.assertIn("UNAUTHENTICATED", caught.exception.status())
            self.assertIn("token", caught.exception.message())

    def test_a_client_that_does_not_trust_our_ca_is_refused(self):
        # The system's roots did not sign the certificate: verification fails, nothing is served.
        untrusting = httpclient.InferenceServerClient(TLS_HTTP, ssl=True)
        with self.assertRaises(Exception):
            untrusting.is_server_ready()


if __name__ == "__main__":
    unittest.main(verbosity=2)
