#!/usr/bin/env bash
# Serving benchmark (issue: serving core). Side by side in one run on this machine:
#   (a) in-process ONNX Runtime at each batch size: the limit (spindle bench engine);
#   (b) spindle serve over HTTP with binary tensors, single-image requests from spindle loadtest
#       at concurrency 1, 4, 16, 64;
# then the ratios (b)/(a). Beside throughput, what each inference costs the server in CPU: per
# level, the server process's CPU-seconds (/proc/PID/stat before and after the level) over the
# rows it inferred (/metrics), against in-process ONNX Runtime's CPU-seconds per image at the batch
# sizes the server formed in that level (its batch-size histogram in /metrics; the in-process cost
# is measured at each of the histogram's bounds, bench/cpu_cost.py), and the mean batch size. Each
# level is its own `spindle loadtest` run so the snapshots bracket exactly it; the load test's own
# CPU is not the server's and is not counted. (a) and (b) alternate for REPS rounds, and each round's ratios are
# taken against that round's limit: on a shared virtual machine the speed drifts by 10-20 %
# within minutes, so one (a) and one (b) can disagree by that much for no reason of ours. The
# summary gives the median over the rounds and their range.
#
# Results: bench/results/serving-<model>.txt (the summary) and serving-<model>-rounds.json (every
# round); the last round's load test as serving-<model>.{json,csv} (its levels merged) and its
# in-process table as inprocess-<model>.json. Each round's raw files stay in .cache/bench-serving.
# bench/suite.sh measures the same settings beside gRPC, tract and MLServer.
#
# Usage: bench/serving.sh [MODEL...]      (default: cifar10 inception_v3)
# Environment: WINDOW (default 3s), REPS (default 3), ENGINE (default ort), PORT (default 18000),
#              SPINDLE (a built binary to use instead of building one; see lib.sh).
#
# Latency before/after (issue 21): BASELINE=/path/to/an/older/spindle bench/serving.sh [MODEL]
# (default cifar10) measures only concurrency 1, side by side in each of REPS (default 5)
# rounds: in-process batch 1 (this binary's `spindle bench engine`), then the baseline's
# `spindle serve` and this binary's, in an order that alternates between rounds, each driven by
# this binary's load test. With wrk installed, each round also measures the floor: wrk's round
# trip at one connection to this binary's server's /v2/health/live, an HTTP exchange that does no
# work (loopback, both ends' wake-ups and HTTP parsing). Results: bench/results/latency-<model>.txt
# and latency-<model>-rounds.json.
source "$(dirname "$0")/lib.sh"

if [ -n "${BASELINE:-}" ]; then
  model=${1:-cifar10}
  port=${PORT:-18000}
  reps=${REPS:-5}
  rounds=.cache/bench-latency
  mkdir -p "$rounds"
  rm -f "$rounds/$model"-r*
  for rep in $(seq 1 "$reps"); do
    "$spindle" bench engine --repo "$repo" --model "$model" --engine "${ENGINE:-ort}" --batches 1 \
      --duration "$window" --json "$rounds/$model-r$rep-inprocess.json" 2> /dev/null
    order=(before after)
    [ $((rep % 2)) -eq 0 ] && order=(after before)
    for which in "${order[@]}"; do
      binary=$spindle
      [ "$which" = before ] && binary=$BASELINE
      start_server "$which" "$binary" serve --repo "$repo" --engine "${ENGINE:-ort}" \
        --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
      wait_ready "http://127.0.0.1:$port"
      out=$rounds measure "$model-r$rep-$which" "http://127.0.0.1:$port" "$model" http-binary 1 > /dev/null
      if [ "$which" = after ] && command -v wrk > /dev/null; then
        wrk -t1 -c1 -d"$window" --latency "http://127.0.0.1:$port/v2/health/live" \
          > "$rounds/$model-r$rep-floor.txt"
      fi
      stop_server "$which"
    done
    echo "round $rep of $reps done ($(uptime | sed 's/.*load average/load average/'))"
  done
  python3 - "$model" "$reps" "$rounds" "$out" "$BASELINE" <<'PY' | tee "$out/latency-$model.txt"
import json, os, re, statistics, sys
model, reps, rounds, results, baseline = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def wrk_p50_us(path):
    # wrk prints "50%  53.00us" (or ms, s) under --latency.
    value, unit = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", open(path).read(), re.M).groups()
    return float(value) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
per_round = []
for rep in range(1, reps + 1):
    b1 = json.load(open(f"{rounds}/{model}-r{rep}-inprocess.json"))["results"][0]["p50_us"]
    row = {"round": rep, "inprocess_batch1_p50_us": b1}
    for which in ("before", "after"):
        level = json.load(open(f"{rounds}/{model}-r{rep}-{which}.json"))["levels"][0]
        row.update({f"{which}_p50_us": level["p50_us"], f"{which}_p99_us": level["p99_us"],
                    f"{which}_per_s": level["inferences_per_s"]})
    floor = f"{rounds}/{model}-r{rep}-floor.txt"
    if os.path.exists(floor):
        row["floor_p50_us"] = wrk_p50_us(floor)
    per_round.append(row)
