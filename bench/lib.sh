# Shared by the bench/*.sh scripts: source it first ("source bench/lib.sh" from the repository
# root, which it changes to). It sets `out` (bench/results), `repo` (the zoo written once under
# .cache/bench-repo), `spindle` (the release binary, built here, or $SPINDLE when set: e.g. a
# binary built earlier, so that a benchmark builds nothing), `window` (WINDOW, default 3s),
# ORT_DYLIB_PATH, and defines:
#
#   core_layout SCRIPT        reads LAYOUT (one taskset core list per replica, space-separated;
#                             default one core per replica, as many as cores) into the array
#                             `layout`, checks each set is usable, sets `cores` (nproc) and
#                             `loadgen` (taskset -c LOADGEN_CORES, or nothing); exits 64/69
#                             naming SCRIPT when LAYOUT is unusable or taskset is missing
#   free_port                 a free TCP port on 127.0.0.1
#   wait_ready URL [PATH]     poll URL+PATH (default /v2/health/ready) for up to 120 s
#   start_server NAME CMD...  run CMD in the background as server NAME (logs in .cache/NAME.log)
#   stop_server NAME          SIGTERM it and wait; every server left is stopped at exit
#   now                       seconds since the epoch, with nanoseconds
#   latest_version MODEL      the newest integer version directory of MODEL in $repo
#   measure NAME URL MODEL PROTOCOL LEVELS [LOADTEST ARGS...]
#                             one `spindle loadtest` sweep; results in $out/NAME.{json,csv,svg}
#   mlserver_start NAME MODEL PORT
#                             Seldon MLServer 1.7.1 with bench/mlserver/runtime.py (onnxruntime)
#                             serving $repo's MODEL, in its own venv (.cache/mlserver-venv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=bench/results
mkdir -p "$out" .cache
if [ "${ENGINE:-ort}" != tract ]; then
  ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/setup-ort.sh)}
  export ORT_DYLIB_PATH
fi
if [ -n "${SPINDLE:-}" ]; then
  spindle=$SPINDLE
else
  cargo build --release -q -p spindle-cli --bin spindle
  spindle=${CARGO_TARGET_DIR:-target}/release/spindle
fi
repo=.cache/bench-repo
window=${WINDOW:-3s}
# The zoo is written once per binary: a cached repository from another build may carry another
# config (criteo_ctr's engine shape changed on 2026-12-02), and a benchmark must serve what the
# binary under test writes.
stamp=$(sha256sum "$spindle" | cut -c1-16)
[ "$(cat "$repo/.written-by" 2>/dev/null)" = "$stamp" ] || rm -rf "$repo"
for zoo_model in cifar10 inception_v3 criteo_ctr; do
  [ -f "$repo/$zoo_model/config.toml" ] || { "$spindle" zoo --out "$repo" > /dev/null; break; }
done
echo "$stamp" > "$repo/.written-by"

core_layout() {
  local name=$1 set
  cores=$(nproc)
  read -r -a layout <<< "${LAYOUT:-$(seq -s ' ' 0 $((cores - 1)))}"
  [ ${#layout[@]} -gt 0 ] || { echo "$name: LAYOUT lists no core sets" >&2; exit 64; }
  command -v taskset > /dev/null || { echo "$name: taskset is missing (apt-get install util-linux)" >&2; exit 69; }
  for set in "${layout[@]}"; do
    taskset -c "$set" true 2> /dev/null || {
      echo "$name: core set '$set' is not usable here (this machine has cores 0-$((cores - 1)))" >&2
      exit 64
    }
  done
  loadgen=()
  [ -z "${LOADGEN_CORES:-}" ] || loadgen=(taskset -c "$LOADGEN_CORES")
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

now() { date +%s.%N; }

latest_version() { ls "$repo/$1" | grep -E '^[0-9]+$' | sort -n | tail -1; }

wait_ready() {
  local url=$1 path=${2:-/v2/health/ready} _
  for _ in $(seq 1 6000); do
    curl -sf "$url$path" > /dev/null && return 0
    sleep 0.02
  done
  echo "bench: $url$path was not ready within 120 s" >&2
  return 1
}

measure() {
  local name=$1 url=$2 model=$3 protocol=$4 levels=$5
  shift 5
  "$spindle" loadtest --url "$url" --model "$model" --protocol "$protocol" --concurrency "$levels" \
    --warmup "${WARMUP:-1s}" --window "$window" --max-windows "${MAX_WINDOWS:-6}" \
    --json "$out/$name.json" --csv "$out/$name.csv" --chart "$out/$name.svg" "$@"
}

mlserver_venv=.cache/mlserver-venv
mlserver_start() {
  local name=$1 model=$2 port=$3 work=.cache/mlserver-$2 version
  # uvloop 0.22 and later raise "There is no current event loop" in MLServer 1.7.1's inference
  # pool workers (asyncio.get_event_loop in worker.py), so every worker dies at startup: pin below.
  if [ ! -x "$mlserver_venv/bin/mlserver" ] || ! "$mlserver_venv/bin/python" -c 'import uvloop, sys; sys.exit(tuple(map(int, uvloop.__version__.split(".")[:2])) >= (0, 22))'; then
    python3 -m venv "$mlserver_venv"
    "$mlserver_venv/bin/pip" install -q "mlserver==1.7.1" "onnxruntime==1.31.1" "uvloop<0.22"
  fi
  rm -rf "$work"
  mkdir -p "$work"
  cp bench/mlserver/runtime.py "$work/"
  version=$(latest_version "$model")
  # MLServer's settings from the model's config.toml: the same tensors, so `spindle loadtest`
  # reads the same metadata from both servers.
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
  start_server "$name" bash -c 'cd "$1" && exec "$2" start .' mlserver "$work" "$PWD/$mlserver_venv/bin/mlserver"
}

declare -A bench_servers=()
start_server() {
  local name=$1
  shift
  RUST_LOG=${RUST_LOG:-warn} "$@" > ".cache/$name.log" 2>&1 &
  bench_servers[$name]=$!
}

stop_server() {
  local pid=${bench_servers[$1]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  unset "bench_servers[$1]"
}

stop_all_servers() {
  local name
  for name in "${!bench_servers[@]}"; do stop_server "$name"; done
}
trap stop_all_servers EXIT
