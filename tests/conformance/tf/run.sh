#!/usr/bin/env bash
# Runs the TensorFlow conformance suite (tests/conformance/tf/test_*.py): TensorFlow itself beside
# Spindle. Installs tensorflow-cpu, tf2onnx, onnxruntime and tensorflow-serving-api into their own
# virtual environment under .cache/tfvenv (once; about 600 MB), then runs every test module with
# unittest. Each module starts the servers it needs through harness.py, with $SPINDLE_BIN (or the
# ci build) and, where it needs HDFS, $SPINDLE_HADOOP3_HDFS_URL or $SPINDLE_HDFS_URL.
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
venv=$("$root/tests/conformance/tf/venv.sh")
export SPINDLE_BIN=${SPINDLE_BIN:-$root/target/ci/spindle}
[ -x "$SPINDLE_BIN" ] || (cd "$root" && cargo build --profile ci --bin spindle)
export SPINDLE_TF_PYTHON="$venv/bin/python"
cd "$root/tests/conformance/tf"
# TensorFlow's own logging is noise here; errors still reach stderr.
export TF_CPP_MIN_LOG_LEVEL=2
exec "$venv/bin/python" -m unittest discover -s . -p 'test_*.py' -v "$@"
