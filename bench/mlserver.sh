#!/usr/bin/env bash
# The peer a Python shop would pick, side by side with Spindle in one run: Seldon MLServer 1.7.1
# (KServe v2, adaptive batching) with a small custom runtime calling onnxruntime
# (bench/mlserver/runtime.py), in its own virtual environment, serving the zoo's model; then
# spindle serve on the same model. Both are measured by `spindle loadtest` with KServe v2 JSON
# requests (MLServer does not speak the binary tensor extension) at the same concurrency levels.
#
# Usage: bench/mlserver.sh [MODEL]     (default: cifar10)
# Environment: LEVELS (default 1,4,16), WINDOW (default 3s), MAX_BATCH (MLServer's
#   max_batch_size, default 32), MAX_BATCH_TIME (seconds, default 0.002), PORT (default 18200).
# Results: bench/results/mlserver-<model>.{json,csv,svg} and spindle-json-<model>.{json,csv,svg}.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-cifar10}
levels=${LEVELS:-1,4,16}
window=${WINDOW:-3s}
port=${PORT:-18200}
out=bench/results
venv=.cache/mlserver-venv
mkdir -p "$out" .cache
# uvloop 0.22 and later raise "There is no current event loop" in MLServer 1.7.1's inference
# pool workers (asyncio.get_event_loop in worker.py), so every worker dies at startup: pin below.
if [ ! -x "$venv/bin/mlserver" ] || ! "$venv/bin/python" -c 'import uvloop, sys; sys.exit(tuple(map(int, uvloop.__version__.split(".")[:2])) >= (0, 22))'; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "mlserver==1.7.1" "onnxruntime==1.31.1" "uvloop<0.22"
fi
ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/setup-ort.sh)}; export ORT_DYLIB_PATH
cargo build --release -q -p spindle-server
spindle=${CARGO_TARGET_DIR:-target}/release/spindle
repo=.cache/bench-repo
[ -f "$repo/$model/config.toml" ] || "$spindle" zoo --out "$repo" > /dev/null

# MLServer's settings from the model's config.toml: the same tensors, so `spindle loadtest`
# reads the same metadata from both servers.
work=.cache/mlserver-$model
rm -rf "$work"; mkdir -p "$work"
cp bench/mlserver/runtime.py "$work/"
version=$(ls "$repo/$model" | grep -E '^[0-9]+$' | sort -n | tail -1)
python3 - "$repo/$model/config.toml" "$PWD/$repo/$model/$version/model.onnx" "$work" "$port" \
  "${MAX_BATCH:-32}" "${MAX_BATCH_TIME:-0.002}" <<'PY'
import json, sys, tomllib
config, onnx, work, port, max_batch, max_time = sys.argv[1:]
c = tomllib.load(open(config, "rb"))
tensors = lambda specs: [{"name": s["name"], "datatype": s["dtype"], "shape": s["dims"]} for s in specs]
json.dump({"http_port": int(port), "grpc_port": int(port) + 1, "metrics_port": int(port) + 2,
           "debug": False}, open(f"{work}/settings.json", "w"))
json.dump({"name": c["name"], "implementation": "runtime.OnnxRuntimeModel",
           "parameters": {"uri": onnx, "version": "1"},
           "inputs": tensors(c["inputs"]), "outputs": tensors(c["outputs"]),
           "max_batch_size": int(max_batch), "max_batch_time": float(max_time)},
          open(f"{work}/model-settings.json", "w"))
PY

server=""
stop() { [ -z "$server" ] || { kill -TERM "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; }; server=""; }
trap stop EXIT
wait_ready() {
  for _ in $(seq 1 600); do curl -sf "$1/v2/models/$model/ready" > /dev/null && return; sleep 0.2; done
  echo "mlserver.sh: $1 never became ready for $model" >&2; exit 1
}
measure() {
  "$spindle" loadtest --url "$1" --model "$model" --protocol http-json --concurrency "$levels" \
    --warmup 2s --window "$window" --max-windows 6 \
    --json "$out/$2-$model.json" --csv "$out/$2-$model.csv" --chart "$out/$2-$model.svg"
}

echo "== $model: MLServer 1.7.1 + onnxruntime custom runtime"
mlserver=$PWD/$venv/bin/mlserver
(cd "$work" && exec "$mlserver" start .) > "$work/mlserver.log" 2>&1 &
server=$!
wait_ready "http://127.0.0.1:$port"
measure "http://127.0.0.1:$port" mlserver
stop

echo "== $model: spindle serve (ONNX Runtime), same JSON requests"
RUST_LOG=warn "$spindle" serve --repo "$repo" --engine ort --http-addr "127.0.0.1:$port" --no-grpc &
server=$!
wait_ready "http://127.0.0.1:$port"
measure "http://127.0.0.1:$port" spindle-json
stop

python3 - "$out/mlserver-$model.json" "$out/spindle-json-$model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); s = json.load(open(sys.argv[2]))
print(f"\n{m['model']}, KServe v2 JSON, {m['rows_per_request']} row(s) per request")
print(f"{'concurrency':>11} {'MLServer req/s':>15} {'p50 ms':>8} {'p99 ms':>8} {'Spindle req/s':>14} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
for a, b in zip(m["levels"], s["levels"]):
    print(f"{a['concurrency']:>11} {a['throughput_rps']:>15.0f} {a['p50_us']/1000:>8.2f} {a['p99_us']/1000:>8.2f} "
          f"{b['throughput_rps']:>14.0f} {b['p50_us']/1000:>8.2f} {b['p99_us']/1000:>8.2f} {b['throughput_rps']/max(a['throughput_rps'],1e-9):>6.2f}")
PY
