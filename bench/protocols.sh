#!/usr/bin/env bash
# Protocol benchmark (issue: protocols). Side by side in one run, one server, cifar10,
# single-image requests at concurrency 16 from spindle loadtest: gRPC (raw contents), HTTP with
# binary tensors, HTTP JSON, TF Serving REST (row format) — requests/s, p50 and p99; then the
# cost of decoding and preparing one JPEG (spindle bench preprocess).
# Results: bench/results/protocols-<protocol>.json, bench/results/protocols.txt.
#
# Usage: bench/protocols.sh        Environment: WINDOW (default 3s), CONCURRENCY (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."
window=${WINDOW:-3s}
concurrency=${CONCURRENCY:-16}
out=bench/results
mkdir -p "$out" .cache
ORT_DYLIB_PATH=$(scripts/setup-ort.sh); export ORT_DYLIB_PATH
cargo build --release -q -p spindle-server
spindle=target/release/spindle
repo=.cache/bench-repo
[ -f "$repo/cifar10/config.toml" ] || "$spindle" zoo --out "$repo" --models cifar10 > /dev/null
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); grpc=$(free_port)
RUST_LOG=warn "$spindle" serve --repo "$repo" --http-addr "127.0.0.1:$http" \
  --grpc-addr "127.0.0.1:$grpc" --poll-interval 0 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "127.0.0.1:$http/v2/health/ready" > /dev/null && break
  sleep 0.1
done
for protocol in grpc http-binary http-json tf-rest; do
  url="http://127.0.0.1:$http"
  [ "$protocol" = grpc ] && url="grpc://127.0.0.1:$grpc"
  echo "== $protocol"
  "$spindle" loadtest --url "$url" --model cifar10 --protocol "$protocol" \
    --concurrency "$concurrency" --warmup 1s --window "$window" --max-windows 6 \
    --json "$out/protocols-$protocol.json"
done
kill -TERM $server; wait $server || true
trap - EXIT
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
