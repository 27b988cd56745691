//! The one trait every native backend implements.
//!
//! A backend is either a **log** the store replays at open (files; the engine holds every live
//! key in memory and the backend only has to make batches durable), or the **source of truth**
//! (a server such as Redis: the engine is a write-back cache in front of it and asks the backend
//! on a miss). Either way data flows one way: the store hands the backend a [`Batch`]; the batch
//! counts as written only when [`Backend::write`] returns `Ok`. At open, a log backend replays
//! what it holds into a [`Replay`]: an optional size hint, then every record in order.
//!
//! A backend that keeps a log on disk can also compact it ([`Backend::begin_compaction`]) and
//! report its files ([`Backend::disk_stats`]); the defaults say "nothing to compact, no disk".

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Batch, Record, Result};

/// How the store uses a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds a log of records the store replays at open; the store then answers every read
    /// from memory.
    Log,
    /// Holds the authoritative data; the store loads nothing at open and asks
    /// [`Backend::fetch`] when a keyed call (`get`, `contains`, `delete`, `ttl`, ...) finds a
    /// key not in memory, keeping the answer — unless the key has a change of the store's own
    /// that is not confirmed yet. Listings (`keys`, tag queries) cover what is in memory.
    SourceOfTruth,
}

/// A place batches go to. Implement it to put a store in front of storage tidekv does not
/// ship with; [`Store::with_backend`](super::Store::with_backend) opens a store over it.
///
/// A log backend needs two methods: `load` replays what it holds at open, `write` makes a
/// batch durable (return `Err` and the store keeps the batch buffered and retries it):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tidekv::{Backend, Batch, Options, Record, Replay, Store};
///
/// /// Keeps every record in a shared Vec (a stand-in for a file, a table, a queue).
/// struct VecLog(Arc<Mutex<Vec<Record>>>);
///
/// impl Backend for VecLog {
///     fn load(&mut self, replay: &mut dyn Replay) -> tidekv::Result<()> {
///         for record in self.0.lock().unwrap().iter() {
///             replay.record(record.clone())?;
///         }
///         Ok(())
///     }
///
///     fn write(&mut self, batch: &Batch) -> tidekv::Result<()> {
///         self.0.lock().unwrap().extend(batch.records.iter().cloned());
///         Ok(())
///     }
/// }
///
/// # fn main() -> tidekv::Result<()> {
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let store = Store::with_backend(Box::new(VecLog(log.clone())), Options::default())?;
/// store.set("k", "v")?;
/// store.close()?;                                     // the final flush reaches the backend
/// let again = Store::with_backend(Box::new(VecLog(log)), Options::default())?;
/// assert_eq!(again.get("k")?.as_deref(), Some(&b"v"[..]));
/// # Ok(()) }
/// ```
pub trait Backend: Send + 'static {
    /// How the store uses this backend. Default: [`Role::Log`].
    fn role(&self) -> Role {
        Role::Log
    }

    /// Whether this backend stores nothing at all (as [`MemoryBackend`](super::MemoryBackend)),
    /// so the store need not buffer changes for it: no batch is ever taken, and a flush
    /// writes nothing. Default: `false`.
    fn keeps_nothing(&self) -> bool {
        false
    }

    /// Replays every stored record, oldest first, into `replay`. Called once, at open; an
    /// error from [`Replay::record`] must stop the replay and be returned.
    fn load(&mut self, replay: &mut dyn Replay) -> Result<()>;

    /// Makes `batch` durable to the backend's promised level. On `Err`, the store gives the
    /// batch back to the buffer and retries later: a backend may see the same records again.
    fn write(&mut self, batch: &Batch) -> Result<()>;

    /// For [`Role::SourceOfTruth`] backends: the current record of one key. Default: `None`.
    fn fetch(&mut self, namespace: &str, key: &str) -> Result<Option<Record>> {
        let _ = (namespace, key);
        Ok(None)
    }

    /// For [`Role::SourceOfTruth`] backends: the live keys of `namespace` that start with
    /// `prefix`, as the backend holds them (the store adds its own unconfirmed changes).
    /// Default: none.
    fn keys(&mut self, namespace: &str, prefix: &str) -> Result<Vec<String>> {
        let _ = (namespace, prefix);
        Ok(Vec::new())
    }

    /// For [`Role::SourceOfTruth`] backends: the live keys of `namespace` that carry every tag
    /// of `tags` (at least one), as the backend holds them. Default: none.
    fn query_by_tags(&mut self, namespace: &str, tags: &[&str]) -> Result<Vec<String>> {
        let _ = (namespace, tags);
        Ok(Vec::new())
    }

    /// For [`Role::SourceOfTruth`] backends: every tag of `namespace` that a live key carries,
    /// with those keys, as the backend holds them. Default: none.
    fn tags(&mut self, namespace: &str) -> Result<Vec<(String, Vec<String>)>> {
        let _ = namespace;
        Ok(Vec::new())
    }

    /// For a backend other writers share: from now on, report what they change to `changes`
    /// (from a thread of the backend's own). Called once, at open, before any other call but
    /// [`load`](Backend::load). Default: nobody else writes.
    fn watch(&mut self, changes: Arc<dyn RemoteChanges>) -> Result<()> {
        let _ = changes;
        Ok(())
    }

    /// Releases the backend (locks, handles). Called once, after the final flush.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }

    /// Starts a compaction. The store calls it with no batch in flight, passing every live
    /// entry as a Put record (pending changes included), then a Delete for every key whose
    /// pending change removes it ([`Engine::compaction_snapshot`]): the output must keep those
    /// Deletes, so that no older record of such a key outlives them. The backend must arrange
    /// that batches written from now on replay *after* the compacted data, then return a job
    /// the store runs without holding the backend's lock — flushes go on meanwhile.
    /// `Ok(None)`: nothing to compact (the default).
    ///
    /// [`Engine::compaction_snapshot`]: crate::core::Engine::compaction_snapshot
    fn begin_compaction(&mut self, live: Vec<Record>) -> Result<Option<Box<dyn Compaction>>> {
        let _ = live;
        Ok(None)
    }

    /// Whether enough of the stored data is dead that an automatic compaction should start.
    /// Asked after each successful flush, so it must be cheap. Default: `false`.
    fn compaction_due(&mut self) -> bool {
        false
    }

    /// Counters of the files behind the store, for backends that have any. Default: `None`.
    fn disk_stats(&self) -> Option<DiskStats> {
        None
    }
}