floors = all("floor_p50_us" in r for r in per_round)
ms = lambda us: f"{us / 1000:.3f}"
print(f"{model}, concurrency 1, HTTP binary tensors, {reps} rounds; before = {baseline}")
print(f"{'round':>5}  {'in-process b1 p50':>17}  {'before p50':>10}  {'above':>7}  {'after p50':>10}  "
      f"{'above':>7}  {'before p99':>10}  {'after p99':>10}" + (f"  {'floor p50':>9}" if floors else ""))
for r in per_round:
    b1 = r["inprocess_batch1_p50_us"]
    print(f"{r['round']:>5}  {ms(b1):>17}  {ms(r['before_p50_us']):>10}  {ms(r['before_p50_us'] - b1):>7}  "
          f"{ms(r['after_p50_us']):>10}  {ms(r['after_p50_us'] - b1):>7}  {ms(r['before_p99_us']):>10}  "
          f"{ms(r['after_p99_us']):>10}" + (f"  {ms(r['floor_p50_us']):>9}" if floors else ""))
median = lambda f: statistics.median(f(r) for r in per_round)
above = lambda which: median(lambda r: r[f"{which}_p50_us"] - r["inprocess_batch1_p50_us"])
print(f"median p50 above in-process batch 1: before {ms(above('before'))} ms, after {ms(above('after'))} ms "
      f"(in-process batch-1 p50 {ms(median(lambda r: r['inprocess_batch1_p50_us']))} ms)")
if floors:
    print(f"floor (wrk, one connection, GET /v2/health/live on the after server): median p50 "
          f"{ms(median(lambda r: r['floor_p50_us']))} ms")
json.dump({"model": model, "baseline": baseline, "rounds": per_round},
          open(f"{results}/latency-{model}-rounds.json", "w"), indent=2)
PY
  exit 0
