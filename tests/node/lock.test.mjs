// The one-process-per-database lock from the Node.js build, against other Node.js processes and
// the Rust crate (examples/cross_target.rs): a stale owner never locks a database out (pid
// reuse, SIGKILL), racing openers of a stale lock have exactly one winner, each runtime refuses
// the other without /proc, and a path too long for a socket path still locks.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { appDir, buildRustExample, importTidekv } from './package.mjs';

let Store;
let example;

before(async () => {
  ({ Store } = await importTidekv());
  example = buildRustExample();
});

const fresh = () => mkdtempSync(join(tmpdir(), 'tidekv-lock-'));
const owners = (dir) => readdirSync(dir).filter((f) => f.startsWith('LOCK.owner.')).sort();
const gen = (n) => `LOCK.owner.${n.toString(16).padStart(16, '0')}`;
const rust = (...args) => spawnSync(example, args, { encoding: 'utf8', timeout: 60_000 });

/** Writes `source` as an ES module in the app folder (so 'tidekv' resolves as for a user). */
function script(source) {
  const file = join(appDir(), `lock-${process.pid}-${Math.random().toString(16).slice(2)}.mjs`);
  writeFileSync(file, source);
  return file;
}

/** Every child spawned here: a failed test must not leave one running (nor hang the suite). */
const children = new Set();
after(() => { for (const proc of children) proc.kill('SIGKILL'); });

