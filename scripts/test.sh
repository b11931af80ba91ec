#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what the tests need (the ONNX Runtime
# library, in .cache/) first, so it works on a fresh machine with only the Rust toolchain and
# Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each phase's end, in seconds since the start, so a slow CI run shows where the time went.
t0=$SECONDS
phase() { echo "test: $1 finished at $((SECONDS - t0)) s" >&2; }
ORT_DYLIB_PATH=$(scripts/setup-ort.sh)
export ORT_DYLIB_PATH
echo "test: ONNX Runtime library at $ORT_DYLIB_PATH" >&2
phase "ONNX Runtime setup"
# wrk (Debian), the independent load generator that loadtest's agreement test compares with; the
# test fails without it unless SPINDLE_SKIP_WRK=1.
if [ "${SPINDLE_SKIP_WRK:-}" != 1 ] && ! command -v wrk > /dev/null; then
  apt=(apt-get); [ "$(id -u)" = 0 ] || apt=(sudo apt-get)
  { "${apt[@]}" install -y wrk || { "${apt[@]}" update && "${apt[@]}" install -y wrk; }; } >&2
fi
# A real HDFS for the repository tests (Hadoop 2.7.3 from the pyspark sdist, cached outside the
# repository). Its own state dir, so a developer's cluster is untouched; stopped at exit.
# SPINDLE_SKIP_HDFS=1 skips it, and the HDFS tests say they were skipped.
hdfs_state=""
if [ "${SPINDLE_SKIP_HDFS:-}" != 1 ]; then
  hdfs_state=$(mktemp -d /tmp/spindle-hdfs-test.XXXXXX)
  SPINDLE_HDFS_URL=$(SPINDLE_HDFS_DIR=$hdfs_state scripts/hdfs.sh start --datanodes 1)
  export SPINDLE_HDFS_URL
  echo "test: HDFS at $SPINDLE_HDFS_URL" >&2
  phase "HDFS start"
fi
# The real Hadoop 3 cluster (scripts/hadoop.sh: ZooKeeper, HDFS, a ResourceManager with node labels
# and the YARN Services API, NodeManagers on 127.0.0.2 = CPU and 127.0.0.3 = GPU) for the tests of
# `spindle yarn` against a real ResourceManager (tests/tests/integration/yarn_cluster.rs). It starts
# in the background (about 25 s, jars fetched once from Maven Central and cached) while clippy and
# cargo build, in a state dir of its own; the tests get its addresses as SPINDLE_HADOOP3_HDFS_URL and
# SPINDLE_YARN_RM. Stopped at exit; its state dir (container logs) is kept when the run failed.
# SPINDLE_SKIP_HADOOP3=1 skips it, and those tests say they were skipped. The Hadoop 2.7.3 HDFS
# above stays: it is the compatibility cluster.
hadoop_state="" hadoop_start="" hadoop_env="" hadoop_log=""
if [ "${SPINDLE_SKIP_HADOOP3:-}" != 1 ]; then
  hadoop_state=$(mktemp -d /tmp/spindle-hadoop-test.XXXXXX)
  hadoop_env=$(mktemp)
  hadoop_log=$(mktemp)
  SPINDLE_HADOOP_DIR=$hadoop_state scripts/hadoop.sh start >"$hadoop_env" 2>"$hadoop_log" &
  hadoop_start=$!
