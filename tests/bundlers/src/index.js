// The app both bundlers build (Vite from index.html, webpack from its default entry, this file):
// a page that counts its visits in a tidekv store on IndexedDB, and a web worker that opens the
// same database, reads what the page flushed and counts its own runs. The outcome goes to
// `window.result` for the test (bundlers.test.mjs) to read.
import { Store } from 'tidekv';

function askWorker(message) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    worker.onmessage = (e) => {
      worker.terminate();
      if (e.data.error) reject(new Error(`worker: ${e.data.error}`));
      else resolve(e.data);
    };
    worker.onerror = (e) => reject(new Error(`worker failed to start: ${e.message}`));
    worker.postMessage(message);
  });
}

async function main() {
  const store = await Store.open({ name: 'bundled-app' });
  const visits = (store.get('visits') ?? 0) + 1;
  store.set('visits', visits);
  store.set('last', { visits, at: Date.now() }, { tags: ['log'] });
  await store.flush();
  // Synchronous after the first open: the wasm is loaded.
  const memory = Store.memory();
  memory.set('k', 'v');
  const worker = await askWorker({ visits });
  document.querySelector('#out').textContent = `visit ${visits}`;
  return { visits, tagged: store.queryByTags(['log']), memory: memory.get('k'), worker };
}

main().then(
  (result) => {
    window.result = result;
  },
  (e) => {
    window.result = { error: String(e && e.stack ? e.stack : e) };
  },
);
