#!/usr/bin/env bash
# Fuzzes Spindle's decoders and parsers with libFuzzer (cargo-fuzz), each target for a given time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS: time per target (default 60). TARGETs: any of `cargo +nightly fuzz list` (default:
# all of them, one after another). Each runs as one process (one job, one worker) from the
# committed seeds (fuzz/corpus/TARGET/) and past crashes (fuzz/regressions/TARGET/); what it
# learns goes to fuzz/target/corpus/TARGET/ (ignored by git), so a second run resumes there.
# Prints a table of target, runs, seconds, executions per second and crashes, and exits 1 when
# any target crashed, naming the reproducer (fuzz/artifacts/TARGET/crash-...); replay one with
#   cargo +nightly fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
# A fixed crash's reproducer goes to fuzz/regressions/TARGET/, where
# server/tests/fuzz_corpus.rs replays it on stable in every test run.
#
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install cargo-fuzz`). Settings:
#   SPINDLE_FUZZ_RSS_MB    memory per target before libFuzzer calls it a crash (default 2048;
#                          also the largest single allocation allowed)
#   SPINDLE_FUZZ_MAX_LEN   longest input tried, in bytes (default 65536: a few small images)
#   SPINDLE_FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10)
#   SPINDLE_FUZZ_SANITIZER none (default: the workspace forbids unsafe code; panics, aborts,
#                          hangs and memory blow-ups are what is looked for) or address
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds == 0)); then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...] (SECONDS: a whole number above 0, got '$seconds')" >&2
    exit 64
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz on the nightly toolchain is missing: rustup toolchain install nightly && cargo +nightly install cargo-fuzz" >&2
    exit 69
fi
rss_mb=${SPINDLE_FUZZ_RSS_MB:-2048}
max_len=${SPINDLE_FUZZ_MAX_LEN:-65536}
timeout=${SPINDLE_FUZZ_TIMEOUT:-10}
sanitizer=${SPINDLE_FUZZ_SANITIZER:-none}

mapfile -t known < <(cargo +nightly fuzz list --fuzz-dir "$PWD/fuzz")
targets=("$@")
((${#targets[@]})) || targets=("${known[@]}")
for t in "${targets[@]}"; do
    if ! printf '%s\n' "${known[@]}" | grep -qx -- "$t"; then
        echo "fuzz: unknown target '$t'; the targets are: ${known[*]}" >&2
        exit 64
    fi
done

mkdir -p fuzz/target/logs
echo "fuzz: building the targets (sanitizer: $sanitizer; log: fuzz/target/logs/build.log) ..."
if ! cargo +nightly fuzz build --fuzz-dir "$PWD/fuzz" -s "$sanitizer" >fuzz/target/logs/build.log 2>&1; then
    tail -30 fuzz/target/logs/build.log >&2
    exit 1
fi

rows=()
crashed=0
for t in "${targets[@]}"; do
    work=fuzz/target/corpus/$t
    mkdir -p "$work" "fuzz/artifacts/$t"
    dirs=("$work" "fuzz/corpus/$t")
    [[ -d fuzz/regressions/$t ]] && dirs+=("fuzz/regressions/$t")
    log=fuzz/target/logs/$t.log
    echo "fuzz: $t for ${seconds}s (log: $log)"
    status=0
    started=$SECONDS
    cargo +nightly fuzz run --fuzz-dir "$PWD/fuzz" -s "$sanitizer" "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -malloc_limit_mb="$rss_mb" \
        -max_len="$max_len" -timeout="$timeout" -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    took=$((SECONDS - started))
    # A slow unit (an input over libFuzzer's report threshold, not over -timeout) is written as
    # slow-unit-*: worth a look (it found issue 17's tall-image resize), but not a crash.
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | grep -v '/slow-unit-' | tail -1 || true)
    slow=$(sed -n 's/.*Test unit written to \(.*slow-unit-.*\)$/\1/p' "$log" || true)
    [[ -z $slow ]] || echo "fuzz: $t: slow inputs (not crashes), replay and time them: $slow" >&2
    crashes=0
    if ((status != 0)) || [[ -n $artifact ]]; then
        crashes=1
        crashed=1
        echo "fuzz: $t CRASHED (exit $status); reproducer: ${artifact:-none written, see $log}" >&2
        grep -m1 -A12 -E "panicked at|ERROR: libFuzzer|==ERROR|out-of-memory|deadly signal" "$log" >&2 || tail -20 "$log" >&2
    fi
    rows+=("$(printf '%-16s %12s %8s %10s %8s' "$t" "${runs:--}" "$took" "${speed:--}" "$crashes")")
done

echo
printf '%-16s %12s %8s %10s %8s\n' target runs seconds "execs/s" crashes
printf '%s\n' "${rows[@]}"
if ((crashed)); then
    echo "fuzz: crashes found; reproducers are under fuzz/artifacts/TARGET/" >&2
    exit 1
fi
