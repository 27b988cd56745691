// The bad-input matrix of docs/BAD_INPUT.md, Node.js rows: each bad input gets a typed, clear
// error, and what was stored before is untouched.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { importTidekv } from './package.mjs';

let Store;
before(async () => {
  ({ Store } = await importTidekv());
});

const fresh = () => mkdtempSync(join(tmpdir(), 'tidekv-bad-'));
const segments = (dir) => readdirSync(dir).filter((f) => /^seg-[0-9a-f]{16}\.tkv$/.test(f)).sort();

test('a path that is a file is refused clearly and the file is untouched', async () => {
  const dir = fresh();
  const file = join(dir, 'not-a-dir');
  writeFileSync(file, 'precious');
  for (const path of [file, join(file, 'below')]) {
    await assert.rejects(Store.open({ path }), (e) => e instanceof RangeError && e.code === 'InvalidOption' && e.message.includes('not a directory'));
  }
  assert.equal(readFileSync(file, 'utf8'), 'precious');
});

test('TTLs too large for an exact deadline, lone surrogates and odd namespace names', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  s.set('before', 'kept');
  for (const ttl of [2 ** 60, 2 ** 53, Number.MAX_VALUE]) {
    assert.throws(() => s.set('k', 'v', { ttl }), (e) => e instanceof RangeError && e.code === 'InvalidTtl', String(ttl));
    assert.throws(() => s.expire('before', ttl), (e) => e instanceof RangeError && e.code === 'InvalidTtl');
  }
  // Just under: the deadline would pass 2^53 - 1 ms after the epoch.
  assert.throws(() => s.set('k', 'v', { ttl: 2 ** 53 - 1 }), (e) => e.code === 'InvalidTtl');
  assert.throws(() => s.set('a\uD800', 'v'), (e) => e instanceof TypeError && e.code === 'InvalidType');
  assert.throws(() => s.set('k'.repeat(65_537), 'v'), (e) => e instanceof RangeError && e.code === 'InvalidKey');
  const odd = ['..', '../../etc', 'a/b', 'a\\b', 'nul\0inside', 'n'.repeat(300)];
  for (const name of odd) s.namespace(name).set('k', name);
  assert.deepEqual(s.keys(), ['before']);
  await s.close();
  assert.deepEqual(readdirSync(path), ['default'], 'namespaces never become paths');
  const t = await Store.open({ path });
  for (const name of odd) assert.equal(t.namespace(name).get('k'), name);
  assert.equal(t.get('before'), 'kept');
  await t.close();
});

test('a segment from a newer format version is refused naming it, and left as it is', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  s.set('k', 'v');
  await s.close();
  const dir = join(path, 'default');
  const first = readFileSync(join(dir, segments(dir)[0]));
  const header = Buffer.from(first.subarray(0, 32));
  header[8] = 3; // version 3 (the header CRC is checked only for a known version)
  const newer = join(dir, 'seg-00000000000000ff.tkv');
  writeFileSync(newer, header);
  await assert.rejects(Store.open({ path }), (e) => e.code === 'Corrupt' && e.message.includes('version 3') && e.message.includes('newer'));
  assert.deepEqual(readFileSync(newer), header);
});

test('a torn write of a value holding tidekv frames is cut back and nothing phantom is replayed', async () => {
  const donorPath = fresh();
  const donor = await Store.open({ path: donorPath });
  for (let i = 0; i < 5; i++) {
    donor.set(`phantom-${i}`, 'never written here');
    await donor.flush();
  }
  await donor.close();
  const donorDir = join(donorPath, 'default');
  const carried = readFileSync(join(donorDir, segments(donorDir)[0]));
  const path = fresh();
  const s = await Store.open({ path });
  s.set('before', 'kept');
  await s.flush();
  const dir = join(path, 'default');
  const seg = join(dir, segments(dir)[0]);
  const good = statSync(seg).size;
  s.set('backup', new Uint8Array(carried));
  await s.close();
  const full = readFileSync(seg);
  for (let cut = good + 1; cut < full.length; cut += 13) {
    writeFileSync(seg, full.subarray(0, cut));
    const t = await Store.open({ path });
    assert.deepEqual(t.keys(), ['before'], `cut ${cut}`);
    await t.close();
    assert.equal(statSync(seg).size, good, `cut ${cut}: the torn write is cut back`);
  }
});

