"""A small MLServer custom runtime that runs an ONNX model with onnxruntime on the CPU.

This is the peer a Python shop would write for bench/mlserver.sh: MLServer 1.7.1 handles the
KServe v2 protocol and adaptive batching; this class only loads the session and runs it.
"""

import os

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    """Runs `parameters.uri` (an .onnx file) with one onnxruntime session."""

    async def load(self) -> bool:
        uri = await get_model_uri(self._settings)
        options = ort.SessionOptions()
        # 0 lets onnxruntime use every core, as spindle's ONNX Runtime engine does.
        options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "0"))
        self._session = ort.InferenceSession(
            uri, options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name=name, payload=value)
                for name, value in zip(self._outputs, results)
            ],
        )
