// Many tabs, one IndexedDB database: several pages of one browser context, each with its own
// store over the same database. A flush in one tab reaches the others (BroadcastChannel, then a
// read back from IndexedDB); no tab's compaction or expiry removes another tab's data.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPage, useBrowser } from './harness.mjs';

let url;
let context;
useBrowser((env) => ({ url, context } = env));

/** Opens `n` tabs, each with `window.s` = a store over database `name` and a change log. */
async function tabs(name, n, options = {}) {
  const pages = [];
  for (let i = 0; i < n; i++) {
    const page = await openPage(context, url);
    await page.evaluate(async ({ name, options }) => {
      window.s = await Store.open({ name, ...options });
      window.changes = [];
      window.s.on('change', (e) => window.changes.push(e));
    }, { name, options });
    pages.push(page);
  }
  return pages;
}

/** Waits (at most 2 s, the acceptance bound) until `fn` in `page` returns something truthy. */
async function until(page, fn, arg) {
  return page.waitForFunction(fn, arg, { timeout: 2_000, polling: 20 });
}

async function closeAll(pages) {
  for (const page of pages) {
    assert.deepEqual(page.errors, [], 'no page errors');
    assert.deepEqual(page.consoleErrors, [], 'no console errors');
    await page.evaluate(() => window.s.close());
    await page.close();
  }
}

test('a flush in one tab is visible in the other, both ways, with remote change events', async () => {
  const [a, b] = await tabs('tabs-visible', 2);
  await a.evaluate(async () => { s.set('from-a', { n: 1 }, { tags: ['t'] }); await s.flush(); });
  await until(b, () => s.get('from-a')?.n === 1);
  await b.evaluate(async () => { s.set('from-b', 'two'); await s.flush(); });
  await until(a, () => s.get('from-b') === 'two');
  const seenByB = await b.evaluate(() => changes.map((e) => [e.key, e.op, e.remote]));
  assert.deepEqual(seenByB, [['from-a', 'set', true], ['from-b', 'set', false]]);
  const seenByA = await a.evaluate(() => changes.map((e) => [e.key, e.op, e.remote]));
  assert.deepEqual(seenByA, [['from-a', 'set', false], ['from-b', 'set', true]], 'never a remote echo of its own write');
  assert.deepEqual(await b.evaluate(() => s.queryByTags(['t'])), ['from-a']);
  await closeAll([a, b]);
});

test('deletes reach the other tabs', async () => {
  const [a, b, c] = await tabs('tabs-delete', 3);
  await a.evaluate(async () => { s.setMany([['k1', 1], ['k2', 2]]); await s.flush(); });
  await until(c, () => s.get('k2') === 2);
  await b.evaluate(async () => { await new Promise((r) => setTimeout(r, 0)); });
  await until(b, () => s.get('k1') === 1);
  await b.evaluate(async () => { s.delete('k1'); await s.flush(); });
  await until(a, () => s.get('k1') === undefined);
  await until(c, () => s.get('k1') === undefined && s.get('k2') === 2);
  const op = await c.evaluate(() => changes.filter((e) => e.key === 'k1').map((e) => e.op));
  assert.deepEqual(op, ['set', 'delete']);
  await closeAll([a, b, c]);
});

test('a key one tab has read, or has read as absent, takes the value another tab commits', async () => {
  const [a, b] = await tabs('tabs-read-cache', 2);
  await a.evaluate(async () => { s.set('k', 'v1', { ttl: 60_000 }); s.set('gone', 'x'); await s.flush(); });
  await until(b, () => s.get('k') === 'v1' && s.get('gone') === 'x');
  // a's reads: a value, and two keys it does not hold (one never written, one about to be).
  assert.deepEqual(await a.evaluate(() => [s.get('k'), s.has('new'), s.get('new'), s.get('gone')]), ['v1', false, undefined, 'x']);
  await b.evaluate(async () => { s.set('k', 'v2'); s.set('new', { n: 2 }); s.delete('gone'); await s.flush(); });
  await until(a, () => s.get('k') === 'v2' && s.get('new')?.n === 2 && !s.has('gone'));
  assert.deepEqual(await a.evaluate(() => [s.ttl('k'), s.get('gone')]), [undefined, undefined]);
  await closeAll([a, b]);
});

test("compact() in one tab right after another tab's flush keeps the other tab's data", async () => {
  const [a, b] = await tabs('tabs-compact', 2);
  await a.evaluate(async () => { s.set('old', 'a'); await s.flush(); });
  // b writes, and a compacts at once, before b's announcement could have reached it.
  await b.evaluate(async () => { s.setMany(Array.from({ length: 50 }, (_, i) => [`b${i}`, i])); await s.flush(); });
  const report = await a.evaluate(() => s.compact());
  assert.equal(report.recordsAfter, 51);
  await closeAll([a, b]);
  const [fresh] = await tabs('tabs-compact', 1);
  assert.equal(await fresh.evaluate(() => s.keys().length), 51);
  await closeAll([fresh]);
});

