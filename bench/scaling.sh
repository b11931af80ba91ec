#!/usr/bin/env bash
# Scaling across replicas (the seed's Figure 20, for a server): N replicas of `spindle serve`,
# each pinned with taskset to its own core set, load spread across them by one
# `spindle loadtest --url A,B,...` at the same concurrency per replica, for N = 1..max; prints
# throughput and its ratio to N x the single replica's. Target: >= 0.9 x linear.
#
# Usage: bench/scaling.sh [MODEL]                    (default: cifar10)
# Environment:
#   LAYOUT         one taskset core list per replica, space-separated; N runs from 1 to the
#                  number of lists. Default: one core per replica, as many replicas as cores
#                  ("0 1" on a 2-core machine). On a 16-core machine, e.g. "0-3 4-7 8-11"
#                  leaves cores 12-15 for the generator.
#   LOADGEN_CORES  taskset core list for spindle loadtest (default: unpinned). On a 2-core
#                  machine there is no core to spare, so the generator shares the replicas'
#                  cores and N=2 understates what two nodes would do; say so with the result.
#   CONCURRENCY    closed-loop connections per replica (default 8)
#   WINDOW         measurement window (default 3s); ENGINE (default ort); PROTOCOL
#                  (default http-binary); PORT first replica's port (default 18700)
#   SPINDLE        the binary (default: target/release/spindle, built)
# Results: bench/results/scaling-<model>.csv (N, cores, inferences/s, ratio) and one
# loadtest JSON per N.
set -euo pipefail
model=${1:-cifar10}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
core_layout scaling
concurrency=${CONCURRENCY:-8}
engine=${ENGINE:-ort}
protocol=${PROTOCOL:-http-binary}
port=${PORT:-18700}

servers=()
stop_servers() {
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2> /dev/null || true; done
  servers=()
}
trap stop_servers EXIT

csv=$out/scaling-$model.csv
echo "replicas,cores,inferences_per_s,ratio_to_linear" > "$csv"
single=""
for n in $(seq 1 ${#layout[@]}); do
  urls=(); grpc_urls=()
  for i in $(seq 0 $((n - 1))); do
    p=$((port + i))
    if curl -s -o /dev/null "127.0.0.1:$p/v2/health/live"; then
      echo "scaling: something already answers on port $p; pick another base with PORT=" >&2
      exit 1
    fi
    RUST_LOG=warn taskset -c "${layout[$i]}" "$spindle" serve --repo "$repo" --engine "$engine" \
      --http-addr "127.0.0.1:$p" --grpc-addr "127.0.0.1:$((p + 1000))" &
    servers+=($!)
    urls+=("http://127.0.0.1:$p"); grpc_urls+=("http://127.0.0.1:$((p + 1000))")
  done
  for u in "${urls[@]}"; do
    for _ in $(seq 1 600); do curl -sf "$u/v2/health/ready" > /dev/null && break; sleep 0.1; done
    curl -sf "$u/v2/health/ready" > /dev/null || { echo "scaling: $u never became ready" >&2; exit 1; }
  done
  # A replica that failed to start must not be replaced by whatever else answers on its port.
  for pid in "${servers[@]}"; do
    kill -0 "$pid" 2> /dev/null || { echo "scaling: a replica exited at startup (see its log above)" >&2; exit 1; }
  done
  [ "$protocol" != grpc ] || urls=("${grpc_urls[@]}")
  echo "== $model: $n replica(s) on cores ${layout[*]:0:$n}, $((n * concurrency)) connections"
  list=$(IFS=,; echo "${urls[*]}")
  "${loadgen[@]}" "$spindle" loadtest --url "$list" --model "$model" --protocol "$protocol" \
    --concurrency $((n * concurrency)) --warmup 1s --window "$window" --max-windows 6 \
    --json "$out/scaling-$model-n$n.json"
  stop_servers
  rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["levels"][0]["inferences_per_s"])' \
    "$out/scaling-$model-n$n.json")
  [ -n "$single" ] || single=$rate
  ratio=$(python3 -c "print(f'{$rate / ($n * $single):.3f}')")
  echo "$n,${layout[*]:0:$n},$rate,$ratio" | sed 's/ /+/g' >> "$csv"
done

echo
echo "$model, $protocol, $concurrency connections per replica, generator ${LOADGEN_CORES:+on cores $LOADGEN_CORES}${LOADGEN_CORES:-unpinned} ($cores cores here):"
printf '%8s %14s %14s %18s\n' replicas cores inferences/s "ratio to N x one"
tail -n +2 "$csv" | while IFS=, read -r n set rate ratio; do
  printf '%8s %14s %14.0f %18s\n' "$n" "$set" "$rate" "$ratio"
done
echo "results: $csv"
