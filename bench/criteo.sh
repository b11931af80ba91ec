#!/usr/bin/env bash
# Criteo batch-scoring benchmark (issue 5), one command, side by side: local `spindle score`
# rows/s on plain-text shards and on gzip shards of the same rows (parsing, hashing, the engine
# and writing the output parts all included), and remote `spindle score --server` through one
# local `spindle serve` on the plain shards (rows parsed and hashed by the scorer, ids sent over
# HTTP with binary tensors). Results: bench/results/criteo-{plain,gz,remote}.json (the
# --summary of each run, plus the CPU seconds the scorer, and for remote the server, used).
# The CPU column matters on a shared machine: rows per CPU-second does not depend on what else
# runs, where rows/s does.
#
# Remote scoring keeps several requests in flight per worker (issue 21; before, one), so the
# scorer transforms the next rows while the server answers. It runs twice: through a server on
# the zoo's config, whose engine has local scoring's shape, a single-threaded session per core
# (criteo-remote.json), and through one with a single session over every core, the server's
# shape for a config that says nothing (criteo-remote-one-session.json; not with PIN=1, where
# the server's one core makes the two shapes the same).
#
# Usage: bench/criteo.sh
# Environment: ROWS (rows per day, default 2000000), SHARDS (per day, default 8),
#              ENGINE (default ort; tract needs no library), SPINDLE (a built binary to use
#              instead of building one), BASELINE (an older binary: its remote scoring runs too,
#              against the same server, as criteo-remote-baseline.json), PIN (1: the scorer
#              on CPU 0 and the server on CPU 1, local scoring on CPU 0 alone: a scorer whose
#              server has cores of its own, as a YARN executor scoring through replicas on
#              other nodes; results as criteo-pinned-*.json).
set -euo pipefail
# lib.sh: the binary ($SPINDLE or a release build), ONNX Runtime unless ENGINE=tract, `out`.
source "$(dirname "$0")/lib.sh"
rows=${ROWS:-2000000}
shards=${SHARDS:-8}
engine=${ENGINE:-ort}
# PIN=1: every scorer on CPU 0, the server on CPU 1; the summaries get their own names.
scorer_cpu=() server_cpus=() tag=criteo
if [ "${PIN:-}" = 1 ]; then
  scorer_cpu=(taskset -c 0) server_cpus=(taskset -c 1) tag=criteo-pinned
fi
work=$(mktemp -d)
server_pid=
trap 'stop_all_servers; rm -rf "$work"' EXIT

"$spindle" zoo --out "$work/repo" --models criteo_ctr >/dev/null
for compress in none gz; do
  "$spindle" data criteo --out "$work/data-$compress" --days 1 --rows-per-day "$rows" \
    --shards-per-day "$shards" --compress "$compress" --seed 1 >/dev/null
done
# Runs a command and adds the CPU seconds it used (user + system) to the summary JSON $1.
with_cpu() {
  python3 - "$@" <<'PY'
import json, resource, subprocess, sys
summary, command = sys.argv[1], sys.argv[2:]
subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
s = json.load(open(summary))
s["cpu_seconds"] = usage.ru_utime + usage.ru_stime
json.dump(s, open(summary, "w"), indent=2)
PY
}
# Prints one row of the table from a summary JSON.
show() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
cpu = s["cpu_seconds"] + s.get("server_cpu_seconds", 0)
print(f"{sys.argv[2]:<8} {s['rows']:>12} {s['seconds']:>10.2f} {s['rows_per_s']:>14,.0f} {cpu:>8.2f} {s['rows'] / cpu:>14,.0f}")
PY
}

printf '%-8s %12s %10s %14s %8s %14s\n' input rows seconds rows/s cpu-s rows/cpu-s
for compress in none gz; do
  name=$([ "$compress" = none ] && echo plain || echo gz)
  with_cpu "$out/$tag-$name.json" "${scorer_cpu[@]}" "$spindle" score --model criteo_ctr \
    --input "$work/data-$compress/day_*/part-*" --output "$work/scores-$compress" \
    --local --repo "$work/repo" --engine "$engine" --quiet --summary "$out/$tag-$name.json"
  show "$out/$tag-$name.json" "$name"