fi
# The container images that need no binary (the Debian base and the HDFS image) build in the
# background while cargo compiles, so their downloads overlap the build; docker/test.sh later
# finds them cached (and builds whatever this did not).
# Without a Docker engine (the client may be installed while its daemon is absent, as on CI's
# machines) the container checks cannot run: they are counted as skipped, by name, not passed.
# The same cluster secured with Kerberos (scripts/hadoop.sh start --kerberos: a MiniKdc KDC, Kerberos
# RPC, SASL on the DataNode's data port, the ResourceManager behind SPNEGO) for
# tests/tests/integration/kerberos.rs, which find it through SPINDLE_KRB_HADOOP_DIR. MIT's kinit
# (Debian's krb5-user) fills its ticket caches. SPINDLE_SKIP_KERBEROS=1 skips it, and those tests
# say they were skipped. Stopped at exit, like the plain cluster.
krb_state="" krb_start="" krb_log=""
if [ "${SPINDLE_SKIP_KERBEROS:-}" != 1 ]; then
  if ! command -v kinit >/dev/null; then
    apt=(apt-get); [ "$(id -u)" = 0 ] || apt=(sudo apt-get)
    export DEBIAN_FRONTEND=noninteractive
    { "${apt[@]}" install -y krb5-user || { "${apt[@]}" update && "${apt[@]}" install -y krb5-user; }; } >&2
  fi
  krb_state=$(mktemp -d /tmp/spindle-krb-test.XXXXXX)
  krb_log=$(mktemp)
  SPINDLE_HADOOP_DIR=$krb_state scripts/hadoop.sh start --kerberos >/dev/null 2>"$krb_log" &
  krb_start=$!
fi
# TensorFlow's virtual environment for the last suite (tests/conformance/tf/venv.sh: tensorflow-cpu,
# tf2onnx, ~1.6 GB from PyPI, cached in .cache/) installs in the background while cargo builds, so
# its download overlaps the compile instead of following the tests. The suite waits for it below,
# and venv.sh installs whatever this did not finish.
tf_venv_log=$(mktemp)
tests/conformance/tf/venv.sh >/dev/null 2>"$tf_venv_log" &
tf_venv_prep=$!
docker_skip=""
if [ "${SPINDLE_SKIP_DOCKER:-}" = 1 ]; then
  docker_skip="SPINDLE_SKIP_DOCKER=1"
elif ! command -v docker >/dev/null; then
  docker_skip="no docker command on this machine"
elif ! timeout 20 docker info >/dev/null 2>&1; then
  docker_skip="no Docker engine answers here ('docker info' failed)"
elif ! command -v docker-compose >/dev/null; then
  docker_skip="docker-compose is not installed"
fi
docker_prep=""
docker_prep_log=$(mktemp)
if [ -z "$docker_skip" ]; then
  docker/build.sh --prepare >"$docker_prep_log" 2>&1 &
  docker_prep=$!
