#!/usr/bin/env bash
# CPU profiles of the native bench binary's plain loops (the `profile_*` groups of
# benches/native/profile.rs) under `perf record`, summarised as JSON that scripts/bench_report.py
# renders under "Profiles (from this run)" in BENCHMARKS.md.
#
# Usage: scripts/profile.sh [--quick] OUT.json [GROUP...]
#   GROUP     the profile_* groups to run (default: every one benches/native/profile.rs matches
#             on, except profile_compare, which times two stores against each other)
#   --quick   one run of each group; otherwise a short group runs several times under one
#             `perf record` so its profile holds about 1,000 samples
# OUT.json holds, per group, the top self-time symbols (perf report --no-children --sort dso,sym),
# the sample count and the exact commands; the perf.data files stay in OUT's directory under
# <OUT name>-perf/. TIDEKV_PROFILE_BINARY=path profiles that bench binary instead of building
# one. Without a working perf (not installed, or the kernel forbids sampling) it
# writes {"available": false, "reason": ...} and exits 0: no CI job depends on perf.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

quick=0
out=""
groups=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown argument: $1" >&2; exit 2 ;;
    *) if [ -z "$out" ]; then out=$1; else groups+=("$1"); fi ;;
  esac
  shift
done
[ -n "$out" ] || { echo "usage: scripts/profile.sh [--quick] OUT.json [GROUP...]" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
data_dir=${out%.json}-perf
FREQ=999
EVENT=cpu-clock   # the kernel's software clock: no hardware counters needed
MIN_SAMPLES=1000  # below this, repeat the group (not in --quick)
MAX_RUNS=10
# perf's own words when the kernel will not let it sample (perf_event_paranoid, a container).
PERF_DENIED='perf_event|No permission to enable|Access to performance monitoring|not supported'

# Everything Python does: summarise one perf.data, or write the final JSON.
PY=$(cat <<'EOF'
import json, math, re, subprocess, sys

SEP = "\x1f"

def trim_generics(s):
    """Drops generic arguments (`RawTable<T,A>::insert` -> `RawTable::insert`); keeps a qualified
    path (`<alloc::string::String as core::fmt::Write>::write_str` -> `<String as Write>::write_str`)
    and the type a drop_in_place drops."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "<":
            depth, j = 1, i + 1
            while j < len(s) and depth:
                depth += {"<": 1, ">": -1}.get(s[j], 0)
                j += 1
            inner = s[i + 1:j - 1]
            prev = "".join(out)
            if not prev or prev.endswith("::") or prev.endswith(" ") or prev.endswith("("):
                # <A as B>: keep, with each side's last path segment.
                parts = [trim_generics(p).split("::")[-1] for p in inner.split(" as ", 1)]
                out.append("<" + " as ".join(parts) + ">")
            elif prev.endswith("drop_in_place"):
                out.append("<" + trim_generics(inner).split("::")[-1] + ">")
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out)

def short(sym, dso):
    if re.fullmatch(r"0x[0-9a-f]+", sym):
        return f"[unknown in {dso}]"
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    sym = trim_generics(sym)
    return sym if len(sym) <= 90 else sym[:89] + "…"

def where(dso, binary):
    if dso == binary:
        return "bench binary"
    if dso.startswith("[kernel"):
        return "kernel"
    return re.sub(r"\.so(\.\d+)*$", "", dso.strip("[]"))

def summarise(data, group, record_cmd, report_cmd, runs, log, binary, setup):
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "-F", "overhead,sample,dso,sym", "-t", SEP],
                         capture_output=True, text=True, check=True).stdout
    agg, total = {}, 0
    for line in rep.splitlines():
        f = line.split(SEP)
        if line.startswith("#") or len(f) < 4:
            continue
        n = int(f[1].strip())
        total += n
        dso = f[2].strip()
        sym = re.sub(r"^\[[.kgu]\]\s*", "", f[3].strip())
        key = (short(sym, where(dso, binary)), where(dso, binary))
        agg[key] = agg.get(key, 0) + n
    rows = sorted(agg.items(), key=lambda kv: -kv[1])
    shown = [{"symbol": s, "where": w, "self_pct": round(100 * n / total, 2)}
             for (s, w), n in rows if total and 100 * n / total >= 1.5][:12]
    # What the loop printed (profile_persist times its write and reopen), minus perf's own
    # lines and the temporary directory's name.
    output = [l for l in open(log, errors="replace").read().splitlines()
              if l.strip() and not l.startswith("[ perf record") and not l.startswith("store in ")]
    return {"name": group, "tool": "perf", "runs": int(runs), "samples": total,
            "setup": setup or None, "command": record_cmd, "report_command": report_cmd, "rows": shown,
            "other_pct": round(100 - sum(r["self_pct"] for r in shown), 2) if total else None,
            "output": output[-10:]}

def samples(data):
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                          "-F", "sample", "-t", SEP], capture_output=True, text=True, check=True).stdout
    return sum(int(l.strip()) for l in rep.splitlines() if l.strip() and not l.startswith("#"))

cmd = sys.argv[1]
if cmd == "samples":
    print(samples(sys.argv[2]))
elif cmd == "summarise":
    print(json.dumps(summarise(*sys.argv[2:])))
elif cmd == "runs":  # runs needed for MIN_SAMPLES, given one run's samples
    n, want, cap = map(int, sys.argv[2:5])
    print(max(1, min(cap, math.ceil(want / max(n, 1)))))
elif cmd == "write":  # OUT available reason frequency event version quick [profile JSON lines file]
    out, available, reason, freq, event, version, quick, lines = sys.argv[2:10]
    profiles = [json.loads(l) for l in open(lines)] if lines else []
    json.dump({"tool": "perf", "available": available == "1", "reason": reason or None,
               "perf_version": version or None, "event": event, "frequency_hz": int(freq),
               "quick": quick == "1",
               "note": "self time (--no-children): samples of the software CPU clock, so time "
                       "a thread spends blocked (waiting for fsync, a lock) does not appear",
               "profiles": profiles}, open(out, "w"), indent=1)
EOF
)
unavailable() {
  echo "profile.sh: $1; writing $out without profiles" >&2
  python3 -c "$PY" write "$out" 0 "$1" "$FREQ" "$EVENT" "${2:-}" "$quick" ""
  exit 0
}

command -v perf >/dev/null || unavailable "perf is not installed"
perf_version=$(perf --version 2>/dev/null | sed 's/^perf version //') || unavailable "perf is installed but does not run (perf --version failed)"

# The native bench binary, built as `cargo bench` builds it.
binary=${TIDEKV_PROFILE_BINARY:-}
[ -n "$binary" ] || binary=$(cargo bench --bench native --no-run --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "native" and m.get("executable"):
        print(m["executable"])') || { echo "profile.sh: cargo bench --bench native --no-run failed" >&2; exit 1; }
[ -x "$binary" ] || { echo "profile.sh: no native bench binary (cargo bench --bench native --no-run)" >&2; exit 1; }
binary=$(realpath "$binary")
shown_binary=${binary#"$ROOT"/}

if [ ${#groups[@]} = 0 ]; then
  mapfile -t groups < <(grep -oE '"profile_[a-z0-9_]+"[[:space:]]*=>' benches/native/profile.rs \
    | grep -oE 'profile_[a-z0-9_]+' | grep -vx profile_compare)
fi
[ ${#groups[@]} -gt 0 ] || { echo "profile.sh: no profile_* group in benches/native/profile.rs" >&2; exit 1; }

rm -rf "$data_dir"
mkdir -p "$data_dir"
lines=$data_dir/profiles.jsonl
: > "$lines"
shown_data=${data_dir#"$ROOT"/}  # commands as run from the repository root

# prepare GROUP: what the group needs before its profile, outside it. Sets $group_env (VAR=value
# words for the profiled run) and $setup_cmd (as typed from the repository root, or empty).
prepare() {
  group_env=(TIDEKV_BENCH_GROUPS="$1")
  setup_cmd=""
  if [ "$1" = profile_reopen ]; then
    # A store of 1M records that profile_persist keeps, so the profile holds the open alone.
    local store=$data_dir/reopen-store kept
    setup_cmd="KEEP_DIR=$shown_data/reopen-store PERSIST_ONLY=1 TIDEKV_BENCH_GROUPS=profile_persist $shown_binary"
    KEEP_DIR=$store PERSIST_ONLY=1 TIDEKV_BENCH_GROUPS=profile_persist "$binary" > "$data_dir/$1.setup.log" 2>&1 \
      || { tail -5 "$data_dir/$1.setup.log" >&2; return 1; }
    kept=$(find "$store" -mindepth 1 -maxdepth 1 -type d | head -n 1)
    [ -n "$kept" ] || { echo "profile.sh: profile_persist kept no store in $store" >&2; return 1; }
    group_env=(REOPEN_DIR="$kept" "${group_env[@]}")
  fi
}

# record GROUP RUNS: the group RUNS times under one perf record; sets $record_cmd.
record() {
  local group=$1 runs=$2 data=$data_dir/$1.data shown_env
  shown_env=$(printf '%s ' "${group_env[@]}")
  shown_env=${shown_env//"$ROOT"\//}
  if [ "$runs" = 1 ]; then
    set -- "$binary"
    record_cmd="${shown_env}perf record -F $FREQ -e $EVENT -o $shown_data/$group.data -- $shown_binary"
  else
    # shellcheck disable=SC2016  # $0 is for the inner bash
    set -- bash -c "for i in \$(seq $runs); do \"\$0\" || exit; done" "$binary"
    record_cmd="${shown_env}perf record -F $FREQ -e $EVENT -o $shown_data/$group.data -- bash -c 'for i in \$(seq $runs); do \"\$0\" || exit; done' $shown_binary"
  fi
  env "${group_env[@]}" perf record -F "$FREQ" -e "$EVENT" -o "$data" -- "$@" > "$data_dir/$group.log" 2>&1
}

for group in "${groups[@]}"; do
  start=$(date +%s)
  prepare "$group" || { echo "profile.sh: $group: its setup failed" >&2; exit 1; }
  if ! record "$group" 1; then
    tail -5 "$data_dir/$group.log" >&2
    grep -qiE "$PERF_DENIED" "$data_dir/$group.log" \
      && unavailable "perf cannot sample here: $(grep -m1 -iE "$PERF_DENIED" "$data_dir/$group.log")" "$perf_version"
    echo "profile.sh: $group failed under perf; log: $data_dir/$group.log" >&2
    exit 1
  fi
  runs=1
  if [ $quick = 0 ]; then
    n=$(python3 -c "$PY" samples "$data_dir/$group.data")
    runs=$(python3 -c "$PY" runs "$n" "$MIN_SAMPLES" "$MAX_RUNS")
    if [ "$runs" != 1 ]; then
      rm -f "$data_dir/$group.data"
      record "$group" "$runs" || { tail -5 "$data_dir/$group.log" >&2; exit 1; }
    fi
  fi
  report_cmd="perf report -i $shown_data/$group.data --stdio --no-children --sort dso,sym"
  python3 -c "$PY" summarise "$data_dir/$group.data" "$group" "$record_cmd" "$report_cmd" "$runs" \
    "$data_dir/$group.log" "$(basename "$binary")" "$setup_cmd" >> "$lines"
  rm -rf "$data_dir/reopen-store"
  echo "profile.sh: $group: $runs run(s), $(( $(date +%s) - start )) s"
done
python3 -c "$PY" write "$out" 1 "" "$FREQ" "$EVENT" "$perf_version" "$quick" "$lines"
echo "profile.sh: wrote $out"
