// Serves bench/browser/page.html, the built package (../../pkg) and the peers from
// bench/node_modules on 127.0.0.1, drives Debian's chromium headless through playwright-core
// (no browser download), and writes the page's rows for the report.
// Usage: node bench/browser/run.mjs [--quick] [--out results.json]
// A benchmark, not a test: nothing here checks a time.
import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const out = args.includes('--out') ? args[args.indexOf('--out') + 1] : null;
const config = quick ? { n: 500, openN: 5_000 } : { n: 10_000, openN: 100_000 };

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm' };
const roots = { '/pkg/': join(repo, 'pkg'), '/nm/': join(here, '..', 'node_modules') };

const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (path === '/favicon.ico') return res.writeHead(204).end();
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
const url = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.setDefaultTimeout(0);
  await page.goto(url);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 });
  const { rows } = await page.evaluate((c) => window.runBench(c), config);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  for (const r of rows) console.log(`${r.metric.padEnd(14)} ${r.peer.padEnd(24)} ${r.value.toFixed(1).padStart(10)} ms`);
  if (out) await writeFile(out, JSON.stringify(rows, null, 1));
} finally {
  await browser.close();
  server.close();
}
