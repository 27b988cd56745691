//! The IndexedDB backend: the browser's durable store for a tidekv database.
//!
//! Layout: database `name`, one object store `records` for every namespace. A key's IDB key is
//! `[namespace, key]` and its value the key's newest Put record as a `Uint8Array`, in the record
//! format every persistent backend shares ([`crate::core::record`]); a Delete removes the IDB
//! key. One object store means a new namespace never needs a schema version bump (which other
//! open tabs could block).
//!
//! A flush is one readwrite transaction carrying every put and delete of the batch, issued
//! without awaiting each request from one call into JS (the keys as one string, the records as
//! one buffer); the batch counts as written on the transaction's `complete` event only. On `abort` (a failed request, `QuotaExceededError`, a closed connection) the error
//! names the cause and the store keeps the batch buffered. If another tab upgrades or deletes the
//! database, this connection closes itself (so the other tab is not blocked) and the next write
//! reconnects.
//!
//! Open reads values alone (each record names its namespace and key), with `getAll` in pages of
//! about 4 MiB that cross into wasm as one buffer each; the next page is requested before the
//! engine loads this one, so IndexedDB reads while wasm decodes.
//!
//! Records do not leave IndexedDB by being overwritten alone: the keys the engine expires (and
//! the expired records an open skips) are handed back through [`Backend::reclaim_expired`],
//! and each is deleted in a transaction that first reads it and checks it is still expired, so
//! a record written again meanwhile — by this tab or another — stays. `compact()` deletes dead
//! records a page at a time, never holding the whole database in memory.
//!
//! Request and transaction plumbing lives in [`super::idb`]; this file touches one callback,
//! the read-check-delete of a reclaim, which must issue its delete inside the read's
//! `success` event to stay in the same transaction.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{IdbDatabase, IdbFactory, IdbObjectStore};

use super::backend::{Backend, CompactReport, Keys, KeysListener, Task};
use super::idb;
use crate::core::Engine;
use crate::{Batch, Error, Record, Result};

/// The object store holding every record.
const STORE: &str = "records";
/// Records read per request at open.
const PAGE: u32 = 1_000;

/// See the module docs.
pub(crate) struct IdbBackend {
    factory: IdbFactory,
    name: String,
    /// `"relaxed"` or `"strict"`.
    durability: &'static str,
    db: RefCell<Option<IdbDatabase>>,
    /// This connection's id in change announcements (so it never hears its own).
    id: String,
    /// The `BroadcastChannel` `tidekv:<name>` (null where there is none), and the listener it
    /// calls, while subscribed.
    channel: JsValue,
    listener: RefCell<Option<JsListener>>,
}

/// The JS side of a [`KeysListener`]: the channel's `onmessage` target.
type JsListener = Closure<dyn Fn(JsValue)>;

impl IdbBackend {
    /// Opens database `name` (creating it if needed) and loads every live record into
    /// `engine`. `strict` asks the browser to flush to disk before `complete`. Also returns the
    /// keys whose stored records had expired: for [`Backend::reclaim_expired`].
    pub(crate) async fn open(
        name: &str,
        strict: bool,
        engine: &mut Engine,
        now: u64,
    ) -> Result<(Rc<IdbBackend>, Vec<(String, String)>)> {
        let factory = idb::factory().ok_or_else(|| {
            Error::Backend(
                "IndexedDB is not available in this JavaScript realm; pass backend: 'memory'"
                    .into(),
            )
        })?;
        let db = idb::open(&factory, name, STORE).await?;
        let expired = match load(&db, engine, now).await {
            Ok(expired) => expired,
            Err(e) => {
                db.close();
                return Err(e);
            }
        };
        let backend = Rc::new(IdbBackend {
            factory,
            name: name.into(),
            durability: if strict { "strict" } else { "relaxed" },
            db: RefCell::new(Some(db)),
            id: format!(
                "{:x}{:x}",
                js_sys::Date::now() as u64,
                (js_sys::Math::random() * 1e15) as u64
            ),
            channel: open_channel(name),
            listener: RefCell::new(None),
        });
        Ok((backend, expired))
    }

