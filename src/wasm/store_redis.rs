//! The JavaScript `RedisStore` class (Node.js build): a store whose source of truth is a Redis
//! server ([`super::backend_redis`]), returned by `Store.open({ redis, name })`.
//!
//! The engine is a write-back cache in front of Redis: nothing is loaded at open; a keyed read
//! whose key is not in memory asks Redis first and keeps the answer, so the reads (and `delete`,
//! `expire`, `persist`, which must know whether the key exists) return promises. Writes are
//! buffered and flushed as with every other backend (`Shared`'s job chain, retries with
//! backoff). Listings ask Redis and merge the store's own unconfirmed changes.
//!
//! The local tier stays coherent through what Redis reports ([`Remote`]): an invalidated copy
//! is dropped — or, with `change` listeners, read back and reported with `remote: true` — unless
//! the key has a change of the store's own not yet confirmed: a pending change lands after the
//! other writer's and wins, and a key invalidated while its write was in flight is settled once
//! that write is confirmed. After a reconnect every copy is dropped. Keys Redis said it does not
//! hold are remembered too (so a miss is not a round trip each time), and forgotten by the same
//! news.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::rc::Rc;

use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use super::backend::Backend;
use super::backend_redis::{RedisBackend, Remote};
use super::convert::{
    js_result, millis, object, string, string_array, strings, tag_counts_out, to_js, type_error,
};
use super::options::OpenOptions;
use super::store::{namespace_close_error, prefix_of, JsStore, Shared};
use super::walk::{entry_out, iterate_async, CHUNK};
use crate::core::{Engine, NsId};
use crate::{Error, Record};

/// Keys remembered as absent from Redis, at most; past this the memory starts over.
const ABSENT_MAX: usize = 100_000;

/// One open Redis store: the engine (in [`Shared`]), the backend and the coherence state.
struct Core {
    shared: Rc<Shared>,
    backend: Rc<RedisBackend>,
    /// (namespace, key) pairs Redis said it does not hold, since the last news about them.
    absent: RefCell<HashSet<(NsId, String)>>,
    /// Keys invalidated while a change of this store's was unconfirmed (namespace, key).
    deferred: RefCell<Vec<(String, String)>>,
}

/// Opens the store of `opts` (with its `redis` URL): connects (failing the open with a
/// `Backend` error naming the cause), turns tracking on, and loads nothing.
pub(super) async fn open(opts: OpenOptions) -> Result<JsValue, JsValue> {
    let url = opts.redis.as_deref().unwrap_or_default();
    // Under a memory cap only local copies go: Redis keeps the data, and a key with a change
    // not yet confirmed by Redis is never evicted.
    let config = crate::core::Config {
        evict_copies_only: true,
        ..opts.config.clone()
    };
    let engine = js_result(Engine::new(config))?;
    let backend = js_result(RedisBackend::open(url, &opts.name).await)?;
    let shared = Shared::new(engine, Some(backend.clone() as Rc<dyn Backend>), Vec::new());
    let core = Rc::new(Core {
        shared,
        backend,
        absent: RefCell::default(),
        deferred: RefCell::default(),
    });
    let me = Rc::downgrade(&core);
    core.backend.listen(Box::new(move |news| {
        if let Some(core) = me.upgrade() {
            core.hear(news);
        }
    }));
    Ok(JsRedisStore {
        core,
        ns: 0,
        handle: false,
    }
    .into())
}

/// The id of namespace `name` if the engine has it (never creates one).
fn find_ns(e: &Engine, name: &str) -> Option<NsId> {
    (0..)
        .map_while(|ns| e.namespace_name(ns).ok().map(|n| (ns, n == name)))
        .find(|(_, same)| *same)
        .map(|(ns, _)| ns)
}

impl Core {
    fn hear(self: &Rc<Self>, news: Remote) {
        match news {
            Remote::Keys(keys) => self.invalidate(keys),
            Remote::Everything => self.drop_all(),
            Remote::Confirmed => {
                let keys = std::mem::take(&mut *self.deferred.borrow_mut());
                if !keys.is_empty() {
                    self.invalidate(keys);
                }
            }
        }
    }

