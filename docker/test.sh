#!/usr/bin/env bash
# The container deployment, end to end: builds every image from our own base (docker/build.sh),
# brings up docker/compose.yaml (HDFS NameNode + 2 DataNodes, the publish job, 2 spindle
# replicas serving from HDFS) and runs these checks, each ending in one line
# `docker check: PASS|FAIL NAME ...` on stdout (scripts/test.sh counts them):
#   compose-loadtest   the load test against both replicas finishes with zero errors;
#   replicas-serve     both replicas answered requests (their /metrics), are healthy, not root;
#   stop-under-load    callers (spindle infer --repeat-for: the client library, 4 loops) run
#                      while `docker stop` takes a replica away: it drains and exits 0, and no
#                      caller sees a failed request;
#   network-cut        the same while `docker network disconnect` cuts a replica off for 10 s:
#                      no failed request, and no call slower than two attempt timeouts;
#   datanode-reload    a DataNode is stopped, then a new model version appears on HDFS: both
#                      replicas load it from the other DataNode (replication 2), callers see
#                      no failed request and get answers from the new version.
# Needs Docker with docker-compose, root (debootstrap), Debian's mirror and PyPI. About 4
# minutes with cached images; see the README for a run from nothing.
#
# Env: SPINDLE_BIN  a spindle binary built already (default: docker/build.sh runs cargo build)
#      SPINDLE_KEEP_IMAGE=1  keep this run's spindle image (default: removed at exit)
set -euo pipefail
cd "$(dirname "$0")/.."
# --list: the checks' names, one a line (scripts/test.sh reports them as skipped without Docker).
if [ "${1:-}" = --list ]; then
  sed -n 's/^#   \([a-z][a-z-]*\) .*/\1/p' "$0"
  exit 0
fi
command -v docker-compose >/dev/null || {
  echo "docker check: FAIL prerequisites: docker-compose is missing (SPINDLE_SKIP_DOCKER=1 skips these checks)"
  exit 1
}
project=spindle-test-$(date +%s)-$$
net=${project}_default
# Our own tag, so a concurrent build elsewhere cannot swap the binary under this run.
export SPINDLE_IMAGE=spindle:$project
compose=(docker-compose -f docker/compose.yaml -p "$project")
work=$(mktemp -d /tmp/spindle-docker-test.XXXXXX)
passed=0
failed=0
say() { echo "docker/test.sh: $*" >&2; }
pass() { echo "docker check: PASS $1${2:+: $2}"; passed=$((passed + 1)); }
fail() {
  echo "docker check: FAIL $1: $2"
  failed=$((failed + 1))
  "${compose[@]}" logs --no-color --tail 20 >&2 2>/dev/null || true
}
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  docker ps -aq --filter "name=^$project-" | xargs -r docker rm -f >/dev/null 2>&1 || true
  "${compose[@]}" down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  [ "${SPINDLE_KEEP_IMAGE:-}" = 1 ] || docker image rm "$SPINDLE_IMAGE" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# A timeout's SIGTERM still runs the cleanup (bash runs EXIT traps on exit, not on a signal).
trap 'exit 143' TERM INT
finish() {
  say "$passed passed, $failed failed"
  if [ "$failed" = 0 ]; then exit 0; fi
  exit 1
}

docker/lint.sh
if ! timeout 1500 docker/build.sh >"$work/build.log" 2>&1; then
  cat "$work/build.log" >&2
  fail images "docker/build.sh failed (output above)"
  finish
fi

container() { "${compose[@]}" ps -q "$1"; }
# probe SERVICE PATH: whether the replica answers 200 on PATH, asked from inside its container
# (independent of the networks and published ports this script disconnects).
probe() {
  docker exec "$(container "$1")" bash -c "exec 3<>/dev/tcp/127.0.0.1/8000 \
    && printf 'GET $2 HTTP/1.0\r\n\r\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"
}
host_port() { "${compose[@]}" port "$1" 8000 | awk -F: '{ print $NF }'; }
wait_healthy() { # SERVICE SECONDS
  local id
  id=$(container "$1")
  for _ in $(seq "$2"); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && return 0
    sleep 1
  done
  return 1
}