    /// The open connection, reconnecting if it was closed under us.
    async fn connection(&self) -> Result<IdbDatabase> {
        let current = self.db.borrow().clone();
        if let Some(db) = current.filter(|db| !idb::lost(db)) {
            return Ok(db);
        }
        let db = idb::open(&self.factory, &self.name, STORE).await?;
        *self.db.borrow_mut() = Some(db.clone());
        Ok(db)
    }
}

#[wasm_bindgen(inline_js = r#"
export function openChannel(name) {
  return typeof BroadcastChannel === 'function' ? new BroadcastChannel(`tidekv:${name}`) : null;
}
export function listen(channel, id, onKeys) {
  if (channel) channel.onmessage = (e) => {
    const m = e.data;
    if (m && m.v === 1 && m.from !== id && m.keys instanceof Uint8Array) onKeys(m.keys);
  };
}
export function announce(channel, id, keys) { if (channel) channel.postMessage({ v: 1, from: id, keys }); }
export function closeChannel(channel) { if (channel) { channel.onmessage = null; channel.close(); } }
export function writeRecords(store, names, meta, bytes) {
  // Per record: its namespace's and key's lengths in `names`, then its Put's length in
  // `bytes` or 0xffffffff for a Delete. `slice`, not `subarray`: each value gets a buffer of
  // its own (a view would store all of `bytes`, which here is wasm memory).
  for (let i = 0, n = 0, at = 0; i < meta.length; i += 3) {
    const key = [names.substring(n, n += meta[i]), names.substring(n, n += meta[i + 1])];
    const len = meta[i + 2];
    if (len === 0xffffffff) store.delete(key);
    else store.put(bytes.slice(at, at += len), key);
  }
}
export function deleteIf(store, keys, test) {
  for (const key of keys) {
    const req = store.get(key);
    req.onsuccess = () => { if (req.result !== undefined && test(req.result)) store.delete(key); };
  }
}
"#)]
extern "C" {
    /// The `BroadcastChannel` tabs and workers of database `name` announce commits on, or null.
    #[wasm_bindgen(js_name = openChannel)]
    fn open_channel(name: &str) -> JsValue;
    /// Calls `on_keys(packed keys)` for every announcement not from `id` (see [`pack_keys`]).
    fn listen(channel: &JsValue, id: &str, on_keys: &js_sys::Function);
    /// Tells the other tabs and workers which keys a transaction of `id` committed.
    fn announce(channel: &JsValue, id: &str, keys: &Uint8Array);
    #[wasm_bindgen(js_name = closeChannel)]
    fn close_channel(channel: &JsValue);
    /// Issues a put or a delete per record of a flush (see [`issue`]).
    #[wasm_bindgen(catch, js_name = writeRecords)]
    fn write_records(
        store: &IdbObjectStore,
        names: &str,
        meta: &[u32],
        bytes: &[u8],
    ) -> std::result::Result<(), JsValue>;
    /// Reads each key and deletes it, in the same transaction, if `test(value)` says so.
    #[wasm_bindgen(js_name = deleteIf)]
    fn delete_if(store: &IdbObjectStore, keys: &Array, test: &js_sys::Function);
}

/// The IDB key of a record: `[namespace, key]`.
fn idb_key(namespace: &str, key: &str) -> JsValue {
    Array::of2(&namespace.into(), &key.into()).into()
}

fn describe_key(key: &JsValue) -> String {
    js_sys::JSON::stringify(key).map_or_else(|_| "?".into(), String::from)
}

/// Decodes one stored value, which must be exactly one record.
fn decode(key: &JsValue, value: &JsValue) -> Result<Record> {
    let bytes = value.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec);
    let stored = bytes.as_deref().map_or(Stored::Other, Stored::Bytes);
    decode_bytes(stored).map_err(|why| corrupt(key, why))
}