/// Where a shared backend reports other writers' changes ([`Backend::watch`]): the store, which
/// drops or refreshes its copies and tells its change listeners.
pub trait RemoteChanges: Send + Sync {
    /// Whether each changed key's new state should be read back and passed to
    /// [`changed`](RemoteChanges::changed) (the store has change listeners to tell).
    fn wants_states(&self) -> bool;

    /// Another writer changed `key` of `namespace`. `state` is its record now when it was read
    /// back (`Some(None)`: the backend no longer holds it), `None` when it was not read.
    fn changed(&self, namespace: &str, key: &str, state: Option<Option<Record>>);

    /// Changes may have been missed (a connection was lost and replaced): no copy can be
    /// trusted any more.
    fn resync(&self);
}

/// Where [`Backend::load`] sends what it replays: the store being opened.
pub trait Replay {
    /// A hint that about `records` records will follow, so the store can size its tables once
    /// instead of growing them record by record. Optional; a wrong figure costs only time or
    /// memory.
    fn reserve(&mut self, records: usize);

    /// Applies the next record. An `Err` (such as more namespaces than the store allows) fails
    /// the open with that error.
    fn record(&mut self, record: Record) -> Result<()>;
}

/// A compaction in progress: rewrites the live records and swaps them in. See
/// [`Backend::begin_compaction`].
pub trait Compaction: Send {
    /// Writes the compacted data and swaps it in. On error the old data stays in place and the
    /// store is exactly as it was.
    fn run(self: Box<Self>) -> Result<CompactionReport>;
}

/// What a compaction did. `before` counts the log as it was when the compaction began, `after`
/// the rewritten live data that replaced it (writes made during the compaction are in neither).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Bytes of the segments that were replaced.
    pub bytes_before: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_after: u64,
    /// Records in the replaced segments.
    pub records_before: u64,
    /// Records written: one per live key.
    pub records_after: u64,
    /// Records that are gone: overwritten, deleted or expired (`records_before - records_after`,
    /// at least 0).
    pub records_dropped: u64,
    /// Segment files replaced.
    pub segments_before: usize,
    /// Segment files written.
    pub segments_after: usize,
}

/// The files behind a file-backed store: see [`Store::disk_stats`](super::Store::disk_stats).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiskStats {
    /// The database directory.
    pub dir: PathBuf,
    /// Segment files.
    pub segments: usize,
    /// Bytes in all segment files.
    pub disk_bytes: u64,
    /// Bytes of records that still describe a live key (an estimate: keys are tracked by a
    /// 64-bit hash, and expiry is noticed every few seconds).
    pub live_bytes: u64,
    /// `disk_bytes - live_bytes`: what a compaction would reclaim, roughly.
    pub dead_bytes: u64,
    /// Records in all segment files.
    pub records: u64,
    /// Records replayed when the store was opened.
    pub records_replayed: u64,
    /// Records dropped at open because their TTL had passed.
    pub expired_at_open: u64,
    /// Bytes of a torn last write truncated at open.
    pub torn_tail_bytes: u64,
    /// Bad records skipped at open (only with
    /// [`Options::skip_corrupt_records`](super::Options::skip_corrupt_records)).
    pub corrupt_records_skipped: u64,
    /// Compactions finished since the store was opened.
    pub compactions: u64,
    /// Compactions that failed since the store was opened (the old data stayed in place).
    pub compaction_failures: u64,
}
