//! The JavaScript `Store` class.
//!
//! Reads are answered from the engine synchronously; writes go to the engine's buffer
//! synchronously; `flush()`, `compact()` and `close()` return Promises. A namespace handle is
//! another `Store` object bound to a namespace of the same engine.
//!
//! Backend work (flushes, compaction, close) runs one job at a time, in call order, on a promise
//! chain: a `flush()` resolves only after every write made before it is committed. Time and
//! ticks come from [`super::scheduler`]; this file never arms a timer itself.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::rc::Rc;

use js_sys::{Array, Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, spawn_local, JsFuture};

use super::backend::{Backend, CompactReport};
use super::backend_idb::IdbBackend;
use super::cache::{scratch_entry, scratch_key, Cache};
use super::convert::{
    invalid_value, js_result, listener_error, metadata_out, millis, object, options, stats_out,
    string, string_array, strings, tag_counts_out, to_js, type_error, value_in, value_out, warn,
};
use super::idb;
use super::options::{memory_config, BackendKind, Durability, OpenOptions};
use super::scheduler::{self, now};
use super::walk::EntryChunks;
use crate::core::dump;
use crate::core::{BatchOp, Change, ChangeOp, Config, Engine, NsId, Record};
use crate::{Error, Kind};

/// Retry delays after failed flushes grow from this, doubling, ...
const RETRY_MIN_MS: u64 = 100;
/// ... up to this.
const RETRY_MAX_MS: u64 = 10_000;

#[derive(Default)]
struct Listeners {
    expire: Vec<Function>,
    error: Vec<Function>,
    change: Vec<Function>,
}

impl Listeners {
    /// The listeners of `event` (one [`event_args`] accepted).
    fn list(&mut self, event: &str) -> &mut Vec<Function> {
        match event {
            "change" => &mut self.change,
            "expire" => &mut self.expire,
            _ => &mut self.error,
        }
    }
}

/// One open store: the engine, its backend, the job chain and the event listeners. Shared by
/// every namespace handle and by the scheduler.
pub(crate) struct Shared {
    pub(super) engine: RefCell<Engine>,
    backend: Option<Rc<dyn Backend>>,
    closed: Cell<bool>,
    /// Settles when the last queued backend job has finished (never rejects).
    tail: RefCell<Promise>,
    /// A flush was started by a tick or a full buffer and has not taken its batch yet.
    kick_queued: Cell<bool>,
    /// Consecutive failed flushes, and when the scheduler may try again.
    failures: Cell<u32>,
    retry_at: Cell<u64>,
    listeners: RefCell<Listeners>,
    /// Expired keys whose stored records the backend still has to remove
    /// ([`Backend::keeps_expired`]), and whether a job for them is queued.
    reclaim: RefCell<Vec<(String, String)>>,
    reclaim_queued: Cell<bool>,
    /// An automatic compaction is queued.
    compaction_queued: Cell<bool>,
    /// Browser storage figures, for an IndexedDB store (see [`Storage`]).
    storage: RefCell<Option<Storage>>,
    /// The `getOrSet` loads running now, by (namespace, key): every caller that misses a key
    /// while its loader runs gets the same promise.
    loads: RefCell<HashMap<(NsId, String), Promise>>,
    /// The JS-side copy of recently read and written keys (see [`super::cache`]).
    pub(super) cache: Cache,
}

/// A checked `getOrSet` call whose key was not live: what to load and how to store it.
pub(super) struct Load {
    key: String,
    loader: Function,
    ttl_ms: Option<u64>,
    tags: Vec<String>,
}

impl Load {
    /// The key to load.
    pub(super) fn key(&self) -> &str {
        &self.key
    }
}

/// What `stats().storage` reports for an IndexedDB store.
#[derive(Clone, Copy, Default)]
struct Storage {
    /// Whether the browser keeps the data when storage runs short (`None`: unknown).
    persisted: Option<bool>,
    /// The last `navigator.storage.estimate()`: quota and usage in bytes.
    estimate: Option<(f64, f64)>,
    /// When it was taken (ms since the epoch).
    estimated_at: u64,
}

/// A number for JS, or `null` where there is none.
fn figure(n: Option<f64>) -> JsValue {
    n.filter(|n| !n.is_nan())
        .map_or(JsValue::NULL, JsValue::from_f64)
}

/// The storage estimate is refreshed after a flush at most this often, in ms.
const ESTIMATE_EVERY_MS: u64 = 2_000;

/// Expired keys one reclaim job hands the backend, at most.
const RECLAIM_BATCH: usize = 1_000;

impl Shared {
    pub(super) fn new(
        mut engine: Engine,
        backend: Option<Rc<dyn Backend>>,
        reclaim: Vec<(String, String)>,
    ) -> Rc<Shared> {
        let persistent = backend.is_some();
        // A cap evicts any key and stamps reads; a copy of a source of truth changes under it.
        let cached = engine.config().max_memory.is_none() && !engine.config().evict_copies_only;
        if backend.as_ref().is_some_and(|b| b.keeps_expired()) {
            engine.set_track_expired(true);
        }
        let shared = Rc::new(Shared {
            engine: RefCell::new(engine),
            backend,
            closed: Cell::new(false),
            tail: RefCell::new(Promise::resolve(&JsValue::UNDEFINED)),
            kick_queued: Cell::new(false),
            failures: Cell::new(0),
            retry_at: Cell::new(0),
            listeners: RefCell::default(),
            reclaim: RefCell::new(reclaim),
            reclaim_queued: Cell::new(false),
            compaction_queued: Cell::new(false),
            storage: RefCell::new(None),
            loads: RefCell::default(),
            cache: Cache::new(cached),
        });
        scheduler::register(&shared, persistent);
        if let Some(backend) = &shared.backend {
            // Another tab or worker committed these keys: read them back, in job order.
            let me = Rc::downgrade(&shared);
            backend.subscribe(Box::new(move |keys| {
                if let Some(me) = me.upgrade() {
                    me.refresh(keys);
                }
            }));
        }
        shared
    }

    /// Reads `keys` back from the backend and applies what another writer committed (see
    /// [`Engine::apply_remote`]), firing `change` events with `remote: true`. A job like a
    /// flush, so it never reads around a flush of this store: a key this store changed and has
    /// not had confirmed keeps its own value, which lands after the other writer's.
    fn refresh(self: &Rc<Self>, keys: Vec<(String, String)>) {
        if self.closed.get() {
            return;
        }
        let done = self.queue(|me| async move {
            let Some(backend) = me.backend.clone() else {
                return Ok(JsValue::UNDEFINED);
            };
            let records = backend.read(keys).await.map_err(|e| {
                let error = to_js(e);
                me.emit_error(&error);
                error
            })?;
            let now = now();
            let (changes, next_tick) = {
                let mut engine = me.engine.borrow_mut();
                let mut changes = Vec::new();
                for record in records {
                    if let Some(change) = js_result(engine.apply_remote(record, now))? {
                        changes.push(change);
                    }
                }
                (changes, engine.next_tick_ms(now))
            };
            me.cache.clear();
            me.emit_changes(changes);
            scheduler::wake(now, next_tick);
            Ok(JsValue::UNDEFINED)
        });
        spawn_local(async move {
            // A failure was reported through the `error` event.
            let _ = JsFuture::from(done).await;
        });
    }

