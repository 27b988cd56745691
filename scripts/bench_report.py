#!/usr/bin/env python3
"""Writes BENCHMARKS.md from one run of scripts/bench.sh.

Reads, from the run's output directory:
  machine.json          what scripts/bench.sh recorded about the machine and the run
  native.json           rows from the native bench binary (benches/native): in-memory groups
  native-disk.json      the same binary's disk groups (persist, reopen), run in a fresh process
  criterion/            criterion's estimates for the point-operation and sweep-tick benches
  node.json             rows from bench/node (optional)
  browser.json          rows from bench/browser (optional)
  redis.json            rows from the Redis bench binary (benches/redis)
  package.json          the npm package's gzip sizes (optional)
  profiles.json         CPU profiles of the native bench binary's profile_* loops (scripts/profile.sh)
  node-profile.json     CPU profiles of the npm package's Node.js build (bench/node/profile.mjs)
  browser-profile.json  CPU profiles of its browser build's IndexedDB flush and open in headless
                        Chromium (bench/browser/profile.mjs)
  wasm-size.md          what the browser build's wasm is made of (scripts/wasm_size.py --markdown)
and benches/report_notes.md, the hand-written explanations merged under missed targets.

Every number in the output comes from those files; nothing here is a measurement.
Usage: bench_report.py RUN_DIR OUTPUT.md
"""

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


class Results:
    """(group, metric, peer) -> (value, unit)."""

    def __init__(self):
        self.rows = {}

    def add_rows(self, rows):
        for r in rows:
            self.rows[(r["group"], r["metric"], r["peer"])] = (r["value"], r["unit"])

    def get(self, group, metric, peer):
        v = self.rows.get((group, metric, peer))
        if v is None or v[0] is None or v[0] < 0:
            return None
        return v[0]

    def peers(self, group, metric=None):
        seen = []
        for g, m, p in self.rows:
            if g == group and (metric is None or m == metric) and p not in seen:
                seen.append(p)
        return seen

    def has_group(self, group):
        return any(g == group for g, _, _ in self.rows)


def add_criterion(results, crit_dir):
    """Criterion's median estimate per benchmark, as rows group/peer/metric in ns."""
    crit = Path(crit_dir)
    if not crit.is_dir():
        return
    for est in sorted(crit.glob("**/new/estimates.json")):
        parts = est.relative_to(crit).parts[:-2]
        data = load_json(est, None)
        if not data:
            continue
        ns = data["median"]["point_estimate"]
        if len(parts) == 3:  # group / peer / op
            group, peer, op = parts
        elif len(parts) == 2:  # group / name
            group, peer = parts
            op = "time"
        else:
            continue
        results.add_rows([{"group": group, "metric": op, "peer": peer, "value": ns, "unit": "ns"}])


def fmt_ns(ns):
    if ns is None:
        return "–"
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def fmt_num(v, digits=0):
    if v is None:
        return "–"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_ratio(r):
    if r is None:
        return "–"
    if r >= 100:
        return f"{r:,.0f}×"
    if r >= 10:
        return f"{r:.1f}×"
    return f"{r:.2f}×"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(out)


def fill_note(text, res):
    """Replaces {{group/metric/peer}} with that figure from the run, so a note's numbers come
    from the run too."""
    def one(m):
        group, metric, peer = m.group(1).split("/", 2)
        v = res.get(group, metric, peer)
        if v is None:
            return "(not measured)"
        unit = res.rows[(group, metric, peer)][1]
        if unit == "ns":
            return fmt_ns(v)
        if unit == "%":
            return f"{fmt_num(v, 1)}%"
        return f"{fmt_num(v, 0 if abs(v) >= 100 else 1)} {unit}"
    return re.sub(r"\{\{([^}]+)\}\}", one, text)


def read_notes():
    """Sections of benches/report_notes.md: '## id' followed by text."""
    path = ROOT / "benches" / "report_notes.md"
    notes = {}
    if not path.exists():
        return notes
    current = None
    for line in path.read_text().splitlines():
        m = re.match(r"^## (\S+)\s*$", line)
        if m:
            current = m.group(1)
            notes[current] = []
        elif current:
            notes[current].append(line)
    return {k: "\n".join(v).strip() for k, v in notes.items()}


def note_for(notes, tid):
    """The note of target `tid`, or of its family: `threads_get_hit` falls back to
    `threads_get`, then `threads` (one explanation for targets that share a cause)."""
    parts = tid.split("_")
    while parts:
        note = notes.get("_".join(parts))
        if note:
            return note
        parts.pop()
    return "No explanation written yet (add one to `benches/report_notes.md`)."


POINT_PEERS = ["tidekv", "tidekv_ttl", "mutex_hashmap", "dashmap", "moka_ttl"]
POINT_LABEL = {
    "tidekv": "tidekv",
    "tidekv_ttl": "tidekv, every key with a TTL",
    "mutex_hashmap": "Mutex&lt;HashMap&gt; (floor)",
    "dashmap": "dashmap",
    "moka_ttl": "moka::sync::Cache (TTL)",
}
POINT_OPS = ["get_hit", "get_miss", "set", "delete"]


