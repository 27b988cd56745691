// Where the browser's time goes in tidekv's two IndexedDB-bound operations of the browser bench:
// a flush of N records and an open with M records (run.mjs's sizes and options). Each runs once
// in headless Chromium under the DevTools CPU profiler (playwright-core's CDP session); the
// script prints the wall time and the sampled self time per function, largest first:
// `put`/`getAll` are IndexedDB's own calls, `(idle)` is the main thread waiting for the IndexedDB
// backend, `(program)` is native work outside JS (value deserialisation among it), `wasm-function[i]`
// is tidekv's wasm (named from target/wasm-size/web.wasm, the same build with its names kept,
// when scripts/build-npm.sh wrote it) and `*.js` functions are the glue.
// Usage: node bench/browser/profile.mjs [--quick] [--top N] [--out FILE]
//   --out FILE  also write {tool, note, profiles: [{name, samples, command, detail, rows: [{symbol,
//               where, self_pct}], other_pct}]} (browser_flush, browser_open) for
//               scripts/bench_report.py, as bench/node/profile.mjs does, and each raw profile next
//               to it (<out>-<name>.cpuprofile, which Chrome DevTools opens)
// A profile, not a test: nothing here checks a time.
import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { extname, join, normalize, dirname, isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './launch.mjs';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const top = args.includes('--top') ? Number(args[args.indexOf('--top') + 1]) : 15;
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const INTERVAL_US = 200; // sampling interval
const MIN_PCT = 1.5; // the JSON's rows: the top functions with at least this share of self time
// This command as typed from the repository root (paths under it shown relative).
const command = ['node', 'bench/browser/profile.mjs',
  ...args.map((a) => (isAbsolute(a) && !relative(process.cwd(), a).startsWith('..') ? relative(process.cwd(), a) : a))]
  .join(' ');
const { n, openN } = quick ? { n: 500, openN: 5_000 } : { n: 10_000, openN: 100_000 };

/** Function names by index from a wasm's name section (empty if there is no such file). */
async function wasmNames(file) {
  const names = new Map();
  let buf;
  try { buf = await readFile(file); } catch { return names; }
  let pos = 8;
  const leb = () => {
    let result = 0, shift = 0, b;
    do { b = buf[pos++]; result += (b & 0x7f) * 2 ** shift; shift += 7; } while (b & 0x80);
    return result;
  };
  const text = () => { const len = leb(); const s = buf.toString('utf8', pos, pos + len); pos += len; return s; };
  while (pos < buf.length) {
    const id = buf[pos++];
    const size = leb();
    const end = pos + size;
    if (id === 0 && text() === 'name') {
      while (pos < end) {
        const sub = buf[pos++];
        const subEnd = leb() + pos;
        if (sub === 1) for (let count = leb(); count > 0; count--) { const index = leb(); names.set(index, text()); }
        pos = subEnd;
      }
    }
    pos = end;
  }
  return names;
}
const names = await wasmNames(join(repo, 'target', 'wasm-size', 'web.wasm'));

// A Rust symbol made readable (as bench/node/profile.mjs does): no hash, no crate disambiguators,
// no generic arguments (but `<A as Trait>::f` keeps its last path segments).
function shortSymbol(sym) {
  sym = sym.replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{16}\]/g, '');
  let short = '';
  for (let i = 0; i < sym.length; i++) {
    if (sym[i] !== '<') { short += sym[i]; continue; }
    let depth = 1;
    let j = i + 1;
    for (; j < sym.length && depth; j++) depth += sym[j] === '<' ? 1 : sym[j] === '>' ? -1 : 0;
    const inner = sym.slice(i + 1, j - 1);
    if (short === '' || short.endsWith('::') || short.endsWith(' ')) {
      short += `<${inner.split(' as ').map((p) => shortSymbol(p).split('::').pop()).join(' as ')}>`;
    }
    i = j - 1;
  }
  return short.length <= 90 ? short : `${short.slice(0, 89)}…`;
}

