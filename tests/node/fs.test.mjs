// The Node.js build, imported as `import { Store } from 'tidekv'` from the packed tarball
// installed in an empty folder: the file backend, the lock, the exit behaviour, bad input.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { appDir, importTidekv } from './package.mjs';

let Store;
before(async () => {
  ({ Store } = await importTidekv());
});

const fresh = () => mkdtempSync(join(tmpdir(), 'tidekv-fs-'));
const segments = (dir) => readdirSync(dir).filter((f) => /^seg-[0-9a-f]{16}\.tkv$/.test(f)).sort();

/** Runs `source` as an ES module inside the app folder (so 'tidekv' resolves as for a user). */
function runScript(source, args = []) {
  const file = join(appDir(), `script-${process.pid}-${Math.random().toString(16).slice(2)}.mjs`);
  writeFileSync(file, source);
  return spawnSync(process.execPath, [file, ...args], { encoding: 'utf8', timeout: 60_000 });
}

test('values, kinds, tags, TTLs and namespaces survive close and reopen from files', async () => {
  const path = fresh();
  const s = await Store.open({ path, name: 'db' });
  s.set('bin', new Uint8Array([0, 1, 255]), { tags: ['b'] });
  s.set('txt', 'héllo', { ttl: 3_600_000, tags: ['a', 'b'] });
  s.set('obj', { deep: [1, { x: null }] });
  s.set('gone', 'soon');
  s.delete('gone');
  s.namespace('users').set('u1', 'ada', { tags: ['admin'] });
  const meta = s.getWithMetadata('txt').metadata;
  await s.close();

  // The owner socket stays behind, dead: the next open takes the next generation.
  assert.deepEqual(readdirSync(join(path, 'db')).sort(), ['LOCK.owner.0000000000000001', 'seg-0000000000000001.tkv']);
  const t = await Store.open({ path, name: 'db' });
  assert.deepEqual(t.keys(), ['bin', 'obj', 'txt']);
  assert.deepEqual(t.get('bin'), new Uint8Array([0, 1, 255]));
  assert.equal(t.get('txt'), 'héllo');
  assert.deepEqual(t.get('obj'), { deep: [1, { x: null }] });
  assert.deepEqual(t.getWithMetadata('txt').metadata, meta);
  assert.deepEqual(t.queryByTags(['b']), ['bin', 'txt']);
  assert.deepEqual(t.listTags(), [{ tag: 'a', count: 1 }, { tag: 'b', count: 2 }]);
  assert.equal(t.namespace('users').get('u1'), 'ada');
  assert.deepEqual(t.namespace('users').queryByTags(['admin']), ['u1']);
  await t.close();
});

test('a TTL that passes while the store is closed is gone after reopen', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  s.set('short', 'x', { ttl: 100 });
  s.set('stays', 'y');
  const deadline = s.getWithMetadata('short').metadata.expiresAt;
  await s.close();
  while (Date.now() <= deadline) await new Promise((r) => setTimeout(r, 20));
  const t = await Store.open({ path });
  assert.deepEqual(t.keys(), ['stays']);
  assert.equal(t.get('short'), undefined);
  await t.close();
});

test('a second open of an open database fails with Locked, in this process and in another', async () => {
  const path = fresh();
  const s = await Store.open({ path, name: 'locked' });
  await assert.rejects(Store.open({ path, name: 'locked' }), (e) => e.code === 'Locked' && e.message.includes('locked'));
  const other = runScript(`
    import { Store } from 'tidekv';
    try { await Store.open({ path: process.argv[2], name: 'locked' }); console.log('opened'); }
    catch (e) { console.log(e.code); }
  `, [path]);
  assert.equal(other.stdout.trim(), 'Locked');
  await s.close();
  const again = await Store.open({ path, name: 'locked' });
  await again.close();
});

test('a lock left by a process that died is taken over', async () => {
  const path = fresh();
  const died = runScript(`
    import { Store } from 'tidekv';
    const s = await Store.open({ path: process.argv[2] });
    s.set('k', 'v');
    await s.flush();
    process.exit(0); // no close(): the owner socket stays behind
  `, [path]);
  assert.equal(died.status, 0, died.stderr);
  const dir = join(path, 'default');
  assert.deepEqual(readdirSync(dir).sort(), ['LOCK.owner.0000000000000001', 'seg-0000000000000001.tkv']);
  const s = await Store.open({ path });
  assert.equal(s.get('k'), 'v');
  // The next generation, and the dead one is cleaned up.
  assert.deepEqual(readdirSync(dir).sort(), ['LOCK.owner.0000000000000002', 'seg-0000000000000001.tkv']);
  await s.close();
});

