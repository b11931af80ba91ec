"""BentoML beside Spindle, MLServer and Ray Serve in bench/suite.sh: what a BentoML shop would
write to serve the zoo's ONNX model. Two services, as BentoML composes them:

- `OnnxModel` runs the model with onnxruntime on the CPU behind one batchable API
  (`@bentoml.api(batchable=True)`): BentoML's adaptive batching joins concurrent calls along
  the first dimension, up to MAX_BATCH rows.
- `KServeV2`, the entry service, mounts a FastAPI app with the KServe v2 JSON routes
  `spindle loadtest` uses (server readiness, model metadata and readiness, `/infer`), decodes
  each request into one array and calls `OnnxModel` through `bentoml.depends`, which is where
  the batching happens (BentoML batches calls that reach a service's API, not Python calls
  within one).

Settings come from the environment (bench/bentoml/start.sh sets them): SPINDLE_CONFIG (the
model's config.toml), SPINDLE_ONNX (its model.onnx), MAX_BATCH_ROWS (BentoML's max_batch_size,
which counts rows, not requests: bench/suite.sh gives 32 requests' worth, as the other peers'
32 requests; a larger request is split; default 32), MAX_LATENCY_MS
(BentoML's latency budget for a batch, default 1000: BentoML sizes batches adaptively within
it instead of waiting a fixed time) and ORT_THREADS (onnxruntime intra-op threads, default 0:
every core, as the other peers).
"""

import os
import tomllib

import bentoml
import numpy as np
from _bentoml_impl.client.proxy2 import SessionManager
from fastapi import FastAPI, HTTPException, Request

# BentoML 1.4.40's client for a dependency replaces its aiohttp session every 100 calls (and
# every 300 s), closing the old one while other calls are still in flight on it: under
# concurrent load about one call in ten then fails with "Server disconnected" (a 500 here;
# measured at 16 concurrent requests on this box). Keeping one session keeps every call; the
# refresh exists for long-lived deployments, not for throughput.
SessionManager._should_refresh = lambda self: False

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

with open(os.environ["SPINDLE_CONFIG"], "rb") as f:
    CONFIG = tomllib.load(f)
if len(CONFIG["inputs"]) != 1 or len(CONFIG["outputs"]) != 1:
    # A batchable BentoML API takes one array and returns one: the zoo's models all fit.
    raise SystemExit(
        f"bench/bentoml serves models of one input and one output; {CONFIG['name']} has "
        f"{len(CONFIG['inputs'])} and {len(CONFIG['outputs'])}"
    )
INPUT = CONFIG["inputs"][0]
OUTPUT = CONFIG["outputs"][0]


# No access log line per request: logging costs the peer CPU that Spindle (which logs no
# requests by default) does not spend, and this comparison should not be won on logging.
QUIET = {"access": {"enabled": False}}


@bentoml.service(workers=1, logging=QUIET)
class OnnxModel:
    """One onnxruntime session behind a batchable API."""

    def __init__(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "0"))
        self.session = ort.InferenceSession(
            os.environ["SPINDLE_ONNX"], options, providers=["CPUExecutionProvider"]
        )

    @bentoml.api(
        batchable=True,
        max_batch_size=int(os.environ.get("MAX_BATCH_ROWS", "32")),
        max_latency_ms=int(os.environ.get("MAX_LATENCY_MS", "1000")),
    )
    def run(self, rows: np.ndarray) -> np.ndarray:
        return self.session.run([OUTPUT["name"]], {INPUT["name"]: rows})[0]


app = FastAPI()


def tensors(specs: list[dict]) -> list[dict]:
    return [{"name": s["name"], "datatype": s["dtype"], "shape": s["dims"]} for s in specs]


def check_name(name: str) -> None:
    if name != CONFIG["name"]:
        raise HTTPException(404, f"model '{name}' is not served here")


@bentoml.service(workers=1, logging=QUIET)
@bentoml.asgi_app(app)
class KServeV2:
    """The KServe v2 JSON routes, in front of OnnxModel."""

    model = bentoml.depends(OnnxModel)

    @app.get("/v2/health/ready")
    def ready(self) -> dict:
        return {}

    @app.get("/v2/models/{name}")
    def model_metadata(self, name: str) -> dict:
        check_name(name)
        return {
            "name": CONFIG["name"],
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": tensors(CONFIG["inputs"]),
            "outputs": tensors(CONFIG["outputs"]),
        }

    @app.get("/v2/models/{name}/ready")
    def model_ready(self, name: str) -> dict:
        check_name(name)
        return {}

    @app.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> dict:
        check_name(name)
        body = await request.json()
        given = body.get("inputs", [])
        if len(given) != 1 or given[0].get("name") != INPUT["name"]:
            raise HTTPException(400, f"expected one input '{INPUT['name']}'")
        tensor = given[0]
        if tensor.get("datatype") != INPUT["dtype"]:
            raise HTTPException(
                400, f"input {INPUT['name']}: datatype {tensor.get('datatype')}, expected {INPUT['dtype']}"
            )
        try:
            rows = np.asarray(tensor["data"], dtype=DTYPES[INPUT["dtype"]]).reshape(tensor["shape"])
        except (KeyError, ValueError) as e:
            raise HTTPException(400, f"input {INPUT['name']}: {e}")
        result = await self.model.to_async.run(rows)
        return {
            "model_name": CONFIG["name"],
            "model_version": "1",
            "outputs": [
                {
                    "name": OUTPUT["name"],
                    "datatype": NAMES.get(result.dtype, "FP32"),
                    "shape": list(result.shape),
                    "data": result.ravel().tolist(),
                }
            ],
        }
