#!/usr/bin/env bash
# Two builds of `spindle serve` side by side on one model, for changes whose effect is smaller
# than a shared VM's drift (issue 21's latency work). Each of ROUNDS rounds starts the baseline's
# server and this binary's, in an order that alternates between rounds, and drives each with
# this binary's load test:
#   - closed loop over HTTP binary tensors at each of LEVELS (default "1 4 16"): throughput and
#     p50/p99;
#   - after the concurrency-1 level, the server's own statistics (GET .../stats): its time from
#     a request's arrival to its answer less the engine's run (the hand-off to the batcher's
#     worker and back), and the client's mean less the server's (HTTP, loopback, the client's
#     wake-up);
#   - open loop at RATE requests/s (default 20; 0 skips it) for WINDOW: p50, and the server
#     process's CPU-seconds over the window (/proc/PID/stat).
# The summary gives medians over the rounds and every round's values: bench/results/ab-MODEL.txt
# (raw load-test files in .cache/bench-ab).
#
# Usage: BASELINE=/path/to/older/spindle [SPINDLE=/path/to/newer] bench/ab.sh [MODEL]
# Environment: ROUNDS (default 6), LEVELS, RATE, WINDOW (whole seconds, default 3s).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${BASELINE:?set BASELINE to the spindle binary to compare against}"
model=${1:-cifar10}
rounds=${ROUNDS:-6}
levels=${LEVELS:-1 4 16}
rate=${RATE:-20}
raw=.cache/bench-ab
rm -rf "$raw"
mkdir -p "$raw"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq 1 "$rounds"); do
  order=(before after)
  [ $((round % 2)) -eq 0 ] && order=(after before)
  for which in "${order[@]}"; do
    binary=$spindle
    [ "$which" = before ] && binary=$BASELINE
    port=$(free_port)
    url="http://127.0.0.1:$port"
    start_server "$which" "$binary" serve --repo "$repo" --engine "${ENGINE:-ort}" \
      --http-addr "127.0.0.1:$port" --no-grpc --poll-interval 0
    wait_ready "$url"
    for level in $levels; do
      [ "$level" = 1 ] && curl -sf "$url/v2/models/$model/stats" > "$raw/$which-r$round-stats0.json"
      "$spindle" loadtest --url "$url" --model "$model" --protocol http-binary --concurrency "$level" \
        --warmup 1s --window "$window" --max-windows 2 --json "$raw/$which-r$round-c$level.json" > /dev/null
      if [ "$level" = 1 ]; then
        curl -sf "$url/v2/models/$model/stats" > "$raw/$which-r$round-stats.json"
      fi
    done
    if [ "$rate" != 0 ]; then
      pid=${bench_servers[$which]}
      "$spindle" loadtest --url "$url" --model "$model" --protocol http-binary --rate "$rate" \
        --warmup 1s --window "$window" --max-windows 1 --json "$raw/$which-r$round-rate.json" > /dev/null &
      load=$!
      # The load test's warm-up takes the first second; the window is what it measures.
      sleep 1.1
      ticks=$(cpu_ticks "$pid")
      sleep "${window%s}"
      echo "$(( $(cpu_ticks "$pid") - ticks )) $(getconf CLK_TCK)" > "$raw/$which-r$round-rate-cpu.txt"
      wait "$load"
    fi
    stop_server "$which"
  done
  echo "round $round of $rounds done ($(uptime | sed 's/.*load average/load average/'))"
done

python3 - "$raw" "$model" "$rounds" "$BASELINE" "$spindle" "$rate" "$window" <<'PY' | tee "$out/ab-$model.txt"
import glob, json, re, statistics, sys
raw, model, rounds, baseline, spindle, rate, window = sys.argv[1:]
rounds = int(rounds)
med = statistics.median
print(f"{model}, HTTP binary tensors, {rounds} rounds alternating; before = {baseline}, after = {spindle}")

def level(which, r, c):
    return json.load(open(f"{raw}/{which}-r{r}-c{c}.json"))["levels"][0]

concurrency = sorted({int(m[1]) for f in glob.glob(f"{raw}/*-c*.json")
                      for m in [re.search(r"-c(\d+)\.json$", f)]})
print("\nclosed loop: medians over the rounds")
print(f"{'conc':>4} {'':6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}   every round's p50 (ms)")
for c in concurrency:
    for which in ("before", "after"):
        ls = [level(which, r, c) for r in range(1, rounds + 1)]
        p50s = " ".join(f"{l['p50_us'] / 1000:.3f}" for l in ls)
        print(f"{c:>4} {which:6} {med(l['throughput_rps'] for l in ls):>8.0f} "
              f"{med(l['p50_us'] for l in ls) / 1000:>7.3f} {med(l['p99_us'] for l in ls) / 1000:>7.3f}   {p50s}")

if 1 in concurrency:
    print("\nconcurrency 1, split by the server's statistics (µs, medians over the rounds):")
    print(f"{'':6} {'client mean':>11} {'server':>7} {'run':>7} {'server-run':>10} {'client-server':>13}")
    for which in ("before", "after"):
        rows = []
        for r in range(1, rounds + 1):
            stats = lambda f: json.load(open(f"{raw}/{which}-r{r}-{f}.json"))["model_stats"][0]["inference_stats"]
            s0, s = stats("stats0"), stats("stats")
            mean = lambda k: ((int(s[k]["ns"]) - int(s0[k]["ns"]))
                              / max(1, int(s[k]["count"]) - int(s0[k]["count"])) / 1000)
            client = level(which, r, 1)["mean_us"]
            rows.append((client, mean("success"), mean("compute_infer")))
        # The server's means cover the level's warm-up too (its statistics before and after).
        print(f"{which:6} {med(x[0] for x in rows):>11.1f} {med(x[1] for x in rows):>7.1f} "
              f"{med(x[2] for x in rows):>7.1f} {med(x[1] - x[2] for x in rows):>10.1f} "
              f"{med(x[0] - x[1] for x in rows):>13.1f}")

if rate != "0":
    print(f"\nopen loop at {rate} requests/s, {window} windows: p50 and the server's CPU-seconds per window")
    for which in ("before", "after"):
        p50s, cpus = [], []
        for r in range(1, rounds + 1):
            p50s.append(json.load(open(f"{raw}/{which}-r{r}-rate.json"))["levels"][0]["p50_us"] / 1000)
            ticks, hz = map(int, open(f"{raw}/{which}-r{r}-rate-cpu.txt").read().split())
            cpus.append(ticks / hz)
        print(f"{which:6} p50 {med(p50s):.3f} ms ({' '.join(f'{p:.3f}' for p in p50s)}); "
              f"CPU-s {med(cpus):.2f} ({' '.join(f'{c:.2f}' for c in cpus)})")
PY
