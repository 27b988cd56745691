// The benchmark panel: tidekv vs idb-keyval vs localForage in this page, in one run.
// Each library gets fresh keys; figures are operations per second (records per second for a
// flush / setMany, stores per second for open).
import { Store } from 'tidekv';
import { createStore, get as idbGet, set as idbSet, setMany, clear as idbClear } from 'idb-keyval';

const value = (i) => `value-${i}-${'x'.repeat(88)}`;
const seconds = async (fn) => {
  const t0 = performance.now();
  await fn();
  return Math.max(performance.now() - t0, 0.01) / 1000;
};

async function benchTidekv(n, progress) {
  const name = 'tidekv-demo-bench';
  const options = { name, bufferSize: 256 * 1024 * 1024, flushInterval: 3600000 };
  let store = await Store.open(options);
  for (const k of store.keys()) store.delete(k);
  await store.flush();
  progress('tidekv: set');
  const set = await seconds(() => { for (let i = 0; i < n; i++) store.set(`k${i}`, value(i)); });
  progress('tidekv: get');
  const get = await seconds(() => { for (let i = 0; i < n; i++) store.get(`k${i}`); });
  progress('tidekv: flush');
  const flush = await seconds(() => store.flush());
  await store.close();
  progress('tidekv: open');
  const open = await seconds(async () => {
    store = await Store.open(options);
    store.get('k0');
  });
  for (const k of store.keys()) store.delete(k);
  await store.close();
  return { set: n / set, get: n / get, flush: n / flush, open: 1 / open };
}

async function benchIdbKeyval(n, progress) {
  const kv = createStore('idb-keyval-demo-bench', 'kv');
  await idbClear(kv);
  progress('idb-keyval: set');
  const set = await seconds(async () => { for (let i = 0; i < n; i++) await idbSet(`k${i}`, value(i), kv); });
  progress('idb-keyval: get');
  const get = await seconds(async () => { for (let i = 0; i < n; i++) await idbGet(`k${i}`, kv); });
  progress('idb-keyval: setMany');
  const entries = Array.from({ length: n }, (_, i) => [`m${i}`, value(i)]);
  const many = await seconds(() => setMany(entries, kv));
  progress('idb-keyval: open');
  const open = await seconds(() => idbGet('k0', createStore('idb-keyval-demo-bench', 'kv')));
  await idbClear(kv);
  return { set: n / set, get: n / get, flush: n / many, open: 1 / open };
}

async function benchLocalForage(n, progress) {
  const lf = globalThis.localforage.createInstance({ name: 'localforage-demo-bench' });
  await lf.clear();
  progress('localForage: set');
  const set = await seconds(async () => { for (let i = 0; i < n; i++) await lf.setItem(`k${i}`, value(i)); });
  progress('localForage: get');
  const get = await seconds(async () => { for (let i = 0; i < n; i++) await lf.getItem(`k${i}`); });
  progress('localForage: open');
  const open = await seconds(async () => {
    const again = globalThis.localforage.createInstance({ name: 'localforage-demo-bench' });
    await again.ready();
    await again.getItem('k0');
  });
  await lf.clear();
  return { set: n / set, get: n / get, flush: null, open: 1 / open };
}

/** Runs every library in turn; resolves to { library: { set, get, flush, open } } in ops/s. */
export async function runBench(n, progress = () => {}) {
  return {
    tidekv: await benchTidekv(n, progress),
    'idb-keyval': await benchIdbKeyval(n, progress),
    localForage: await benchLocalForage(n, progress),
  };
}

const COLORS = { tidekv: '#0e7c86', 'idb-keyval': '#f0a202', localForage: '#7a5cc4' };
const GROUPS = [['set', 'set'], ['get', 'get'], ['flush', 'flush / setMany'], ['open', 'open']];

function fmt(x) {
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M/s`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k/s`;
  return `${x.toFixed(x < 10 ? 1 : 0)}/s`;
}

/** Draws grouped horizontal bars (log scale) with the figure beside each bar. */
export function drawChart(container, results) {
  const libs = Object.keys(results);
  const all = libs.flatMap((l) => GROUPS.map(([g]) => results[l][g])).filter((x) => x > 0);
  const maxLog = Math.ceil(Math.log10(Math.max(...all, 10)));
  const bar = 16, gap = 4, groupGap = 18, left = 120, right = 90, width = 720;
  const plot = width - left - right;
  const height = GROUPS.length * (18 + libs.length * (bar + gap) + groupGap) + 24;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Operations per second by library');
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  let y = 4;
  for (const [group, label] of GROUPS) {
    add('text', { x: 0, y: y + 12, 'font-weight': 600 }, label);
    y += 18;
    for (const lib of libs) {
      const v = results[lib][group];
      const w = v > 0 ? Math.max(2, (Math.log10(Math.max(v, 1)) / maxLog) * plot) : 0;
      add('rect', { x: left, y, width: w, height: bar, rx: 3, fill: COLORS[lib] ?? '#888', 'data-lib': lib, 'data-op': group });
      add('text', { x: left - 6, y: y + bar - 4, 'text-anchor': 'end', class: 'axis' }, lib);
      add('text', { x: left + w + 6, y: y + bar - 4 }, v == null ? 'n/a' : fmt(v));
      y += bar + gap;
    }
    y += groupGap;
  }
  add('text', { x: left, y: height - 4, class: 'axis' }, `log scale, 1 to 10^${maxLog} ops/s`);
  container.replaceChildren(svg);
}
