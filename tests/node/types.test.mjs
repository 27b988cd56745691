// The package's TypeScript declarations: they compile under `tsc --strict` against real usage
// (and reject misuse), and the public types never fall back to `any`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { appDir, repo } from './package.mjs';

test('the public types have no any', () => {
  for (const file of ['index.d.ts', 'index.d.cts']) {
    const dts = readFileSync(join(appDir(), 'node_modules/tidekv', file), 'utf8');
    const code = dts.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
    assert.deepEqual(code.match(/\bany\b/g), null, file);
  }
});

test('typical usage (ESM and require, interfaces and classes as values) type-checks under tsc --strict and misuse does not', () => {
  const app = appDir();
  copyFileSync(join(repo, 'tests/node/types/usage.ts'), join(app, 'usage.ts'));
  copyFileSync(join(repo, 'tests/node/types/usage_cjs.cts'), join(app, 'usage_cjs.cts'));
  const tsc = join(repo, 'node_modules/typescript/bin/tsc');
  const args = ['--noEmit', '--strict', '--target', 'es2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--lib', 'es2022,dom', 'usage.ts', 'usage_cjs.cts'];
  try {
    execFileSync(process.execPath, [tsc, ...args], { cwd: app, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc failed:\n${e.stdout}${e.stderr}`);
  }
});
