// The npm package's Redis stores (Node.js build: `Store.open({ redis, name })`) against a real
// `redis-server` this file starts on 127.0.0.1 on a free port, in a throwaway directory, saving
// nothing (scripts/install-tools.sh installs Debian's redis-server), and stops by its pid at the
// end. Two stores on one server stand for two processes sharing it; the Rust CLI is a third.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { appDir, buildRustCli, importTidekv } from './package.mjs';

let Store;
let server;
const dir = mkdtempSync(join(tmpdir(), 'tidekv-redis-'));

function freePort() {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => done(port));
    });
  });
}

function answers(port) {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A redis-server on `port` (a free one by default), answering before this resolves. */
async function startServer(port) {
  port ??= await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  const failed = new Promise((_, fail) => child.once('error', (e) => fail(new Error(`redis-server did not start (scripts/install-tools.sh installs it): ${e.message}`))));
  const up = (async () => {
    for (let i = 0; i < 500; i++) {
      if (await answers(port)) return;
      await sleep(20);
    }
    throw new Error('redis-server did not answer within 10 s');
  })();
  await Promise.race([up, failed]);
  return { child, port, url: `redis://127.0.0.1:${port}/` };
}

async function stopServer(s) {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  process.kill(s.child.pid, 'SIGKILL');
  await exited;
}

/** A command through redis-cli, its output trimmed. */
const cli = (...args) => execFileSync('redis-cli', ['-p', String(server.port), ...args], { encoding: 'utf8' }).trim();

/** Polls `f` until it returns something truthy (at most `ms`); returns its last answer. */
async function until(f, ms = 2000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await f();
    if (last) return last;
    await sleep(10);
  }
  return last;
}

let dbs = 0;
/** A fresh database name, so tests never see each other's keys. */
const fresh = () => `db${++dbs}`;

const open = (name, options = {}) => Store.open({ redis: server.url, name, ...options });

before(async () => {
  ({ Store } = await importTidekv());
  server = await startServer();
});

after(async () => {
  if (server) await stopServer(server);
  rmSync(dir, { recursive: true, force: true });
});

test('two stores on one server share data once it is flushed, in the documented layout', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  a.set('text', 'héllo', { tags: ['greeting'] });
  a.set('bytes', new Uint8Array([0, 1, 255]));
  a.namespace('users').set('u1', { name: 'Ada' });
  assert.equal(await b.get('text'), undefined, 'nothing reaches Redis before a flush');
  await a.flush();
  assert.equal(await b.get('text'), 'héllo');
  assert.deepEqual(await b.get('bytes'), new Uint8Array([0, 1, 255]));
  assert.deepEqual(await b.namespace('users').get('u1'), { name: 'Ada' });
  assert.equal(await b.has('missing'), false);
  const meta = (await b.getWithMetadata('text')).metadata;
  assert.deepEqual([meta.kind, meta.tags, meta.expiresAt], ['text', ['greeting'], null]);
  // docs/REDIS.md: records under {tidekv:<db>:<hex(ns)>}:k:<key>, tags in sets and a hash.
  assert.equal(cli('EXISTS', `{tidekv:${name}:}:k:text`), '1');
  assert.equal(cli('EXISTS', `{tidekv:${name}:7573657273}:k:u1`), '1');
  assert.equal(cli('SMEMBERS', `{tidekv:${name}:}:t:greeting`), 'text');
  assert.equal(cli('HGET', `{tidekv:${name}:}:tags`, 'text'), '8:greeting');
  await a.close();
  await b.close();
});

test('a flushed write replaces another store\'s cached copy within 2 s, with a remote change event', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  a.set('k', 'v1');
  await a.flush();
  assert.equal(await b.get('k'), 'v1', 'b now holds a local copy');
  const events = [];
  b.on('change', (e) => events.push(e));
  a.set('k', 'v2');
  await a.flush();
  assert.equal(await until(async () => (await b.get('k')) === 'v2'), true, 'b sees the new value within 2 s');
  assert.ok(
    await until(() => events.some((e) => e.key === 'k' && e.op === 'set' && e.remote)),
    `a remote set event, got ${JSON.stringify(events)}`,
  );
  a.delete('k');
  await a.flush();
  assert.ok(await until(() => events.some((e) => e.key === 'k' && e.op === 'delete' && e.remote)));
  assert.equal(await b.get('k'), undefined);
  // Never an echo of the store's own writes.
  const own = [];
  a.on('change', (e) => own.push(e));
  a.set('mine', 1);
  await a.flush();
  await sleep(100);
  assert.deepEqual(own.map((e) => [e.key, e.op, e.remote]), [['mine', 'set', false]]);
  await a.close();
  await b.close();
});

