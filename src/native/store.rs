//! [`Store`] and [`Namespace`]: `Send + Sync` handles over sharded engines and one backend.
//!
//! Locking: the keyspace is split into shards by key hash (`shards.rs`), each an engine behind
//! its own short-held mutex, so calls on different keys run in parallel; the backend sits
//! behind another mutex that only flushes, compactions and source-of-truth reads take. A flush
//! takes every shard's batch under every shard lock, releases them, writes the batches as one,
//! then acks under the shard locks again — so reads and writes never wait for I/O, and a write
//! that lands during a flush simply goes into the next batch. Lock order, where more than one
//! is held: compaction → backend → shards in index order → health/remote. No lock is held
//! while a user callback runs.

use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::backend::{CompactionReport, DiskStats};
use super::file_log::{sync_dir, FileLog};
use super::options::{ttl_ms, ChangeCallback, ExpireCallback};
use super::shards::{shard_of, Shards, SHARDS};
use super::syncer::SyncerShared;
use super::{
    Backend, Clock, IntoValue, MemoryBackend, Options, RemoteChanges, Replay, Role, SetOptions,
    WriteBatch,
};
use crate::core::{log::validate_db_name, Batch, Change, ChangeOp, Engine, NsId};
use crate::{Error, Metadata, Record, Result, Stats};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a user callback must not make the store unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The longest a failed flush waits before the next automatic attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Delay before automatic flush attempt number `failures + 1`: 100 ms, doubling, at most 5 s.
fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    (Duration::from_millis(100) * (1u32 << exp)).min(MAX_BACKOFF)
}

/// What the backend's last calls said, for the whole store (the shards' own counters would
/// count one flush once per shard that had records in it).
#[derive(Default)]
struct Health {
    flushes: u64,
    flush_failures: u64,
    backend_down: bool,
    last_error: Option<String>,
}

/// When automatic work is next due for one store.
struct Schedule {
    next_sweep: Instant,
    failures: u32,
    retry_at: Option<Instant>,
}

pub(crate) struct Shared {
    shards: Shards,
    /// The write buffer's size for the whole store (each shard's engine has its part).
    buffer_size: usize,
    health: Mutex<Health>,
    backend: Mutex<Box<dyn Backend>>,
    /// Held for a whole compaction, and by close (which so waits for one to finish).
    compaction: Mutex<()>,
    compacting: AtomicBool,
    schedule: Mutex<Schedule>,
    /// Set when the buffer filled and the syncer was asked for a prompt flush.
    flush_requested: AtomicBool,
    clock: Arc<dyn Clock>,
    /// How the backend is used: a log replayed at open, or the source of truth asked on a miss.
    role: Role,
    on_expire: Option<ExpireCallback>,
    on_change: Option<ChangeCallback>,
    syncer: Option<Arc<SyncerShared>>,
    /// What other writers of a shared backend changed lately (source-of-truth backends).
    remote: Mutex<RemoteLog>,
    /// Loads of `get_or_insert_with` in progress, by namespace and key: later callers wait
    /// for the first one's answer.
    loads: Mutex<std::collections::HashMap<(NsId, String), Arc<Load>>>,
}

/// One `get_or_insert_with` load in progress: its answer, once there is one.
#[derive(Default)]
struct Load {
    answer: Mutex<Option<std::result::Result<Bytes, String>>>,
    ready: std::sync::Condvar,
}

impl Load {
    fn publish(&self, answer: std::result::Result<Bytes, String>) {
        *lock(&self.answer) = Some(answer);
        self.ready.notify_all();
    }

    fn wait(&self) -> std::result::Result<Bytes, String> {
        let mut answer = lock(&self.answer);
        loop {
            if let Some(answer) = answer.as_ref() {
                return answer.clone();
            }
            answer = self
                .ready
                .wait(answer)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Publishes a load's answer and retires it, also when the loader panics (waiters then get
/// [`Error::Load`] instead of waiting forever).
struct LoadGuard<'a> {
    shared: &'a Shared,
    slot: (NsId, String),
    load: Arc<Load>,
    answer: Option<std::result::Result<Bytes, String>>,
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        let answer = self
            .answer
            .take()
            .unwrap_or_else(|| Err("the loader panicked".into()));
        lock(&self.shared.loads).remove(&self.slot);
        self.load.publish(answer);
    }
}

/// How many recent invalidations a store remembers to tell whether a fetch raced one.
const RECENT_INVALIDATIONS: usize = 1024;

/// A fetch that raced an invalidation of its key is retried at most this often; the last
/// answer is then kept (a writer changing the key this fast invalidates it again soon).
const FETCH_ATTEMPTS: u32 = 16;

/// Invalidations from a shared backend, numbered, so that a fetch can tell whether its answer
/// may be older than one of them. See [`Shared::fetch_missing`].
#[derive(Default)]
struct RemoteLog {
    /// Invalidations received so far.
    epoch: u64,
    /// The epoch of the last resync (every copy suspect).
    resynced_at: u64,
    /// (epoch, hash of namespace and key) of the latest invalidations, oldest first.
    recent: std::collections::VecDeque<(u64, u64)>,
    /// Keys invalidated while this store's own write of them was in flight: dropped once the
    /// write is confirmed (which of the two Redis holds last is unknown).
    stale_after_flush: Vec<(NsId, String)>,
}

impl RemoteLog {
    fn note(&mut self, hash: u64) {
        self.epoch += 1;
        if self.recent.len() == RECENT_INVALIDATIONS {
            self.recent.pop_front();
        }
        self.recent.push_back((self.epoch, hash));
    }

