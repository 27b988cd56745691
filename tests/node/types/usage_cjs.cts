// Compiled (never run) by types.test.mjs with `tsc --strict`: `require('tidekv')` from a
// CommonJS TypeScript file finds the package's CommonJS declarations (index.d.cts).
import tidekv = require('tidekv');

export async function requireUsage(): Promise<string | undefined> {
  const store: tidekv.Store = await tidekv.Store.open({ path: './data', name: 'cjs' });
  store.set('k', { n: 1 });
  const memory = tidekv.Store.memory();
  memory.set('t', 'text');
  await store.close();
  return memory.get<string>('t');
}