fi
models=("$@"); [ ${#models[@]} -gt 0 ] || models=(cifar10 inception_v3)
engine=${ENGINE:-ort}
port=${PORT:-18000}
reps=${REPS:-3}
MAX_WINDOWS=${MAX_WINDOWS:-6}
results=$out
rounds=.cache/bench-serving
mkdir -p "$rounds"

for model in "${models[@]}"; do
  case $model in
    inception_v3) batches=1,2,4,8,16; levels=1,4,16; cpu_batches=1,2,4,8,16 ;;
    *) batches=1,8,16,32,64,128; levels=1,4,16,64; cpu_batches=1,2,4,8,16,32,64,128 ;;
  esac
  rm -f "$rounds/$model"-r*
  for rep in $(seq 1 "$reps"); do
    echo "== $model, round $rep of $reps: (a) in-process $engine"
    "$spindle" bench engine --repo "$repo" --model "$model" --engine "$engine" \
      --batches "$batches" --duration "$window" --json "$rounds/$model-r$rep-inprocess.json"
    python3 bench/cpu_cost.py inprocess "$spindle" "$repo" "$model" "$engine" "$cpu_batches" \
      "$window" "$rounds/$model-r$rep-cpu-inprocess.json"

    echo "== $model, round $rep of $reps: (b) spindle serve, HTTP binary tensors, batch-1 requests"
    start_server spindle "$spindle" serve --repo "$repo" --engine "$engine" --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
    wait_ready "http://127.0.0.1:$port"
    pid=${bench_servers[spindle]}
    for level in ${levels//,/ }; do
      python3 bench/cpu_cost.py snapshot "$pid" "http://127.0.0.1:$port" "$model" > "$rounds/before.json"
      out=$rounds measure "$model-r$rep-serving-c$level" "http://127.0.0.1:$port" "$model" http-binary "$level"
      python3 bench/cpu_cost.py snapshot "$pid" "http://127.0.0.1:$port" "$model" > "$rounds/after.json"
      python3 bench/cpu_cost.py level "$rounds/before.json" "$rounds/after.json" \
        "$rounds/$model-r$rep-cpu-inprocess.json" > "$rounds/$model-r$rep-cpu-c$level.json"
    done
    stop_server spindle
    # One load-test report per round, its levels in order, as a single sweep would have written.
    python3 - "$rounds/$model-r$rep-serving" "$levels" <<'PY'
import json, sys
prefix, levels = sys.argv[1], sys.argv[2].split(",")
parts = [json.load(open(f"{prefix}-c{level}.json")) for level in levels]
merged = dict(parts[0], levels=[l for p in parts for l in p["levels"]])
json.dump(merged, open(f"{prefix}.json", "w"), indent=2)
with open(f"{prefix}.csv", "w") as csv:
    for i, level in enumerate(levels):
        lines = open(f"{prefix}-c{level}.csv").read().splitlines(keepends=True)
        csv.writelines(lines if i == 0 else lines[1:])
PY
  done
  cp "$rounds/$model-r$reps-inprocess.json" "$results/inprocess-$model.json"
  for ext in json csv; do cp "$rounds/$model-r$reps-serving.$ext" "$results/serving-$model.$ext"; done

  python3 - "$model" "$reps" "$rounds" "$results" "$engine" <<'PY' | tee "$results/serving-$model.txt"
import json, statistics, sys
model, reps, rounds, results, engine = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
per_round = []
for rep in range(1, reps + 1):
    a = json.load(open(f"{rounds}/{model}-r{rep}-inprocess.json"))
    b = json.load(open(f"{rounds}/{model}-r{rep}-serving.json"))
    best = a["best"]
    one = next(r for r in a["results"] if r["batch"] == 1)
    cpu = [json.load(open(f"{rounds}/{model}-r{rep}-cpu-c{l['concurrency']}.json")) for l in b["levels"]]
    per_round.append({
        "round": rep,
        "inprocess": {"best_images_per_s": best["images_per_s"], "best_batch": best["batch"],
                      "batch1_p50_us": one["p50_us"], "results": a["results"]},
        "served": [{"concurrency": l["concurrency"], "images_per_s": l["inferences_per_s"],
                    "ratio": l["inferences_per_s"] / best["images_per_s"],
                    "p50_us": l["p50_us"], "p99_us": l["p99_us"],
                    "p50_above_batch1_us": l["p50_us"] - one["p50_us"],
                    "mean_batch": c["mean_batch"],
                    "server_cpu_us": c["server_cpu_per_inference_s"] * 1e6,
                    "inprocess_cpu_us": c["inprocess_cpu_per_inference_s"] * 1e6,
                    "cpu_ratio": c["cpu_ratio"]} for l, c in zip(b["levels"], cpu)],
    })

def spread(values, fmt):
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"

ms = lambda us: f"{us / 1000:.3f}"
print(f"{model} on {engine}, {reps} rounds; median (range) over the rounds, each ratio against its own round's limit")
bests = [r["inprocess"]["best_images_per_s"] for r in per_round]
b1 = [r["inprocess"]["batch1_p50_us"] for r in per_round]
best_batches = sorted({r["inprocess"]["best_batch"] for r in per_round})
print(f"in-process best: {spread(bests, lambda v: f'{v:.0f}')} images/s at batch {'/'.join(map(str, best_batches))}; "
      f"batch-1 p50 {spread(b1, ms)} ms")
print(f"{'concurrency':>11}  {'images/s':>20}  {'ratio':>16}  {'p50 ms':>22}  {'p99 ms':>22}  {'p50 - in-process b1 ms':>22}")
summary = []
for i, level in enumerate(per_round[0]["served"]):
    rows = [r["served"][i] for r in per_round]
    col = lambda key: [row[key] for row in rows]
    print(f"{level['concurrency']:>11}  {spread(col('images_per_s'), lambda v: f'{v:.0f}'):>20}  "
          f"{spread(col('ratio'), lambda v: f'{v:.2f}'):>16}  {spread(col('p50_us'), ms):>22}  "
          f"{spread(col('p99_us'), ms):>22}  {spread(col('p50_above_batch1_us'), ms):>22}")
    summary.append({"concurrency": level["concurrency"],
                    **{f"median_{k}": statistics.median(col(k)) for k in
                       ("images_per_s", "ratio", "p50_us", "p99_us", "p50_above_batch1_us",
                        "mean_batch", "server_cpu_us", "inprocess_cpu_us", "cpu_ratio")}})
print()
print("CPU per inference: the server process's CPU-seconds over its inferred rows, against in-process")
print("ONNX Runtime's at the batch sizes the server formed (median (range) over the rounds)")
print(f"{'concurrency':>11}  {'mean batch':>18}  {'server CPU us/inf':>22}  {'in-process CPU us/inf':>22}  {'server/in-process':>18}")
for i, level in enumerate(per_round[0]["served"]):
    col = lambda key: [r["served"][i][key] for r in per_round]
    print(f"{level['concurrency']:>11}  {spread(col('mean_batch'), lambda v: f'{v:.1f}'):>18}  "
          f"{spread(col('server_cpu_us'), lambda v: f'{v:.0f}'):>22}  "
          f"{spread(col('inprocess_cpu_us'), lambda v: f'{v:.0f}'):>22}  "
          f"{spread(col('cpu_ratio'), lambda v: f'{v:.2f}'):>18}")
json.dump({"model": model, "engine": engine, "rounds": per_round, "median": summary},
          open(f"{results}/serving-{model}-rounds.json", "w"), indent=2)
PY
done
