//! The one narrow trait every wasm backend implements (IndexedDB, Node.js files).
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

    /// Rewrites the stored data so it holds exactly `live` (every live entry as a Put, with
    /// nothing pending), dropping overwritten, deleted and expired records.
    fn compact(self: Rc<Self>, live: Vec<Record>) -> Task<CompactReport>;

    /// Releases the backend (connections, file handles, the lock). Called once, after the
    /// final flush.
    fn close(self: Rc<Self>) -> Task<()>;
}
