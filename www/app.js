// The demo page: a form to set keys, a live key table driven by the store's events, live stats,
// and a benchmark panel. Everything talks to tidekv through its public JS API only.
import { Store } from 'tidekv';
import { runBench, drawChart } from './bench.js';

const $ = (id) => document.getElementById(id);
const rows = new Map(); // key -> { value, metadata }, kept in step with the store's events
let store;
let seenFlushes = 0;
let lastFlushAt = null;
/** Keys the store loaded from IndexedDB when the page opened: flushed by an earlier visit. */
let loadedFromDisk = 0;

function preview(value, kind) {
  if (kind === 'bytes') return `Uint8Array(${value.length})`;
  const text = kind === 'json' ? JSON.stringify(value) : value;
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function ttlText(expiresAt) {
  if (expiresAt == null) return '∞';
  const left = expiresAt - Date.now();
  return left > 0 ? `${(left / 1000).toFixed(1)} s` : 'expiring…';
}

function remember(key) {
  const found = store.getWithMetadata(key);
  if (found) rows.set(key, found);
  else rows.delete(key);
}

function parseTags(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

function visibleKeys() {
  const prefix = $('filter-prefix').value;
  const tags = parseTags($('filter-tags').value);
  let keys = [...rows.keys()].filter((k) => k.startsWith(prefix));
  if (tags.length > 0) {
    const tagged = new Set(store.queryByTags(tags));
    keys = keys.filter((k) => tagged.has(k));
  }
  return keys.sort();
}

function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function render() {
  const body = $('keys-body');
  const keys = visibleKeys();
  body.replaceChildren();
  for (const key of keys.slice(0, 500)) {
    const { value, metadata } = rows.get(key);
    const tr = document.createElement('tr');
    tr.dataset.key = key;
    tr.append(cell(key), cell(preview(value, metadata.kind), 'value'), cell(metadata.kind, 'kind'));
    const tags = document.createElement('td');
    for (const t of metadata.tags) {
      const span = document.createElement('span');
      span.className = 'tag';
      span.textContent = t;
      tags.append(span);
    }
    tr.append(tags, cell(formatBytes(metadata.size), 'num'), cell(ttlText(metadata.expiresAt), 'num ttl'));
    const del = document.createElement('button');
    del.className = 'link';
    del.textContent = 'delete';
    del.setAttribute('aria-label', `delete ${key}`);
    del.addEventListener('click', () => {
      store.delete(key);
      rows.delete(key);
      render();
    });
    const action = document.createElement('td');
    action.append(del);
    tr.append(action);
    body.append(tr);
  }
  $('empty').hidden = keys.length > 0;
  $('key-count').textContent = keys.length === rows.size ? `(${rows.size})` : `(${keys.length} of ${rows.size})`;
}

function tickCountdowns() {
  for (const tr of $('keys-body').children) {
    const row = rows.get(tr.dataset.key);
    const td = tr.querySelector('.ttl');
    if (!row || !td || row.metadata.expiresAt == null) continue;
    td.textContent = ttlText(row.metadata.expiresAt);
    td.classList.toggle('ttl-soon', row.metadata.expiresAt - Date.now() < 3000);
  }
}

function showStats() {
  const s = store.stats();
  if (s.flushes > seenFlushes) {
    seenFlushes = s.flushes;
    lastFlushAt = new Date();
  }
  $('st-keys').textContent = s.keys.toLocaleString();
  $('st-flushes').textContent = s.flushes.toLocaleString();
  $('st-last-flush').textContent = lastFlushAt
    ? `${lastFlushAt.toLocaleTimeString()} (${Math.round((Date.now() - lastFlushAt) / 1000)} s ago)`
    : loadedFromDisk > 0
      ? `before this page opened: the ${loadedFromDisk.toLocaleString()} key(s) it loaded are on disk`
      : 'never';
  $('st-sweeps').textContent = s.sweeps.toLocaleString();
  $('st-tick').textContent = `${s.tickIntervalMs} ms`;
  $('st-expired').textContent = s.expired.toLocaleString();
  const pct = Math.min(100, s.bufferUtilization);
  $('st-buffer-bar').style.width = `${pct}%`;
  $('st-buffer-text').textContent = `${formatBytes(s.bufferBytes)} of ${formatBytes(s.bufferSize)} (${s.bufferUtilization.toFixed(1)}%)`;
  $('st-error').textContent = s.lastError ?? 'none';
}

function formError(message) {
  $('form-error').textContent = message;
  $('form-error').hidden = !message;
}

function onSet(event) {
  event.preventDefault();
  formError('');
  const key = $('key').value;
  const raw = $('value').value;
  let value = raw;
  if ($('kind').value === 'json') {
    try {
      value = JSON.parse(raw);
    } catch (e) {
      formError(`The value is not valid JSON: ${e.message}`);
      return;
    }
  }
  const options = { tags: parseTags($('tags').value) };
  const ttl = $('ttl').value.trim();
  if (ttl !== '') options.ttl = Number(ttl) * 1000;
  try {
    store.set(key, value, options);
  } catch (e) {
    formError(e.message.replace(/^tidekv: /, ''));
    return;
  }
  remember(key);
  render();
  $('key').select();
}

async function onBench(event) {
  event.preventDefault();
  const n = Number($('bench-n').value);
  if (!Number.isInteger(n) || n < 10 || n > 100000) {
    $('bench-status').textContent = 'N must be a whole number from 10 to 100,000.';
    return;
  }
  $('bench-run').disabled = true;
  try {
    const results = await runBench(n, (msg) => { $('bench-status').textContent = msg; });
    drawChart($('bench-chart'), results);
    $('bench-status').textContent = `Done: N = ${n.toLocaleString()}.`;
  } catch (e) {
    $('bench-status').textContent = `Benchmark failed: ${e.message}`;
  } finally {
    $('bench-run').disabled = false;
  }
}

async function main() {
  try {
    store = await Store.open({ name: 'tidekv-demo', flushInterval: 500 });
  } catch (e) {
    $('status').textContent = `Could not open the store: ${e.message}`;
    return;
  }
  store.on('expire', ({ key, namespace }) => {
    if (namespace) return;
    rows.delete(key);
    render();
  });
  // Another tab (or worker) of this page changed a key: the store already holds the change.
  store.on('change', (e) => {
    if (!e.remote || e.namespace) return;
    remember(e.key);
    render();
    $('remote-note').textContent = `From another tab: ${e.op} of "${e.key}".`;
  });
  store.on('error', (err) => {
    $('st-error').textContent = err.message;
  });
  for (const key of store.keys()) remember(key);
  loadedFromDisk = rows.size;
  $('status').textContent = `Store open: ${rows.size} key(s) loaded from IndexedDB.`;
  render();
  showStats();
  $('set-form').addEventListener('submit', onSet);
  $('flush-button').addEventListener('click', async () => {
    try {
      await store.flush();
    } catch (e) {
      formError(`Flush failed: ${e.message}`);
    }
    showStats();
  });
  $('clear-button').addEventListener('click', () => {
    const count = store.keys().length;
    if (count === 0) {
      $('status').textContent = 'Nothing to delete: the store is empty.';
      return;
    }
    if (!window.confirm(`Delete all ${count} key(s) from this browser's store?`)) {
      $('status').textContent = 'Nothing deleted.';
      return;
    }
    for (const key of store.keys()) store.delete(key);
    rows.clear();
    render();
    $('status').textContent = `Deleted ${count} key(s); the next flush removes them from IndexedDB.`;
    showStats();
  });
  $('filter-prefix').addEventListener('input', render);
  $('filter-tags').addEventListener('input', render);
  $('bench-form').addEventListener('submit', onBench);
  setInterval(() => {
    tickCountdowns();
    showStats();
  }, 250);
  document.body.dataset.ready = 'true';
}

main();