/// Replays every stored record into `engine`, a page at a time, in one readonly transaction.
/// Returns the keys whose records had expired (the engine dropped them).
///
/// A page is one `getAll` of values alone (each record carries its own namespace and key, so
/// the IDB keys are never read) that crosses into wasm as one buffer. The next page is asked
/// for before this one is decoded, so IndexedDB reads it while the engine loads this one. Pages
/// start at [`LOAD_PAGE_FIRST`] records and are sized to about [`LOAD_PAGE_BYTES`] from there.
async fn load(db: &IdbDatabase, engine: &mut Engine, now: u64) -> Result<Vec<(String, String)>> {
    let (_tx, store) = idb::transaction(db, STORE, false, "relaxed")?;
    // One record per key: the count sizes the keyspace once, before the first page.
    let count = idb::request(store.count(), "count")?.result().await?;
    engine.reserve_for_load(count.as_f64().unwrap_or(0.0) as usize);
    let mut limit = LOAD_PAGE_FIRST;
    let mut after = JsValue::UNDEFINED;
    let mut next = Some(idb::packed_values(&store, &after, limit));
    let mut expired = Vec::new();
    while let Some(page) = next.take() {
        let packed = page.result().await?.unchecked_into::<Uint8Array>().to_vec();
        let values = unpack_values(&packed)?;
        let page_after = after.clone();
        let full = values.len() as u32 >= limit;
        if full {
            let last = values.len() - 1;
            let record = match decode_bytes(values[last]) {
                Ok(record) => record,
                Err(why) => return Err(corrupt_at(db, &page_after, last, why).await),
            };
            after = idb_key(record.namespace(), record.key());
            limit = load_page_after(values.len(), packed.len());
            next = Some(idb::packed_values(&store, &after, limit));
        }
        for (i, value) in values.into_iter().enumerate() {
            let record = match decode_bytes(value) {
                Ok(record) => record,
                Err(why) => return Err(corrupt_at(db, &page_after, i, why).await),
            };
            if is_expired(&record, now) {
                expired.push((record.namespace().into(), record.key().into()));
            }
            engine.load(record, now)?;
        }
    }
    engine.finish_load();
    Ok(expired)
}

/// Records in the first page read at open.
const LOAD_PAGE_FIRST: u32 = 256;
/// Bytes of values a page read at open aims at, past the first.
const LOAD_PAGE_BYTES: usize = 4 << 20;
/// Bounds of a page read at open, in records.
const LOAD_PAGE_MIN: u32 = 16;
const LOAD_PAGE_MAX: u32 = 16_384;

/// The size of the next page read at open, after a page of `records` records that took
/// `bytes` bytes: about [`LOAD_PAGE_BYTES`] of records like these.
fn load_page_after(records: usize, bytes: usize) -> u32 {
    let per_record = (bytes / records.max(1)).max(1);
    (LOAD_PAGE_BYTES / per_record).clamp(LOAD_PAGE_MIN as usize, LOAD_PAGE_MAX as usize) as u32
}

/// One value of a packed page ([`idb::packed_values`]).
#[derive(Clone, Copy)]
enum Stored<'a> {
    Bytes(&'a [u8]),
    /// A value that is not a `Uint8Array`.
    Other,
    /// No value under the key.
    Absent,
}

/// The values of a packed page ([`idb::packed_values`], [`idb::packed_values_of`]).
fn unpack_values(mut packed: &[u8]) -> Result<Vec<Stored<'_>>> {
    let cut = || Error::Backend("IndexedDB read: a packed page is cut short".into());
    let mut values = Vec::new();
    while let Some(len) = packed.get(..4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        packed = &packed[4..];
        values.push(match len {
            idb::NOT_BYTES => Stored::Other,
            idb::ABSENT => Stored::Absent,
            len => {
                let value = packed.get(..len as usize).ok_or_else(cut)?;
                packed = &packed[len as usize..];
                Stored::Bytes(value)
            }
        });
    }
    if !packed.is_empty() {
        return Err(cut());
    }
    Ok(values)
}

