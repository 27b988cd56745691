// Node.js entry: the wasm build with the file backend (`fs/promises`), loaded synchronously.
export { Store } from './node/tidekv.js';
