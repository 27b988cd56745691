// Browser (and worker, Deno, bundler) entry: the wasm build without any Node.js import.
// The module waits for the wasm to be compiled, so `Store` is ready once the import resolves.
import init, { Store } from './web/tidekv.js';

await init({ module_or_path: new URL('./web/tidekv_bg.wasm', import.meta.url) });

export { Store };
