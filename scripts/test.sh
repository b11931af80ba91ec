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
cargo test --workspace --release
