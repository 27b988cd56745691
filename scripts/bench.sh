#!/usr/bin/env bash
# Runs every tidekv benchmark against its peers — native (criterion), Node.js and headless
# Chromium — in one run, and writes BENCHMARKS.md from the results.
#
# Usage: scripts/bench.sh [--quick] [--out FILE]
#   --quick     reduced sizes and sampling: proves every bench builds and runs (CI); writes
#               its report to $CARGO_TARGET_DIR/bench-quick/BENCHMARKS.md unless --out is given.
#   --out FILE  where to write the report (default: BENCHMARKS.md, or the quick path above).
# The raw results (JSON, criterion estimates) stay in $CARGO_TARGET_DIR/bench-{full,quick}/, with
# the CPU profiles the report shows (scripts/profile.sh: perf on the native bench binary's
# profile_* loops; bench/node/profile.mjs: V8's profiler on the npm package's Node.js build;
# bench/browser/profile.mjs: Chromium's DevTools profiler on its IndexedDB flush and open) and
# what the browser build's wasm is made of (scripts/wasm_size.py).
# A benchmark, not a test: nothing here fails on a slow figure, only on a bench that breaks.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
mode=$([ $quick = 1 ] && echo quick || echo full)
run_dir="$target_dir/bench-$mode"
[ -n "$out" ] || out=$([ $quick = 1 ] && echo "$run_dir/BENCHMARKS.md" || echo "$ROOT/BENCHMARKS.md")
rm -rf "$run_dir"
mkdir -p "$run_dir"
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
missing=()
broken=()
step() { printf '\n==> %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

# node_wasm_symbols MAP: wasm-opt's symbol map (function index:name) of pkg/node/tidekv_bg.wasm,
# made from the last cargo wasm build (scripts/build-npm.sh builds the Node.js one last) the way
# build-npm.sh makes the package's; fails unless that yields exactly the package's wasm.
node_wasm_symbols() {
  local tmp status=1
  command -v wasm-bindgen >/dev/null && [ -x node_modules/.bin/wasm-opt ] || return 1
  tmp=$(mktemp -d)
  if wasm-bindgen --target nodejs --no-typescript --out-dir "$tmp" \
      "$target_dir/wasm32-unknown-unknown/release/tidekv.wasm" \
    && node_modules/.bin/wasm-opt -O3 --symbolmap="$1" -o "$tmp/tidekv.wasm" "$tmp/tidekv_bg.wasm" \
    && cmp -s "$tmp/tidekv.wasm" pkg/node/tidekv_bg.wasm; then
    status=0
  else
    echo "no names for the wasm functions: rebuilding pkg/node/tidekv_bg.wasm did not give the same file" >&2
  fi
  rm -rf "$tmp"
  return $status
}

step "tools"
if [ $quick = 0 ] || ! command -v chromium >/dev/null; then
  bash scripts/install-tools.sh
fi

step "native benches (criterion + custom, peers in one process)"
export CRITERION_HOME="$run_dir/criterion"
export TIDEKV_BENCH_DIR="$target_dir/bench-data"
[ $quick = 1 ] && export TIDEKV_BENCH_QUICK=1
# Two processes: the in-memory groups, then the disk groups with a fresh heap (a heap that
# has held several 1M-key stores makes every allocation of the next one slower).
for part in "native:memory,point,tick,evict,reclaim" "native-disk:persist,reopen"; do
  name=${part%%:*}
  set +e
  TIDEKV_BENCH_OUT="$run_dir/$name.json" TIDEKV_BENCH_GROUPS=${part#*:} cargo bench --bench native 2>&1 \
    | tee "$run_dir/$name.log" | grep --line-buffered -E '^ *[a-z]+ \||^[a-z_0-9]+/|time:'
  status=${PIPESTATUS[0]}
  set -e
  [ "$status" = 0 ] || { tail -30 "$run_dir/$name.log"; echo "native bench failed; log: $run_dir/$name.log" >&2; exit 1; }
done
rm -rf "$TIDEKV_BENCH_DIR"

# A profile that breaks is named in the report, and fails a --quick run (CI) once the report is
# written, but does not cost a full run its report. A machine without perf is not broken:
# scripts/profile.sh then records why there is no profile and exits 0.
profile_step() {
  local what=$1
  shift
  "$@" || { broken+=("$what"); missing+=("$what: failed in this run (see the output of scripts/bench.sh)"); }
}

step "native CPU profiles (scripts/profile.sh: perf on the bench binary's profile_* loops)"
profile_step "native CPU profiles" scripts/profile.sh ${TIDEKV_BENCH_QUICK:+--quick} "$run_dir/profiles.json"

step "Redis bench (tidekv on Redis against the redis crate and redis-benchmark, one server)"
set +e
TIDEKV_BENCH_OUT="$run_dir/redis.json" cargo bench --features redis --bench redis 2>&1 \
  | tee "$run_dir/redis.log" | grep --line-buffered -E '^ *redis \|'
status=${PIPESTATUS[0]}
set -e
[ "$status" = 0 ] || { tail -30 "$run_dir/redis.log"; echo "Redis bench failed; log: $run_dir/redis.log" >&2; exit 1; }

# The npm package: a full run builds it from this tree; --quick reuses an existing pkg/.
if [ -x scripts/build-npm.sh ] && { [ $quick = 0 ] || [ ! -f pkg/package.json ]; }; then
  step "npm package (scripts/build-npm.sh)"
  scripts/build-npm.sh
fi
if [ -f pkg/package.json ]; then
  step "package size"
  python3 scripts/bench_report.py --package-size pkg > "$run_dir/package.json"
  # What the browser build's wasm is made of: the copy with its names kept that
  # scripts/build-npm.sh writes next to the package (a --quick run may reuse an older one).
  if [ -f "$target_dir/wasm-size/web.wasm" ]; then
    python3 scripts/wasm_size.py "$target_dir/wasm-size/web.wasm" --markdown > "$run_dir/wasm-size.md" \
      || { rm -f "$run_dir/wasm-size.md"; broken+=("wasm size breakdown")
           missing+=("what the browser build's wasm is made of (scripts/wasm_size.py): failed in this run (see the output of scripts/bench.sh)"); }
  else
    missing+=("what the browser build's wasm is made of (scripts/wasm_size.py): no ${target_dir#"$ROOT"/}/wasm-size/web.wasm (scripts/build-npm.sh writes it)")
  fi

  step "JS bench dependencies (npm ci in bench/)"
  (cd bench && npm ci --no-audit --no-fund --loglevel=error)

  step "Node.js bench"
  node bench/node/bench.mjs ${TIDEKV_BENCH_QUICK:+--quick} --out "$run_dir/node.json"

  step "Node.js CPU profile (bench/node/profile.mjs)"
  # The package's wasm carries no function names; a full run rebuilds its Node.js wasm with
  # wasm-opt's symbol map (about 20 s) and uses the map only if that build is byte for byte the
  # wasm in pkg/.
  symbols=()
  if [ $quick = 0 ] && node_wasm_symbols "$run_dir/node-wasm-symbols.txt"; then
    symbols=(--symbols "$run_dir/node-wasm-symbols.txt")
  fi
  profile_step "Node.js CPU profile" node bench/node/profile.mjs ${TIDEKV_BENCH_QUICK:+--quick} \
    --out "$run_dir/node-profile.json" "${symbols[@]+"${symbols[@]}"}"

  step "browser bench (headless Chromium)"
  node bench/browser/run.mjs ${TIDEKV_BENCH_QUICK:+--quick} --out "$run_dir/browser.json"

  step "browser CPU profile (bench/browser/profile.mjs)"
  profile_step "browser CPU profile" node bench/browser/profile.mjs ${TIDEKV_BENCH_QUICK:+--quick} \
    --out "$run_dir/browser-profile.json"
else
  missing+=("Node.js and browser benches, npm package size: no pkg/ (scripts/build-npm.sh is not in this tree yet)")
fi

step "report"
python3 - "$run_dir/machine.json" "$quick" "$start" "$load_start" "${missing[@]+"${missing[@]}"}" <<'EOF'
import json, os, platform, subprocess, sys, time
path, quick, start, load_start, *missing = sys.argv[1:]
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return "?"
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
mem_kb = int(sh("grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2") or 0)
json.dump({
    "command": "scripts/bench.sh" + (" --quick" if quick == "1" else ""),
    "quick": quick == "1",
    "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    "duration_s": time.time() - int(start),
    "cpu": cpu or platform.processor(),
    "cores": os.cpu_count(),
    "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
    "kernel": platform.release(),
    "rustc": sh("rustc --version"),
    "node": sh("node --version"),
    "chromium": sh("chromium --version 2>/dev/null") or "not installed",
    "redis_server": sh("redis-server --version 2>/dev/null | grep -o 'v=[^ ]*' | cut -c3-"),
    "commit": sh("git rev-parse --short HEAD") + (" + uncommitted changes" if sh("git status --porcelain") else ""),
    "load_start": load_start,
    "load_end": " ".join(open("/proc/loadavg").read().split()[:3]),
    "missing": missing,
}, open(path, "w"), indent=1)
EOF
python3 scripts/bench_report.py "$run_dir" "$out"
echo "benchmarks done in $(( $(date +%s) - start )) s: $out"
if [ ${#broken[@]} -gt 0 ]; then
  printf 'broken: %s\n' "${broken[@]}" >&2
  [ $quick = 0 ] || exit 1
fi
