#!/usr/bin/env bash
# Prints the path of a virtual environment with TensorFlow (CPU), tf2onnx, onnxruntime and the
# TF Serving API client, creating it under .cache/tfvenv the first time. The pins are the versions
# this project was tested with (tensorflow-cpu 2.21.0 and tf2onnx 1.17.0 convert Keras SavedModels
# exactly; see docs/tensorflow.md).
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv="$root/.cache/tfvenv"
if ! "$venv/bin/python" -c 'import tensorflow, tf2onnx, onnxruntime, tensorflow_serving.apis' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'tensorflow-cpu==2.21.0' 'tf2onnx==1.17.0' onnxruntime 'tensorflow-serving-api' requests >&2
fi
echo "$venv"
