#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what the tests need (the ONNX Runtime
# library, in .cache/) first, so it works on a fresh machine with only the Rust toolchain and
# Python 3.
set -euo pipefail
cd "$(dirname "$0")/.."
ORT_DYLIB_PATH=$(scripts/setup-ort.sh)
export ORT_DYLIB_PATH
echo "test: ONNX Runtime library at $ORT_DYLIB_PATH" >&2
cargo fmt --all --check
cargo clippy --workspace --all-targets --release -- -D warnings
# Release: tract and the zoo's CNNs are far too slow unoptimised, and the demo shares this build.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --release 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo's last line is a crate's doc-tests).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