test('a script that writes and never calls close() exits on its own with its data on disk', async () => {
  const path = fresh();
  const child = runScript(`
    import { Store } from 'tidekv';
    const s = await Store.open({ path: process.argv[2], flushInterval: 60000 });
    for (let i = 0; i < 50; i++) s.set('k' + i, { i }, { tags: ['t'] });
    s.namespace('ns').set('x', 'y');
    console.log('written');
  `, [path]);
  assert.equal(child.signal, null, 'the child was killed by the timeout: it did not exit on its own');
  assert.equal(child.status, 0, child.stderr);
  assert.equal(child.stdout.trim(), 'written');
  const s = await Store.open({ path });
  assert.equal(s.keys().length, 50);
  assert.deepEqual(s.get('k49'), { i: 49 });
  assert.equal(s.queryByTags(['t']).length, 50);
  assert.equal(s.namespace('ns').get('x'), 'y');
  await s.close();
});

test('bad input throws a TypeError or RangeError and stores nothing', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  const cases = [
    [() => s.set(42, 'v'), TypeError, 'InvalidType'],
    [() => s.set('k', 'v', { ttl: NaN }), RangeError, 'InvalidTtl'],
    [() => s.set('k', 'v', { ttl: -5 }), RangeError, 'InvalidTtl'],
    [() => s.set('k', 'v', { ttl: '10' }), TypeError, 'InvalidType'],
    [() => s.set('k', 'v', { tll: 10 }), TypeError, 'InvalidType'],
    [() => s.set('k', () => 1), TypeError, 'InvalidType'],
    [() => s.set('k', 10n), TypeError, 'InvalidType'],
    [() => s.set('k', { n: NaN }), RangeError, 'InvalidValue'],
    [() => s.set('', 'v'), RangeError, 'InvalidKey'],
    [() => s.expire('k', Infinity), RangeError, 'InvalidTtl'],
    [() => s.on('expired', () => {}), TypeError, 'InvalidType'],
  ];
  for (const [call, type, code] of cases) {
    assert.throws(call, (e) => e instanceof type && e.code === code, String(call));
  }
  assert.deepEqual(s.keys(), []);
  assert.equal(s.stats().bufferBytes, 0);
  await s.close();
  const t = await Store.open({ path });
  assert.deepEqual(t.keys(), []);
  await t.close();

  await assert.rejects(Store.open({ path, bufferSise: 10 }), (e) => e instanceof TypeError && e.message.includes('bufferSise'));
  await assert.rejects(Store.open({ path, durability: 'sometimes' }), (e) => e instanceof TypeError && e.message.includes('durability'));
  await assert.rejects(Store.open({ path, name: '../escape' }), (e) => e instanceof RangeError && e.code === 'InvalidName');
  await assert.rejects(Store.open({ path: 7 }), (e) => e instanceof TypeError && e.message.includes('path'));
  assert.deepEqual(readdirSync(path), ['default']);
});

test('compaction keeps only live records and the result reopens the same', async () => {
  const path = fresh();
  const s = await Store.open({ path, durability: 'buffered' });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100; i++) s.set(`k${i}`, `v${round}-${i}`);
    await s.flush();
  }
  for (let i = 0; i < 50; i++) s.delete(`k${i}`);
  s.set('ttl', 'x', { ttl: 3_600_000, tags: ['keep'] });
  const report = await s.compact();
  assert.equal(report.recordsBefore, 351);
  assert.equal(report.recordsAfter, 51);
  assert.equal(report.recordsDropped, 300);
  assert.ok(report.bytesAfter < report.bytesBefore);
  s.set('after', 'compaction');
  await s.close();
  const dir = join(path, 'default');
  const segs = segments(dir);
  assert.equal(segs.length, 2, segs.join(','));
  const t = await Store.open({ path });
  assert.equal(t.keys().length, 52);
  assert.equal(t.get('k99'), 'v2-99');
  assert.equal(t.get('k0'), undefined);
  assert.deepEqual(t.queryByTags(['keep']), ['ttl']);
  assert.equal(t.get('after'), 'compaction');
  await t.close();
});

test('a torn write at the end of the log is cut off at open and earlier records survive', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  s.set('a', 'first');
  await s.flush();
  s.set('b', 'second');
  await s.close();
  const seg = join(path, 'default', segments(join(path, 'default'))[0]);
  const good = statSync(seg).size;
  appendFileSync(seg, Buffer.from([40, 0, 0, 0, 1, 2, 3])); // the start of a frame, cut short
  const t = await Store.open({ path });
  assert.deepEqual(t.keys(), ['a', 'b']);
  assert.equal(statSync(seg).size, good);
  t.set('c', 'third');
  await t.close();
  const u = await Store.open({ path });
  assert.deepEqual(u.keys(), ['a', 'b', 'c']);
  await u.close();
});

