// The browser build in headless Chromium, loaded from the installed npm tarball by a plain page
// (`<script type="module">` + import map): the IndexedDB backend, ticks and events.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchWithProfile, openPage, reload, useBrowser } from './harness.mjs';

let url;
let context;
useBrowser((env) => ({ url, context } = env));

test('every value kind round-trips through IndexedDB and comes back as stored', async () => {
  const page = await openPage(context, url);
  await page.evaluate(async () => {
    const s = await Store.open({ name: 'kinds' });
    s.set('bin', new Uint8Array([0, 1, 255]));
    s.set('txt', 'héllo ✓');
    s.set('obj', { a: [1, 2, { b: null }], c: 'x' });
    await s.flush();
    await s.close();
  });
  await reload(page);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'kinds' });
    const bin = s.get('bin');
    const out = {
      bin: bin instanceof Uint8Array ? Array.from(bin) : String(bin),
      txt: s.get('txt'),
      obj: s.get('obj'),
      kinds: ['bin', 'txt', 'obj'].map((k) => s.getWithMetadata(k).metadata.kind),
    };
    await s.close();
    return out;
  });
  assert.deepEqual(got, {
    bin: [0, 1, 255],
    txt: 'héllo ✓',
    obj: { a: [1, 2, { b: null }], c: 'x' },
    kinds: ['bytes', 'text', 'json'],
  });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('reopen after close gives back the same data, tags, TTLs and namespaces', async () => {
  const page = await openPage(context, url);
  await page.evaluate(async () => {
    const s = await Store.open({ name: 'reopen' });
    s.set('a', 'one', { ttl: 3_600_000, tags: ['t1', 't2'] });
    s.set('b', 'two', { tags: ['t1'] });
    s.set('gone', 'x');
    s.delete('gone');
    s.namespace('users').set('u1', { n: 1 }, { tags: ['admin'] });
    await s.close();
  });
  await reload(page);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'reopen' });
    const users = s.namespace('users');
    const out = {
      keys: s.keys(),
      a: s.getWithMetadata('a').metadata,
      t1: s.queryByTags(['t1']),
      t1t2: s.queryByTags(['t1', 't2']),
      tags: s.listTags(),
      ttlPositive: s.ttl('a') > 0,
      bTtl: s.ttl('b') === undefined,
      users: users.keys(),
      u1: users.get('u1'),
      admin: users.queryByTags(['admin']),
    };
    await s.close();
    return out;
  });
  assert.deepEqual(got.keys, ['a', 'b']);
  assert.deepEqual(got.a.tags, ['t1', 't2']);
  assert.equal(got.a.expiresAt, got.a.createdAt + 3_600_000);
  assert.deepEqual(got.t1, ['a', 'b']);
  assert.deepEqual(got.t1t2, ['a']);
  assert.deepEqual(got.tags, [{ tag: 't1', count: 2 }, { tag: 't2', count: 1 }]);
  assert.equal(got.ttlPositive, true);
  assert.equal(got.bTtl, true);
  assert.deepEqual(got.users, ['u1']);
  assert.deepEqual(got.u1, { n: 1 });
  assert.deepEqual(got.admin, ['u1']);
  await page.close();
});

test('a TTL that passes while the store is closed is gone after reopen', async () => {
  const page = await openPage(context, url);
  const deadline = await page.evaluate(async () => {
    const s = await Store.open({ name: 'ttl' });
    s.set('short', 'x', { ttl: 200 });
    s.set('long', 'y', { ttl: 3_600_000 });
    s.set('forever', 'z');
    const at = s.getWithMetadata('short').metadata.expiresAt;
    await s.close();
    return at;
  });
  await page.waitForFunction((at) => Date.now() > at, deadline, { polling: 50 });
  await reload(page);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'ttl' });
    const out = { keys: s.keys(), short: s.get('short') ?? null, long: s.get('long') };
    await s.close();
    return out;
  });
  assert.deepEqual(got, { keys: ['forever', 'long'], short: null, long: 'y' });
  await page.close();
});