    /// Runs `f` on the engine with the current time, refusing once the store is closed; then
    /// fires expiry events, starts a flush if the buffer filled, and tells the scheduler when
    /// the engine next wants a tick. Empties the read cache: `f` may change any key.
    pub(super) fn with<R>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Engine, u64) -> Result<R, JsValue>,
    ) -> Result<R, JsValue> {
        let result = self.with_cache_kept(f);
        self.cache.clear();
        result
    }

    /// [`with`](Self::with) for a call that changes nothing, or only the key it names and then
    /// brings that key's cache entry up to date itself: the read cache is kept.
    pub(super) fn with_cache_kept<R>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut Engine, u64) -> Result<R, JsValue>,
    ) -> Result<R, JsValue> {
        if self.closed.get() {
            return Err(to_js(Error::Closed));
        }
        let now = now();
        let result = f(&mut self.engine.borrow_mut(), now);
        self.after_call(now);
        result
    }

    /// What follows every call on the engine (see [`with`](Self::with)); one copy, not one
    /// per closure `with` is called with.
    #[inline(never)]
    fn after_call(self: &Rc<Self>, now: u64) {
        let (changes, flush_due, next_tick) = {
            let mut engine = self.engine.borrow_mut();
            (
                engine.take_changes(),
                engine.flush_due(now),
                engine.next_tick_ms(now),
            )
        };
        self.emit_changes(changes);
        if flush_due && now >= self.retry_at.get() {
            self.kick();
        }
        scheduler::wake(now, next_tick);
    }

    /// One scheduler tick: sweep, fire expiry events, start a due flush. Returns the delay
    /// until the next tick this store wants, or `None` once it is closed.
    pub(crate) fn tick(self: &Rc<Self>, now: u64) -> Option<u64> {
        if self.closed.get() {
            return None;
        }
        let (changes, flush_due, mut delay, max_tick) = {
            let mut engine = self.engine.borrow_mut();
            let budget = engine.config().sweep_budget;
            if engine.sweep(now, budget).expired > 0 {
                // The cache never serves an expired key; emptied anyway, so that a wall clock
                // set back cannot bring a swept key back from it.
                self.cache.clear();
            }
            (
                engine.take_changes(),
                engine.flush_due(now),
                engine.next_tick_ms(now),
                engine.config().max_tick_ms,
            )
        };
        self.emit_changes(changes);
        let retry_at = self.retry_at.get();
        if flush_due && now >= retry_at {
            self.kick();
        } else if flush_due {
            // Backing off after a failure: come back when the retry is due, not every tick.
            delay = delay.max((retry_at - now).min(max_tick));
        }
        self.start_reclaim();
        Some(delay)
    }

    /// Tells the engine which changes to queue: expirations while anyone needs them (an
    /// `expire` listener, or a backend that keeps expired records), everything while a `change`
    /// listener is registered.
    fn track(&self, listeners: &Listeners) {
        let mut engine = self.engine.borrow_mut();
        engine.set_track_expired(!listeners.expire.is_empty() || self.keeps_expired());
        engine.set_track_changes(!listeners.change.is_empty());
    }

    /// Whether the backend needs the expired keys (see [`Backend::keeps_expired`]).
    fn keeps_expired(&self) -> bool {
        self.backend.as_ref().is_some_and(|b| b.keeps_expired())
    }

    /// Whether anything waits for the backend.
    pub(crate) fn has_unflushed(&self) -> bool {
        !self.closed.get() && self.engine.borrow().has_unflushed()
    }

    /// Starts a flush in the background (once, however often it is asked before it starts).
    pub(crate) fn kick(self: &Rc<Self>) {
        if self.closed.get() || self.kick_queued.replace(true) {
            return;
        }
        let flushed =
            self.queue(|me| async move { me.flush_now().await.map(|_| JsValue::UNDEFINED) });
        // Failures are reported through the `error` event and stats; nothing to do here.
        spawn_local(async move {
            let _ = JsFuture::from(flushed).await;
        });
    }

    /// Queues a backend job after every job queued before it; the returned promise settles
    /// with the job's outcome.
    fn queue<F, Fut>(self: &Rc<Self>, job: F) -> Promise
    where
        F: FnOnce(Rc<Shared>) -> Fut + 'static,
        Fut: Future<Output = Result<JsValue, JsValue>> + 'static,
    {
        let before = self.tail.borrow().clone();
        let me = Rc::clone(self);
        let done = future_to_promise(async move {
            let _ = JsFuture::from(before).await;
            job(me).await
        });
        *self.tail.borrow_mut() = scheduler::settled(&done);
        done
    }

    /// Queues a job that hands the backend the next expired keys whose records it still keeps
    /// (once, however often it is asked before the job runs).
    fn start_reclaim(self: &Rc<Self>) {
        if self.closed.get() || self.reclaim.borrow().is_empty() || self.reclaim_queued.get() {
            return;
        }
        self.reclaim_queued.set(true);
        let done = self.queue(|me| async move {
            me.reclaim_queued.set(false);
            let keys: Vec<(String, String)> = {
                let mut queue = me.reclaim.borrow_mut();
                let n = queue.len().min(RECLAIM_BATCH);
                queue.drain(..n).collect()
            };
            let Some(backend) = me.backend.clone() else {
                return Ok(JsValue::UNDEFINED);
            };
            if let Err(e) = backend.reclaim_expired(keys.clone(), now()).await {
                // Kept for the next tick; the error is reported like a failed flush's.
                me.reclaim.borrow_mut().extend(keys);
                me.emit_error(&to_js(e));
            }
            Ok(JsValue::UNDEFINED)
        });
        spawn_local(async move {
            let _ = JsFuture::from(done).await;
        });
    }

    /// Compacts the backend to exactly the live entries (after a flush, so nothing is pending).
    async fn compact_now(self: Rc<Self>) -> Result<CompactReport, JsValue> {
        self.clone().flush_now().await?;
        let live = self.engine.borrow().compaction_snapshot(now());
        match self.backend.clone() {
            Some(backend) => backend.compact(live).await.map_err(|e| {
                let error = to_js(e);
                self.emit_error(&error);
                error
            }),
            None => Ok(CompactReport::default()),
        }
    }

    /// Takes a new storage estimate in the background if the last one is old.
    fn refresh_estimate(self: &Rc<Self>) {
        let now = now();
        let due = self
            .storage
            .borrow()
            .is_some_and(|s| now.saturating_sub(s.estimated_at) >= ESTIMATE_EVERY_MS);
        if !due {
            return;
        }
        if let Some(s) = self.storage.borrow_mut().as_mut() {
            s.estimated_at = now;
        }
        let me = Rc::clone(self);
        spawn_local(async move {
            let estimate = idb::estimate().await;
            if let Some(s) = me.storage.borrow_mut().as_mut() {
                s.estimate = estimate;
            }
        });
    }

    /// Queues a compaction if the backend says enough of what it stores is dead.
    fn compact_if_due(self: &Rc<Self>) {
        let Some(backend) = &self.backend else {
            return;
        };
        let live_keys = self.engine.borrow().stats().keys;
        if self.closed.get() || self.compaction_queued.get() || !backend.compaction_due(live_keys) {
            return;
        }
        self.compaction_queued.set(true);
        let done = self.queue(|me| async move {
            let result = me.clone().compact_now().await;
            me.compaction_queued.set(false);
            result.map(|_| JsValue::UNDEFINED)
        });
        spawn_local(async move {
            // A failure was reported through the `error` event.
            let _ = JsFuture::from(done).await;
        });
    }

    /// Writes everything pending as one batch and waits for the backend. On failure the batch
    /// goes back to the buffer, `error` listeners hear about it, and ticks retry with backoff.
    async fn flush_now(self: Rc<Self>) -> Result<(), JsValue> {
        self.kick_queued.set(false);
        let batch = self.engine.borrow_mut().take_batch();
        let Some(batch) = batch else {
            return Ok(());
        };
        let id = batch.id;
        let Some(backend) = self.backend.clone() else {
            // The memory store confirms every batch at once.
            self.engine.borrow_mut().ack(id);
            return Ok(());
        };
        match Rc::clone(&backend).write(batch).await {
            Ok(()) => {
                self.engine.borrow_mut().ack(id);
                backend.confirmed();
                self.failures.set(0);
                self.retry_at.set(0);
                self.compact_if_due();
                self.refresh_estimate();
                Ok(())
            }
            Err(e) => {
                self.engine.borrow_mut().fail(id, &e.to_string());
                let failures = self.failures.get().saturating_add(1);
                self.failures.set(failures);
                let backoff = RETRY_MIN_MS
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(RETRY_MAX_MS);
                let now = now();
                self.retry_at.set(now.saturating_add(backoff));
                scheduler::wake(now, backoff);
                let error = to_js(e);
                self.emit_error(&error);
                Err(error)
            }
        }
    }

    pub(super) fn flush(self: &Rc<Self>) -> Promise {
        if self.closed.get() {
            return Promise::reject(&to_js(Error::Closed));
        }
        self.queue(|me| async move { me.flush_now().await.map(|_| JsValue::UNDEFINED) })
    }

    /// Hands expired keys to a backend that keeps their records, then calls the `expire`
    /// listeners (expiries only) and the `change` listeners with the same event object
    /// (`{ key, namespace, op, remote }`) in the order the changes happened. A throwing listener is reported through
    /// `error` and the others still run.
    pub(super) fn emit_changes(&self, changes: Vec<Change>) {
        if changes.is_empty() {
            return;
        }
        if self.keeps_expired() {
            self.reclaim.borrow_mut().extend(
                changes
                    .iter()
                    .filter(|c| c.op == ChangeOp::Expire)
                    .map(|c| (c.namespace.clone(), c.key.clone())),
            );
        }
        let (expire, change) = {
            let listeners = self.listeners.borrow();
            (listeners.expire.clone(), listeners.change.clone())
        };
        for c in changes {
            let mut results = Vec::new();
            let expired = c.op == ChangeOp::Expire && !expire.is_empty();
            if expired || !change.is_empty() {
                // One event object, the same for both kinds of listener.
                let event = object(&[
                    ("key", JsValue::from(c.key.as_str())),
                    ("namespace", JsValue::from(c.namespace.as_str())),
                    ("op", JsValue::from(c.op.as_str())),
                    ("remote", JsValue::from_bool(c.remote)),
                ]);
                if expired {
                    for listener in &expire {
                        results.push(listener.call1(&JsValue::UNDEFINED, &event));
                    }
                }
                for listener in &change {
                    results.push(listener.call1(&JsValue::UNDEFINED, &event));
                }
            }
            for thrown in results.into_iter().filter_map(Result::err) {
                self.emit_error(&listener_error(&thrown));
            }
        }
    }

    /// Calls the `error` listeners with `error`; with none, writes it to `console.warn`, so a
    /// failure in the background is never silent.
    pub(super) fn emit_error(&self, error: &JsValue) {
        let listeners = self.listeners.borrow().error.clone();
        if listeners.is_empty() {
            warn(error);
        }
        for listener in listeners {
            // A throwing error listener has nowhere left to report to.
            let _ = listener.call1(&JsValue::UNDEFINED, error);
        }
    }

    /// Checks the arguments of `getOrSet(key, loader, options)` as `set` would check them
    /// (the key, the TTL, the tags), before any loader runs.
    pub(super) fn load_of(
        &self,
        key: &JsValue,
        loader: &JsValue,
        opts: &JsValue,
    ) -> Result<Load, JsValue> {
        if self.closed.get() {
            return Err(to_js(Error::Closed));
        }
        let key = string(key, "key")?;
        let Some(loader) = loader.dyn_ref::<Function>().cloned() else {
            return Err(type_error(
                "getOrSet needs a loader: a function returning the value (or a promise of it)",
            ));
        };
        let (ttl_ms, tags) = set_options(opts)?;
        // The checks of a set, on an empty engine of the same configuration: nothing of this
        // store is touched, and the loader never runs for a call set() would refuse.
        let config = Config {
            max_memory: None,
            ..self.engine.borrow().config().clone()
        };
        let mut scratch = js_result(Engine::new(config))?;
        js_result(scratch.set(
            0,
            &key,
            Default::default(),
            Kind::Bytes,
            ttl_ms,
            &tags,
            now(),
        ))?;
        Ok(Load {
            key,
            loader,
            ttl_ms,
            tags,
        })
    }

    /// The promise of the `getOrSet` load of `key` in namespace `ns` running now, if any.
    pub(super) fn loading(&self, ns: NsId, key: &str) -> Option<Promise> {
        self.loads.borrow().get(&(ns, key.to_string())).cloned()
    }

    /// Starts the `getOrSet` load `load` in namespace `ns`: `lookup` resolves with the key's
    /// live value (or `undefined`); if there is none, the loader runs, its value is stored
    /// with the call's options and is what the promise resolves with (as `get` would return
    /// it). Callers that miss the same key meanwhile get the same promise ([`Self::loading`]).
    /// A loader that throws or rejects rejects the promise with what it threw; one that gives
    /// `undefined` rejects it with a `TypeError`; either way nothing is stored.
    pub(super) fn load(
        self: &Rc<Self>,
        ns: NsId,
        load: Load,
        lookup: impl Future<Output = Result<JsValue, JsValue>> + 'static,
    ) -> Promise {
        let me = Rc::clone(self);
        let slot = (ns, load.key.clone());
        let done = slot.clone();
        let promise = future_to_promise(async move {
            // One turn first, so the promise is in `loads` before anything below can end.
            let _ = JsFuture::from(Promise::resolve(&JsValue::UNDEFINED)).await;
            let result = me.run_load(ns, load, lookup).await;
            me.loads.borrow_mut().remove(&done);
            result
        });
        self.loads.borrow_mut().insert(slot, promise.clone());
        promise
    }

    async fn run_load(
        self: &Rc<Self>,
        ns: NsId,
        load: Load,
        lookup: impl Future<Output = Result<JsValue, JsValue>>,
    ) -> Result<JsValue, JsValue> {
        let found = lookup.await?;
        if !found.is_undefined() {
            return Ok(found);
        }
        let returned = load.loader.call0(&JsValue::UNDEFINED)?;
        let value = JsFuture::from(Promise::resolve(&returned)).await?;
        if value.is_undefined() {
            return Err(type_error(&format!(
                "the getOrSet loader of key {:?} returned undefined: return the value to store \
                 (or throw); nothing was stored",
                load.key
            )));
        }
        let (bytes, kind) = value_in(&value)?;
        self.with(|e, now| {
            js_result(e.set(
                ns,
                &load.key,
                bytes.clone(),
                kind,
                load.ttl_ms,
                &load.tags,
                now,
            ))
        })?;
        value_out(&bytes, kind)
    }

    /// Whether `change` listeners are registered.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(super) fn hears_changes(&self) -> bool {
        !self.listeners.borrow().change.is_empty()
    }

    /// Whether the store has been closed.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(super) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Whether the last flush failed (the next is retried with backoff).
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(super) fn flush_failing(&self) -> bool {
        self.failures.get() > 0
    }
}

