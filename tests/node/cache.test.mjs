// What cache users reach for, in the Node.js build (packed tarball, file backend): a memory cap
// with eviction, getOrSet without a stampede, entries/size/clear, export/import in the CLI's
// dump format (against the Rust CLI both ways), and silence in the default success path.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { appDir, buildRustCli, importTidekv } from './package.mjs';

let Store;
before(async () => {
  ({ Store } = await importTidekv());
});

const fresh = () => mkdtempSync(join(tmpdir(), 'tidekv-cache-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `source` as an ES module inside the app folder (so 'tidekv' resolves as for a user). */
function runScript(source, args = []) {
  const file = join(appDir(), `script-${process.pid}-${Math.random().toString(16).slice(2)}.mjs`);
  writeFileSync(file, source);
  return spawnSync(process.execPath, [file, ...args], { encoding: 'utf8', timeout: 60_000 });
}

/** Every entry of `iterable`, sorted by key. */
const sorted = (iterable) => [...iterable].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));

// ---- memory cap --------------------------------------------------------------------------

test('maxMemory of 0, negative, fractional or not a number and unknown eviction policies are refused and nothing is opened', async () => {
  const path = fresh();
  for (const [maxMemory, ctor, code] of [[0, RangeError, 'InvalidOption'], [-1, RangeError, 'InvalidOption'], [1.5, RangeError, 'InvalidOption'], [Infinity, RangeError, 'InvalidOption'], ['1mb', TypeError, 'InvalidType']]) {
    await assert.rejects(Store.open({ path, name: 'capped', maxMemory }), (e) => e instanceof ctor && e.code === code && /maxMemory/.test(e.message), String(maxMemory));
    assert.throws(() => Store.memory({ maxMemory }), (e) => e instanceof ctor && e.code === code, String(maxMemory));
  }
  for (const eviction of ['fifo', 'LRU', 1]) {
    await assert.rejects(Store.open({ path, name: 'capped', eviction }), (e) => e instanceof TypeError && /eviction/.test(e.message), String(eviction));
  }
  assert.equal(existsSync(join(path, 'capped')), false, 'a refused open creates nothing');
});

test('under maxMemory the store stays within the cap, counts and reports evictions, and evicted keys stay gone after reopen', async () => {
  const path = fresh();
  const cap = 20_000;
  const s = await Store.open({ path, name: 'db', maxMemory: cap });
  const evicted = [];
  s.on('change', (e) => e.op === 'evict' && evicted.push(e.key));
  for (let i = 0; i < 200; i++) {
    s.set(`k${i}`, 'x'.repeat(200));
    assert.ok(s.stats().memoryBytes <= cap, `memoryBytes ${s.stats().memoryBytes} within the cap after set ${i}`);
  }
  const stats = s.stats();
  assert.ok(stats.evictions > 0);
  assert.equal(stats.evictions, evicted.length);
  assert.equal(s.size + evicted.length, 200);
  assert.equal(s.get('k199'), 'x'.repeat(200), 'the newest key stays');
  for (const key of evicted) assert.equal(s.has(key), false);
  const kept = s.keys();
  await s.close();
  const t = await Store.open({ path, name: 'db' });
  assert.deepEqual(t.keys(), kept, 'the files hold exactly the keys that were not evicted');
  await t.close();
});

test('a value larger than maxMemory is refused with ValueTooLarge and stores nothing', async () => {
  const s = Store.memory({ maxMemory: 1_000 });
  s.set('small', 'ok');
  assert.throws(() => s.set('big', 'x'.repeat(2_000)), (e) => e instanceof RangeError && e.code === 'ValueTooLarge');
  assert.equal(s.has('big'), false);
  assert.equal(s.get('small'), 'ok', 'the refused write evicted nothing');
  assert.equal(s.stats().evictions, 0);
});

test("eviction 'nearest-expiry' evicts the key whose TTL runs out first", () => {
  const s = Store.memory({ maxMemory: 4_000, eviction: 'nearest-expiry' });
  s.set('soon', 'x'.repeat(500), { ttl: 1_000 });
  s.set('later', 'x'.repeat(500), { ttl: 3_600_000 });
  s.set('never', 'x'.repeat(500));
  for (let i = 0; s.has('soon'); i++) s.set(`filler${i}`, 'y'.repeat(500), { ttl: 7_200_000 });
  assert.equal(s.has('later'), true);
  assert.equal(s.has('never'), true);
});

