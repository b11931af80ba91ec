#!/usr/bin/env bash
# The benchmark suite (issue: loadtest and benchmark suite), one command. For cifar10,
# inception_v3 and criteo_ctr, side by side in one run on this machine:
#   1. in-process ONNX Runtime at each batch size (`spindle bench engine`): the limit;
#   2. spindle serve with the ONNX Runtime engine: HTTP binary tensors, gRPC, KServe v2 JSON,
#      and HTTP binary with real samples (`--input-data`: JPEG images decoded and preprocessed
#      by the server, Criteo TSV rows hashed by the server);
#   3. spindle serve with the tract engine, HTTP binary tensors;
#   4. Seldon MLServer 1.7.1 with an onnxruntime custom runtime, KServe v2 JSON (it has no
#      binary tensor extension), in its own venv (as bench/mlserver.sh);
#   5. Ray Serve with a `@serve.batch` deployment over onnxruntime behind KServe v2 JSON routes
#      (bench/ray/serve_app.py), in its own venv (bench/ray/start.sh);
#   6. BentoML: a batchable onnxruntime service behind KServe v2 JSON routes
#      (bench/bentoml/service.py), in its own venv (bench/bentoml/start.sh).
#   7. TorchServe 0.12.0: its own server-side batching and KServe v2 infer route in front of a
#      custom onnxruntime handler (bench/torchserve/handler.py), in its own venv
#      (bench/torchserve/start.sh).
# Every server is measured by `spindle loadtest` at the same concurrency levels; cifar10 and
# inception_v3 requests carry one image, criteo_ctr requests ROWS rows. Generated criteo_ctr ids
# are drawn from each feature's slice of the id space (the server refuses others) in the
# version's features.toml, given to every configuration with --features so that Spindle and
# the peers (which do not describe the model) get the same requests. A configuration whose
# every request failed is named at the top of suite.txt and fails the suite. Ratios to the in-process
# limit are printed; results land in bench/results/suite-<model>-<config>.{json,csv,svg} (one
# loadtest chart each), suite.csv, suite.txt and suite.svg (best throughput of every
# configuration as a fraction of the limit).
#
# Usage: bench/suite.sh [MODEL...]           (default: cifar10 inception_v3 criteo_ctr)
# Environment: WINDOW (default 2s), MAX_WINDOWS (default 4), WARMUP (default 1s), LEVELS
#   (concurrency levels for every model, e.g. 1,16; default per model), ROWS (criteo rows per
#   request, default 64), SKIP (configurations to leave out, e.g. "mlserver ray bentoml
#   torchserve tract"), PORT (first of eleven ports, default 18520). The peers batch up to
#   MAX_BATCH (32) requests; MLServer, Ray and TorchServe wait up to MAX_BATCH_TIME (0.002 s),
#   BentoML sizes batches adaptively.
source "$(dirname "$0")/lib.sh"
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(cifar10 inception_v3 criteo_ctr)
MAX_WINDOWS=${MAX_WINDOWS:-4}
rows=${ROWS:-64}
skip=" ${SKIP:-} "
started=$(now)

# Real samples: a few JPEGs made with Pillow (in .cache/bench-venv), Criteo rows from the
# generator; made once.
samples=.cache/bench-samples
if [ ! -f "$samples/done" ]; then
  [ -x .cache/bench-venv/bin/python ] || { python3 -m venv .cache/bench-venv && .cache/bench-venv/bin/pip install -q pillow; }
  rm -rf "$samples"
  .cache/bench-venv/bin/python - "$samples" <<'PY'
