// The JS-side read cache (src/wasm/cache.rs) never serves a stale answer: whatever changed a
// key — set, delete, the batch calls, clear, import, expire/persist, a getOrSet load, expiry,
// eviction, another namespace handle, close — the next get/has answers as the engine does, and
// stats() still counts every read. Each test reads the key first, so the cache holds it.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { importTidekv } from './package.mjs';

let Store;
before(async () => {
  ({ Store } = await importTidekv());
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits without yielding to the event loop until the wall clock passes `deadline`. */
function spinUntil(deadline) {
  while (Date.now() <= deadline);
}

test('a read key follows every later set and delete, of every kind of value', () => {
  const s = Store.memory();
  assert.equal(s.get('k'), undefined);
  assert.equal(s.has('k'), false);
  s.set('k', 'one');
  assert.equal(s.get('k'), 'one');
  s.set('k', 'two', { ttl: 60_000 });
  assert.equal(s.get('k'), 'two');
  s.set('k', { n: 1 });
  assert.deepEqual(s.get('k'), { n: 1 });
  s.set('k', new Uint8Array([1, 2, 3]));
  assert.deepEqual(s.get('k'), new Uint8Array([1, 2, 3]));
  s.set('k', 'three', { tags: ['t'] });
  assert.equal(s.get('k'), 'three');
  assert.equal(s.delete('k'), true);
  assert.equal(s.get('k'), undefined);
  assert.equal(s.has('k'), false);
  assert.equal(s.delete('k'), false);
  s.set('k', 'four');
  assert.equal(s.has('k'), true);
  assert.equal(s.get('k'), 'four');
});

test('every get of JSON or bytes hands out a copy of its own: changing one changes nothing stored', () => {
  const s = Store.memory();
  const obj = { list: [1, 2], nested: { a: 'x' } };
  s.set('json', obj);
  obj.list.push(3);
  const first = s.get('json');
  assert.deepEqual(first, { list: [1, 2], nested: { a: 'x' } });
  first.list.push(99);
  first.nested.a = 'changed';
  assert.deepEqual(s.get('json'), { list: [1, 2], nested: { a: 'x' } });
  assert.notEqual(s.get('json'), s.get('json'));

  const bytes = new Uint8Array([1, 2, 3]);
  s.set('bin', bytes);
  bytes[0] = 42;
  const got = s.get('bin');
  assert.deepEqual(got, new Uint8Array([1, 2, 3]));
  got[1] = 42;
  assert.deepEqual(s.get('bin'), new Uint8Array([1, 2, 3]));

  s.set('num', 7);
  assert.equal(s.get('num'), 7);
  assert.equal(s.get('num'), 7);
});

test('setMany, deleteMany, clear and import reach keys that were read before', async () => {
  const s = Store.memory();
  s.set('a', '1');
  s.set('b', '2');
  assert.equal(s.get('a'), '1');
  assert.equal(s.get('b'), '2');
  assert.equal(s.get('c'), undefined);
  s.setMany([['a', 'A'], ['c', 'C']]);
  assert.equal(s.get('a'), 'A');
  assert.equal(s.get('c'), 'C');
  assert.equal(s.has('c'), true);
  assert.equal(s.deleteMany(['a', 'b']), 2);
  assert.equal(s.get('a'), undefined);
  assert.equal(s.has('b'), false);
  assert.equal(s.clear(), 1);
  assert.equal(s.get('c'), undefined);

  const other = Store.memory();
  other.set('c', 'imported');
  other.set('d', { x: 1 });
  const dump = await other.export();
  assert.equal(s.get('d'), undefined);
  await s.import(dump);
  assert.equal(s.get('c'), 'imported');
  assert.deepEqual(s.get('d'), { x: 1 });
});

test('a key read before its TTL passes is gone after it, even in a loop that never yields', () => {
  const s = Store.memory();
  const expired = [];
  s.on('expire', (e) => expired.push(e.key));
  s.set('short', 'v', { ttl: 20 });
  const deadline = Date.now() + 20;
  assert.equal(s.get('short'), 'v');
  assert.equal(s.has('short'), true);
  spinUntil(deadline + 1);
  assert.equal(s.has('short'), false);
  assert.equal(s.get('short'), undefined);
  assert.deepEqual(expired, ['short'], 'the lazy expiry ran and fired its event');
});

test('expire() and persist() on a key that was read change what later reads see', async () => {
  const s = Store.memory();
  s.set('e', 'v');
  assert.equal(s.get('e'), 'v');
  const deadline = Date.now() + 20;
  assert.equal(s.expire('e', 20), true);
  // Without yielding: no timer sweeps the key away, the read alone must see the new TTL.
  spinUntil(deadline + 1);
  assert.equal(s.has('e'), false);
  assert.equal(s.get('e'), undefined);

  s.set('p', 'v', { ttl: 20 });
  assert.equal(s.get('p'), 'v');
  assert.equal(s.persist('p'), true);
  await sleep(40);
  assert.equal(s.get('p'), 'v');
  assert.equal(s.ttl('p'), undefined);
});

test('a getOrSet load after a read miss is what the next get returns', async () => {
  const s = Store.memory();
  assert.equal(s.get('lazy'), undefined);
  assert.equal(s.has('lazy'), false);
  assert.equal(await s.getOrSet('lazy', async () => 'loaded'), 'loaded');
  assert.equal(s.get('lazy'), 'loaded');
  assert.equal(s.has('lazy'), true);
});

test('two handles of one namespace see each other, other namespaces stay apart', () => {
  const s = Store.memory();
  const a1 = s.namespace('a');
  const a2 = s.namespace('a');
  const b = s.namespace('b');
  assert.equal(a1.get('k'), undefined);
  assert.equal(a2.get('k'), undefined);
  a2.set('k', 'from a2');
  assert.equal(a1.get('k'), 'from a2');
  assert.equal(b.get('k'), undefined);
  assert.equal(s.get('k'), undefined);
  a1.delete('k');
  assert.equal(a2.get('k'), undefined);
  b.set('k', 'b');
  a1.set('k', 'a');
  b.clear();
  assert.equal(b.get('k'), undefined);
  assert.equal(a2.get('k'), 'a');
});

test('under a memory cap an evicted key is never read back, however often it was read', () => {
  const s = Store.memory({ maxMemory: 20_000 });
  const evicted = new Set();
  s.on('change', (e) => e.op === 'evict' && evicted.add(e.key));
  for (let i = 0; i < 200; i++) {
    s.set(`k${i}`, 'x'.repeat(200));
    for (let j = Math.max(0, i - 5); j <= i; j++) {
      const got = s.get(`k${j}`);
      assert.equal(got, evicted.has(`k${j}`) ? undefined : 'x'.repeat(200), `k${j} after set ${i}`);
    }
  }
  assert.ok(evicted.size > 0);
  for (const key of evicted) {
    assert.equal(s.get(key), undefined);
    assert.equal(s.has(key), false);
  }
});

test('stats() counts the reads the cache answered', () => {
  const s = Store.memory();
  s.set('k', 'v');
  for (let i = 0; i < 3; i++) assert.equal(s.get('k'), 'v');
  for (let i = 0; i < 2; i++) assert.equal(s.get('none'), undefined);
  s.has('k');
  s.has('none');
  const stats = s.stats();
  assert.equal(stats.gets, 5);
  assert.equal(stats.hits, 3);
  assert.equal(stats.misses, 2);
  assert.equal(s.namespace('other').stats().gets, 5, 'counters are the store\'s, whichever handle');
});

test('after close() a read key throws Closed like any call', async () => {
  const path = mkdtempSync(join(tmpdir(), 'tidekv-read-cache-'));
  const s = await Store.open({ path, name: 'db' });
  s.set('k', 'v');
  assert.equal(s.get('k'), 'v');
  assert.equal(s.has('none'), false);
  const ns = s.namespace('n');
  ns.set('k', 'v');
  assert.equal(ns.get('k'), 'v');
  await s.close();
  for (const call of [() => s.get('k'), () => s.has('k'), () => s.get('none'), () => s.has('none'), () => ns.get('k'), () => s.set('k', 'w')]) {
    assert.throws(call, (e) => e.code === 'Closed');
  }
  const again = await Store.open({ path, name: 'db' });
  assert.equal(again.get('k'), 'v');
  assert.equal(again.namespace('n').get('k'), 'v');
  await again.close();
});

test('set refuses what it always refused, with a read key keeping its value', () => {
  const s = Store.memory();
  s.set('k', 'v');
  assert.equal(s.get('k'), 'v');
  assert.throws(() => s.set('k', 'w', { ttl: 0 }), (e) => e instanceof RangeError && e.code === 'InvalidTtl');
  assert.throws(() => s.set('k', 'w', { ttl: NaN }), (e) => e instanceof RangeError && e.code === 'InvalidTtl');
  assert.throws(() => s.set('k', 'w', { ttl: '5' }), (e) => e instanceof TypeError);
  assert.throws(() => s.set('k', 'w', { ttl: 5, nope: 1 }), (e) => e instanceof TypeError && /nope/.test(e.message));
  assert.throws(() => s.set('k', 'w\ud800'), (e) => e instanceof TypeError && /surrogate/.test(e.message));
  assert.throws(() => s.set('k\udc00', 'w'), (e) => e instanceof TypeError && /surrogate/.test(e.message));
  assert.throws(() => s.set('', 'w'), (e) => e instanceof RangeError && e.code === 'InvalidKey');
  assert.throws(() => s.set('k', undefined), (e) => e instanceof TypeError);
  assert.equal(s.get('k'), 'v');
  // A replacement character that is really there is stored as such.
  s.set('k', 'a\ufffdb');
  assert.equal(s.get('k'), 'a\ufffdb');
  s.set('k\ufffd', 'x');
  assert.equal(s.get('k\ufffd'), 'x');
  // The same through a read the cache cannot answer (setMany leaves it empty).
  s.setMany([['k\ufffd', 'y'], ['é', 'z']]);
  assert.equal(s.get('k\ufffd'), 'y');
  assert.equal(s.get('é'), 'z');
  for (const read of [() => s.get('k\udc00'), () => s.has('k\udc00'), () => s.get('\ud800')]) {
    assert.throws(read, (e) => e instanceof TypeError && /surrogate/.test(e.message));
  }
  // A key read before is never found by a value that only converts to it.
  s.set('1', 'one');
  s.set('__proto__', 'proto');
  s.set('toString', 'ts');
  assert.deepEqual([s.get('1'), s.get('__proto__'), s.get('toString'), s.has('constructor')], ['one', 'proto', 'ts', false]);
  for (const read of [() => s.get(1), () => s.has(1), () => s.get(undefined), () => s.has(null)]) {
    assert.throws(read, (e) => e instanceof TypeError && e.code === 'InvalidType');
  }
  // Keys and values past the glue's scratch area take the general way, and still round-trip.
  const long = 'é'.repeat(30_000);
  s.set('long', long, { ttl: 60_000 });
  assert.equal(s.get('long'), long);
  const longKey = 'ключ'.repeat(400);
  s.set(longKey, 'v');
  assert.equal(s.get(longKey), 'v');
});

test('more keys than the cache holds still read back right', () => {
  const s = Store.memory({ bufferSize: 64 * 1024 * 1024 });
  const n = 70_000;
  for (let i = 0; i < n; i++) s.set(`k${i}`, `v${i}`);
  for (let i = 0; i < n; i++) assert.equal(s.get(`k${i}`), `v${i}`);
  for (let i = 0; i < n; i += 7) s.delete(`k${i}`);
  for (let i = 0; i < n; i++) assert.equal(s.get(`k${i}`), i % 7 === 0 ? undefined : `v${i}`);
});
