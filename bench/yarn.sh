#!/usr/bin/env bash
# What YARN costs a replica: the same closed-loop load (spindle loadtest) against N = 1..max
# replicas of `spindle serve`, first as bare processes, then as the containers of a YARN service
# (spindle yarn deploy / flex on scripts/hadoop.sh's cluster), both serving the same HDFS
# repository, bound to the same node addresses (127.0.0.2 and 127.0.0.4, the CPU partition's
# NodeManagers) and pinned to the same cores. YARN's DefaultContainerExecutor does not pin, so
# the script pins the two NodeManager JVMs (nm1, nm3) to the replicas' core sets while YARN
# starts containers: a container inherits its NodeManager's affinity from birth, so ONNX Runtime
# sizes its thread pool to it exactly as in a bare replica started under taskset (pinning a
# container after it started would leave it a pool sized for every core). Once the replicas are
# READY the NodeManagers and the service AM get every core back, so that only the replicas sit
# on the measured cores, as in the bare run (left pinned, they cost the replicas about 60 %). Prints
# inferences/s, p99 and the ratio YARN/bare per N. Target: YARN/bare >= 0.95. On two cores this
# measures YARN's overhead, not scaling (see bench/scaling.sh).
#
# Usage: eval "$(scripts/hadoop.sh start)"; bench/yarn.sh [MODEL]       (default: cifar10)
# Environment:
#   SPINDLE_HDFS_URL, SPINDLE_YARN_RM, SPINDLE_HADOOP3_DIR
#                  the cluster (what `scripts/hadoop.sh start` prints)
#   LAYOUT         one taskset core list per replica, space-separated; N runs from 1 to the
#                  number of lists, at most 2 (the CPU partition's nodes). Default: one core
#                  per replica ("0 1" on a 2-core machine).
#   LOADGEN_CORES  taskset core list for spindle loadtest (default: unpinned)
#   CONCURRENCY    closed-loop connections per replica (default 8)
#   WINDOW         measurement window (default 3s); PORT replicas' HTTP port (default 18720)
#   SETTLE         seconds to wait after the YARN replicas are READY before the load (default 15):
#                  the NodeManager and the service AM are busy for a while after a container
#                  starts, which is YARN's start-up cost, not what a serving replica costs
#   SPINDLE        the binary (default: target/release/spindle, built); the YARN tarball packs
#                  this same binary, so both sides run the same code
#   USER           the cluster's user (user.name), as for scripts/hadoop.sh
# Results: bench/results/yarn-<model>.csv (N, cores, bare and YARN inferences/s and p99 ms,
# ratio) and one loadtest JSON per N and side.
set -euo pipefail
model=${1:-cifar10}
: "${SPINDLE_HDFS_URL:?yarn.sh: start a cluster first: eval \"\$(scripts/hadoop.sh start)\"}"
: "${SPINDLE_YARN_RM:?yarn.sh: start a cluster first: eval \"\$(scripts/hadoop.sh start)\"}"
: "${SPINDLE_HADOOP3_DIR:?yarn.sh: start a cluster first: eval \"\$(scripts/hadoop.sh start)\"}"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
SPINDLE=$spindle
core_layout yarn.sh
user=${USER:-$(id -un)}
nodes=(127.0.0.2 127.0.0.4)
# The NodeManager of each node (scripts/hadoop.sh: nm1 = 127.0.0.2, nm3 = 127.0.0.4).
node_managers=("$SPINDLE_HADOOP3_DIR/nm1/pid" "$SPINDLE_HADOOP3_DIR/nm3/pid")
[ ${#layout[@]} -le ${#nodes[@]} ] || {
  echo "yarn.sh: LAYOUT has ${#layout[@]} core sets; the cluster's CPU partition has ${#nodes[@]} nodes" >&2
  exit 64
}
concurrency=${CONCURRENCY:-8}
settle=${SETTLE:-15}
port=${PORT:-18720}
rm_args=(--rm "$SPINDLE_YARN_RM" --user "$user")

base=$SPINDLE_HDFS_URL/bench/yarn-$(date +%s)
repo=$base/models
"$SPINDLE" zoo --out "$repo" --models "$model" > /dev/null
service=bench-yarn-$$

servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2> /dev/null || true; done
  servers=()
  "$SPINDLE" yarn destroy "$service" "${rm_args[@]}" > /dev/null 2>&1 || true
  pin_node_managers "0-$((cores - 1))" "0-$((cores - 1))"
}

# pin_node_managers SET1 SET2: every thread of nm1 and nm3 (and so their future containers).
pin_node_managers() {
  local sets=("$1" "$2") i
  for i in 0 1; do
    [ -f "${node_managers[$i]}" ] || { echo "yarn.sh: no NodeManager pid file ${node_managers[$i]}" >&2; return 1; }
    taskset -a -c -p "${sets[$i]}" "$(cat "${node_managers[$i]}")" > /dev/null
  done
}
trap cleanup EXIT

# The pid of the `spindle serve` bound to HOST:PORT (a bare one or a YARN container's).
serve_pid() {
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' < "$p/cmdline" 2> /dev/null | grep -q -- "serve .*--http-addr $1:$port "; then
      echo "${p#/proc/}"
      return
    fi
  done
  return 1
}

# CPU ticks (utime + stime) of every JVM (the cluster's daemons and, on the YARN side, the
# service AM): what they take from the replicas' cores during a run is printed beside it.
jvm_ticks() {
  local t=0 p f
  for p in $(pgrep -x java || true); do
    read -r -a f < "/proc/$p/stat" 2> /dev/null || continue
    t=$((t + f[13] + f[14]))
  done
  echo "$t"
}