def point_section(res, out):
    for threads in (1, 2, 4):
        group = f"point_{threads}t"
        if not res.has_group(group):
            continue
        peers = [p for p in POINT_PEERS if p in res.peers(group)]
        others = [p for p in peers if p != "tidekv"]
        if threads == 1:
            out.append(f"### {threads} thread: time per operation (criterion median; lower is better)\n")
            out.append("Ratio = tidekv's time ÷ the peer's time (below 1× means tidekv is faster).\n")
            header = ["operation", "tidekv"] + [f"{POINT_LABEL[p]} · ratio" for p in others]
            rows = []
            for op in POINT_OPS:
                t = res.get(group, op, "tidekv")
                row = [op, fmt_ns(t)]
                for p in others:
                    v = res.get(group, op, p)
                    row.append(f"{fmt_ns(v)} · {fmt_ratio(ratio(t, v))}")
                rows.append(row)
        else:
            out.append(f"### {threads} threads: throughput, all threads on one store (higher is better)\n")
            out.append(
                f"Each criterion iteration is one operation on each thread; throughput = {threads} ÷ its "
                "median time. Ratio = tidekv's throughput ÷ the peer's (above 1× means tidekv is faster)."
                + (" This machine has 2 cores: 4 threads are oversubscribed, the row shows the trend." if threads > 2 else "")
                + "\n"
            )
            header = ["operation", "tidekv"] + [f"{POINT_LABEL[p]} · ratio" for p in others]
            rows = []
            for op in POINT_OPS:
                t = res.get(group, op, "tidekv")
                tt = threads * 1e3 / t if t else None  # Mops/s
                row = [op, f"{fmt_num(tt, 2)} M/s" if tt else "–"]
                for p in others:
                    v = res.get(group, op, p)
                    vt = threads * 1e3 / v if v else None
                    row.append(f"{fmt_num(vt, 2)} M/s · {fmt_ratio(ratio(tt, vt))}" if vt else "–")
                rows.append(row)
        out.append(table(header, rows) + "\n")
    if res.has_group("point_1t") and res.has_group("point_2t"):
        # How each store's own throughput grows from one thread to two on this machine: the
        # thread-scaling targets ask tidekv for 1.6×, and the peers show what the machine gives.
        out.append("### Scaling: each store's 2-thread throughput ÷ its own 1-thread throughput\n")
        out.append("Above 1× the second thread added throughput. Two cores give about 2× at most; a "
                   "figure above that means the 1-thread run met more interference than the 2-thread one.\n")
        peers = [p for p in POINT_PEERS if p in res.peers("point_2t")]
        rows = []
        for op in POINT_OPS:
            row = [op]
            for p in peers:
                one, two = res.get("point_1t", op, p), res.get("point_2t", op, p)
                row.append(fmt_ratio(ratio(2 * one, two)) if one and two else "–")
            rows.append(row)
        out.append(table(["operation"] + [POINT_LABEL[p] for p in peers], rows) + "\n")