test('two tabs writing 500 keys each in interleaved flushes: every tab and a fresh one has all 1,000', async () => {
  const [a, b] = await tabs('tabs-interleaved', 2);
  for (let round = 0; round < 10; round++) {
    for (const [page, prefix] of [[a, 'a'], [b, 'b']]) {
      await page.evaluate(async ({ prefix, round }) => {
        for (let i = 0; i < 50; i++) s.set(`${prefix}${round * 50 + i}`, i);
        await s.flush();
      }, { prefix, round });
    }
  }
  await until(a, () => s.keys().length === 1000);
  await until(b, () => s.keys().length === 1000);
  await closeAll([a, b]);
  const [fresh] = await tabs('tabs-interleaved', 1);
  assert.equal(await fresh.evaluate(() => s.keys().length), 1000);
  await closeAll([fresh]);
});

test('concurrent writes to one key converge on one value that every tab and a fresh tab agree on', async () => {
  const pages = await tabs('tabs-converge', 3);
  // All three write "x" at once, then flush at once.
  await Promise.all(pages.map((page, i) => page.evaluate(async (i) => { s.set('x', `tab ${i}`); await s.flush(); }, i)));
  const [fresh] = await tabs('tabs-converge', 1);
  const winner = await fresh.evaluate(() => s.get('x'));
  assert.match(winner, /^tab [012]$/);
  for (const page of pages) await until(page, (w) => s.get('x') === w, winner);
  await closeAll([...pages, fresh]);
});

test('a TTL refreshed in one tab survives the expiry of the old copy in another', async () => {
  const [a, b] = await tabs('tabs-ttl', 2, { flushInterval: 20 });
  await a.evaluate(async () => { s.set('session', 'v1', { ttl: 300 }); await s.flush(); });
  await until(b, () => s.get('session') === 'v1');
  // a refreshes the TTL; b still holds the copy that expires in 300 ms.
  await a.evaluate(async () => { s.set('session', 'v2', { ttl: 60_000 }); await s.flush(); });
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await a.evaluate(() => s.get('session')), 'v2');
  await until(b, () => s.get('session') === 'v2');
  await closeAll([a, b]);
  const [fresh] = await tabs('tabs-ttl', 1);
  assert.equal(await fresh.evaluate(() => s.get('session')), 'v2');
  await closeAll([fresh]);
});

test('a dedicated worker writing to the database is seen by the tab, and the other way round', async () => {
  const [tab] = await tabs('tabs-worker', 1);
  const got = await tab.evaluate(async () => {
    const source = `
      import { Store } from '${location.origin}/node_modules/tidekv/web.js';
      const s = await Store.open({ name: 'tabs-worker' });
      const seen = [];
      s.on('change', (e) => seen.push([e.key, e.remote]));
      onmessage = async (e) => {
        if (e.data === 'write') {
          s.setMany(Array.from({ length: 20 }, (_, i) => ['w' + i, i]));
          await s.flush();
          postMessage('written');
        } else if (e.data === 'read') {
          postMessage({ fromTab: s.get('from-tab'), seen });
        }
      };
      postMessage('ready');
    `;
    const worker = new Worker(URL.createObjectURL(new Blob([source], { type: 'text/javascript' })), { type: 'module' });
    const next = () => new Promise((resolve, reject) => {
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(e.message));
    });
    let answer = next();
    if ((await answer) !== 'ready') throw new Error('the worker did not start');
    answer = next();
    worker.postMessage('write');
    await answer;
    const deadline = Date.now() + 2_000;
    while (s.keys().length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const tabSees = s.keys().length;
    s.set('from-tab', 'hello');
    await s.flush();
    let fromTab;
    let seen;
    while (Date.now() < deadline + 2_000) {
      answer = next();
      worker.postMessage('read');
      ({ fromTab, seen } = await answer);
      if (fromTab === 'hello') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    worker.terminate();
    const remoteInTab = changes.filter((e) => e.remote).length;
    return { tabSees, fromTab, workerHeardRemote: seen.some(([k, remote]) => k === 'from-tab' && remote), remoteInTab };
  });
  assert.deepEqual(got, { tabSees: 20, fromTab: 'hello', workerHeardRemote: true, remoteInTab: 20 });
  await closeAll([tab]);
});

test('persist: true asks the browser to keep the data, and stats() shows the storage figures', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'tabs-persist', persist: true });
    s.set('k', 'v');
    await s.flush();
    const { storage } = s.stats();
    await s.close();
    const memory = Store.memory();
    let refused = null;
    try {
      await Store.open({ backend: 'memory', persist: true });
    } catch (e) {
      refused = { type: e.constructor.name, says: e.message.includes('persist') };
    }
    let badType = null;
    try {
      await Store.open({ name: 'x', persist: 'yes' });
    } catch (e) {
      badType = e.constructor.name;
    }
    return {
      persisted: typeof storage.persisted,
      quota: storage.quota > 0,
      usage: storage.usage >= 0,
      memory: memory.stats().storage,
      refused,
      badType,
    };
  });
  assert.deepEqual(got, {
    persisted: 'boolean',
    quota: true,
    usage: true,
    memory: null,
    refused: { type: 'TypeError', says: true },
    badType: 'TypeError',
  });
  assert.deepEqual(page.consoleErrors, []);
  await page.close();
});