test('a key with a TTL is expired by Redis itself at its deadline', async () => {
  const name = fresh();
  const a = await open(name);
  a.set('short', 'x', { ttl: 300, tags: ['t'] });
  await a.flush();
  const deadline = (await a.getWithMetadata('short')).metadata.expiresAt;
  const pexpiretime = Number(cli('PEXPIRETIME', `{tidekv:${name}:}:k:short`));
  assert.equal(pexpiretime, deadline, 'PEXPIREAT at the record\'s own deadline');
  while (Date.now() <= deadline + 50) await sleep(20);
  assert.ok(await until(() => cli('EXISTS', `{tidekv:${name}:}:k:short`) === '0'), 'gone from Redis');
  const b = await open(name);
  assert.equal(await b.get('short'), undefined);
  assert.deepEqual(await b.queryByTags(['t']), []);
  await a.close();
  await b.close();
});

test('listings merge Redis with unflushed writes, and a tag query never returns an expired key', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  a.set('user:1', 'a', { tags: ['users', 'admin'] });
  a.set('user:2', 'b', { tags: ['users'] });
  a.set('post:1', 'c', { tags: ['posts'] });
  a.set('user:brief', 'd', { ttl: 200, tags: ['users'] });
  await a.flush();
  // Unflushed changes of b's own: a new key, a re-tagged key and a deleted one.
  b.set('user:3', 'e', { tags: ['users'] });
  b.set('user:2', 'b2', { tags: ['admin'] });
  assert.equal(await b.delete('post:1'), true);
  assert.deepEqual(await b.keys('user:'), ['user:1', 'user:2', 'user:3', 'user:brief']);
  assert.deepEqual(await b.keys(), ['user:1', 'user:2', 'user:3', 'user:brief']);
  assert.deepEqual(await b.queryByTags(['users']), ['user:1', 'user:3', 'user:brief']);
  assert.deepEqual(await b.queryByTags(['users', 'admin']), ['user:1']);
  assert.deepEqual(await b.listTags(), [
    { tag: 'admin', count: 2 },
    { tag: 'users', count: 3 },
  ]);
  await sleep(250);
  assert.deepEqual(await b.queryByTags(['users']), ['user:1', 'user:3']);
  assert.deepEqual(await b.keys('user:'), ['user:1', 'user:2', 'user:3']);
  await b.flush();
  assert.deepEqual(await a.keys(), ['user:1', 'user:2', 'user:3']);
  assert.deepEqual(await a.queryByTags(['admin']), ['user:1', 'user:2']);
  // A prefix with glob characters is matched literally.
  a.set('a*b', 1);
  a.set('axb', 2);
  await a.flush();
  assert.deepEqual(await b.keys('a*'), ['a*b']);
  await a.close();
  await b.close();
});

test('setMany reaches Redis whole: all entries after one flush, none on a bad entry', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  a.setMany([
    ['a', 1],
    ['b', 'two', { tags: ['t'] }],
    ['c', new Uint8Array([3]), { ttl: 60_000 }],
  ]);
  assert.throws(() => a.setMany([['d', 4], ['', 5]]), (e) => e.code === 'InvalidKey' && /entry 1/.test(e.message));
  await a.flush();
  assert.deepEqual(await Promise.all(['a', 'b', 'c', 'd'].map((k) => b.get(k))), [1, 'two', new Uint8Array([3]), undefined]);
  assert.equal(await b.deleteMany(['a', 'b', 'nope']), 2);
  await b.flush();
  assert.deepEqual(await a.keys(), ['c']);
  await a.close();
  await b.close();
});