    /// Another client changed `keys`: drop (or read back) each copy that is not an unconfirmed
    /// change of this store's, and defer the others.
    fn invalidate(self: &Rc<Self>, keys: Vec<(String, String)>) {
        let hears = self.shared.hears_changes();
        let mut read_back: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let _ = self.shared.with(|e, now| {
            for (namespace, key) in keys {
                let ns = if hears {
                    js_result(e.namespace(&namespace))?
                } else {
                    match find_ns(e, &namespace) {
                        Some(ns) => ns,
                        None => continue,
                    }
                };
                self.absent.borrow_mut().remove(&(ns, key.clone()));
                if e.is_local(ns, &key) {
                    self.deferred.borrow_mut().push((namespace, key));
                } else if hears {
                    read_back.entry(namespace).or_default().push(key);
                } else {
                    js_result(e.load(Record::Delete { namespace, key }, now))?;
                }
            }
            Ok(())
        });
        for (namespace, keys) in read_back {
            let me = Rc::clone(self);
            spawn_local(async move { me.read_back(namespace, keys).await });
        }
    }

    /// Reads `keys` back and reports what changed (`remote: true`); on failure drops them and
    /// reports the error.
    async fn read_back(self: Rc<Self>, namespace: String, keys: Vec<String>) {
        let fetched = self.backend.fetch(&namespace, &keys).await;
        if self.shared.is_closed() {
            return;
        }
        let mut changes = Vec::new();
        let result = self.shared.with(|e, now| {
            match &fetched {
                Ok(records) => {
                    for (key, record) in keys.iter().zip(records) {
                        let record = record.clone().unwrap_or_else(|| Record::Delete {
                            namespace: namespace.clone(),
                            key: key.clone(),
                        });
                        changes.extend(js_result(e.apply_remote(record, now))?);
                    }
                }
                Err(_) => {
                    for key in &keys {
                        let ns = js_result(e.namespace(&namespace))?;
                        if !e.is_local(ns, key) {
                            let delete = Record::Delete {
                                namespace: namespace.clone(),
                                key: key.clone(),
                            };
                            js_result(e.load(delete, now))?;
                        }
                    }
                }
            }
            Ok(())
        });
        self.shared.emit_changes(changes);
        if let Err(error) = fetched.map(drop).map_err(to_js).and(result) {
            self.shared.emit_error(&error);
        }
    }

    /// Drops every copy that is not an unconfirmed change of this store's.
    fn drop_all(&self) {
        self.absent.borrow_mut().clear();
        let _ = self.shared.with(|e, now| {
            let mut ns = 0;
            while let Ok(name) = e.namespace_name(ns) {
                let name = name.to_string();
                for key in js_result(e.keys(ns, "", now))? {
                    if !e.is_local(ns, &key) {
                        let delete = Record::Delete {
                            namespace: name.clone(),
                            key,
                        };
                        js_result(e.load(delete, now))?;
                    }
                }
                ns += 1;
            }
            Ok(())
        });
    }

