'use strict';
// Node.js entry for `require('tidekv')`, and the module node.js (`import`) re-exports: the wasm
// build with the file backend, one CommonJS file loaded synchronously, so `Store` is ready at once.
const { Store } = require('./node/tidekv.cjs');

// The wasm is already loaded here; `Store.init()` exists so code shared with browsers can call it.
Object.defineProperty(Store, 'init', {
  value: async function init() {},
  writable: true,
  configurable: true,
});

module.exports = { Store };
