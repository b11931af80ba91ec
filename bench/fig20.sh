#!/usr/bin/env bash
# The seed's Figure 20 for batch scoring: images/s of `spindle score` with 1..N executors
# against N x the in-process engine limit (`spindle bench engine`, best batch size) measured in
# the same run on one executor's cores. cifar10 over CIFAR-10 binary shards, inception_v3 over
# TFRecord shards of 500x375 JPEGs (synthetic images from `spindle data`).
#
# Executors run as local processes, each pinned with taskset to its own core set (`spindle
# score --local --executor I/N`), and, when SPINDLE_YARN_RM and SPINDLE_HDFS_URL are set, as
# YARN containers (`spindle score --yarn --executors N`, data and output on HDFS).
#
# Usage: bench/fig20.sh [MODEL...]                 (default: cifar10 inception_v3)
# Environment:
#   LAYOUT        one taskset core list per executor, space-separated; N runs from 1 to the
#                 number of lists. Default: one core per executor, as many as cores ("0 1" on a
#                 2-core machine); on a 16-core machine e.g. "0-3 4-7 8-11 12-15".
#   RECORDS_cifar10 (default 20000), RECORDS_inception_v3 (default 256): images per dataset
#   SHARDS        shards per dataset (default 8)
#   DURATION      bench engine's time per batch size (default 3s)
#   BATCHES       bench engine's batch sizes (default 1,8,16,32,64,128; inception_v3 on one
#                 core takes about 13 s per batch of 128, and each size runs at least 5 times)
#   SPINDLE       the spindle binary (default: a release build of this tree)
#   YARN_QUEUE, YARN_PARTITION, YARN_CPUS, YARN_MEMORY: for the YARN runs (default CPU_Q, CPU,
#                 the cores of LAYOUT's first set, 2048); SPINDLE_HADOOP_DIR: the cluster of
#                 scripts/hadoop.sh whose FsShell uploads the data (default /tmp/spindle-hadoop)
# Results: bench/results/fig20-<model>.tsv (mode, executors, cores, images, seconds, images/s,
# limit = executors x the engine's best images/s, ratio) and fig20-<model>.md (the same table).
set -euo pipefail
# lib.sh: the binary ($SPINDLE or a release build), ONNX Runtime, the zoo in .cache/bench-repo,
# and core_layout (LAYOUT read and checked as bench/scaling.sh and bench/yarn.sh read it).
source "$(dirname "$0")/lib.sh"
core_layout fig20
SPINDLE=$spindle
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(cifar10 inception_v3)
shards=${SHARDS:-8}
duration=${DURATION:-3s}
work=.cache/fig20
mkdir -p "$work"
# The cores a core set holds, as the pinned process sees them.
cores_of() { taskset -c "$1" nproc; }
json_field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