/// A tidekv store. All key methods act on this handle's namespace.
#[wasm_bindgen(js_name = Store)]
pub struct JsStore {
    shared: Rc<Shared>,
    ns: NsId,
    /// Made by `namespace()`: `close()` refuses to close the store through it.
    handle: bool,
}

#[cfg_attr(not(feature = "node"), allow(dead_code))]
impl JsStore {
    /// A handle to namespace `ns` of the store `shared`.
    pub(super) fn bound(shared: Rc<Shared>, ns: NsId) -> JsStore {
        JsStore {
            shared,
            ns,
            handle: false,
        }
    }

    /// The namespace this handle acts on.
    pub(super) fn ns(&self) -> NsId {
        self.ns
    }

    /// An in-memory store, as a Rust value (`Store.memory` in JS, where the store also reads
    /// through its read cache). Options as there.
    pub fn memory(opts: JsValue) -> Result<JsStore, JsValue> {
        let engine = js_result(Engine::new(memory_config(&opts)?))?;
        Ok(JsStore::bound(Shared::new(engine, None, Vec::new()), 0))
    }

    /// A handle to namespace `name` of the same store, as a Rust value (`namespace` in JS,
    /// where the handle also reads through the store's read cache).
    pub fn namespace(&self, name: JsValue) -> Result<JsStore, JsValue> {
        let name = string(&name, "namespace name")?;
        let ns = self
            .shared
            .with_cache_kept(|e, _| js_result(e.namespace(&name)))?;
        Ok(JsStore {
            shared: Rc::clone(&self.shared),
            ns,
            handle: true,
        })
    }