test('with Redis down writes stay buffered, reads that need Redis reject with Backend, and everything lands after a restart', async () => {
  const name = fresh();
  const a = await open(name, { flushInterval: 50 });
  a.set('before', 'x');
  await a.flush();
  const errors = [];
  a.on('error', (e) => errors.push(e));
  const { port } = server;
  await stopServer(server);
  a.set('during', 'buffered', { tags: ['t'] });
  a.setMany([['m1', 1], ['m2', 2]]);
  await assert.rejects(a.flush(), (e) => e.code === 'Backend' && /Redis/.test(e.message));
  await assert.rejects(a.get('before'), (e) => e.code === 'Backend', 'the copy is dropped: nothing stale is served');
  await assert.rejects(a.get('other'), (e) => e.code === 'Backend' && /Redis/.test(e.message));
  assert.equal(await a.get('during'), 'buffered', 'its own unflushed write is served from memory');
  const stats = a.stats();
  assert.equal(stats.redis.failing, true);
  assert.equal(stats.redis.connected, false);
  assert.match(stats.redis.lastError ?? '', /./);
  assert.match(stats.lastError ?? '', /Redis/);
  assert.ok(stats.flushFailures >= 1);
  assert.ok(stats.bufferBytes > 0);
  assert.ok(errors.length >= 1 && errors.every((e) => e.code === 'Backend'));
  server = await startServer(port);
  // The store retries on its own, with backoff; no flush() is needed.
  assert.ok(await until(() => cli('EXISTS', `{tidekv:${name}:}:k:during`) === '1', 15_000), 'the buffered write lands');
  await a.flush();
  const b = await open(name);
  assert.deepEqual(await Promise.all(['during', 'm1', 'm2'].map((k) => b.get(k))), ['buffered', 1, 2]);
  assert.deepEqual(await b.queryByTags(['t']), ['during']);
  assert.equal(a.stats().redis.failing, false);
  assert.equal(a.stats().redis.connected, true);
  await a.close();
  await b.close();
});

test('bad input: a malformed URL, an unreachable server and options that do not go with redis fail open clearly', async () => {
  await assert.rejects(Store.open({ redis: 'http://127.0.0.1:6379/' }), (e) => e.code === 'InvalidOption' && /redis:\/\//.test(e.message));
  await assert.rejects(Store.open({ redis: 'redis://' }), (e) => e.code === 'InvalidOption');
  await assert.rejects(Store.open({ redis: 42 }), (e) => e instanceof TypeError && /redis/.test(e.message));
  await assert.rejects(Store.open({ redis: server.url, path: dir }), (e) => e instanceof TypeError && /path/.test(e.message));
  await assert.rejects(Store.open({ redis: server.url, backend: 'fs' }), (e) => e instanceof TypeError && /backend/.test(e.message));
  await assert.rejects(Store.open({ redis: server.url, name: '../up' }), (e) => e.code === 'InvalidName');
  const closed = await freePort();
  await assert.rejects(
    Store.open({ redis: `redis://127.0.0.1:${closed}/` }),
    (e) => e.code === 'Backend' && e.message.includes(`127.0.0.1:${closed}`) && /ECONNREFUSED|refused/i.test(e.message),
  );
  const s = await open(fresh());
  await assert.rejects(s.get(''), (e) => e.code === 'InvalidKey');
  await assert.rejects(s.expire('k', -1), (e) => e.code === 'InvalidTtl');
  await s.close();
  await assert.rejects(s.get('k'), (e) => e.code === 'Closed');
  assert.throws(() => s.set('k', 'v'), (e) => e.code === 'Closed');
});

test('a script that never calls close() exits on its own, its writes in Redis', () => {
  const name = fresh();
  const script = `import { Store } from 'tidekv';
    const s = await Store.open({ redis: ${JSON.stringify(server.url)}, name: ${JSON.stringify(name)} });
    s.set('k', 'landed');`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: appDir(), encoding: 'utf8', timeout: 20_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(cli('GET', `{tidekv:${name}:}:k:k`).endsWith('landed'), true);
});

test('the browser build never imports redis', () => {
  const web = join(appDir(), 'node_modules/tidekv/web');
  for (const file of readdirSync(web, { recursive: true }).filter((f) => String(f).endsWith('.js'))) {
    const code = readFileSync(join(web, String(file)), 'utf8');
    assert.doesNotMatch(code, /from\s+['"]redis['"]|import\(\s*['"]redis['"]\s*\)|require\(\s*['"]redis['"]\s*\)/, String(file));
  }
});

/** The Rust CLI built with Redis support (a build failure fails the test). */
const rustCli = buildRustCli;

test('a key written by the Rust CLI is read by Node.js and one written by Node.js by the CLI', async () => {
  const bin = rustCli();
  const name = fresh();
  const rust = (...args) => execFileSync(bin, ['--redis', server.url, '--db', name, ...args], { encoding: 'utf8' }).trim();
  rust('set', 'from-rust', 'héllo', '--tag', 't', '--ttl', '1h');
  const s = await open(name);
  assert.equal(await s.get('from-rust'), 'héllo');
  const meta = (await s.getWithMetadata('from-rust')).metadata;
  assert.deepEqual([meta.kind, meta.tags], ['text', ['t']]);
  assert.ok(meta.expiresAt > Date.now() + 3_000_000);
  assert.deepEqual(await s.queryByTags(['t']), ['from-rust']);
  s.set('from-node', 'wörld', { tags: ['t', 'n'] });
  await s.flush();
  assert.equal(rust('get', 'from-node'), 'wörld');
  assert.match(rust('keys'), /from-node[\s\S]*from-rust/);
  // A change by the Rust process reaches the Node.js store's cached copy.
  rust('set', 'from-node', 'changed');
  assert.equal(await until(async () => (await s.get('from-node')) === 'changed'), true);
  await s.close();
});

