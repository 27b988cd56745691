// What cache users reach for, in the browser build on IndexedDB (headless Chromium, the packed
// tarball): the memory cap and its evictions across a reload, getOrSet without a stampede,
// entries/size/clear, and export/import in the CLI's dump format against the Rust CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildRustCli } from '../node/package.mjs';
import { openPage, reload, useBrowser } from './harness.mjs';

let url;
let context;
useBrowser((env) => ({ url, context } = env));

test('bad maxMemory and eviction options are refused in the browser and nothing is opened', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const out = [];
    for (const options of [{ maxMemory: 0 }, { maxMemory: -5 }, { maxMemory: 0.5 }, { eviction: 'random' }]) {
      try {
        await Store.open({ name: 'refused', ...options });
        out.push('opened');
      } catch (e) {
        out.push(`${e.constructor.name} ${e.code}`);
      }
    }
    const names = (await indexedDB.databases()).map((d) => d.name);
    return { out, created: names.some((n) => n.includes('refused')) };
  });
  assert.deepEqual(got.out, ['RangeError InvalidOption', 'RangeError InvalidOption', 'RangeError InvalidOption', 'TypeError InvalidType']);
  assert.equal(got.created, false);
  await page.close();
});

test('under maxMemory evicted keys are reported, counted and gone from IndexedDB after a reload', async () => {
  const page = await openPage(context, url);
  const first = await page.evaluate(async () => {
    const s = await Store.open({ name: 'capped', maxMemory: 20_000 });
    const evicted = [];
    s.on('change', (e) => e.op === 'evict' && evicted.push(e.key));
    let over = 0;
    for (let i = 0; i < 200; i++) {
      s.set(`k${i}`, 'x'.repeat(200));
      if (s.stats().memoryBytes > 20_000) over += 1;
    }
    let tooLarge;
    try {
      s.set('huge', 'x'.repeat(30_000));
    } catch (e) {
      tooLarge = e.code;
    }
    const out = { evicted, evictions: s.stats().evictions, size: s.size, keys: s.keys(), over, tooLarge, huge: s.has('huge') };
    await s.close();
    return out;
  });
  assert.ok(first.evictions > 0);
  assert.equal(first.evictions, first.evicted.length);
  assert.equal(first.size + first.evicted.length, 200);
  assert.equal(first.over, 0, 'memoryBytes never passed the cap');
  assert.deepEqual([first.tooLarge, first.huge], ['ValueTooLarge', false]);
  await reload(page);
  const keys = await page.evaluate(async () => {
    const s = await Store.open({ name: 'capped' });
    const keys = s.keys();
    await s.close();
    return keys;
  });
  assert.deepEqual(keys, first.keys, 'IndexedDB holds exactly the keys that were not evicted');
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('getOrSet runs one loader for 100 concurrent misses; a throwing or empty loader stores nothing', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'stampede' });
    let calls = 0;
    const loader = async () => {
      calls += 1;
      await new Promise((r) => setTimeout(r, 20));
      return { v: 1 };
    };
    const results = await Promise.all(Array.from({ length: 100 }, () => s.getOrSet('hot', loader, { ttl: 60_000 })));
    const failures = await Promise.allSettled([
      s.getOrSet('bad', () => { throw new Error('boom'); }),
      s.getOrSet('empty', async () => undefined),
    ]);
    const out = {
      calls,
      same: results.every((r) => r.v === 1),
      stored: s.get('hot'),
      failures: failures.map((f) => `${f.status} ${f.reason?.constructor.name} ${f.reason?.message}`),
      bad: s.has('bad'),
      empty: s.has('empty'),
    };
    await s.close();
    return out;
  });
  assert.equal(got.calls, 1);
  assert.equal(got.same, true);
  assert.deepEqual(got.stored, { v: 1 });
  assert.equal(got.failures[0], 'rejected Error boom');
  assert.match(got.failures[1], /^rejected TypeError .*returned undefined/);
  assert.deepEqual([got.bad, got.empty], [false, false]);
  await page.close();
});

