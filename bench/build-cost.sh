#!/usr/bin/env bash
# Build cost of two commits side by side: wall and CPU seconds of building the serving library
# alone, of CI's clippy phase and of building CI's tests, each commit in its own worktree and
# target dir seeded with this checkout's built dependencies (target/), so what is timed is the
# workspace's own crates. Run it on an idle machine after a `scripts/test.sh` has built target/.
#
# Usage: bench/build-cost.sh [BEFORE [AFTER]]   (default: 342ed02, before the crate split, and HEAD)
set -u
cd "$(dirname "$0")/.."
root=$PWD
before=${1:-342ed02}
after=${2:-HEAD}
for side in before after; do git worktree remove --force /tmp/m-$side 2>/dev/null; rm -rf /tmp/m-$side /tmp/t-$side; done
git worktree add -q /tmp/m-before "$before"
git worktree add -q /tmp/m-after "$after"
for side in before after; do cp -a "$root/target" /tmp/t-$side 2>/dev/null; done
for side in before after; do
  cd /tmp/m-$side
  /usr/bin/time -f "$side serving library alone (cargo build -p spindle-server): %e s wall, %U s user, %S s sys" env CARGO_TARGET_DIR=/tmp/t-$side cargo build --profile ci -p spindle-server -q 2>&1 | grep -E "wall|^error"
  /usr/bin/time -f "$side clippy (workspace, all targets): %e s wall, %U s user, %S s sys" env CARGO_TARGET_DIR=/tmp/t-$side cargo clippy --profile ci --workspace --all-targets -q 2>&1 | grep -E "wall|^error"
  /usr/bin/time -f "$side test build (cargo test --workspace --no-run): %e s wall, %U s user, %S s sys" env CARGO_TARGET_DIR=/tmp/t-$side cargo test --profile ci --workspace --no-run -q 2>&1 | grep -E "wall|^error"
done
cd "$root"
for side in before after; do git worktree remove --force /tmp/m-$side; rm -rf /tmp/t-$side; done
