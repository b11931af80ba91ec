#!/usr/bin/env bash
# Serving benchmark (issue: serving core). Side by side in one run on this machine:
#   (a) in-process ONNX Runtime at each batch size: the limit (spindle bench engine);
#   (b) spindle serve over HTTP with binary tensors, single-image requests from spindle loadtest
#       at concurrency 1, 4, 16, 64;
# then the ratios (b)/(a). Results land in bench/results/serving-<model>.{json,csv,svg} and
# inprocess-<model>.json. bench/suite.sh runs this beside gRPC, tract and MLServer.
#
# Usage: bench/serving.sh [MODEL...]      (default: cifar10 inception_v3)
# Environment: WINDOW (default 3s), ENGINE (default ort), PORT (default 18000).
source "$(dirname "$0")/lib.sh"
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(cifar10 inception_v3)
engine=${ENGINE:-ort}
port=${PORT:-18000}
MAX_WINDOWS=${MAX_WINDOWS:-6}

for model in "${models[@]}"; do
  case $model in
    inception_v3) batches=1,2,4,8,16; levels=1,4,16 ;;
    *) batches=1,8,16,32,64,128; levels=1,4,16,64 ;;
  esac
  echo "== $model: (a) in-process $engine"
  "$spindle" bench engine --repo "$repo" --model "$model" --engine "$engine" \
    --batches "$batches" --duration "$window" --json "$out/inprocess-$model.json"

  echo "== $model: (b) spindle serve, HTTP binary tensors, batch-1 requests"
  start_server spindle "$spindle" serve --repo "$repo" --engine "$engine" --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
  wait_ready "http://127.0.0.1:$port"
  measure "serving-$model" "http://127.0.0.1:$port" "$model" http-binary "$levels"
  stop_server spindle

  python3 - "$out/inprocess-$model.json" "$out/serving-$model.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
best = a["best"]; one = next(r for r in a["results"] if r["batch"] == 1)
print(f"\n{a['model']}: in-process best {best['images_per_s']:.0f} images/s at batch {best['batch']}; "
      f"batch-1 p50 {one['p50_us']/1000:.3f} ms")
print(f"{'concurrency':>11} {'images/s':>10} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50 - in-process b1':>20}")
for level in b["levels"]:
    print(f"{level['concurrency']:>11} {level['inferences_per_s']:>10.0f} {level['inferences_per_s']/best['images_per_s']:>7.2f} "
          f"{level['p50_us']/1000:>8.3f} {level['p99_us']/1000:>8.3f} {(level['p50_us']-one['p50_us'])/1000:>17.3f} ms")
PY
done
