#!/usr/bin/env bash
# Installs ONNX Runtime's shared library for the ort engine: the CPU wheel of onnxruntime 1.31.1
# from PyPI into a project-local virtual environment (.cache/venv), and prints the library path.
# Idempotent: a second run only prints the path.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/venv
find_lib() { ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.* 2>/dev/null | head -n 1; }
if [ -z "$(find_lib)" ]; then
  echo "setup-ort: installing onnxruntime==1.31.1 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime==1.31.1
fi
lib=$(find_lib)
[ -n "$lib" ] || { echo "setup-ort: libonnxruntime.so.1.31.* not found under $venv" >&2; exit 1; }
realpath "$lib"