test('the cut of a torn tail is fsynced before the store opens', async () => {
  // Regression: the cut was a plain truncate; after a power loss the torn bytes could come
  // back with later appends behind them.
  const path = fresh();
  const s = await Store.open({ path });
  s.set('a', 'first');
  await s.close();
  const seg = join(path, 'default', segments(join(path, 'default'))[0]);
  appendFileSync(seg, Buffer.from([40, 0, 0, 0, 1, 2, 3]));
  const { open: openFile, truncate: truncatePath } = await import('node:fs/promises');
  const probe = await openFile(seg, 'r');
  const FileHandle = Object.getPrototypeOf(probe);
  await probe.close();
  const calls = [];
  const original = { truncate: FileHandle.truncate, sync: FileHandle.sync };
  FileHandle.truncate = function (...args) { calls.push(['truncate', this]); return original.truncate.apply(this, args); };
  FileHandle.sync = function (...args) { calls.push(['sync', this]); return original.sync.apply(this, args); };
  let t;
  try {
    t = await Store.open({ path });
  } finally {
    Object.assign(FileHandle, original);
  }
  const cut = calls.findIndex(([what]) => what === 'truncate');
  assert.ok(cut >= 0, `the torn tail was not cut through a file handle (${calls.length} calls; fs.truncate: ${typeof truncatePath})`);
  assert.ok(calls.slice(cut + 1).some(([what, handle]) => what === 'sync' && handle === calls[cut][1]), 'the cut was not fsynced');
  assert.deepEqual(t.keys(), ['a']);
  await t.close();
});

test("backend: 'memory' in Node.js opens a store that keeps nothing", async () => {
  const s = await Store.open({ backend: 'memory' });
  s.set('k', 'v');
  // Nothing to write to: no buffer is kept, and a flush has nothing to do.
  assert.equal(s.stats().bufferBytes, 0);
  await s.flush();
  assert.equal(s.stats().flushes, 0);
  await s.close();
  const t = await Store.open({ backend: 'memory' });
  assert.deepEqual(t.keys(), []);
  await t.close();
  assert.throws(() => t.get('k'), (e) => e.code === 'Closed');
});

test('a Node.js process killed during setMany batches never leaves part of a batch on disk', async (t) => {
  // Each batch sets every key to its batch number; a kill at any point must reopen to one batch.
  const points = Number(process.env.TIDEKV_CRASH_POINTS ?? 0) > 0
    ? Math.max(1, Math.floor(Number(process.env.TIDEKV_CRASH_POINTS) / 4)) : 8;
  const KEYS = 16;
  const script = `
    import { Store } from 'tidekv';
    const s = await Store.open({ path: process.argv[2], name: 'db', flushInterval: 1 });
    process.stdout.write('READY\\n');
    for (let v = 1; ; v++) {
      const pad = 'x'.repeat((v * 7919) % 20000);
      s.setMany(Array.from({ length: ${KEYS} }, (_, k) => ['k' + k, { v, pad }]));
      if (v % 3 === 0) { await s.flush(); process.stdout.write('ACK ' + v + '\\n'); }
      if (v % 50 === 0) await s.compact();
      await new Promise((r) => setImmediate(r));
    }
  `;
  const file = join(appDir(), `batches-${process.pid}.mjs`);
  writeFileSync(file, script);
  const { spawn } = await import('node:child_process');
  for (let point = 0; point < points; point++) {
    const path = fresh();
    const child = spawn(process.execPath, [file, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    await new Promise((resolve) => {
      const check = setInterval(() => {
        if (out.includes('READY')) { clearInterval(check); resolve(); }
      }, 5);
    });
    await new Promise((r) => setTimeout(r, 20 + ((point * 37) % 300)));
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const acked = Math.max(0, ...[...out.matchAll(/ACK (\d+)/g)].map((m) => Number(m[1])));
    const s = await Store.open({ path, name: 'db' });
    const versions = s.keys().map((k) => s.get(k).v);
    await s.close();
    const v = versions.length ? versions[0] : 0;
    assert.ok(versions.every((x) => x === v), `point ${point}: a partial batch was replayed: ${versions}`);
    assert.ok(versions.length === 0 || versions.length === KEYS, `point ${point}: ${versions.length} keys`);
    assert.ok(v >= acked, `point ${point}: batch ${acked} was acknowledged, found ${v}`);
  }
  t.diagnostic(`reliability: node kill points ${points}, keys checked ${points * KEYS}, partial batches 0, failed opens 0`);
});

test('a log that is mostly overwritten compacts on its own', async () => {
  // Regression: the Node.js backend never compacted unless asked, so overwrites grew the log
  // for ever.
  const path = fresh();
  const s = await Store.open({ path, name: 'db' });
  const value = 'v'.repeat(64 * 1024);
  // 480 writes of 64 KiB: 30 MiB written, 640 KiB live.
  for (let round = 0; round < 480; round++) {
    s.set(`k${round % 10}`, `${round}:${value}`);
    if (round % 4 === 3) await s.flush();
  }
  await s.flush();
  // The compaction runs after a flush, in the background; close waits for queued jobs.
  await s.close();
  const bytes = segments(join(path, 'db')).reduce((n, f) => n + statSync(join(path, 'db', f)).size, 0);
  // Compaction starts at 16 MiB on disk with half of it dead: the log never gets far past it.
  assert.ok(bytes < 18 * 1024 * 1024, `the log holds ${bytes} bytes`);
  const t = await Store.open({ path, name: 'db' });
  for (let k = 0; k < 10; k++) assert.equal(t.get(`k${k}`), `${470 + k}:${value}`);
  await t.close();
});
