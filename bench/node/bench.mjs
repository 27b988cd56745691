// tidekv's Node.js build against what a Node user would pick instead — lru-cache (with ttl),
// keyv (its default in-memory store) and node-cache — in one process, with tinybench.
// Usage: node bench/node/bench.mjs [--quick] [--out results.json]
// Writes rows {group: 'node', metric, peer, value (ns per operation), unit} for the report.
// A benchmark, not a test: nothing here checks a time.
import { writeFileSync } from 'node:fs';
import { Bench } from 'tinybench';
import { LRUCache } from 'lru-cache';
import Keyv from 'keyv';
import NodeCache from 'node-cache';
import { Store } from '../../pkg/node.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;

const N = 10_000; // keys
const BATCH = 1_000; // operations per timed task call, so the harness's own cost is spread thin
const TTL_MS = 3_600_000;
const keys = Array.from({ length: N }, (_, i) => `key:${String(i).padStart(8, '0')}`);
const misses = keys.map((k) => `none${k.slice(3)}`);
const value = 'v'.repeat(100);
let x = 0x9e3779b9;
const order = Uint32Array.from({ length: 1 << 16 }, () => {
  x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  return x % N;
});
let cursor = 0;
const next = () => order[(cursor = (cursor + 1) & 0xffff)];

// Each peer: sync or async get/set/has over the same keys, every entry with a 1 h TTL.
const tide = Store.memory();
const lru = new LRUCache({ max: N * 2, ttl: TTL_MS });
const keyv = new Keyv();
const nodeCache = new NodeCache({ stdTTL: TTL_MS / 1000 });
const peers = [
  {
    name: 'tidekv',
    set: (k) => tide.set(k, value, { ttl: TTL_MS }),
    get: (k) => tide.get(k),
    has: (k) => tide.has(k),
  },
  {
    name: 'lru-cache (ttl)',
    set: (k) => lru.set(k, value),
    get: (k) => lru.get(k),
    has: (k) => lru.has(k),
  },
  {
    name: 'keyv (memory)',
    async: true,
    set: (k) => keyv.set(k, value, TTL_MS),
    get: (k) => keyv.get(k),
    has: (k) => keyv.has(k),
  },
  {
    name: 'node-cache',
    set: (k) => nodeCache.set(k, value),
    get: (k) => nodeCache.get(k),
    has: (k) => nodeCache.has(k),
  },
];

for (const p of peers) {
  for (const k of keys) await p.set(k);
  if ((await p.get(keys[7])) !== value) throw new Error(`${p.name}: preload failed`);
}

const bench = new Bench(quick ? { time: 50, warmupTime: 10 } : { time: 1_000, warmupTime: 200 });
const ops = {
  get: (p) => (k) => p.get(keys[k]),
  get_miss: (p) => (k) => p.get(misses[k]),
  set: (p) => (k) => p.set(keys[k]),
  has: (p) => (k) => p.has(keys[k]),
};
for (const [op, make] of Object.entries(ops)) {
  for (const p of peers) {
    const f = make(p);
    bench.add(`${op}|${p.name}`, p.async
      ? async () => { for (let i = 0; i < BATCH; i++) await f(next()); }
      : () => { let sink; for (let i = 0; i < BATCH; i++) sink = f(next()); return sink; });
  }
}
await bench.run();

const rows = [];
for (const task of bench.tasks) {
  const [op, peer] = task.name.split('|');
  const r = task.result;
  if (!r || !r.latency) throw new Error(`${task.name}: ${r?.state} ${r?.error ?? ''}`);
  const ns = (r.latency.mean * 1e6) / BATCH;
  rows.push({ group: 'node', metric: op, peer, value: ns, unit: 'ns' });
  console.log(`${op.padEnd(9)} ${peer.padEnd(18)} ${ns.toFixed(1).padStart(9)} ns/op`);
}
if (out) writeFileSync(out, JSON.stringify(rows, null, 1));
tide.free();
