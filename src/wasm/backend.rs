//! The one narrow trait every wasm backend implements (IndexedDB, Node.js files, Redis).
//!
//! A backend is a log the store replays at open: the engine holds every live key in memory, and
//! the backend only makes batches durable. Each backend file has an `open` that replays what it
//! holds into the engine (dropping expired records) and returns the backend. A batch counts as
//! written only when [`Backend::write`] resolves `Ok`; on `Err` the store gives the batch back
//! to the engine and retries later, so a backend may see the same records again. The store
//! never runs two calls of one backend at once.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::{Batch, Record, Result};

/// A backend operation in progress.
pub(crate) type Task<T> = Pin<Box<dyn Future<Output = Result<T>>>>;

/// Keys as (namespace, key) pairs.
pub(crate) type Keys = Vec<(String, String)>;

/// Called with the keys another writer of a shared backend committed.
pub(crate) type KeysListener = Box<dyn Fn(Keys)>;

/// What a compaction did. Byte counts are of stored records as the backend keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CompactReport {
    /// Bytes stored before.
    pub bytes_before: u64,
    /// Bytes stored after.
    pub bytes_after: u64,
    /// Records stored before.
    pub records_before: u64,
    /// Records stored after: one per live key.
    pub records_after: u64,
}

/// A place batches go to. See the module docs.
pub(crate) trait Backend {
    /// Makes `batch` durable to the backend's promised level.
    fn write(self: Rc<Self>, batch: Batch) -> Task<()>;

    /// Drops dead data. `live` is every live entry as a Put, then a Delete for each key whose
    /// pending (unflushed) change removes it. A log rewrites itself to exactly `live` (keeping
    /// those Deletes, so no older record of the key outlives them), dropping overwritten,
    /// deleted and expired records. A keyed store shared with other writers (IndexedDB, one
    /// record per key) drops only expired records: anything else it holds may be another tab's.
    fn compact(self: Rc<Self>, live: Vec<Record>) -> Task<CompactReport>;

    /// Releases the backend (connections, file handles, the lock). Called once, after the
    /// final flush.
    fn close(self: Rc<Self>) -> Task<()>;

    /// Whether the backend keeps expired records until told (IndexedDB keeps one record per
    /// key; a log drops them at compaction instead). If so, the store hands it the keys the
    /// engine expired through [`reclaim_expired`](Backend::reclaim_expired).
    fn keeps_expired(&self) -> bool {
        false
    }

    /// Removes the stored records of `expired` keys (namespace, key) — each only if the record
    /// stored for it is still expired at `now`, so a newer write (from another tab, say) is
    /// never removed. Bounded by the number of keys given.
    fn reclaim_expired(self: Rc<Self>, expired: Vec<(String, String)>, now: u64) -> Task<()> {
        let _ = (expired, now);
        Box::pin(async { Ok(()) })
    }

    /// For a backend other writers share (one IndexedDB database, many tabs and workers):
    /// from now on, `listener` is called with the keys (namespace, key) another writer
    /// committed, so the store can [`read`](Backend::read) them back. Default: nobody else
    /// writes.
    fn subscribe(&self, listener: KeysListener) {
        let _ = listener;
    }

    /// What the backend holds for `keys` now, read in one transaction: a Put per stored key, a
    /// Delete for a key it does not hold. Default: nothing to read.
    fn read(self: Rc<Self>, keys: Keys) -> Task<Vec<Record>> {
        let _ = keys;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Called after the store acknowledged a batch [`write`](Backend::write) committed: the
    /// batch's keys are no longer in flight. Default: nothing to do.
    fn confirmed(self: Rc<Self>) {}

    /// Whether so much of what the backend stores is dead (overwritten, deleted) that a
    /// compaction should run on its own, given how many keys are live now.
    fn compaction_due(&self, live_keys: u64) -> bool {
        let _ = live_keys;
        false
    }
}