for model in "${models[@]}"; do
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  case $model in
    cifar10)
      records=${RECORDS_cifar10:-20000}
      data=$work/cifar10-$records-$shards; pattern='data_batch_*.bin'
      [ -f "$data/data_batch_1.bin" ] || "$SPINDLE" data cifar10 --out "$data" --records "$records" --shards "$shards" > /dev/null ;;
    inception_v3)
      records=${RECORDS_inception_v3:-256}
      data=$work/jpeg-$records-$shards; pattern='images-*.tfrecord'
      [ -n "$(ls "$data"/images-*.tfrecord 2> /dev/null)" ] ||
        "$SPINDLE" data tfrecord --out "$data" --records "$records" --shards "$shards" --encoding jpeg > /dev/null ;;
    *) echo "fig20: unknown model '$model' (cifar10 or inception_v3)" >&2; exit 64 ;;
  esac
  # The engine's limit on one executor's cores, at its best batch size.
  taskset -c "${layout[0]}" "$SPINDLE" bench engine --repo "$repo" --model "$model" --engine ort \
    --duration "$duration" --batches "${BATCHES:-1,8,16,32,64,128}" \
    --json "$work/engine-$model.json" > /dev/null 2>&1
  limit=$(python3 -c "import json,sys; print(max(r['images_per_s'] for r in json.load(open(sys.argv[1]))['results']))" "$work/engine-$model.json")
  echo "$model: engine limit on cores ${layout[0]}: $limit images/s"
  # What decoding and preparing one image costs on those cores (the server's own code; the
  # scorer runs it on its preparing threads while the engine runs the previous batch).
  case $model in
    cifar10) case_name='cifar10_image' ;;
    inception_v3) case_name='inception_image' ;;
  esac
  prep=$(taskset -c "${layout[0]}" "$SPINDLE" bench preprocess --duration 1s | grep "^$case_name" || true)
  echo "$model: preprocessing on cores ${layout[0]}: $prep"

  tsv=$out/fig20-$model.tsv
  printf 'mode\texecutors\tcores\timages\tseconds\timages_per_s\tlimit\tratio\n' > "$tsv"
  row() { # mode n cores images seconds
    python3 -c "import sys; m,n,c,i,s,l=sys.argv[1:]; n=int(n); i=int(i); s=float(s); l=float(l)*n
r=i/s; print(f'{m}\t{n}\t{c}\t{i}\t{s:.2f}\t{r:.1f}\t{l:.1f}\t{r/l:.3f}')" "$@" "$limit" | tee -a "$tsv"
  }

  for n in $(seq 1 ${#layout[@]}); do
    scores=$work/out-$model-local-$n
    rm -rf "$scores"; mkdir -p "$scores"
    pids=(); used=0
    for i in $(seq 0 $((n - 1))); do
      c=$(cores_of "${layout[$i]}"); used=$((used + c))
      RUST_LOG=warn taskset -c "${layout[$i]}" "$SPINDLE" score --model "$model" --local --repo "$repo" \
        --engine ort --input "$data/$pattern" --output "$scores/parts" --executor "$i/$n" \
        --jobs "$c" --intra-op-threads "$c" --summary "$scores/executor-$i.json" --quiet > /dev/null &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    # Like the YARN job's merged summary: all images over the slowest executor's time.
    images=0; seconds=0
    for i in $(seq 0 $((n - 1))); do
      images=$((images + $(json_field "$scores/executor-$i.json" records)))
      seconds=$(python3 -c "import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))" "$seconds" "$(json_field "$scores/executor-$i.json" seconds)")
    done
    row local "$n" "$used" "$images" "$seconds"
  done

  if [ -n "${SPINDLE_YARN_RM:-}" ] && [ -n "${SPINDLE_HDFS_URL:-}" ]; then
    yarn_cpus=${YARN_CPUS:-$(cores_of "${layout[0]}")}
    hdfs_dir=$SPINDLE_HDFS_URL/bench/fig20/$model-$records-$shards
    hdfs_path=${hdfs_dir#"$SPINDLE_HDFS_URL"}
    # Data and model on HDFS once, through the cluster's own FsShell (SPINDLE_HADOOP_DIR).
    if ! scripts/hadoop.sh fs -test -d "$hdfs_path/data" 2> /dev/null; then
      "$SPINDLE" zoo --out "$hdfs_dir/models" --models "$model" > /dev/null
      scripts/hadoop.sh fs -mkdir -p "$hdfs_path/data"
      scripts/hadoop.sh fs -put "$data"/* "$hdfs_path/data/"
    fi
    for n in $(seq 1 ${#layout[@]}); do
      summary=$work/yarn-$model-$n.json
      scripts/hadoop.sh fs -rm -r -f "$hdfs_path/out-$n" > /dev/null 2>&1 || true
      "$SPINDLE" score --model "$model" --repo "$hdfs_dir/models" --engine ort \
        --input "$hdfs_dir/data/$pattern" --output "$hdfs_dir/out-$n" \
        --yarn "$SPINDLE_YARN_RM" --executors "$n" --queue "${YARN_QUEUE:-CPU_Q}" \
        --node-partition "${YARN_PARTITION:-CPU}" --executor-cpus "$yarn_cpus" \
        --executor-memory "${YARN_MEMORY:-2048}" --summary "$summary" --quiet > /dev/null
      row yarn "$n" $((n * yarn_cpus)) "$(json_field "$summary" records)" "$(json_field "$summary" seconds)"
    done
  fi

  {
    echo "# Fig. 20: spindle score $model, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), LAYOUT='${layout[*]}'"
    echo
    echo "engine limit (spindle bench engine, best batch, cores ${layout[0]}): $limit images/s"
    echo
    echo "preprocessing (spindle bench preprocess, cores ${layout[0]}; case, us/image, images/s): $prep"
    echo
    echo "load average before the runs: $load"
    echo
    head -1 "$tsv" | sed 's/\t/ | /g; s/^/| /; s/$/ |/'
    head -1 "$tsv" | sed 's/[^\t]*/---/g; s/\t/|/g; s/^/|/; s/$/|/'
    tail -n +2 "$tsv" | sed 's/\t/ | /g; s/^/| /; s/$/ |/'
  } > "$out/fig20-$model.md"
done
