#!/usr/bin/env bash
# Builds and runs tidekv's fuzz targets (fuzz/) with cargo-fuzz on the stable toolchain.
#
# Usage: scripts/fuzz.sh build            install the pinned cargo-fuzz if missing, build every
#                                         target (what CI runs)
#        scripts/fuzz.sh quick            each target for 20 s over its seed corpus
#        scripts/fuzz.sh long [SECONDS]   each target for SECONDS (default 300)
#        scripts/fuzz.sh run TARGET [SECONDS]   one target
#
# Stable only: libFuzzer's coverage instrumentation (sancov) needs no nightly flag; the
# sanitizers do, so the targets are built with `--sanitizer none` (a Rust panic, an overflow
# check or a debug assertion is what fails a run). Targets run one after another, never in
# parallel. For each one the script prints the fuzzer's own closing lines: executions, time,
# coverage. A target that fails stops the script with exit 1; its input is in
# fuzz/artifacts/TARGET/, and
#   cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-...
# replays it (TIDEKV_FUZZ_DEBUG=1 makes ops_model print the decoded operations).
# New inputs a run finds go into fuzz/corpus/TARGET/ beside the committed seed-* files and
# are ignored by git. Logs: $CARGO_TARGET_DIR/fuzz-logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CARGO_FUZZ_VERSION=0.13.2
TARGETS=(decode_record scan_segment ops_model)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/fuzz/target}"
# cargo-fuzz's build flags for stable: no sanitizer, no -Zbuild-std.
FUZZ_FLAGS=(--sanitizer none --fuzz-dir "$ROOT/fuzz")

install() {
  if cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
    return
  fi
  echo "installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

build() {
  install
  local start=$SECONDS
  cargo fuzz build "${FUZZ_FLAGS[@]}"
  for t in "${TARGETS[@]}"; do
    test -x "$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" \
      || { echo "fuzz target $t was not built" >&2; exit 1; }
  done
  echo "fuzz targets built: ${TARGETS[*]} ($((SECONDS - start)) s)"
}

# run TARGET SECONDS: one target over its corpus; prints the fuzzer's closing lines.
run() {
  local target=$1 seconds=$2
  local logs="$CARGO_TARGET_DIR/fuzz-logs"
  mkdir -p "$logs" "fuzz/corpus/$target" "fuzz/artifacts/$target"
  local log="$logs/$target.log"
  echo "==> $target: ${seconds} s over fuzz/corpus/$target ($(ls "fuzz/corpus/$target" | wc -l) inputs)"
  local status=0
  cargo fuzz run "${FUZZ_FLAGS[@]}" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  # The fuzzer's own figures: the last status line, "Done N runs in S second(s)", stats.
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 || true
  grep -E '^Done [0-9]+ runs in [0-9]+ second' "$log" || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "!! $target FAILED (exit $status); log: $log" >&2
    grep -E 'panicked at|^SUMMARY|Test unit written to' "$log" >&2 || tail -30 "$log" >&2
    grep -A3 'panicked at' "$log" >&2 || true
    exit 1
  fi
}

cmd="${1:-}"
case "$cmd" in
  build)
    build
    ;;
  quick)
    build
    for t in "${TARGETS[@]}"; do run "$t" 20; done
    echo "all fuzz targets ran without a failure"
    ;;
  long)
    seconds="${2:-300}"
    build
    for t in "${TARGETS[@]}"; do run "$t" "$seconds"; done
    echo "all fuzz targets ran without a failure"
    ;;
  run)
    target="${2:?usage: scripts/fuzz.sh run TARGET [SECONDS]}"
    build
    run "$target" "${3:-60}"
    ;;
  *)
    sed -n '2,8p' "$0" >&2
    exit 2
    ;;
esac
