// End-to-end test of the demo page in headless Chromium, driven by Playwright: set a key with a
// 2 s TTL and watch it vanish, reload and find a persistent key, run the benchmark panel, and
// check the console stayed clean. Saves a screenshot to target/demo.png (and to docs/demo.png
// when TIDEKV_UPDATE_SCREENSHOT=1).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, copyFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from '../serve.mjs';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const problems = [];
let server;
let browser;
let page;

before(async () => {
  server = await startServer(0);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  const context = await browser.newContext({ viewport: { width: 1180, height: 900 } });
  page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function setKey({ key, value, kind = 'text', ttl = '', tags = '' }) {
  await page.fill('#key', key);
  await page.fill('#value', value);
  await page.selectOption('#kind', kind);
  await page.fill('#ttl', ttl);
  await page.fill('#tags', tags);
  await page.click('#set-button');
}

const row = (key) => page.locator(`#keys-body tr[data-key="${key}"]`);

test('a key with a 2 s TTL is listed, then vanishes when the store says it expired', async () => {
  await setKey({ key: 'session:1', value: 'hello', ttl: '2', tags: 'web' });
  await row('session:1').waitFor({ state: 'visible' });
  assert.equal(await row('session:1').locator('td.value').textContent(), 'hello');
  assert.match(await row('session:1').locator('td.ttl').textContent(), /^[12]\.\d s$/);
  const expiredBefore = Number(await page.textContent('#st-expired'));
  await row('session:1').waitFor({ state: 'detached', timeout: 8000 });
  await page.waitForFunction((n) => Number(document.querySelector('#st-expired').textContent) > n, expiredBefore);
});

test('filters by prefix and by tags', async () => {
  await setKey({ key: 'user:ada', value: '{"name":"Ada"}', kind: 'json', tags: 'users, vip' });
  await setKey({ key: 'user:bob', value: '{"name":"Bob"}', kind: 'json', tags: 'users' });
  await setKey({ key: 'post:1', value: 'first post', tags: 'posts' });
  await page.fill('#filter-prefix', 'user:');
  assert.deepEqual(await page.locator('#keys-body tr').evaluateAll((trs) => trs.map((t) => t.dataset.key)), ['user:ada', 'user:bob']);
  await page.fill('#filter-tags', 'users, vip');
  assert.deepEqual(await page.locator('#keys-body tr').evaluateAll((trs) => trs.map((t) => t.dataset.key)), ['user:ada']);
  await page.fill('#filter-prefix', '');
  await page.fill('#filter-tags', '');
  assert.equal(await page.locator('#keys-body tr').count(), 3);
});

test('bad input shows a clear message and stores nothing', async () => {
  await setKey({ key: 'broken', value: '{nope', kind: 'json' });
  assert.match(await page.textContent('#form-error'), /not valid JSON/);
  await setKey({ key: 'neg', value: 'x', ttl: '-1' });
  assert.match(await page.textContent('#form-error'), /ttl/i);
  assert.equal(await row('broken').count(), 0);
  assert.equal(await row('neg').count(), 0);
});

test('a persistent key is there after a reload', async () => {
  await page.click('#flush-button');
  await page.waitForFunction(() => /^0 B of/.test(document.querySelector('#st-buffer-text').textContent));
  assert.ok(Number(await page.textContent('#st-flushes')) > 0);
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
  await row('user:ada').waitFor({ state: 'visible' });
  assert.equal(await row('user:ada').locator('td.value').textContent(), '{"name":"Ada"}');
  assert.equal(await row('session:1').count(), 0, 'the expired key did not come back');
  assert.match(await page.textContent('#status'), /3 key\(s\) loaded/);
  assert.match(await page.textContent('#st-last-flush'), /before this page opened: the 3 key\(s\) it loaded are on disk/);
});

test('"Delete all" asks first, then deletes and says so', async () => {
  await setKey({ key: 'doomed:1', value: 'x' });
  const count = await page.locator('#keys-body tr').count();
  page.once('dialog', (d) => d.dismiss());
  await page.click('#clear-button');
  assert.equal(await page.textContent('#status'), 'Nothing deleted.');
  assert.equal(await page.locator('#keys-body tr').count(), count);
  page.once('dialog', (d) => {
    assert.match(d.message(), new RegExp(`Delete all ${count} key`));
    d.accept();
  });
  await page.click('#clear-button');
  assert.equal(await page.textContent('#status'), `Deleted ${count} key(s); the next flush removes them from IndexedDB.`);
  assert.equal(await page.locator('#keys-body tr').count(), 0);
  await page.click('#clear-button');
  assert.equal(await page.textContent('#status'), 'Nothing to delete: the store is empty.');
  // Put back what the next tests expect.
  await setKey({ key: 'user:ada', value: '{"name":"Ada"}', kind: 'json', tags: 'users, vip' });
});

test('a key set in a second tab appears in the first', async () => {
  const second = await page.context().newPage();
  second.on('pageerror', (e) => problems.push(`page error (second tab): ${e.message}`));
  await second.goto(page.url());
  await second.waitForSelector('body[data-ready="true"]', { timeout: 15000 });
  await second.fill('#key', 'from:second-tab');
  await second.fill('#value', 'hello');
  await second.selectOption('#kind', 'text');
  await second.fill('#ttl', '');
  await second.fill('#tags', '');
  await second.click('#set-button');
  await second.click('#flush-button');
  await row('from:second-tab').waitFor({ state: 'visible', timeout: 2000 });
  assert.equal(await row('from:second-tab').locator('td.value').textContent(), 'hello');
  assert.match(await page.textContent('#remote-note'), /From another tab: set of "from:second-tab"/);
  await second.close();
});

test('the benchmark panel runs and draws a bar per library and operation', async () => {
  await page.fill('#bench-n', '50');
  await page.click('#bench-run');
  await page.waitForFunction(() => /^Done/.test(document.querySelector('#bench-status').textContent), null, { timeout: 60000 });
  assert.equal(await page.locator('#bench-chart svg rect').count(), 12);
  const labels = await page.locator('#bench-chart svg text').allTextContents();
  assert.ok(labels.some((t) => /\/s$/.test(t)), `figures beside the bars: ${labels.join(' | ')}`);
  mkdirSync(`${repo}target`, { recursive: true });
  await page.screenshot({ path: `${repo}target/demo.png`, fullPage: true });
  if (process.env.TIDEKV_UPDATE_SCREENSHOT === '1') copyFileSync(`${repo}target/demo.png`, `${repo}docs/demo.png`);
});

test('the page logged no console errors or warnings', () => {
  assert.deepEqual(problems, []);
});