    /// Makes sure each of `keys` of namespace `ns` is in memory if Redis holds it: a key that
    /// is live locally, has an unconfirmed change, or is known to be absent is not asked for.
    /// Rejects with a `Backend` error when Redis cannot be asked.
    async fn fetch_missing(&self, ns: NsId, keys: &[String]) -> Result<(), JsValue> {
        if self.shared.is_closed() {
            return Err(to_js(Error::Closed));
        }
        let (namespace, missing) = self.shared.with(|e, now| {
            let namespace = js_result(e.namespace_name(ns))?.to_string();
            let absent = self.absent.borrow();
            let mut missing = BTreeSet::new();
            for key in keys {
                let known = e.is_local(ns, key)
                    || js_result(e.contains(ns, key, now))?
                    || absent.contains(&(ns, key.clone()));
                if !known {
                    missing.insert(key.clone());
                }
            }
            Ok((namespace, missing.into_iter().collect::<Vec<_>>()))
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        let records = match self.backend.fetch(&namespace, &missing).await {
            Ok(records) => records,
            Err(error) => {
                self.shared
                    .engine
                    .borrow_mut()
                    .note_error(&error.to_string());
                return Err(to_js(error));
            }
        };
        self.shared.with(|e, now| {
            let mut absent = self.absent.borrow_mut();
            for (key, record) in missing.into_iter().zip(records) {
                // A write of this store's made meanwhile is newer than the answer.
                if e.is_local(ns, &key) || js_result(e.contains(ns, &key, now))? {
                    continue;
                }
                match record {
                    Some(record) => js_result(e.load(record, now))?,
                    None => {
                        if absent.len() >= ABSENT_MAX {
                            absent.clear();
                        }
                        absent.insert((ns, key));
                    }
                }
            }
            Ok(())
        })
    }

    /// The live keys of namespace `ns` starting with `prefix`, sorted: Redis's (by `SCAN`)
    /// merged with this store's unconfirmed changes.
    async fn live_keys(&self, ns: NsId, prefix: &str) -> Result<Vec<String>, JsValue> {
        let namespace = {
            let engine = self.shared.engine.borrow();
            js_result(engine.namespace_name(ns))?.to_string()
        };
        let held = self
            .backend
            .scan_keys(&namespace, prefix)
            .await
            .map_err(to_js)?;
        self.shared.with(|e, now| {
            let mut keys: BTreeSet<String> =
                js_result(e.keys(ns, prefix, now))?.into_iter().collect();
            keys.extend(held.into_iter().filter(|k| !e.is_local(ns, k)));
            Ok(keys.into_iter().collect())
        })
    }

    /// The keys (in namespace `ns`, named `namespace`) with a change not confirmed yet.
    fn unconfirmed(&self, e: &Engine, ns: NsId, namespace: &str) -> Vec<String> {
        let mut keys: BTreeSet<String> = e
            .pending_records()
            .into_iter()
            .filter(|r| r.namespace() == namespace)
            .map(|r| r.key().to_string())
            .collect();
        keys.extend(
            self.backend
                .in_flight()
                .into_iter()
                .filter(|(n, k)| n == namespace && e.is_local(ns, k))
                .map(|(_, k)| k),
        );
        keys.into_iter().collect()
    }
}

/// A tidekv store on Redis (Node.js). All key methods act on this handle's namespace.
#[wasm_bindgen(js_name = RedisStore)]
pub struct JsRedisStore {
    core: Rc<Core>,
    ns: NsId,
    /// Made by `namespace()`: `close()` refuses to close the store through it.
    handle: bool,
}

impl JsRedisStore {
    /// The plain store handle of this namespace, for the calls that run on memory alone.
    fn local(&self) -> JsStore {
        JsStore::bound(Rc::clone(&self.core.shared), self.ns)
    }

    /// A promise of `op` on this handle once `keys` (or the error parsing them) are fetched.
    fn after_fetch(
        &self,
        keys: Result<Vec<String>, JsValue>,
        op: impl FnOnce(&JsStore) -> Result<JsValue, JsValue> + 'static,
    ) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        future_to_promise(async move {
            core.fetch_missing(ns, &keys?).await?;
            op(&JsStore::bound(Rc::clone(&core.shared), ns))
        })
    }

    /// The namespace name of this handle.
    fn namespace_name(&self) -> Result<String, JsValue> {
        let engine = self.core.shared.engine.borrow();
        Ok(js_result(engine.namespace_name(self.ns))?.to_string())
    }
}

#[wasm_bindgen(js_class = RedisStore)]
impl JsRedisStore {
    /// Stores `value` under `key` (as `Store.set`): buffered, flushed to Redis with the next
    /// batch. Throws (and stores nothing) on bad input.
    pub fn set(&self, key: JsValue, value: JsValue, opts: JsValue) -> Result<(), JsValue> {
        self.local().set(key, value, opts)
    }

    /// Stores many entries as one change, all or nothing (as `Store.setMany`); the batch reaches
    /// Redis in one script call per namespace, so other clients see all of it or none.
    #[wasm_bindgen(js_name = setMany)]
    pub fn set_many(&self, entries: JsValue) -> Result<(), JsValue> {
        self.local().set_many(entries)
    }

    /// Resolves with the value under `key` (from memory, or read from Redis and kept), or
    /// `undefined`. Rejects with code `Backend` when Redis must be asked and cannot be.
    pub fn get(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.get(key))
    }