    /// This handle as the JS object handed to callers, bound to the store's read cache.
    fn into_js(self) -> JsValue {
        let shared = Rc::clone(&self.shared);
        let ns = self.ns;
        shared.cache.attach(self.into(), ns)
    }

    /// `get` of `key`, read as the string `name`: the engine's answer, kept in the read cache.
    fn get_named(&self, key: &JsValue, name: String) -> Result<JsValue, JsValue> {
        let ns = self.ns;
        // One lookup that also gives the deadline the cache needs (tags: none or a few, copied).
        let found = self.shared.with_cache_kept(|e, now| {
            Ok(js_result(e.get_with_metadata(ns, &name, now))?
                .map(|(value, meta)| (value, meta.kind, meta.expires_at)))
        })?;
        let cache = &self.shared.cache;
        let Some((value, kind, deadline)) = found else {
            cache.put_miss(ns, key);
            return Ok(JsValue::UNDEFINED);
        };
        if kind != Kind::Json {
            let out = value_out(&value, kind)?;
            cache.put(ns, key, &out, kind, deadline);
            return Ok(out);
        }
        // JSON is cached as its text: every get parses a fresh copy for the caller to own.
        let out = value_out(&value, kind)?;
        let text = JsValue::from_str(&String::from_utf8_lossy(&value));
        cache.put(ns, key, &text, kind, deadline);
        Ok(out)
    }

    /// A checked `set` of `key` (`name` as a string, `value` as `bytes`): stores it, then
    /// brings the read cache's entry of `key` up to date.
    #[allow(clippy::too_many_arguments)]
    fn set_checked(
        &self,
        key: &JsValue,
        name: String,
        value: &JsValue,
        bytes: bytes::Bytes,
        kind: Kind,
        ttl_ms: Option<u64>,
        tags: &[String],
    ) -> Result<(), JsValue> {
        let ns = self.ns;
        let stored = self.shared.with_cache_kept(|e, now| {
            js_result(e.set(ns, &name, bytes, kind, ttl_ms, tags, now))?;
            Ok(ttl_ms.map(|ttl| now + ttl))
        });
        let cache = &self.shared.cache;
        match stored {
            // A string is immutable: the caller's own is the copy. Bytes and JSON, which the
            // caller may still change, are read back from the engine at the next get.
            Ok(deadline) if kind == Kind::Text => cache.put(ns, key, value, kind, deadline),
            _ => cache.forget(ns, key),
        }
        stored.map(drop)
    }