// ---- getOrSet ----------------------------------------------------------------------------

test('getOrSet returns a live value without calling the loader, and stores a loaded one with its options', async () => {
  const s = Store.memory();
  s.set('k', 'held');
  assert.equal(await s.getOrSet('k', () => assert.fail('the loader ran for a live key')), 'held');
  const loaded = await s.getOrSet('user:1', async () => ({ name: 'Ada' }), { ttl: 60_000, tags: ['users'] });
  assert.deepEqual(loaded, { name: 'Ada' });
  assert.deepEqual(s.get('user:1'), { name: 'Ada' });
  const meta = s.getWithMetadata('user:1').metadata;
  assert.deepEqual(meta.tags, ['users']);
  assert.ok(meta.expiresAt - Date.now() > 59_000);
  assert.deepEqual(await s.getOrSet('bin', () => new Uint8Array([0, 255])), new Uint8Array([0, 255]));
});

test('100 concurrent getOrSet calls on one missing key run the loader once and all get its value', async () => {
  const s = Store.memory();
  let calls = 0;
  const loader = async () => {
    calls += 1;
    await sleep(20);
    return { n: 42 };
  };
  const results = await Promise.all(Array.from({ length: 100 }, () => s.getOrSet('hot', loader)));
  assert.equal(calls, 1);
  assert.equal(results.length, 100);
  for (const r of results) assert.deepEqual(r, { n: 42 });
  // Once stored it is a plain hit; a namespace is a different key.
  assert.deepEqual(await s.getOrSet('hot', loader), { n: 42 });
  assert.deepEqual(await s.namespace('other').getOrSet('hot', loader), { n: 42 });
  assert.equal(calls, 2);
});

test('a loader that throws or rejects reaches every waiter and stores nothing; the next call loads again', async () => {
  const s = Store.memory();
  let calls = 0;
  const boom = new Error('backend down');
  const failing = async () => {
    calls += 1;
    await sleep(10);
    throw boom;
  };
  const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => s.getOrSet('k', failing)));
  assert.equal(calls, 1);
  for (const o of outcomes) assert.deepEqual([o.status, o.reason], ['rejected', boom]);
  assert.equal(s.has('k'), false);
  await assert.rejects(s.getOrSet('k', () => { throw boom; }), (e) => e === boom);
  assert.equal(s.has('k'), false);
  assert.equal(await s.getOrSet('k', () => 'second try'), 'second try');
});

test('a loader that returns nothing rejects every waiter with a TypeError and stores nothing', async () => {
  const s = Store.memory();
  let calls = 0;
  const nothing = async () => {
    calls += 1;
  };
  const outcomes = await Promise.allSettled([s.getOrSet('k', nothing), s.getOrSet('k', nothing)]);
  assert.equal(calls, 1);
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    assert.ok(o.reason instanceof TypeError && o.reason.code === 'InvalidType' && /returned undefined/.test(o.reason.message), String(o.reason));
  }
  assert.equal(s.has('k'), false);
  await assert.rejects(s.getOrSet('f', () => () => 1), (e) => e instanceof TypeError && /function/.test(e.message));
  assert.equal(s.has('f'), false);
});

test('getOrSet with a bad key, bad options or no loader rejects as set throws, before any loader runs', async () => {
  const s = Store.memory();
  const never = () => assert.fail('the loader ran for a refused call');
  await assert.rejects(s.getOrSet('', never), (e) => e instanceof RangeError && e.code === 'InvalidKey');
  await assert.rejects(s.getOrSet(1, never), (e) => e instanceof TypeError && e.code === 'InvalidType');
  await assert.rejects(s.getOrSet('k', never, { ttl: -1 }), (e) => e instanceof RangeError && e.code === 'InvalidTtl');
  await assert.rejects(s.getOrSet('k', never, { ttl: 2 ** 60 }), (e) => e instanceof RangeError && e.code === 'InvalidTtl');
  await assert.rejects(s.getOrSet('k', never, { tags: [''] }), (e) => e.code === 'InvalidName');
  await assert.rejects(s.getOrSet('k', never, { tll: 5 }), (e) => e instanceof TypeError && /tll/.test(e.message));
  await assert.rejects(s.getOrSet('k', 'value'), (e) => e instanceof TypeError && /loader/.test(e.message));
  assert.equal(s.size, 0);
  await s.close();
  await assert.rejects(s.getOrSet('k', never), (e) => e.code === 'Closed');
});

