// A real app (src/) built with Vite and with webpack 5, each with its default configuration,
// using the packed tidekv package, then loaded in headless Chromium (playwright-core driving
// Debian's chromium, as tests/browser does): the page opens a store on IndexedDB, sets, flushes,
// reloads and reads back, and a web worker opens the same database. Vite's dev server (with its
// dependency pre-bundling) serves the same app too.
//
// Needs `npm ci` in this folder (scripts/test.sh does it) and pkg/ (scripts/build-npm.sh).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launch, serveFiles } from '../browser/harness.mjs';
import { repo } from '../node/package.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'out');

let browser;

before(async () => {
  assert.ok(existsSync(join(here, 'node_modules/vite')), 'run `npm ci` in tests/bundlers first (scripts/test.sh does)');
  assert.ok(existsSync(join(repo, 'pkg/package.json')), 'pkg/ is missing: run scripts/build-npm.sh first');
  // The package as a user gets it: packed, installed from the tarball (not saved to package.json).
  const packed = mkdtempSync(join(tmpdir(), 'tidekv-bundlers-'));
  const tarball = execFileSync('npm', ['pack', join(repo, 'pkg'), '--pack-destination', packed, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
  execFileSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error', join(packed, tarball)], { cwd: here, stdio: 'inherit' });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out);
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

/** Runs a bundler's CLI in this folder; its default output folder `dist/` is moved to out/<name>. */
function build(name, cli, args) {
  rmSync(join(here, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [join(here, 'node_modules', cli), ...args], { cwd: here, stdio: ['ignore', 'ignore', 'inherit'] });
  renameSync(join(here, 'dist'), join(out, name));
  return join(out, name);
}

/** Serves the built app in `dir` (its `index.html` at `/`), runs it, and checks what it reported. */
async function checkBuiltApp(dir) {
  const { server, url } = await serveFiles((path) => join(dir, path === '/' ? 'index.html' : path));
  try {
    const { results, errors } = await runApp(url);
    assert.deepEqual(results, EXPECTED);
    assert.deepEqual(errors, []);
  } finally {
    server.close();
  }
}

/** Loads `url` twice (a reload between) and returns what the app reported each time. */
async function runApp(url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.location()?.url?.endsWith('/favicon.ico')) errors.push(m.text());
  });
  const results = [];
  try {
    for (const load of [() => page.goto(url), () => page.reload()]) {
      await load();
      await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30_000 });
      results.push(await page.evaluate(() => window.result));
    }
    results.push(await page.textContent('#out'));
  } finally {
    await context.close();
  }
  return { results, errors };
}

/** The app's report on its first load and after a reload: the store kept its data. */
const EXPECTED = [
  { visits: 1, tagged: ['last'], memory: 'v', worker: { runs: 1, visitsSeen: 1, visitsSent: 1 } },
  { visits: 2, tagged: ['last'], memory: 'v', worker: { runs: 2, visitsSeen: 2, visitsSent: 2 } },
  'visit 2',
];

test('an app built by Vite (default config) stores, flushes and reads back after a reload, in the page and a worker', async () => {
  const dist = build('vite', 'vite/bin/vite.js', ['build', '--logLevel', 'warn']);
  const assets = readdirSync(join(dist, 'assets'));
  assert.equal(assets.filter((f) => f.endsWith('.wasm')).length, 1, `one wasm asset: ${assets}`);
  await checkBuiltApp(dist);
});

test('an app built by webpack 5 (default config, a page loading main.js) does the same', async () => {
  const dist = build('webpack', 'webpack-cli/bin/cli.js', ['--mode', 'production', '--no-stats']);
  copyFileSync(join(here, 'webpack.html'), join(dist, 'index.html'));
  assert.equal(readdirSync(dist).filter((f) => f.endsWith('.wasm')).length, 1);
  await checkBuiltApp(dist);
});

test("Vite's dev server (pre-bundling the package) serves the app and it works", async () => {
  // A free port for Vite's --strictPort.
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = probe.address().port;
  probe.close();
  rmSync(join(here, 'node_modules/.vite'), { recursive: true, force: true });
  // No colours (CI=true would turn them on, and escape codes split the words looked for).
  const env = { ...process.env, NO_COLOR: '1' };
  const vite = spawn(process.execPath, [join(here, 'node_modules/vite/bin/vite.js'), '--host', '127.0.0.1', '--port', String(port), '--strictPort'], { cwd: here, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  // eslint-disable-next-line no-control-regex
  const plain = (d) => String(d).replace(/\x1b\[[0-9;]*m/g, '');
  vite.stdout.on('data', (d) => { log += plain(d); });
  vite.stderr.on('data', (d) => { log += plain(d); });
  try {
    const deadline = Date.now() + 30_000;
    while (!/Local:/.test(log)) {
      assert.ok(Date.now() < deadline && vite.exitCode === null, `vite did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const { results, errors } = await runApp(`http://127.0.0.1:${port}/`);
    assert.deepEqual(results, EXPECTED, log);
    assert.deepEqual(errors, [], log);
    assert.doesNotMatch(log, /error/i);
    assert.ok(existsSync(join(here, 'node_modules/.vite/deps/tidekv.js')), 'Vite pre-bundled tidekv');
  } finally {
    vite.kill();
    await once(vite, 'exit').catch(() => {});
  }
});