# run SIDE N TARGET...: the load against N replicas; prints "inferences/s p99_ms".
run() {
  local side=$1 n=$2
  shift 2
  local json=$out/yarn-$model-$side-n$n.json jvm_before
  echo "== $model, $side: $n replica(s) on cores ${layout[*]:0:$n}, $((n * concurrency)) connections" >&2
  jvm_before=$(jvm_ticks)
  "${loadgen[@]}" "$SPINDLE" loadtest "$@" --model "$model" --concurrency $((n * concurrency)) \
    --warmup 1s --window "$window" --max-windows 6 --json "$json" >&2
  echo "yarn.sh: the JVMs used $(python3 -c "print(($(jvm_ticks) - $jvm_before) / $(getconf CLK_TCK))") CPU-s during the $side run" >&2
  python3 - "$json" << 'EOF'
import json, sys
level = json.load(open(sys.argv[1]))["levels"][0]
if level["errors"]["total"]:
    sys.exit(f"yarn.sh: {level['errors']['total']} errors in {sys.argv[1]}: {level['first_error']}")
print(f"{level['inferences_per_s']:.1f} {level['p99_us'] / 1000:.2f}")
EOF
}

declare -A bare
for n in $(seq 1 ${#layout[@]}); do
  urls=()
  for i in $(seq 0 $((n - 1))); do
    RUST_LOG=warn taskset -c "${layout[$i]}" "$SPINDLE" serve --repo "$repo" \
      --http-addr "${nodes[$i]}:$port" --grpc-addr "${nodes[$i]}:$((port + 1))" &
    servers+=($!)
    urls+=("http://${nodes[$i]}:$port")
  done
  for u in "${urls[@]}"; do
    for _ in $(seq 1 600); do curl -sf "$u/v2/health/ready" > /dev/null && break; sleep 0.1; done
    curl -sf "$u/v2/health/ready" > /dev/null || { echo "yarn.sh: $u never became ready" >&2; exit 1; }
  done
  bare[$n]=$(run bare "$n" --url "$(IFS=,; echo "${urls[*]}")")
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2> /dev/null || true; done
  servers=()
done

# wait_ready N: until N containers are READY, each on its own CPU node.
wait_ready() {
  local n=$1 status i pid
  for _ in $(seq 1 180); do
    status=$("$SPINDLE" yarn status "$service" "${rm_args[@]}" 2> /dev/null || true)
    [ "$(grep -c " READY .*:$port " <<< "$status")" -ge "$n" ] && break
    sleep 1
  done
  [ "$(grep -c " READY .*:$port " <<< "$status")" -ge "$n" ] ||
    { echo "yarn.sh: $n READY containers not seen in 180 s: $status" >&2; exit 1; }
  # Each replica runs on the core set its NodeManager was pinned to; the NodeManagers and the
  # AM (started pinned too) get every core back.
  pin_node_managers "0-$((cores - 1))" "0-$((cores - 1))"
  for pid in $(pgrep -f "org.apache.hadoop.yarn.service.ServiceMaster" || true); do
    taskset -a -c -p "0-$((cores - 1))" "$pid" > /dev/null
  done
  local k=0 node
  for node in "${nodes[@]}"; do
    pid=$(serve_pid "$node") || continue
    echo "yarn.sh: replica on $node: $(taskset -c -p "$pid")" >&2
    k=$((k + 1))
  done
  [ "$k" -ge "$n" ] || { echo "yarn.sh: $n replica processes not found: $status" >&2; exit 1; }
  # A container that has just started leaves its NodeManager (localization, the JIT) and the
  # service AM busy for a while on a small machine; the bare side has no such start to settle.
  sleep "$settle"
}

pin_node_managers "${layout[0]}" "${layout[1]:-${layout[0]}}"
"$SPINDLE" yarn deploy "${rm_args[@]}" --name "$service" --repo "$repo" --staging "$base/staging" \
  --replicas 1 --queue CPU_Q --node-partition CPU --cpus 1 --memory 1024 --port "$port" > /dev/null
declare -A yarn
for n in $(seq 1 ${#layout[@]}); do
  if [ "$n" != 1 ]; then
    pin_node_managers "${layout[0]}" "${layout[1]:-${layout[0]}}"
    "$SPINDLE" yarn flex "$service" "${rm_args[@]}" --replicas "$n" > /dev/null
  fi
  wait_ready "$n"
  yarn[$n]=$(run yarn "$n" --yarn-service "$SPINDLE_YARN_RM/$service" --yarn-user "$user")
done

csv=$out/yarn-$model.csv
echo "replicas,cores,bare_inferences_per_s,bare_p99_ms,yarn_inferences_per_s,yarn_p99_ms,yarn_over_bare" > "$csv"
echo
echo "$model, $concurrency connections per replica, generator ${LOADGEN_CORES:+on cores $LOADGEN_CORES}${LOADGEN_CORES:-unpinned} ($cores cores here):"
printf '%8s %8s %14s %10s %14s %10s %10s\n' replicas cores "bare inf/s" "bare p99" "YARN inf/s" "YARN p99" YARN/bare
for n in $(seq 1 ${#layout[@]}); do
  read -r br bp <<< "${bare[$n]}"
  read -r yr yp <<< "${yarn[$n]}"
  ratio=$(python3 -c "print(f'{$yr / $br:.3f}')")
  set=$(echo "${layout[*]:0:$n}" | sed 's/ /+/g')
  echo "$n,$set,$br,$bp,$yr,$yp,$ratio" >> "$csv"
  printf '%8s %8s %14.0f %8s ms %14.0f %8s ms %10s\n' "$n" "$set" "$br" "$bp" "$yr" "$yp" "$ratio"
done
echo "results: $csv"