def targets(res, run):
    """Each target: (id, text, measured text, met: True/False/None)."""
    t = []

    def add(tid, text, value_text, met):
        t.append((tid, text, value_text, met))

    # Issue 15's targets (earlier issues' where 15 does not replace them).
    p1 = "point_1t"
    for op, bound in (("get_hit", 1.3), ("set", 2), ("delete", 2)):
        r = ratio(res.get(p1, op, "tidekv"), res.get(p1, op, "mutex_hashmap"))
        add(f"{op}_floor", f"{op.replace('_', ' ')} ≤ {bound}× the time of the Mutex&lt;HashMap&gt; floor (1 thread)",
            f"{fmt_ratio(r)} the floor's time" if r else "not measured", r <= bound if r else None)
    moka = ratio(res.get(p1, "get_hit", "moka_ttl"), res.get(p1, "get_hit", "tidekv"))
    add("get_hit_moka", "get hit ≥ 2× moka's throughput (1 thread)",
        f"{fmt_ratio(moka)} moka's throughput" if moka else "not measured", moka >= 2 if moka else None)
    for op in POINT_OPS:
        one, two = res.get(p1, op, "tidekv"), res.get("point_2t", op, "tidekv")
        dash = res.get("point_2t", op, "dashmap")
        # Throughput: 1 / time per op on one thread, 2 / time per iteration on two.
        scale = ratio(2 * one, two) if one and two else None
        vs_dash = ratio(dash, two) if dash and two else None
        add(f"threads_{op}", f"{op.replace('_', ' ')}, 2 threads: ≥ 1.6× tidekv's 1-thread throughput and ≥ 0.8× dashmap's",
            f"{fmt_ratio(scale)} its 1-thread, {fmt_ratio(vs_dash)} dashmap's" if scale and vs_dash else "not measured",
            (scale >= 1.6 and vs_dash >= 0.8) if scale and vs_dash else None)

    tk = res.get("persist", "records_per_s", "tidekv")
    for tid, peer, bound in (("persist_redb_batched", "redb, commit every 1,000", 2),
                             ("persist_redb_one", "redb, one commit", 1)):
        r = ratio(tk, res.get("persist", "records_per_s", peer))
        add(tid, f"persistent writes ≥ {bound}× {peer}'s rate",
            f"{fmt_ratio(r)} its rate" if r else "not measured", r >= bound if r else None)
    mem_set = res.get(p1, "set", "tidekv")
    r = ratio(tk, 1e9 / mem_set) if tk and mem_set else None
    add("persist_tax", "persistent writes ≥ 50% of tidekv's own in-memory set rate",
        f"{r * 100:.0f}% of it" if r else "not measured", r >= 0.5 if r else None)
    limit = ratio(res.get("persist", "disk_mb_per_s", "tidekv"), res.get("persist", "disk_mb_per_s", "sequential write limit"))
    add("persist_limit", "persistent writes ≥ 50% of the sequential write-with-fsync limit (bytes written to disk)",
        f"{limit * 100:.0f}% of the limit" if limit else "not measured", limit >= 0.5 if limit else None)

    tick = res.get("sweep_tick", "time", "tidekv_store_sweep_expired")
    add("sweep_tick", "sweep tick with nothing due at 1M keys < 1 µs (Store::sweep_expired)",
        fmt_ns(tick) if tick else "not measured", tick < 1000 if tick else None)
    reopen = res.get("reopen", "open_ms", "tidekv")
    r = ratio(reopen, res.get("reopen", "open_ms", "redb, open + full scan"))
    add("reopen", "reopen with every key readable ≤ 1.5× redb's open + full scan",
        f"{fmt_ns(reopen * 1e6)}, {fmt_ratio(r)} redb's time" if reopen and r else "not measured",
        r <= 1.5 if r else None)
    for peer, label in (("tidekv", ""), ("tidekv_ttl", ", every key with a TTL")):
        mem = res.get("memory", "overhead_per_key", peer)
        bound = 64 if peer == "tidekv" else 80
        add("memory" if peer == "tidekv" else "memory_ttl",
            f"memory overhead ≤ {bound} bytes per key beyond key + value{label}",
            f"{mem:.0f} B per key" if mem is not None else "not measured",
            mem <= bound if mem is not None else None)

    b = "browser"
    r = ratio(res.get(b, "set_ms", "idb-keyval set"), res.get(b, "set_ms", "tidekv"))
    add("browser_set", "browser: buffered set ≥ 100× idb-keyval `set`",
        f"{fmt_ratio(r)} as fast" if r else "not measured", r >= 100 if r else None)
    r = ratio(res.get(b, "flush_ms", "tidekv"), res.get(b, "flush_ms", "idb-keyval setMany"))
    add("browser_flush", "browser: flush of 10k records ≤ 1.0× idb-keyval `setMany`'s time",
        f"{fmt_ratio(r)} setMany's time" if r else "not measured", r <= 1.0 if r else None)
    r = ratio(res.get(b, "open_ms", "tidekv"), res.get(b, "open_ms", "idb-keyval entries()"))
    add("browser_open", "browser: open with 100k records ≤ 1.0× idb-keyval `entries()`'s time",
        f"{fmt_ratio(r)} entries()'s time" if r else "not measured", r <= 1.0 if r else None)
    r = ratio(res.get(b, "tabs_flush_ms", "tidekv, 1 tab open"),
              res.get(b, "tabs_flush_ms", "tidekv, no BroadcastChannel"))
    add("browser_tabs", "browser: a flush of 10k with one tab open within 1.1× of the same flush without tab coherence",
        f"{fmt_ratio(r)} the time" if r else "not measured", r <= 1.1 if r else None)
    first = res.get(b, "first_get_ms", "tidekv")
    first_peer = res.get(b, "first_get_ms", "idb-keyval get")
    add("browser_first_get", "browser: time from `import` to the first `get` on an empty store reported",
        (f"{first:.0f} ms (idb-keyval: {first_peer:.0f} ms)" if first_peer else f"{first:.0f} ms")
        if first is not None else "not measured", True if first is not None else None)
    r = ratio(res.get(b, "get_ms", "idb-keyval get"), res.get(b, "get_ms", "tidekv"))
    add("browser_get", "browser: get ≥ 100× idb-keyval `get`",
        f"{fmt_ratio(r)} as fast" if r else "not measured", r >= 100 if r else None)

    n = "node"
    for op, bound in (("get", 1.5), ("set", 2)):
        lru = ratio(res.get(n, op, "tidekv"), res.get(n, op, "lru-cache (ttl)"))
        add(f"node_lru_{op}", f"Node: {op} ≤ {bound}× lru-cache's time",
            f"{fmt_ratio(lru)} lru-cache's time" if lru else "not measured", lru <= bound if lru else None)
    node_ops = [m for g, m, p in res.rows if g == n and p == "tidekv"]
    slower = [f"{op} ({p})" for op in node_ops for p in ("keyv (memory)", "node-cache")
              if (res.get(n, op, p) or float("inf")) <= (res.get(n, op, "tidekv") or 0)]
    add("node_peers", "Node: faster than keyv and node-cache on every row",
        ("slower on " + ", ".join(slower)) if slower else ("faster on every row" if node_ops else "not measured"),
        (not slower) if node_ops else None)

    rd = "redis"
    r = ratio(res.get(rd, "sets_per_s", "tidekv on Redis, buffered (Syncer)"),
              res.get(rd, "sets_per_s", "redis crate, one SET per call"))
    add("redis_sets", "Redis: buffered sets ≥ 10× the plain client's sets/s (one SET per call)",
        f"{fmt_ratio(r)} as many" if r else "not measured", r >= 10 if r else None)
    r = ratio(res.get(rd, "gets_per_s", "tidekv on Redis, served locally"),
              res.get(rd, "gets_per_s", "redis crate, one GET per call"))
    add("redis_gets", "Redis: reads served locally ≥ 100× a `GET`",
        f"{fmt_ratio(r)} as many" if r else "not measured", r >= 100 if r else None)

    size = run.get("package", {}).get("gzip_total")
    add("npm_size", "npm package ≤ 100 KB gzip (wasm + JS glue)",
        f"{size / 1024:.1f} KB" if size else "not measured", size <= 100 * 1024 if size else None)
    return t


