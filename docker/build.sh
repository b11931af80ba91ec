#!/usr/bin/env bash
# Builds every image of the compose deployment on a machine with no registry access:
#   spindle-base:bookworm   docker/base.sh (debootstrap + docker import, cached)
#   spindle:dev             docker/Dockerfile: target/release/spindle + ONNX Runtime (PyPI wheel)
#                           (another tag with SPINDLE_IMAGE=NAME:TAG)
#   spindle-hdfs:2.7.3      docker/hdfs/Dockerfile: Debian's Java 17 + Hadoop 2.7.3 jars
# Builds the release binary first (cargo; SPINDLE_BIN=PATH uses a binary built already, as
# scripts/test.sh does), fetches the jars (scripts/hdfs.sh fetch) and the
# ONNX Runtime library (scripts/setup-ort.sh). The binary is copied in, not built inside: the
# base has no Rust toolchain, and the host's cargo cache makes rebuilds fast.
#
#   docker/build.sh             all images
#   docker/build.sh --prepare   only the base and the HDFS image, which need no binary:
#                               scripts/test.sh runs this while cargo compiles, so the
#                               downloads (Debian packages) overlap the build; the full
#                               build later finds both images cached.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
prepare=0
[ "${1:-}" = --prepare ] && prepare=1
docker/base.sh >/dev/null
jars=$(scripts/hdfs.sh fetch)
ctx=$(mktemp -d /tmp/spindle-docker.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/hdfs"
cp docker/hdfs/Dockerfile docker/hdfs/entrypoint.sh "$ctx/hdfs/"
cp -r "$jars" "$ctx/hdfs/jars"
docker build -q -t spindle-hdfs:2.7.3 "$ctx/hdfs" >&2
if [ "$prepare" = 1 ]; then
  echo "built spindle-base:bookworm spindle-hdfs:2.7.3" >&2
  exit 0
fi
image=${SPINDLE_IMAGE:-spindle:dev}
bin=${SPINDLE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --bin spindle >&2
  bin=${CARGO_TARGET_DIR:-$root/target}/release/spindle
fi
[ -x "$bin" ] || { echo "build.sh: $bin is not an executable spindle binary" >&2; exit 1; }
ort=$(scripts/setup-ort.sh)
mkdir -p "$ctx/spindle/onnxruntime"
cp docker/Dockerfile "$ctx/spindle/"
cp "$bin" "$ctx/spindle/spindle"
# The versioned file plus the unversioned name ORT_DYLIB_PATH points at.
cp "$ort" "$ctx/spindle/onnxruntime/"
ln -s "$(basename "$ort")" "$ctx/spindle/onnxruntime/libonnxruntime.so"
docker build -q -t "$image" "$ctx/spindle" >&2
echo "built $image spindle-hdfs:2.7.3" >&2