    /// Whether an invalidation of the key hashed `hash` may have come after epoch `since`.
    fn raced(&self, since: u64, hash: u64) -> bool {
        if self.epoch == since {
            return false;
        }
        let forgotten = self.recent.front().is_some_and(|(e, _)| *e > since + 1);
        self.resynced_at > since
            || forgotten
            || self.recent.iter().any(|(e, h)| *e > since && *h == hash)
    }
}

fn key_hash(namespace: &str, key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut h);
    key.hash(&mut h);
    h.finish()
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shards.is_closed()
    }

    fn syncer_running(&self) -> bool {
        self.syncer.as_ref().is_some_and(|s| s.is_running())
    }

    /// After a call on shard `i`: publishes its pending bytes and says whether the store's
    /// write buffer is full. Each shard holds about an equal part of the keys, so of the
    /// pending bytes: only a shard past its part sums the others'.
    fn shard_full(&self, i: usize, engine: &Engine) -> bool {
        let pending = engine.pending_bytes();
        let count = self.shards.count();
        if count == 1 {
            return pending >= self.buffer_size;
        }
        self.shards.publish_pending(i, pending);
        pending * count >= self.buffer_size && self.shards.total_pending() >= self.buffer_size
    }

    /// Runs `f` on the engine of `key`'s shard under its lock, then fires callbacks outside
    /// it, then starts a flush if one is due (a syncer's, or inline without one).
    fn with_key<R>(
        self: &Arc<Self>,
        ns: NsId,
        key: &str,
        f: impl FnOnce(&mut Engine, u64) -> Result<R>,
    ) -> Result<R> {
        self.with_shard(self.shards.index(ns, key), f)
    }

    /// [`with_key`](Shared::with_key) on shard `shard`.
    fn with_shard<R>(
        self: &Arc<Self>,
        shard: usize,
        f: impl FnOnce(&mut Engine, u64) -> Result<R>,
    ) -> Result<R> {
        let now = self.now();
        let (result, changes, flush_due, full) = {
            let mut engine = self.shards.lock(shard);
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            let result = f(&mut engine, now);
            let changes = self.take_changes(&mut engine);
            let full = self.shard_full(shard, &engine);
            self.shards.publish_due(shard, engine.due_bound());
            (result, changes, full || engine.flush_due(now), full)
        };
        self.after_call(changes, flush_due, full);
        result
    }

    /// [`with_key`](Shared::with_key) for a call whose answer may not depend on the time: the
    /// clock is read only if the engine asks for it (a key with a TTL, a flush that may be
    /// due). A clock read costs a system call on some virtual machines — more than the rest of
    /// a get.
    fn with_key_lazy_now<R>(
        self: &Arc<Self>,
        ns: NsId,
        key: &str,
        f: impl FnOnce(&mut Engine, &mut dyn FnMut() -> u64) -> Result<R>,
    ) -> Result<R> {
        let mut at = None;
        let mut now = || *at.get_or_insert_with(|| self.now());
        let shard = self.shards.index(ns, key);
        let (result, changes, flush_due, full) = {
            let mut engine = self.shards.lock(shard);
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            let result = f(&mut engine, &mut now);
            let changes = self.take_changes(&mut engine);
            let full = self.shard_full(shard, &engine);
            self.shards.publish_due(shard, engine.due_bound());
            (
                result,
                changes,
                full || engine.flush_due_lazy(&mut now),
                full,
            )
        };
        self.after_call(changes, flush_due, full);
        result
    }

    /// Runs `f` on every shard's engine at once, under every lock (taken in order): for calls
    /// that must see or change the whole store atomically (namespaces, listings, batches that
    /// span shards, clear). Then as [`with_key`](Shared::with_key).
    fn with_all<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut [MutexGuard<'_, Engine>], u64) -> Result<R>,
    ) -> Result<R> {
        self.with_all_ordered(|engines, now, _| f(engines, now))
    }

    /// [`with_all`](Shared::with_all) for a call that changes several shards and must report
    /// its changes in its own order: `f` may move each engine's queued changes into the list
    /// it is given ([`take_changes`](Shared::take_changes)) as it goes; what it leaves queued
    /// follows, shard by shard.
    fn with_all_ordered<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut [MutexGuard<'_, Engine>], u64, &mut Vec<Change>) -> Result<R>,
    ) -> Result<R> {
        let now = self.now();
        let (result, changes, flush_due, full) = {
            let mut engines = self.shards.lock_all();
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            let mut changes = Vec::new();
            let result = f(&mut engines, now, &mut changes);
            let (mut due, mut full) = (false, false);
            for (i, engine) in engines.iter_mut().enumerate() {
                changes.extend(self.take_changes(engine));
                due |= engine.flush_due(now);
                full |= self.shard_full(i, engine);
                self.shards.publish_due(i, engine.due_bound());
            }
            due |= full;
            (result, changes, due, full)
        };
        self.after_call(changes, flush_due, full);
        result
    }

    /// Runs `f` on each shard's engine in turn, one lock at a time, with one reading of the
    /// clock: for work that is per key anyway (sweeps). With `only_due`, a shard whose
    /// published due bound is after the clock's reading is passed without taking its lock.
    fn with_each(
        self: &Arc<Self>,
        only_due: bool,
        mut f: impl FnMut(&mut Engine, u64),
    ) -> Result<()> {
        let now = self.now();
        let (mut changes, mut flush_due, mut full) = (Vec::new(), false, false);
        for i in 0..self.shards.count() {
            if only_due && !self.shards.may_be_due(i, now) {
                continue;
            }
            let mut engine = self.shards.lock(i);
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            f(&mut engine, now);
            changes.extend(self.take_changes(&mut engine));
            flush_due |= engine.flush_due(now);
            full |= self.shard_full(i, &engine);
            self.shards.publish_due(i, engine.due_bound());
        }
        flush_due |= full;
        self.after_call(changes, flush_due, full);
        Ok(())
    }

    /// Records the outcome of a backend call ([`Stats::backend_down`], `last_error`).
    fn note_backend<T>(&self, result: &Result<T>) {
        let mut health = lock(&self.health);
        match result {
            Ok(_) => health.backend_down = false,
            Err(e) => {
                health.backend_down = true;
                health.last_error = Some(e.to_string());
            }
        }
    }

    /// The store's counters: the shards' summed, the backend's from [`Health`].
    fn stats(&self) -> Stats {
        let engines = self.shards.lock_all();
        let mut total = Stats::default();
        let mut tick = u64::MAX;
        for engine in &engines {
            let s = engine.stats();
            total.sets += s.sets;
            total.gets += s.gets;
            total.hits += s.hits;
            total.misses += s.misses;
            total.deletes += s.deletes;
            total.expires += s.expires;
            total.persists += s.persists;
            total.keys += s.keys;
            total.value_bytes += s.value_bytes;
            total.memory_bytes += s.memory_bytes;
            total.evictions += s.evictions;
            total.buffer_bytes += s.buffer_bytes;
            total.expired_lazy += s.expired_lazy;
            total.expired_active += s.expired_active;
            // Every shard is swept on each pass: a pass counts once.
            total.sweeps = total.sweeps.max(s.sweeps);
            tick = tick.min(s.tick_interval_ms);
            total.records_flushed += s.records_flushed;
        }
        drop(engines);
        total.tick_interval_ms = if tick == u64::MAX { 0 } else { tick };
        total.expired = total.expired_lazy + total.expired_active;
        total.buffer_size = self.buffer_size as u64;
        total.buffer_utilization = total.buffer_bytes as f64 * 100.0 / total.buffer_size as f64;
        let health = lock(&self.health);
        total.flushes = health.flushes;
        total.flush_failures = health.flush_failures;
        total.backend_down = health.backend_down;
        total.last_error = health.last_error.clone();
        total
    }

    /// What every call does after the engine lock is released: expiry callbacks, then a flush
    /// if one is due.
    fn after_call(self: &Arc<Self>, changes: Vec<Change>, flush_due: bool, full: bool) {
        self.notify(changes);
        if flush_due {
            if self.syncer_running() {
                // The syncer flushes on its interval; a full buffer gets it out of bed now.
                if full && !self.flush_requested.swap(true, Ordering::SeqCst) {
                    if let Some(syncer) = &self.syncer {
                        syncer.wake();
                    }
                }
            } else if self.retry_allowed(Instant::now()) {
                // A writer never waits longer than one flush; a failure stays buffered, is
                // reported by `flush()` and `last_error`, and is retried after a backoff.
                let _ = self.flush_and_note();
            }
        }
    }

    /// For a [`Role::SourceOfTruth`] backend: makes sure `key` is in memory as the backend
    /// holds it, before a call that must see it. Does nothing for a log backend, for a key in
    /// memory, or for a key with a change of this store's that is not confirmed yet (its
    /// local state is the one to keep: a pending delete must not bring the key back).
    ///
    /// An answer is kept only if no invalidation of the key arrived while it was being
    /// fetched (it may be older than the change invalidated); otherwise the key is fetched
    /// again.
    fn fetch_missing(&self, ns: NsId, key: &str) -> Result<()> {
        if self.role != Role::SourceOfTruth {
            return Ok(());
        }
        for attempt in 1..=FETCH_ATTEMPTS {
            let (namespace, since, now) = {
                let engine = self.shards.lock_key(ns, key);
                if self.shards.is_closed() {
                    return Err(Error::Closed);
                }
                // The common case, a held copy, is answered without reading the clock unless
                // the copy has a TTL.
                let now = match engine.held_deadline(ns, key) {
                    Some(None) => return Ok(()),
                    Some(Some(deadline)) => {
                        let now = self.now();
                        if deadline > now {
                            return Ok(());
                        }
                        now
                    }
                    None => self.now(),
                };
                if engine.is_local(ns, key) {
                    return Ok(());
                }
                let since = lock(&self.remote).epoch;
                (engine.namespace_name(ns)?.to_string(), since, now)
            };
            let fetched = lock(&self.backend).fetch(&namespace, key);
            self.note_backend(&fetched);
            let mut engine = self.shards.lock_key(ns, key);
            let Some(record) = fetched? else {
                return Ok(());
            };
            if record.namespace() != namespace || record.key() != key {
                return Err(Error::Backend(format!(
                    "fetch of {namespace:?}/{key:?} returned the record of {:?}/{:?}",
                    record.namespace(),
                    record.key()
                )));
            }
            if attempt < FETCH_ATTEMPTS
                && lock(&self.remote).raced(since, key_hash(&namespace, key))
            {
                continue;
            }
            // A write of this store's may have landed meanwhile: it is newer than the fetch.
            if !engine.is_local(ns, key) && !engine.contains(ns, key, now)? {
                engine.load(record, now)?;
                self.shards
                    .publish_due(self.shards.index(ns, key), engine.due_bound());
            }
            return Ok(());
        }
        Ok(())
    }

    /// A listing of a [`Role::SourceOfTruth`] backend merged with this store's own changes
    /// that the backend has not confirmed: for those keys, the engine's state counts. `remote`
    /// asks the backend; `local` lists what the engine holds. Log backends: `local` alone.
    ///
    /// Items are keys, or anything naming one (`key_of`), such as (tag, key) pairs.
    fn listing<T: Ord>(
        self: &Arc<Self>,
        ns: NsId,
        remote: impl FnOnce(&mut dyn Backend, &str) -> Result<Vec<T>>,
        local: impl Fn(&Engine, u64) -> Result<Vec<T>>,
        key_of: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>> {
        if self.role != Role::SourceOfTruth {
            return self.with_all(|engines, now| merged(engines, &local, now));
        }
        let (namespace, before) = self.with_all(|engines, _| {
            let mut unconfirmed = Vec::new();
            for engine in engines.iter() {
                unconfirmed.extend(engine.unconfirmed_keys(ns)?);
            }
            Ok((engines[0].namespace_name(ns)?.to_string(), unconfirmed))
        })?;
        let listed = remote(&mut **lock(&self.backend), &namespace);
        self.note_backend(&listed);
        let listed = listed?;
        let engines = self.shards.lock_all();
        // Keys confirmed while the backend was asked are taken from the engine too.
        let mut unconfirmed: std::collections::BTreeSet<String> = before.into_iter().collect();
        for engine in engines.iter() {
            unconfirmed.extend(engine.unconfirmed_keys(ns)?);
        }
        let mut out: std::collections::BTreeSet<T> = listed
            .into_iter()
            .filter(|item| !unconfirmed.contains(key_of(item)))
            .collect();
        out.extend(
            merged(&engines, &local, self.now())?
                .into_iter()
                .filter(|item| unconfirmed.contains(key_of(item))),
        );
        Ok(out.into_iter().collect())
    }

    /// Another writer changed `key` of `namespace` (see [`RemoteChanges::changed`]).
    fn remote_changed(&self, namespace: &str, key: &str, record: Option<Option<Record>>) {
        let now = self.now();
        let mut changes = Vec::new();
        {
            // Every shard knows every namespace: the first one names its id.
            let ns = self.shards.lock(0).find_namespace(namespace);
            let mut engine = self.shards.lock_key(ns.unwrap_or(0), key);
            if self.shards.is_closed() {
                return;
            }
            let mut remote = lock(&self.remote);
            remote.note(key_hash(namespace, key));
            let mut held = None;
            if let Some(ns) = ns {
                if engine.is_pending(ns, key) {
                    // This store's own change lands after the other writer's, and wins.
                    return;
                }
                held = engine.held_deadline(ns, key);
                if engine.is_local(ns, key) {
                    remote.stale_after_flush.push((ns, key.to_string()));
                } else {
                    match &record {
                        Some(Some(put @ Record::Put(_))) => {
                            // Read back after the invalidation: at least as new as the change.
                            let _ = engine.load(put.clone(), now);
                            self.shards
                                .publish_due(self.shards.index(ns, key), engine.due_bound());
                        }
                        _ => {
                            engine.forget(ns, key);
                        }
                    }
                }
            }
            if let (Some(state), Some(_)) = (&record, &self.on_change) {
                let op = match state {
                    Some(Record::Put(p)) if p.expires_at.is_none_or(|d| d > now) => ChangeOp::Set,
                    _ if held.flatten().is_some_and(|d| d <= now) => ChangeOp::Expire,
                    _ => ChangeOp::Delete,
                };
                changes.push(Change {
                    key: key.to_string(),
                    namespace: namespace.to_string(),
                    op,
                    remote: true,
                });
            }
        }
        self.notify(changes);
    }

    /// Other writers' changes may have been missed: drop every copy that is not this store's
    /// own unconfirmed change (see [`RemoteChanges::resync`]).
    fn resync(&self) {
        let mut engines = self.shards.lock_all();
        if self.shards.is_closed() {
            return;
        }
        let mut remote = lock(&self.remote);
        for engine in engines.iter_mut() {
            engine.forget_all();
            let in_flight = engine.in_flight_keys();
            remote.stale_after_flush.extend(in_flight);
        }
        remote.epoch += 1;
        remote.resynced_at = remote.epoch;
    }

    /// The engine's queued changes, if any callback wants them (the queue is empty otherwise).
    fn take_changes(&self, engine: &mut Engine) -> Vec<Change> {
        if self.on_expire.is_some() || self.on_change.is_some() {
            engine.take_changes()
        } else {
            Vec::new()
        }
    }

    /// Runs the expiry and change callbacks, with no lock held.
    fn notify(&self, changes: Vec<Change>) {
        for change in changes {
            if change.op == ChangeOp::Expire {
                if let Some(on_expire) = &self.on_expire {
                    on_expire(&change);
                }
            }
            if let Some(on_change) = &self.on_change {
                on_change(&change);
            }
        }
    }

    fn retry_allowed(&self, now: Instant) -> bool {
        lock(&self.schedule).retry_at.is_none_or(|at| now >= at)
    }

    /// Flushes and updates the retry schedule: a failure pushes the next automatic attempt back.
    fn flush_and_note(self: &Arc<Self>) -> Result<()> {
        let result = self.flush(true);
        let mut schedule = lock(&self.schedule);
        match &result {
            Ok(()) => {
                if schedule.failures > 0 {
                    log::info!(
                        target: "tidekv",
                        "flush succeeded after {} failed attempts",
                        schedule.failures
                    );
                }
                schedule.failures = 0;
                schedule.retry_at = None;
            }
            Err(Error::Closed) => {}
            Err(e) => {
                schedule.failures = schedule.failures.saturating_add(1);
                let delay = backoff(schedule.failures);
                schedule.retry_at = Some(Instant::now() + delay);
                log::warn!(
                    target: "tidekv",
                    "flush failed ({} in a row), writes stay buffered, next try in {} ms: {e}",
                    schedule.failures,
                    delay.as_millis()
                );
            }
        }
        result
    }

    /// Writes everything pending at the time of the call and waits for the backend's answer.
    /// Then, if asked and the backend says so, starts an automatic compaction.
    fn flush(self: &Arc<Self>, may_compact: bool) -> Result<()> {
        let mut backend = lock(&self.backend);
        // Every shard's batch, taken under every lock: a change that spans shards (a
        // `WriteBatch`, `clear`) is in all of them or in none.
        let taken: Vec<(usize, Batch)> = {
            let mut engines = self.shards.lock_all();
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            let mut taken = Vec::new();
            for (i, engine) in engines.iter_mut().enumerate() {
                taken.extend(engine.take_batch().map(|b| (i, b)));
                self.shards.publish_pending(i, engine.pending_bytes());
            }
            taken
        };
        if taken.is_empty() {
            return Ok(());
        }
        let (ids, batch) = merge_batches(taken);
        let written = backend.write(&batch);
        drop(batch);
        {
            let mut engines = self.shards.lock_all();
            for &(i, id) in &ids {
                match &written {
                    Ok(()) => engines[i].ack(id),
                    Err(e) => engines[i].fail(id, &e.to_string()),
                };
                self.shards.publish_pending(i, engines[i].pending_bytes());
            }
            let mut health = lock(&self.health);
            match &written {
                Ok(()) => {
                    health.flushes += 1;
                    health.backend_down = false;
                }
                Err(e) => {
                    health.flush_failures += 1;
                    health.backend_down = true;
                    health.last_error = Some(e.to_string());
                }
            }
            drop(health);
            // Keys another writer changed while this batch was in flight: after a success,
            // which write Redis holds last is unknown, so the copy goes; after a failure the
            // change is pending again and will land last.
            let stale = std::mem::take(&mut lock(&self.remote).stale_after_flush);
            if written.is_ok() {
                for (ns, key) in stale {
                    engines[self.shards.index(ns, &key)].forget(ns, &key);
                }
            }
        }
        let compact = written.is_ok() && may_compact && backend.compaction_due();
        drop(backend);
        if compact {
            self.spawn_compaction();
        }
        written
    }

    /// Runs a compaction in a thread of its own, unless one is running.
    fn spawn_compaction(self: &Arc<Self>) {
        if self.compacting.swap(true, Ordering::SeqCst) {
            return;
        }
        let shared = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("tidekv-compact".into())
            .spawn(move || {
                // A failure is already in `last_error`; the old log stays in place.
                let _ = shared.compact();
                shared.compacting.store(false, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.compacting.store(false, Ordering::SeqCst);
        }
    }

    fn compact(&self) -> Result<CompactionReport> {
        let _compaction = lock(&self.compaction);
        let job = {
            let mut backend = lock(&self.backend);
            // Under the backend lock no batch is in flight: the snapshot holds every
            // acknowledged write, and every later batch lands after the compacted data.
            let live = {
                let engines = self.shards.lock_all();
                if self.shards.is_closed() {
                    return Err(Error::Closed);
                }
                let now = self.now();
                let mut live = Vec::new();
                for engine in &engines {
                    live.extend(engine.compaction_snapshot(now));
                }
                live
            };
            backend.begin_compaction(live)
        };
        let report = match job {
            Ok(Some(job)) => job.run(),
            Ok(None) => Ok(CompactionReport::default()),
            Err(e) => Err(e),
        };
        match &report {
            Ok(r) if r.segments_before > 0 => log::info!(
                target: "tidekv",
                "compaction: {} records in {} bytes rewritten as {} records in {} bytes",
                r.records_before,
                r.bytes_before,
                r.records_after,
                r.bytes_after
            ),
            Ok(_) => {}
            Err(e) => {
                log::warn!(target: "tidekv", "compaction failed, the old files stay: {e}");
                lock(&self.health).last_error = Some(format!("compaction failed: {e}"));
            }
        }
        report
    }

    fn close(self: &Arc<Self>) -> Result<()> {
        let _compaction = lock(&self.compaction);
        loop {
            self.flush(false)?;
            let mut backend = lock(&self.backend);
            let engines = self.shards.lock_all();
            if self.shards.is_closed() {
                return Err(Error::Closed);
            }
            // Writes that landed after our flush go in one more round: never drop data.
            if engines.iter().any(|e| e.has_unflushed()) {
                continue;
            }
            self.shards.set_closed();
            drop(engines);
            return backend.close();
        }
    }

    /// The syncer's pass over this store: flush if due, sweep if due.
    pub(crate) fn service(self: &Arc<Self>, round: bool, now: Instant) {
        let (mut unflushed, mut due) = (false, false);
        let at = self.now();
        for i in 0..self.shards.count() {
            let engine = self.shards.lock(i);
            if self.shards.is_closed() {
                return;
            }
            unflushed |= engine.has_unflushed();
            due |= engine.flush_due(at);
        }
        due |= self.shards.count() > 1 && self.shards.total_pending() >= self.buffer_size;
        let requested = self.flush_requested.load(Ordering::SeqCst);
        let (retry_pending, allowed) = {
            let schedule = lock(&self.schedule);
            (
                schedule.retry_at.is_some(),
                schedule.retry_at.is_none_or(|at| now >= at),
            )
        };
        if unflushed && allowed && (round || requested || due || retry_pending) {
            self.flush_requested.store(false, Ordering::SeqCst);
            let _ = self.flush_and_note();
        }
        let sweep_due = now >= lock(&self.schedule).next_sweep;
        if sweep_due {
            let mut delay = u64::MAX;
            let swept = self.with_each(false, |engine, now| {
                let budget = engine.config().sweep_budget;
                engine.sweep(now, budget);
                delay = delay.min(engine.next_tick_ms(now));
            });
            if swept.is_ok() {
                let ms = delay;
                lock(&self.schedule).next_sweep = Instant::now() + Duration::from_millis(ms);
            }
        }
    }

    /// When the syncer should look at this store again at the latest.
    pub(crate) fn next_wake(&self) -> Instant {
        let schedule = lock(&self.schedule);
        match schedule.retry_at {
            Some(at) => schedule.next_sweep.min(at),
            None => schedule.next_sweep,
        }
    }

    /// The syncer's last flush before it stops.
    pub(crate) fn final_flush(self: &Arc<Self>) {
        let _ = self.flush_and_note();
    }
}

/// A listing over every shard: `local`'s answer for each, merged in order.
fn merged<T: Ord>(
    engines: &[MutexGuard<'_, Engine>],
    local: &impl Fn(&Engine, u64) -> Result<Vec<T>>,
    now: u64,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for engine in engines {
        out.extend(local(engine, now)?);
    }
    if engines.len() > 1 {
        out.sort_unstable();
    }
    Ok(out)
}

/// The shards' batches as the one batch a backend writes, with each shard's batch id for its
/// ack. One shard's batch passes as it is.
fn merge_batches(mut taken: Vec<(usize, Batch)>) -> (Vec<(usize, u64)>, Batch) {
    let ids = taken.iter().map(|(i, b)| (*i, b.id)).collect();
    if taken.len() == 1 {
        let (_, batch) = taken.pop().expect("one batch");
        return (ids, batch);
    }
    let records = taken.iter().map(|(_, b)| b.records.len()).sum();
    let mut merged = Batch {
        id: taken[0].1.id,
        records: Vec::with_capacity(records),
        bytes: 0,
    };
    for (_, batch) in taken {
        merged.bytes += batch.bytes;
        merged.records.extend(batch.records);
    }
    (ids, merged)
}

/// A store as the [`RemoteChanges`] sink of its backend. Weak, so the backend's thread never
/// keeps a dropped store alive.
struct StoreChanges(std::sync::Weak<Shared>);

impl RemoteChanges for StoreChanges {
    fn wants_states(&self) -> bool {
        self.0.upgrade().is_some_and(|s| s.on_change.is_some())
    }

    fn changed(&self, namespace: &str, key: &str, state: Option<Option<Record>>) {
        if let Some(shared) = self.0.upgrade() {
            shared.remote_changed(namespace, key, state);
        }
    }

    fn resync(&self) {
        if let Some(shared) = self.0.upgrade() {
            shared.resync();
        }
    }
}

/// What every user handle holds: when the last one goes, the store closes.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        if self.0.is_closed() {
            return;
        }
        // Last handle dropped without close(): flush what is buffered and release the backend.
        if let Err(e) = self.0.close() {
            if !matches!(e, Error::Closed) {
                log::error!(
                    target: "tidekv",
                    "closing a dropped store failed, unflushed changes are lost: {e}"
                );
            }
        }
    }
}

