//! IndexedDB plumbing, in one place: opening a database, turning requests and transactions
//! into futures, and naming their errors.
//!
//! It knows nothing about tidekv's records: [`super::backend_idb`] decides what to read and
//! write. The callback-to-promise glue is a few lines of JS (like idb-keyval's
//! `promisifyRequest`), so no Rust closure is ever leaked for a request that never fires.

use js_sys::{Array, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbKeyRange, IdbObjectStore, IdbRequest, IdbTransaction};

use crate::Error;

#[wasm_bindgen(inline_js = r#"
const LOST = Symbol('tidekv.lost');
export function requestDone(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
export function transactionDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new DOMException('the transaction was aborted', 'AbortError'));
  });
}
function openOnce(factory, name, version, storeName) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = version === undefined ? factory.open(name) : factory.open(name, version);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(storeName)) db.createObjectStore(storeName);
    };
    req.onsuccess = () => {
      const db = req.result;
      if (settled) { db.close(); return; }
      settled = true;
      resolve(db);
    };
    req.onerror = () => { if (!settled) { settled = true; reject(req.error); } };
    req.onblocked = () => {
      if (settled) return;
      settled = true;
      reject(new DOMException(`opening IndexedDB database "${name}" is blocked: another tab or worker keeps an older version open`, 'BlockedError'));
    };
  });
}
export async function openDb(factory, name, storeName) {
  let db = await openOnce(factory, name, undefined, storeName);
  if (!db.objectStoreNames.contains(storeName)) {
    // A database of that name without our store: add it with a version bump.
    const version = db.version + 1;
    db.close();
    db = await openOnce(factory, name, version, storeName);
  }
  // Another tab wants to upgrade or delete the database: let it (closing is what unblocks it),
  // and reconnect on the next write. The browser may also close a connection on its own.
  db.onversionchange = () => { db[LOST] = true; db.close(); };
  db.onclose = () => { db[LOST] = true; };
  return db;
}
export function startTransaction(db, store, mode, durability) {
  return db.transaction(store, mode, { durability });
}
export function isLost(db) { return db[LOST] === true; }
export function lowerBoundAfter(key) { return IDBKeyRange.lowerBound(key, true); }
function pack(values) {
  let total = 0;
  for (const v of values) total += 4 + (v instanceof Uint8Array ? v.byteLength : 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const v of values) {
    if (v instanceof Uint8Array) {
      view.setUint32(at, v.byteLength, true);
      out.set(v, at + 4);
      at += 4 + v.byteLength;
    } else {
      view.setUint32(at, v === undefined ? 0xfffffffe : 0xffffffff, true);
      at += 4;
    }
  }
  return out;
}
export function valuesAfter(store, after, limit) {
  const range = after === undefined ? null : IDBKeyRange.lowerBound(after, true);
  return requestDone(store.getAll(range, limit)).then(pack);
}
export function valuesOf(store, keys) {
  return Promise.all(keys.map((key) => requestDone(store.get(key)))).then(pack);
}
export async function keyAt(db, storeName, after, index) {
  const range = after === undefined ? null : IDBKeyRange.lowerBound(after, true);
  const keys = await requestDone(db.transaction(storeName, 'readonly').objectStore(storeName).getAllKeys(range, index + 1));
  return keys[index];
}
export async function storagePersisted(ask) {
  const storage = globalThis.navigator && globalThis.navigator.storage;
  if (!storage) return undefined;
  try {
    if (ask && storage.persist) return await storage.persist();
    return storage.persisted ? await storage.persisted() : undefined;
  } catch { return undefined; }
}
export async function storageEstimate() {
  const storage = globalThis.navigator && globalThis.navigator.storage;
  if (!storage || !storage.estimate) return undefined;
  try {
    const e = await storage.estimate();
    return [e.quota ?? NaN, e.usage ?? NaN];
  } catch { return undefined; }
}
export function describe(err) {
  if (err && typeof err === 'object' && 'name' in err && 'message' in err) {
    return err.message ? `${err.name}: ${err.message}` : String(err.name);
  }
  return String(err);
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = requestDone)]
    fn request_done(req: &IdbRequest) -> Promise;
    #[wasm_bindgen(js_name = transactionDone)]
    fn transaction_done(tx: &IdbTransaction) -> Promise;
    #[wasm_bindgen(js_name = openDb)]
    fn open_db(factory: &IdbFactory, name: &str, store: &str) -> Promise;
    #[wasm_bindgen(js_name = isLost)]
    fn is_lost(db: &IdbDatabase) -> bool;
    #[wasm_bindgen(js_name = valuesAfter)]
    fn values_after(store: &IdbObjectStore, after: &JsValue, limit: u32) -> Promise;
    #[wasm_bindgen(js_name = valuesOf)]
    fn values_of(store: &IdbObjectStore, keys: &Array) -> Promise;
    #[wasm_bindgen(js_name = keyAt)]
    fn key_at(db: &IdbDatabase, store: &str, after: &JsValue, index: u32) -> Promise;
    #[wasm_bindgen(catch, js_name = lowerBoundAfter)]
    fn lower_bound_after(key: &JsValue) -> Result<IdbKeyRange, JsValue>;
    fn describe(err: &JsValue) -> String;
    #[wasm_bindgen(js_name = storagePersisted)]
    fn storage_persisted(ask: bool) -> Promise;
    #[wasm_bindgen(js_name = storageEstimate)]
    fn storage_estimate() -> Promise;

    // `db.transaction(store, mode, { durability })`: web-sys has it only behind its
    // unstable-API flag.
    #[wasm_bindgen(catch, js_name = startTransaction)]
    fn start_transaction(
        db: &IdbDatabase,
        store: &str,
        mode: &str,
        durability: &str,
    ) -> Result<IdbTransaction, JsValue>;
}

