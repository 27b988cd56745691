#!/usr/bin/env python3
"""What the browser build's wasm is made of: its sections, and the functions of its code section
grouped by crate and module and listed one by one, largest first, read from the wasm's name
section.

Usage: scripts/wasm_size.py [WASM] [--top N] [--markdown]

WASM defaults to target/wasm-size/web.wasm, which scripts/build-npm.sh writes: the browser build
optimised exactly like pkg/web/tidekv_bg.wasm but with its function names kept (`wasm-opt -g`),
so the figures are those of the shipped file (the script prints both sizes to show it). Sizes are
bytes of the uncompressed wasm; "gzip" is the group's function bodies gzipped on their own, a
guide to what the group adds to the download (gzip of parts does not sum to the whole).
`js_sys::futures::future_to_promise` closures are the bodies of tidekv's async methods (`Store.open`,
`flush`, ...) inlined into the promise glue.
No dependencies beyond Python 3.
"""
import gzip
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRIMITIVES = {"char", "str", "bool", "f32", "f64", "usize", "isize", "u8", "u16", "u32", "u64",
              "u128", "i8", "i16", "i32", "i64", "i128"}
SECTION_NAMES = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
                 6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
                 12: "data count"}


def leb(buf, pos):
    """An unsigned LEB128 at `pos`: (value, position after it)."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return result, pos


def name_at(buf, pos):
    n, pos = leb(buf, pos)
    return buf[pos:pos + n].decode("utf-8", "replace"), pos + n


def parse(buf):
    """Sections as (id, name, start, end), imported function count, bodies [(index, bytes)] and
    function names {index: name}."""
    if buf[:4] != b"\0asm":
        sys.exit("not a wasm module")
    pos, sections, imported, bodies, names = 8, [], 0, [], {}
    while pos < len(buf):
        sid = buf[pos]
        size, start = leb(buf, pos + 1)
        end = start + size
        label = SECTION_NAMES.get(sid, str(sid))
        if sid == 0:
            custom, _ = name_at(buf, start)
            label = f"custom \"{custom}\""
            if custom == "name":
                p = name_at(buf, start)[1]
                while p < end:
                    sub, p = buf[p], p + 1
                    sub_len, p = leb(buf, p)
                    if sub == 1:
                        count, q = leb(buf, p)
                        for _ in range(count):
                            index, q = leb(buf, q)
                            names[index], q = name_at(buf, q)
                    p += sub_len
        elif sid == 2:
            count, p = leb(buf, start)
            for _ in range(count):
                _, p = name_at(buf, p)
                _, p = name_at(buf, p)
                kind, p = buf[p], p + 1
                if kind == 0:
                    imported += 1
                    _, p = leb(buf, p)
                elif kind == 1:
                    p += 1
                    flags, p = leb(buf, p)
                    _, p = leb(buf, p)
                    if flags & 1:
                        _, p = leb(buf, p)
                elif kind == 2:
                    flags, p = leb(buf, p)
                    _, p = leb(buf, p)
                    if flags & 1:
                        _, p = leb(buf, p)
                elif kind == 3:
                    p += 2
                else:
                    _, p = leb(buf, p)
        elif sid == 10:
            count, p = leb(buf, start)
            for i in range(count):
                body_len, q = leb(buf, p)
                bodies.append((imported + i, buf[p:q + body_len]))
                p = q + body_len
        sections.append((sid, label, start, end))
        pos = end
    return sections, imported, bodies, names


def crate_of(name):
    """The crate a (demangled) function name belongs to, and its module path (up to three
    segments): `<alloc::vec::Vec<T> as core::ops::Drop>::drop` -> alloc, alloc::vec::Vec.
    wasm-bindgen's export shims (`store_get externref shim`, the exported method inlined into
    them) are a group of their own, named by export."""
    if name.endswith(" shim"):
        # wasm-bindgen's wrapper of an exported method (`store_get`), the method inlined into it.
        return "(exported methods, wasm-bindgen shims)", "export " + name.split(" ")[0]
    name = re.sub(r"\[[0-9a-f]{16}\]", "", name)
    s = name.lstrip("<&*").replace("mut ", "").replace("dyn ", "")
    s = re.sub(r"^\[(.*)\]$", r"\1", s)
    path = re.split(r"[<> ,()\[\]{};]", s, maxsplit=1)[0]
    parts = [p for p in path.split("::") if p and not re.fullmatch(r"h[0-9a-f]{16}", p)]
    if not parts:
        return "(unnamed)", "(unnamed)"
    if len(parts) == 1:
        if parts[0] in PRIMITIVES:
            return "core", "core::" + parts[0]
        return "(no path)", parts[0]
    return parts[0], "::".join(parts[:3])


def table(headers, rows, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(headers)] + [line(r) for r in rows])


def main():
    args = sys.argv[1:]
    top = 25
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i:i + 2]
    markdown = "--markdown" in args
    args = [a for a in args if a != "--markdown"]
    path = Path(args[0]) if args else ROOT / "target" / "wasm-size" / "web.wasm"
    if not path.exists():
        sys.exit(f"{path} not found: run scripts/build-npm.sh first")
    buf = path.read_bytes()
    sections, imported, bodies, names = parse(buf)
    if not names:
        sys.exit(f"{path} has no name section: use the copy scripts/build-npm.sh keeps")
    shipped = ROOT / "pkg" / "web" / "tidekv_bg.wasm"
    total = len(buf) - sum(e - s for sid, label, s, e in sections if label.startswith("custom \"name"))
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {len(buf)} B "
          f"({total} B without its name section, gzip -9 of the whole shipped file: "
          + (f"{len(gzip.compress(shipped.read_bytes(), 9))} B, {shipped.stat().st_size} B raw)"
             if shipped.exists() else "no pkg/ built)"))
    print()
    rows = [[label, e - s, f"{100 * (e - s) / len(buf):.1f}%"] for sid, label, s, e in sections]
    print(table(["section", "bytes", "share"], rows, markdown))
    print()
    code = sum(len(b) for _, b in bodies)
    by_crate, by_module = defaultdict(list), defaultdict(list)
    for index, body in bodies:
        crate, module = crate_of(names.get(index, "(unnamed)"))
        by_crate[crate].append(body)
        by_module[module].append(body)

    def grouped(groups, limit):
        ranked = sorted(groups.items(), key=lambda kv: -sum(map(len, kv[1])))[:limit]
        return [[g, len(bs), sum(map(len, bs)), f"{100 * sum(map(len, bs)) / code:.1f}%",
                 len(gzip.compress(b"".join(bs), 9))] for g, bs in ranked]

    print(f"code section: {len(bodies)} functions, {code} B; by crate")
    print(table(["crate", "functions", "bytes", "share", "gzip"], grouped(by_crate, top), markdown))
    print()
    print("by module (first three path segments)")
    print(table(["module", "functions", "bytes", "share", "gzip"], grouped(by_module, top), markdown))
    print()
    print(f"the {top} largest functions")
    largest = sorted(bodies, key=lambda ib: -len(ib[1]))[:top]
    rows = []
    for index, body in largest:
        name = names.get(index, f"func {index}")
        name = re.sub(r"::h[0-9a-f]{16}$", "", name)
        rows.append([name if len(name) <= 110 else name[:107] + "...", len(body),
                     f"{100 * len(body) / code:.1f}%"])
    print(table(["function", "bytes", "share"], rows, markdown))


if __name__ == "__main__":
    main()
