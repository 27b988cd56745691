// CPU profiles of tidekv's Node.js build (the npm package in pkg/, as bench/node/bench.mjs loads
// it): a loop of get hits and a loop of sets over 100,000 keys, each under V8's sampling profiler
// (node:inspector, Profiler.start/stop), with self time summed per function name + file.
// Usage: node bench/node/profile.mjs [--quick] [--out profile.json] [--symbols MAP]
//   --symbols MAP  names for the wasm functions, which the package's wasm does not carry (V8
//                  shows wasm-function[i]): wasm-opt's --symbolmap of the very same build
//                  (scripts/bench.sh makes one and checks it against pkg/node/tidekv_bg.wasm)
// Writes {tool, profiles: [{name, command, samples, rows: [{symbol, where, self_pct}], ...}]} for
// scripts/bench_report.py, and each raw profile next to it (<out>-<name>.cpuprofile, which Chrome
// DevTools opens). A profile, not a test: nothing here checks a time.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { basename, isAbsolute, relative } from 'node:path';
import { Store } from '../../pkg/node.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const symbolsFile = args.includes('--symbols') ? args[args.indexOf('--symbols') + 1] : null;
// wasm function index -> name, from lines `index:name`.
const wasmNames = new Map(symbolsFile
  ? readFileSync(symbolsFile, 'utf8').split('\n').filter(Boolean).map((l) => {
    const i = l.indexOf(':');
    return [Number(l.slice(0, i)), l.slice(i + 1)];
  })
  : []);

const N = 100_000; // keys
const SECONDS = quick ? 0.3 : 2; // per loop
const INTERVAL_US = 100; // sampling interval (V8's default is 1,000 µs)
const TTL_MS = 3_600_000; // as in bench/node/bench.mjs: every entry carries a 1 h TTL
const keys = Array.from({ length: N }, (_, i) => `key:${String(i).padStart(8, '0')}`);
const head = 'v'.repeat(92);
// A value the caller builds for this call, as an application's `set(key, render(x))` would:
// a new 100-character string each time, not one shared constant.
const valueFor = (i) => head + String(i).padStart(8, '0');
// Random access, as in bench/node/bench.mjs: a fixed xorshift sequence of key indexes, long
// enough to reach nearly every key.
const ORDER = 1 << 18;
let x = 0x9e3779b9;
const order = Uint32Array.from({ length: ORDER }, () => {
  x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  return x % N;
});
let cursor = 0;
const next = () => order[(cursor = (cursor + 1) & (ORDER - 1))];

const store = Store.memory();
for (let i = 0; i < N; i++) store.set(keys[i], valueFor(i), { ttl: TTL_MS });
if (store.get(keys[7]) !== valueFor(7)) throw new Error('preload failed');

const loops = {
  // Random get hits.
  node_get: (n) => {
    let sink;
    for (let i = 0; i < n; i++) sink = store.get(keys[next()]);
    return sink;
  },
  // Random sets of existing keys, a fresh value per call.
  node_set: (n) => {
    for (let i = 0; i < n; i++) {
      const k = next();
      store.set(keys[k], valueFor(k + cursor), { ttl: TTL_MS });
    }
  },
};

// Runs `loop` in chunks until `seconds` have passed; returns the operations done.
function runFor(loop, seconds) {
  const chunk = 10_000;
  const end = performance.now() + seconds * 1000;
  let ops = 0;
  while (performance.now() < end) {
    loop(chunk);
    ops += chunk;
  }
  return ops;
}

// A Rust symbol made readable: no hash, no crate disambiguators, no generic arguments (but
// `<A as Trait>::f` keeps its last path segments).
function shortSymbol(sym) {
  sym = sym.replace(/::h[0-9a-f]{16}$/, '').replace(/\[[0-9a-f]{16}\]/g, '');
  let out = '';
  for (let i = 0; i < sym.length; i++) {
    if (sym[i] !== '<') { out += sym[i]; continue; }
    let depth = 1;
    let j = i + 1;
    for (; j < sym.length && depth; j++) depth += sym[j] === '<' ? 1 : sym[j] === '>' ? -1 : 0;
    const inner = sym.slice(i + 1, j - 1);
    if (out === '' || out.endsWith('::') || out.endsWith(' ')) {
      out += `<${inner.split(' as ').map((p) => shortSymbol(p).split('::').pop()).join(' as ')}>`;
    }
    i = j - 1;
  }
  return out.length <= 90 ? out : `${out.slice(0, 89)}…`;
}