    /// `import`: see there.
    fn import_now(&self, text: &JsValue) -> Result<JsValue, JsValue> {
        if !text.is_string() {
            return Err(type_error(
                "import takes a dump: the text `export()` or `tidekv dump` wrote",
            ));
        }
        let text = string(text, "the dump")?;
        let entries = dump::parse(&text).map_err(|why| invalid_value(&format!("import: {why}")))?;
        self.shared.with(|e, now| {
            // (namespace, the line of each op, the ops), namespaces in the order they appear.
            let mut groups: Vec<(String, Vec<usize>, Vec<BatchOp>)> = Vec::new();
            let mut expired = 0u64;
            for entry in entries {
                let ttl_ms = match entry.expires_at {
                    Some(deadline) if deadline <= now => {
                        expired += 1;
                        continue;
                    }
                    deadline => deadline.map(|d| d - now),
                };
                let group = match groups.iter().position(|g| g.0 == entry.namespace) {
                    Some(i) => &mut groups[i],
                    None => {
                        groups.push((entry.namespace, Vec::new(), Vec::new()));
                        groups.last_mut().expect("just pushed")
                    }
                };
                group.1.push(entry.line);
                group.2.push(BatchOp::Set {
                    key: entry.key,
                    value: entry.value,
                    kind: entry.kind,
                    ttl_ms,
                    tags: entry.tags,
                });
            }
            let at_line = |lines: &[usize], index: usize, error: Error| {
                let line = lines.get(index).or(lines.first()).copied().unwrap_or(0);
                prefixed(to_js(error), &format!("import: line {line}"))
            };
            // Every op is checked on an empty engine of the same configuration first, so an op
            // the engine refuses leaves this store untouched, whichever namespace it is in.
            let config = Config {
                track_changes: false,
                track_expired: false,
                ..e.config().clone()
            };
            let mut scratch = js_result(Engine::new(config))?;
            for (name, lines, ops) in &groups {
                let ns = scratch
                    .namespace(name)
                    .map_err(|err| at_line(lines, 0, err))?;
                scratch
                    .apply(ns, ops, now)
                    .map_err(|err| at_line(lines, err.index, err.error))?;
            }
            drop(scratch);
            let mut loaded = 0u64;
            for (name, lines, ops) in &groups {
                let ns = e.namespace(name).map_err(|err| at_line(lines, 0, err))?;
                e.apply(ns, ops, now)
                    .map_err(|err| at_line(lines, err.index, err.error))?;
                loaded += ops.len() as u64;
            }
            Ok(object(&[
                ("loaded", JsValue::from_f64(loaded as f64)),
                ("expired", JsValue::from_f64(expired as f64)),
            ]))
        })
    }
}

const SET_OPTIONS: &[&str] = &["ttl", "tags"];

/// A set of `set(key, value, opts)` or of one `setMany` entry, checked as far as JS types go.
fn set_op(key: &JsValue, value: &JsValue, opts: &JsValue) -> Result<BatchOp, JsValue> {
    let key = string(key, "key")?;
    let (value, kind) = value_in(value)?;
    let (ttl_ms, tags) = set_options(opts)?;
    Ok(BatchOp::Set {
        key,
        value,
        kind,
        ttl_ms,
        tags,
    })
}

/// The `ttl` and `tags` of set options (those of `set`, a `setMany` entry, `getOrSet`).
fn set_options(opts: &JsValue) -> Result<(Option<u64>, Vec<String>), JsValue> {
    let mut ttl_ms = None;
    let mut tags = Vec::new();
    for (name, v) in options(opts, "set options", SET_OPTIONS)? {
        match name.as_str() {
            "ttl" => ttl_ms = millis(&v, "ttl")?,
            _ => tags = strings(&v, "tags")?,
        }
    }
    Ok((ttl_ms, tags))
}

/// `value` as an array, or a `TypeError` saying `what`.
fn array(value: &JsValue, what: &str) -> Result<Array, JsValue> {
    value.clone().dyn_into().map_err(|_| type_error(what))
}

/// Names the batch entry an error is about in its message (`tidekv: setMany entry 3: ...`).
fn at_index(error: JsValue, call: &str, index: usize) -> JsValue {
    prefixed(error, &format!("{call} entry {index}"))
}

/// `error` with `what` in front of its message (`tidekv: <what>: ...`).
fn prefixed(error: JsValue, what: &str) -> JsValue {
    if let Some(e) = error.dyn_ref::<js_sys::Error>() {
        let message = String::from(e.message());
        let rest = message.strip_prefix("tidekv: ").unwrap_or(&message);
        e.set_message(&format!("tidekv: {what}: {rest}"));
    }
    error
}

/// A promise settled with `result`.
pub(super) fn settle(result: Result<JsValue, JsValue>) -> Promise {
    match result {
        Ok(value) => Promise::resolve(&value),
        Err(error) => Promise::reject(&error),
    }
}

/// A listing's `prefix` argument: `undefined` lists everything.
pub(super) fn prefix_of(prefix: &JsValue) -> Result<String, JsValue> {
    if prefix.is_undefined() {
        Ok(String::new())
    } else {
        string(prefix, "prefix")
    }
}

fn compact_out(report: CompactReport) -> JsValue {
    let n = |v: u64| JsValue::from_f64(v as f64);
    object(&[
        ("bytesBefore", n(report.bytes_before)),
        ("bytesAfter", n(report.bytes_after)),
        ("recordsBefore", n(report.records_before)),
        ("recordsAfter", n(report.records_after)),
        (
            "recordsDropped",
            n(report.records_before.saturating_sub(report.records_after)),
        ),
    ])
}

#[wasm_bindgen(js_class = Store)]
impl JsStore {
    /// Opens a store and loads every live record of it into memory. Options: `name`
    /// (default `'default'`), `path`, `backend` (`'indexeddb' | 'fs' | 'memory'`; default:
    /// IndexedDB in browsers, files under `path/<name>/` when `path` is given; Node.js
    /// without `path` needs `backend: 'memory'` and rejects with a `TypeError` otherwise), `bufferSize`, `flushInterval`, `durability`, `compression`,
    /// `maxValueSize`, `persist` (IndexedDB: ask the browser to keep the data when storage
    /// runs short; `stats().storage` says whether it does), `redis` (Node.js: a Redis URL; the
    /// store is then a `RedisStore`, whose reads return promises). Rejects with a `TypeError`
    /// naming an unknown or ill-typed option.
    pub async fn open(opts: JsValue) -> Result<JsValue, JsValue> {
        let opts = OpenOptions::parse(&opts)?;
        if opts.backend == BackendKind::Redis {
            return open_redis(opts).await;
        }
        let mut config = opts.config.clone();
        // Nothing to write to: a change is final when made, with no buffer to keep.
        config.unbuffered = opts.backend == BackendKind::Memory;
        let mut engine = js_result(Engine::new(config))?;
        let now = now();
        let mut expired = Vec::new();
        let mut storage = None;
        let backend: Option<Rc<dyn Backend>> = match opts.backend {
            BackendKind::Memory => None,
            BackendKind::IndexedDb => {
                let strict = matches!(
                    opts.durability,
                    Some(Durability::Fsync | Durability::Strict)
                );
                let (backend, stale) =
                    js_result(IdbBackend::open(&opts.name, strict, &mut engine, now).await)?;
                expired = stale;
                storage = Some(Storage {
                    persisted: idb::persisted(opts.persist).await,
                    estimate: idb::estimate().await,
                    estimated_at: now,
                });
                Some(backend)
            }
            BackendKind::Fs => Some(open_fs(&opts, &mut engine, now).await?),
            BackendKind::Redis => unreachable!("opened above"),
        };
        let shared = Shared::new(engine, backend, expired);
        *shared.storage.borrow_mut() = storage;
        // Records that expired while the store was closed go at once, not at the first tick.
        shared.start_reclaim();
        Ok(JsStore::bound(shared, 0).into_js())
    }