test('a flush is exactly one readwrite transaction, however many writes it carries', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'tx-count' });
    const original = IDBDatabase.prototype.transaction;
    let readwrite = 0;
    IDBDatabase.prototype.transaction = function (...args) {
      if (args[1] === 'readwrite') readwrite += 1;
      return original.apply(this, args);
    };
    try {
      for (let i = 0; i < 200; i++) s.set(`k${i}`, `v${i}`, { tags: ['bulk'] });
      for (let i = 0; i < 20; i++) s.delete(`k${i}`);
      await s.flush();
      const first = readwrite;
      s.set('one-more', 1);
      await s.flush();
      const second = readwrite;
      await s.flush(); // nothing pending: no transaction
      const third = readwrite;
      return { first, second, third, flushes: s.stats().flushes, records: s.stats().recordsFlushed };
    } finally {
      IDBDatabase.prototype.transaction = original;
      await s.close();
    }
  });
  assert.deepEqual(got, { first: 1, second: 2, third: 2, flushes: 2, records: 201 });
  await page.close();
});

test('an aborted transaction keeps the data buffered, reports it, and a later tick writes it', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'abort', flushInterval: 50 });
    const events = [];
    s.on('error', (e) => events.push({ code: e.code, aborted: e.message.includes('AbortError') }));
    const original = IDBDatabase.prototype.transaction;
    IDBDatabase.prototype.transaction = function (...args) {
      const tx = original.apply(this, args);
      if (args[1] === 'readwrite') queueMicrotask(() => tx.abort());
      return tx;
    };
    s.set('k', 'kept', { tags: ['t'] });
    let rejected = null;
    try {
      await s.flush();
    } catch (e) {
      rejected = { code: e.code, aborted: e.message.includes('AbortError') };
    } finally {
      IDBDatabase.prototype.transaction = original;
    }
    const during = s.stats();
    // No flush() call: the scheduler retries after its backoff.
    while (s.stats().flushes === 0) await new Promise((r) => setTimeout(r, 10));
    const retried = s.stats();
    await s.close();
    const again = await Store.open({ name: 'abort' });
    const reopened = { value: again.get('k'), tagged: again.queryByTags(['t']) };
    await again.close();
    return {
      rejected,
      events,
      during: { failures: during.flushFailures, buffered: during.bufferBytes > 0, aborted: during.lastError.includes('AbortError') },
      retried: { flushes: retried.flushes, failures: retried.flushFailures, buffered: retried.bufferBytes },
      reopened,
    };
  });
  assert.deepEqual(got, {
    rejected: { code: 'Backend', aborted: true },
    events: [{ code: 'Backend', aborted: true }],
    during: { failures: 1, buffered: true, aborted: true },
    retried: { flushes: 1, failures: 1, buffered: 0 },
    reopened: { value: 'kept', tagged: ['k'] },
  });
  await page.close();
});

