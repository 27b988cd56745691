//! The write buffer: which keys have changes no backend has confirmed yet, with exact byte
//! accounting, and the one batch that may be in flight.
//!
//! A pending key remembers only *that* it changed (with a sequence number and the size of its
//! record); the record itself is built from the keyspace when a batch is taken. So a key written
//! ten times before a flush is written once, with its newest state, and its bytes are counted
//! once. A batch that fails is given back: its keys become pending again unless a newer write
//! already made them pending — so a failed batch can never overwrite a newer write.

use alloc::{boxed::Box, vec::Vec};
use hashbrown::{hash_map::EntryRef, HashMap};

use super::{record::Record, NsId};

/// Pending keys of one namespace.
#[derive(Default)]
pub(crate) struct Pending {
    pub dirty: HashMap<Box<str>, Dirty>,
}

/// One pending key: the sequence number of its latest change and its record's size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dirty {
    pub seq: u64,
    pub bytes: usize,
}

/// A batch of records for a backend: every pending change, one record per key, in change
/// order. A store hands it to its backend's `write` and counts it written only once that
/// returns `Ok` (the engine's `ack`); on an error the changes stay pending (`fail`).
#[derive(Clone, Debug)]
pub struct Batch {
    /// Identifies the batch for `ack`/`fail`.
    pub id: u64,
    /// The records, each key at most once with its newest state. An engine's batch is in the
    /// order the changes were made; a native store, whose keys are spread over several
    /// engines (shards), writes their batches as one, so records of *different* keys may come
    /// in any order (a key's own changes were already merged into its one record).
    pub records: Vec<Record>,
    /// Sum of the records' uncompressed sizes ([`Record::size`]).
    pub bytes: usize,
}

impl Batch {
    /// The records grouped by namespace, namespaces sorted by name, each group in change
    /// order: what a backend that writes one namespace at a time (one transaction per Redis
    /// hash slot) sends.
    pub fn by_namespace(&self) -> alloc::collections::BTreeMap<&str, Vec<&Record>> {
        let mut out: alloc::collections::BTreeMap<&str, Vec<&Record>> = Default::default();
        for record in &self.records {
            out.entry(record.namespace()).or_default().push(record);
        }
        out
    }
}

pub(crate) struct InFlight {
    pub id: u64,
    pub keys: Vec<(NsId, Box<str>, u64)>,
    pub bytes: usize,
    pub oldest_at: u64,
}

/// Totals across namespaces, the sequence counter and the in-flight batch.
#[derive(Default)]
pub(crate) struct Buffer {
    pub pending_bytes: usize,
    pub pending_keys: usize,
    pub oldest_at: Option<u64>,
    pub next_seq: u64,
    pub next_batch_id: u64,
    pub in_flight: Option<InFlight>,
}

impl Buffer {
    /// Records a new change to `key`, replacing (not adding to) any bytes it already had pending.
    pub fn mark(&mut self, pending: &mut Pending, key: &str, bytes: usize, now: u64) {
        self.next_seq += 1;
        let seq = self.next_seq;
        // One hash and probe; the key is copied only when it was not pending yet.
        match pending.dirty.entry_ref(key) {
            EntryRef::Occupied(mut o) => {
                self.pending_bytes -= o.get().bytes;
                *o.get_mut() = Dirty { seq, bytes };
            }
            EntryRef::Vacant(v) => {
                v.insert(Dirty { seq, bytes });
                self.pending_keys += 1;
            }
        }
        self.pending_bytes += bytes;
        self.oldest_at.get_or_insert(now);
    }

    /// Updates the size of an already pending key whose state changed without a new write
    /// (expiry removed it). A key that is not pending stays not pending.
    pub fn resize(&mut self, pending: &mut Pending, key: &str, bytes: usize) {
        if let Some(d) = pending.dirty.get_mut(key) {
            self.pending_bytes = self.pending_bytes - d.bytes + bytes;
            d.bytes = bytes;
        }
    }

    /// Makes a key of a failed batch pending again, unless a newer change already did.
    pub fn give_back(&mut self, pending: &mut Pending, key: Box<str>, seq: u64, bytes: usize) {
        if pending.dirty.contains_key(&key) {
            return;
        }
        pending.dirty.insert(key, Dirty { seq, bytes });
        self.pending_keys += 1;
        self.pending_bytes += bytes;
    }

    /// Bytes held for the backend: pending changes plus the batch in flight.
    pub fn total_bytes(&self) -> usize {
        self.pending_bytes + self.in_flight.as_ref().map_or(0, |f| f.bytes)
    }
}