/** A child process whose stdout lines arrive through `next()`. */
function child(command, args, stderr = 'inherit') {
  const proc = spawn(command, args, { stdio: ['pipe', 'pipe', stderr] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  proc.stdin.on('error', () => {}); // a child that already exited
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]();
  return {
    proc,
    async next() {
      const { value, done } = await lines.next();
      assert.ok(!done, 'the child ended without answering');
      return value;
    },
    async end() {
      proc.stdin.end();
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
    },
    async kill() {
      proc.kill('SIGKILL');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
    },
  };
}

// Opens the database in argv[2] (name argv[3]) when "go" arrives on stdin, says WON or the error
// code, and keeps it open until stdin ends.
const OPENER = `
  import { Store } from 'tidekv';
  import { createInterface } from 'node:readline';
  const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  if (process.argv[4] === 'wait') { console.log('READY'); await input.next(); }
  let store;
  try { store = await Store.open({ path: process.argv[2], name: process.argv[3] }); console.log('WON'); }
  catch (e) { console.log(e.code ?? String(e)); }
  while (!(await input.next()).done) {}
  if (store) await store.close();
`;
const node = (path, name, wait = false) => child(process.execPath, [script(OPENER), path, name, ...(wait ? ['wait'] : [])]);

test('an owner file naming a live pid (a reused pid, or PID 1) does not lock the database out', async () => {
  for (const pid of [process.pid, 1]) {
    const path = fresh();
    mkdirSync(join(path, 'db'));
    // The previous lock's owner file of a process that exited without close(), its pid since reused.
    writeFileSync(join(path, 'db', 'LOCK.node'), `${pid}\n`);
    const s = await Store.open({ path, name: 'db' });
    s.set('k', 'v');
    await s.close();
  }
});

test('a Node.js holder killed with SIGKILL frees the database at once, for Node.js and Rust', async () => {
  for (const next of ['node', 'rust']) {
    const path = fresh();
    const holder = node(path, 'db');
    assert.equal(await holder.next(), 'WON');
    await assert.rejects(Store.open({ path, name: 'db' }), (e) => e.code === 'Locked');
    await holder.kill();
    if (next === 'node') {
      const s = await Store.open({ path, name: 'db' });
      await s.close();
    } else {
      const out = rust('dump', path, 'db');
      assert.equal(out.status, 0, out.stderr);
    }
  }
});

test('a Rust holder killed with SIGKILL frees the database at once for Node.js', async () => {
  const path = fresh();
  const holder = child(example, ['hold', path, 'db']);
  assert.equal(await holder.next(), 'holding');
  await assert.rejects(Store.open({ path, name: 'db' }), (e) => e.code === 'Locked');
  await holder.kill();
  const s = await Store.open({ path, name: 'db' });
  await s.close();
});

test('Node.js processes racing for a stale lock have exactly one winner', async () => {
  const path = fresh();
  for (let round = 0; round < 5; round++) {
    // A holder that exits without close(): its lock stays behind.
    const died = node(path, 'db');
    assert.equal(await died.next(), 'WON');
    await died.kill();
    const racers = Array.from({ length: 8 }, () => node(path, 'db', true));
    for (const r of racers) assert.equal(await r.next(), 'READY');
    for (const r of racers) r.proc.stdin.write('go\n');
    const answers = await Promise.all(racers.map((r) => r.next()));
    assert.deepEqual(answers.filter((a) => a === 'WON').length, 1, `round ${round}: ${answers}`);
    assert.ok(answers.every((a) => a === 'WON' || a === 'Locked'), `round ${round}: ${answers}`);
    await Promise.all(racers.map((r) => r.end()));
  }
});

test('Node.js and Rust processes racing for a stale lock have exactly one winner', async () => {
  const path = fresh();
  for (let round = 0; round < 3; round++) {
    const died = node(path, 'db');
    assert.equal(await died.next(), 'WON');
    await died.kill();
    const racers = [
      ...Array.from({ length: 4 }, () => node(path, 'db')),
      // A refused Rust child reports Locked on stderr and exits.
      ...Array.from({ length: 4 }, () => child(example, ['hold', path, 'db'], 'ignore')),
    ];
    const answers = await Promise.all(racers.map(async (r) => {
      try { return await r.next(); } catch { return 'Locked'; } // a refused Rust child exits
    }));
    const won = answers.filter((a) => a === 'WON' || a === 'holding').length;
    assert.equal(won, 1, `round ${round}: ${answers}`);
    await Promise.all(racers.map((r) => r.end()));
  }
});

test('a Rust holder refuses Node.js, and a Node.js holder refuses Rust, with /proc hidden', async (t) => {
  const hidden = spawnSync('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs tmpfs /proc && test ! -e /proc/locks'], { stdio: 'ignore' });
  if (hidden.status !== 0) return t.skip('needs unshare(1) with mount rights to hide /proc');
  const withoutProc = (command, args) =>
    child('unshare', ['-m', 'sh', '-c', 'mount -t tmpfs tmpfs /proc && exec "$0" "$@"', command, ...args]);
  const path = fresh();

  const rustHolder = child(example, ['hold', path, 'db']);
  assert.equal(await rustHolder.next(), 'holding');
  const refused = withoutProc(process.execPath, [script(OPENER), path, 'db']);
  assert.equal(await refused.next(), 'Locked');
  await refused.end();
  await rustHolder.end();

  const nodeHolder = withoutProc(process.execPath, [script(OPENER), path, 'db']);
  assert.equal(await nodeHolder.next(), 'WON');
  const out = rust('dump', path, 'db');
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /Locked/);
  await nodeHolder.end();
  assert.equal(rust('dump', path, 'db').status, 0);
});

test('a database path longer than a socket path still locks', async () => {
  let path = fresh();
  while (Buffer.byteLength(path) < 160) path = join(path, 'a-rather-long-directory-name');
  mkdirSync(path, { recursive: true });
  const s = await Store.open({ path, name: 'db' });
  assert.deepEqual(owners(join(path, 'db')), [gen(1)]);
  await assert.rejects(Store.open({ path, name: 'db' }), (e) => e.code === 'Locked');
  const out = rust('dump', path, 'db');
  assert.notEqual(out.status, 0);
  assert.match(out.stderr, /Locked/);
  await s.close();
  const t = await Store.open({ path, name: 'db' });
  assert.deepEqual(owners(join(path, 'db')), [gen(2)]);
  await t.close();
});