test('setMany and deleteMany reach IndexedDB in one transaction: all of a batch or none of it', async () => {
  const page = await openPage(context, url);
  // A batch whose transaction aborts, then the tab goes away: none of it is stored.
  const aborted = await page.evaluate(async () => {
    const s = await Store.open({ name: 'batch', flushInterval: 3_600_000 });
    s.set('before', 'kept');
    await s.flush();
    const original = IDBDatabase.prototype.transaction;
    IDBDatabase.prototype.transaction = function (...args) {
      const tx = original.apply(this, args);
      // Abort after the first put has been issued: the batch is part-way through.
      if (args[1] === 'readwrite') setTimeout(() => tx.abort(), 0);
      return tx;
    };
    s.setMany(Array.from({ length: 300 }, (_, i) => [`b${i}`, { i }, { tags: ['batch'] }]));
    let rejected = false;
    try {
      await s.flush();
    } catch {
      rejected = true;
    }
    IDBDatabase.prototype.transaction = original;
    return { rejected, visible: s.queryByTags(['batch']).length };
  });
  assert.deepEqual(aborted, { rejected: true, visible: 300 });
  await reload(page);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'batch' });
    const afterAbort = s.keys();
    const original = IDBDatabase.prototype.transaction;
    let readwrite = 0;
    IDBDatabase.prototype.transaction = function (...args) {
      if (args[1] === 'readwrite') readwrite += 1;
      return original.apply(this, args);
    };
    s.setMany(Array.from({ length: 300 }, (_, i) => [`b${i}`, { i }, { tags: ['batch'] }]));
    await s.flush();
    const removed = s.deleteMany(['before', 'b0', 'b1', 'missing']);
    await s.flush();
    IDBDatabase.prototype.transaction = original;
    await s.close();
    const again = await Store.open({ name: 'batch' });
    const out = { afterAbort, readwrite, removed, count: again.keys().length, b2: again.get('b2'), b0: again.get('b0') };
    await again.close();
    return out;
  });
  assert.deepEqual(got, { afterAbort: ['before'], readwrite: 2, removed: 3, count: 298, b2: { i: 2 }, b0: undefined });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('expired records are deleted from IndexedDB, whether they expire while open or while closed', async () => {
  // Regression: expired records stayed in IndexedDB for ever, and every open read them again.
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const stored = (name) => new Promise((resolve, reject) => {
      const req = indexedDB.open(name);
      req.onerror = () => reject(req.error);
      req.onsuccess = () => {
        const db = req.result;
        const keys = db.transaction('records').objectStore('records').getAllKeys();
        keys.onsuccess = () => { db.close(); resolve(keys.result.map((k) => k[1]).sort()); };
      };
    });
    const until = async (name, want) => {
      for (let i = 0; i < 300; i++) {
        const keys = await stored(name);
        if (JSON.stringify(keys) === JSON.stringify(want)) return keys;
        await new Promise((r) => setTimeout(r, 20));
      }
      return stored(name);
    };
    // Expiring while the store is open: the sweep finds it, the record goes.
    const s = await Store.open({ name: 'reclaim-open', flushInterval: 20 });
    s.set('short', 'x', { ttl: 150 });
    s.set('long', 'y');
    await s.flush();
    const before = await stored('reclaim-open');
    const whileOpen = await until('reclaim-open', ['long']);
    await s.close();
    // Expiring while it is closed: the next open drops it and deletes the record.
    const t = await Store.open({ name: 'reclaim-closed' });
    t.set('gone', 'x', { ttl: 100 });
    t.set('kept', 'y');
    await t.close();
    await new Promise((r) => setTimeout(r, 200));
    const u = await Store.open({ name: 'reclaim-closed' });
    const afterOpen = await until('reclaim-closed', ['kept']);
    const visible = u.keys();
    await u.close();
    return { before, whileOpen, afterOpen, visible };
  });
  assert.deepEqual(got, {
    before: ['long', 'short'],
    whileOpen: ['long'],
    afterOpen: ['kept'],
    visible: ['kept'],
  });
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a reclaim never deletes a record that was written again after it expired', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'reclaim-race', flushInterval: 20 });
    s.set('k', 'old', { ttl: 50 });
    await s.flush();
    await new Promise((r) => setTimeout(r, 100));
    s.sweepExpired(); // "k" expires here and is queued for reclaim ...
    s.set('k', 'new'); // ... and is written again before the reclaim runs
    await s.flush();
    await new Promise((r) => setTimeout(r, 300));
    await s.close();
    const t = await Store.open({ name: 'reclaim-race' });
    const value = t.get('k');
    await t.close();
    return value;
  });
  assert.equal(got, 'new');
  await page.close();
});