/// A tidekv store: a `Clone + Send + Sync` handle; clones share one store.
///
/// A `Store` is also its default namespace: every key operation of [`Namespace`] (`set`, `get`,
/// `delete`, `keys`, ...) is callable on it directly.
///
/// Durability: a write is in memory (and visible to every reader) when `set` returns. It reaches
/// the backend on [`flush`](Store::flush), when the buffer fills, on every interval of a
/// [`Syncer`](super::Syncer), and on [`close`](Store::close) or when the last handle is dropped.
/// What a flush of a file-backed store guarantees is set by
/// [`Options::durability`](super::Options::durability).
#[derive(Clone)]
pub struct Store {
    default: Namespace,
}

/// A handle to one namespace of a store: its own keyspace, tags and keys, sharing the store's
/// buffer and backend. `Clone + Send + Sync`; it keeps the store open like a [`Store`] does.
///
/// ```
/// use tidekv::{Options, Store};
/// # fn main() -> tidekv::Result<()> {
/// let store = Store::memory(Options::default())?;
/// let users = store.namespace("users")?;
/// let sessions = store.namespace("sessions")?;
/// users.set("42", "Ada")?;
/// sessions.set("42", "token")?;                       // the same key, another keyspace
/// assert_eq!(users.get("42")?.as_deref(), Some(&b"Ada"[..]));
/// assert_eq!(store.get("42")?, None);                 // the default namespace is its own too
/// assert_eq!(users.keys("")?, ["42"]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Namespace {
    owner: Arc<Owner>,
    id: NsId,
    name: Arc<str>,
}

