#!/usr/bin/env bash
# GPU runs (issue 22): ONNX Runtime's CUDA provider checked, CPU beside GPU on one machine, and
# replica scaling on 16 cores, prepared on the CPU machine and run on the lent GPU machine (one
# NVIDIA H200, 16 cores, no network; a call carries at most 64 MiB and runs at most 10 minutes).
# `bench/gpu.sh --help` says how; docs/performance.md ("GPU runs (issue 22)") says why.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

ort_gpu_version=1.31.1
# CPython of the GPU machine: its python3 is 3.12.3 (/opt/torch/.venv, the device notes' KINDS.md).
# Only the Python binding in the wheel depends on it; spindle needs the C library beside it, and
# `measure` unzips the wheel when pip refuses it.
gpu_python=${GPU_PYTHON:-3.12}
chunk_mib=${CHUNK_MIB:-56}
call_limit=$((64 * 1024 * 1024))
gpu_dir=.gpu
wheel_cache=.cache/gpu
state=${SPINDLE_GPU_STATE:-/tmp/spindle-gpu}

usage() {
  cat << 'EOF'
bench/gpu.sh: issue 22's measurements on the lent GPU machine, prepared here.

  bench/gpu.sh prepare     (CPU machine) download onnxruntime-gpu 1.31.1 (cp312, ~244 MiB), cut it
                           into chunks of <= 56 MiB under .gpu/ (ignored), write .gpu/SHA256SUMS,
                           build target/release/spindle and the ORT engine test binary, strip and xz
                           both into .gpu/bin/, make sample JPEGs in .gpu/samples/, and print
                           the device `run` calls to make, with their carry lists.
  bench/gpu.sh receive N   (GPU machine) verify .gpu/chunk-N against .gpu/SHA256SUMS and move
                           it to /tmp/spindle-gpu/ (kept while the machine stays warm, 30 s
                           after a call); copy .gpu/bin and .gpu/samples there when carried;
                           say which chunks are still missing.
  bench/gpu.sh measure     (GPU machine, the last call; about 6 minutes, at most 9) reassemble
                           and install the wheel, record nvidia-smi, driver and CUDA versions,
                           check the CUDA provider (Python onnxruntime, then the ORT engine tests
                           with --test-threads=1), then measure cifar10 and inception_v3
                           in-process (cuda and cpu), served (spindle serve --device cuda, then
                           cpu; spindle loadtest at concurrency 1, 16, 64, binary tensors and
                           JPEGs), and replica scaling on the CPU (1, 2, 4 replicas on cores
                           0-1 2-3 4-5 6-7, generator on 8-15). Writes into $OUT: summary.txt,
                           results.json, nvidia-smi.txt, env.txt, ort-tests.txt, servers.log,
                           measure.log. A failed step is recorded and the next one runs.
  bench/gpu.sh rehearse    (CPU machine) the receive and measure flow end to end on this machine:
                           the CPU wheel of .cache/venv (scripts/setup-ort.sh), --device cpu in
                           place of cuda, tiny windows, 1 and 2 replicas; output in a temporary
                           $OUT whose path it prints.
  bench/gpu.sh plan        print the calls again (after prepare)
  bench/gpu.sh --help

In-process on the GPU uses `spindle bench engine --device cuda` where the binary has that flag,
else ONNX Runtime's Python binding from the same wheel (same batches and timing); the summary
says which.

Environment: GPU_PYTHON (3.12), CHUNK_MIB (56), SPINDLE_GPU_STATE (/tmp/spindle-gpu),
PREPARE_SOURCE (tree: the working tree; head: the committed HEAD, exported clean). For measure:
WINDOW (2s), MAX_WINDOWS (4), WARMUP (1s), GPU_WARMUP (3s), INPROC_DURATION (1s), LEVELS
(1,16,64), MEASURE_BUDGET_S (510: a step that would end later is skipped and recorded), LAYOUT
("0-1 2-3 4-5 6-7"), SCALING_NS ("1 2 4"), LOADGEN_CORES ("8-15"), CONCURRENCY (8 a replica).
EOF
}

die() { echo "gpu.sh: $*" >&2; exit 1; }

