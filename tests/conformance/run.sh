#!/usr/bin/env bash
# Runs the client conformance suite: installs tritonclient 2.73.0 (+ requests, Pillow, numpy)
# in its own virtual environment under .cache/, writes the zoo, starts `spindle` ($SPINDLE_BIN, or the release build)
# on free loopback ports, runs test_clients.py against it, and stops the server.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.cache/tritonvenv"
if ! "$venv/bin/python" -c 'import tritonclient.grpc, tritonclient.http, requests, PIL' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'tritonclient[http,grpc]==2.73.0' requests pillow
fi
# SPINDLE_BIN: a binary built already (scripts/test.sh passes its own); else the release build.
bin=${SPINDLE_BIN:-$root/target/release/spindle}
[ -x "$bin" ] || (cd "$root" && cargo build --release --bin spindle)
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
"$bin" zoo --out "$work/repo" --models cifar10,inception_v3 >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
grpc_port=$(free_port)
"$bin" serve --repo "$work/repo" --http-addr "127.0.0.1:$http_port" \
    --grpc-addr "127.0.0.1:$grpc_port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:$http_port/v2/health/ready" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; exit 1; }
    sleep 0.1
done
status=0
SPINDLE_HTTP="127.0.0.1:$http_port" SPINDLE_GRPC="127.0.0.1:$grpc_port" \
    "$venv/bin/python" "$root/tests/conformance/test_clients.py" || status=$?
if [ "$status" -ne 0 ]; then
    echo "--- server log ---" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