# --- compose-loadtest, replicas-serve ----------------------------------------------------------
say "compose up (HDFS, publish, 2 replicas, loadtest)"
if ! timeout 600 "${compose[@]}" up --no-color --exit-code-from loadtest loadtest >"$work/up.log" 2>&1; then
  cat "$work/up.log" >&2
  fail compose-loadtest "the load test did not finish successfully"
  finish
fi
# Table rows: concurrency, inferences/s, requests/s, p50..p99, errors, stable (printed as each
# level ends and again in the final table: keep one of each).
rows=$(grep -E "loadtest_1 +\| +[0-9]+ +[0-9.]+ " "$work/up.log" | sed "s/.*| *//" | awk '!seen[$0]++' || true)
errors=$(echo "$rows" | awk 'NF { s += $8; n++ } END { print n ? s : "none" }')
echo "$rows" >&2
if [ "$errors" = 0 ]; then
  pass compose-loadtest "$(echo "$rows" | grep -c .) levels, 0 errors"
else
  fail compose-loadtest "errors in the load test: $errors"
fi

problems=""
for replica in spindle1 spindle2; do
  served=$(curl -fs "http://127.0.0.1:$(host_port "$replica")/metrics" \
    | awk '/^spindle_requests_total\{.*outcome="success"/ { s += $2 } END { print s + 0 }')
  id=$(container "$replica")
  health=$(docker inspect -f '{{.State.Health.Status}}' "$id")
  user=$(docker exec "$id" id -u)
  say "$replica served $served requests, $health, uid $user"
  [ "${served%.*}" -gt 0 ] || problems+=" $replica served no request;"
  [ "$health" = healthy ] || problems+=" $replica is $health;"
  [ "$user" != 0 ] || problems+=" $replica runs as root;"
done
if [ -z "$problems" ]; then pass replicas-serve "both served, healthy, non-root"; else fail replicas-serve "$problems"; fi

# --- callers: spindle infer --repeat-for inside the compose network ---------------------------
# start_callers NAME SECONDS: 4 loops sharing one client over both replicas, 2 s per attempt.
start_callers() {
  docker run --rm --name "$project-$1" --network "$net" -v "$PWD/docs:/docs:ro" "$SPINDLE_IMAGE" \
    infer --url http://spindle1:8000,http://spindle2:8000 --model cifar10 \
    --json /docs/cifar10-request.json --repeat-for "$2s" --callers 4 --timeout 2s \
    >"$work/$1.json" 2>"$work/$1.err" &
  callers_pid=$!
}
# judge NAME MAX_MS [VERSION]: prints what the callers saw; fails on a failed request, a call
# slower than MAX_MS, too few answers or none in the last seconds, or (with VERSION) no answer
# from that version. Call it after `wait "$callers_pid"`.
judge() {
  python3 - "$work/$1.json" "$2" "${3:-}" <<'PY' || { cat "$work/$1.err" >&2; return 1; }
import json, sys
path, max_ms, version = sys.argv[1], float(sys.argv[2]), sys.argv[3]
try:
    s = json.load(open(path))
except Exception as e:
    sys.exit(f"no summary from the callers ({e})")
slow = sum(1 for t in s["timeline"] if t["max_ms"] > 1000)
print(f"{s['requests']} requests, {s['failed']} failed, versions {s['versions']}, "
      f"p50 {s['latency_ms']['p50']:.0f} ms, p99 {s['latency_ms']['p99']:.0f} ms, "
      f"max {s['latency_ms']['max']:.0f} ms, {slow} s with a call over 1 s")
problems = []
if s["failed"]:
    problems.append(f"{s['failed']} failed: {s['errors']}")
if s["latency_ms"]["max"] > max_ms:
    problems.append(f"slowest call {s['latency_ms']['max']:.0f} ms > {max_ms:.0f} ms")
if s["answered"] < 20 or any(t["answered"] == 0 for t in s["timeline"][-4:-1]):
    problems.append("too few answers, or none at the end: " + json.dumps(s["timeline"]))
if version and version not in s["versions"]:
    problems.append(f"no answer from version {version}")
if problems:
    sys.exit("; ".join(problems))
PY
}

# --- stop-under-load ---------------------------------------------------------------------------
say "stop-under-load: docker stop spindle1 while callers run"
id1=$(container spindle1)
start_callers stop 16
sleep 5
"${compose[@]}" stop -t 30 spindle1 >/dev/null 2>&1
code=$(docker inspect -f '{{.State.ExitCode}}' "$id1")
wait "$callers_pid" || true
if ! seen=$(judge stop 5000 2>&1); then
  fail stop-under-load "$seen"
