// Serves bench/browser/page.html, the built package (../../pkg) and the peers from
// bench/node_modules on 127.0.0.1, drives Debian's chromium headless through playwright-core
// (no browser download), and writes the page's rows for the report.
// Usage: node bench/browser/run.mjs [--quick] [--out results.json]
// A benchmark, not a test: nothing here checks a time.
import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './launch.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const config = quick ? { n: 500, openN: 5_000, firstGetRuns: 1 } : { n: 10_000, openN: 100_000, firstGetRuns: 5 };

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };
const roots = { '/pkg/': join(repo, 'pkg'), '/nm/': join(here, '..', 'node_modules') };

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (path === '/favicon.ico') return res.writeHead(204).end();
  if (path === '/blank') return res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>blank</title>');
  let file = path === '/' ? join(here, 'page.html') : null;
  for (const [prefix, root] of Object.entries(roots)) {
    if (path.startsWith(prefix)) file = join(root, path.slice(prefix.length));
  }
  try {
    if (!file) throw new Error('not found');
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

/**
 * What coherence across tabs costs: the flush of n records in one tab while 0, 1 or 3 other
 * tabs have the same database open (each reads the flushed keys back when told), and the time
 * until every other tab holds all of them.
 */
async function tabsBench(page, n) {
  const rows = [];
  const name = 'bench-tidekv-tabs';
  // 0: one tab, with BroadcastChannel hidden from the store (as before tabs shared changes):
  // the A/B of what coherence costs a tab that is alone.
  for (const open of [0, 1, 2, 4]) {
    await page.evaluate((name) => new Promise((resolve) => {
      const req = indexedDB.deleteDatabase(name);
      req.onsuccess = req.onerror = req.onblocked = () => resolve();
    }), name);
    const others = [];
    for (let i = 1; i < open; i++) {
      const other = await page.context().newPage();
      await other.goto(url);
      await other.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 });
      await other.evaluate(async (name) => { window.s = await (await import('/pkg/web.js')).Store.open({ name }); }, name);
      others.push(other);
    }
    const { flushMs, started } = await page.evaluate(async ({ name, n, alone }) => {
      const { Store } = await import('/pkg/web.js');
      const saved = globalThis.BroadcastChannel;
      if (alone) globalThis.BroadcastChannel = undefined;
      const s = await Store.open({ name, bufferSize: 64 * 1024 * 1024, flushInterval: 600_000 });
      globalThis.BroadcastChannel = saved;
      for (let i = 0; i < n; i++) s.set(`key:${String(i).padStart(8, '0')}`, 'v'.repeat(100));
      const started = Date.now();
      const t = performance.now();
      await s.flush();
      const flushMs = performance.now() - t;
      await s.close();
      s.free();
      return { flushMs, started };
    }, { name, n, alone: open === 0 });
    const peer = open === 0 ? 'tidekv, no BroadcastChannel' : open === 1 ? 'tidekv, 1 tab open' : `tidekv, ${open} tabs open`;
    rows.push({ group: 'browser', metric: 'tabs_flush_ms', peer, value: flushMs, unit: 'ms' });
    let seenAt = started;
    for (const other of others) {
      await other.waitForFunction((n) => window.s.keys().length === n, n, { timeout: 0, polling: 10 });
      seenAt = Math.max(seenAt, await other.evaluate(() => Date.now()));
      await other.evaluate(() => window.s.close());
      await other.close();
    }
    if (others.length) rows.push({ group: 'browser', metric: 'tabs_visible_ms', peer, value: seenAt - started, unit: 'ms' });
  }
  return rows;
}
const url = `http://127.0.0.1:${server.address().port}/`;

/**
 * Time from `import` to the first `get` on an empty store, in a fresh browser context each time
 * (its own HTTP cache and IndexedDB, so the package's JS and wasm are fetched and compiled
 * anew): tidekv's `import` + `Store.open` (which loads the wasm and opens the IndexedDB
 * database) + `get`, against idb-keyval's `import` + `get` (which opens its database). The
 * median of `runs`.
 */
async function firstGetBench(runs) {
  const times = { tidekv: [], 'idb-keyval get': [] };
  for (let i = 0; i < runs; i++) {
    for (const peer of Object.keys(times)) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${url}blank`);
      times[peer].push(await page.evaluate(async (peer) => {
        const t = performance.now();
        if (peer === 'tidekv') {
          const { Store } = await import('/pkg/web.js');
          const s = await Store.open({ name: 'bench-first-get' });
          if (s.get('missing') !== undefined) throw new Error('not empty');
        } else {
          const idb = await import('/nm/idb-keyval/dist/index.js');
          if ((await idb.get('missing')) !== undefined) throw new Error('not empty');
        }
        return performance.now() - t;
      }, peer));
      await context.close();
    }
  }
  const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return Object.entries(times).map(([peer, xs]) => (
    { group: 'browser', metric: 'first_get_ms', peer, value: median(xs), unit: 'ms' }));
}

const browser = await launchChromium();
try {
  // One context: the multi-tab rows open more pages of it (one origin, one IndexedDB).
  const page = await (await browser.newContext()).newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.setDefaultTimeout(0);
  await page.goto(url);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 });
  const { rows } = await page.evaluate((c) => window.runBench(c), config);
  rows.push(...(await tabsBench(page, config.n)));
  rows.push(...(await firstGetBench(config.firstGetRuns)));
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  for (const r of rows) console.log(`${r.metric.padEnd(14)} ${r.peer.padEnd(24)} ${r.value.toFixed(1).padStart(10)} ms`);
  if (out) await writeFile(out, JSON.stringify(rows, null, 1));
} finally {
  await browser.close();
  server.close();
}