impl Deref for Store {
    type Target = Namespace;
    fn deref(&self) -> &Namespace {
        &self.default
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An in-memory store: everything works, nothing is persisted. Fails only for invalid
    /// [`Options`] ([`Error::InvalidOption`]).
    pub fn memory(options: Options) -> Result<Store> {
        Store::with_backend(Box::new(MemoryBackend), options)
    }

    /// Opens (creating if needed) the database [`Options::db`] (default `"default"`) in
    /// directory `dir`, i.e. `dir/<db>/`, and replays its log.
    ///
    /// - Every record is replayed in order; a later record of a key shadows an earlier one, and
    ///   keys whose TTL passed while the store was closed are gone (deadlines are absolute).
    /// - A torn write at the end of the log (a crash during a flush) is truncated, with a
    ///   warning on stderr; every record before it is kept.
    /// - A record that fails its checks in the *middle* of the log makes the open fail with
    ///   [`Error::Corrupt`] naming the file and byte offset, changing nothing on disk — corrupt
    ///   bytes are never returned as data, and an older value is never silently resurrected.
    ///   [`Options::skip_corrupt_records`] opens such a log anyway, skipping and counting them.
    /// - One process per database: the directory is locked until the store is closed or its
    ///   last handle dropped. A second open of the same database — from another process *or
    ///   from this one* — fails with [`Error::Locked`] naming the directory; share a store
    ///   within a process by cloning the handle.
    ///
    /// Other errors: [`Error::InvalidName`] for a bad db name (nothing is created),
    /// [`Error::InvalidOption`], [`Error::Io`].
    ///
    /// ```
    /// # fn main() -> tidekv::Result<()> {
    /// use tidekv::{Options, Store};
    /// let dir = std::env::temp_dir().join(format!("tidekv-doc-open-{}", std::process::id()));
    /// let store = Store::open(&dir, Options::default().db("app"))?;
    /// store.set("greeting", "hello")?;
    /// store.close()?; // flushes (fsync by default) and releases the lock
    ///
    /// let store = Store::open(&dir, Options::default().db("app"))?;
    /// assert_eq!(store.get("greeting")?.as_deref(), Some(&b"hello"[..]));
    /// # store.close()?; std::fs::remove_dir_all(&dir)?;
    /// # Ok(()) }
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        validate_db_name(&options.db)?;
        options.config.validate()?;
        options.log.validate()?;
        let db_dir = dir.as_ref().join(&options.db);
        if !db_dir.is_dir() {
            // A file where a directory must be (the path, the database, or a parent of them):
            // say so, and never touch the file.
            if let Some(file) = db_dir.ancestors().find(|p| p.is_file()) {
                return Err(Error::InvalidOption {
                    option: "dir".into(),
                    reason: format!(
                        "{} is a file, not a directory: a store needs a directory there",
                        file.display()
                    ),
                });
            }
            std::fs::create_dir_all(&db_dir)?;
            // Make the new directory's name durable before anything in it is.
            sync_dir(dir.as_ref())?;
        }
        let log = FileLog::open(&db_dir, options.log.clone(), Arc::clone(&options.clock))?;
        Store::with_backend(Box::new(log), options)
    }