elif [ "$code" != 0 ]; then
  fail stop-under-load "spindle1 exited $code on docker stop (SIGTERM should drain and exit 0); callers: $seen"
else
  pass stop-under-load "spindle1 drained and exited 0; callers: $seen"
fi
"${compose[@]}" start spindle1 >/dev/null 2>&1
wait_healthy spindle1 120 || say "spindle1 is not healthy again after docker start"

# --- network-cut -------------------------------------------------------------------------------
say "network-cut: spindle2 disconnected for 10 s while callers run"
id2=$(container spindle2)
start_callers cut 24
sleep 5
docker network disconnect "$net" "$id2"
sleep 10
docker network connect --alias spindle2 "$net" "$id2"
wait "$callers_pid" || true
# Two attempt timeouts (2 s each) and the backoffs between: what one call may pay at worst.
if seen=$(judge cut 4500 2>&1); then
  pass network-cut "callers: $seen"
else
  fail network-cut "$seen"
fi

# --- datanode-reload ---------------------------------------------------------------------------
# Version 2 is written to a staging path while both DataNodes run (replication 2: each block on
# both), datanode1 is stopped, and only then is the version renamed into the repository (a
# NameNode-only operation). The NameNode does not yet know datanode1 is gone and still lists it
# for every block, so the replicas' reload must read from datanode2.
say "datanode-reload: datanode1 stopped, then version 2 appears on HDFS"
hdfs_fs() { docker exec "$(container namenode)" java -cp '/var/lib/hdfs/conf:/opt/hadoop/jars/*' \
  org.apache.hadoop.fs.FsShell -fs hdfs://namenode:8020 "$@" 2>>"$work/fs.log"; }
if ! docker run --rm --name "$project-stage" --network "$net" "$SPINDLE_IMAGE" \
  zoo --out hdfs://namenode:8020/staging --models cifar10 --seed 2 >>"$work/fs.log" 2>&1; then
  cat "$work/fs.log" >&2
  fail datanode-reload "could not write version 2 to hdfs://namenode:8020/staging"
  finish
fi
# The callers must outlast the reload: stopping datanode1 (up to 10 s), the rename and the
# report (two JVM starts), then up to 55 s for both replicas to load version 2, of which about
# 35 s went to the replicas' poll and their connect timeout on the stopped DataNode in one run.
start_callers reload 75
sleep 3
"${compose[@]}" stop -t 10 datanode1 >/dev/null 2>&1
hdfs_fs -mv /staging/cifar10/1 /models/cifar10/2 || say "FsShell -mv failed: $(tail -3 "$work/fs.log")"
live=$(docker exec "$(container namenode)" java -cp '/var/lib/hdfs/conf:/opt/hadoop/jars/*' \
  org.apache.hadoop.hdfs.tools.DFSAdmin -fs hdfs://namenode:8020 -report 2>/dev/null \
  | grep -o "Live datanodes ([0-9]*)" || true)
say "after the rename the NameNode reports: ${live:-nothing}"
loaded=""
for _ in $(seq 55); do
  loaded=""
  for replica in spindle1 spindle2; do
    probe "$replica" /v2/models/cifar10/versions/2/ready && loaded+=" $replica"
  done
  [ "$loaded" = " spindle1 spindle2" ] && break
  sleep 1
done
say "version 2 ready on:${loaded:- none}; replica log lines naming datanode1: $("${compose[@]}" logs --no-color spindle1 spindle2 2>&1 | grep -c datanode1 || true)"
wait "$callers_pid" || true
if ! seen=$(judge reload 5000 2 2>&1); then
  fail datanode-reload "$seen"
elif [ "$loaded" != " spindle1 spindle2" ]; then
  logs=$("${compose[@]}" logs --no-color spindle1 spindle2 2>&1 | grep -iE "cifar10|poll|hdfs" | tail -5)
  fail datanode-reload "version 2 loaded on:${loaded:- none}; replica logs: $logs"
else
  pass datanode-reload "both replicas loaded version 2 with datanode1 stopped; callers: $seen"
fi
finish
