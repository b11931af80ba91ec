#!/usr/bin/env bash
# The container benchmark: the scaling run of bench/scaling.sh (one `spindle loadtest`,
# CONCURRENCY connections per replica, load spread over the replicas) for N = 1 and 2 replicas,
# three ways, interleaved (the order rotating) and repeated REPS times, medians compared side by side:
#   bare-fixed       bare `spindle serve` processes (127.0.0.2, 127.0.0.3 on one port, as YARN
#                    containers on separate nodes; pinned to one core each) given as --url
#   container-fixed  the compose deployment's replicas (docker/compose.yaml: serving from HDFS,
#                    pinned to the same cores with docker update --cpuset-cpus), addressed by
#                    their bridge IPs (no docker-proxy in the path)
#   container-host   the same image, repository and pinning, but on the host's network
#                    (docker run --network host, bound to 127.0.0.4 and 127.0.0.5), as YARN's
#                    Docker runtime runs containers by default: the bridge's cost separated from
#                    the rest of what a container is (namespaces, cgroups, seccomp)
# Replicas found through a real ResourceManager, as YARN containers, are bench/yarn.sh's: it
# compares YARN containers with bare processes on scripts/hadoop.sh's Hadoop 3 cluster.
#
# Usage: bench/deploy.sh      (root and Docker, as docker/test.sh; about 6 minutes)
# Env: CONCURRENCY (8 per replica), WINDOW (2s), REPS (4), PORT (18420, the bare replicas')
# Results: bench/results/deploy.csv (every run) and bench/results/deploy.txt (medians, ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${CONCURRENCY:-8}
window=${WINDOW:-2s}
reps=${REPS:-4}
port=${PORT:-18420}
model=cifar10
out=bench/results
mkdir -p "$out" .cache
[ "$(nproc)" -ge 2 ] || { echo "deploy: needs 2 cores (one per replica)" >&2; exit 64; }
ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$(scripts/setup-ort.sh)}; export ORT_DYLIB_PATH
cargo build --release -q --bin spindle
spindle=${CARGO_TARGET_DIR:-target}/release/spindle
repo=.cache/bench-repo
[ -f "$repo/$model/config.toml" ] || "$spindle" zoo --out "$repo" > /dev/null

project=spindle-bench-$$
export SPINDLE_IMAGE=spindle:$project
compose=(docker-compose -f docker/compose.yaml -p "$project")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
  docker rm -f "$project-host1" "$project-host2" > /dev/null 2>&1 || true
  "${compose[@]}" down -v --remove-orphans -t 5 > /dev/null 2>&1 || true
  docker image rm "$SPINDLE_IMAGE" > /dev/null 2>&1 || true
}
trap cleanup EXIT

if curl -s -o /dev/null "127.0.0.1:$port" || curl -s -o /dev/null "127.0.0.2:$port"; then
  echo "deploy: something already answers on port $port; pick another with PORT=" >&2
  exit 1
fi
bare=()
for i in 0 1; do
  host=127.0.0.$((i + 2))
  RUST_LOG=warn taskset -c "$i" "$spindle" serve --repo "$repo" --poll-interval 5s \
    --http-addr "$host:$port" --grpc-addr "$host:$((port + 1))" &
  pids+=($!)
  bare+=("http://$host:$port")
done

echo "deploy: building images and bringing up the compose deployment" >&2
SPINDLE_BIN=$spindle docker/build.sh > /dev/null 2>&1
"${compose[@]}" up -d spindle1 spindle2 > /dev/null 2>&1
containers=()
for i in 1 2; do
  id=$("${compose[@]}" ps -q "spindle$i")
  # Restarted after pinning, so the server sizes its engine threads for one core, as the
  # taskset-pinned bare processes do (pinning a running server would oversubscribe the core).
  docker update --cpuset-cpus "$((i - 1))" "$id" > /dev/null
  docker restart -t 30 "$id" > /dev/null
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
  containers+=("http://$ip:8000")