import random, sys
from pathlib import Path
from PIL import Image, ImageDraw, ImageFilter
out = Path(sys.argv[1])
random.seed(7)
for model, size, count in [("cifar10", (32, 32), 16), ("inception_v3", (500, 375), 16)]:
    (out / model).mkdir(parents=True)
    for i in range(count):
        # A photo-like picture: a gradient sky, shapes, noise, a slight blur; JPEG quality 90.
        w, h = size
        img = Image.new("RGB", size)
        px = img.load()
        top, bottom = [random.randrange(256) for _ in range(3)], [random.randrange(256) for _ in range(3)]
        for y in range(h):
            c = tuple(int(t + (b - t) * y / h) for t, b in zip(top, bottom))
            for x in range(w):
                px[x, y] = tuple(min(255, max(0, v + random.randint(-12, 12))) for v in c)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = random.randrange(w), random.randrange(h)
            box = [x0, y0, x0 + random.randrange(2, w // 2 + 3), y0 + random.randrange(2, h // 2 + 3)]
            fill = tuple(random.randrange(256) for _ in range(3))
            (draw.ellipse if random.random() < 0.5 else draw.rectangle)(box, fill=fill)
        img.filter(ImageFilter.GaussianBlur(0.8)).save(out / model / f"sample-{i:02}.jpg", quality=90)
PY
  "$spindle" data criteo --out "$samples/criteo-data" --days 1 --rows-per-day 20000 --shards-per-day 1 --seed 9 > /dev/null
  cat "$samples"/criteo-data/day_0/part-* > "$samples/criteo_ctr.tsv"
  rm -rf "$samples/criteo-data"
  touch "$samples/done"
fi

port=${PORT:-18520}
ort_http=$port; ort_grpc=$((port + 1)); tract_http=$((port + 2)); mls_port=$((port + 3)) # MLServer: +3..+5
ray_port=$((port + 6)); bentoml_port=$((port + 7)); torchserve_port=$((port + 8)) # TorchServe: +8..+10
# The peers' venvs are made before any server runs, so their installs are not timed as start-ups.
[[ $skip == *" ray "* ]] || bench/ray/start.sh setup > /dev/null
[[ $skip == *" bentoml "* ]] || bench/bentoml/start.sh setup > /dev/null
[[ $skip == *" torchserve "* ]] || bench/torchserve/start.sh setup > /dev/null
failed=()
# One configuration's sweep; one whose every request failed (loadtest exits non-zero) is
# recorded and the suite goes on to the next.
try_measure() {
  measure "$@" || failed+=("$1")
}
# One peer's sweep, unless SKIP names it: START... starts its server (as server KEY, on PORT);
# wait for the model, measure KServe v2 JSON at every level, stop the server.
measure_peer() {
  local key=$1 port=$2 label=$3
  shift 3
  [[ $skip != *" $key "* ]] || return 0
  echo "== $model: $label, KServe v2 JSON"
  "$@"
  wait_ready "http://127.0.0.1:$port" "/v2/models/$model/ready"
  try_measure "$name-$key-http-json" "http://127.0.0.1:$port" "$model" http-json "$levels" --batch "$batch" "${generated[@]}"
  stop_server "$key"
}
echo "== starting spindle serve (ort: HTTP $ort_http, gRPC $ort_grpc; tract: HTTP $tract_http)"
start_server spindle-ort "$spindle" serve --repo "$repo" --engine ort --poll-interval 0 \
  --http-addr "127.0.0.1:$ort_http" --grpc-addr "127.0.0.1:$ort_grpc"
[[ $skip == *" tract "* ]] || start_server spindle-tract "$spindle" serve --repo "$repo" --engine tract \
  --poll-interval 0 --http-addr "127.0.0.1:$tract_http" --no-grpc
wait_ready "http://127.0.0.1:$ort_http"
[[ $skip == *" tract "* ]] || wait_ready "http://127.0.0.1:$tract_http"

for model in "${models[@]}"; do
  batch=1
  case $model in
    cifar10) levels=1,4,16; batches=1,8,32,128; data=$samples/cifar10 ;;
    inception_v3) levels=1,2; batches=1,4,8; data=$samples/inception_v3 ;;
    criteo_ctr) levels=1,4,16; batches=64,256,1024,4096; batch=$rows; data=$samples/criteo_ctr.tsv ;;
    *) echo "suite.sh: no settings for model '$model' (cifar10, inception_v3, criteo_ctr)" >&2; exit 64 ;;
  esac
  levels=${LEVELS:-$levels}
  name=suite-$model
  version=$(latest_version "$model")
  generated=()
  [ ! -f "$repo/$model/$version/features.toml" ] || generated=(--features "$repo/$model/$version/features.toml")
  echo "== $model: in-process ONNX Runtime, batches $batches"
  "$spindle" bench engine --repo "$repo" --model "$model" --engine ort --batches "$batches" \
    --duration "$window" --json "$out/$name-inprocess.json"
  echo "== $model: spindle (ort), HTTP binary"
  try_measure "$name-ort-http-binary" "http://127.0.0.1:$ort_http" "$model" http-binary "$levels" --batch "$batch" "${generated[@]}"
  echo "== $model: spindle (ort), gRPC"
  try_measure "$name-ort-grpc" "grpc://127.0.0.1:$ort_grpc" "$model" grpc "$levels" --batch "$batch" "${generated[@]}"
  echo "== $model: spindle (ort), HTTP binary, real samples from $data"
  try_measure "$name-ort-samples" "http://127.0.0.1:$ort_http" "$model" http-binary "$levels" --batch "$batch" --input-data "$data"
  echo "== $model: spindle (ort), KServe v2 JSON"
  try_measure "$name-ort-http-json" "http://127.0.0.1:$ort_http" "$model" http-json "$levels" --batch "$batch" "${generated[@]}"
  if [[ $skip != *" tract "* ]]; then
    echo "== $model: spindle (tract), HTTP binary"
    try_measure "$name-tract-http-binary" "http://127.0.0.1:$tract_http" "$model" http-binary "$levels" --batch "$batch" "${generated[@]}"
  fi
  measure_peer mlserver "$mls_port" "MLServer 1.7.1 + onnxruntime" mlserver_start mlserver "$model" "$mls_port"
  measure_peer ray "$ray_port" "Ray Serve + onnxruntime (@serve.batch)" start_server ray bench/ray/start.sh \
    "$repo/$model/config.toml" "$PWD/$repo/$model/$version/model.onnx" "$ray_port"
  # BentoML's max_batch_size counts rows: as many as MAX_BATCH requests carry.
  MAX_BATCH_ROWS=$((${MAX_BATCH:-32} * batch)) measure_peer bentoml "$bentoml_port" \
    "BentoML + onnxruntime (adaptive batching)" start_server bentoml bench/bentoml/start.sh \
    "$repo/$model/config.toml" "$repo/$model/$version/model.onnx" "$bentoml_port"
  measure_peer torchserve "$torchserve_port" "TorchServe 0.12.0 + onnxruntime (batchSize ${MAX_BATCH:-32} requests)" \
    start_server torchserve bench/torchserve/start.sh "$repo/$model/config.toml" \
    "$repo/$model/$version/model.onnx" "$torchserve_port"
done
stop_all_servers

{
  for name in "${failed[@]}"; do
    echo "FAILED: $name: spindle loadtest failed (every request of a level failed, or no load could start); see the suite's log and $out/$name.json"
  done
  python3 bench/suite_report.py "$out" "${models[@]}"
} | tee "$out/suite.txt"
echo "suite finished in $(python3 -c "print(round($(now) - $started))") s; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/suite.txt"
[ ${#failed[@]} -eq 0 ] || { echo "suite.sh: ${#failed[@]} configuration(s) failed: ${failed[*]}" >&2; exit 1; }
