//! [`Store`] and [`Namespace`]: `Send + Sync` handles over one engine and one backend.
//!
//! Locking: the engine sits behind one short-held mutex; the backend behind another that only
//! flushes take. A flush takes a batch under the engine lock, releases it, writes the batch,
//! then acks under the engine lock again — so reads and writes never wait for I/O, and a write
//! that lands during a flush simply goes into the next batch.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;

use super::options::{ttl_ms, ExpireCallback};
use super::{Backend, Clock, MemoryBackend, Options, SetOptions};
use crate::core::{Engine, NsId};
use crate::{Error, Kind, Metadata, Result, Stats};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a user callback must not make the store unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct State {
    engine: Engine,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    backend: Mutex<Box<dyn Backend>>,
    clock: Arc<dyn Clock>,
    on_expire: Option<ExpireCallback>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Runs `f` on the engine under the lock, then fires expiry callbacks outside it.
    fn with<R>(&self, f: impl FnOnce(&mut Engine, u64) -> Result<R>) -> Result<R> {
        let now = self.now();
        let (result, expired, flush_due) = {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(Error::Closed);
            }
            let result = f(&mut state.engine, now);
            let expired = self.on_expire.as_ref().map(|_| state.engine.take_expired());
            (result, expired, state.engine.flush_due(now))
        };
        self.notify_expired(expired);
        if flush_due {
            // A writer never waits longer than one flush; a failure stays buffered and is
            // reported by `flush()`, `stats().last_error` and the next attempt.
            let _ = self.flush();
        }
        result
    }

    fn notify_expired(&self, expired: Option<Vec<(String, String)>>) {
        if let (Some(callback), Some(expired)) = (&self.on_expire, expired) {
            for (namespace, key) in expired {
                callback(&namespace, &key);
            }
        }
    }

    /// Writes everything pending at the time of the call and waits for the backend's answer.
    fn flush(&self) -> Result<()> {
        let mut backend = lock(&self.backend);
        let batch = {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(Error::Closed);
            }
            state.engine.take_batch()
        };
        let Some(batch) = batch else {
            return Ok(());
        };
        let written = backend.write(&batch);
        let mut state = lock(&self.state);
        match written {
            Ok(()) => {
                state.engine.ack(batch.id);
                Ok(())
            }
            Err(e) => {
                state.engine.fail(batch.id, &e.to_string());
                Err(e)
            }
        }
    }

    fn close(&self) -> Result<()> {
        self.flush()?;
        let mut backend = lock(&self.backend);
        {
            let mut state = lock(&self.state);
            if state.closed {
                return Err(Error::Closed);
            }
            state.closed = true;
        }
        backend.close()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let closed = lock(&self.state).closed;
        if !closed {
            // Last handle dropped without close(): flush what is buffered, best effort.
            let _ = self.close();
        }
    }
}

/// A tidekv store: a `Clone + Send + Sync` handle; clones share one store.
///
/// A `Store` is also its default namespace: every key operation of [`Namespace`] (`set`, `get`,
/// `delete`, `keys`, ...) is callable on it directly.
///
/// Durability: a write is in memory (and visible to every reader) when `set` returns; it reaches
/// the backend on [`flush`](Store::flush), when the buffer fills, and on [`close`](Store::close)
/// or when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    default: Namespace,
}

/// A handle to one namespace of a store: its own keyspace, tags and keys, sharing the store's
/// buffer and backend. `Clone + Send + Sync`.
#[derive(Clone)]
pub struct Namespace {
    shared: Arc<Shared>,
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

    /// A store over any [`Backend`]: replays its records at open (dropping expired ones), then
    /// writes every batch to it.
    pub fn with_backend(mut backend: Box<dyn Backend>, options: Options) -> Result<Store> {
        let mut engine = Engine::new(options.config.clone())?;
        let now = options.clock.now_ms();
        backend.load(&mut |record| engine.load(record, now))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                engine,
                closed: false,
            }),
            backend: Mutex::new(backend),
            clock: options.clock,
            on_expire: options.on_expire,
        });
        Ok(Store {
            default: Namespace {
                shared,
                id: 0,
                name: Arc::from(""),
            },
        })
    }

    /// A handle to namespace `name` (created on first use). `""` is the default namespace;
    /// other names follow the key rules, else [`Error::InvalidName`].
    pub fn namespace(&self, name: &str) -> Result<Namespace> {
        let shared = &self.default.shared;
        let id = shared.with(|engine, _| engine.namespace(name))?;
        Ok(Namespace {
            shared: Arc::clone(shared),
            id,
            name: Arc::from(name),
        })
    }

    /// Removes every key whose TTL has passed, now, and returns how many. Keys also expire on
    /// their own: a read never returns an expired key.
    pub fn sweep_expired(&self) -> usize {
        let shared = &self.default.shared;
        shared
            .with(|engine, now| {
                let mut removed = 0;
                loop {
                    let budget = engine.config().sweep_budget;
                    let report = engine.sweep(now, budget);
                    removed += report.expired;
                    if !report.more_due {
                        return Ok(removed);
                    }
                }
            })
            .unwrap_or(0)
    }

    /// Writes every change made before this call to the backend and returns once the backend
    /// confirmed it. On error the changes stay buffered (nothing is lost) and are retried by
    /// the next flush.
    pub fn flush(&self) -> Result<()> {
        self.default.shared.flush()
    }

    /// Flushes, then closes the store. Every later call on any handle returns
    /// [`Error::Closed`]. If the final flush fails the store stays open and the error is
    /// returned, so nothing is lost silently.
    pub fn close(&self) -> Result<()> {
        self.default.shared.close()
    }

    /// A snapshot of the store's counters.
    pub fn stats(&self) -> Stats {
        lock(&self.default.shared.state).engine.stats()
    }

    /// The last error a flush met, if any.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.default.shared.state).engine.stats().last_error
    }
}