test('entries() walks every key once, size counts them and clear() removes them durably', async () => {
  const page = await openPage(context, url);
  const got = await page.evaluate(async () => {
    const s = await Store.open({ name: 'walk' });
    for (let i = 0; i < 600; i++) s.set(`k${i}`, i, { tags: ['t'] });
    s.namespace('keep').set('x', 'kept');
    const keys = new Set();
    let dup = 0;
    let shape = '';
    for (const [key, value, metadata] of s.entries()) {
      if (keys.has(key)) dup += 1;
      keys.add(key);
      shape = `${typeof value} ${metadata.tags}`;
    }
    const out = { walked: keys.size, dup, shape, size: s.size, cleared: s.clear(), after: s.size };
    await s.close();
    return out;
  });
  assert.deepEqual(got, { walked: 600, dup: 0, shape: 'number t', size: 600, cleared: 600, after: 0 });
  await reload(page);
  const reopened = await page.evaluate(async () => {
    const s = await Store.open({ name: 'walk' });
    const out = [s.size, s.namespace('keep').get('x')];
    await s.close();
    return out;
  });
  assert.deepEqual(reopened, [0, 'kept']);
  await page.close();
});

test('a dump made by the Rust CLI imports in the browser, and a browser export loads with `tidekv load`', async () => {
  const cli = buildRustCli();
  const dir = mkdtempSync(join(tmpdir(), 'tidekv-browser-dump-'));
  const run = (...args) => execFileSync(cli, ['--dir', dir, ...args], { encoding: 'utf8' });
  run('set', 'greeting', 'héllo', '--tag', 'x', '--ttl', '1h');
  run('--ns', 'users', 'set', 'u1', 'ada');
  writeFileSync(join(dir, 'bin.jsonl'), '{"ns":"","key":"bin","kind":"bytes","value":"AAH/","encoding":"base64","tags":[],"expires_at":null}\n');
  run('load', join(dir, 'bin.jsonl'));
  const rustDump = run('dump');

  const page = await openPage(context, url);
  const got = await page.evaluate(async (dump) => {
    const s = await Store.open({ name: 'imported' });
    const report = await s.import(dump);
    let truncated;
    try {
      await s.import(`{"ns":"","key":"late","value":"x"}\n${dump.slice(0, -20)}`);
    } catch (e) {
      truncated = `${e.constructor.name} ${e.message}`;
    }
    s.set('from-browser', { n: 1 });
    await s.close();
    const t = await Store.open({ name: 'imported' });
    const out = {
      report,
      truncated,
      late: t.has('late'),
      greeting: t.get('greeting'),
      bin: Array.from(t.get('bin')),
      u1: t.namespace('users').get('u1'),
      exported: await t.export(),
    };
    await t.close();
    return out;
  }, rustDump);
  assert.deepEqual(got.report, { loaded: 3, expired: 0 });
  assert.match(got.truncated, /^RangeError tidekv: import: line 4: /);
  assert.equal(got.late, false, 'nothing of a bad dump is imported');
  assert.deepEqual([got.greeting, got.bin, got.u1], ['héllo', [0, 1, 255], 'ada']);

  const back = mkdtempSync(join(tmpdir(), 'tidekv-browser-load-'));
  writeFileSync(join(back, 'browser.jsonl'), got.exported);
  assert.match(execFileSync(cli, ['--dir', back, 'load', join(back, 'browser.jsonl')], { encoding: 'utf8' }), /loaded 4 keys/);
  const strip = (dump) => dump.replace(/"(created|updated)_at":\d+/g, '');
  assert.equal(strip(execFileSync(cli, ['--dir', back, 'dump'], { encoding: 'utf8' })), strip(got.exported));
  assert.deepEqual(page.errors, []);
  await page.close();
});
