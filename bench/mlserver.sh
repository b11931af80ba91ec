#!/usr/bin/env bash
# The peer a Python shop would pick, side by side with Spindle in one run: Seldon MLServer 1.7.1
# (KServe v2, adaptive batching) with a small custom runtime calling onnxruntime
# (bench/mlserver/runtime.py), in its own virtual environment, serving the zoo's model; then
# spindle serve on the same model. Both are measured by `spindle loadtest` with KServe v2 JSON
# requests (MLServer does not speak the binary tensor extension) at the same concurrency levels.
# bench/suite.sh runs the same comparison for every zoo model beside the other servers.
#
# Usage: bench/mlserver.sh [MODEL]     (default: cifar10)
# Environment: LEVELS (default 1,4,16), WINDOW (default 3s), MAX_BATCH (MLServer's
#   max_batch_size, default 32), MAX_BATCH_TIME (seconds, default 0.002), PORT (default 18200).
# Results: bench/results/mlserver-<model>.{json,csv,svg} and spindle-json-<model>.{json,csv,svg}.
source "$(dirname "$0")/lib.sh"
model=${1:-cifar10}
levels=${LEVELS:-1,4,16}
port=${PORT:-18200}
WARMUP=${WARMUP:-2s}

echo "== $model: MLServer 1.7.1 + onnxruntime custom runtime"
mlserver_start mlserver "$model" "$port"
wait_ready "http://127.0.0.1:$port" "/v2/models/$model/ready"
measure "mlserver-$model" "http://127.0.0.1:$port" "$model" http-json "$levels"
stop_server mlserver

echo "== $model: spindle serve (ONNX Runtime), same JSON requests"
start_server spindle "$spindle" serve --repo "$repo" --engine ort --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
wait_ready "http://127.0.0.1:$port" "/v2/models/$model/ready"
measure "spindle-json-$model" "http://127.0.0.1:$port" "$model" http-json "$levels"
stop_server spindle

python3 - "$out/mlserver-$model.json" "$out/spindle-json-$model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(f"\n{m['model']}, KServe v2 JSON, {m['rows_per_request']} row(s) per request")
print(f"{'concurrency':>11} {'MLServer req/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'Spindle req/s':>14} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
for a, b in zip(m["levels"], s["levels"]):
    print(f"{a['concurrency']:>11} {a['throughput_rps']:>15.0f} {a['p50_us']/1000:>8.2f} {a['p99_us']/1000:>8.2f} "
          f"{b['throughput_rps']:>14.0f} {b['p50_us']/1000:>8.2f} {b['p99_us']/1000:>8.2f} {b['throughput_rps']/max(a['throughput_rps'],1e-9):>6.2f}")
PY
