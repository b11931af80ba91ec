#!/usr/bin/env bash
# Protocol benchmark (issue: protocols). Side by side in one run, one server, cifar10,
# single-image requests at concurrency 16 from spindle loadtest: gRPC (raw contents), HTTP with
# binary tensors, HTTP JSON, TF Serving REST (row format) — requests/s, p50 and p99; then the
# cost of decoding and preparing one JPEG (spindle bench preprocess).
# Results: bench/results/protocols-<protocol>.json, bench/results/protocols.txt.
#
# Usage: bench/protocols.sh        Environment: WINDOW (default 3s), CONCURRENCY (default 16).
source "$(dirname "$0")/lib.sh"
concurrency=${CONCURRENCY:-16}
http=$(free_port); grpc=$(free_port)
start_server spindle "$spindle" serve --repo "$repo" --http-addr "127.0.0.1:$http" \
  --grpc-addr "127.0.0.1:$grpc" --poll-interval 0
wait_ready "http://127.0.0.1:$http"
for protocol in grpc http-binary http-json tf-rest; do
  url="http://127.0.0.1:$http"
  [ "$protocol" = grpc ] && url="grpc://127.0.0.1:$grpc"
  echo "== $protocol"
  measure "protocols-$protocol" "$url" cifar10 "$protocol" "$concurrency"
done
stop_server spindle
echo "== JPEG decode + preprocessing"
"$spindle" bench preprocess | tee "$out/protocols-preprocess.txt"
python3 - "$out" "$concurrency" <<'PY' | tee "$out/protocols.txt"
import json, sys
d, c = sys.argv[1], sys.argv[2]
print(f"cifar10, batch-1 requests, concurrency {c}")
print(f"{'protocol':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
for p in ["grpc", "http-binary", "http-json", "tf-rest"]:
    r = json.load(open(f"{d}/protocols-{p}.json"))["levels"][0]
    print(f"{p:<12} {r['throughput_rps']:>9.0f} {r['p50_us']/1000:>8.2f} {r['p99_us']/1000:>8.2f}")
PY