// ---- entries, size, clear ----------------------------------------------------------------

test('entries() walks every live key once as [key, value, metadata], by prefix, while writes go on', async () => {
  const s = Store.memory();
  for (let i = 0; i < 1_000; i++) s.set(`k${String(i).padStart(4, '0')}`, { i }, { tags: i % 2 ? ['odd'] : [] });
  s.set('other', new Uint8Array([1]));
  s.set('dead', 'x', { ttl: 1 });
  s.namespace('ns').set('k0000', 'elsewhere');
  await sleep(5);
  const all = sorted(s.entries());
  assert.equal(all.length, 1_001);
  assert.deepEqual(all[0], ['k0000', { i: 0 }, s.getWithMetadata('k0000').metadata]);
  assert.deepEqual(all[1][2].tags, ['odd']);
  assert.deepEqual(all[1_000].slice(0, 2), ['other', new Uint8Array([1])]);
  assert.equal(sorted(s.entries('k09')).length, 100);
  assert.deepEqual([...s.entries('nothing')], []);
  // Writes between chunks: a key live for the whole walk comes exactly once.
  const seen = new Set();
  let n = 0;
  for (const [key] of s.entries('k')) {
    assert.ok(!seen.has(key), `${key} came twice`);
    seen.add(key);
    if (n++ % 7 === 0) {
      s.set(`new${n}`, 'x');
      s.delete(`k${String(999 - n).padStart(4, '0')}`);
    }
  }
  for (let i = 0; i < 1_000; i++) {
    const key = `k${String(i).padStart(4, '0')}`;
    if (s.has(key)) assert.ok(seen.has(key), `${key} was live throughout and never came`);
  }
  // Leaving early is fine, and reading does not count as gets.
  const gets = s.stats().gets;
  for (const entry of s.entries()) {
    assert.equal(entry.length, 3);
    break;
  }
  assert.equal(s.stats().gets, gets);
  assert.throws(() => s.entries(5), (e) => e instanceof TypeError && /prefix/.test(e.message));
});

test('size counts live keys of the namespace and clear() removes them as one change, durable after reopen', async () => {
  const path = fresh();
  const s = await Store.open({ path, name: 'db' });
  for (let i = 0; i < 300; i++) s.set(`k${i}`, i);
  s.set('short', 1, { ttl: 1 });
  s.namespace('keep').set('x', 'kept');
  await s.flush();
  await sleep(5);
  assert.equal(s.size, 300);
  assert.equal(s.namespace('keep').size, 1);
  const changes = [];
  s.on('change', (e) => changes.push(e.op));
  assert.equal(s.clear(), 300);
  assert.equal(s.size, 0);
  assert.deepEqual(s.keys(), []);
  // 300 deletes; `short` may add its expiry if no tick has swept it yet (timing decides).
  assert.equal(changes.filter((op) => op === 'delete').length, 300);
  assert.deepEqual(changes.filter((op) => op !== 'delete').filter((op) => op !== 'expire'), []);
  assert.ok(changes.length <= 301, `${changes.length} changes`);
  assert.equal(s.namespace('keep').get('x'), 'kept');
  assert.equal(s.clear(), 0);
  await s.close();
  const t = await Store.open({ path, name: 'db' });
  assert.equal(t.size, 0);
  assert.equal(t.namespace('keep').get('x'), 'kept');
  await t.close();
  assert.throws(() => t.size, (e) => e.code === 'Closed');
  assert.throws(() => t.clear(), (e) => e.code === 'Closed');
});

// ---- export / import ---------------------------------------------------------------------