test('close twice and use after close reject or throw with code Closed', async () => {
  const path = fresh();
  const s = await Store.open({ path });
  const ns = s.namespace('n');
  s.set('k', 'v');
  await s.close();
  await assert.rejects(s.close(), (e) => e.code === 'Closed');
  assert.throws(() => s.set('k', 'w'), (e) => e.code === 'Closed');
  assert.throws(() => ns.get('k'), (e) => e.code === 'Closed');
  assert.throws(() => s.setMany([['a', 1]]), (e) => e.code === 'Closed');
  await assert.rejects(s.flush(), (e) => e.code === 'Closed');
  const t = await Store.open({ path });
  assert.equal(t.get('k'), 'v');
  await t.close();
});

test('persist is for browser storage: Node.js refuses it clearly', async () => {
  await assert.rejects(Store.open({ path: fresh(), persist: true }), (e) => e instanceof TypeError && e.message.includes('persist'));
  const s = Store.memory();
  assert.equal(s.stats().storage, null);
});

test('Store.open without path or backend is refused naming both fixes, and nothing is created', async () => {
  const cwd = fresh();
  const before = readdirSync(cwd);
  for (const options of [undefined, {}, { name: 'db' }, { name: 'db', bufferSize: 1024 }]) {
    await assert.rejects(Store.open(options), (e) =>
      e instanceof TypeError && e.code === 'InvalidType' && e.message.includes('option path') && e.message.includes("backend: 'memory'"),
    JSON.stringify(options));
  }
  assert.deepEqual(readdirSync(cwd), before);
  // Said explicitly, a store that keeps nothing opens.
  const s = await Store.open({ name: 'db', backend: 'memory' });
  s.set('k', 'v');
  assert.equal(s.get('k'), 'v');
  await s.close();
});

test('a Date, alone or inside an object, is refused with a TypeError naming a fix, and nothing is stored', async () => {
  const s = Store.memory();
  s.set('when', 'before');
  const cases = [[new Date(0), 'a Date:'], [{ at: new Date(0) }, 'a Date (at property "at")'], [[1, new Date(0)], 'a Date (at property "1")']];
  for (const [value, says] of cases) {
    assert.throws(() => s.set('when', value), (e) =>
      e instanceof TypeError && e.code === 'InvalidType' && e.message.includes(says) && e.message.includes('getTime()'),
    String(value));
    assert.throws(() => s.setMany([['other', 1], ['when', value]]), (e) => e instanceof TypeError && e.message.includes('a Date'));
  }
  assert.equal(s.get('when'), 'before');
  assert.equal(s.has('other'), false);
  await assert.rejects(s.getOrSet('later', () => new Date(0)), (e) => e instanceof TypeError && e.code === 'InvalidType');
  assert.equal(s.has('later'), false);
  // What the message suggests round-trips exactly.
  const at = new Date(1_700_000_000_123);
  s.set('ms', at.getTime());
  s.set('iso', at.toISOString());
  assert.equal(new Date(s.get('ms')).getTime(), at.getTime());
  assert.equal(new Date(s.get('iso')).getTime(), at.getTime());
});

test("close() on a namespace handle rejects with a TypeError and leaves the store open", async () => {
  const path = fresh();
  const s = await Store.open({ path, name: 'db' });
  const jobs = s.namespace('jobs');
  jobs.set('k', 'v');
  await assert.rejects(jobs.close(), (e) =>
    e instanceof TypeError && e.code === 'InvalidType' && e.message.includes('namespace handle'));
  jobs.set('k2', 'still open');
  s.set('root', 1);
  await s.flush();
  assert.equal(jobs.get('k2'), 'still open');
  await s.close();
  assert.throws(() => jobs.get('k'), (e) => e.code === 'Closed');
  const t = await Store.open({ path, name: 'db' });
  assert.deepEqual(t.namespace('jobs').keys(), ['k', 'k2']);
  await t.close();
});
