#!/usr/bin/env bash
# The container deployment, end to end: lints the Dockerfiles, builds every image from our own
# base (docker/build.sh), brings up docker/compose.yaml (HDFS NameNode + 2 DataNodes, the publish
# job, 2 spindle replicas serving from HDFS) and checks:
#   1. the load test against both replicas finishes with zero errors;
#   2. both replicas answered requests (their own request counters in /metrics);
#   3. the images run spindle as a non-root user and report healthy via HEALTHCHECK;
#   4. `docker stop` of one replica (SIGTERM to PID 1) exits 0 after draining, and the other
#      keeps serving.
# Needs Docker with docker-compose, root (debootstrap) and Debian's mirror and PyPI. About 2
# minutes with cached images, 6-8 from nothing. Not part of scripts/test.sh; see the README.
set -euo pipefail
cd "$(dirname "$0")/.."
project=spindle-test-$$
compose=(docker-compose -f docker/compose.yaml -p "$project")
fail() { echo "docker/test.sh: FAIL: $*" >&2; "${compose[@]}" logs --tail 30 >&2 || true; exit 1; }
cleanup() { "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

docker/lint.sh
docker/build.sh

echo "docker/test.sh: compose up (HDFS, publish, 2 replicas, loadtest)" >&2
log=$(mktemp)
if ! timeout 600 "${compose[@]}" up --no-color --exit-code-from loadtest loadtest >"$log" 2>&1; then
  cat "$log" >&2
  fail "the load test did not finish successfully"
fi
# Table rows: concurrency, inferences/s, requests/s, p50..p99, errors, stable.
rows=$(grep -E "loadtest_1 +\| +[0-9]+ +[0-9.]+ " "$log" | sed "s/.*| *//" || true)
[ -n "$rows" ] || fail "no load test results in the output"
echo "$rows" >&2
errors=$(echo "$rows" | awk '{ s += $8 } END { print s }')
[ "$errors" = 0 ] || fail "$errors failed requests in the load test"

for replica in spindle1 spindle2; do
  port=$("${compose[@]}" port "$replica" 8000 | awk -F: '{ print $NF }')
  served=$(curl -fs "http://127.0.0.1:$port/metrics" \
    | awk '/^spindle_requests_total\{.*outcome="success"/ { s += $2 } END { print s + 0 }')
  [ "${served%.*}" -gt 0 ] || fail "$replica served no request (metrics: $served)"
  id=$("${compose[@]}" ps -q "$replica")
  health=$(docker inspect -f '{{.State.Health.Status}}' "$id")
  [ "$health" = healthy ] || fail "$replica is $health, not healthy"
  user=$(docker exec "$id" id -u)
  [ "$user" != 0 ] || fail "$replica runs as root"
  echo "docker/test.sh: $replica served $served requests, $health, uid $user" >&2
done

id1=$("${compose[@]}" ps -q spindle1)
"${compose[@]}" stop -t 30 spindle1 >/dev/null
code=$(docker inspect -f '{{.State.ExitCode}}' "$id1")
[ "$code" = 0 ] || fail "spindle1 exited $code on docker stop (SIGTERM should drain and exit 0)"
port2=$("${compose[@]}" port spindle2 8000 | awk -F: '{ print $NF }')
curl -fs -o /dev/null -d @docs/cifar10-request.json "http://127.0.0.1:$port2/v2/models/cifar10/infer" \
  || fail "spindle2 stopped serving after spindle1 was stopped"
echo "docker/test.sh: spindle1 drained and exited 0 on docker stop; spindle2 still serves" >&2
echo "docker/test.sh: PASS" >&2