// A frame's name and where it lives: a wasm function by its name if --symbols gave one.
function frame({ functionName, url }) {
  const m = /^wasm-function\[(\d+)\]$/.exec(functionName);
  if (url.startsWith('wasm://') || m) {
    const name = m && wasmNames.get(Number(m[1]));
    return [name ? shortSymbol(name) : functionName, 'wasm'];
  }
  if (!url) return [functionName || '(anonymous)', functionName.startsWith('(') ? '' : '(V8 built-in)'];
  // wasm-bindgen's import shims end in a hash: `__wbg_now_463ac581d2fc7ea3`.
  return [functionName.replace(/_[0-9a-f]{16}$/, '') || '(anonymous)', basename(url.split('?')[0])];
}

// Self time per function name + file (V8's sample count × interval, from its time deltas).
function summarise(profile, top = 12, minPct = 1.5) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = Math.max(0, profile.timeDeltas[i] ?? 0);
    const key = frame(byId.get(id).callFrame).join('\u0000');
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  });
  const rows = [...self]
    .sort((a, b) => b[1] - a[1])
    .map(([key, t]) => {
      const [symbol, where] = key.split('\u0000');
      return { symbol, where, self_pct: Math.round((10_000 * t) / total) / 100 };
    })
    .filter((r) => r.self_pct >= minPct)
    .slice(0, top);
  const shown = rows.reduce((s, r) => s + r.self_pct, 0);
  return { samples: profile.samples.length, rows, other_pct: Math.round(100 * (100 - shown)) / 100 };
}

const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: INTERVAL_US });
// This command as typed from the repository root (paths under it shown relative).
const command = ['node', 'bench/node/profile.mjs',
  ...args.map((a) => (isAbsolute(a) && !relative(process.cwd(), a).startsWith('..') ? relative(process.cwd(), a) : a))]
  .join(' ');
const what = { node_get: 'random get hits', node_set: 'random sets of existing keys' };
const profiles = [];
for (const [name, loop] of Object.entries(loops)) {
  runFor(loop, 0.1); // warm-up: let V8 optimise the loop first
  await session.post('Profiler.start');
  const t = performance.now();
  const ops = runFor(loop, SECONDS);
  const seconds = (performance.now() - t) / 1000;
  const { profile } = await session.post('Profiler.stop');
  const summary = summarise(profile);
  profiles.push({
    name,
    tool: 'node:inspector',
    runs: 1,
    command,
    detail: `${ops.toLocaleString('en')} ${what[name]} in ${seconds.toFixed(1)} s between Profiler.start and Profiler.stop`,
    ops,
    seconds,
    ...summary,
  });
  if (out) writeFileSync(out.replace(/\.json$/, '') + `-${name}.cpuprofile`, JSON.stringify(profile));
  console.log(`${name}: ${ops} ops in ${seconds.toFixed(2)} s, ${summary.samples} samples`);
  for (const r of summary.rows) console.log(`  ${r.self_pct.toFixed(2).padStart(6)}%  ${r.symbol}  ${r.where}`);
}
session.disconnect();
store.free();

const result = {
  tool: 'node:inspector',
  available: true,
  node_version: process.version,
  sampling_interval_us: INTERVAL_US,
  note: `V8's sampling profiler, one sample every ${INTERVAL_US} µs; self time per function name + file ` +
    `(wasm: the package's wasm module, ${wasmNames.size ? 'named from wasm-opt\'s symbol map of the same build' : 'functions by index: no symbol map given'}); ${N.toLocaleString('en')} keys of 100-character string values ` +
    'with a 1 h TTL, random access, each set given a string built for that call',
  profiles,
};
if (out) writeFileSync(out, JSON.stringify(result, null, 1));
