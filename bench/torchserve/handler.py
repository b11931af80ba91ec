"""TorchServe beside Spindle, MLServer, Ray Serve and BentoML in bench/suite.sh: the custom
handler a TorchServe shop would write to serve the zoo's ONNX model with onnxruntime on the CPU.

TorchServe's frontend (Java) takes `POST /v2/models/{name}/infer` itself and batches requests
on the server: it hands this handler up to `batchSize` requests at once (waiting up to
`maxBatchDelay` ms for them; model-config.yaml, written by bench/torchserve/start.sh). The
handler decodes each request's KServe v2 JSON body, joins their rows along the first dimension,
runs the one onnxruntime session once, and answers each request with its own rows.

TorchServe's `kservev2` request envelope is not used: it reads only the first request of a batch
and answers one, so it cannot be combined with TorchServe's batching.

The model-config.yaml's `handler` section carries the rest: `onnx` (the model.onnx file, in the
model's directory), `config` (the model's config.toml converted to JSON) and `ort_threads`
(onnxruntime intra-op threads, 0: every core, as the other peers).
"""

import json
import os

import numpy as np
import onnxruntime as ort

# KServe v2 datatypes to numpy's and back: TorchServe's own (its kservev2 envelope's).
from ts.torch_handler.request_envelope.kservev2 import _to_datatype, _to_dtype


class OnnxHandler:
    def __init__(self, context) -> None:
        settings = context.model_yaml_config["handler"]
        model_dir = context.system_properties["model_dir"]
        with open(os.path.join(model_dir, settings["config"])) as f:
            config = json.load(f)
        if len(config["inputs"]) != 1 or len(config["outputs"]) != 1:
            # One array in, one out, joined and split along the first dimension: the zoo's
            # models all fit.
            raise ValueError(
                f"bench/torchserve serves models of one input and one output; {config['name']} "
                f"has {len(config['inputs'])} and {len(config['outputs'])}"
            )
        self.name = config["name"]
        self.input = config["inputs"][0]
        self.output = config["outputs"][0]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(settings.get("ort_threads", 0))
        self.session = ort.InferenceSession(
            os.path.join(model_dir, settings["onnx"]), options, providers=["CPUExecutionProvider"]
        )

    def decode(self, request) -> np.ndarray:
        body = request.get("body") or request.get("data")
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        given = body.get("inputs", [])
        if len(given) != 1 or given[0].get("name") != self.input["name"]:
            raise ValueError(f"expected one input '{self.input['name']}'")
        tensor = given[0]
        if tensor.get("datatype") != self.input["dtype"]:
            raise ValueError(
                f"input {self.input['name']}: datatype {tensor.get('datatype')}, "
                f"expected {self.input['dtype']}"
            )
        try:
            return np.asarray(tensor["data"], dtype=_to_dtype(self.input["dtype"])).reshape(tensor["shape"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"input {self.input['name']}: {e}") from e

    def handle(self, data: list, context) -> list:
        answers = [None] * len(data)
        rows, taken = [], []
        for i, request in enumerate(data):
            try:
                rows.append(self.decode(request))
                taken.append(i)
            except (ValueError, AttributeError, json.JSONDecodeError) as e:
                # This request alone fails; the rest of the batch is answered.
                context.set_response_status(400, str(e), idx=i)
                answers[i] = json.dumps({"error": str(e)})
        if rows:
            batch = np.concatenate(rows) if len(rows) > 1 else rows[0]
            result = self.session.run([self.output["name"]], {self.input["name"]: batch})[0]
            start = 0
            for i, part in zip(taken, rows):
                mine = result[start : start + len(part)]
                start += len(part)
                answers[i] = json.dumps(
                    {
                        "model_name": self.name,
                        "model_version": "1",
                        "outputs": [
                            {
                                "name": self.output["name"],
                                "datatype": _to_datatype(mine.dtype),
                                "shape": list(mine.shape),
                                "data": mine.ravel().tolist(),
                            }
                        ],
                    }
                )
        for i in range(len(data)):
            context.set_response_content_type(i, "application/json")
        return answers


_handler = None


def handle(data, context):
    """TorchServe's entry point: called once with `data` None to load, then once per batch."""
    global _handler
    if _handler is None:
        _handler = OnnxHandler(context)
    if data is None:
        return None
    return _handler.handle(data, context)