fi
log=$(mktemp)
# Tests that skip at run time (no HDFS, ONNX Runtime or wrk, allowed by SPINDLE_SKIP_*) write one
# line each here (spindle_core::skip); they are reported as skipped, not passed.
SPINDLE_SKIP_LOG=$(mktemp)
export SPINDLE_SKIP_LOG
cleanup() {
  local rc=$?
  if [ -n "$hadoop_state" ]; then
    # A start still running is waited for, so that stop finds every daemon it started.
    [ -z "$hadoop_start" ] || wait "$hadoop_start" 2>/dev/null || true
    SPINDLE_HADOOP_DIR=$hadoop_state scripts/hadoop.sh stop >/dev/null 2>&1 || true
    if [ "$rc" = 0 ]; then
      rm -rf "$hadoop_state"
    else
      echo "test: the Hadoop 3 cluster's state and logs are kept in $hadoop_state" >&2
    fi
    rm -f "$hadoop_env" "$hadoop_log"
  fi
  if [ -n "$krb_state" ]; then
    [ -z "$krb_start" ] || wait "$krb_start" 2>/dev/null || true
    SPINDLE_HADOOP_DIR=$krb_state scripts/hadoop.sh stop >/dev/null 2>&1 || true
    if [ "$rc" = 0 ]; then
      rm -rf "$krb_state"
    else
      echo "test: the Kerberos cluster's state and logs are kept in $krb_state" >&2
    fi
    rm -f "$krb_log"
  fi
  if [ -n "$hdfs_state" ]; then
    SPINDLE_HDFS_DIR=$hdfs_state scripts/hdfs.sh stop >/dev/null || true
    rm -rf "$hdfs_state"
  fi
  [ -z "$docker_prep" ] || kill "$docker_prep" 2>/dev/null || true
  [ -z "$tf_venv_prep" ] || kill "$tf_venv_prep" 2>/dev/null || true
  rm -f "$log" "$docker_prep_log" "$SPINDLE_SKIP_LOG" "$tf_venv_log"
}
trap cleanup EXIT
cargo fmt --all --check
# The Dockerfiles (hadolint from PyPI, seconds); building and running the images is docker/test.sh,
# near the end.
docker/lint.sh
phase "fmt and Dockerfile lint"
# The ci profile (Cargo.toml): dependencies optimised as in release, our own code at opt-level 1.
cargo clippy --workspace --all-targets --profile ci -- -D warnings
phase "clippy"
# tract's kernels and the zoo's CNNs are far too slow unoptimised: the ci profile keeps the
# dependencies optimised as in release (a few whose speed no test depends on, tract's graph crates
# among them, at opt-level 1) and builds our own crates at opt-level 1 (minutes less on 2 cores).
# await_cluster PID NAME SKIP_VARIABLE LOG: waits for a cluster started in the background; a
# cluster that did not start ends the run with its log (the variable skips its tests knowingly).
await_cluster() {
  if ! wait "$1"; then
    echo "test: the $2 did not start ($3=1 skips its tests):" >&2
    cat "$4" >&2
    exit 1
  fi
  phase "$2 start (waited for)"
}
if [ -n "$hadoop_start" ]; then
  pid=$hadoop_start hadoop_start=""
  await_cluster "$pid" "Hadoop 3 cluster" SPINDLE_SKIP_HADOOP3 "$hadoop_log"
  SPINDLE_HADOOP3_HDFS_URL=$(sed -n 's/^SPINDLE_HDFS_URL=//p' "$hadoop_env")
  SPINDLE_YARN_RM=$(sed -n 's/^SPINDLE_YARN_RM=//p' "$hadoop_env")
  # The state dir lets the tests that stop and restart HDFS daemons (yarn_cluster.rs) use the
  # cluster's own verbs (scripts/hadoop.sh kill-datanode, restart-namenode, ...).
  SPINDLE_HADOOP3_DIR=$hadoop_state
  export SPINDLE_HADOOP3_HDFS_URL SPINDLE_YARN_RM SPINDLE_HADOOP3_DIR
  echo "test: Hadoop 3 at $SPINDLE_HADOOP3_HDFS_URL, ResourceManager at $SPINDLE_YARN_RM" >&2
fi
if [ -n "$krb_start" ]; then
  pid=$krb_start krb_start=""
  await_cluster "$pid" "Kerberos cluster" SPINDLE_SKIP_KERBEROS "$krb_log"
  export SPINDLE_KRB_HADOOP_DIR=$krb_state
fi
set +e
cargo test --workspace --profile ci 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
phase "cargo test"
# Only cargo's tests use the Kerberos cluster; its JVMs go before TensorFlow's conversions need the memory.
if [ -n "$krb_state" ]; then
  SPINDLE_HADOOP_DIR=$krb_state scripts/hadoop.sh stop >/dev/null 2>&1 || true
fi
# Real clients against the real binary: tritonclient (HTTP, gRPC) and TF Serving REST.
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export SPINDLE_BIN=$target_dir/ci/spindle
set +e
tests/conformance/run.sh 2>&1 | tee -a "$log"
conformance=${PIPESTATUS[0]}
set -e
phase "conformance"
# TensorFlow beside Spindle (tests/conformance/tf): TensorFlow reads what Spindle writes and the
# other way round, imported TensorFlow models answer as TensorFlow does, TF Serving's own clients
# work unchanged. Its virtual environment (tensorflow-cpu, tf2onnx, ~1.6 GB) is cached in .cache/.
if ! wait "$tf_venv_prep"; then
  echo "test: installing TensorFlow's environment in the background failed (run.sh tries again):" >&2
  cat "$tf_venv_log" >&2