/// An IndexedDB failure as a tidekv error, naming what was being done and the DOM error
/// (`QuotaExceededError: ...`, `AbortError`, ...).
pub(crate) fn error(doing: &str, err: &JsValue) -> Error {
    Error::Backend(format!("IndexedDB {doing} failed: {}", describe(err)))
}

/// The realm's `indexedDB` (window, worker, or a Node.js polyfill), if there is one.
pub(crate) fn factory() -> Option<IdbFactory> {
    let value = Reflect::get(&js_sys::global(), &JsValue::from_str("indexedDB")).ok()?;
    // Not `dyn_into`: a polyfill's factory is no `instanceof IDBFactory`.
    value.is_object().then(|| value.unchecked_into())
}

/// Opens (creating if needed) database `name` with the object store `store`.
pub(crate) async fn open(
    factory: &IdbFactory,
    name: &str,
    store: &str,
) -> Result<IdbDatabase, Error> {
    let db = JsFuture::from(open_db(factory, name, store))
        .await
        .map_err(|e| error(&format!("open of database {name:?}"), &e))?;
    Ok(db.unchecked_into())
}

/// Whether the connection was closed under us (another tab upgraded or deleted the database,
/// or the browser closed it).
pub(crate) fn lost(db: &IdbDatabase) -> bool {
    is_lost(db)
}

/// Starts a transaction on one object store. `durability` is `"relaxed"` or `"strict"`.
pub(crate) fn transaction(
    db: &IdbDatabase,
    store: &str,
    readwrite: bool,
    durability: &str,
) -> Result<(IdbTransaction, IdbObjectStore), Error> {
    let mode = if readwrite { "readwrite" } else { "readonly" };
    let tx = start_transaction(db, store, mode, durability)
        .map_err(|e| error("transaction start", &e))?;
    let object_store = tx
        .object_store(store)
        .map_err(|e| error("transaction start", &e))?;
    Ok((tx, object_store))
}

/// Resolves when `tx` commits (`complete`), fails when it aborts, with the reason
/// (`QuotaExceededError`, a failed request's error, or `AbortError`). Call it right after
/// creating the transaction, before awaiting anything else.
pub(crate) fn committed(tx: &IdbTransaction) -> JsFuture {
    JsFuture::from(transaction_done(tx))
}

