// Node.js entry for `import`: the CommonJS build `require('tidekv')` loads (node.cjs), so a
// program that both imports and requires tidekv gets one Store class and one wasm instance.
import tidekv from './node.cjs';

export const { Store } = tidekv;
