//! The one trait every native backend implements.
//!
//! A backend is either a **log** the store replays at open (files; the engine holds every live
//! key in memory and the backend only has to make batches durable), or the **source of truth**
//! (a server such as Redis: the engine is a write-back cache in front of it and asks the backend
//! on a miss). Either way data flows one way: the store hands the backend a [`Batch`]; the batch
//! counts as written only when [`Backend::write`] returns `Ok`.

use crate::{Batch, Record, Result};

/// How the store uses a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds a log of records the store replays at open; the store then answers every read
    /// from memory.
    Log,
    /// Holds the authoritative data; the store loads nothing at open and asks
    /// [`Backend::fetch`] when a key is not in memory.
    SourceOfTruth,
}

/// A place batches go to.
pub trait Backend: Send + 'static {
    /// How the store uses this backend. Default: [`Role::Log`].
    fn role(&self) -> Role {
        Role::Log
    }

    /// Replays every stored record, oldest first, into `visit`. Called once, at open.
    fn load(&mut self, visit: &mut dyn FnMut(Record) -> Result<()>) -> Result<()>;

    /// Makes `batch` durable to the backend's promised level. On `Err`, the store gives the
    /// batch back to the buffer and retries later: a backend may see the same records again.
    fn write(&mut self, batch: &Batch) -> Result<()>;

    /// For [`Role::SourceOfTruth`] backends: the current record of one key. Default: `None`.
    fn fetch(&mut self, namespace: &str, key: &str) -> Result<Option<Record>> {
        let _ = (namespace, key);
        Ok(None)
    }

    /// Releases the backend (locks, handles). Called once, after the final flush.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