fi
tf_venv_prep=""
phase "TensorFlow environment (waited for)"
set +e
tests/conformance/tf/run.sh 2>&1 | tee -a "$log"
tf_conformance=${PIPESTATUS[0]}
set -e
[ "$tf_conformance" -eq 0 ] || conformance=$tf_conformance
phase "TensorFlow conformance"
# The container deployment (docker/test.sh): images from our own debootstrap base (apt and
# PyPI only), the compose deployment and its failure checks, using the spindle binary the tests
# just built. Needs root, Docker and docker-compose; SPINDLE_SKIP_DOCKER=1 skips it.
docker_status=0
if [ -n "$docker_skip" ]; then
  # One line per check docker/test.sh would have run (its header lists them), so the count of
  # skipped checks is the count that did not run.
  for check in $(docker/test.sh --list); do
    echo "docker check: SKIP $check: $docker_skip" | tee -a "$log"
  done
else
  if ! wait "$docker_prep"; then
    echo "test: docker/build.sh --prepare failed (docker/test.sh tries again):" >&2
    cat "$docker_prep_log" >&2
  fi
  docker_prep=""
  phase "docker images prepared"
  set +e
  timeout -k 60 1800 docker/test.sh 2>&1 | tee -a "$log"
  docker_status=${PIPESTATUS[0]}
  set -e
  # A run cut short (timeout, a broken prerequisite) still counts as a failure below.
  if [ "$docker_status" != 0 ] && ! grep -q "^docker check: FAIL" "$log"; then
    echo "docker check: FAIL docker/test.sh: exited $docker_status" | tee -a "$log"
  fi
fi
phase "docker"
# One closing line for the whole workspace (cargo's last line is a crate's doc-tests; unittest
# prints "Ran N tests" and "OK" or "FAILED (failures=F, errors=E)"; docker/test.sh one
# "docker check: PASS|FAIL" line per check).
# Cargo's "ignored" tests and the run-time skips count as skipped; a run-time skip ended as "ok"
# in cargo's count, so it is taken off the passed ones.
if [ -s "$SPINDLE_SKIP_LOG" ]; then
  echo "skipped at run time:"
  sed 's/^/  /' "$SPINDLE_SKIP_LOG"
fi
runtime_skips=$(grep -c . "$SPINDLE_SKIP_LOG" || true)
awk -v runtime_skips="$runtime_skips" 'function count(word) { return match($0, word "=[0-9]+") ? substr($0, RSTART + length(word) + 1, RLENGTH - length(word) - 1) + 0 : 0 }
     /^test result:/ { passed += $4; failed += $6; skipped += $8; ignored += $8 }
     /^docker check: PASS/ { passed += 1 }
     /^docker check: FAIL/ { failed += 1 }
     /^docker check: SKIP/ { skipped += 1; reason = $0; sub(/^docker check: SKIP [^:]*: /, "", reason) }
     /^Ran [0-9]+ tests/ { ran = $2 }
     /^(OK|FAILED)/ { f = count("failures") + count("errors"); k = count("skipped")
                      failed += f; skipped += k; passed += ran - f - k }
     /^docker check: SKIP/ { docker_skips += 1 }
     END { if (docker_skips) printf "skipped: %d container checks (%s)\n", docker_skips, reason
           if (ignored) printf "skipped: %d tests marked #[ignore]\n", ignored
           if (runtime_skips) printf "skipped: %d tests at run time (listed above)\n", runtime_skips
           passed -= runtime_skips; skipped += runtime_skips
           printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped }' "$log"
[ "$status" -eq 0 ] || exit "$status"
[ "$conformance" -eq 0 ] || exit "$conformance"
exit "$docker_status"
