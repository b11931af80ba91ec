"""Conformance: TensorFlow Serving's gRPC API, through the `tensorflow-serving-api` client from
PyPI unchanged (prediction_service_pb2_grpc and model_service_pb2_grpc over grpcio), against a
running spindle serving the zoo's cifar10.

Predict must give the same answers as TF Serving REST (/v1/models/cifar10:predict) within 1e-6,
whether the tensor comes from tf.make_tensor_proto (tensor_content), typed float_val or an
encoded image; GetModelMetadata and GetModelStatus must say what REST says; bad requests get
TF Serving's gRPC codes.
"""
import base64
import tempfile
import unittest

import grpc
import numpy as np
import requests
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

import harness

MODEL = "cifar10"


def images(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 24, 24, 3)).astype(np.float32)


def as_dict(message):
    """A message as JSON-like data with every field, defaults included (as TF REST writes)."""
    try:
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
    except TypeError:  # protobuf before 5.26 names the option differently
        return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                         including_default_value_fields=True)


class TfServingGrpc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.repo = tempfile.TemporaryDirectory(prefix="spindle-tfgrpc-")
        harness.spindle("zoo", "--out", cls.repo.name, "--models", MODEL)
        # A version label, as TF Serving's model config gives them (test_version_label_*).
        with open(f"{cls.repo.name}/{MODEL}/config.toml", "a") as f:
            f.write("\n[version_labels]\nstable = 1\n")
        cls.server = harness.Server(cls.repo.name).__enter__()
        cls.channel = grpc.insecure_channel(cls.server.grpc)
        cls.predictions = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
        cls.models = model_service_pb2_grpc.ModelServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.__exit__(None, None, None)
        cls.repo.cleanup()

    def rest(self, path, body=None):
        url = f"http://{self.server.http}{path}"
        r = requests.post(url, json=body, timeout=60) if body is not None else requests.get(url, timeout=60)
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def rest_predict(self, instances):
        return np.array(self.rest(f"/v1/models/{MODEL}:predict", {"instances": instances})["predictions"])

    def predict(self, tensor, **spec):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        for key, value in spec.items():
            if key == "version":
                request.model_spec.version.value = value
            else:
                setattr(request.model_spec, key, value)
        request.inputs["images"].CopyFrom(tensor)
        return self.predictions.Predict(request, timeout=60)

    def assertClose(self, response, expected):
        out = response.outputs["probabilities"]
        self.assertEqual(out.dtype, types_pb2.DT_FLOAT)
        got = tf.make_ndarray(out)
        self.assertEqual(got.shape, expected.shape)
        self.assertLessEqual(float(np.max(np.abs(got - expected))), 1e-6)
        # A real answer: softmax rows.
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-4)

    def test_make_tensor_proto_gives_rest_answers(self):
        x = images(4, 1)
        tensor = tf.make_tensor_proto(x)
        self.assertTrue(tensor.tensor_content, "tf.make_tensor_proto should fill tensor_content")
        response = self.predict(tensor)
        self.assertClose(response, self.rest_predict(x.tolist()))
        self.assertEqual(response.model_spec.name, MODEL)
        self.assertEqual(response.model_spec.version.value, 1)
        self.assertEqual(response.model_spec.signature_name, "serving_default")

    def test_typed_float_val_gives_rest_answers(self):
        x = images(2, 2)
        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_FLOAT,
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in x.shape]),
            float_val=x.ravel().tolist())
        response = self.predict(tensor, version=1, signature_name="serving_default")
        self.assertClose(response, self.rest_predict(x.tolist()))

    def test_encoded_image_gives_rest_answers(self):
        pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        png = tf.io.encode_png(pixels).numpy()
        expected = self.rest_predict([{"b64": base64.b64encode(png).decode()}])
        self.assertClose(self.predict(tf.make_tensor_proto([png])), expected)

    def test_output_filter(self):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images(1, 4)))
        request.output_filter.append("probabilities")
        self.assertEqual(list(self.predictions.Predict(request, timeout=60).outputs), ["probabilities"])
        request.output_filter[:] = ["logits"]
        with self.assertRaises(grpc.RpcError) as caught:
            self.predictions.Predict(request, timeout=60)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("logits", caught.exception.details())

    def test_metadata_is_what_rest_says(self):
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL
        response = self.predictions.GetModelMetadata(request, timeout=60)
        self.assertEqual(response.model_spec.name, MODEL)
        self.assertEqual(response.model_spec.version.value, 1)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        self.assertTrue(response.metadata["signature_def"].Unpack(signatures))
        serving = signatures.signature_def["serving_default"]
        self.assertEqual(serving.method_name, "tensorflow/serving/predict")
        images_info = serving.inputs["images"]
        self.assertEqual(images_info.dtype, types_pb2.DT_FLOAT)
        self.assertEqual([d.size for d in images_info.tensor_shape.dim], [-1, 24, 24, 3])
        self.assertEqual([d.size for d in serving.outputs["probabilities"].tensor_shape.dim], [-1, 10])
        rest = self.rest(f"/v1/models/{MODEL}/metadata")
        grpc_view = as_dict(signatures)
        # SignatureDef's `defaults` map (added in TensorFlow 2.x) is empty for every Spindle
        # model; TF REST leaves it out.
        for signature in grpc_view["signature_def"].values():
            self.assertEqual(signature.pop("defaults", {}), {})
        self.assertEqual(grpc_view, rest["metadata"]["signature_def"])

    def test_status_is_what_rest_says(self):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = MODEL
        response = self.models.GetModelStatus(request, timeout=60)
        self.assertEqual(len(response.model_version_status), 1)
        status = response.model_version_status[0]
        self.assertEqual(status.version, 1)
        self.assertEqual(status.state, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        self.assertEqual(status.status.error_code, 0)
        self.assertEqual(as_dict(response), self.rest(f"/v1/models/{MODEL}"))

    def test_errors_carry_tf_serving_codes(self):
        x = tf.make_tensor_proto(images(1, 5))
        cases = [
            ("unknown model", lambda: self.predictions.Predict(self.request(x, name="nope"), timeout=60),
             grpc.StatusCode.NOT_FOUND, "nope"),
            ("unknown version", lambda: self.predict(x, version=7),
             grpc.StatusCode.NOT_FOUND, "no version 7"),
            ("unknown signature", lambda: self.predict(x, signature_name="predict_images"),
             grpc.StatusCode.INVALID_ARGUMENT, "predict_images"),
            ("wrong shape", lambda: self.predict(tf.make_tensor_proto(np.zeros((1, 24, 24), np.float32))),
             grpc.StatusCode.INVALID_ARGUMENT, "images"),
            ("wrong dtype", lambda: self.predict(tf.make_tensor_proto(np.zeros((1, 24, 24, 3), np.int64))),
             grpc.StatusCode.INVALID_ARGUMENT, "DT_INT64"),
            ("status of an unknown model", lambda: self.models.GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "nope"}), timeout=60),
             grpc.StatusCode.NOT_FOUND, "nope"),
            ("classify", lambda: self.predictions.Classify(
                classification_pb2.ClassificationRequest(model_spec={"name": MODEL}), timeout=60),
             grpc.StatusCode.UNIMPLEMENTED, ""),
        ]
        for what, call, code, text in cases:
            with self.subTest(what):
                with self.assertRaises(grpc.RpcError) as caught:
                    call()
                self.assertEqual(caught.exception.code(), code, caught.exception.details())
                self.assertIn(text, caught.exception.details())
        # The server still answers.
        self.assertIn("probabilities", self.predict(x).outputs)

    def test_version_label_selects_the_labelled_version(self):
        x = images(2, 6)
        response = self.predict(tf.make_tensor_proto(x), version_label="stable")
        self.assertClose(response, self.rest_predict(x.tolist()))
        self.assertEqual(response.model_spec.version.value, 1)
        by_label = np.array(self.rest(f"/v1/models/{MODEL}/labels/stable:predict",
                                      {"instances": x.tolist()})["predictions"])
        self.assertClose(response, by_label)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = MODEL
        request.model_spec.version_label = "stable"
        self.assertEqual(self.predictions.GetModelMetadata(request, timeout=60)
                         .model_spec.version.value, 1)
        with self.assertRaises(grpc.RpcError) as caught:
            self.predict(tf.make_tensor_proto(x), version_label="canary")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn("no version label 'canary' (labels: stable = 1)", caught.exception.details())

    def request(self, tensor, name):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.inputs["images"].CopyFrom(tensor)
        return request


if __name__ == "__main__":
    unittest.main()
