"""Ray Serve beside Spindle and MLServer in bench/suite.sh: one deployment that runs an ONNX model
with onnxruntime on the CPU, batching requests with `@serve.batch`, behind a FastAPI ingress
that speaks the KServe v2 JSON routes `spindle loadtest` uses (model metadata, readiness,
`/infer`). This is what a Ray shop would write to serve the zoo's model: Ray does the HTTP proxy,
routing and batching; this file only decodes, runs and encodes.

Usage: python serve_app.py CONFIG.toml MODEL.onnx PORT [MAX_BATCH] [MAX_BATCH_TIME_S]
(bench/ray/start.sh runs it in the venv it makes).
"""

import os
import signal
import sys
import tomllib

import numpy as np
import onnxruntime as ort
import ray
from fastapi import FastAPI, HTTPException, Request
from ray import serve

# KServe v2 datatypes and numpy's, both ways.
DTYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT64": np.int64,
    "INT32": np.int32,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}
NAMES = {np.dtype(v): k for k, v in DTYPES.items()}

app = FastAPI()


@serve.deployment
@serve.ingress(app)
class OnnxModel:
    """One onnxruntime session; requests are batched along the first dimension."""

    def __init__(self, config: dict, onnx_path: str):
        self.config = config
        options = ort.SessionOptions()
        # 0 lets onnxruntime use every core, as spindle's ONNX Runtime engine and the MLServer
        # runtime do.
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "0"))
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.inputs = {s["name"]: s for s in config["inputs"]}

    def metadata(self) -> dict:
        tensors = lambda specs: [
            {"name": s["name"], "datatype": s["dtype"], "shape": s["dims"]} for s in specs
        ]
        return {
            "name": self.config["name"],
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": tensors(self.config["inputs"]),
            "outputs": tensors(self.config["outputs"]),
        }

    @app.get("/v2/health/ready")
    def ready(self) -> dict:
        return {}

    @app.get("/v2/models/{name}")
    def model_metadata(self, name: str) -> dict:
        self.check_name(name)
        return self.metadata()

    @app.get("/v2/models/{name}/ready")
    def model_ready(self, name: str) -> dict:
        self.check_name(name)
        return {}

    @app.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> dict:
        self.check_name(name)
        body = await request.json()
        feeds = {}
        for tensor in body.get("inputs", []):
            spec = self.inputs.get(tensor.get("name"))
            if spec is None:
                raise HTTPException(400, f"unknown input {tensor.get('name')!r}")
            dtype = DTYPES.get(tensor.get("datatype"))
            if dtype is None or tensor["datatype"] != spec["dtype"]:
                raise HTTPException(
                    400, f"input {spec['name']}: datatype {tensor.get('datatype')}, expected {spec['dtype']}"
                )
            try:
                feeds[spec["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
            except (KeyError, ValueError) as e:
                raise HTTPException(400, f"input {spec['name']}: {e}")
        if set(feeds) != set(self.inputs):
            raise HTTPException(400, f"expected inputs {sorted(self.inputs)}, got {sorted(feeds)}")
        results = await self.run_batched(feeds)
        return {
            "model_name": self.config["name"],
            "model_version": "1",
            "outputs": [
                {
                    "name": n,
                    "datatype": NAMES.get(v.dtype, "FP32"),
                    "shape": list(v.shape),
                    "data": v.ravel().tolist(),
                }
                for n, v in zip(self.outputs, results)
            ],
        }

    @serve.batch(
        max_batch_size=int(os.environ.get("MAX_BATCH", "32")),
        batch_wait_timeout_s=float(os.environ.get("MAX_BATCH_TIME", "0.002")),
    )
    async def run_batched(self, requests: list[dict]) -> list[list[np.ndarray]]:
        # One session run over every request's rows, then each request gets its own rows back.
        rows = [next(iter(r.values())).shape[0] for r in requests]
        feeds = {n: np.concatenate([r[n] for r in requests]) for n in requests[0]}
        results = self.session.run(self.outputs, feeds)
        bounds = np.cumsum([0] + rows)
        return [[out[a:b] for out in results] for a, b in zip(bounds[:-1], bounds[1:])]

    def check_name(self, name: str) -> None:
        if name != self.config["name"]:
            raise HTTPException(404, f"model '{name}' is not served here")


def main() -> None:
    config_path, onnx_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    # SIGTERM (bench/lib.sh's stop_server) unwinds through the finally below, so Ray's
    # processes are stopped before the next server starts on the same cores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(OnnxModel.bind(config, onnx_path), route_prefix="/", blocking=True)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
