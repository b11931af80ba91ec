#!/usr/bin/env bash
# TorchServe for bench/suite.sh: makes its virtual environment once (.cache/torchserve-venv:
# torchserve 0.12.0 and torch-model-archiver from PyPI, onnxruntime 1.31.1 as the other peers
# have, and torch, which TorchServe's Python worker imports whatever the handler: PyPI's Linux
# wheel brings CUDA's libraries, about 5.5 GB in all) and compiles bench/torchserve/V2Metadata.java
# against TorchServe's jar (Java 17), then archives one model of a Spindle repository with
# bench/torchserve/handler.py (onnxruntime) and serves it in the foreground on 127.0.0.1:PORT
# (KServe v2 inference and TorchServe's management API; gRPC on PORT+1 and PORT+2, which
# TorchServe always opens). SIGTERM stops TorchServe's frontend and its worker.
#
# Offline: no token authorization, no config snapshots, no metrics API or system metrics, the
# model archived locally (no model download); access and metrics logs are off, as the other
# peers log no request.
#
# Usage: bench/torchserve/start.sh setup                      (only make the venv; prints its python)
#        bench/torchserve/start.sh CONFIG.toml MODEL.onnx PORT
# Environment: MAX_BATCH (TorchServe's batchSize, in requests, default 32), MAX_BATCH_TIME
#   (seconds, default 0.002: maxBatchDelay, whole milliseconds, at least 1), ORT_THREADS
#   (onnxruntime intra-op threads, default 0: every core).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=.cache/torchserve-venv
plugins=.cache/torchserve-plugins
if ! "$venv/bin/python" -c 'import ts, model_archiver, onnxruntime, torch, yaml' 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torchserve==0.12.0" "torch-model-archiver==0.12.0" "onnxruntime==1.31.1" torch pyyaml
fi
jar=$("$venv/bin/python" -c 'import os, ts; print(os.path.join(os.path.dirname(ts.__file__), "frontend", "model-server.jar"))')
if [ ! -f "$plugins/v2-metadata.jar" ] || [ bench/torchserve/V2Metadata.java -nt "$plugins/v2-metadata.jar" ]; then
  rm -rf "$plugins"
  mkdir -p "$plugins/classes/META-INF/services"
  javac -nowarn -d "$plugins/classes" -cp "$jar" bench/torchserve/V2Metadata.java
  echo V2Metadata > "$plugins/classes/META-INF/services/org.pytorch.serve.servingsdk.ModelServerEndpoint"
  jar cf "$plugins/v2-metadata.jar" -C "$plugins/classes" .
fi
if [ "${1:-}" = setup ]; then
  echo "$PWD/$venv/bin/python"
  exit 0
fi
[ $# -eq 3 ] || { echo "usage: bench/torchserve/start.sh setup | CONFIG.toml MODEL.onnx PORT" >&2; exit 64; }
config=$1 onnx=$2 port=$3
work=$PWD/.cache/torchserve-$port
rm -rf "$work"
mkdir -p "$work/store" "$work/metadata" "$work/tmp" "$work/logs"
# The model's config.toml as JSON (for the handler) and as KServe v2 metadata (for V2Metadata),
# and TorchServe's settings.
name=$("$venv/bin/python" - "$config" "$work" "$port" "${MAX_BATCH:-32}" "${MAX_BATCH_TIME:-0.002}" "${ORT_THREADS:-0}" <<'PY'
import json, sys, tomllib
config, work, port, max_batch, max_time, threads = sys.argv[1:]
c = tomllib.load(open(config, "rb"))
tensors = lambda specs: [{"name": s["name"], "datatype": s["dtype"], "shape": s["dims"]} for s in specs]
json.dump(c, open(f"{work}/config.json", "w"))
json.dump({"name": c["name"], "versions": ["1"], "platform": "onnxruntime_onnx",
           "inputs": tensors(c["inputs"]), "outputs": tensors(c["outputs"])},
          open(f"{work}/metadata/{c['name']}.json", "w"))
delay = max(1, round(float(max_time) * 1000))
open(f"{work}/model-config.yaml", "w").write(
    f"minWorkers: 1\nmaxWorkers: 1\nbatchSize: {int(max_batch)}\nmaxBatchDelay: {delay}\n"
    f"responseTimeout: 120\nhandler:\n  onnx: model.onnx\n  config: config.json\n  ort_threads: {int(threads)}\n")
address = f"http://127.0.0.1:{port}"
open(f"{work}/config.properties", "w").write(
    f"inference_address={address}\nmanagement_address={address}\nenable_metrics_api=false\n"
    f"grpc_inference_address=127.0.0.1\ngrpc_inference_port={int(port) + 1}\n"
    f"grpc_management_address=127.0.0.1\ngrpc_management_port={int(port) + 2}\n"
    "disable_system_metrics=true\ndefault_workers_per_model=1\ninstall_py_dep_per_model=false\n"
    "disable_token_authorization=true\nts_open_inference_protocol=true\n"
    # Past the 6.5 MB default: an inception_v3 image in JSON comes close to it.
    "max_request_size=104857600\nmax_response_size=104857600\n")
print(c["name"])
PY
)
cp "$onnx" "$work/model.onnx"
"$venv/bin/torch-model-archiver" --model-name "$name" --version 1 --handler bench/torchserve/handler.py \
  --extra-files "$work/model.onnx,$work/config.json" --config-file "$work/model-config.yaml" \
  --archive-format no-archive --export-path "$work/store"
# TorchServe's default logging with the per-request loggers (access log, metrics) off and its
# own at warnings, to the console (this script's log).
sed -e 's/<Logger name="\(ACCESS_LOG\|MODEL_METRICS\|TS_METRICS\)" level="[a-z]*">/<Logger name="\1" level="off">/' \
  -e 's/<Logger name="org.pytorch.serve" level="debug">/<Logger name="org.pytorch.serve" level="warn">/' \
  -e 's/<Logger name="MODEL_LOG" level="all">/<Logger name="MODEL_LOG" level="warn">/' \
  -e 's/<Root level="info">/<Root level="warn">/' \
  < <(unzip -p "$jar" log4j2.xml) > "$work/log4j2.xml"
# The launcher keeps its pid file in the temporary directory: this instance's own.
export TMPDIR=$work/tmp TEMP=$work/tmp LOG_LOCATION=$work/logs METRICS_LOCATION=$work/logs
export SPINDLE_V2_METADATA=$work/metadata
cd "$work"
ts=("$OLDPWD/$venv/bin/torchserve")
"${ts[@]}" --start --foreground --ncs --disable-token-auth --model-store store --models "$name=$name" \
  --ts-config config.properties --log-config log4j2.xml --plugins-path "$OLDPWD/$plugins" &
launcher=$!
# The launcher waits for the Java frontend but does not pass SIGTERM on; `--stop` does.
trap '"${ts[@]}" --stop --foreground > /dev/null; wait "$launcher"; exit 0' TERM INT
wait "$launcher"