const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (path === '/') return res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>profile</title>');
  try {
    if (!path.startsWith('/pkg/')) throw new Error('not found');
    const file = join(repo, 'pkg', path.slice('/pkg/'.length));
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const results = [];
let chromiumVersion;
const browser = await launchChromium();
try {
  const page = await (await browser.newContext()).newPage();
  page.setDefaultTimeout(0);
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: INTERVAL_US });

  /** Runs `setup` unprofiled, then `body` (which returns its wall time) under the profiler. */
  async function profiled(name, label, setup, body, arg) {
    await page.evaluate(setup, arg);
    await cdp.send('Profiler.start');
    const wall = await page.evaluate(body, arg);
    const { profile } = await cdp.send('Profiler.stop');
    const perNode = new Map();
    profile.samples.forEach((id, i) => perNode.set(id, (perNode.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
    const self = new Map();
    const frames = new Map(); // text name -> [symbol, where] for the JSON
    let sampled = 0;
    for (const node of profile.nodes) {
      const ms = (perNode.get(node.id) ?? 0) / 1000;
      const f = node.callFrame;
      const wasm = /^wasm-function\[(\d+)\]$/.exec(f.functionName);
      const wasmName = wasm && names.get(Number(wasm[1]));
      const fn = wasmName
        ? `${wasmName.replace(/::h[0-9a-f]{16}$/, '').slice(0, 100)} (wasm)`
        : f.functionName || '(anonymous)';
      const file = f.url ? f.url.split('?')[0].split('/').pop() : '';
      const key = `${fn}${f.url && !wasm ? ` ${file}` : ''}`;
      if (!frames.has(key)) {
        frames.set(key, wasm || f.url.startsWith('wasm://')
          ? [wasmName ? shortSymbol(wasmName) : f.functionName, 'wasm']
          : f.url ? [f.functionName || '(anonymous)', file]
            : [f.functionName || '(anonymous)', f.functionName.startsWith('(') ? '' : '(browser built-in)']);
      }
      self.set(key, (self.get(key) ?? 0) + ms);
      sampled += ms;
    }
    const ranked = [...self].sort((a, b) => b[1] - a[1]);
    console.log(`\n${label}: ${wall.toFixed(0)} ms wall, ${sampled.toFixed(0)} ms sampled`);
    for (const [key, ms] of ranked.slice(0, top)) {
      console.log(`${ms.toFixed(1).padStart(9)} ms ${(100 * ms / sampled).toFixed(1).padStart(5)}%  ${key}`);
    }
    // The JSON's rows: one per function name + file (several anonymous frames of a file add up).
    const bySymbol = new Map();
    for (const [key, ms] of ranked) {
      const [symbol, where] = frames.get(key);
      const id = `${symbol}\u0000${where}`;
      bySymbol.set(id, (bySymbol.get(id) ?? 0) + ms);
    }
    const rows = [...bySymbol]
      .sort((a, b) => b[1] - a[1])
      .map(([id, ms]) => {
        const [symbol, where] = id.split('\u0000');
        return { symbol, where, self_pct: sampled ? Math.round((10_000 * ms) / sampled) / 100 : 0 };
      })
      .filter((r) => r.self_pct >= MIN_PCT)
      .slice(0, top);
    const shown = rows.reduce((s, r) => s + r.self_pct, 0);
    results.push({
      name,
      tool: 'Chromium DevTools',
      runs: 1,
      command,
      detail: `The ${label} took ${wall.toFixed(0)} ms (performance.now() in the page); ` +
        `${sampled.toFixed(0)} ms sampled between Profiler.start and Profiler.stop`,
      wall_ms: wall,
      sampled_ms: sampled,
      samples: profile.samples.length,
      rows,
      other_pct: Math.round(100 * (100 - shown)) / 100,
    });
    if (out) await writeFile(out.replace(/\.json$/, '') + `-${name}.cpuprofile`, JSON.stringify(profile));
  }

  const setupStore = async ({ count }) => {
    const { Store } = await import('/pkg/web.js');
    await new Promise((resolve) => {
      const req = indexedDB.deleteDatabase('profile-tidekv');
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    });
    window.store = await Store.open({ name: 'profile-tidekv', bufferSize: 64 * 1024 * 1024, flushInterval: 600_000 });
    for (let i = 0; i < count; i++) window.store.set(`key:${String(i).padStart(8, '0')}`, 'v'.repeat(100));
  };
  await profiled('browser_flush', `flush of ${n.toLocaleString('en')} records`, setupStore, async () => {
    const t = performance.now();
    await window.store.flush();
    const wall = performance.now() - t;
    await window.store.close();
    return wall;
  }, { count: n });
  await profiled('browser_open', `open with ${openN.toLocaleString('en')} records`, async (arg) => {
    await (async ({ count }) => {
      const { Store } = await import('/pkg/web.js');
      await new Promise((resolve) => {
        const req = indexedDB.deleteDatabase('profile-tidekv');
        req.onsuccess = req.onerror = req.onblocked = () => resolve();
      });
      const s = await Store.open({ name: 'profile-tidekv', bufferSize: 64 * 1024 * 1024, flushInterval: 600_000 });
      for (let i = 0; i < count; i++) s.set(`key:${String(i).padStart(8, '0')}`, 'v'.repeat(100));
      await s.close();
    })(arg);
  }, async () => {
    const { Store } = await import('/pkg/web.js');
    const t = performance.now();
    const s = await Store.open({ name: 'profile-tidekv', bufferSize: 64 * 1024 * 1024, flushInterval: 600_000 });
    const wall = performance.now() - t;
    await s.close();
    return wall;
  }, { count: openN });
} finally {
  chromiumVersion = browser.version();
  await browser.close();
  server.close();
}

if (out) {
  await writeFile(out, JSON.stringify({
    tool: 'Chromium DevTools',
    available: true,
    chromium_version: chromiumVersion,
    sampling_interval_us: INTERVAL_US,
    quick,
    note: `one sample every ${INTERVAL_US} µs (playwright-core's CDP session); self time per function name + file ` +
      `(wasm: ${names.size ? 'named from target/wasm-size/web.wasm, the same build with its names kept' : 'functions by index: no target/wasm-size/web.wasm'}); ` +
      `a flush of ${n.toLocaleString('en')} and an open with ${openN.toLocaleString('en')} records of ` +
      '100-character string values, each run once after an unprofiled setup',
    profiles: results,
  }, null, 1));
}