/// Decodes one stored value, which must be exactly one record.
fn decode_bytes(value: Stored<'_>) -> std::result::Result<Record, &'static str> {
    let Stored::Bytes(bytes) = value else {
        return Err("not a Uint8Array");
    };
    match Record::decode(bytes) {
        Ok((record, used)) if used == bytes.len() => Ok(record),
        Ok(_) => Err("trailing bytes after the record"),
        Err(crate::core::DecodeError::Incomplete) => Err("record is cut short"),
        Err(crate::core::DecodeError::Corrupt(why)) => Err(why),
    }
}

/// The error for the `index`-th record after `after` at open, naming its IDB key (read in a
/// transaction of its own: the load never reads keys).
async fn corrupt_at(db: &IdbDatabase, after: &JsValue, index: usize, why: &str) -> Error {
    let key = idb::key_after(db, STORE, after, index as u32).await;
    corrupt(&key.unwrap_or(JsValue::UNDEFINED), why)
}

fn corrupt(key: &JsValue, why: &str) -> Error {
    Error::Corrupt(format!("IndexedDB record {}: {why}", describe_key(key)))
}

/// The keys of `records` for an announcement: per key, the namespace and the key, each as a
/// u32 LE length and UTF-8 bytes.
fn pack_keys(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        for part in [r.namespace(), r.key()] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// The keys of an announcement ([`pack_keys`]); whatever does not decode is left out.
fn unpack_keys(mut bytes: &[u8]) -> Keys {
    let mut part = || -> Option<String> {
        let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let text = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?.to_owned();
        bytes = &bytes[4 + len..];
        Some(text)
    };
    let mut keys = Vec::new();
    while let (Some(namespace), Some(key)) = (part(), part()) {
        keys.push((namespace, key));
    }
    keys
}

/// Whether `record` is a Put whose deadline has passed at `now`.
fn is_expired(record: &Record, now: u64) -> bool {
    matches!(record, Record::Put(p) if p.expires_at.is_some_and(|d| d <= now))
}

/// Issues one request per record, without awaiting any, from one call into JS: the records'
/// namespaces and keys go as one string, their encoded Puts as one buffer (see
/// `writeRecords`), so a flush crosses from wasm to JS once however many records it carries.
fn issue(store: &IdbObjectStore, records: &[Record]) -> Result<()> {
    let mut names = String::new();
    let mut meta = Vec::with_capacity(records.len() * 3);
    let mut bytes = Vec::new();
    for record in records {
        for part in [record.namespace(), record.key()] {
            names.push_str(part);
            meta.push(utf16_len(part));
        }
        meta.push(match record {
            Record::Put(_) => record.encode(&mut bytes) as u32,
            Record::Delete { .. } => DELETE,
        });
    }
    write_records(store, &names, &meta, &bytes).map_err(|e| idb::error("write", &e))
}

/// In `writeRecords`' lengths: a Delete, not a Put of that many bytes.
const DELETE: u32 = u32::MAX;

/// The length of `s` in UTF-16 code units: how JS counts it.
fn utf16_len(s: &str) -> u32 {
    if s.is_ascii() {
        s.len() as u32
    } else {
        s.chars().map(|c| c.len_utf16() as u32).sum()
    }
}

impl Backend for IdbBackend {
    fn write(self: Rc<Self>, batch: Batch) -> Task<()> {
        Box::pin(async move {
            let db = self.connection().await?;
            let (tx, store) = idb::transaction(&db, STORE, true, self.durability)?;
            let committed = idb::committed(&tx);
            if let Err(e) = issue(&store, &batch.records) {
                // Nothing of a half-issued batch may commit.
                let _ = tx.abort();
                let _ = committed.await;
                return Err(e);
            }
            committed
                .await
                .map_err(|e| idb::error("write transaction", &e))?;
            // Committed: the other tabs and workers read these keys back. One buffer, copied
            // once, however many keys: a tab alone pays next to nothing for this.
            if !self.channel.is_null() {
                let keys = pack_keys(&batch.records);
                announce(&self.channel, &self.id, &Uint8Array::from(&keys[..]));
            }
            Ok(())
        })
    }

    fn subscribe(&self, listener: KeysListener) {
        let closure = JsListener::new(move |keys: JsValue| {
            let keys = unpack_keys(&keys.unchecked_into::<Uint8Array>().to_vec());
            if !keys.is_empty() {
                listener(keys);
            }
        });
        listen(&self.channel, &self.id, closure.as_ref().unchecked_ref());
        *self.listener.borrow_mut() = Some(closure);
    }

    fn read(self: Rc<Self>, keys: Keys) -> Task<Vec<Record>> {
        Box::pin(async move {
            let db = self.connection().await?;
            let (_tx, store) = idb::transaction(&db, STORE, false, "relaxed")?;
            let idb_keys: Array = keys.iter().map(|(ns, key)| idb_key(ns, key)).collect();
            let packed = idb::packed_values_of(&store, &idb_keys)
                .result()
                .await?
                .unchecked_into::<Uint8Array>()
                .to_vec();
            let values = unpack_values(&packed)?;
            let mut records = Vec::with_capacity(keys.len());
            for (i, ((namespace, key), value)) in keys.into_iter().zip(values).enumerate() {
                records.push(match value {
                    Stored::Absent => Record::Delete { namespace, key },
                    value => {
                        decode_bytes(value).map_err(|why| corrupt(&idb_keys.get(i as u32), why))?
                    }
                });
            }
            Ok(records)
        })
    }

    /// Deletes every stored record that has expired, a page of [`PAGE`] records per
    /// transaction (each record checked in the transaction that deletes it), so memory stays
    /// bounded by one page however large the database is. Nothing else is dead in IndexedDB:
    /// a set replaces its key's record and a delete removes it. Above all, a record this tab
    /// does not hold — one another tab or worker wrote after this one loaded — is never
    /// deleted, so `live` (this tab's view) only counts what is kept.
    fn compact(self: Rc<Self>, live: Vec<Record>) -> Task<CompactReport> {
        Box::pin(async move {
            drop(live);
            let now = js_sys::Date::now() as u64;
            let mut report = CompactReport::default();
            let mut after: Option<JsValue> = None;
            loop {
                let db = self.connection().await?;
                let (tx, store) = idb::transaction(&db, STORE, true, self.durability)?;
                let committed = idb::committed(&tx);
                let (keys, values) = match idb::page(&store, after.as_ref(), PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.abort();
                        let _ = committed.await;
                        return Err(e);
                    }
                };
                let n = values.length().min(keys.length());
                for i in 0..n {
                    let (key, value) = (keys.get(i), values.get(i));
                    let size = value
                        .dyn_ref::<Uint8Array>()
                        .map_or(0, |v| u64::from(v.byte_length()));
                    report.records_before += 1;
                    report.bytes_before += size;
                    let expired = decode(&key, &value).is_ok_and(|r| is_expired(&r, now));
                    if !expired {
                        report.records_after += 1;
                        report.bytes_after += size;
                    } else if let Err(e) = store.delete(&key) {
                        let _ = tx.abort();
                        let _ = committed.await;
                        return Err(idb::error("compaction delete", &e));
                    }
                }
                committed
                    .await
                    .map_err(|e| idb::error("compaction transaction", &e))?;
                if n < PAGE {
                    return Ok(report);
                }
                after = Some(keys.get(n - 1));
            }
        })
    }

    fn keeps_expired(&self) -> bool {
        true
    }

    /// One readwrite transaction: each key's record is read and deleted only if it is still
    /// an expired Put (the check and the delete happen in the same transaction, so a record
    /// another tab wrote meanwhile is never removed).
    fn reclaim_expired(self: Rc<Self>, expired: Vec<(String, String)>, now: u64) -> Task<()> {
        Box::pin(async move {
            if expired.is_empty() {
                return Ok(());
            }
            let db = self.connection().await?;
            let (tx, store) = idb::transaction(&db, STORE, true, self.durability)?;
            let committed = idb::committed(&tx);
            let keys: Array = expired.iter().map(|(ns, key)| idb_key(ns, key)).collect();
            let still_expired = Closure::<dyn Fn(JsValue) -> bool>::new(move |value: JsValue| {
                let Some(bytes) = value.dyn_ref::<Uint8Array>() else {
                    return false;
                };
                matches!(Record::decode(&bytes.to_vec()), Ok((record, _)) if is_expired(&record, now))
            });
            delete_if(&store, &keys, still_expired.as_ref().unchecked_ref());
            let result = committed
                .await
                .map(drop)
                .map_err(|e| idb::error("expiry reclaim transaction", &e));
            drop(still_expired);
            result
        })
    }
    fn close(self: Rc<Self>) -> Task<()> {
        Box::pin(async move {
            close_channel(&self.channel);
            self.listener.borrow_mut().take();
            if let Some(db) = self.db.borrow_mut().take() {
                db.close();
            }
            Ok(())
        })
    }
}
