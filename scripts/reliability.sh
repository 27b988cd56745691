#!/usr/bin/env bash
# The long mode of tidekv's reliability proofs. Runs each proof for longer than the test command
# does, then writes docs/RELIABILITY.md from what the runs printed (never from typed figures):
# kill points and keys checked, faults injected, stress operations, fuzz executions and time.
#
# Usage: scripts/reliability.sh [--points N] [--fuzz-seconds S] [--stress-seconds S]
#   --points N          native random-op kill points (N), atomic-batch kill points (N/2) and
#                       Node.js kill points (N/4); default 1000
#   --fuzz-seconds S    per fuzz target; default 300
#   --stress-seconds S  the concurrency stress run; default 120
# Any failure stops the script (exit 1) and leaves docs/RELIABILITY.md as it was.
set -euo pipefail
cd "$(dirname "$0")/.."

POINTS=1000
FUZZ_SECONDS=300
STRESS_SECONDS=120
while [ $# -gt 0 ]; do
  case "$1" in
    --points) POINTS=$2; shift 2 ;;
    --fuzz-seconds) FUZZ_SECONDS=$2; shift 2 ;;
    --stress-seconds) STRESS_SECONDS=$2; shift 2 ;;
    *) echo "usage: scripts/reliability.sh [--points N] [--fuzz-seconds S] [--stress-seconds S]" >&2; exit 2 ;;
  esac
done

logs=$(mktemp -d -t tidekv-reliability-XXXXXX)
step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

bash scripts/install-tools.sh

step "SIGKILL at $POINTS random points of writes, flushes and compactions, and $((POINTS / 2)) during atomic batches"
TIDEKV_CRASH_POINTS=$POINTS cargo test --release --test crash -- --nocapture 2>&1 | tee "$logs/crash.log"

step "real disk faults"
cargo test --release --test disk_faults -- --nocapture --test-threads=1 2>&1 | tee "$logs/faults.log"

step "concurrency stress for $STRESS_SECONDS s"
TIDEKV_STRESS_SECS=$STRESS_SECONDS cargo test --release --test stress -- --nocapture 2>&1 | tee "$logs/stress.log"

step "SIGKILL of a Node.js process at $((POINTS / 4)) points during setMany batches"
bash scripts/build-npm.sh
TIDEKV_APP_DIR=$(node tests/node/package.mjs)
export TIDEKV_APP_DIR
TIDEKV_CRASH_POINTS=$POINTS node --test --test-name-pattern="killed during setMany" tests/node/fs.test.mjs 2>&1 | tee "$logs/node.log"

step "fuzzing, $FUZZ_SECONDS s per target"
bash scripts/fuzz.sh long "$FUZZ_SECONDS" 2>&1 | tee "$logs/fuzz.log"

elapsed=$(( $(date +%s) - start ))

# Every proof prints its figures on a line starting "reliability:"; the fuzzer prints its own.
figures() { grep -ho 'reliability: .*' "$@" | sed 's/^reliability: /- /' || true; }
fuzz_rows() {
  awk '/^==> [a-z_]+:/ { target = $2; sub(":", "", target) }
       /^Done [0-9]+ runs in [0-9]+ second/ { printf "| %s | %s | %s s |\n", target, $2, $5 }' "$logs/fuzz.log"
}

out=docs/RELIABILITY.md
tmp=$(mktemp)
{
  echo "# Reliability: the last long run"
  echo
  echo "Written by \`scripts/reliability.sh --points $POINTS --fuzz-seconds $FUZZ_SECONDS --stress-seconds $STRESS_SECONDS\`"
  echo "from what its runs printed; every check in them must pass for this file to be written."
  echo "Run on $(date -u +%Y-%m-%d) at commit \`$(git rev-parse --short HEAD)\`$(git diff --quiet || echo ' (with uncommitted changes)'),"
  echo "$(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $((elapsed / 60)) min in all."
  echo
  echo "A kill point is a SIGKILL of a child process at a random moment, then a reopen that must"
  echo "succeed and hold every acknowledged write, no record that was never written, and no part of"
  echo "an atomic batch without the rest of it."
  echo
  echo "## Kill points"
  figures "$logs/crash.log" "$logs/node.log"
  echo
  echo "## Disk faults"
  figures "$logs/faults.log"
  grep -h 'skipped:' "$logs/faults.log" | sed 's/^/- /' || true
  echo
  echo "## Concurrency stress"
  figures "$logs/stress.log"
  echo
  echo "## Fuzzing (cargo-fuzz, libFuzzer, stable toolchain, \`--sanitizer none\`)"
  echo
  echo "| target | executions | time |"
  echo "| --- | --- | --- |"
  fuzz_rows
  echo
  echo "Nothing failed: no acknowledged record lost, no store that failed to open, no phantom"
  echo "record, no partial batch, no fuzz failure."
} >"$tmp"
mv "$tmp" "$out"
echo
echo "wrote $out (logs in $logs)"