/// Starts waiting for one request's result. Call it right after issuing the request, so no
/// event can fire before the handlers are in place.
pub(crate) fn request(
    req: Result<IdbRequest, JsValue>,
    doing: &'static str,
) -> Result<Pending, Error> {
    let req = req.map_err(|e| error(doing, &e))?;
    Ok(Pending {
        future: JsFuture::from(request_done(&req)),
        doing,
    })
}

/// A request whose result is awaited with [`Pending::result`].
pub(crate) struct Pending {
    future: JsFuture,
    doing: &'static str,
}

impl Pending {
    /// The request's result, or its error.
    pub(crate) async fn result(self) -> Result<JsValue, Error> {
        self.future.await.map_err(|e| error(self.doing, &e))
    }
}

/// One page of a store, in key order: up to `limit` (key, value) pairs after `after` (or from
/// the start). Two requests in the same transaction, so keys and values line up.
pub(crate) async fn page(
    store: &IdbObjectStore,
    after: Option<&JsValue>,
    limit: u32,
) -> Result<(Array, Array), Error> {
    let range: JsValue = match after {
        Some(key) => lower_bound_after(key)
            .map_err(|e| error("read", &e))?
            .into(),
        None => JsValue::NULL,
    };
    let keys = request(store.get_all_keys_with_key_and_limit(&range, limit), "read")?;
    let values = request(store.get_all_with_key_and_limit(&range, limit), "read")?;
    let keys = keys.result().await?;
    let values = values.result().await?;
    Ok((keys.unchecked_into(), values.unchecked_into()))
}

/// A value that is not a `Uint8Array`: its length in a packed page (see [`packed_values`]).
pub(crate) const NOT_BYTES: u32 = u32::MAX;
/// A key holding no value: its length in a packed page.
pub(crate) const ABSENT: u32 = u32::MAX - 1;

/// Starts reading up to `limit` values after key `after` (from the start if `undefined`), in
/// key order, in one `getAll` request. The values come back as one buffer, each a u32 LE length
/// and its bytes ([`NOT_BYTES`] and nothing else for a value that is not a `Uint8Array`), so the
/// page crosses into wasm in one copy however many values it holds. Call it while `store`'s
/// transaction is active; the result is awaited with [`Pending::result`].
pub(crate) fn packed_values(store: &IdbObjectStore, after: &JsValue, limit: u32) -> Pending {
    Pending {
        future: JsFuture::from(values_after(store, after, limit)),
        doing: "read",
    }
}

/// Starts reading the values of `keys` (one `get` each, in one go), packed like
/// [`packed_values`] in the order of `keys`, [`ABSENT`] for a key that holds nothing.
pub(crate) fn packed_values_of(store: &IdbObjectStore, keys: &Array) -> Pending {
    Pending {
        future: JsFuture::from(values_of(store, keys)),
        doing: "read",
    }
}

/// The key of the `index`-th record after `after` (from the start if `undefined`), in a transaction of its
/// own: for naming a record whose value did not decode.
pub(crate) async fn key_after(
    db: &IdbDatabase,
    store: &str,
    after: &JsValue,
    index: u32,
) -> Option<JsValue> {
    JsFuture::from(key_at(db, store, after, index)).await.ok()
}

/// Whether the browser keeps this origin's data when storage runs short
/// (`navigator.storage.persisted()`), after asking for it (`persist()`) when `ask` is set.
/// `None` where the realm has no `navigator.storage` or the call failed.
pub(crate) async fn persisted(ask: bool) -> Option<bool> {
    JsFuture::from(storage_persisted(ask)).await.ok()?.as_bool()
}

/// `navigator.storage.estimate()`: (quota, usage) in bytes, `None` where there is none.
pub(crate) async fn estimate() -> Option<(f64, f64)> {
    let pair = JsFuture::from(storage_estimate()).await.ok()?;
    let pair = pair.dyn_ref::<Array>()?;
    Some((pair.get(0).as_f64()?, pair.get(1).as_f64()?))
}