test('a real QuotaExceededError keeps the data buffered, says so, and the data lands once there is room', async () => {
  // Quota is enforced only for a profile on disk, and from before the database is opened: this
  // test has a browser of its own, and sets a 64 KiB quota first.
  const profile = await launchWithProfile();
  try {
    const page = await openPage(profile, url);
    const cdp = await profile.newCDPSession(page);
    const origin = new URL(url).origin;
    await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 64 * 1024 });
    const full = await page.evaluate(async () => {
      const s = await Store.open({ name: 'quota', flushInterval: 3_600_000 });
      window.quotaStore = s;
      s.set('before', 'kept');
      await s.flush();
      const events = [];
      s.on('error', (e) => events.push(e.message.includes('QuotaExceededError')));
      // Random bytes: IndexedDB compresses values, so a repeated string would fit anyway.
      s.setMany(Array.from({ length: 40 }, (_, i) => [`big${i}`, crypto.getRandomValues(new Uint8Array(64 * 1024))]));
      let rejected = null;
      try {
        await s.flush();
      } catch (e) {
        rejected = { code: e.code, quota: e.message.includes('QuotaExceededError') };
      }
      // The flush, and any retry the scheduler made meanwhile, each say why.
      const said = events.length > 0 && events.every(Boolean);
      return { rejected, said, buffered: s.stats().bufferBytes > 0, readable: s.get('big3')?.length };
    });
    await cdp.send('Storage.overrideQuotaForOrigin', { origin });
    const after = await page.evaluate(async () => {
      const s = window.quotaStore;
      await s.flush();
      await s.close();
      const t = await Store.open({ name: 'quota' });
      const out = { keys: t.keys().length, before: t.get('before') };
      await t.close();
      return out;
    });
    assert.deepEqual(full, {
      rejected: { code: 'Backend', quota: true },
      said: true,
      buffered: true,
      readable: 64 * 1024,
    });
    assert.deepEqual(after, { keys: 41, before: 'kept' });
  } finally {
    await profile.close();
  }
});

test('expire events fire from the timer with the change event (key, namespace, op, remote)', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'events' });
    const seen = [];
    const done = new Promise((resolve) => {
      s.on('expire', (e) => {
        seen.push([e.key, e.namespace, e.op, e.remote]);
        if (seen.length === 2) resolve();
      });
    });
    s.set('a', 1, { ttl: 30 });
    s.namespace('jobs').set('b', 2, { ttl: 60 });
    s.set('stays', 3);
    await done; // no read touches the keys: only the scheduler's sweep can find them
    const out = { seen: seen.sort(), keys: s.keys(), active: s.stats().expiredActive };
    await s.close();
    return out;
  });
  assert.deepEqual(got, { seen: [['a', '', 'expire', false], ['b', 'jobs', 'expire', false]], keys: ['stays'], active: 2 });
  await page.close();
});

test('another tab deleting the database is not blocked, and the store reconnects', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'vchange' });
    s.set('old', 1);
    await s.flush();
    // What another tab does: deleting needs every connection closed (else `blocked`).
    const outcome = await new Promise((resolve) => {
      const req = indexedDB.deleteDatabase('vchange');
      req.onsuccess = () => resolve('deleted');
      req.onerror = () => resolve('error');
      req.onblocked = () => resolve('blocked');
    });
    s.set('new', 2);
    await s.flush();
    await s.close();
    const again = await Store.open({ name: 'vchange' });
    const keys = again.keys();
    await again.close();
    return { outcome, keys };
  });
  assert.deepEqual(got, { outcome: 'deleted', keys: ['new'] });
  await page.close();
});

test('bad options reject with a TypeError naming the option and open nothing', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const attempt = async (opts) => {
      try {
        await Store.open(opts);
        return 'opened';
      } catch (e) {
        return `${e.constructor.name} ${e.code} ${e.message}`;
      }
    };
    const out = [
      await attempt({ name: 'x', bufferSise: 1 }),
      await attempt({ name: 'x', backend: 'fs', path: '/tmp' }),
      await attempt({ name: '../x' }),
    ];
    const dbs = (await indexedDB.databases()).map((d) => d.name);
    return { out, created: dbs.includes('x') || dbs.includes('../x') };
  });
  assert.match(got.out[0], /^TypeError InvalidType .*bufferSise/);
  assert.match(got.out[1], /^RangeError InvalidOption .*Node\.js build/);
  assert.match(got.out[2], /^RangeError InvalidName /);
  assert.equal(got.created, false);
  await page.close();
});