    /// An in-memory store. Options: `bufferSize` (bytes, default 1 MiB), `flushInterval` (ms,
    /// default 1000), `maxValueSize` (bytes, default 512 MiB), `compression`. Unknown options
    /// throw a `TypeError` that names them.
    #[wasm_bindgen(js_name = memory)]
    pub fn memory_js(opts: JsValue) -> Result<JsValue, JsValue> {
        Ok(Self::memory(opts)?.into_js())
    }

    /// Stores `value` under `key`: a `Uint8Array` as bytes, a `string` as text, anything else
    /// as JSON. Options: `ttl` (ms) and `tags` (string[]). Replaces the whole entry. Throws
    /// (and stores nothing) on bad input.
    pub fn set(&self, key: JsValue, value: JsValue, opts: JsValue) -> Result<(), JsValue> {
        let name = string(&key, "key")?;
        let (bytes, kind) = value_in(&value)?;
        let (ttl_ms, tags) = set_options(&opts)?;
        self.set_checked(&key, name, &value, bytes, kind, ttl_ms, &tags)
    }

    /// Internal (the JS glue's `set` of text): see `cache.rs`.
    #[wasm_bindgen(js_name = __setText, skip_typescript)]
    pub fn set_text(&self, key_len: u32, value_len: u32, ttl: JsValue) -> Result<f64, JsValue> {
        let Some((name, bytes)) = scratch_entry(key_len, value_len)? else {
            return Ok(f64::NAN);
        };
        let ttl_ms = millis(&ttl, "ttl")?;
        let ns = self.ns;
        let deadline = self.shared.with_cache_kept(|e, now| {
            js_result(e.set(ns, &name, bytes, Kind::Text, ttl_ms, &[] as &[&str], now))?;
            Ok(ttl_ms.map(|ttl| now + ttl))
        })?;
        Ok(deadline.map_or(f64::INFINITY, |d| d as f64))
    }

    /// Internal (the JS glue's `set` with no options or `{ ttl }`): see `cache.rs`.
    #[wasm_bindgen(js_name = __setTtl, skip_typescript)]
    pub fn set_ttl(&self, key: JsValue, value: JsValue, ttl: JsValue) -> Result<(), JsValue> {
        let name = string(&key, "key")?;
        let (bytes, kind) = value_in(&value)?;
        let ttl_ms = millis(&ttl, "ttl")?;
        self.set_checked(&key, name, &value, bytes, kind, ttl_ms, &[])
    }

    /// Stores many entries as one change: `entries` is an array of `[key, value, options?]`
    /// (each as for `set`). All or nothing: every entry is checked first, and one bad entry
    /// throws (naming its index) with nothing stored. Readers see none or all of it, and it
    /// reaches the backend in one flush — one IndexedDB transaction, one log frame — so a
    /// crash keeps all of it or none.
    #[wasm_bindgen(js_name = setMany)]
    pub fn set_many(&self, entries: JsValue) -> Result<(), JsValue> {
        let list = array(
            &entries,
            "setMany takes an array of [key, value, options?] entries",
        )?;
        let mut ops = Vec::with_capacity(list.length() as usize);
        for (i, entry) in list.iter().enumerate() {
            let bad = || {
                type_error(&format!(
                    "setMany entry {i} must be an array [key, value, options?]"
                ))
            };
            let entry: Array = entry.dyn_into().map_err(|_| bad())?;
            if !(2..=3).contains(&entry.length()) {
                return Err(bad());
            }
            let op = set_op(&entry.get(0), &entry.get(1), &entry.get(2))
                .map_err(|e| at_index(e, "setMany", i))?;
            ops.push(op);
        }
        self.apply(ops, "setMany").map(drop)
    }