test('export() writes every namespace in the CLI dump format and import() loads it back exactly', async () => {
  const s = Store.memory();
  s.set('txt', 'hé"llo\n\u0001', { ttl: 3_600_000, tags: ['a', 'b'] });
  s.set('bin', new Uint8Array([0, 1, 255]));
  s.set('obj', { deep: [1, { x: null }] });
  s.namespace('users').set('u1', 'ada', { tags: ['admin'] });
  const text = await s.export();
  const lines = text.split('\n');
  assert.equal(lines.pop(), '', 'every line ends with a newline');
  assert.equal(lines.length, 4);
  const bin = JSON.parse(lines[0]);
  assert.deepEqual(Object.keys(bin), ['created_at', 'encoding', 'expires_at', 'key', 'kind', 'ns', 'tags', 'updated_at', 'value']);
  assert.deepEqual([bin.key, bin.kind, bin.encoding, bin.value, bin.expires_at], ['bin', 'bytes', 'base64', 'AAH/', null]);
  const txt = JSON.parse(lines[2]);
  assert.deepEqual([txt.key, txt.value, txt.tags, txt.expires_at], ['txt', 'hé"llo\n\u0001', ['a', 'b'], s.getWithMetadata('txt').metadata.expiresAt]);
  assert.equal(lines[2], JSON.stringify(txt), 'escaped as JSON.stringify and serde_json escape');
  assert.equal(JSON.parse(lines[3]).ns, 'users');
  assert.equal(await s.namespace('users').export(), text, 'whichever handle: the whole store');

  const t = Store.memory();
  assert.deepEqual(await t.import(text), { loaded: 4, expired: 0 });
  assert.equal(t.get('txt'), 'hé"llo\n\u0001');
  assert.deepEqual(t.get('bin'), new Uint8Array([0, 1, 255]));
  assert.deepEqual(t.get('obj'), { deep: [1, { x: null }] });
  assert.equal(t.getWithMetadata('txt').metadata.expiresAt, s.getWithMetadata('txt').metadata.expiresAt);
  assert.deepEqual(t.namespace('users').queryByTags(['admin']), ['u1']);
  // Created and updated times become the import's, as with `tidekv load`; the rest is equal.
  const strip = (dump) => dump.replace(/"created_at":\d+/g, '').replace(/"updated_at":\d+/g, '');
  assert.equal(strip(await t.export()), strip(text));
  assert.equal(await Store.memory().export(), '');
});

test('import() of a truncated or malformed dump names the bad line and imports nothing', async () => {
  const good = [
    '{"ns":"","key":"a","kind":"text","value":"one","encoding":"utf8","tags":[],"expires_at":null}',
    '{"ns":"other","key":"b","kind":"json","value":"[1]","encoding":"utf8","tags":["t"],"expires_at":null}',
  ];
  const dump = good.join('\n') + '\n' + good[0].replace('"a"', '"c"');
  const cases = [
    [dump.slice(0, -10), 3, /truncated/],
    [`${good[0]}\nnot json\n${good[1]}`, 2, /JSON/],
    [`${good[0]}\n[1,2]`, 2, /not a JSON object/],
    [`${good[0]}\n\n${good[1].replace('"key":"b"', '"key":5')}`, 3, /`key` must be a string/],
    [`${good[0]}\n${good[1].replace('"utf8"', '"base64"').replace('"[1]"', '"!!!!"')}`, 2, /base64/],
    [`${good[0]}\n${good[1].replace('"json"', '"yaml"')}`, 2, /unknown kind "yaml"/],
    [`${good[0]}\n${good[1].replace('"utf8"', '"hex"')}`, 2, /unknown encoding "hex"/],
    [`${good[0]}\n${good[1].replace('["t"]', '"t"')}`, 2, /`tags` must be an array/],
    [`${good[0]}\n${good[1].replace('null}', '-5}')}`, 2, /expires_at/],
    // Engine checks, in a namespace other than the first line's: still nothing imported.
    [`${good[0]}\n${good[1].replace('"key":"b"', '"key":""')}`, 2, /key/],
    [`${good[0]}\n${good[1].replace('"tags":["t"]', '"tags":[""]')}`, 2, /tag/],
  ];
  for (const [text, line, why] of cases) {
    const s = Store.memory();
    s.set('before', 'kept');
    await assert.rejects(s.import(text), (e) => e instanceof RangeError && new RegExp(`import: line ${line}: `).test(e.message) && why.test(e.message), `${line} ${why}`);
    assert.deepEqual(s.keys(), ['before']);
    assert.deepEqual(s.namespace('other').keys(), []);
  }
  const s = Store.memory({ maxValueSize: 2 });
  await assert.rejects(s.import(good.join('\n')), (e) => e.code === 'ValueTooLarge' && /line 1/.test(e.message));
  await assert.rejects(s.import(42), (e) => e instanceof TypeError && /dump/.test(e.message));
  assert.deepEqual(await s.import(''), { loaded: 0, expired: 0 });
  const expired = '{"ns":"","key":"old","value":"x","expires_at":1000}\n';
  assert.deepEqual(await s.import(expired), { loaded: 0, expired: 1 });
  assert.equal(s.size, 0);
});

