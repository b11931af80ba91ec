#!/usr/bin/env bash
# BentoML for bench/suite.sh: makes its virtual environment once (.cache/bentoml-venv: bentoml
# from PyPI and onnxruntime 1.31.1, as the MLServer and Ray peers have), then serves
# bench/bentoml/service.py in the foreground (`bentoml serve`: the KServeV2 entry service and the
# OnnxModel service it depends on, each in its own process) for one model of a Spindle
# repository on 127.0.0.1:PORT. SIGTERM stops BentoML and its service processes.
#
# Usage: bench/bentoml/start.sh setup                      (only make the venv; prints its python)
#        bench/bentoml/start.sh CONFIG.toml MODEL.onnx PORT
# Environment: MAX_BATCH_ROWS (max_batch_size, in rows, default 32), MAX_LATENCY_MS (BentoML's
#   batch latency budget, default 1000), ORT_THREADS (onnxruntime intra-op threads, default 0:
#   every core).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=.cache/bentoml-venv
if ! "$venv/bin/python" -c 'import bentoml, onnxruntime, fastapi' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "bentoml" "onnxruntime==1.31.1" fastapi
fi
if [ "${1:-}" = setup ]; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
[ $# -eq 3 ] || { echo "usage: bench/bentoml/start.sh setup | CONFIG.toml MODEL.onnx PORT" >&2; exit 64; }
SPINDLE_CONFIG=$(realpath "$1")
SPINDLE_ONNX=$(realpath "$2")
export SPINDLE_CONFIG SPINDLE_ONNX
# Offline: no usage tracking (it would try the network), BentoML's home under .cache.
export BENTOML_DO_NOT_TRACK=true BENTOML_HOME=$PWD/.cache/bentoml-home
cd bench/bentoml
exec "$PWD/../../$venv/bin/bentoml" serve service:KServeV2 --host 127.0.0.1 --port "$3"
