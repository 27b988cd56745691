// Shared by the Node and browser suites: the npm package as a user gets it — `npm pack` of
// pkg/ (built by scripts/build-npm.sh), installed from the tarball into an empty folder.
// scripts/test.sh installs it once and passes the folder in TIDEKV_APP_DIR; run alone, a suite
// installs it itself.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Packs pkg/ and installs the tarball into a fresh folder; returns the folder. */
export function installPackage() {
  const pkg = join(repo, 'pkg');
  if (!existsSync(join(pkg, 'package.json'))) {
    throw new Error('pkg/ is missing: run scripts/build-npm.sh first');
  }
  const root = mkdtempSync(join(tmpdir(), 'tidekv-npm-'));
  const npm = (args, cwd) => execFileSync('npm', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  const tarball = npm(['pack', pkg, '--pack-destination', root, '--silent'], root).trim().split('\n').pop();
  const app = join(root, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  // `redis` (node-redis) is the package's optional peer dependency, for the Redis tests: the
  // version the repository pins, from the cache its own `npm ci` filled.
  const redis = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')).devDependencies.redis;
  npm(['install', '--no-audit', '--no-fund', '--offline', join(root, tarball), `redis@${redis}`], app);
  // Every module of the app resolves 'tidekv' the way user code does (package exports).
  writeFileSync(join(app, 'tidekv.mjs'), "export * from 'tidekv';\n");
  return app;
}

/** The folder the package is installed in (installed once per process). */
export function appDir() {
  if (!process.env.TIDEKV_APP_DIR) process.env.TIDEKV_APP_DIR = installPackage();
  return process.env.TIDEKV_APP_DIR;
}

/** `import { Store } from 'tidekv'`, resolved from the app folder. */
export async function importTidekv() {
  return import(pathToFileURL(join(appDir(), 'tidekv.mjs')).href);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // `node tests/node/package.mjs`: install and print the folder (scripts/test.sh uses it).
  console.log(installPackage());
}

/**
 * Builds the Rust side of the cross-target tests (examples/cross_target.rs) with the features
 * of the suite's `cargo test --all-features`, so that build is reused; returns its path.
 */
export function buildRustExample() {
  execFileSync('cargo', ['build', '--quiet', '--all-features', '--example', 'cross_target'], { cwd: repo, stdio: 'inherit' });
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  return join(target, 'debug', 'examples', 'cross_target');
}

/**
 * Builds the Rust CLI (`tidekv`) with the features of the suite's `cargo test --all-features`,
 * so that build is reused (a build failure fails the test); returns its path.
 */
export function buildRustCli() {
  execFileSync('cargo', ['build', '--quiet', '--all-features', '--bin', 'tidekv'], { cwd: repo, stdio: ['ignore', 'ignore', 'inherit'] });
  const target = process.env.CARGO_TARGET_DIR ?? join(repo, 'target');
  return join(target, 'debug', 'tidekv');
}
