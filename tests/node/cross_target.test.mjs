// One directory, two builds: a database written by the Rust crate (examples/cross_target.rs)
// opens in Node.js with the same keys, values, kinds, tags and TTLs, and one written by Node.js
// opens in Rust. Both sides write the same data set; expired and deleted keys must stay gone.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { buildRustExample, importTidekv } from './package.mjs';

let Store;
let example;

before(async () => {
  ({ Store } = await importTidekv());
  example = buildRustExample();
});

const rust = (...args) => execFileSync(example, args, { encoding: 'utf8' });
const fresh = () => mkdtempSync(join(tmpdir(), 'tidekv-cross-'));
const BIG = 'tide '.repeat(1000);
const HOUR = 3_600_000;

/** The data set of examples/cross_target.rs, written from Node.js. */
async function writeFromNode(path) {
  const s = await Store.open({ path, name: 'shared', compression: true });
  s.set('bin', new Uint8Array([0, 1, 255]), { tags: ['b'] });
  s.set('txt', 'héllo', { ttl: HOUR, tags: ['a', 'b'] });
  s.set('obj', { deep: [1, { x: null }] });
  s.set('big', BIG);
  s.set('gone', 'soon');
  s.delete('gone');
  s.set('short', 'x', { ttl: 150 });
  s.namespace('users').set('u1', 'ada', { tags: ['admin'] });
  const deadline = s.getWithMetadata('short').metadata.expiresAt;
  await s.close();
  return deadline;
}

async function waitPast(deadline) {
  while (Date.now() <= deadline) await new Promise((r) => setTimeout(r, 20));
}

test('a database written by the Rust crate opens in Node.js with everything intact', async () => {
  const path = fresh();
  rust('write', path, 'shared');
  const s = await Store.open({ path, name: 'shared', compression: true });
  // `short` had 150 ms to live; wait it out from its own deadline, then look again.
  const short = s.getWithMetadata('short');
  if (short) await waitPast(short.metadata.expiresAt);
  assert.deepEqual(s.keys(), ['big', 'bin', 'obj', 'txt']);
  assert.deepEqual(s.get('bin'), new Uint8Array([0, 1, 255]));
  assert.equal(s.get('txt'), 'héllo');
  assert.deepEqual(s.get('obj'), { deep: [1, { x: null }] });
  assert.equal(s.get('big'), BIG);
  const txt = s.getWithMetadata('txt').metadata;
  assert.deepEqual([txt.kind, txt.tags, txt.expiresAt - txt.createdAt], ['text', ['a', 'b'], HOUR]);
  assert.deepEqual(s.getWithMetadata('bin').metadata.kind, 'bytes');
  assert.deepEqual(s.getWithMetadata('obj').metadata.kind, 'json');
  assert.equal(s.getWithMetadata('big').metadata.compressed, true);
  assert.deepEqual(s.queryByTags(['b']), ['bin', 'txt']);
  assert.equal(s.get('gone'), undefined);
  assert.equal(s.namespace('users').get('u1'), 'ada');
  assert.deepEqual(s.namespace('users').queryByTags(['admin']), ['u1']);
  // Node appends to the Rust-written log; Rust reads the result back.
  s.set('from-node', 'hi', { tags: ['n'] });
  await s.close();
  const lines = rust('dump', path, 'shared').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => `${l.namespace}/${l.key}`), ['/big', '/bin', '/from-node', '/obj', '/txt', 'users/u1']);
});

test('a database written by Node.js opens in the Rust crate with everything intact', async () => {
  const path = fresh();
  const deadline = await writeFromNode(path);
  assert.deepEqual(readdirSync(join(path, 'shared')).sort(), ['LOCK.owner.0000000000000001', 'seg-0000000000000001.tkv']);
  await waitPast(deadline);
  const lines = rust('dump', path, 'shared').trim().split('\n').map((l) => JSON.parse(l));
  const byKey = Object.fromEntries(lines.map((l) => [`${l.namespace}/${l.key}`, l]));
  assert.deepEqual(Object.keys(byKey), ['/big', '/bin', '/obj', '/txt', 'users/u1']);
  const text = (hex) => Buffer.from(hex, 'hex').toString('utf8');
  assert.deepEqual([byKey['/bin'].kind, byKey['/bin'].hex, byKey['/bin'].tags], ['bytes', '0001ff', ['b']]);
  assert.deepEqual([byKey['/txt'].kind, text(byKey['/txt'].hex), byKey['/txt'].tags], ['text', 'héllo', ['a', 'b']]);
  assert.equal(byKey['/txt'].expiresAt - byKey['/txt'].createdAt, HOUR);
  assert.deepEqual([byKey['/obj'].kind, JSON.parse(text(byKey['/obj'].hex))], ['json', { deep: [1, { x: null }] }]);
  assert.deepEqual([text(byKey['/big'].hex) === BIG, byKey['/big'].compressed], [true, true]);
  assert.deepEqual([text(byKey['users/u1'].hex), byKey['users/u1'].tags], ['ada', ['admin']]);
});

test('a database held open by a Rust process is refused by Node.js with Locked', async () => {
  const path = fresh();
  const child = spawn(example, ['hold', path, 'shared'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = await once(child.stdout, 'data');
  assert.equal(line.toString().trim(), 'holding');
  await assert.rejects(Store.open({ path, name: 'shared' }), (e) => e.code === 'Locked');
  child.stdin.end();
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const s = await Store.open({ path, name: 'shared' });
  await s.close();
});

test('a database held open by Node.js is refused by a Rust process with Locked', async () => {
  const path = fresh();
  const s = await Store.open({ path, name: 'shared' });
  s.set('k', 'v');
  await s.flush();
  assert.throws(() => execFileSync(example, ['dump', path, 'shared'], { encoding: 'utf8', stdio: 'pipe' }),
    (e) => e.status !== 0 && /Locked/.test(e.stderr));
  await s.close();
  assert.match(rust('dump', path, 'shared'), /"key":"k"/);
});

test('values a Rust program sets as plain Rust types read back in Node.js as their JS kinds', async () => {
  const path = fresh();
  rust('plain', path, 'shared');
  const s = await Store.open({ path, name: 'shared' });
  // `store.set("k", "hello")`: a &str is text, so JavaScript gets a string, not bytes.
  assert.equal(s.get('k'), 'hello');
  assert.equal(s.get('owned'), 'wörld');
  assert.equal(s.get('borrowed'), 'borrowed');
  assert.deepEqual(s.get('raw'), new Uint8Array([0, 1, 255]));
  assert.deepEqual(s.get('slice'), new Uint8Array([7, 8]));
  // `set_json(&map)` (feature serde, which the example is built with) is JSON.
  assert.deepEqual(s.get('json'), { a: 1, b: 2 });
  const kinds = Object.fromEntries(s.keys().map((k) => [k, s.getWithMetadata(k).metadata.kind]));
  assert.deepEqual(kinds, { borrowed: 'text', json: 'json', k: 'text', owned: 'text', raw: 'bytes', slice: 'bytes' });
  await s.close();
});