test('a dump made by the Rust CLI imports in Node.js, and a Node.js export loads with `tidekv load`', async () => {
  const cli = buildRustCli();
  const dir = fresh();
  const run = (...args) => execFileSync(cli, ['--dir', dir, ...args], { encoding: 'utf8' });
  run('set', 'greeting', 'héllo "world"', '--tag', 'x', '--ttl', '1h');
  run('--ns', 'users', 'set', 'u1', 'ada', '--tag', 'admin');
  // A binary value reaches the CLI through its own `load` (the CLI sets only text).
  const binLine = '{"ns":"","key":"bin","kind":"bytes","value":"AAH/","encoding":"base64","tags":[],"expires_at":null}\n';
  writeFileSync(join(dir, 'bin.jsonl'), binLine);
  run('load', join(dir, 'bin.jsonl'));
  const rustDump = run('dump');

  const path = fresh();
  const s = await Store.open({ path, name: 'db' });
  assert.deepEqual(await s.import(rustDump), { loaded: 3, expired: 0 });
  assert.equal(s.get('greeting'), 'héllo "world"');
  assert.deepEqual(s.get('bin'), new Uint8Array([0, 1, 255]));
  assert.deepEqual(s.namespace('users').queryByTags(['admin']), ['u1']);
  const deadline = JSON.parse(rustDump.split('\n').find((l) => l.includes('greeting'))).expires_at;
  assert.equal(s.getWithMetadata('greeting').metadata.expiresAt, deadline);
  s.set('from-node', { n: 1 }, { tags: ['n'] });
  const nodeDump = await s.export();
  await s.close();

  const back = fresh();
  writeFileSync(join(back, 'node.jsonl'), nodeDump);
  assert.match(execFileSync(cli, ['--dir', back, 'load', join(back, 'node.jsonl')], { encoding: 'utf8' }), /loaded 4 keys/);
  const reDumped = execFileSync(cli, ['--dir', back, 'dump'], { encoding: 'utf8' });
  const strip = (dump) => dump.replace(/"created_at":\d+/g, '').replace(/"updated_at":\d+/g, '');
  assert.equal(strip(reDumped), strip(nodeDump), 'the CLI reads back exactly what Node.js wrote');
});

// ---- logging -----------------------------------------------------------------------------

test('the default success path prints nothing, and a failure nobody listens for goes to console.warn', () => {
  const quiet = runScript(`
    import { Store } from 'tidekv';
    const s = await Store.open({ path: process.argv[2], maxMemory: 100000 });
    s.on('change', () => {});
    s.set('k', 'v', { ttl: 1000, tags: ['t'] });
    await s.getOrSet('g', async () => 1);
    for (const e of s.entries()) void e;
    await s.import(await s.export());
    s.clear();
    await s.flush();
    await s.compact();
    await s.close();
  `, [fresh()]);
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.deepEqual([quiet.stdout, quiet.stderr], ['', '']);
  const loud = runScript(`
    import { Store } from 'tidekv';
    const s = Store.memory();
    s.on('change', () => { throw new Error('listener bug'); });
    s.set('k', 'v');
    const heard = [];
    s.on('error', (e) => heard.push(e.code));
    s.set('k', 'w');
    console.log(JSON.stringify(heard));
  `);
  assert.equal(loud.status, 0, loud.stderr);
  assert.match(loud.stderr, /listener threw: listener bug/);
  assert.equal((loud.stderr.match(/tidekv: an? \w+ listener threw/g) ?? []).length, 1, 'once a listener hears errors, nothing is printed');
  assert.equal(loud.stdout.trim(), '["ListenerError"]');
});

test('import() takes minimal lines, as tidekv load does', async () => {
  const s = Store.memory();
  const got = await s.import('{"key":"a","value":"text"}\n{"key":"b","value":{"n":[1,2]}}\n{"ns":"x","key":"c","value":"AAE=","encoding":"base64"}\n');
  assert.deepEqual(got, { loaded: 3, expired: 0 });
  assert.equal(s.get('a'), 'text');
  assert.deepEqual(s.get('b'), { n: [1, 2] });
  assert.deepEqual(s.namespace('x').get('c'), new Uint8Array([0, 1]));
  await assert.rejects(s.import('{"key":"d"}'), (e) => e instanceof RangeError && /line 1: `value` is missing/.test(e.message));
});