test('a store larger than one read page loads completely at open', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'pages' });
    for (let i = 0; i < 2_500; i++) s.set(`k${String(i).padStart(4, '0')}`, i, { tags: [i % 2 ? 'odd' : 'even'] });
    await s.close();
    const t = await Store.open({ name: 'pages' });
    const out = { keys: t.keys().length, last: t.get('k2499'), odd: t.queryByTags(['odd']).length };
    await t.close();
    return out;
  });
  assert.deepEqual(got, { keys: 2_500, last: 2_499, odd: 1_250 });
  await page.close();
});

test('keys and namespaces outside ASCII are stored under their exact IndexedDB keys, deletes included', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'unicode-keys' });
    const ns = s.namespace('ns-ü');
    for (const k of ['é', '日本語', '🙂x', 'a\u0000b']) ns.set(k, k.length);
    s.set('plain', 1);
    s.set('🙂gone', 2);
    await s.flush();
    s.delete('🙂gone');
    ns.set('é', 'again');
    await s.close();
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('unicode-keys');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const stored = await new Promise((resolve, reject) => {
      const req = db.transaction('records').objectStore('records').getAllKeys();
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    db.close();
    const t = await Store.open({ name: 'unicode-keys' });
    const tns = t.namespace('ns-ü');
    const out = { stored, values: ['é', '日本語', '🙂x', 'a\u0000b'].map((k) => tns.get(k)), keys: t.keys() };
    await t.close();
    return out;
  });
  assert.deepEqual(got.stored, [
    ['', 'plain'],
    ['ns-ü', 'a\u0000b'],
    ['ns-ü', 'é'],
    ['ns-ü', '日本語'],
    ['ns-ü', '🙂x'],
  ]);
  assert.deepEqual(got.values, ['again', 3, 3, 3]);
  assert.deepEqual(got.keys, ['plain']);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a stored value that is not a record fails the open with Corrupt naming its key, past the first read page', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'corrupt-value' });
    for (let i = 0; i < 600; i++) s.set(`k${String(i).padStart(4, '0')}`, i);
    await s.close();
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('corrupt-value');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const bad = async (value, key) => {
      const tx = db.transaction('records', 'readwrite');
      tx.objectStore('records').put(value, ['', key]);
      await new Promise((resolve) => { tx.oncomplete = resolve; });
    };
    const attempt = async () => {
      try {
        const t = await Store.open({ name: 'corrupt-value' });
        await t.close();
        return 'opened';
      } catch (e) {
        return `${e.code} ${e.message}`;
      }
    };
    await bad('not bytes', 'k0400x');
    const notBytes = await attempt();
    await bad(new Uint8Array([1, 2, 3]), 'k0400x');
    const garbage = await attempt();
    db.close();
    return { notBytes, garbage };
  });
  assert.match(got.notBytes, /^Corrupt .*IndexedDB record \["","k0400x"\]: not a Uint8Array/);
  assert.match(got.garbage, /^Corrupt .*IndexedDB record \["","k0400x"\]: /);
  await page.close();
});

test('pagehide and a hidden page start a flush without waiting for the interval', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'hide', flushInterval: 3_600_000 });
    const flushed = async (before) => {
      while (s.stats().flushes === before) await new Promise((r) => setTimeout(r, 10));
      return s.stats().flushes;
    };
    s.set('a', 1);
    window.dispatchEvent(new Event('pagehide'));
    const afterPagehide = await flushed(0);
    s.set('b', 2);
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
    const afterHidden = await flushed(1);
    await s.close();
    return { afterPagehide, afterHidden };
  });
  assert.deepEqual(got, { afterPagehide: 1, afterHidden: 2 });
  await page.close();
});

test('Store.memory() before the wasm is loaded throws NotInitialized naming Store.init(); after it, it works', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    let before = null;
    try {
      Store.memory();
    } catch (e) {
      before = { code: e.code, names: e.message.includes('Store.init()') };
    }
    const loading = [Store.init(), Store.init()];
    await Promise.all(loading);
    const s = Store.memory();
    s.set('k', 'v');
    return { before, after: s.get('k') };
  });
  assert.deepEqual(got, { before: { code: 'NotInitialized', names: true }, after: 'v' });
  await page.close();
});