    /// A store whose source of truth is the Redis server at `url` (`redis://host:port/`,
    /// `rediss://...`, a password in the URL): many processes on many machines can share it.
    /// Feature `redis`; the layout and protocol are in
    /// [`guide::redis`](crate::guide::redis). `rediss://` connects
    /// with TLS (rustls), trusting the system's certificates and those `SSL_CERT_FILE` or
    /// `SSL_CERT_DIR` name.
    ///
    /// - Nothing is loaded at open; a keyed call that misses asks Redis and keeps the answer.
    ///   Listings (`keys`, tag queries, `list_tags`) ask Redis and add this store's own
    ///   unflushed changes.
    /// - Writes are buffered as with any backend; a flush sends each namespace's changes as one
    ///   `MULTI`/`EXEC` and returns once Redis acknowledged them, so a flush — and a
    ///   [`WriteBatch`] — is atomic per namespace.
    /// - Redis expires keys itself, at the same absolute deadline as the local copy.
    /// - The local copies stay coherent: another process's flushed write reaches this store's
    ///   copy within about the network round trip (Redis's `CLIENT TRACKING`), and whenever a
    ///   connection to Redis is lost every copy is dropped rather than served. With
    ///   [`Options::on_change`], other processes' changes are reported with `remote: true`.
    /// - While Redis is down, writes stay buffered and are retried (by the
    ///   [`Syncer`](super::Syncer), or at the next write or flush), reads that need Redis fail
    ///   with [`Error::Backend`], and [`Stats::backend_down`] is true.
    ///
    /// `Options::db` names the database (every key is prefixed with it); namespaces keep their
    /// meaning.
    ///
    /// Errors: [`Error::InvalidOption`] for a URL that is not one, [`Error::Backend`] naming
    /// the cause when the server cannot be reached.
    #[cfg(feature = "redis")]
    pub fn open_redis(url: &str, options: Options) -> Result<Store> {
        validate_db_name(&options.db)?;
        options.config.validate()?;
        let backend = super::redis::RedisBackend::open(url, &options.db)?;
        Store::with_backend(Box::new(backend), options)
    }

    /// [`open_redis`](Store::open_redis) on a Redis Cluster: `urls` name some of its nodes
    /// (one is enough; the others are found with `CLUSTER SLOTS`, reached with the scheme and
    /// credentials of the URL that answered). A namespace lives in one slot, so a flush is one
    /// `MULTI`/`EXEC` per namespace on the node that holds it; a slot that moves is followed.
    /// Feature `redis`.
    ///
    /// Errors: as [`open_redis`](Store::open_redis); [`Error::InvalidOption`] for no URL, and
    /// [`Error::Backend`] when no node answers or the cluster serves no slots.
    #[cfg(feature = "redis")]
    pub fn open_redis_cluster<S: AsRef<str>>(urls: &[S], options: Options) -> Result<Store> {
        validate_db_name(&options.db)?;
        options.config.validate()?;
        let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        let backend = super::redis::RedisBackend::open_cluster(&urls, &options.db)?;
        Store::with_backend(Box::new(backend), options)
    }

    /// A store over any [`Backend`]: replays its records at open (dropping expired ones), then
    /// writes every batch to it.
    pub fn with_backend(mut backend: Box<dyn Backend>, options: Options) -> Result<Store> {
        let role = backend.role();
        let mut config = options.config.clone();
        // Over a source of truth, the memory cap bounds the copies: evicting one never
        // deletes the data.
        config.evict_copies_only = role == Role::SourceOfTruth;
        // Nothing to write to: a change is final when made, with no buffer to keep.
        config.unbuffered = backend.keeps_nothing();
        // A memory cap is one budget the eviction policy spends over the whole keyspace, so a
        // capped store keeps one engine; others spread their keys over shards.
        let count = if config.max_memory.is_some() {
            1
        } else {
            SHARDS
        };
        let buffer_size = config.buffer_size;
        let mut shards = Shards::new(&config, count)?;
        let now = options.clock.now_ms();
        if role == Role::Log {
            let mut engines = shards.engines_mut();
            backend.load(&mut OpeningEngine {
                engines: &mut engines,
                now,
                last_ns: None,
            })?;
            for engine in engines {
                engine.finish_load();
            }
        }
        let shared = Arc::new(Shared {
            shards,
            buffer_size,
            health: Mutex::new(Health::default()),
            backend: Mutex::new(backend),
            compaction: Mutex::new(()),
            compacting: AtomicBool::new(false),
            schedule: Mutex::new(Schedule {
                next_sweep: Instant::now(),
                failures: 0,
                retry_at: None,
            }),
            flush_requested: AtomicBool::new(false),
            clock: options.clock,
            role,
            on_expire: options.on_expire,
            on_change: options.on_change,
            syncer: options.syncer,
            remote: Mutex::new(RemoteLog::default()),
            loads: Mutex::new(Default::default()),
        });
        if role == Role::SourceOfTruth {
            let changes = Arc::new(StoreChanges(Arc::downgrade(&shared)));
            lock(&shared.backend).watch(changes)?;
        }
        if let Some(syncer) = &shared.syncer {
            syncer.register(Arc::downgrade(&shared));
        }
        let owner = Arc::new(Owner(shared));
        Ok(Store {
            default: Namespace {
                owner,
                id: 0,
                name: Arc::from(""),
            },
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.default.owner.0
    }

    /// A handle to namespace `name` (created on first use). `""` is the default namespace;
    /// other names follow the key rules, else [`Error::InvalidName`].
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        // Created in every shard at once, under every lock: the shards agree on every id.
        let id = self.shared().with_all(|engines, _| {
            let mut id = 0;
            for engine in engines.iter_mut() {
                id = engine.namespace(name)?;
            }
            Ok(id)
        })?;
        Ok(Namespace {
            owner: Arc::clone(&self.default.owner),
            id,
            name: Arc::from(name),
        })
    }

    /// Removes every key whose TTL has passed, now, and returns how many. Keys also expire on
    /// their own: a read never returns an expired key, and a [`Syncer`](super::Syncer) sweeps.
    pub fn sweep_expired(&self) -> usize {
        let shared = self.shared();
        let mut removed = 0;
        // Everything due at the time of the call; the lock is taken once per sweep budget, so
        // readers and writers get in between chunks of a large reclaim.
        let mut at = None;
        loop {
            let mut more_due = false;
            // A shard with nothing due is passed without its lock: a tick with nothing due
            // costs a look at each shard's published bound.
            let swept = shared.with_each(true, |engine, now| {
                let now = *at.get_or_insert(now);
                let report = engine.sweep(now, engine.config().sweep_budget);
                removed += report.expired;
                more_due |= report.more_due;
            });
            if swept.is_err() || !more_due {
                return removed;
            }
        }
    }

    /// Writes every change made before this call to the backend and returns once the backend
    /// confirmed it — for a file-backed store, at the store's
    /// [`Durability`](super::Durability). On error the changes stay buffered (nothing is lost)
    /// and are retried by the next flush.
    pub fn flush(&self) -> Result<()> {
        self.shared().flush_and_note()
    }

    /// Flushes, then closes the store and releases its backend (for a file-backed store, the
    /// database lock). Waits for a compaction in progress. Every later call on any handle
    /// returns [`Error::Closed`]. If the final flush fails the store stays open and the error is
    /// returned, so nothing is lost silently.
    pub fn close(&self) -> Result<()> {
        self.shared().close()
    }

    /// Rewrites the log with only the live records and swaps the result in safely (write,
    /// fsync, rename, fsync the directory, then delete the old segments), so a crash at any step
    /// leaves a store that opens with every acknowledged write. Reads, writes and flushes go on
    /// while it runs; only a short snapshot of the keyspace is taken under the store's lock.
    /// One compaction runs at a time (a second call waits for the first).
    ///
    /// File-backed stores also compact on their own, in a background thread, once
    /// [`Options::compaction_ratio`](super::Options::compaction_ratio) of the log is dead. For
    /// other backends the report is all zeros. On error the old log stays in place and the
    /// error is also kept in [`last_error`](Store::last_error).
    pub fn compact(&self) -> Result<CompactionReport> {
        self.shared().compact()
    }

    /// The files behind a file-backed store (segments, bytes on disk, live and dead bytes,
    /// what recovery found at open); `None` for other backends. Waits for a flush in progress.
    pub fn disk_stats(&self) -> Option<DiskStats> {
        lock(&self.shared().backend).disk_stats()
    }

    /// Every live entry of every namespace as a Put record (value, kind, timestamps, deadline,
    /// tags): namespaces in creation order, keys sorted. What `tidekv dump` prints.
    pub fn snapshot(&self) -> Result<Vec<Record>> {
        let shared = self.shared();
        let now = shared.now();
        let engines = shared.shards.lock_all();
        if shared.shards.is_closed() {
            return Err(Error::Closed);
        }
        let mut records = Vec::new();
        for engine in &engines {
            records.extend(engine.snapshot(now));
        }
        if engines.len() > 1 {
            // Each shard's are in namespace-creation order then by key: so is the whole.
            let order = |r: &Record| (engines[0].find_namespace(r.namespace()), r.key().to_owned());
            records.sort_by_cached_key(order);
        }
        Ok(records)
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> Stats {
        self.shared().stats()
    }

    /// The last error a flush or compaction met since the store was opened, if any (also
    /// `stats().last_error`). It stays set after later flushes succeed.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared().health).last_error.clone()
    }
}

impl Namespace {
    fn shared(&self) -> &Arc<Shared> {
        &self.owner.0
    }