done

ticks=$(getconf CLK_TCK)
port=
# Serves repository $1 as lib.sh's server "criteo" (stopping the one before), on a fresh port.
serve_repo() {
  stop_server criteo
  port=$(free_port)
  start_server criteo "${server_cpus[@]}" "$spindle" serve --repo "$1" --http-addr "127.0.0.1:$port" \
    --no-grpc --engine "$engine" --poll-interval 0
  server_pid=${bench_servers[criteo]}
  wait_ready "http://127.0.0.1:$port" || { cat .cache/criteo.log >&2; exit 1; }
}
server_cpu() { awk -v t="$ticks" '{print ($14 + $15) / t}' "/proc/$server_pid/stat"; }
# Scores the plain shards through the server with scorer binary $1 into summary $2.
remote() {
  local before
  before=$(server_cpu)
  with_cpu "$2" "${scorer_cpu[@]}" "$1" score --model criteo_ctr \
    --input "$work/data-none/day_*/part-*" --output "$work/scores-$(basename "$2" .json)" \
    --server "http://127.0.0.1:$port" --quiet --summary "$2"
  python3 - "$2" "$before" "$(server_cpu)" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["server_cpu_seconds"] = float(sys.argv[3]) - float(sys.argv[2])
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY
}
# The parts must agree with local scoring row for row (the same rows, in order).
same_as_local() {
  cmp -s <(cat "$work"/scores-none/*.tsv) <(cat "$work/scores-$(basename "$1" .json)"/*.tsv) &&
    echo "$2 parts: identical to local" || echo "$2 parts: DIFFER from local"
}

# The zoo's config gives the server local scoring's engine shape: one single-threaded ONNX
# Runtime session per core (`intra_op_threads = 1`, instances filling the cores), so local and
# remote differ only by the protocol.
serve_repo "$work/repo"
remote "$spindle" "$out/$tag-remote.json"
show "$out/$tag-remote.json" remote
same_as_local "$out/$tag-remote.json" remote
if [ -n "${BASELINE:-}" ]; then
  remote "$BASELINE" "$out/$tag-remote-baseline.json"
  show "$out/$tag-remote-baseline.json" baseline
fi
# The shape the server gives a model whose config says nothing, as the zoo's did before: one
# session split across every core. When the server shares the scorer's cores, a run split in
# two waits, spinning, for the half whose thread the scorer has preempted. With PIN=1 the
# server has one core and both shapes are one single-threaded session, so this run is skipped.
one=
if [ "${PIN:-}" != 1 ]; then
  one=$out/$tag-remote-one-session.json
  cp -r "$work/repo" "$work/repo-one"
  python3 - "$work/repo-one/criteo_ctr/config.toml" "$(nproc)" <<'PY'
import re, sys
path, cores = sys.argv[1], sys.argv[2]
text = re.sub(r"^(instance_count|intra_op_threads) = .*\n", "", open(path).read(), flags=re.M)
# Top-level keys must come before the first [[table]].
head, sep, tail = text.partition("\n[[")
open(path, "w").write(f"{head}\ninstance_count = 1\nintra_op_threads = {cores}\n{sep}{tail}")
PY
  serve_repo "$work/repo-one"
  remote "$spindle" "$one"
  show "$one" one-sess
  same_as_local "$one" one-session
fi
python3 - "$out" "$tag" "$one" <<'PY'
import json, os, sys
d, tag, one = sys.argv[1], sys.argv[2], sys.argv[3]
local = json.load(open(f"{d}/{tag}-plain.json"))
for name in ("remote", "remote-baseline", "remote-one-session"):
    if name == "remote-baseline" and not os.environ.get("BASELINE"):
        continue
    if name == "remote-one-session" and not one:
        continue
    s = json.load(open(f"{d}/{tag}-{name}.json"))
    print(f"{name} / local (plain): {s['rows_per_s'] / local['rows_per_s']:.2f} "
          "(remote cpu-s counts the scorer and the server)")
PY