    /// Resolves with `{ value, metadata }` or `undefined` (as `get`).
    #[wasm_bindgen(js_name = getWithMetadata)]
    pub fn get_with_metadata(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.get_with_metadata(key))
    }

    /// Resolves with whether `key` holds a live value.
    pub fn has(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.has(key).map(JsValue::from_bool))
    }

    /// Removes `key`; resolves with whether it held a live value.
    pub fn delete(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.delete(key).map(JsValue::from_bool))
    }

    /// Removes many keys as one change (as `Store.deleteMany`); resolves with how many held a
    /// live value.
    #[wasm_bindgen(js_name = deleteMany)]
    pub fn delete_many(&self, keys: JsValue) -> Promise {
        // Only well-formed lists are fetched; `Store.deleteMany` names what is wrong otherwise.
        let fetch = Array::is_array(&keys)
            .then(|| {
                Array::from(&keys)
                    .iter()
                    .map(|k| k.as_string())
                    .collect::<Option<Vec<_>>>()
            })
            .flatten()
            .unwrap_or_default();
        self.after_fetch(Ok(fetch), move |s| {
            s.delete_many(keys).map(|n| JsValue::from_f64(f64::from(n)))
        })
    }

    /// Resolves with the ms until `key` expires, or `undefined`.
    pub fn ttl(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.ttl(key))
    }

    /// Makes `key` expire `ttl` ms from now; resolves with whether the key exists.
    pub fn expire(&self, key: JsValue, ttl: JsValue) -> Promise {
        let keys = string(&key, "key").and_then(|k| match millis(&ttl, "ttl")? {
            Some(_) => Ok(vec![k]),
            None => Err(type_error("ttl is required: a number of milliseconds")),
        });
        self.after_fetch(keys, move |s| s.expire(key, ttl).map(JsValue::from_bool))
    }

    /// Removes the TTL of `key`; resolves with whether the key exists.
    pub fn persist(&self, key: JsValue) -> Promise {
        let keys = string(&key, "key").map(|k| vec![k]);
        self.after_fetch(keys, move |s| s.persist(key).map(JsValue::from_bool))
    }

    /// Resolves with the live keys starting with `prefix` (default: all), sorted: Redis's
    /// (by `SCAN`) merged with this store's unconfirmed changes.
    pub fn keys(&self, prefix: JsValue) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        let prefix = prefix_of(&prefix);
        future_to_promise(async move { Ok(string_array(core.live_keys(ns, &prefix?).await?)) })
    }

    /// As `Store.getOrSet`: resolves with the live value of `key` — from memory, or read from
    /// Redis — and otherwise runs `loader` once, however many calls miss the key meanwhile,
    /// stores its value (buffered, flushed to Redis with the next batch) and resolves with it.
    /// The loader runs in this process only: two processes that miss at once each run theirs.
    #[wasm_bindgen(js_name = getOrSet)]
    pub fn get_or_set(&self, key: JsValue, loader: JsValue, opts: JsValue) -> Promise {
        let shared = &self.core.shared;
        let load = match shared.load_of(&key, &loader, &opts) {
            Ok(load) => load,
            Err(e) => return Promise::reject(&e),
        };
        if let Some(running) = shared.loading(self.ns, load.key()) {
            return running;
        }
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        let wanted = load.key().to_string();
        shared.load(ns, load, async move {
            core.fetch_missing(ns, std::slice::from_ref(&wanted))
                .await?;
            JsStore::bound(Rc::clone(&core.shared), ns).get(JsValue::from(wanted))
        })
    }

    /// An async iterator over the live entries whose key starts with `prefix` (default: all),
    /// as `[key, value, metadata]` arrays, sorted by key: the keys `keys(prefix)` lists, read
    /// 256 at a time (from memory, or from Redis in one round trip per chunk). A key deleted
    /// after the listing is skipped. Use `for await`.
    pub fn entries(&self, prefix: JsValue) -> Result<JsValue, JsValue> {
        let prefix = prefix_of(&prefix)?;
        let chunks = RedisEntryChunks {
            core: Rc::clone(&self.core),
            ns: self.ns,
            walk: Rc::new(RefCell::new(Walk { prefix, keys: None })),
        };
        Ok(iterate_async(chunks.into()))
    }

    /// Resolves with the number of live keys in this handle's namespace: those Redis holds
    /// and this store's unflushed ones (`keys().length`, one `SCAN` of the namespace). A method
    /// rather than `Store`'s `size` getter, because it needs Redis.
    pub fn size(&self) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        future_to_promise(async move {
            Ok(JsValue::from_f64(core.live_keys(ns, "").await?.len() as f64))
        })
    }

    /// Removes every key of this handle's namespace — all that `keys()` lists, Redis's and
    /// this store's — as one change, flushed to Redis in one transaction; resolves with how
    /// many live keys it removed. A key another client writes while the listing runs may stay.
    pub fn clear(&self) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        future_to_promise(async move {
            let keys = core.live_keys(ns, "").await?;
            // Deleting a key needs its copy: fetched here, deleted in the same turn.
            core.fetch_missing(ns, &keys).await?;
            let removed =
                JsStore::bound(Rc::clone(&core.shared), ns).delete_many(string_array(keys))?;
            Ok(JsValue::from_f64(f64::from(removed)))
        })
    }

    /// Resolves with the live keys carrying every one of `tags`, sorted: Redis's tag sets
    /// (after a reap step, each member checked to exist, so an expired key is never listed)
    /// merged with this store's unconfirmed changes.
    #[wasm_bindgen(js_name = queryByTags)]
    pub fn query_by_tags(&self, tags: JsValue) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        let namespace = self.namespace_name();
        future_to_promise(async move {
            let tags = strings(&tags, "tags")?;
            let namespace = namespace?;
            let held = core
                .backend
                .query_tags(&namespace, &tags)
                .await
                .map_err(to_js)?;
            core.shared.with(|e, now| {
                let mut keys: BTreeSet<String> = js_result(e.query_by_tags(ns, &tags, now))?
                    .into_iter()
                    .collect();
                keys.extend(held.into_iter().filter(|k| !e.is_local(ns, k)));
                Ok(string_array(keys))
            })
        })
    }

    /// Resolves with `[{ tag, count }]` for every tag on a live key, sorted by tag: Redis's
    /// counts, corrected for this store's unconfirmed changes.
    #[wasm_bindgen(js_name = listTags)]
    pub fn list_tags(&self) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        let namespace = self.namespace_name();
        future_to_promise(async move {
            let namespace = namespace?;
            let local = core.unconfirmed(&core.shared.engine.borrow(), ns, &namespace);
            let (held, tags_of) = core
                .backend
                .tag_counts(&namespace, &local)
                .await
                .map_err(to_js)?;
            core.shared.with(|e, now| {
                let mut counts: BTreeMap<String, i64> =
                    held.into_iter().map(|(t, n)| (t, n as i64)).collect();
                // What Redis counts for a key with an unconfirmed change is replaced by what
                // the store holds for it.
                for (key, tags) in local.iter().zip(&tags_of) {
                    if !e.is_local(ns, key) {
                        continue;
                    }
                    for tag in tags {
                        *counts.entry(tag.clone()).or_default() -= 1;
                    }
                }
                for (tag, _) in js_result(e.list_tags(ns, now))? {
                    let mine = js_result(e.query_by_tags(ns, &[&tag], now))?
                        .iter()
                        .filter(|k| e.is_local(ns, k))
                        .count();
                    *counts.entry(tag).or_default() += mine as i64;
                }
                Ok(tag_counts_out(
                    counts
                        .into_iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(tag, n)| (tag, n as f64)),
                ))
            })
        })
    }

    /// A handle to namespace `name` of the same store.
    pub fn namespace(&self, name: JsValue) -> Result<JsRedisStore, JsValue> {
        let ns = self.local().namespace(name)?;
        Ok(JsRedisStore {
            core: Rc::clone(&self.core),
            ns: ns.ns(),
            handle: true,
        })
    }

    /// Removes every expired local copy now; returns how many (Redis expires keys itself).
    #[wasm_bindgen(js_name = sweepExpired)]
    pub fn sweep_expired(&self) -> Result<u32, JsValue> {
        self.local().sweep_expired()
    }

    /// The store's counters (as `Store.stats`), plus `redis: { connected, failing, lastError,
    /// fetched, invalidations, resets }`: whether both connections are up, whether Redis is
    /// failing the store now (a lost connection, a failed flush), the last connection error,
    /// keys read from Redis, keys other clients changed, and times every local copy was
    /// dropped.
    pub fn stats(&self) -> JsValue {
        let stats = self.local().stats();
        let backend = &self.core.backend;
        let connected = backend.connected();
        let error = backend.connection_error();
        let failing = self.core.shared.flush_failing() || (!connected && error.is_some());
        let counters = backend.counters();
        let n = |v: u64| JsValue::from_f64(v as f64);
        let redis = object(&[
            ("connected", JsValue::from_bool(connected)),
            ("failing", JsValue::from_bool(failing)),
            ("lastError", error.map_or(JsValue::NULL, JsValue::from)),
            ("fetched", n(counters.fetched)),
            ("invalidations", n(counters.invalidations)),
            ("resets", n(counters.resets)),
        ]);
        let _ = js_sys::Reflect::set(&stats, &JsValue::from_str("redis"), &redis);
        stats
    }

    /// Adds a listener (as `Store.on`). `change` events report other clients' changes too, with
    /// `remote: true`: `set` if Redis holds the key, `delete` if not, `expire` if the local
    /// copy's deadline had passed.
    pub fn on(&self, event: JsValue, listener: JsValue) -> Result<(), JsValue> {
        self.local().on(event, listener)
    }

    /// Removes a listener added with `on`.
    pub fn off(&self, event: JsValue, listener: JsValue) -> Result<(), JsValue> {
        self.local().off(event, listener)
    }

    /// Writes everything buffered; resolves once Redis acknowledged it. On failure it rejects
    /// (code `Backend`), the data stays buffered and is retried with backoff.
    pub fn flush(&self) -> Promise {
        self.core.shared.flush()
    }

    /// Flushes, then closes both connections; later calls fail with code `Closed`. A namespace
    /// handle's `close()` rejects with a `TypeError` (code `InvalidType`) and closes nothing.
    pub fn close(&self) -> Promise {
        if self.handle {
            return Promise::reject(&namespace_close_error());
        }
        self.local().close()
    }
}