    /// The namespace's name (`""` for the default namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores `value` under `key` with no TTL and no tags, replacing any previous entry. Text
    /// is stored as [`Kind::Text`](crate::Kind::Text), byte buffers as
    /// [`Kind::Bytes`](crate::Kind::Bytes) (see [`IntoValue`]).
    ///
    /// Errors: [`Error::InvalidKey`] (empty or over 64 KiB), [`Error::ValueTooLarge`],
    /// [`Error::Closed`]. On error nothing is stored.
    ///
    /// [`IntoValue`]: super::IntoValue
    pub fn set(&self, key: &str, value: impl IntoValue) -> Result<()> {
        self.set_with(key, value, SetOptions::new())
    }

    /// Stores `value` under `key` with a TTL, tags and a kind, replacing the whole previous
    /// entry (value, TTL and tags) like Redis `SET`. A live key keeps its `created_at`.
    ///
    /// Errors: as [`set`](Namespace::set), plus [`Error::InvalidTtl`] for a zero TTL and
    /// [`Error::InvalidName`] for a bad tag.
    pub fn set_with(&self, key: &str, value: impl IntoValue, options: SetOptions) -> Result<()> {
        let ttl = options.ttl.map(ttl_ms).transpose()?;
        let (value, kind) = value.into_value();
        let kind = options.kind.unwrap_or(kind);
        self.shared().with_key(self.id, key, |engine, now| {
            engine.set(self.id, key, value, kind, ttl, &options.tags, now)
        })
    }

    /// Stores `value` as JSON ([`Kind::Json`](crate::Kind::Json): JavaScript reads back the
    /// parsed value), with no TTL and no tags. Feature `serde`.
    ///
    /// Errors: [`Error::Json`] if `value` cannot be serialized (nothing stored), and those of
    /// [`set`](Namespace::set).
    ///
    /// ```
    /// # #[cfg(feature = "serde")]
    /// # fn main() -> tidekv::Result<()> {
    /// use std::collections::BTreeMap;
    /// let store = tidekv::Store::memory(tidekv::Options::default())?;
    /// let user = BTreeMap::from([("name", "Ada"), ("lang", "en")]);
    /// store.set_json("user:1", &user)?;
    /// let back: BTreeMap<String, String> = store.get_json("user:1")?.unwrap();
    /// assert_eq!(back["name"], "Ada");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "serde"))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "serde")]
    pub fn set_json<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.set_json_with(key, value, SetOptions::new())
    }