test('under maxMemory a Redis store evicts only its local copies: Redis keeps every key, unflushed ones are never evicted', async () => {
  const name = fresh();
  const a = await open(name, { maxMemory: 8_000, flushInterval: 60_000 });
  const evicted = [];
  a.on('change', (e) => e.op === 'evict' && evicted.push(e.key));
  for (let i = 0; i < 40; i++) a.set(`k${i}`, 'x'.repeat(300));
  // Nothing is confirmed by Redis yet, so nothing may go: the store holds all 40 over the cap.
  assert.equal(a.stats().evictions, 0);
  await a.flush();
  for (let i = 40; i < 80; i++) {
    a.set(`k${i}`, 'x'.repeat(300));
    await a.flush();
  }
  assert.ok(a.stats().evictions > 0, 'confirmed copies were evicted');
  assert.equal(a.stats().evictions, evicted.length);
  assert.equal(cli('EXISTS', ...evicted.map((k) => `{tidekv:${name}:}:k:${k}`)), String(evicted.length), 'Redis still holds every evicted key');
  assert.equal(await a.get(evicted[0]), 'x'.repeat(300), 'an evicted key is read back from Redis');
  assert.equal(await a.size(), 80);
  await assert.rejects(open(fresh(), { maxMemory: 0 }), (e) => e instanceof RangeError && e.code === 'InvalidOption');
  await a.close();
});

test('RedisStore.getOrSet finds keys in Redis and runs one loader for 100 concurrent misses; a failing loader stores nothing', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  a.set('held', 'in redis');
  await a.flush();
  assert.equal(await b.getOrSet('held', () => assert.fail('the loader ran for a key Redis holds')), 'in redis');
  let calls = 0;
  const loader = async () => {
    calls += 1;
    await sleep(20);
    return { loaded: true };
  };
  const results = await Promise.all(Array.from({ length: 100 }, () => b.getOrSet('hot', loader, { tags: ['t'] })));
  assert.equal(calls, 1);
  for (const r of results) assert.deepEqual(r, { loaded: true });
  await b.flush();
  assert.deepEqual(await a.get('hot'), { loaded: true }, 'the loaded value reached Redis');
  assert.deepEqual(await a.queryByTags(['t']), ['hot']);
  const boom = new Error('no');
  const failed = await Promise.allSettled([b.getOrSet('bad', () => Promise.reject(boom)), b.getOrSet('bad', () => 'never')]);
  assert.deepEqual(failed.map((o) => o.reason), [boom, boom]);
  await assert.rejects(b.getOrSet('nothing', async () => undefined), (e) => e instanceof TypeError);
  await assert.rejects(b.getOrSet('', () => 1), (e) => e.code === 'InvalidKey');
  assert.equal(await b.has('bad'), false);
  assert.equal(await b.has('nothing'), false);
  await a.close();
  await b.close();
});

test('RedisStore entries(), size() and clear() cover Redis and unflushed keys; clear removes them from Redis', async () => {
  const name = fresh();
  const a = await open(name);
  const b = await open(name);
  for (let i = 0; i < 300; i++) a.set(`k${String(i).padStart(3, '0')}`, i, { tags: ['n'] });
  a.namespace('other').set('x', 'kept');
  await a.flush();
  b.set('unflushed', 'local');
  const seen = [];
  for await (const [key, value, metadata] of b.entries()) seen.push([key, value, metadata.tags]);
  assert.equal(seen.length, 301);
  assert.deepEqual(seen[0], ['k000', 0, ['n']]);
  assert.deepEqual(seen[300], ['unflushed', 'local', []]);
  const prefixed = [];
  for await (const [key] of b.entries('k29')) prefixed.push(key);
  assert.deepEqual(prefixed, Array.from({ length: 10 }, (_, i) => `k29${i}`));
  assert.equal(await b.size(), 301);
  assert.equal(await b.clear(), 301);
  assert.equal(await b.size(), 0);
  await b.flush();
  assert.equal(cli('EXISTS', `{tidekv:${name}:}:k:k000`), '0');
  assert.equal(await a.size(), 0);
  assert.deepEqual(await a.keys(), []);
  assert.equal(await a.namespace('other').get('x'), 'kept');
  await a.close();
  await b.close();
});
