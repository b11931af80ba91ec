#!/usr/bin/env bash
# Runs the client conformance suite: installs tritonclient 2.73.0 (+ requests, Pillow, numpy)
# in its own virtual environment under .cache/, writes the zoo, starts `spindle` ($SPINDLE_BIN, or
# the release build) on free loopback ports, and a second one with TLS (a CA and certificate made
# here with openssl) and a bearer token, runs test_clients.py against both, and stops them.
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
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
"$bin" zoo --out "$work/repo" --models cifar10,inception_v3 >/dev/null 2>&1
"$bin" zoo --out "$work/repo-tls" --models cifar10 >/dev/null 2>&1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A private CA and a server certificate for 127.0.0.1, made now, for the TLS server; its
# tokens file holds one random token.
tls="$work/tls"
mkdir -p "$tls"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$tls/ca.key" -out "$tls/ca.pem" -days 2 \
    -subj "/CN=spindle conformance CA" 2>/dev/null
openssl req "${ec[@]}" -keyout "$tls/server.key" -out "$tls/server.csr" \
    -subj "/CN=127.0.0.1" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tls/ext"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -out "$tls/server.pem" -days 2 -extfile "$tls/ext" 2>/dev/null
openssl rand -hex 24 >"$tls/tokens"

# start_server NAME HEALTH_URL CURL_OPTION... -- SERVE_ARGS...: starts `spindle serve` and waits
# until its readiness answers (with curl's options, e.g. the CA for https).
start_server() {
    local name=$1 health=$2 curl_opts=()
    shift 2
    while [ "$1" != "--" ]; do curl_opts+=("$1"); shift; done
    shift
    "$bin" serve "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 600); do
        curl -fs "${curl_opts[@]}" "$health" >/dev/null 2>&1 && return 0
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$name.log"; exit 1; }
        sleep 0.1
    done
    echo "$name: not ready after 60 s" >&2
    cat "$work/$name.log" >&2
    exit 1
}
http_port=$(free_port)
grpc_port=$(free_port)
start_server server "http://127.0.0.1:$http_port/v2/health/ready" -- \
    --repo "$work/repo" --http-addr "127.0.0.1:$http_port" --grpc-addr "127.0.0.1:$grpc_port"
tls_http_port=$(free_port)
tls_grpc_port=$(free_port)
start_server tls-server "https://127.0.0.1:$tls_http_port/v2/health/ready" \
    --cacert "$tls/ca.pem" -- \
    --repo "$work/repo-tls" --http-addr "127.0.0.1:$tls_http_port" \
    --grpc-addr "127.0.0.1:$tls_grpc_port" --tls-cert "$tls/server.pem" \
    --tls-key "$tls/server.key" --auth-token-file "$tls/tokens"
status=0
SPINDLE_HTTP="127.0.0.1:$http_port" SPINDLE_GRPC="127.0.0.1:$grpc_port" \
    SPINDLE_TLS_HTTP="127.0.0.1:$tls_http_port" SPINDLE_TLS_GRPC="127.0.0.1:$tls_grpc_port" \
    SPINDLE_TLS_CA="$tls/ca.pem" SPINDLE_TLS_TOKEN="$(cat "$tls/tokens")" \
    "$venv/bin/python" "$root/tests/conformance/test_clients.py" || status=$?
if [ "$status" -ne 0 ]; then
    for log in server tls-server; do
        echo "--- $log log ---" >&2
        tail -n 50 "$work/$log.log" >&2
    done
fi
exit "$status"
