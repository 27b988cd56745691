//! The IndexedDB backend: the browser's durable store for a tidekv database.
//!
//! Layout: database `name`, one object store `records` for every namespace. A key's IDB key is
//! `[namespace, key]` and its value the key's newest Put record as a `Uint8Array`, in the record
//! format every persistent backend shares ([`crate::core::record`]); a Delete removes the IDB
//! key. One object store means a new namespace never needs a schema version bump (which other
//! open tabs could block).
//!
//! A flush is one readwrite transaction carrying every put and delete of the batch, issued
//! without awaiting each request; the batch counts as written on the transaction's `complete`
//! event only. On `abort` (a failed request, `QuotaExceededError`, a closed connection) the error
//! names the cause and the store keeps the batch buffered. If another tab upgrades or deletes the
//! database, this connection closes itself (so the other tab is not blocked) and the next write
//! reconnects.
//!
//! Request and transaction plumbing lives in [`super::idb`]; this file never touches callbacks.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{IdbDatabase, IdbFactory, IdbObjectStore};

use super::backend::{Backend, CompactReport, Task};
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
}

impl IdbBackend {
    /// Opens database `name` (creating it if needed) and loads every live record into
    /// `engine`. `strict` asks the browser to flush to disk before `complete`.
    pub(crate) async fn open(
        name: &str,
        strict: bool,
        engine: &mut Engine,
        now: u64,
    ) -> Result<Rc<IdbBackend>> {
        let factory = idb::factory().ok_or_else(|| {
            Error::Backend(
                "IndexedDB is not available in this JavaScript realm; pass backend: 'memory'"
                    .into(),
            )
        })?;
        let db = idb::open(&factory, name, STORE).await?;
        if let Err(e) = load(&db, engine, now).await {
            db.close();
            return Err(e);
        }
        Ok(Rc::new(IdbBackend {
            factory,
            name: name.into(),
            durability: if strict { "strict" } else { "relaxed" },
            db: RefCell::new(Some(db)),
        }))
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

/// The IDB key of a record: `[namespace, key]`.
fn idb_key(namespace: &str, key: &str) -> JsValue {
    Array::of2(&namespace.into(), &key.into()).into()
}

fn describe_key(key: &JsValue) -> String {
    js_sys::JSON::stringify(key).map_or_else(|_| "?".into(), String::from)
}

/// Decodes one stored value, which must be exactly one record.
fn decode(key: &JsValue, value: &JsValue) -> Result<Record> {
    let corrupt =
        |why: &str| Error::Corrupt(format!("IndexedDB record {}: {why}", describe_key(key)));
    let bytes = value
        .dyn_ref::<Uint8Array>()
        .ok_or_else(|| corrupt("not a Uint8Array"))?
        .to_vec();
    match Record::decode(&bytes) {
        Ok((record, used)) if used == bytes.len() => Ok(record),
        Ok(_) => Err(corrupt("trailing bytes after the record")),
        Err(crate::core::DecodeError::Incomplete) => Err(corrupt("record is cut short")),
        Err(crate::core::DecodeError::Corrupt(why)) => Err(corrupt(why)),
    }
}

/// Replays every stored record into `engine`, a page at a time, in one readonly transaction.
async fn load(db: &IdbDatabase, engine: &mut Engine, now: u64) -> Result<()> {
    let (_tx, store) = idb::transaction(db, STORE, false, "relaxed")?;
    // One record per key: the count sizes the keyspace once, before the first page.
    let count = idb::request(store.count(), "count")?.result().await?;
    engine.reserve_for_load(count.as_f64().unwrap_or(0.0) as usize);
    let mut after: Option<JsValue> = None;
    loop {
        let (keys, values) = idb::page(&store, after.as_ref(), PAGE).await?;
        let n = values.length().min(keys.length());
        for i in 0..n {
            engine.load(decode(&keys.get(i), &values.get(i))?, now)?;
        }
        if n < PAGE {
            engine.finish_load();
            return Ok(());
        }
        after = Some(keys.get(n - 1));
    }
}

/// Issues one request per record, without awaiting any.
fn issue(store: &IdbObjectStore, records: &[Record]) -> Result<()> {
    let mut buf = Vec::new();
    for record in records {
        let key = idb_key(record.namespace(), record.key());
        let request = match record {
            Record::Put(_) => {
                buf.clear();
                record.encode(&mut buf);
                store.put_with_key(&Uint8Array::from(&buf[..]), &key)
            }
            Record::Delete { .. } => store.delete(&key),
        };
        request.map_err(|e| idb::error("write", &e))?;
    }
    Ok(())
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
                .map(|_| ())
                .map_err(|e| idb::error("write transaction", &e))
        })
    }

    fn compact(self: Rc<Self>, live: Vec<Record>) -> Task<CompactReport> {
        Box::pin(async move {
            let db = self.connection().await?;
            let (tx, store) = idb::transaction(&db, STORE, true, self.durability)?;
            let committed = idb::committed(&tx);
            let keys = idb::request(store.get_all_keys(), "compaction read")?;
            let values = idb::request(store.get_all(), "compaction read")?;
            let keys: Array = keys.result().await?.unchecked_into();
            let values: Array = values.result().await?.unchecked_into();
            let wanted: HashSet<(&str, &str)> =
                live.iter().map(|r| (r.namespace(), r.key())).collect();
            let mut report = CompactReport::default();
            for (key, value) in keys.iter().zip(values.iter()) {
                let size = value
                    .dyn_ref::<Uint8Array>()
                    .map_or(0, |v| u64::from(v.byte_length()));
                report.records_before += 1;
                report.bytes_before += size;
                let pair = key
                    .dyn_ref::<Array>()
                    .map(|a| (a.get(0).as_string(), a.get(1).as_string()));
                let keep = matches!(&pair, Some((Some(ns), Some(k))) if wanted.contains(&(ns.as_str(), k.as_str())));
                if keep {
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
            Ok(report)
        })
    }

    fn close(self: Rc<Self>) -> Task<()> {
        Box::pin(async move {
            if let Some(db) = self.db.borrow_mut().take() {
                db.close();
            }
            Ok(())
        })
    }
}
