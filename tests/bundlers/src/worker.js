// The app's web worker: tidekv in a worker, on the page's IndexedDB database.
import { Store } from 'tidekv';

self.onmessage = async (e) => {
  try {
    const store = await Store.open({ name: 'bundled-app' });
    const runs = (store.get('worker-runs') ?? 0) + 1;
    store.set('worker-runs', runs);
    await store.flush();
    const seen = store.get('visits');
    await store.close();
    self.postMessage({ runs, visitsSeen: seen, visitsSent: e.data.visits });
  } catch (err) {
    self.postMessage({ error: String(err && err.message ? err.message : err) });
  }
};