    /// [`set_json`](Namespace::set_json) with a TTL and tags (the kind is always JSON).
    /// Feature `serde`.
    #[cfg(feature = "serde")]
    pub fn set_json_with<T: serde::Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        options: SetOptions,
    ) -> Result<()> {
        let text = serde_json::to_string(value).map_err(|e| Error::Json(e.to_string()))?;
        self.set_with(key, super::Json(text), options.kind(crate::Kind::Json))
    }

    /// The value under `key` read as JSON into a `T`, or `None` if there is none or it
    /// expired. Any stored kind is read as JSON text (a `Kind::Text` value `"\"hi\""` reads as
    /// a string). Feature `serde`.
    ///
    /// Errors: [`Error::Json`] naming the key if the value is not JSON or not a `T`.
    #[cfg(feature = "serde")]
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(value) = self.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(&value)
            .map(Some)
            .map_err(|e| Error::Json(format!("the value of {key:?}: {e}")))
    }

    /// The value under `key`, or `None` if there is none or it expired.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if self.shared().role == Role::SourceOfTruth {
            // A held copy is the answer: one lock, no clock read unless it has a TTL.
            let held = self
                .shared()
                .with_key_lazy_now(self.id, key, |engine, now| {
                    engine.get_if_held(self.id, key, now)
                })?;
            if let Some((value, _)) = held {
                return Ok(Some(value));
            }
            self.shared().fetch_missing(self.id, key)?;
        }
        self.shared()
            .with_key_lazy_now(self.id, key, |engine, now| {
                Ok(engine.get_lazy(self.id, key, now)?.map(|(v, _)| v))
            })
    }

    /// The value and metadata under `key`, or `None` if there is none or it expired.
    ///
    /// A compressed value's stored size is measured after the store's lock is released, so a
    /// large value never holds up other readers and writers.
    pub fn get_with_metadata(&self, key: &str) -> Result<Option<(Bytes, Metadata)>> {
        self.shared().fetch_missing(self.id, key)?;
        let found = self.shared().with_key(self.id, key, |engine, now| {
            engine.get_with_metadata(self.id, key, now)
        })?;
        Ok(found.map(|(value, mut meta)| {
            meta.measure_stored_size(&value);
            (value, meta)
        }))
    }

    /// Whether `key` holds a live value.
    pub fn contains(&self, key: &str) -> Result<bool> {
        self.shared().fetch_missing(self.id, key)?;
        self.shared().with_key(self.id, key, |engine, now| {
            engine.contains(self.id, key, now)
        })
    }

    /// Removes `key`; `true` if it held a live value.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.shared().fetch_missing(self.id, key)?;
        self.shared()
            .with_key(self.id, key, |engine, now| engine.delete(self.id, key, now))
    }

    /// Applies every set and delete of `batch`, all or nothing (see [`WriteBatch`]): if any
    /// entry is refused, the error is that entry's and nothing changed. Returns how many of the
    /// deletes removed a live key.
    ///
    /// Errors: as [`set_with`](Namespace::set_with) and [`delete`](Namespace::delete).
    pub fn apply(&self, batch: WriteBatch) -> Result<usize> {
        let ops = batch.into_ops()?;
        for op in &ops {
            if let crate::core::BatchOp::Delete { key } = op {
                // A key that is no key is refused by the batch's own checks below.
                if crate::core::validate_key(key).is_ok() {
                    self.shared().fetch_missing(self.id, key)?;
                }
            }
        }
        let shared = self.shared();
        if shared.shards.count() == 1 {
            return shared.with_all(|engines, now| Ok(engines[0].apply(self.id, &ops, now)?));
        }
        let mut parts: Vec<Vec<crate::core::BatchOp>> = vec![Vec::new(); shared.shards.count()];
        // Each part's ops' places in the whole batch, to report its first refused op.
        let mut places: Vec<Vec<usize>> = vec![Vec::new(); shared.shards.count()];
        // Each op's (shard, position in its part), in batch order.
        let mut order = Vec::with_capacity(ops.len());
        for (place, op) in ops.into_iter().enumerate() {
            let key = match &op {
                crate::core::BatchOp::Set { key, .. } | crate::core::BatchOp::Delete { key } => key,
            };
            let shard = shared.shards.index(self.id, key);
            order.push((shard, parts[shard].len()));
            parts[shard].push(op);
            places[shard].push(place);
        }
        // Under every lock: every part is checked before any is applied, so the batch is all
        // or nothing across shards, for readers and for the next flush alike.
        shared.with_all_ordered(|engines, now, changes| {
            engines[0].namespace_name(self.id)?;
            let refused = engines
                .iter()
                .zip(&parts)
                .zip(&places)
                .filter_map(|((engine, part), places)| {
                    let e = engine.check_batch(self.id, part, now).err()?;
                    Some((places[e.index], e.error))
                })
                .min_by_key(|(place, _)| *place);
            if let Some((_, error)) = refused {
                return Err(error);
            }
            // Op by op in batch order (each was checked above), so change events come in the
            // batch's order as on one engine.
            let mut deleted = 0;
            for (shard, at) in order {
                let engine = &mut engines[shard];
                deleted += engine.apply(self.id, std::slice::from_ref(&parts[shard][at]), now)?;
                changes.extend(shared.take_changes(engine));
            }
            Ok(deleted)
        })
    }

    /// Time left before `key` expires; `None` if the key does not exist or has no TTL.
    pub fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.shared().fetch_missing(self.id, key)?;
        self.shared().with_key(self.id, key, |engine, now| {
            Ok(engine.ttl(self.id, key, now)?.map(Duration::from_millis))
        })
    }

    /// Makes a live `key` expire `ttl` from now, keeping its value and tags; `true` if the key
    /// exists. [`Error::InvalidTtl`] for a zero TTL.
    pub fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let ttl = ttl_ms(ttl)?;
        self.shared().fetch_missing(self.id, key)?;
        self.shared().with_key(self.id, key, |engine, now| {
            engine.expire(self.id, key, ttl, now)
        })
    }

    /// Removes the TTL of a live `key`; `true` if the key exists.
    pub fn persist(&self, key: &str) -> Result<bool> {
        self.shared().fetch_missing(self.id, key)?;
        self.shared().with_key(self.id, key, |engine, now| {
            engine.persist(self.id, key, now)
        })
    }

    /// Live keys that start with `prefix`, sorted; `""` lists every key. On a
    /// [`Role::SourceOfTruth`] backend (Redis), the backend's keys with this store's own
    /// unconfirmed changes applied.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.shared().listing(
            self.id,
            |backend, ns| backend.keys(ns, prefix),
            |engine, now| engine.keys(self.id, prefix, now),
            String::as_str,
        )
    }

    /// Live keys that carry *all* of `tags`, sorted. An empty `tags` matches nothing. On a
    /// [`Role::SourceOfTruth`] backend, as [`keys`](Namespace::keys).
    pub fn query_by_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<Vec<String>> {
        if tags.is_empty() {
            return self.shared().with_all(|engines, _| {
                engines[0].namespace_name(self.id)?;
                Ok(Vec::new())
            });
        }
        let names: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
        self.shared().listing(
            self.id,
            |backend, ns| backend.query_by_tags(ns, &names),
            |engine, now| engine.query_by_tags(self.id, tags, now),
            String::as_str,
        )
    }

    /// Every tag carried by a live key, with its number of live keys, sorted by tag. On a
    /// [`Role::SourceOfTruth`] backend, as [`keys`](Namespace::keys).
    pub fn list_tags(&self) -> Result<Vec<(String, usize)>> {
        let shared = self.shared();
        if shared.role != Role::SourceOfTruth {
            return shared.with_all(|engines, now| {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for engine in engines.iter() {
                    for (tag, n) in engine.list_tags(self.id, now)? {
                        *counts.entry(tag).or_default() += n;
                    }
                }
                Ok(counts.into_iter().collect())
            });
        }
        // A listing of (tag, key) pairs: each key's tags as the backend holds them, or as
        // the engine does for a key with an unconfirmed change.
        let pairs = shared.listing(
            self.id,
            |backend, ns| {
                let mut pairs = Vec::new();
                for (tag, keys) in backend.tags(ns)? {
                    pairs.extend(keys.into_iter().map(|key| (tag.clone(), key)));
                }
                Ok(pairs)
            },
            |engine, now| {
                let mut pairs = Vec::new();
                for (tag, _) in engine.list_tags(self.id, now)? {
                    for key in engine.query_by_tags(self.id, &[&tag], now)? {
                        pairs.push((tag.clone(), key));
                    }
                }
                Ok(pairs)
            },
            |(_, key)| key.as_str(),
        )?;
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for (tag, _) in pairs {
            *counts.entry(tag).or_default() += 1;
        }
        Ok(counts.into_iter().collect())
    }

    /// The value under `key`; if there is none, runs `loader`, stores what it returns with
    /// `options` and returns it. When many threads miss the same key at once, the loader runs
    /// once and every one of them gets its result (moka's `get_with`); a loader that fails —
    /// or panics — fails every waiting call with [`Error::Load`] naming its error, and nothing
    /// is stored.
    ///
    /// Errors: as [`get`](Namespace::get) and [`set_with`](Namespace::set_with) (the loaded
    /// value is refused like any set's, and every waiter gets that error as
    /// [`Error::Load`]), and [`Error::Load`].
    ///
    /// ```
    /// use tidekv::{Options, SetOptions, Store};
    /// # fn main() -> tidekv::Result<()> {
    /// let store = Store::memory(Options::default())?;
    /// let ttl = SetOptions::new().ttl(std::time::Duration::from_secs(60));
    /// let v = store.get_or_insert_with("user:1", ttl.clone(), || Ok::<_, String>("ada"))?;
    /// assert_eq!(&v[..], b"ada");
    /// // Now cached: the loader does not run again.
    /// let v = store.get_or_insert_with("user:1", ttl, || Err::<&str, _>("not called"))?;
    /// assert_eq!(&v[..], b"ada");
    /// # Ok(()) }
    /// ```
    pub fn get_or_insert_with<V, E, F>(
        &self,
        key: &str,
        options: SetOptions,
        loader: F,
    ) -> Result<Bytes>
    where
        V: IntoValue,
        E: std::fmt::Display,
        F: FnOnce() -> std::result::Result<V, E>,
    {
        if let Some(value) = self.get(key)? {
            return Ok(value);
        }
        let shared = self.shared();
        let slot = (self.id, key.to_string());
        let (load, leader) = {
            let mut loads = lock(&shared.loads);
            match loads.get(&slot) {
                Some(load) => (Arc::clone(load), false),
                None => {
                    let load = Arc::new(Load::default());
                    loads.insert(slot.clone(), Arc::clone(&load));
                    (load, true)
                }
            }
        };
        if !leader {
            return load.wait().map_err(Error::Load);
        }
        let mut guard = LoadGuard {
            shared,
            slot,
            load,
            answer: None,
        };
        // Another leader may have stored the key between the first look and now.
        let answer = match self.get(key) {
            Ok(Some(value)) => Ok(value),
            Ok(None) => match loader() {
                Ok(value) => {
                    let (value, kind) = value.into_value();
                    let options = SetOptions {
                        kind: options.kind.or(Some(kind)),
                        ..options
                    };
                    self.set_with(key, value.clone(), options)
                        .map(|()| value)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        guard.answer = Some(answer.clone());
        drop(guard);
        answer.map_err(Error::Load)
    }

    /// The live entries whose key starts with `prefix` (`""`: all), as (key, value, metadata),
    /// in no particular order. The store's lock is held for one chunk of 256 entries at a time,
    /// so reads and writes go on during a long walk: a key live for the whole walk is
    /// returned exactly once, one set or deleted meanwhile may or may not be. Reading is not a
    /// use (it updates no recency). On a [`Role::SourceOfTruth`] backend (Redis), the keys
    /// [`keys`](Namespace::keys) lists, each read as [`get_with_metadata`] reads it.
    ///
    /// [`get_with_metadata`]: Namespace::get_with_metadata
    pub fn entries(&self, prefix: &str) -> Result<Entries> {
        let walk = if self.shared().role == Role::SourceOfTruth {
            Walk::Listed(self.keys(prefix)?.into_iter())
        } else {
            let first = self
                .shared()
                .with_shard(0, |engine, _| engine.entries_cursor(self.id, prefix))?;
            Walk::Engine {
                shard: 0,
                prefix: prefix.to_string(),
                cursor: first,
            }
        };
        Ok(Entries {
            namespace: self.clone(),
            walk,
            chunk: std::collections::VecDeque::new(),
        })
    }

    /// How many live keys the namespace holds. On a [`Role::SourceOfTruth`] backend, counted
    /// by listing them ([`keys`](Namespace::keys)).
    pub fn len(&self) -> Result<usize> {
        if self.shared().role == Role::SourceOfTruth {
            return Ok(self.keys("")?.len());
        }
        self.shared().with_all(|engines, now| {
            let mut len = 0;
            for engine in engines.iter() {
                len += engine.len(self.id, now)?;
            }
            Ok(len)
        })
    }

    /// Whether the namespace holds no live key.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Deletes every key of the namespace as one change: all the deletes go in one batch, so
    /// they reach the backend together at the next flush (atomic per namespace; a crash
    /// replays all of them or none). Returns how many live keys it removed. On a
    /// [`Role::SourceOfTruth`] backend, the keys it lists ([`keys`](Namespace::keys)) — a key
    /// another process adds meanwhile stays.
    pub fn clear(&self) -> Result<usize> {
        let listed = if self.shared().role == Role::SourceOfTruth {
            self.keys("")?
        } else {
            Vec::new()
        };
        let shared = self.shared();
        let mut by_shard = vec![Vec::new(); shared.shards.count()];
        for key in listed {
            by_shard[shared.shards.index(self.id, &key)].push(key);
        }
        // Every shard at once, under every lock: one change, so in one flush.
        shared.with_all(|engines, now| {
            let mut removed = 0;
            for (engine, listed) in engines.iter_mut().zip(&by_shard) {
                removed += engine.clear(self.id, now)?;
                removed += engine.delete_unheld(self.id, listed, now)?;
            }
            Ok(removed)
        })
    }
}

/// How an [`Entries`] walk finds its keys.
enum Walk {
    /// The engines hold every key: walk them in chunks, shard after shard.
    Engine {
        shard: usize,
        prefix: String,
        cursor: crate::core::EntriesCursor,
    },
    /// A source of truth holds them: the keys it listed, read one by one.
    Listed(std::vec::IntoIter<String>),
}

/// The iterator of [`Namespace::entries`]: (key, value, metadata) of each live entry. An
/// `Err` item (the store was closed, Redis failed) ends nothing by itself: the caller decides.
pub struct Entries {
    namespace: Namespace,
    walk: Walk,
    chunk: std::collections::VecDeque<(String, Bytes, Metadata)>,
}

/// Entries an [`Entries`] walk takes per turn of the store's lock.
const ENTRIES_CHUNK: usize = 256;

impl Iterator for Entries {
    type Item = Result<(String, Bytes, Metadata)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.chunk.pop_front() {
                return Some(Ok(entry));
            }
            match &mut self.walk {
                Walk::Engine {
                    shard,
                    prefix,
                    cursor,
                } => {
                    let shared = self.namespace.shared();
                    if cursor.is_done() {
                        *shard += 1;
                        if *shard >= shared.shards.count() {
                            return None;
                        }
                        let next = shared.with_shard(*shard, |engine, _| {
                            engine.entries_cursor(self.namespace.id, prefix)
                        });
                        match next {
                            Ok(next) => *cursor = next,
                            Err(e) => return Some(Err(e)),
                        }
                        continue;
                    }
                    let chunk = shared.with_shard(*shard, |engine, now| {
                        engine.next_entries(cursor, ENTRIES_CHUNK, now)
                    });
                    match chunk {
                        Ok(chunk) => self.chunk.extend(chunk),
                        Err(e) => return Some(Err(e)),
                    }
                }
                Walk::Listed(keys) => {
                    let key = keys.next()?;
                    match self.namespace.get_with_metadata(&key) {
                        Ok(Some((value, meta))) => return Some(Ok((key, value, meta))),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }
}

/// The engines of a store being opened, as its backend's [`Replay`] target: each record goes
/// to its key's shard.
struct OpeningEngine<'a, 'e> {
    engines: &'a mut [&'e mut Engine],
    /// The open's one reading of the clock: records expired by then are dropped.
    now: u64,
    /// The last record's namespace and its id (records come in long runs of one namespace).
    last_ns: Option<(String, NsId)>,
}

impl Replay for OpeningEngine<'_, '_> {
    fn reserve(&mut self, records: usize) {
        let share = records.div_ceil(self.engines.len());
        for engine in self.engines.iter_mut() {
            engine.reserve_for_load(share);
        }
    }

    fn record(&mut self, record: Record) -> Result<()> {
        if self.engines.len() == 1 {
            return self.engines[0].load(record, self.now);
        }
        let ns = match &self.last_ns {
            Some((name, id)) if name == record.namespace() => *id,
            _ => {
                // Created in every shard, so the shards agree on its id.
                let mut id = 0;
                for engine in self.engines.iter_mut() {
                    id = engine.namespace(record.namespace())?;
                }
                self.last_ns = Some((record.namespace().to_string(), id));
                id
            }
        };
        let shard = shard_of(self.engines.len(), ns, record.key());
        self.engines[shard].load(record, self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A key of the default namespace in another shard than `k0`, and `k0`'s shard.
    fn key_in_another_shard(store: &Store) -> (String, usize) {
        let shards = &store.shared().shards;
        let shard = shards.index(0, "k0");
        let other = (1..)
            .map(|i| format!("k{i}"))
            .find(|k| shards.index(0, k) != shard)
            .expect("keys spread over shards");
        (other, shard)
    }

    #[test]
    fn a_call_never_waits_for_a_lock_held_on_another_shard() {
        let store = Store::memory(Options::default()).unwrap();
        assert_eq!(store.shared().shards.count(), SHARDS);
        let (free, shard) = key_in_another_shard(&store);
        store.set(&free, "v").unwrap();
        // Another caller is inside shard `shard` (as a long call would be) ...
        let guard = store.shared().shards.lock(shard);
        let (done, answer) = mpsc::channel();
        let other = store.clone();
        let worker = thread::spawn(move || {
            other.set(&format!("{free}!"), "w").ok();
            done.send(other.get(&free).unwrap()).unwrap();
        });
        // ... and a call on a key of another shard still completes (with one engine lock it
        // would wait for the guard forever: the bound only turns that hang into a failure).
        let got = answer.recv_timeout(Duration::from_secs(30));
        drop(guard);
        worker.join().unwrap();
        assert_eq!(got.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_sweep_with_nothing_due_passes_every_shard_without_its_lock() {
        let clock = super::super::ManualClock::new(1_000_000);
        let store = Store::memory(Options::default().clock(clock.clone())).unwrap();
        let soon = SetOptions::new().ttl(Duration::from_secs(10));
        for i in 0..200 {
            store.set_with(&format!("k{i}"), "v", soon.clone()).unwrap();
        }
        assert_eq!(store.sweep_expired(), 0); // every shard's bound is published now
        let guard = store.shared().shards.lock(0);
        let (done, swept) = mpsc::channel();
        let other = store.clone();
        let worker = thread::spawn(move || done.send(other.sweep_expired()).unwrap());
        // Nothing is due, so the held lock is never asked for (it would hang: the bound only
        // turns that hang into a failure).
        let got = swept.recv_timeout(Duration::from_secs(30));
        drop(guard);
        worker.join().unwrap();
        assert_eq!(got, Ok(0));
        // Once keys are due, every shard holding one is swept.
        clock.advance(Duration::from_secs(11));
        assert_eq!(store.sweep_expired(), 200);
        assert_eq!(store.len().unwrap(), 0);
    }

    #[test]
    fn a_store_with_a_memory_cap_keeps_one_engine() {
        let store = Store::memory(Options::default().max_memory(1 << 20)).unwrap();
        assert_eq!(store.shared().shards.count(), 1);
    }
}