    /// Removes many keys as one change (all or nothing, as `setMany`); returns how many held a
    /// live value. A key that is not a valid key throws (naming its index) and nothing is
    /// removed.
    #[wasm_bindgen(js_name = deleteMany)]
    pub fn delete_many(&self, keys: JsValue) -> Result<u32, JsValue> {
        let list = array(&keys, "deleteMany takes an array of keys")?;
        let mut ops = Vec::with_capacity(list.length() as usize);
        for (i, key) in list.iter().enumerate() {
            let key = string(&key, "key").map_err(|e| at_index(e, "deleteMany", i))?;
            ops.push(BatchOp::Delete { key });
        }
        self.apply(ops, "deleteMany")
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The value under `key` as it was stored (`Uint8Array`, `string` or JSON value), or
    /// `undefined` if there is none or it expired.
    pub fn get(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let name = string(&key, "key")?;
        self.get_named(&key, name)
    }

    /// Internal (the JS glue's `get` of a string key the read cache does not hold, the key
    /// already encoded into the scratch area): see `cache.rs`.
    #[wasm_bindgen(js_name = __getText, skip_typescript)]
    pub fn get_text(&self, key: JsValue, key_len: u32) -> Result<JsValue, JsValue> {
        match scratch_key(key_len)? {
            Some(name) => self.get_named(&key, name),
            None => self.get(key),
        }
    }

    /// `{ value, metadata: { size, storedSize, createdAt, updatedAt, expiresAt, tags, kind,
    /// compressed } }` or `undefined`.
    #[wasm_bindgen(js_name = getWithMetadata)]
    pub fn get_with_metadata(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let key = string(&key, "key")?;
        let found = self
            .shared
            .with_cache_kept(|e, now| js_result(e.get_with_metadata(self.ns, &key, now)))?;
        match found {
            Some((value, mut meta)) => {
                meta.measure_stored_size(&value);
                Ok(object(&[
                    ("value", value_out(&value, meta.kind)?),
                    ("metadata", metadata_out(&meta)),
                ]))
            }
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Whether `key` holds a live value.
    pub fn has(&self, key: JsValue) -> Result<bool, JsValue> {
        let name = string(&key, "key")?;
        let live = self
            .shared
            .with_cache_kept(|e, now| js_result(e.contains(self.ns, &name, now)))?;
        if !live {
            self.shared.cache.put_miss(self.ns, &key);
        }
        Ok(live)
    }

    /// Removes `key`; `true` if it held a live value.
    pub fn delete(&self, key: JsValue) -> Result<bool, JsValue> {
        let name = string(&key, "key")?;
        let removed = self
            .shared
            .with_cache_kept(|e, now| js_result(e.delete(self.ns, &name, now)));
        // Even on an error, the cache must not keep what it knew.
        self.shared.cache.forget(self.ns, &key);
        if removed.is_ok() {
            self.shared.cache.put_miss(self.ns, &key);
        }
        removed
    }

    /// Milliseconds until `key` expires, or `undefined` if it has no TTL or does not exist.
    pub fn ttl(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let key = string(&key, "key")?;
        self.shared.with_cache_kept(|e, now| {
            Ok(js_result(e.ttl(self.ns, &key, now))?
                .map_or(JsValue::UNDEFINED, |ms| JsValue::from_f64(ms as f64)))
        })
    }

    /// Makes `key` expire `ttl` ms from now, keeping value and tags; `true` if the key exists.
    pub fn expire(&self, key: JsValue, ttl: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        let Some(ttl) = millis(&ttl, "ttl")? else {
            return Err(type_error("ttl is required: a number of milliseconds"));
        };
        self.shared
            .with(|e, now| js_result(e.expire(self.ns, &key, ttl, now)))
    }

    /// Removes the TTL of `key`; `true` if the key exists.
    pub fn persist(&self, key: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        self.shared
            .with(|e, now| js_result(e.persist(self.ns, &key, now)))
    }

    /// Live keys starting with `prefix` (default: all), sorted.
    pub fn keys(&self, prefix: JsValue) -> Result<JsValue, JsValue> {
        let prefix = prefix_of(&prefix)?;
        self.shared
            .with_cache_kept(|e, now| Ok(string_array(js_result(e.keys(self.ns, &prefix, now))?)))
    }

    /// Live keys carrying every one of `tags`, sorted.
    #[wasm_bindgen(js_name = queryByTags)]
    pub fn query_by_tags(&self, tags: JsValue) -> Result<JsValue, JsValue> {
        let tags = strings(&tags, "tags")?;
        self.shared.with_cache_kept(|e, now| {
            Ok(string_array(js_result(
                e.query_by_tags(self.ns, &tags, now),
            )?))
        })
    }

    /// `[{ tag, count }]` for every tag on a live key, sorted by tag.
    #[wasm_bindgen(js_name = listTags)]
    pub fn list_tags(&self) -> Result<JsValue, JsValue> {
        self.shared.with_cache_kept(|e, now| {
            let counts = js_result(e.list_tags(self.ns, now))?;
            Ok(tag_counts_out(
                counts.into_iter().map(|(tag, n)| (tag, n as f64)),
            ))
        })
    }

    /// Resolves with the value under `key` if it is live; else runs `loader` — once, however
    /// many calls miss the key while it runs: they all get the same promise — stores what it
    /// returns (or resolves with) with `options` (`ttl`, `tags`, as `set`), and resolves with
    /// the value as `get` returns it. A loader that throws or rejects rejects every waiting
    /// call with what it threw, and one that gives `undefined` with a `TypeError`; nothing is
    /// stored then. A bad key or bad options reject as `set` throws, before the loader runs.
    #[wasm_bindgen(js_name = getOrSet)]
    pub fn get_or_set(&self, key: JsValue, loader: JsValue, opts: JsValue) -> Promise {
        let load = match self.shared.load_of(&key, &loader, &opts) {
            Ok(load) => load,
            Err(e) => return Promise::reject(&e),
        };
        if let Some(running) = self.shared.loading(self.ns, load.key()) {
            return running;
        }
        match self.get(key) {
            Ok(found) if found.is_undefined() => self
                .shared
                .load(self.ns, load, async { Ok(JsValue::UNDEFINED) }),
            found => settle(found),
        }
    }

    /// An iterator over the live entries whose key starts with `prefix` (default: all), as
    /// `[key, value, metadata]` arrays (value and metadata as `getWithMetadata` gives them), in
    /// no particular order. It walks the store 256 keys at a time, so it costs little memory
    /// whatever the store's size, and writes may go on meanwhile: a key live for the whole walk
    /// comes exactly once, a key set or deleted during it may or may not. Reading this way does
    /// not count as a use (stats and recency stay as they were).
    pub fn entries(&self, prefix: JsValue) -> Result<JsValue, JsValue> {
        let prefix = prefix_of(&prefix)?;
        EntryChunks::start(&self.shared, self.ns, &prefix)
    }

    /// The number of live keys in this handle's namespace.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> Result<f64, JsValue> {
        self.shared
            .with_cache_kept(|e, now| Ok(js_result(e.len(self.ns, now))? as f64))
    }

    /// Removes every key of this handle's namespace as one change: readers see all of it or
    /// none, and it reaches the backend in one flush (durable at the next flush). Returns how
    /// many live keys it removed.
    pub fn clear(&self) -> Result<f64, JsValue> {
        self.shared
            .with(|e, now| Ok(js_result(e.clear(self.ns, now))? as f64))
    }

    /// Resolves with every live entry of every namespace of the store, whichever handle it is
    /// called on, in the JSON-lines format `tidekv dump` writes: one line per entry, fields
    /// `created_at, encoding, expires_at, key, kind, ns, tags, updated_at, value`, the value
    /// as text when it is UTF-8 and base64 otherwise, the deadline in ms since the epoch or
    /// `null`. `tidekv load` and `import` read it.
    #[wasm_bindgen(js_name = export)]
    pub fn export_dump(&self) -> Promise {
        settle(self.shared.with_cache_kept(|e, now| {
            let mut out = String::new();
            for record in e.snapshot(now) {
                if let Record::Put(put) = record {
                    out.push_str(&dump::line(&put));
                    out.push('\n');
                }
            }
            Ok(JsValue::from(out))
        }))
    }

    /// Loads a dump (`tidekv dump`'s or `export`'s format) into the namespaces its lines name,
    /// all or nothing: every line is read and checked first (as `tidekv load` and `set` check
    /// it), and a bad one rejects — a `RangeError` whose message names the line and what is
    /// wrong with it, a truncated last line included — with nothing imported. Then it is one
    /// change: readers see all of it or none, and it reaches the backend in one flush. Each
    /// deadline is kept; an entry whose deadline has passed is skipped. Created and updated
    /// times become the time of the import, as with `tidekv load`. Resolves with `{ loaded,
    /// expired }`.
    #[wasm_bindgen(js_name = import)]
    pub fn import_dump(&self, text: JsValue) -> Promise {
        settle(self.import_now(&text))
    }

    /// Applies batch ops (all or nothing), naming the entry an engine error is about.
    fn apply(&self, ops: Vec<BatchOp>, call: &str) -> Result<usize, JsValue> {
        self.shared.with(|e, now| {
            e.apply(self.ns, &ops, now)
                .map_err(|err| at_index(to_js(err.error), call, err.index))
        })
    }

    /// A handle to namespace `name` of the same store (its own keys and tags).
    #[wasm_bindgen(js_name = namespace)]
    pub fn namespace_handle(&self, name: JsValue) -> Result<JsValue, JsValue> {
        Ok(self.namespace(name)?.into_js())
    }

    /// Removes every expired key now; returns how many.
    #[wasm_bindgen(js_name = sweepExpired)]
    pub fn sweep_expired(&self) -> Result<u32, JsValue> {
        self.shared.with(|e, now| {
            let mut removed = 0;
            loop {
                let budget = e.config().sweep_budget;
                let report = e.sweep(now, budget);
                removed += report.expired as u32;
                if !report.more_due {
                    return Ok(removed);
                }
            }
        })
    }

    /// The store's counters, camelCase.
    pub fn stats(&self) -> JsValue {
        let stats = stats_out(&self.shared.engine.borrow().stats());
        let storage = match *self.shared.storage.borrow() {
            None => JsValue::NULL,
            Some(s) => object(&[
                (
                    "persisted",
                    s.persisted.map_or(JsValue::NULL, JsValue::from_bool),
                ),
                ("quota", figure(s.estimate.map(|e| e.0))),
                ("usage", figure(s.estimate.map(|e| e.1))),
            ]),
        };
        let _ = js_sys::Reflect::set(&stats, &JsValue::from_str("storage"), &storage);
        stats
    }

    /// Adds a listener: `'change'` gets `{ key, namespace, op, remote }` for every change;
    /// `'expire'` gets the same event (`op: 'expire'`) for every key removed by expiry
    /// (lazily or by a sweep); `'error'` gets an `Error` for every failed flush (the data stays
    /// buffered and is retried) and for a throwing `expire` listener. Adding the same listener
    /// twice has no effect.
    pub fn on(&self, event: JsValue, listener: JsValue) -> Result<(), JsValue> {
        let (event, listener) = event_args(&event, &listener)?;
        let mut all = self.shared.listeners.borrow_mut();
        let list = all.list(&event);
        if !list.iter().any(|l| l == &listener) {
            list.push(listener);
        }
        self.shared.track(&all);
        Ok(())
    }

    /// Removes a listener added with `on`.
    pub fn off(&self, event: JsValue, listener: JsValue) -> Result<(), JsValue> {
        let (event, listener) = event_args(&event, &listener)?;
        let mut all = self.shared.listeners.borrow_mut();
        all.list(&event).retain(|l| l != &listener);
        self.shared.track(&all);
        Ok(())
    }

    /// Writes everything buffered; resolves once the backend committed it (IndexedDB: the
    /// transaction's `complete` event; files: the write, plus fsync unless durability is
    /// `'buffered'`). On failure it rejects, the data stays buffered and is retried.
    pub fn flush(&self) -> Promise {
        self.shared.flush()
    }

    /// Rewrites the backend's data so it holds only live keys (drops overwritten, deleted and
    /// expired records); resolves with `{ bytesBefore, bytesAfter, recordsBefore,
    /// recordsAfter, recordsDropped }`. Flushes first.
    pub fn compact(&self) -> Promise {
        if self.shared.closed.get() {
            return Promise::reject(&to_js(Error::Closed));
        }
        self.shared
            .queue(|me| async move { Ok(compact_out(me.compact_now().await?)) })
    }

    /// Stops the timers, flushes, and releases the backend (connection, files, lock); every
    /// later call throws an error with code `Closed`. If the final flush fails the store stays
    /// open, keeps its data buffered, and the promise rejects: call `close()` again.
    ///
    /// A namespace handle does not close the store: its `close()` rejects with a `TypeError`
    /// (code `InvalidType`) and everything stays open.
    pub fn close(&self) -> Promise {
        if self.handle {
            return Promise::reject(&namespace_close_error());
        }
        let shared = &self.shared;
        if shared.closed.replace(true) {
            return Promise::reject(&to_js(Error::Closed));
        }
        // Every later call must reach the engine and throw `Closed`.
        shared.cache.off();
        scheduler::unregister(shared);
        shared.queue(|me| async move {
            if let Err(e) = me.clone().flush_now().await {
                me.closed.set(false);
                scheduler::register(&me, me.backend.is_some());
                return Err(e);
            }
            if let Some(backend) = me.backend.clone() {
                backend.close().await.map_err(to_js)?;
            }
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// What `close()` on a namespace handle rejects with.
pub(super) fn namespace_close_error() -> JsValue {
    type_error(
        "close() closes the whole store: call it on the store Store.open() returned, not on a \
         namespace handle (a handle needs no closing)",
    )
}

fn event_args(event: &JsValue, listener: &JsValue) -> Result<(String, Function), JsValue> {
    let event = string(event, "event name")?;
    if !matches!(event.as_str(), "change" | "expire" | "error") {
        return Err(type_error(&format!(
            "unknown event {event:?}: expected 'change', 'expire' or 'error'"
        )));
    }
    let listener = listener
        .dyn_ref::<Function>()
        .cloned()
        .ok_or_else(|| type_error("a listener must be a function"))?;
    Ok((event, listener))
}

#[cfg(feature = "node")]
async fn open_fs(
    opts: &OpenOptions,
    engine: &mut Engine,
    now: u64,
) -> Result<Rc<dyn Backend>, JsValue> {
    let path = opts.path.as_deref().unwrap_or(".");
    let durability = opts.durability.unwrap_or(Durability::Fsync);
    let backend =
        super::backend_node::FsBackend::open(path, &opts.name, durability, engine, now).await;
    Ok(js_result(backend)?)
}

#[cfg(not(feature = "node"))]
async fn open_fs(
    _opts: &OpenOptions,
    _engine: &mut Engine,
    _now: u64,
) -> Result<Rc<dyn Backend>, JsValue> {
    Err(to_js(Error::InvalidOption {
        option: "backend".into(),
        reason: "'fs' needs the Node.js build of tidekv (import it from Node.js)".into(),
    }))
}

#[cfg(feature = "node")]
async fn open_redis(opts: OpenOptions) -> Result<JsValue, JsValue> {
    super::store_redis::open(opts).await
}

#[cfg(not(feature = "node"))]
async fn open_redis(_opts: OpenOptions) -> Result<JsValue, JsValue> {
    Err(to_js(Error::InvalidOption {
        option: "redis".into(),
        reason: "Redis needs the Node.js build of tidekv (import it from Node.js)".into(),
    }))
}