/// Where a `RedisStore.entries()` walk stands.
struct Walk {
    prefix: String,
    /// The keys still to read; `None` until they are listed (at the first chunk).
    keys: Option<VecDeque<String>>,
}

/// The walk behind `RedisStore.entries()` (internal; the async iterator `entries()` returns
/// wraps it).
#[wasm_bindgen]
pub struct RedisEntryChunks {
    core: Rc<Core>,
    ns: NsId,
    walk: Rc<RefCell<Walk>>,
}

#[wasm_bindgen]
impl RedisEntryChunks {
    /// Resolves with the next entries (`[key, value, metadata]` arrays), or `null` once the
    /// walk is over. Rejects with code `Backend` when Redis must be asked and cannot be.
    pub fn chunk(&self) -> Promise {
        let core = Rc::clone(&self.core);
        let ns = self.ns;
        let walk = Rc::clone(&self.walk);
        future_to_promise(async move {
            let listed = walk.borrow().keys.is_some();
            if !listed {
                let prefix = walk.borrow().prefix.clone();
                let keys = core.live_keys(ns, &prefix).await?;
                walk.borrow_mut().keys = Some(keys.into());
            }
            let chunk: Vec<String> = {
                let mut walk = walk.borrow_mut();
                let keys = walk.keys.get_or_insert_with(VecDeque::new);
                let n = keys.len().min(CHUNK);
                keys.drain(..n).collect()
            };
            if chunk.is_empty() {
                return Ok(JsValue::NULL);
            }
            core.fetch_missing(ns, &chunk).await?;
            core.shared.with(|e, now| {
                let out = Array::new();
                for key in chunk {
                    if let Some((value, meta)) = js_result(e.get_with_metadata(ns, &key, now))? {
                        out.push(&entry_out(&key, &value, meta)?);
                    }
                }
                Ok(out.into())
            })
        })
    }
}
