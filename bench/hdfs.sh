#!/usr/bin/env bash
# HDFS benchmark (issue: HDFS), side by side in one run against one real cluster:
#   (a) download time of the inception_v3 model (about 95 MB) through Spindle's loader
#       (`spindle repo get`: listing, download, size and sha256 check, fsync, rename) and through
#       Hadoop's own Java client (`FsShell -get`, Hadoop 2.7.3, default JVM settings), REPS times
#       each, interleaved; whole-process wall time for both (JVM start included for Java, so an
#       `FsShell -stat` of the same file is timed too: the Java client's fixed cost);
#   (b) cold start of `spindle serve --repo hdfs://...` for cifar10, inception_v3 and criteo_ctr
#       (one repository each): process start to /v2/health/ready, with an empty --cache-dir
#       (cold: download, verify, load, warm-up batch) and again with the cache it left (warm).
# Medians are printed and saved: bench/results/hdfs.txt (table), hdfs.csv (every sample).
#
# Usage: bench/hdfs.sh
# Environment: REPS (default 5), SPINDLE_HDFS_URL (use this running cluster; default: start
#   one with scripts/hdfs.sh in SPINDLE_HDFS_DIR, default /tmp/spindle-hdfs-bench, and stop it
#   at the end), ENGINE (default ort).
source "$(dirname "$0")/lib.sh"
reps=${REPS:-5}
engine=${ENGINE:-ort}
jars=$(scripts/hdfs.sh fetch)
work=$(mktemp -d)
own_cluster=
cleanup() {
  stop_all_servers
  [ -z "$own_cluster" ] || scripts/hdfs.sh stop > /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${SPINDLE_HDFS_URL:-}" ]; then
  export SPINDLE_HDFS_DIR=${SPINDLE_HDFS_DIR:-/tmp/spindle-hdfs-bench}
  echo "== starting HDFS (1 NameNode, 1 DataNode) in $SPINDLE_HDFS_DIR"
  SPINDLE_HDFS_URL=$(scripts/hdfs.sh start --datanodes 1)
  own_cluster=1
fi
base=$SPINDLE_HDFS_URL/spindle-bench-$$
models=(cifar10 inception_v3 criteo_ctr)

echo "== publishing ${models[*]} to $base (one repository per model)"
for model in "${models[@]}"; do
  v=$(latest_version "$model")
  extra=()
  [ -f "$repo/$model/labels.txt" ] && extra+=(--labels "$repo/$model/labels.txt")
  [ -f "$repo/$model/$v/features.toml" ] && extra+=(--features "$repo/$model/$v/features.toml")
  "$spindle" repo publish "$base/$model" "$model" "$repo/$model/$v/model.onnx" --version "$v" \
    --config "$repo/$model/config.toml" "${extra[@]}" > /dev/null
done
inception=$base/inception_v3/inception_v3/$(latest_version inception_v3)/model.onnx
size=$(stat -c %s "$repo/inception_v3/$(latest_version inception_v3)/model.onnx")

# Hadoop's client as its users run it: the stock JVM settings and defaults (an empty
# core-site.xml), the full hdfs:// URL, log4j quiet.
conf=$work/java-conf
mkdir -p "$conf"
echo 'log4j.rootLogger=WARN,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR' > "$conf/log4j.properties"
echo '<?xml version="1.0"?><configuration/>' > "$conf/core-site.xml"
fsshell() { java -Djava.net.preferIPv4Stack=true -cp "$conf:$jars/*" org.apache.hadoop.fs.FsShell "$@"; }

csv=$out/hdfs.csv
echo "measure,model,rep,seconds" > "$csv"
timed() { # timed MEASURE MODEL REP CMD...: runs CMD, appends its wall time to the CSV
  local measure=$1 model=$2 rep=$3 start
  shift 3
  start=$(now)
  "$@" > /dev/null
  echo "$measure,$model,$rep,$(python3 -c "print(f'{$(now) - $start:.4f}')")" >> "$csv"
}

echo "== (a) downloading $inception ($size bytes), $reps times each way"
for rep in $(seq 1 "$reps"); do
  timed spindle-get inception_v3 "$rep" "$spindle" repo get "$base/inception_v3" inception_v3 --out "$work/get-$rep"
  timed java-get inception_v3 "$rep" fsshell -get "$inception" "$work/java-$rep.onnx"
  timed java-stat inception_v3 "$rep" fsshell -stat "$inception"
  cmp -s "$work/java-$rep.onnx" "$work/get-$rep/inception_v3/$(latest_version inception_v3)/model.onnx" \
    || { echo "hdfs.sh: the two downloads differ" >&2; exit 1; }
  rm -rf "$work/get-$rep" "$work/java-$rep.onnx"
done

echo "== (b) cold start of spindle serve --repo hdfs://... (process start to ready)"
port=$(free_port)
serve_until_ready() { # serve_until_ready MODEL CACHE
  start_server "hdfs-serve" "$spindle" serve --repo "$base/$1" --cache-dir "$2" --engine "$engine" \
    --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
  wait_ready "http://127.0.0.1:$port"
  stop_server "hdfs-serve"
}
for model in "${models[@]}"; do
  for rep in $(seq 1 "$reps"); do
    rm -rf "$work/cache"
    timed serve-cold "$model" "$rep" serve_until_ready "$model" "$work/cache"
    timed serve-warm "$model" "$rep" serve_until_ready "$model" "$work/cache"
  done
done

python3 - "$csv" "$size" "$reps" <<'PY' | tee "$out/hdfs.txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
size, reps = int(sys.argv[2]), sys.argv[3]
def med(measure, model):
    return statistics.median(float(r["seconds"]) for r in rows if r["measure"] == measure and r["model"] == model)
def spread(measure, model):
    v = sorted(float(r["seconds"]) for r in rows if r["measure"] == measure and r["model"] == model)
    return f"{v[0]:.2f}-{v[-1]:.2f}"
s, j, st = med("spindle-get", "inception_v3"), med("java-get", "inception_v3"), med("java-stat", "inception_v3")
print(f"inception_v3 model.onnx ({size / 1e6:.1f} MB) from HDFS, median of {reps}, whole-process wall time")
print(f"{'client':<44} {'median s':>9} {'range s':>11} {'MB/s':>7}")
print(f"{'spindle repo get (verify sha256, fsync)':<44} {s:>9.2f} {spread('spindle-get', 'inception_v3'):>11} {size / 1e6 / s:>7.0f}")
print(f"{'Hadoop FsShell -get (Java 17, JVM start incl.)':<44} {j:>9.2f} {spread('java-get', 'inception_v3'):>11} {size / 1e6 / j:>7.0f}")
print(f"{'Hadoop FsShell -stat (JVM start + one RPC)':<44} {st:>9.2f} {spread('java-stat', 'inception_v3'):>11}")
print(f"spindle / Java: {s / j:.2f} of the Java client's time; against Java minus its fixed cost: {s / max(j - st, 1e-9):.2f}")
print()
print(f"cold start of spindle serve --repo hdfs://... to /v2/health/ready, median of {reps}")
print(f"{'model':<14} {'empty cache s':>14} {'range':>11} {'warm cache s':>13} {'range':>11}")
for model in ["cifar10", "inception_v3", "criteo_ctr"]:
    print(f"{model:<14} {med('serve-cold', model):>14.2f} {spread('serve-cold', model):>11} "
          f"{med('serve-warm', model):>13.2f} {spread('serve-warm', model):>11}")
PY
