// Serves the installed package and the test page on 127.0.0.1, and drives Debian's chromium
// through playwright-core (no browser download).
import { createServer } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { appDir, repo } from '../node/package.mjs';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

/**
 * Serves files on 127.0.0.1 (the wasm as application/wasm, as a web server should): `fileFor`
 * maps a request path ('/' included) to a file. Returns the server and its URL.
 */
export async function serveFiles(fileFor) {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = fileFor(path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** The installed package and the test page (`page.html` at `/`). */
export async function startServer() {
  const app = appDir();
  const page = join(repo, 'tests/browser/page.html');
  return serveFiles((path) => (path === '/' || path === '/index.html' ? page : join(app, path)));
}

/**
 * For a test file: before its tests, the page server and one browser context; after them, both
 * closed. `set` receives `{ url, browser, context }` once they exist.
 */
export function useBrowser(set) {
  let env;
  before(async () => {
    const { server, url } = await startServer();
    const browser = await launch();
    env = { server, url, browser, context: await browser.newContext() };
    set(env);
  });
  after(async () => {
    await env?.browser.close();
    env?.server.close();
  });
}

const LAUNCH = {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
};

export async function launch() {
  return chromium.launch(LAUNCH);
}

/**
 * A browser with a profile on disk (a context that is not off the record), for what only such a
 * profile does: storage quota enforcement (DevTools' `Storage.overrideQuotaForOrigin`).
 * Close the returned context to end it.
 */
export async function launchWithProfile() {
  const profile = mkdtempSync(join(tmpdir(), 'tidekv-profile-'));
  return chromium.launchPersistentContext(profile, LAUNCH);
}

/** A page with the package loaded (`window.Store`). */
export async function openPage(context, url) {
  const page = await context.newPage();
  const errors = [];
  const consoleErrors = [];
  page.on('pageerror', (e) => errors.push(e));
  // The console too (the page has no favicon: that 404 is not the store's).
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.location()?.url?.endsWith('/favicon.ico')) consoleErrors.push(m.text());
  });
  await page.goto(url);
  await page.waitForFunction(() => window.tidekvReady === true);
  page.errors = errors;
  page.consoleErrors = consoleErrors;
  return page;
}

export async function reload(page) {
  await page.reload();
  await page.waitForFunction(() => window.tidekvReady === true);
}