# unpack_bins FROM TO: the carried FROM/*.xz (and BUILD) into TO, executable.
unpack_bins() {
  local from=$1 to=$2 f name
  rm -rf "$to"
  mkdir -p "$to"
  [ ! -f "$from/BUILD" ] || cp "$from/BUILD" "$to/"
  for f in "$from"/*.xz; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .xz)
    if command -v xz > /dev/null; then xz -dc "$f" > "$to/$name"
    else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$f" "$to/$name"; fi || return 1
    chmod +x "$to/$name"
  done
}
mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }
# A humantime duration (500ms, 2s) in seconds: float, and rounded up to a whole second.
dur_s() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) { sub(/ms$/, "", d); print d / 1000 } else { sub(/s$/, "", d); print d + 0 } }'; }
# GET URL (body on stdout; fails unless 2xx): curl, or Python where an image lacks curl.
http_get() {
  if command -v curl > /dev/null; then curl -sf "$1"
  else python3 -c 'import sys, urllib.request; sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=5).read())' "$1" 2> /dev/null; fi
}
dur_ceil() { awk -v d="$(dur_s "$1")" 'BEGIN { c = int(d); if (c < d) c++; print c }'; }

# The files that travel with every call: tracked and untracked-not-ignored, in bytes.
tree_bytes() {
  git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}'
}

# ---------------------------------------------------------------------------------------------
prepare() {
  set -e
  command -v cargo > /dev/null || die "prepare runs on the CPU machine, with cargo"
  git check-ignore -q "$gpu_dir/x" || die "$gpu_dir/ is not ignored by git: add /.gpu to .gitignore"
  mkdir -p "$gpu_dir" "$wheel_cache"

  echo "== onnxruntime-gpu $ort_gpu_version wheel for CPython $gpu_python (the GPU machine's; this machine has $(python3 -V 2>&1))"
  local wheel
  wheel=$(ls "$wheel_cache"/onnxruntime_gpu-"$ort_gpu_version"-cp"${gpu_python/./}"-*.whl 2> /dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    python3 -m pip download -q --no-deps --only-binary :all: --python-version "$gpu_python" \
      --implementation cp --platform manylinux_2_28_x86_64 "onnxruntime-gpu==$ort_gpu_version" -d "$wheel_cache"
    wheel=$(ls "$wheel_cache"/onnxruntime_gpu-"$ort_gpu_version"-cp"${gpu_python/./}"-*.whl | head -n 1)
  fi
  echo "$wheel: $(stat -c %s "$wheel") bytes ($(mib "$(stat -c %s "$wheel")") MiB)"
  # What the CUDA provider needs at run time (not in the wheel): it links libcudart.so.13,
  # libcublas(Lt).so.13, libcurand.so.10 and the driver's libcuda.so.1, and opens cuDNN 9
  # (libcudnn.so.9) and cuFFT when used. The GPU machine's image has CUDA 13 (driver 580,
  # nvcc 13.0) and PyTorch's nvidia-* CUDA 13 packages (cudnn-cu13, cublas, cuda-runtime,
  # curand, cufft, cuda-nvrtc): `measure` finds them there. Carrying them instead would be
  # about 1.2 GB (cudnn 517 MB, cublas 444 MB, cufft 165 MB, ...), 22 more calls: not planned.

  echo "== chunks of at most $chunk_mib MiB in $gpu_dir/"
  rm -f "$gpu_dir"/chunk-* "$gpu_dir/SHA256SUMS"
  python3 - "$wheel" "$gpu_dir" "$chunk_mib" << 'PY'
import hashlib, os, sys
wheel, out, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = mib * 1024 * 1024
lines = [f"{hashlib.sha256(open(wheel, 'rb').read()).hexdigest()}  {os.path.basename(wheel)}"]
with open(wheel, "rb") as f:
    n = 0
    while chunk := f.read(size):
        n += 1
        open(f"{out}/chunk-{n}", "wb").write(chunk)
        lines.append(f"{hashlib.sha256(chunk).hexdigest()}  chunk-{n}")
open(f"{out}/SHA256SUMS", "w").write("\n".join(lines) + "\n")
PY
  ls -l "$gpu_dir"/chunk-* | awk '{print "  " $9 ": " $5 " bytes"}'

  # PREPARE_SOURCE=head builds the committed HEAD (exported with git archive into .cache/gpu/src,
  # sharing the target folder, so only the workspace's own crates compile again) instead of the
  # working tree, when other work in progress in the tree does not build.
  local source=${PREPARE_SOURCE:-tree} src=$root described
  local target=${CARGO_TARGET_DIR:-target} test_exe
  [[ $target == /* ]] || target=$root/$target
  case $source in
    tree)
      described="commit $(git rev-parse HEAD)$(git diff --quiet HEAD -- . 2> /dev/null || echo ' with uncommitted changes in the working tree')" ;;
    head)
      src=$root/$wheel_cache/src
      rm -rf "$src"
      mkdir -p "$src"
      git archive HEAD | tar -x -C "$src"
      described="commit $(git rev-parse HEAD), clean (git archive HEAD)" ;;
    *) die "PREPARE_SOURCE is tree or head, not '$source'" ;;
  esac
  echo "== release build of the $source ($described): spindle and the ORT engine tests (cargo waits if another build holds the lock)"
  (cd "$src" && CARGO_TARGET_DIR=$target cargo build --release -p spindle-cli --bin spindle)
  test_exe=$(cd "$src" && CARGO_TARGET_DIR=$target cargo test --release -p spindle-engine-ort --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "engine" and m.get("executable"):
        print(m["executable"])')
  [ -n "$test_exe" ] && [ -x "$test_exe" ] || die "no executable for the ORT engine tests in cargo's JSON"
  rm -rf "$gpu_dir/bin" "$wheel_cache/bin"
  mkdir -p "$gpu_dir/bin" "$wheel_cache/bin"
  # No debug info (the symbols stay, for backtraces), then xz: 85 MB become about 17 MB, which
  # travel beside the last chunk. `receive` and `measure` unpack them (xz, or Python's lzma).
  strip --strip-debug -o "$wheel_cache/bin/spindle" "$target/release/spindle"
  strip --strip-debug -o "$wheel_cache/bin/ort-engine-tests" "$test_exe"
  "$wheel_cache/bin/spindle" --version > /dev/null
  xz -6 -T2 -c "$wheel_cache/bin/spindle" > "$gpu_dir/bin/spindle.xz"
  xz -6 -T2 -c "$wheel_cache/bin/ort-engine-tests" > "$gpu_dir/bin/ort-engine-tests.xz"
  {
    echo "$described"
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) by $(rustc --version)"
    echo "spindle from $target/release/spindle; ort-engine-tests from $test_exe"
  } > "$gpu_dir/bin/BUILD"
  ls -l "$wheel_cache"/bin/* "$gpu_dir"/bin/*.xz | awk '{print "  " $9 ": " $5 " bytes"}'

  echo "== sample JPEGs (16 cifar10 32x32, 16 inception_v3 500x375), as bench/suite.sh makes them"
  if [ ! -f "$gpu_dir/samples/done" ]; then
    [ -x .cache/bench-venv/bin/python ] && .cache/bench-venv/bin/python -c 'import PIL' 2> /dev/null \
      || { python3 -m venv .cache/bench-venv && .cache/bench-venv/bin/pip install -q pillow; }
    rm -rf "$gpu_dir/samples"
    .cache/bench-venv/bin/python - "$gpu_dir/samples" << 'PY'
import random, sys
from pathlib import Path
from PIL import Image, ImageDraw, ImageFilter
out = Path(sys.argv[1])
random.seed(7)
for model, size, count in [("cifar10", (32, 32), 16), ("inception_v3", (500, 375), 16)]:
    (out / model).mkdir(parents=True)
    for i in range(count):
        w, h = size
        img = Image.new("RGB", size)
        px = img.load()
        top, bottom = [random.randrange(256) for _ in range(3)], [random.randrange(256) for _ in range(3)]
        for y in range(h):
            c = tuple(int(t + (b - t) * y / h) for t, b in zip(top, bottom))
            for x in range(w):
                px[x, y] = tuple(min(255, max(0, v + random.randint(-12, 12))) for v in c)
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = random.randrange(w), random.randrange(h)
            box = [x0, y0, x0 + random.randrange(2, w // 2 + 3), y0 + random.randrange(2, h // 2 + 3)]
            fill = tuple(random.randrange(256) for _ in range(3))
            (draw.ellipse if random.random() < 0.5 else draw.rectangle)(box, fill=fill)
        img.filter(ImageFilter.GaussianBlur(0.8)).save(out / model / f"sample-{i:02}.jpg", quality=90)
PY
    touch "$gpu_dir/samples/done"
  fi
  echo "  $(du -sb "$gpu_dir/samples" | cut -f1) bytes"

  plan
}

# The device calls: every chunk with SHA256SUMS, one call each; the binaries and samples with
# the last chunk when they fit beside it, else in a call of their own; measure in the last call.
plan() {
  set -e
  local tree sums bins samples cap n last_size final_extra k calls=() carries=()
  tree=$(tree_bytes)
  sums=$(stat -c %s "$gpu_dir/SHA256SUMS")
  bins=$(du -sb "$gpu_dir/bin" | cut -f1)
  samples=$(du -sb "$gpu_dir/samples" | cut -f1)
  cap=$((call_limit - tree - 1024 * 1024)) # 1 MiB of margin for files the tree gains meanwhile
  n=$(ls "$gpu_dir"/chunk-* | wc -l)
  last_size=$(stat -c %s "$gpu_dir/chunk-$n")
  final_extra=$((bins + samples + sums))
  for k in $(seq 1 "$n"); do
    [ $(($(stat -c %s "$gpu_dir/chunk-$k") + sums)) -le $cap ] || die "chunk-$k does not fit in one call beside the tree ($tree bytes): lower CHUNK_MIB"
  done
  [ $final_extra -le $cap ] || die "the binaries and samples ($final_extra bytes) do not fit in one call beside the tree"
  for k in $(seq 1 $((n - 1))); do
    calls+=("bench/gpu.sh receive $k")
    carries+=("\"$gpu_dir/SHA256SUMS\", \"$gpu_dir/chunk-$k\"")
  done
  if [ $((last_size + final_extra)) -le $cap ]; then
    calls+=("bench/gpu.sh receive $n; bench/gpu.sh measure")
    carries+=("\"$gpu_dir/SHA256SUMS\", \"$gpu_dir/chunk-$n\", \"$gpu_dir/bin\", \"$gpu_dir/samples\"")
  else
    calls+=("bench/gpu.sh receive $n")
    carries+=("\"$gpu_dir/SHA256SUMS\", \"$gpu_dir/chunk-$n\"")
    calls+=("bench/gpu.sh measure")
    carries+=("\"$gpu_dir/SHA256SUMS\", \"$gpu_dir/bin\", \"$gpu_dir/samples\"")
  fi
  {
    echo "Sizes: working tree $tree bytes ($(mib "$tree") MiB), $n chunks ($(mib "$(cat "$gpu_dir"/chunk-* | wc -c)") MiB), binaries $(mib "$bins") MiB, samples $(mib "$samples") MiB; at most $(mib $cap) MiB of carried files a call."
    echo "Device calls (the run tool), in this order and back to back: the machine stays warm only 30 s"
    echo "after a call, and /tmp/spindle-gpu (the chunks) is lost when it goes cold. Check that each reply"
    echo "lists every chunk received so far ('in /tmp/spindle-gpu: chunks 1 2 ...') before the next call."
    local i
    for i in "${!calls[@]}"; do
      local timeout=120
      [[ ${calls[$i]} == *measure* ]] && timeout=600
      echo "  $((i + 1)). run(command=\"${calls[$i]}\", carry=[${carries[$i]}], timeout_s=$timeout)"
    done
    echo "Then give_back, and fetch the files the last call returned (summary.txt first)."
    echo "If the machine went cold between calls (a reply says chunks are missing that an earlier call"
    echo "received), start again from call 1. Budget: about 1-2 min machine start, ~15-30 s for each"
    echo "receive call, about 6 min for measure (MEASURE_BUDGET_S=510 caps it at 8.5)."
  } | tee "$gpu_dir/PLAN.txt"
}

# ---------------------------------------------------------------------------------------------
receive() {
  local n=${1:-}
  [[ $n =~ ^[0-9]+$ ]] || die "usage: bench/gpu.sh receive N"
  mkdir -p "$state"
  [ ! -f "$gpu_dir/SHA256SUMS" ] || cp "$gpu_dir/SHA256SUMS" "$state/SHA256SUMS"
  local sums=$state/SHA256SUMS
  [ -f "$sums" ] || die "no SHA256SUMS: carry $gpu_dir/SHA256SUMS with the chunk"
  local expected
  expected=$(awk -v f="chunk-$n" '$2 == f {print $1}' "$sums")
  [ -n "$expected" ] || die "SHA256SUMS lists no chunk-$n"
  local rc=0
  if [ -f "$gpu_dir/chunk-$n" ]; then
    if [ "$(sha256sum < "$gpu_dir/chunk-$n" | cut -d' ' -f1)" = "$expected" ]; then
      mv -f "$gpu_dir/chunk-$n" "$state/chunk-$n" && echo "chunk-$n: verified, moved to $state"
    else
      echo "chunk-$n: sha256 MISMATCH, not kept (carry it again)"
      rc=1
    fi
  elif [ -f "$state/chunk-$n" ] && [ "$(sha256sum < "$state/chunk-$n" | cut -d' ' -f1)" = "$expected" ]; then
    echo "chunk-$n: already in $state (verified)"
  else
    echo "chunk-$n: not carried (carry $gpu_dir/chunk-$n)"
    rc=1
  fi
  if [ -d "$gpu_dir/bin" ]; then
    unpack_bins "$gpu_dir/bin" "$state/bin" || { echo "binaries: could not unpack $gpu_dir/bin"; rc=1; }
    echo "binaries: $(cat "$state/bin/BUILD" 2> /dev/null | head -n 1); $("$state/bin/spindle" --version 2>&1 | head -n 1)"
  fi
  if [ -d "$gpu_dir/samples" ]; then
    rm -rf "$state/samples" && cp -a "$gpu_dir/samples" "$state/samples"
    echo "samples: $(find "$state/samples" -name '*.jpg' | wc -l) JPEGs"
  fi
  local missing=() here=() k
  for k in $(awk '$2 ~ /^chunk-/ {sub("chunk-", "", $2); print $2}' "$sums" | sort -n); do
    if [ -f "$state/chunk-$k" ]; then here+=("$k"); else missing+=("chunk-$k"); fi
  done
  echo "in $state: chunks ${here[*]:-none}; missing: ${missing[*]:-none}"
  return $rc
}

# ---------------------------------------------------------------------------------------------
# measure: every step is bounded by `timeout`; a failure is recorded in steps.tsv and the next
# step runs. Steps that would end after the budget are skipped and recorded.
rehearse=${REHEARSE:-0}

measure() {
  local out=${OUT:-}
  if [ -z "$out" ]; then
    out=$root/.cache/gpu-out
    echo "gpu.sh: OUT is not set; writing into $out"
  fi
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  measure_body "$out" 2>&1 | tee "$out/measure.log"
}

measure_body() {
  local out=$1
  local started=$SECONDS budget=${MEASURE_BUDGET_S:-510}
  local work=$state/work
  rm -rf "$work"
  mkdir -p "$work/res"
  local steps=$work/steps.tsv facts=$work/facts.tsv
  : > "$steps"
  : > "$facts"
  # Exported: steps run under `timeout`, so the functions they call run in a child bash.
  export window=${WINDOW:-2s} max_windows=${MAX_WINDOWS:-4} inproc_duration=${INPROC_DURATION:-1s}
  export levels=${LEVELS:-1,16,64}
  export layout=${LAYOUT:-0-1 2-3 4-5 6-7} scaling_ns=${SCALING_NS:-1 2 4}
  export loadgen_cores=${LOADGEN_CORES-8-15} concurrency=${CONCURRENCY:-8}
  export work state root gpu_dir
  local win_s
  win_s=$(dur_ceil "$window")
  local gpu_device=cuda
  [ "$rehearse" = 1 ] && gpu_device=cpu

  fact() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\t\n' '  ')" >> "$facts"; }
  # step NAME SECONDS(estimate) TIMEOUT CMD...: run CMD under timeout unless the budget is spent.
  step() {
    local name=$1 estimate=$2 limit=$3 t0 rc
    shift 3
    local left=$((budget - (SECONDS - started)))
    if [ "$estimate" -gt "$left" ]; then
      echo "== $name: SKIPPED, about ${estimate}s needed and ${left}s of the budget left"
      printf '%s\tskipped\t0\tout of time (%ss left)\n' "$name" "$left" >> "$steps"
      return 99
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== $name (at $((SECONDS - started))s, limit ${limit}s)"
    t0=$SECONDS
    timeout -k 5 "$limit" "$@"
    rc=$?
    local note=ok
    [ $rc -eq 0 ] || note="failed (exit $rc)"
    [ $rc -ne 124 ] && [ $rc -ne 137 ] || note="timed out after ${limit}s"
    echo "== $name: $note in $((SECONDS - t0))s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$note" >> "$steps"
    return $rc
  }
  # note NAME TEXT: a step that did not run, with the reason.
  note() {
    echo "== $1: $2"
    printf '%s\tnot run\t0\t%s\n' "$1" "$2" >> "$steps"
  }

  declare -gA servers=()
  stop_servers() {
    local name
    for name in "${!servers[@]}"; do kill -TERM "${servers[$name]}" 2> /dev/null; done
    for name in "${!servers[@]}"; do wait "${servers[$name]}" 2> /dev/null; unset "servers[$name]"; done
  }
  util_pid=""
  trap 'stop_servers; [ -z "$util_pid" ] || kill "$util_pid" 2> /dev/null' EXIT

  echo "gpu.sh measure: $(date -u +%Y-%m-%dT%H:%M:%SZ), rehearsal=$rehearse, budget ${budget}s"
  fact date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  fact rehearsal "$rehearse"
  fact gpu_device "$gpu_device"

  # --- binaries and samples: from /tmp/spindle-gpu (receive), else from the carried .gpu/
  local bin=$state/bin samples=$state/samples
  [ -x "$bin/spindle" ] || unpack_bins "$root/$gpu_dir/bin" "$bin" || echo "could not unpack $gpu_dir/bin"
  [ -d "$samples" ] || samples=$root/$gpu_dir/samples
  export spindle=$bin/spindle
  fact build "$(cat "$bin/BUILD" 2> /dev/null | head -n 2 | tr '\n' ';')"
  if ! "$spindle" --version > /dev/null 2>&1; then
    note binaries "no runnable $spindle ($("$spindle" --version 2>&1 | head -n 1)); carry $gpu_dir/bin"
  fi

  # --- the machine
  local have_gpu=0
  {
    echo "# nvidia-smi"
    nvidia-smi 2>&1 || echo "(nvidia-smi failed or is missing)"
    echo
    echo "# nvidia-smi --query-gpu"
    nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id,clocks.max.sm,clocks.max.mem,power.limit,compute_cap --format=csv 2>&1
    echo
    echo "# nvidia-smi -q (first 200 lines)"
    nvidia-smi -q 2>&1 | head -n 200
  } > "$out/nvidia-smi.txt"
  if nvidia-smi -L 2> /dev/null | grep -q '^GPU 0'; then
    have_gpu=1
    fact gpu "$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)"
    fact driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
    fact cuda_driver_api "$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)"
  else
    if command -v nvidia-smi > /dev/null; then
      fact gpu "none (nvidia-smi -L lists no GPU: $(nvidia-smi -L 2>&1 | head -n 1))"
    else
      fact gpu "none (no nvidia-smi on this machine)"
    fi
  fi
  fact have_gpu "$have_gpu"
  fact nvcc "$(nvcc --version 2> /dev/null | tail -n 2 | head -n 1 || true)"
  fact cpu "$(lscpu 2> /dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
  fact cores "$(nproc)"
  fact memory "$(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  fact kernel "$(uname -r)"
  fact python3 "$(command -v python3) $(python3 -V 2>&1)"
  echo "GPU: $have_gpu; $(grep -E '^(gpu|driver|cuda_driver_api|cpu|cores)\b' "$facts" | cut -f2 | tr '\n' ';')"

  # --- the wheel: reassembled from the chunks, installed with pip (--target: the GPU machine's
  # python3 is itself a venv, and its numpy and nvidia-* packages must stay visible), or unzipped
  export site=$state/site
  local gpu_lib=""
  install_wheel() {
    local sums=$state/SHA256SUMS
    [ -f "$sums" ] || { [ -f "$root/$gpu_dir/SHA256SUMS" ] && cp "$root/$gpu_dir/SHA256SUMS" "$sums"; } || { echo "no SHA256SUMS"; return 1; }
    local name
    name=$(awk '$2 !~ /^chunk-/ {print $2}' "$sums" | head -n 1)
    if ls "$site"/onnxruntime/capi/libonnxruntime.so.1.31.* > /dev/null 2>&1; then
      echo "already installed in $site"
      return 0
    fi
    local k parts=() missing=()
    for k in $(awk '$2 ~ /^chunk-/ {sub("chunk-", "", $2); print $2}' "$sums" | sort -n); do
      if [ -f "$state/chunk-$k" ]; then parts+=("$state/chunk-$k")
      elif [ -f "$root/$gpu_dir/chunk-$k" ]; then parts+=("$root/$gpu_dir/chunk-$k")
      else missing+=("chunk-$k"); fi
    done
    [ ${#missing[@]} -eq 0 ] || { echo "missing: ${missing[*]} (run the receive calls again)"; return 1; }
    cat "${parts[@]}" > "$state/$name"
    (cd "$state" && grep "  $name\$" SHA256SUMS | sha256sum -c --quiet) || { echo "the reassembled wheel's sha256 is wrong"; return 1; }
    echo "reassembled $name ($(stat -c %s "$state/$name") bytes), sha256 verified"
    rm -rf "$site"
    if python3 -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" "$state/$name"; then
      echo "installed with pip into $site"
    else
      echo "pip refused the wheel (another CPython?); unzipping it instead"
      python3 -m zipfile -e "$state/$name" "$site" || return 1
    fi
    ls "$site"/onnxruntime/capi/libonnxruntime.so.1.31.* > /dev/null
  }
  export -f install_wheel
  if step wheel 40 180 bash -c install_wheel; then
    gpu_lib=$(ls "$site"/onnxruntime/capi/libonnxruntime.so.1.31.* | head -n 1)
    chmod +x "$site"/onnxruntime/capi/*.so* 2> /dev/null
  fi
  fact gpu_wheel_lib "${gpu_lib:-none}"

  # --- CUDA 13 libraries for the provider: the nvidia-* packages of the machine's Python, the
  # CUDA toolkit, the driver. Their folders go first on LD_LIBRARY_PATH.
  local cuda_dirs
  cuda_dirs=$(python3 - << 'PY' 2> /dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()])
for p in sys.path:
    if p.endswith("site-packages"):
        roots.add(p)
dirs = []
for r in sorted(roots):
    dirs += sorted(glob.glob(os.path.join(r, "nvidia", "*", "lib")))
dirs += ["/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/local/nvidia/lib64",
         "/usr/local/nvidia/lib", "/usr/lib/x86_64-linux-gnu"]
print("\n".join(d for d in dirs if os.path.isdir(d)))
PY
  )
  local libs_found="" libs_missing="" lib d hit
  for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcufft.so.12 libcudnn.so.9 libnvrtc.so.13; do
    hit=""
    for d in $cuda_dirs; do [ -e "$d/$lib" ] && { hit=$d; break; }; done
    [ -n "$hit" ] || hit=$(ldconfig -p 2> /dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
    if [ -n "$hit" ]; then libs_found+="$lib=$hit "; else libs_missing+="$lib "; fi
  done
  local ld_extra
  ld_extra=$(echo "$cuda_dirs" | grep -v '^/usr/lib/x86_64-linux-gnu$' | paste -sd: -)
  export LD_LIBRARY_PATH=${ld_extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fact cuda_libs_found "${libs_found:-none}"
  fact cuda_libs_missing "${libs_missing:-none}"
  echo "CUDA libraries found: ${libs_found:-none}; missing: ${libs_missing:-none}"
  local provider=""
  [ -z "$gpu_lib" ] || provider=$(dirname "$gpu_lib")/libonnxruntime_providers_cuda.so
  if [ -n "$provider" ] && [ -f "$provider" ]; then
    fact provider_unresolved "$(ldd "$provider" 2>&1 | grep 'not found' | awk '{print $1}' | tr '\n' ' ')"
  fi

  # --- the ONNX Runtime library the measurements use
  local ort_lib=$gpu_lib python_path=$site python=python3
  if [ "$rehearse" = 1 ]; then
    ort_lib=$(scripts/setup-ort.sh 2> /dev/null)
    python=$root/.cache/venv/bin/python
    python_path=""
  fi
  if [ -z "$ort_lib" ]; then
    note ort-library "no ONNX Runtime 1.31 library (the wheel step failed); every ONNX Runtime step below fails"
    ort_lib=/nonexistent/libonnxruntime.so.1.31.1
  fi
  export ORT_DYLIB_PATH=$ort_lib
  fact ort_lib "$ort_lib"
  local onnx_dir=${ort_lib%/libonnxruntime.so*}

  # --- check 1: does ONNX Runtime (Python, the same library folder) put a session on CUDA?
  local python_check=$work/python-check.py
  cat > "$python_check" << 'PY'
import json, sys, time
result = {"requested": sys.argv[2]}
try:
    import onnxruntime as ort
    result.update(version=ort.__version__, file=ort.__file__, available=ort.get_available_providers())
    want = ["CUDAExecutionProvider", "CPUExecutionProvider"] if sys.argv[2] == "cuda" else ["CPUExecutionProvider"]
    s = ort.InferenceSession(sys.argv[1], providers=[p for p in want if p in result["available"]] or want)
    result["session_providers"] = s.get_providers()
    import numpy as np
    i = s.get_inputs()[0]
    shape = [4 if not isinstance(d, int) or d < 0 else d for d in i.shape]
    t = time.perf_counter()
    y = s.run(None, {i.name: np.random.rand(*shape).astype(np.float32)})[0]
    result["run"] = {"output_shape": list(y.shape), "seconds": time.perf_counter() - t}
except Exception as e:  # recorded, not raised
    result["error"] = f"{type(e).__name__}: {e}"
result["cuda_used"] = result.get("session_providers", [""])[0] == "CUDAExecutionProvider"
json.dump(result, open(sys.argv[3], "w"), indent=1)
print(json.dumps(result))
PY

  # --- the zoo, written here (cifar10, inception_v3): one repository of both, one of cifar10
  export zoo=$work/zoo repo_img=$work/repo-img repo_c10=$work/repo-cifar10
  make_repos() {
    "$spindle" zoo --out "$zoo" --models cifar10,inception_v3 > /dev/null || return 1
    mkdir -p "$repo_img" "$repo_c10"
    cp -r "$zoo/cifar10" "$zoo/inception_v3" "$repo_img/" && cp -r "$zoo/cifar10" "$repo_c10/"
  }
  export -f make_repos
  step zoo 20 120 bash -c make_repos
  local c10_onnx inc_onnx
  c10_onnx=$(ls "$zoo"/cifar10/*/model.onnx 2> /dev/null | tail -n 1)
  inc_onnx=$(ls "$zoo"/inception_v3/*/model.onnx 2> /dev/null | tail -n 1)

  step python-cuda-provider 20 120 env PYTHONPATH="$python_path" LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
    "$python" "$python_check" "${c10_onnx:-/nonexistent.onnx}" cuda "$work/res/python-check.json"

  # --- check 2: the ORT engine tests on this library; cuda_is_used_or_refused_never_replaced_by_the_cpu
  # takes the CUDA branch where the provider loads.
  if [ "$have_gpu" = 0 ] && [ "$rehearse" != 1 ]; then
    echo "(no GPU: the ORT engine tests run all the same; the CUDA test must then take the refusal branch)"
  fi
  step ort-engine-tests 60 300 bash -c "'$bin/ort-engine-tests' --test-threads=1 --show-output > '$out/ort-tests.txt' 2>&1; rc=\$?; tail -n 25 '$out/ort-tests.txt'; exit \$rc"
  local provider_present=0
  [ -f "$onnx_dir/libonnxruntime_providers_cuda.so" ] && provider_present=1
  fact provider_library_present "$provider_present"
  fact ort_tests "$(grep -E '^test result:' "$out/ort-tests.txt" 2> /dev/null | head -n 1)"
  fact cuda_test "$(grep -E '^test cuda_is_used_or_refused_never_replaced_by_the_cpu' "$out/ort-tests.txt" 2> /dev/null | head -n 1)"
  fact cuda_test_refusal "$(grep -m1 'CUDA was requested (cuda:0)' "$out/ort-tests.txt" 2> /dev/null)"

  # --- in-process: spindle bench engine (one runner), or where it has no --device, ONNX Runtime
  # from Python for the GPU (same library folder, same batches, same timing).
  local inproc_py=$work/inproc.py
  cat > "$inproc_py" << 'PY'
import json, statistics, sys, time
import numpy as np
import onnxruntime as ort
onnx, device, batches, duration, model, out = sys.argv[1:7]
duration = float(duration)
providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
s = ort.InferenceSession(onnx, providers=providers)
if device == "cuda" and s.get_providers()[0] != "CUDAExecutionProvider":
    sys.exit(f"CUDA was requested and ONNX Runtime gave {s.get_providers()}")
i = s.get_inputs()[0]
results = []
print(f"{model} on onnxruntime {ort.__version__} ({s.get_providers()[0]}), from Python", file=sys.stderr)
for b in map(int, batches.split(",")):
    shape = [b] + [d for d in i.shape[1:]]
    x = {i.name: np.random.rand(*shape).astype(np.float32)}
    for _ in range(3):
        s.run(None, x)
    times, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < duration or len(times) < 3:
        t = time.perf_counter()
        s.run(None, x)
        times.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    times.sort()
    r = {"batch": b, "runs": len(times), "images_per_s": len(times) * b / total,
         "p50_us": statistics.median(times) * 1e6, "p99_us": times[min(len(times) - 1, int(len(times) * 0.99))] * 1e6}
    print(f"{b:>6} {r['images_per_s']:>12.1f} {r['p50_us'] / 1000:>12.3f} {r['p99_us'] / 1000:>12.3f}", file=sys.stderr)
    results.append(r)
best = max(results, key=lambda r: r["images_per_s"])
json.dump({"model": model, "engine": "onnxruntime-python", "provider": s.get_providers()[0],
           "results": results, "best": best}, open(out, "w"), indent=1)
PY
  local has_device_flag=0
  "$spindle" bench engine --help 2> /dev/null | grep -q -- '--device' && has_device_flag=1
  fact bench_engine_has_device "$has_device_flag"
  local model dev label batches how
  for dev in gpu cpu; do
    for model in cifar10 inception_v3; do
      label=$dev; [ "$dev" = gpu ] && label=$gpu_device
      case $model:$dev in
        cifar10:gpu) batches=1,8,16,32,64,128,256,512 ;;
        cifar10:cpu) batches=1,8,16,32,64,128 ;;
        inception_v3:gpu) batches=1,2,4,8,16,32,64 ;;
        inception_v3:cpu) batches=1,2,4,8,16 ;;
      esac
      [ "$rehearse" != 1 ] || [ "$model" != inception_v3 ] || batches=1,4,16
      if [ "$dev" = gpu ] && [ "$have_gpu" = 0 ] && [ "$rehearse" != 1 ]; then
        note "inprocess-$dev-$model" "no GPU on this machine"
        continue
      fi
      local jsonf=$work/res/inprocess-$dev-$model.json
      if [ "$has_device_flag" = 1 ] || [ "$dev" = cpu ]; then
        how="spindle bench engine"
        local flag=()
        [ "$has_device_flag" = 1 ] && flag=(--device "$label")
        step "inprocess-$dev-$model" 25 150 "$spindle" bench engine --repo "$repo_img" --model "$model" --engine ort \
          "${flag[@]}" --batches "$batches" --duration "$inproc_duration" --json "$jsonf"
      else
        how="onnxruntime from Python (spindle bench engine has no --device)"
        local model_onnx=$c10_onnx
        [ "$model" = cifar10 ] || model_onnx=$inc_onnx
        step "inprocess-$dev-$model" 25 150 env PYTHONPATH="$python_path" "$python" "$inproc_py" \
          "${model_onnx:-/nonexistent.onnx}" "$label" "$batches" "$(dur_s "$inproc_duration")" "$model" "$jsonf"
      fi
      fact "inprocess_how_$dev" "$how"
    done
  done

  # --- served: spindle serve --device D (both models), spindle loadtest against it
  export free_port='import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
  serve_port=""
  start_serve() { # NAME REPO LOG DEVICE: start a server; ready within 120 s, or dead: 1
    local name=$1 repo=$2 log=$3 device=$4 port _
    port=$(python3 -c "$free_port")
    RUST_LOG=${RUST_LOG:-warn} "$spindle" serve --repo "$repo" --engine ort --device "$device" --poll-interval 0 \
      --no-grpc --shutdown-grace 2s --http-addr "127.0.0.1:$port" > "$log" 2>&1 &
    servers[$name]=$!
    for _ in $(seq 1 1200); do
      http_get "http://127.0.0.1:$port/v2/health/ready" > /dev/null && { serve_port=$port; return 0; }
      kill -0 "${servers[$name]}" 2> /dev/null || break
      sleep 0.1
    done
    echo "server $name did not become ready; its log:"
    tail -n 20 "$log"
    return 1
  }
  stop_serve() {
    local pid=${servers[$1]:-}
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
    unset "servers[$1]"
  }
  served() { # DEV LABEL: one server on LABEL, each model with tensors and with JPEGs
    local dev=$1 label=$2 t0=$SECONDS warmup=${WARMUP:-1s}
    # ONNX Runtime's CUDA provider searches cuDNN's convolution algorithms for each new input
    # shape, so each batch size the batcher forms stalls once: a longer warm-up on the GPU.
    [ "$dev" != gpu ] || warmup=${GPU_WARMUP:-3s}
    local per_level=$(($(dur_ceil "$warmup") + max_windows * win_s)) nlevels
    nlevels=$(echo "$levels" | tr ',' '\n' | wc -l)
    local est=$((15 + 4 * nlevels * per_level))
    local left=$((budget - (SECONDS - started)))
    if [ "$est" -gt "$left" ]; then
      echo "== serve-$dev: SKIPPED, about ${est}s needed and ${left}s left"
      printf '%s\tskipped\t0\tout of time (%ss left)\n' "serve-$dev" "$left" >> "$steps"
      return
    fi
    echo "== serve-$dev: spindle serve --device $label (at $((SECONDS - started))s)"
    if ! start_serve "serve-$dev" "$repo_img" "$work/serve-$dev.log" "$label"; then
      printf '%s\t%s\t%s\t%s\n' "serve-$dev" 1 "$((SECONDS - t0))" \
        "did not become ready: $({ grep -m1 -E '^error|ERROR' "$work/serve-$dev.log" || tail -n 1 "$work/serve-$dev.log"; } | cut -c1-400)" >> "$steps"
      stop_serve "serve-$dev"
      return
    fi
    echo "== serve-$dev: ready on port $serve_port in $((SECONDS - t0))s"
    printf '%s\t0\t%s\tready on port %s\n' "serve-$dev" "$((SECONDS - t0))" "$serve_port" >> "$steps"
    local model kind extra
    for model in cifar10 inception_v3; do
      for kind in binary images; do
        extra=()
        [ "$kind" = binary ] || extra=(--input-data "$samples/$model")
        step "served-$dev-$model-$kind" $((nlevels * per_level)) 180 \
          "$spindle" loadtest --url "http://127.0.0.1:$serve_port" --model "$model" --protocol http-binary \
          --concurrency "$levels" --warmup "$warmup" --window "$window" --max-windows "$max_windows" \
          --json "$work/res/served-$dev-$model-$kind.json" "${extra[@]}"
      done
    done
    http_get "http://127.0.0.1:$serve_port/metrics" > "$work/metrics-$dev.txt"
    fact "warmup_$dev" "$warmup"
    stop_serve "serve-$dev"
  }

  if [ "$have_gpu" = 1 ] || [ "$rehearse" = 1 ]; then
    if [ "$have_gpu" = 1 ]; then
      nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,clocks.sm,power.draw \
        --format=csv -l 1 > "$work/gpu-util.csv" 2>&1 &
      util_pid=$!
    fi
    served gpu "$gpu_device"
    [ -z "$util_pid" ] || { kill "$util_pid" 2> /dev/null; wait "$util_pid" 2> /dev/null; util_pid=""; }
  else
    note serve-gpu "no GPU on this machine"
  fi

  # --- scaling (bench/scaling.sh's steps, with the carried binary: no cargo here): N replicas of
  # spindle serve on the CPU, each pinned to its core set, one spindle loadtest on LOADGEN_CORES
  # at CONCURRENCY connections per replica.
  scaling() {
    local sets=() n i p list urls pids=() ok=1
    read -r -a sets <<< "$layout"
    for n in $scaling_ns; do
      [ "$n" -le ${#sets[@]} ] || { echo "scaling: LAYOUT has fewer than $n core sets"; return 1; }
    done
    for i in "${sets[@]}" ${loadgen_cores:+"$loadgen_cores"}; do
      [ -z "$i" ] || taskset -c "$i" true 2> /dev/null || { echo "scaling: core set '$i' is not usable here ($(nproc) cores)"; return 1; }
    done
    local gen=()
    [ -z "$loadgen_cores" ] || gen=(taskset -c "$loadgen_cores")
    for n in $scaling_ns; do
      urls=()
      pids=()
      for i in $(seq 0 $((n - 1))); do
        p=$(python3 -c "$free_port")
        RUST_LOG=warn taskset -c "${sets[$i]}" "$spindle" serve --repo "$repo_c10" --engine ort --device cpu \
          --poll-interval 0 --no-grpc --shutdown-grace 2s --http-addr "127.0.0.1:$p" > "$work/scaling-n$n-r$i.log" 2>&1 &
        pids+=($!)
        urls+=("http://127.0.0.1:$p")
      done
      for i in "${!urls[@]}"; do
        local _
        for _ in $(seq 1 600); do
          http_get "${urls[$i]}/v2/health/ready" > /dev/null && break
          kill -0 "${pids[$i]}" 2> /dev/null || break
          sleep 0.1
        done
        http_get "${urls[$i]}/v2/health/ready" > /dev/null || { echo "scaling: replica $i never became ready"; tail -n 5 "$work/scaling-n$n-r$i.log"; ok=0; }
      done
      if [ $ok = 1 ]; then
        echo "-- $n replica(s) on cores ${sets[*]:0:$n}, $((n * concurrency)) connections, generator ${loadgen_cores:-unpinned}"
        list=$(IFS=,; echo "${urls[*]}")
        "${gen[@]}" "$spindle" loadtest --url "$list" --model cifar10 --protocol http-binary \
          --concurrency $((n * concurrency)) --warmup 1s --window "$window" --max-windows 6 \
          --json "$work/res/scaling-n$n.json" || ok=0
      fi
      for p in "${pids[@]}"; do kill -TERM "$p" 2> /dev/null; done
      for p in "${pids[@]}"; do wait "$p" 2> /dev/null; done
      [ $ok = 1 ] || return 1
    done
  }
  fact scaling_layout "$layout"
  fact scaling_ns "$scaling_ns"
  fact scaling_loadgen "${loadgen_cores:-unpinned}"
  fact scaling_concurrency "$concurrency"
  local scaling_est=0 n
  for n in $scaling_ns; do scaling_est=$((scaling_est + 5 + 1 + 4 * win_s)); done
  export -f scaling http_get
  step scaling "$scaling_est" 240 bash -c scaling

  served cpu cpu

  # --- what comes back: summary.txt, results.json, env.txt, servers.log (+ nvidia-smi.txt,
  # ort-tests.txt, measure.log written above)
  {
    cat "$facts"
    echo
    echo "# LD_LIBRARY_PATH"
    echo "$LD_LIBRARY_PATH"
    echo
    echo "# ldd libonnxruntime_providers_cuda.so"
    [ -f "$onnx_dir/libonnxruntime_providers_cuda.so" ] && ldd "$onnx_dir/libonnxruntime_providers_cuda.so" 2>&1
    echo
    echo "# lscpu"
    lscpu 2>&1 | head -n 30
    echo
    echo "# python3 -m pip list (nvidia, onnx, torch)"
    python3 -m pip list 2> /dev/null | grep -iE 'nvidia|onnx|torch|numpy' | head -n 40
  } > "$out/env.txt"
  {
    local f
    for f in "$work"/metrics-*.txt; do
      [ -f "$f" ] || continue
      echo "# $(basename "$f"): counts, batch sizes"
      grep -E '^spindle_(inference_count|execution_count|batch_size_(sum|count))' "$f"
      echo
    done
    for f in "$work"/serve-*.log "$work"/scaling-n*-r0.log; do
      [ -f "$f" ] || continue
      echo "# $(basename "$f") (last 40 lines)"
      tail -n 40 "$f"
      echo
    done
    if [ -f "$work/gpu-util.csv" ]; then
      echo "# nvidia-smi every second while serving on the GPU"
      cat "$work/gpu-util.csv"
    fi
  } > "$out/servers.log"
  python3 - "$work" "$out" "$levels" << 'PY'
import csv, glob, json, os, statistics, sys
work, out, levels = sys.argv[1], sys.argv[2], sys.argv[3]
res = os.path.join(work, "res")
def load(name):
    try:
        return json.load(open(os.path.join(res, name)))
    except (OSError, ValueError):
        return None
facts = {}
for line in open(os.path.join(work, "facts.tsv")):
    k, _, v = line.rstrip("\n").partition("\t")
    facts[k] = v
steps = [dict(zip(["name", "rc", "seconds", "note"], l.rstrip("\n").split("\t", 3))) for l in open(os.path.join(work, "steps.tsv"))]
rehearsal = facts.get("rehearsal") == "1"
gpu_label = "cuda" if not rehearsal else "cpu (rehearsal: in place of cuda)"
max_batch = {"cifar10": 128, "inception_v3": 16}
lines = []
p = lines.append
p(f"GPU runs (issue 22), bench/gpu.sh measure, {facts.get('date')}" + ("  ** REHEARSAL on the CPU machine: 'gpu' rows ran on the CPU **" if rehearsal else ""))
p(f"machine: {facts.get('gpu')}; driver {facts.get('driver', '-')}, CUDA {facts.get('cuda_driver_api', '-')}; nvcc: {facts.get('nvcc') or '-'}")
p(f"         {facts.get('cpu')}, {facts.get('cores')} cores, {facts.get('memory')}, kernel {facts.get('kernel')}")
p(f"ONNX Runtime library: {facts.get('ort_lib')}")
p(f"binaries: {facts.get('build')}")
p(f"CUDA libraries found: {facts.get('cuda_libs_found')}")
p(f"CUDA libraries missing: {facts.get('cuda_libs_missing')}; unresolved by the provider: {facts.get('provider_unresolved') or '-'}")
p("")
p("Checks")
pc = load("python-check.json") or {}
if pc:
    p(f"  Python onnxruntime {pc.get('version', '?')}: available {pc.get('available')}, session on {pc.get('session_providers')}"
      + (f", error: {pc['error']}" if pc.get("error") else "") + f" -> CUDA used: {'yes' if pc.get('cuda_used') else 'NO'}")
else:
    p("  Python onnxruntime check: no result")
p(f"  ORT engine tests: {facts.get('ort_tests') or 'no result'}")
ct = facts.get("cuda_test", "")
branch = "no result"
if ct.endswith("ok"):
    if facts.get("cuda_test_refusal"):
        branch = "refusal branch (CUDA unavailable, refused, not replaced by the CPU)"
    elif facts.get("provider_library_present") == "1":
        branch = "CUDA branch (loaded on CUDA, outputs checked)"
    else:
        branch = "passed"
elif ct:
    branch = "FAILED"
p(f"  cuda_is_used_or_refused_never_replaced_by_the_cpu: {ct or '-'} -> {branch}")
if facts.get("cuda_test_refusal"):
    p(f"    its message: {facts['cuda_test_refusal'].strip()[:400]}")
p("")
def fmt_ms(us):
    return "-" if us is None else f"{us / 1000:.3f}"
p("In-process (one runner, no server): " + "; ".join(f"{d}: {facts.get('inprocess_how_' + d, '-')}" for d in ("gpu", "cpu")))
p(f"{'model':<13} {'device':<6} {'best images/s':>14} {'at batch':>9} {'batch-1 p50 ms':>15} {'best <= max_batch':>18} {'batch':>6}")
inproc = {}
for model in ("cifar10", "inception_v3"):
    for dev in ("gpu", "cpu"):
        a = load(f"inprocess-{dev}-{model}.json")
        if not a:
            p(f"{model:<13} {dev:<6} {'(no result)':>14}")
            continue
        one = next((r for r in a["results"] if r["batch"] == 1), None)
        capped = [r for r in a["results"] if r["batch"] <= max_batch[model]]
        bc = max(capped, key=lambda r: r["images_per_s"]) if capped else None
        inproc[(model, dev)] = {"best": a["best"], "best_capped": bc, "batch1": one}
        p(f"{model:<13} {dev:<6} {a['best']['images_per_s']:>14.1f} {a['best']['batch']:>9} {fmt_ms(one and one['p50_us']):>15} "
          f"{(bc['images_per_s'] if bc else 0):>18.1f} {(bc['batch'] if bc else '-'):>6}")
p(f"('gpu' is {gpu_label}; max_batch_size in the zoo's config.toml: cifar10 128, inception_v3 16: served batches cannot be larger)")
p("")
p("Served: spindle serve (ort) + spindle loadtest, HTTP binary, one image per request; 'images' = JPEGs decoded by the server")
p(f"{'model':<13} {'device':<6} {'input':<7} {'conc':>5} {'images/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'/ in-proc best':>15} {'/ best<=max':>12} {'errors':>7} {'stable':>7}")
served = {}
for model in ("cifar10", "inception_v3"):
    for dev in ("gpu", "cpu"):
        for kind in ("binary", "images"):
            b = load(f"served-{dev}-{model}-{kind}.json")
            if not b:
                p(f"{model:<13} {dev:<6} {kind:<7} {'(no result)':>16}")
                continue
            ip = inproc.get((model, dev))
            for l in b["levels"]:
                r = l["inferences_per_s"]
                ratio = r / ip["best"]["images_per_s"] if ip else None
                ratio_c = r / ip["best_capped"]["images_per_s"] if ip and ip["best_capped"] else None
                served.setdefault((model, dev, kind), []).append((l["concurrency"], r, ratio, ratio_c))
                p(f"{model:<13} {dev:<6} {kind:<7} {l['concurrency']:>5} {r:>10.1f} {fmt_ms(l['p50_us']):>9} {fmt_ms(l['p99_us']):>9} "
                  f"{'-' if ratio is None else f'{ratio:.2f}':>15} {'-' if ratio_c is None else f'{ratio_c:.2f}':>12} "
                  f"{l['errors']['total']:>7} {str(l.get('stable')):>7}")
import re
for dev in ("gpu", "cpu"):
    try:
        text = open(os.path.join(work, f"metrics-{dev}.txt")).read()
    except OSError:
        continue
    counts = {}
    for kind in ("inference_count_total", "execution_count_total"):
        for m, v in re.findall(r'^spindle_' + kind + r'\{[^}]*model="([^"]+)"[^}]*\} ([0-9.e+]+)$', text, re.M):
            counts.setdefault(m, {})[kind] = counts.get(m, {}).get(kind, 0) + float(v)
    parts = [f"{m} {c['inference_count_total'] / c['execution_count_total']:.1f}" for m, c in sorted(counts.items())
             if c.get("execution_count_total")]
    if parts:
        p(f"mean batch on {dev} over all its levels (from /metrics): " + ", ".join(parts))
p(f"warm-up per level: gpu {facts.get('warmup_gpu', '-')}, cpu {facts.get('warmup_cpu', '-')}")
p("")
p("CPU against GPU on this machine (gpu / cpu)")
p(f"{'model':<13} {'in-process best':>16} {'batch-1 p50':>12} {'served binary best':>19} {'served images best':>19}")
cmp_rows = []
for model in ("cifar10", "inception_v3"):
    g, c = inproc.get((model, "gpu")), inproc.get((model, "cpu"))
    def ratio(x, y):
        return f"{x / y:.2f}x" if x and y else "-"
    ib = ratio(g and g["best"]["images_per_s"], c and c["best"]["images_per_s"])
    b1 = ratio(c and c["batch1"] and c["batch1"]["p50_us"], g and g["batch1"] and g["batch1"]["p50_us"])
    sb = ratio(max((r for _, r, _, _ in served.get((model, "gpu", "binary"), [])), default=None),
               max((r for _, r, _, _ in served.get((model, "cpu", "binary"), [])), default=None))
    si = ratio(max((r for _, r, _, _ in served.get((model, "gpu", "images"), [])), default=None),
               max((r for _, r, _, _ in served.get((model, "cpu", "images"), [])), default=None))
    p(f"{model:<13} {ib:>16} {b1:>12} {sb:>19} {si:>19}")
p("(batch-1 p50: cpu / gpu, so above 1 means the GPU answers sooner)")
p("")
scal = []
for path in sorted(glob.glob(os.path.join(res, "scaling-n*.json")), key=lambda f: int(f.rsplit("-n", 1)[1].split(".")[0])):
    n = int(path.rsplit("-n", 1)[1].split(".")[0])
    lvl = json.load(open(path))["levels"][0]
    scal.append((n, lvl["inferences_per_s"], lvl["p50_us"], lvl["p99_us"], lvl["errors"]["total"]))
sets = facts.get("scaling_layout", "").split()
p(f"Scaling (CPU, ORT, cifar10, HTTP binary): replicas on core sets {sets}, {facts.get('scaling_concurrency')} connections per replica, generator on {facts.get('scaling_loadgen')}")
p(f"{'replicas':>8} {'cores':>16} {'inferences/s':>13} {'ratio to N x one':>17} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
one = scal[0][1] if scal and scal[0][0] == 1 else None
scaling_rows = []
for n, r, p50, p99, err in scal:
    ratio = r / (n * one) if one else None
    scaling_rows.append({"replicas": n, "cores": "+".join(sets[:n]), "inferences_per_s": r, "ratio_to_linear": ratio})
    p(f"{n:>8} {'+'.join(sets[:n]):>16} {r:>13.1f} {'-' if ratio is None else f'{ratio:.3f}':>17} {fmt_ms(p50):>8} {fmt_ms(p99):>8} {err:>7}")
if not scal:
    p("  (no result)")
p("")
p("Targets")
g = inproc.get(("inception_v3", "gpu"))
s = served.get(("inception_v3", "gpu", "binary"), [])
if g and s:
    best = max(s, key=lambda x: x[1])
    p(f"  served inception_v3 on {gpu_label} >= 0.9 of in-process at its best batch: {best[2]:.2f} at concurrency {best[0]} "
      f"(best batch {g['best']['batch']}; against batch <= 16: {best[3]:.2f}) -> {'met' if best[2] >= 0.9 else 'UNMET'}")
else:
    p("  served inception_v3 on the GPU >= 0.9 of in-process: no result")
for row in scaling_rows[1:]:
    if row["ratio_to_linear"] is not None:
        p(f"  scaling, {row['replicas']} replicas >= 0.9 x linear: {row['ratio_to_linear']:.3f} -> {'met' if row['ratio_to_linear'] >= 0.9 else 'UNMET'}")
p("")
p("Steps (name, exit status, seconds, note)")
for st in steps:
    p(f"  {st['name']:<34} {st['rc']:>7} {st['seconds']:>5}  {st['note']}")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "summary.txt"), "w").write(text)
print(text)
raw = {"facts": facts, "steps": steps, "scaling": scaling_rows}
for f in sorted(glob.glob(os.path.join(res, "*.json"))):
    try:
        raw[os.path.basename(f)[:-5]] = json.load(open(f))
    except ValueError:
        pass
json.dump(raw, open(os.path.join(out, "results.json"), "w"), indent=1)
PY
  echo "gpu.sh measure: done in $((SECONDS - started))s; files in $out: $(ls "$out" | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------------------------
rehearse() {
  [ -d "$gpu_dir/bin" ] && [ -f "$gpu_dir/SHA256SUMS" ] || die "run bench/gpu.sh prepare first"
  scripts/setup-ort.sh > /dev/null || die "scripts/setup-ort.sh failed"
  local tmp_state tmp_repo out
  tmp_state=$(mktemp -d /tmp/spindle-gpu-rehearse.XXXXXX)
  out=$(mktemp -d /tmp/spindle-gpu-out.XXXXXX)
  # A copy of what a device call would see: the working tree and the carried .gpu/ files
  # (chunks hard-linked, so no copy of 244 MiB), in a folder of its own.
  tmp_repo=$tmp_state/repo
  mkdir -p "$tmp_repo"
  git ls-files -z -co --exclude-standard | xargs -0 cp --parents -t "$tmp_repo" 2> /dev/null
  mkdir -p "$tmp_repo/$gpu_dir"
  cp -al "$gpu_dir"/chunk-* "$tmp_repo/$gpu_dir/"
  cp -a "$gpu_dir/SHA256SUMS" "$gpu_dir/bin" "$gpu_dir/samples" "$tmp_repo/$gpu_dir/"
  mkdir -p "$tmp_repo/.cache"
  ln -s "$root/.cache/venv" "$tmp_repo/.cache/venv"
  echo "== rehearsal: state $tmp_state/state, repository copy $tmp_repo, OUT=$out"
  local k n rc=0
  n=$(ls "$gpu_dir"/chunk-* | wc -l)
  for k in $(seq 1 "$n"); do
    (cd "$tmp_repo" && SPINDLE_GPU_STATE=$tmp_state/state bench/gpu.sh receive "$k") || rc=1
  done
  [ $rc = 0 ] || echo "rehearse: a receive failed (above); measuring all the same"
  (cd "$tmp_repo" && REHEARSE=1 OUT=$out WARMUP=${WARMUP:-500ms} GPU_WARMUP=${GPU_WARMUP:-500ms} SPINDLE_GPU_STATE=$tmp_state/state WINDOW=${WINDOW:-500ms} MAX_WINDOWS=${MAX_WINDOWS:-3} \
    INPROC_DURATION=${INPROC_DURATION:-300ms} LAYOUT=${LAYOUT:-0 1} SCALING_NS=${SCALING_NS:-1 2} LOADGEN_CORES=${LOADGEN_CORES:-} \
    MEASURE_BUDGET_S=${MEASURE_BUDGET_S:-900} bench/gpu.sh measure)
  echo "rehearse: files in $out:"
  ls -l "$out"
  echo "rehearse: remove $tmp_state when done (it holds a reassembled wheel and an unpacked copy)"
}

case ${1:-} in
  prepare) prepare ;;
  plan) plan ;;
  receive) shift; receive "$@" ;;
  measure) measure ;;
  rehearse) rehearse ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 64 ;;
esac
