#!/usr/bin/env bash
# Ray Serve for bench/suite.sh: makes its virtual environment once (.cache/ray-venv: ray[serve]
# from PyPI and onnxruntime 1.31.1, as the MLServer peer has), then runs bench/ray/serve_app.py
# in the foreground serving one model of a Spindle repository on 127.0.0.1:PORT. Ray starts a
# local cluster (GCS, raylet, the Serve controller, the HTTP proxy and one replica) under this
# process and stops it when this process gets SIGTERM.
#
# Usage: bench/ray/start.sh setup                      (only make the venv; prints its python)
#        bench/ray/start.sh CONFIG.toml MODEL.onnx PORT
# Environment: MAX_BATCH (@serve.batch max_batch_size, default 32), MAX_BATCH_TIME (seconds,
#   default 0.002), ORT_THREADS (onnxruntime intra-op threads, default 0: every core).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=.cache/ray-venv
if ! "$venv/bin/python" -c 'import ray.serve, onnxruntime, fastapi' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "ray[serve]" "onnxruntime==1.31.1"
fi
if [ "${1:-}" = setup ]; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
[ $# -eq 3 ] || { echo "usage: bench/ray/start.sh setup | CONFIG.toml MODEL.onnx PORT" >&2; exit 64; }
# Ray's own usage reporting would try the network at startup.
export RAY_USAGE_STATS_ENABLED=0
exec "$venv/bin/python" bench/ray/serve_app.py "$@"