done
# The host-network pair reads the same HDFS repository through the NameNode's bridge address
# (the host reaches the bridge; the DataNodes register with their bridge addresses too).
namenode=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
  "$("${compose[@]}" ps -q namenode)")
hosted=()
for i in 1 2; do
  host=127.0.0.$((i + 3))
  docker run -d --name "$project-host$i" --network host --cpuset-cpus "$((i - 1))" \
    "$SPINDLE_IMAGE" serve --repo "hdfs://$namenode:8020/models" --poll-interval 5s \
    --cache-dir /var/lib/spindle/cache --http-addr "$host:$port" --grpc-addr "$host:$((port + 1))" \
    > /dev/null
  hosted+=("http://$host:$port")
done
for u in "${bare[@]}" "${containers[@]}" "${hosted[@]}"; do
  for _ in $(seq 1 300); do curl -sf "$u/v2/health/ready" > /dev/null && break; sleep 0.5; done
  curl -sf "$u/v2/health/ready" > /dev/null || { echo "deploy: $u never became ready" >&2; exit 1; }
done
for pid in "${pids[@]}"; do
  kill -0 "$pid" 2> /dev/null || { echo "deploy: a replica exited at startup" >&2; exit 1; }
done

csv=$out/deploy.csv
echo "rep,replicas,mode,inferences_per_s,p50_us,p99_us,errors" > "$csv"
json=$(mktemp)
run() { # REP N MODE TARGET-FLAGS...
  local rep=$1 n=$2 mode=$3
  shift 3
  "$spindle" loadtest "$@" --model "$model" --concurrency $((n * concurrency)) --warmup 1s \
    --window "$window" --max-windows 5 --json "$json" > /dev/null
  python3 - "$json" "$rep" "$n" "$mode" >> "$csv" <<'PY'
import json, sys
path, rep, n, mode = sys.argv[1:]
level = json.load(open(path))["levels"][0]
print(f"{rep},{n},{mode},{level['inferences_per_s']:.1f},{level['p50_us']},{level['p99_us']},{level['errors']['total']}")
PY
  tail -n 1 "$csv" >&2
}
modes=(bare-fixed container-fixed container-host)
for rep in $(seq 1 "$reps"); do
  for n in 1 2; do
    # The order rotates from one repetition to the next, so that no mode always runs first
    # (or last) after the previous level.
    for k in 0 1 2; do
      mode=${modes[$(((k + rep - 1) % 3))]}
      case $mode in
        bare-fixed) target=(--url "$(IFS=,; echo "${bare[*]:0:$n}")") ;;
        container-fixed) target=(--url "$(IFS=,; echo "${containers[*]:0:$n}")") ;;
        container-host) target=(--url "$(IFS=,; echo "${hosted[*]:0:$n}")") ;;
      esac
      run "$rep" "$n" "$mode" "${target[@]}"
    done
  done
done
rm -f "$json"

python3 - "$csv" "$concurrency" "$window" "$reps" <<'PY' | tee "$out/deploy.txt"
import csv, statistics, sys, os
path, conc, window, reps = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
med = {}
for r in rows:
    med.setdefault((r["replicas"], r["mode"]), []).append(float(r["inferences_per_s"]))
errors = sum(int(r["errors"]) for r in rows)
print(f"cifar10, {conc} connections per replica, {window} windows, median of {reps} interleaved runs, "
      f"{os.cpu_count()} cores shared with other work; {errors} failed requests in all runs")
print(f"{'replicas':>8} {'bare-fixed':>11} {'container':>10} {'container/bare':>14}"
      f" {'host-net':>9} {'host-net/bare':>13}")
for n in ("1", "2"):
    fixed, cont, host = (statistics.median(med[(n, m)])
                         for m in ("bare-fixed", "container-fixed", "container-host"))
    print(f"{n:>8} {fixed:>11.0f} {cont:>10.0f} {cont / fixed:>14.3f}"
          f" {host:>9.0f} {host / fixed:>13.3f}")
PY
echo "results: $csv, $out/deploy.txt" >&2