def package_size(pkg_dir):
    """gzip -9 sizes of the npm package's wasm and JS files; the target figure is one build (what
    a browser downloads: the files next to the `browser` export), or every file if there is one."""
    import gzip
    pkg = Path(pkg_dir)
    manifest = load_json(pkg / "package.json", {})
    files = sorted(p for p in pkg.rglob("*")
                   if p.is_file() and "node_modules" not in p.parts
                   and (p.suffix == ".wasm" or (p.suffix in (".js", ".mjs", ".cjs") and not p.name.endswith(".d.ts"))))
    rows = []
    for p in files:
        data = p.read_bytes()
        rows.append([str(p.relative_to(pkg)), len(data), len(gzip.compress(data, 9))])

    def browser_entry(exports):
        if isinstance(exports, str):
            return None
        if isinstance(exports, dict):
            browser = exports.get("browser")
            if isinstance(browser, str):
                return browser
            if isinstance(browser, dict):
                # A condition object: its JavaScript entry (`types` names the declarations).
                for k in ("import", "default"):
                    if isinstance(browser.get(k), str):
                        return browser[k]
            for v in exports.values():
                found = browser_entry(v)
                if found:
                    return found
        return None

    entry = browser_entry(manifest.get("exports", {})) or manifest.get("browser") or manifest.get("module")
    chosen = rows
    build = "all files"
    if isinstance(entry, str):
        # The browser build: its entry file, and the wasm-bindgen output it loads — the files
        # beside it, or (entry `./web.js`) under the directory of the same stem (`web/`).
        entry_path = (pkg / entry).resolve()
        stem_dir = entry_path.with_suffix("")
        def in_build(rel):
            p = (pkg / rel).resolve()
            if p == entry_path:
                return True
            if stem_dir.is_dir():
                return stem_dir in p.parents
            return p.parent == entry_path.parent
        chosen = [r for r in rows if in_build(r[0])] or rows
        shown = f"{entry_path.relative_to(pkg.resolve())}" + (
            f" + {stem_dir.relative_to(pkg.resolve())}/" if stem_dir.is_dir() else "")
        build = f"the browser build ({shown})"
    return {"files": rows, "build": build, "gzip_total": sum(r[2] for r in chosen),
            "raw_total": sum(r[1] for r in chosen), "gzip_all": sum(r[2] for r in rows)}


def load_profiles(run_dir):
    """The run's CPU profiles: [(source label, JSON or None)], native (perf) first."""
    return [("`scripts/profile.sh`", load_json(run_dir / "profiles.json", None)),
            ("`bench/node/profile.mjs`", load_json(run_dir / "node-profile.json", None)),
            ("`bench/browser/profile.mjs`", load_json(run_dir / "browser-profile.json", None))]


def wasm_size_markdown(path):
    """scripts/wasm_size.py --markdown's output made part of the report: a blank line around each
    table, and each row's first cell (a section, crate, module or function name) as code, since
    Rust names hold `<...>` and `_`. None if the file is missing or empty."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    out, in_table, header, ncols = [], False, False, 0
    for line in lines:
        if line.startswith("|"):
            if not in_table:
                if out and out[-1]:
                    out.append("")
                in_table, ncols, header = True, line.count(" | ") + 1, True
                out.append(line)
                continue
            if header or set(line) <= set("|- "):
                header = False
                out.append(line)
                continue
            first, *rest = line[2:-2].rsplit(" | ", ncols - 1)
            out.append("| " + " | ".join([f"`{first}`"] + rest) + " |")
        else:
            if in_table and line:
                out.append("")
            in_table = False
            out.append(line)
    text = "\n".join(out).strip()
    return text or None


def profile_rows(profiles):
    """Rows for fill_note: {{profile_get/self_pct/SYMBOL}} and {{profile_get/samples/-}}."""
    rows = []
    for _, data in profiles:
        for p in (data or {}).get("profiles", []):
            rows.append({"group": p["name"], "metric": "samples", "peer": "-", "value": p["samples"], "unit": "samples"})
            for r in p["rows"]:
                rows.append({"group": p["name"], "metric": "self_pct", "peer": r["symbol"],
                             "value": r["self_pct"], "unit": "%"})
    return rows


def profiles_section(profiles, out, missing):
    """## Profiles (from this run): one table per profile, named so the notes can point at it."""
    shown = [(label, data) for label, data in profiles if data and data.get("profiles")]
    for label, data in profiles:
        if data is None:
            missing.append(f"CPU profiles from {label}: not taken in this run")
        elif not data.get("profiles"):
            missing.append(f"CPU profiles from {label}: {data.get('reason') or 'none taken'}")
    if not shown:
        return
    out.append("## Profiles (from this run)\n")
    out.append(
        "Where the CPU time goes, as self time: what a function ran itself, not its callees; the "
        "top functions with at least 1.5% each. Each profile is named after its loop, so the "
        "explanations under the missed targets can point at one.\n"
    )
    for label, data in shown:
        if data.get("tool") == "perf":
            out.append(
                f"**Native**, from {label}: the bench binary's `profile_*` groups — plain loops in "
                "`benches/native/profile.rs`, outside criterion, setup included (a loop over "
                "preloaded keys shows the preload too) — under `perf record` at "
                f"{data.get('frequency_hz', '?')} Hz on the `{data.get('event', '?')}` event (perf "
                f"{data.get('perf_version') or '?'}): the kernel's software CPU clock, so time a thread "
                "spends blocked (on an fsync, a lock) does not show. The bench binary is built with "
                "LTO: a function the compiler inlined counts in its caller (`native::main` is the loop "
                "itself). "
                + ("In a `--quick` run each loop runs once, so a short one holds few samples.\n"
                   if data.get("quick") else
                   "A short loop runs several times under one `perf record`, for about 1,000 samples.\n"))
        elif label == "`bench/browser/profile.mjs`":
            out.append(
                f"**Browser**, from {label} (headless Chromium {data.get('chromium_version', '?')}): a "
                "Chromium DevTools CPU profile of the npm package's browser build over IndexedDB; "
                f"{data.get('note', '')}. `(idle)` is the main thread waiting on IndexedDB "
                "(its backend works outside the page's thread, which the profile does not sample), "
                "`(program)` native browser work outside JS (value serialisation and deserialisation "
                "among it); `put`/`getAll` (browser built-ins) are IndexedDB's own calls, `wasm` rows "
                "are tidekv's wasm and `tidekv.js` rows its minified JS glue. The wall time is the "
                "operation's alone; the samples also cover the page round trip and the store's close "
                "around it.\n")
        else:
            out.append(f"**Node.js**, from {label} (Node.js {data.get('node_version', '?')}): "
                       f"{data.get('note', '')}.\n")
        for p in data["profiles"]:
            out.append(f"### `{p['name']}`\n")
            runs = p.get("runs", 1)
            text = (f"{fmt_num(p['samples'])} samples" + (f" over {runs} runs" if runs > 1 else "")
                    + (f", from `{p['setup']}` (setup, not profiled) and then" if p.get("setup") else ", from")
                    + f" `{p['command']}`"
                    + (f", then `{p['report_command']}`" if p.get("report_command") else "") + ".")
            if p.get("detail"):
                text += f" {p['detail']}."
            if p.get("output"):
                text += " The loop printed: " + "; ".join(f"`{line}`" for line in p["output"]) + "."
            out.append(text + "\n")
            rows = [["`" + r["symbol"].replace("|", "\\|") + "`", r["where"], f"{r['self_pct']:.1f}%"]
                    for r in p["rows"]]
            if p.get("other_pct") is not None:
                rows.append(["*all other functions*", "", f"{p['other_pct']:.1f}%"])
            out.append(table(["function", "in", "self time"], rows) + "\n")


