// Browser (and worker, bundler) entry: the wasm build without any Node.js import.
// No top-level await, so bundlers take it with their default settings: the wasm is fetched and
// compiled on first need. `Store.open()` does that itself; `Store.init()` does only that, for
// `Store.memory()`, which is synchronous and so needs the wasm loaded before it is called.
import initWasm, { Store } from './web/tidekv.js';

let loading = null;
let loaded = false;

/**
 * Loads the wasm once (later calls get the same promise; after a failure the next call tries
 * again). `source` overrides where it comes from (a URL, a Response, bytes, a
 * `WebAssembly.Module`); by default it is the file beside this module, written as
 * `new URL('./web/tidekv_bg.wasm', import.meta.url)` so that bundlers see it and ship it.
 */
function init(source) {
  loading ??= initWasm({ module_or_path: source ?? new URL('./web/tidekv_bg.wasm', import.meta.url) }).then(
    () => {
      loaded = true;
    },
    (e) => {
      loading = null;
      const error = new Error(
        `tidekv: could not load its wasm (${e && e.message ? e.message : e}); with a bundler, ` +
          "see \"Using it with Vite / webpack\" in tidekv's README",
        { cause: e },
      );
      error.code = 'Backend';
      throw error;
    },
  );
  return loading;
}

const open = Store.open;
const memory = Store.memory;
Object.defineProperties(Store, {
  init: {
    value: async function init_(source) {
      await init(source);
    },
    writable: true,
    configurable: true,
  },
  open: {
    value: async function open_(options) {
      await init();
      return open.call(Store, options);
    },
    writable: true,
    configurable: true,
  },
  memory: {
    value: function memory_(options) {
      if (!loaded) {
        const error = new Error(
          'tidekv: the wasm is not loaded yet: `await Store.init()` (or `await Store.open(...)`) once before Store.memory()',
        );
        error.code = 'NotInitialized';
        throw error;
      }
      return memory.call(Store, options);
    },
    writable: true,
    configurable: true,
  },
});

export { Store };