impl Namespace {
    /// The namespace's name (`""` for the default namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stores `value` under `key` with no TTL and no tags, replacing any previous entry.
    ///
    /// Errors: [`Error::InvalidKey`] (empty or over 64 KiB), [`Error::ValueTooLarge`],
    /// [`Error::Closed`]. On error nothing is stored.
    pub fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<()> {
        self.set_with(key, value, SetOptions::new())
    }

    /// Stores `value` under `key` with a TTL, tags and a kind, replacing the whole previous
    /// entry (value, TTL and tags) like Redis `SET`. A live key keeps its `created_at`.
    ///
    /// Errors: as [`set`](Namespace::set), plus [`Error::InvalidTtl`] for a zero TTL and
    /// [`Error::InvalidName`] for a bad tag.
    pub fn set_with(&self, key: &str, value: impl Into<Bytes>, options: SetOptions) -> Result<()> {
        let ttl = options.ttl.map(ttl_ms).transpose()?;
        let kind = options.kind.unwrap_or(Kind::Bytes);
        let value = value.into();
        self.shared
            .with(|engine, now| engine.set(self.id, key, value, kind, ttl, &options.tags, now))
    }

    /// The value under `key`, or `None` if there is none or it expired.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.shared
            .with(|engine, now| Ok(engine.get(self.id, key, now)?.map(|(v, _)| v)))
    }

    /// The value and metadata under `key`, or `None` if there is none or it expired.
    pub fn get_with_metadata(&self, key: &str) -> Result<Option<(Bytes, Metadata)>> {
        self.shared
            .with(|engine, now| engine.get_with_metadata(self.id, key, now))
    }

    /// Whether `key` holds a live value.
    pub fn contains(&self, key: &str) -> Result<bool> {
        self.shared
            .with(|engine, now| engine.contains(self.id, key, now))
    }

    /// Removes `key`; `true` if it held a live value.
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.shared
            .with(|engine, now| engine.delete(self.id, key, now))
    }

    /// Time left before `key` expires; `None` if the key does not exist or has no TTL.
    pub fn ttl(&self, key: &str) -> Result<Option<Duration>> {
        self.shared
            .with(|engine, now| Ok(engine.ttl(self.id, key, now)?.map(Duration::from_millis)))
    }

    /// Makes a live `key` expire `ttl` from now, keeping its value and tags; `true` if the key
    /// exists. [`Error::InvalidTtl`] for a zero TTL.
    pub fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let ttl = ttl_ms(ttl)?;
        self.shared
            .with(|engine, now| engine.expire(self.id, key, ttl, now))
    }

    /// Removes the TTL of a live `key`; `true` if the key exists.
    pub fn persist(&self, key: &str) -> Result<bool> {
        self.shared
            .with(|engine, now| engine.persist(self.id, key, now))
    }

    /// Live keys that start with `prefix`, sorted; `""` lists every key.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        self.shared
            .with(|engine, now| Ok(engine.keys(self.id, prefix, now)))
    }

    /// Live keys that carry *all* of `tags`, sorted. An empty `tags` matches nothing.
    pub fn query_by_tags<S: AsRef<str>>(&self, tags: &[S]) -> Result<Vec<String>> {
        self.shared
            .with(|engine, now| Ok(engine.query_by_tags(self.id, tags, now)))
    }

    /// Every tag carried by a live key, with its number of live keys, sorted by tag.
    pub fn list_tags(&self) -> Result<Vec<(String, usize)>> {
        self.shared
            .with(|engine, now| Ok(engine.list_tags(self.id, now)))
    }
}