def peer_versions():
    """Each peer's version as this tree pins it: Cargo.lock for the Rust peers,
    bench/package-lock.json for the JavaScript ones."""
    out = []
    lock = (ROOT / "Cargo.lock").read_text() if (ROOT / "Cargo.lock").exists() else ""
    found = dict(re.findall(r'\[\[package\]\]\nname = "([^"]+)"\nversion = "([^"]+)"', lock))
    for name in ("redb", "sled", "moka", "dashmap", "redis"):
        if name in found:
            out.append([f"`{name}` (crate)", found[name]])
    npm = load_json(ROOT / "bench" / "package-lock.json", {}).get("packages", {})
    for name in ("lru-cache", "node-cache", "keyv", "idb-keyval", "localforage"):
        version = npm.get(f"node_modules/{name}", {}).get("version")
        if version:
            out.append([f"`{name}` (npm)", version])
    return out


def main():
    if sys.argv[1] == "--package-size":
        json.dump(package_size(sys.argv[2]), sys.stdout, indent=1)
        return
    run_dir, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    machine = load_json(run_dir / "machine.json", {})
    res = Results()
    res.add_rows(load_json(run_dir / "native.json", []))
    res.add_rows(load_json(run_dir / "native-disk.json", []))
    res.add_rows(load_json(run_dir / "node.json", []))
    res.add_rows(load_json(run_dir / "browser.json", []))
    res.add_rows(load_json(run_dir / "redis.json", []))
    add_criterion(res, run_dir / "criterion")
    profiles = load_profiles(run_dir)
    res.add_rows(profile_rows(profiles))
    run = {"package": load_json(run_dir / "package.json", {})}
    notes = read_notes()
    quick = machine.get("quick", False)

    out = []
    out.append("# tidekv benchmarks\n")
    out.append(
        "Generated by `scripts/bench.sh` from one run; every figure below comes from that run "
        "(edit `benches/report_notes.md` for the explanations, never this file). Peers run in the "
        "same process (or page) as tidekv, one after another, so the **ratios** are the figures to "
        "trust on a shared machine; absolute times move with the machine's load.\n"
    )
    if quick:
        out.append("> **Quick run** (`--quick`): reduced sizes and sampling; it proves the benches work, "
                   "its figures mean little.\n")

    out.append("## Machine and run\n")
    m = machine
    rows = [
        ["command", f"`{m.get('command', '?')}`"],
        ["date (UTC)", m.get("date", "?")],
        ["duration", f"{m.get('duration_s', 0) / 60:.1f} min"],
        ["CPU", f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"],
        ["memory", m.get("memory", "?")],
        ["kernel", m.get("kernel", "?")],
        ["rustc", m.get("rustc", "?")],
        ["node", m.get("node", "?")],
        ["chromium", m.get("chromium", "?")],
        ["git commit", m.get("commit", "?")],
        ["one wall-clock read (`SystemTime::now`, in a loop)", fmt_ns(res.get("clock", "time", "system_time_now"))],
        ["the floor's get hit without / with a clock read per get",
         f"{fmt_ns(res.get('clock', 'time', 'floor_get'))} / {fmt_ns(res.get('clock', 'time', 'floor_get_with_clock'))}"],
        ["load average at start (1/5/15 min)", m.get("load_start", "?")],
        ["load average at end (1/5/15 min)", m.get("load_end", "?")],
    ]
    out.append(table(["", ""], rows) + "\n")
    versions = peer_versions()
    if machine.get("redis_server"):
        versions.append(["`redis-server`", machine["redis_server"]])
    if versions:
        out.append("Peers, at the versions this run used:\n")
        out.append(table(["peer", "version"], versions) + "\n")
    out.append(
        f"Keys: {fmt_num(res.get('run', 'scale_big', '-'))} for the expiry, memory, persistence and "
        f"reopen benches; {fmt_num(res.get('run', 'scale_point_keys', '-'))} preloaded for point "
        "operations. Keys are 12-byte strings (`key:00000000`), values 100 bytes.\n"
    )

    ts = targets(res, run)
    out.append("## Targets (issue 15's, and earlier issues' where 15 sets none; computed from this run)\n")
    mark = {True: "met", False: "**missed**", None: "not measured"}
    out.append(table(["target", "measured", ""], [[txt, val, mark[met]] for _, txt, val, met in ts]) + "\n")

    out.append("## Native: point operations in memory\n")
    out.append(
        "tidekv is `Store::memory(Options::default())` (system clock, 1 MiB write buffer, buffered "
        "writes: a set is in memory when it returns). The floor is `std::sync::Mutex<std::collections::"
        "HashMap<String, Bytes>>`; moka is `moka::sync::Cache<String, Bytes>` with `time_to_live(1 h)`. "
        "Random access over the preloaded keys; tidekv's write buffer is flushed after the preload "
        "(the steady state its Syncer keeps), so a get of a key without a TTL reads no clock.\n"
    )
    point_section(res, out)

    if res.has_group("evict"):
        out.append("## Native: the memory cap\n")
        out.append(
            "`Options::max_memory`: a get hit on a store with a cap (room to spare, so every hit "
            "stamps the key's recency) against the same get without one, over the preloaded keys; "
            "and a set of a key never seen before on a store at its cap (every set evicts a key, "
            "`EvictionPolicy::Lru`) against the same set on an uncapped store, which just grows.\n"
        )
        rows = []
        for op, label in (("get_hit", "get hit"), ("set_new", "set of a new key")):
            base = res.get("evict", op, "no_cap")
            for peer in ("no_cap", "capped", "at_cap"):
                v = res.get("evict", op, peer)
                if v is None:
                    continue
                rows.append([label, peer.replace("_", " "), fmt_ns(v),
                             fmt_ratio(ratio(v, base)) if peer != "no_cap" else ""])
        out.append(table(["operation", "store", "median time", "÷ no cap"], rows) + "\n")

    if res.has_group("sweep_tick") or res.has_group("reclaim"):
        out.append("## Native: expiry\n")
    if res.has_group("sweep_tick"):
        out.append(
            "A sweep tick with every key carrying a TTL 1 h away (nothing due). "
            "`Engine::sweep` is the core alone; `Store::sweep_expired` adds the lock and the clock read "
            "(what a timer tick costs). moka's `run_pending_tasks` is its housekeeping call.\n"
        )
        names = [("tidekv_engine_sweep", "tidekv `Engine::sweep(now, 1000)`"),
                 ("tidekv_store_sweep_expired", "tidekv `Store::sweep_expired()`"),
                 ("moka_run_pending_tasks", "moka `run_pending_tasks()`")]
        base = res.get("sweep_tick", "time", "tidekv_store_sweep_expired")
        rows = []
        for key, label in names:
            v = res.get("sweep_tick", "time", key)
            rows.append([label, fmt_ns(v), fmt_ratio(ratio(base, v)) if key != "tidekv_store_sweep_expired" else ""])
        out.append(table(["tick, nothing due", "median time", "tidekv store ÷ this"], rows) + "\n")
    if res.has_group("reclaim"):
        out.append(
            "Reclaim: every key expires at the same moment (tidekv: a manual clock jumps past the "
            "deadlines; moka: per-entry expiry of 1 s, real time). Meanwhile another thread reads 10,000 "
            "keys that do not expire, timing each get. `Store::sweep_expired()` removes everything due "
            "in one call, taking the store's lock once per `sweep_budget` (1,000) keys; the lock is "
            "not fair, so the sweeping thread often takes it again before a waiting get, which can "
            "wait across many chunks (the max column); a Syncer sweeps `sweep_budget` (1,000) keys per tick and releases "
            "the lock between ticks, ticking at `min_tick` (10 ms) while sweeps use their whole budget, "
            "so reclaim takes longer but gets are barely slowed.\n"
        )
        rows = []
        for peer in res.peers("reclaim"):
            g = lambda m: res.get("reclaim", m, peer)  # noqa: E731
            rows.append([peer, fmt_ns(g("reclaim_time") * 1e6) if g("reclaim_time") is not None else "–",
                         fmt_num(g("keys_reclaimed")), fmt_num(g("gets_during")), fmt_ns(g("get_p50")),
                         fmt_ns(g("get_p99")), fmt_ns(g("get_max") * 1e6) if g("get_max") is not None else "–"])
        out.append(table(["reclaim", "time", "keys", "gets during it", "get p50", "get p99", "get max"], rows) + "\n")

    if res.has_group("memory"):
        out.append("## Native: memory per key\n")
        out.append(
            "Bytes allocated per key (a counting global allocator: requested sizes, not the system "
            "allocator's rounding or headers), minus the key and value bytes. tidekv is measured after "
            "a flush (nothing pending).\n"
        )
        base = res.get("memory", "overhead_per_key", "tidekv")
        rows = []
        for p in POINT_PEERS:
            tot, ov = res.get("memory", "total_per_key", p), res.get("memory", "overhead_per_key", p)
            if tot is None:
                continue
            rows.append([POINT_LABEL[p], f"{tot:.0f} B", f"{ov:.0f} B",
                         fmt_ratio(ratio(base, ov)) if p != "tidekv" else ""])
        out.append(table(["store", "allocated per key", "overhead per key", "tidekv overhead ÷ this"], rows) + "\n")

    if res.has_group("persist"):
        out.append("## Native: persistent writes\n")
        out.append(
            "N sets of 100-byte values, then a flush that reaches the disk (fsync). tidekv is "
            "`Store::open` with default options (`Durability::Fsync`: every flush of the 1 MiB buffer "
            "is written and fsynced). The limit is the same disk written sequentially by the bench "
            "itself (1 MiB writes, one fsync at the end). MB/s on disk counts the bytes each store "
            "actually wrote (its files' size); payload MB/s counts key + value bytes.\n"
        )
        base = res.get("persist", "records_per_s", "tidekv")
        rows = []
        for p in res.peers("persist"):
            g = lambda mt: res.get("persist", mt, p)  # noqa: E731
            rows.append([p, fmt_ns(g("time_ms") * 1e6) if g("time_ms") else "–",
                         fmt_num(g("records_per_s")), fmt_num(g("payload_mb_per_s"), 1),
                         fmt_num(g("disk_mb_per_s"), 1),
                         fmt_ratio(ratio(base, g("records_per_s"))) if p != "tidekv" and g("records_per_s") else ""])
        out.append(table(["store", "time", "records/s", "payload MB/s", "MB/s on disk", "tidekv ÷ this (records/s)"], rows) + "\n")

    def spread(lo, hi):
        return f"{fmt_ns(lo * 1e6)} – {fmt_ns(hi * 1e6)}" if lo and hi else ""

    if res.has_group("reopen"):
        out.append("## Native: reopen\n")
        out.append(
            "Open a store holding N records (written by the persistent-write bench) and have every "
            "record readable, each open in a fresh child process, as after a restart (page cache "
            "warm). Every store is opened three times; the table shows the run with the median time "
            "(its page faults and peak memory too) and the range of the three. "
            "tidekv replays its log into memory on open; redb and sled open lazily, so they are timed "
            "for open + a full scan. The raw figure is reading tidekv's files with `std::fs::read`. "
            "Page faults and peak memory are the child process's own (from /proc).\n"
        )
        base = res.get("reopen", "open_ms", "tidekv")
        rows = []
        for p in res.peers("reopen"):
            v = res.get("reopen", "open_ms", p)
            mbs = res.get("reopen", "mb_per_s", p)
            rows.append([p, fmt_ns(v * 1e6) if v else "–", fmt_num(mbs, 0) if mbs else "",
                         fmt_num(res.get("reopen", "minor_faults", p)),
                         f"{fmt_num(res.get('reopen', 'peak_rss_mb', p))} MiB",
                         spread(res.get("reopen", "fastest_ms", p), res.get("reopen", "slowest_ms", p)),
                         fmt_ratio(ratio(base, v)) if p != "tidekv" and v else ""])
        out.append(table(["store", "time (median)", "MB/s", "minor page faults", "peak memory",
                          "fastest – slowest", "tidekv ÷ this (time)"], rows) + "\n")

    if res.has_group("node"):
        out.append("## Node.js\n")
        out.append(
            "The npm package's Node build (`Store.memory()`, from `pkg/`) against `lru-cache` "
            "(`ttl` set), `keyv` (its default in-memory Map store) and `node-cache` (defaults, which "
            "clone values), in one process with tinybench; every peer's entries carry a 1 h TTL. "
            "10,000 keys of 100-character string values, random access; each timed call does "
            "1,000 operations so the harness's own cost is spread thin. keyv's API is async, so "
            "each of its operations awaits a promise — that is what a keyv user pays.\n"
        )
        peers = res.peers("node")
        others = [p for p in peers if p != "tidekv"]
        ops = []
        for g, mt, p in res.rows:
            if g == "node" and mt not in ops:
                ops.append(mt)
        rows = []
        for op in ops:
            t = res.get("node", op, "tidekv")
            row = [op, fmt_ns(t)]
            for p in others:
                v = res.get("node", op, p)
                row.append(f"{fmt_ns(v)} · {fmt_ratio(ratio(t, v))}")
            rows.append(row)
        out.append("Time per operation (mean); ratio = tidekv's time ÷ the peer's (below 1× means tidekv is faster).\n")
        out.append(table(["operation", "tidekv"] + [f"{p} · ratio" for p in others], rows) + "\n")

    if res.has_group("browser"):
        n, open_n = res.get("browser", "keys", "-"), res.get("browser", "open_keys", "-")
        out.append("## Browser (headless Chromium, one page)\n")
        out.append(
            f"One page, one run: tidekv's web build over IndexedDB (`Store.open`, a 64 MiB buffer so "
            f"nothing flushes on its own during the run) against idb-keyval and localforage (its "
            f"IndexedDB driver), {fmt_num(n)} keys of 100-character string values. tidekv's set is "
            f"buffered (in memory when it returns); its flush is the IndexedDB write of all of them. "
            f"idb-keyval `set` is one transaction per key, awaited in turn; `setMany` one transaction. "
            f"Open: {fmt_num(open_n)} keys on disk; tidekv's `Store.open` loads every record into "
            f"memory, so the peers (which have no open step) are timed reading every entry. "
            f"First `get`: from `import` of the package to the answer of a `get` on an empty "
            f"store (tidekv: `import`, `Store.open`, which loads the wasm and opens the database, "
            f"and `get`; idb-keyval: `import` and `get`, which opens its database), in a fresh "
            f"browser context each time (nothing cached), the median of five (one with `--quick`).\n"
        )
        labels = {"set_ms": f"set {fmt_num(n)}", "flush_ms": f"write {fmt_num(n)} to IndexedDB (flush / setMany)",
                  "get_ms": f"get {fmt_num(n)}", "open_ms": f"open with {fmt_num(open_n)} keys",
                  "tabs_flush_ms": f"flush {fmt_num(n)} with other tabs of the database open",
                  "tabs_visible_ms": f"flush {fmt_num(n)} until every other tab holds them",
                  "first_get_ms": "`import` to the first `get` on an empty store"}
        rows = []
        for mt, label in labels.items():
            t = res.get("browser", mt, "tidekv")
            if mt.startswith("tabs_"):
                # Each row against one tab alone: the cost of coherence.
                t = res.get("browser", "tabs_flush_ms", "tidekv, no BroadcastChannel")
            for p in res.peers("browser", mt):
                v = res.get("browser", mt, p)
                rows.append([label, p, fmt_ns(v * 1e6),
                             "" if p == "tidekv" else f"{fmt_ratio(ratio(v, t))}"])
        out.append(table(["workload", "store", "time", "peer's time ÷ tidekv's (above 1× means tidekv is faster)"], rows) + "\n")

    if res.has_group("redis"):
        out.append("## Redis\n")
        out.append(
            f"One `redis-server` (Debian's, on loopback, no persistence) started by the bench; "
            f"{fmt_num(res.get('redis', 'keys', '-'))} keys of 100-byte values (plain per-call commands: "
            "a tenth of them, one round trip each). tidekv is `Store::open_redis`; its buffered set "
            "returns once the write is in memory, and \"landed\" counts until Redis acknowledged every "
            "write (the final `flush()` returned). The plain client is the `redis` crate on one "
            "connection; redis-benchmark runs 50 clients without pipelining on the same server.\n"
        )
        base = res.get("redis", "gets_per_s", "redis crate, one GET per call")
        rows = []
        for metric, label in (("sets_per_s", "sets/s (returned to the caller)"),
                              ("landed_per_s", "sets landed in Redis/s"),
                              ("gets_per_s", "gets/s")):
            base = res.get("redis", metric, "redis crate, one GET per call" if metric == "gets_per_s"
                           else "redis crate, one SET per call")
            for p in res.peers("redis", metric):
                v = res.get("redis", metric, p)
                rows.append([label, p, fmt_num(v), fmt_ratio(ratio(v, base)) if v and base else ""])
        out.append(table(["workload", "client", "ops/s", "÷ the plain client, one command per call"], rows) + "\n")

    pkg = run["package"]
    wasm_size = wasm_size_markdown(run_dir / "wasm-size.md")
    if pkg or wasm_size:
        out.append("## npm package size\n")
    if pkg:
        rows = [[f, f"{b / 1024:.1f} KB", f"{g / 1024:.1f} KB"] for f, b, g in pkg.get("files", [])]
        rows.append([f"**wasm + JS glue of {pkg['build']} (the target)**", f"{pkg['raw_total'] / 1024:.1f} KB",
                     f"**{pkg['gzip_total'] / 1024:.1f} KB**"])
        out.append("Each file compressed on its own with gzip -9; the target figure sums the browser build's files.\n")
        out.append(table(["file", "size", "gzip -9"], rows) + "\n")
    if wasm_size:
        out.append("### What the browser build's wasm is made of (`scripts/wasm_size.py`)\n")
        out.append(
            "From `scripts/wasm_size.py --markdown` on `target/wasm-size/web.wasm`, which "
            "`scripts/build-npm.sh` writes: the browser build optimised like the shipped "
            "`pkg/web/tidekv_bg.wasm` but with its function names kept (the first line gives both "
            "files' sizes). Bytes of the uncompressed wasm; a group's \"gzip\" is its function "
            "bodies gzipped on their own, a guide to what it adds to the download (gzip of parts "
            "does not sum to the whole). `js_sys::futures::future_to_promise` closures are the "
            "bodies of tidekv's async methods (`Store.open`, `flush`, ...) inlined into the promise "
            "glue; `export ...` modules are wasm-bindgen's shims of exported methods, with the "
            "method inlined.\n")
        out.append(wasm_size + "\n")

    missing = [m_ for m_ in machine.get("missing", [])]
    profile_out = []
    profiles_section(profiles, profile_out, missing)
    if missing:
        out.append("## Not measured in this run\n")
        out.extend(f"- {m_}" for m_ in missing)
        out.append("")

    out.extend(profile_out)

    missed = [(tid, txt) for tid, txt, _, met in ts if met is False]
    if missed:
        out.append("## Missed targets: what stands in the way\n")
        for tid, txt in missed:
            out.append(f"### {txt}\n")
            out.append(fill_note(note_for(notes, tid), res) + "\n")

    out_path.write_text("\n".join(out).rstrip() + "\n")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
