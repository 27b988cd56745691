//! The engines behind one native store: its keyspace split into shards by a hash of
//! (namespace, key), each shard a whole [`Engine`] behind its own lock, so threads working on
//! different keys never wait for each other.
//!
//! What stays whole across shards is the shell's business (`store.rs`):
//! - every shard knows every namespace, with the same ids (a namespace is created in all of
//!   them at once, under every lock);
//! - a flush takes every shard's batch under every lock and writes them as one batch, so a
//!   [`WriteBatch`](super::WriteBatch) that spans shards still lands in one frame;
//! - listings and snapshots hold every lock, so they see a [`WriteBatch`](super::WriteBatch)
//!   all or not at all, as they did with one engine.
//!
//! Locks are always taken in shard order, and a thread holding one shard's lock never asks for
//! another's, so there is no deadlock.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::core::{Config, Engine, NsId};
use crate::Result;

/// Shards of a store with no memory cap: enough that two threads rarely meet on one, few
/// enough that the shards' fixed costs (and a flush's walk over them) stay small.
pub(crate) const SHARDS: usize = 64;

/// One shard, on a cache line pair of its own, so two threads locking neighbouring shards
/// do not fight over one line.
#[repr(align(128))]
struct Shard {
    engine: Mutex<Engine>,
    /// The engine's pending bytes as of its last call, readable without its lock: next to the
    /// lock, so publishing it costs no extra cache line.
    pending: AtomicUsize,
    /// The engine's [`due_bound`](Engine::due_bound) as of its last call: a sweep passes a
    /// shard whose bound is ahead without locking it. 0 until the first call publishes it.
    due: AtomicU64,
}

/// The shards of one store, and whether it was closed.
pub(crate) struct Shards {
    shards: Box<[Shard]>,
    /// Set by close while it holds every lock: a caller that checks it under its shard's lock
    /// never acts on a closed store.
    closed: AtomicBool,
}

fn lock(m: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    // A panic in a user callback must not make the store unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shards {
    /// `count` empty engines with `config` (a power of two, at least 1).
    pub fn new(config: &Config, count: usize) -> Result<Shards> {
        debug_assert!(count.is_power_of_two());
        let shards = (0..count)
            .map(|_| {
                Engine::new(config.clone()).map(|e| Shard {
                    engine: Mutex::new(e),
                    pending: AtomicUsize::new(0),
                    due: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Shards {
            shards: shards.into_boxed_slice(),
            closed: AtomicBool::new(false),
        })
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds `key` of namespace `ns`.
    pub fn index(&self, ns: NsId, key: &str) -> usize {
        shard_of(self.shards.len(), ns, key)
    }

    /// Every engine, for a store being opened (no lock needed: nobody else has it yet).
    pub fn engines_mut(&mut self) -> Vec<&mut Engine> {
        self.shards
            .iter_mut()
            .map(|s| s.engine.get_mut().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Locks shard `i`.
    pub fn lock(&self, i: usize) -> MutexGuard<'_, Engine> {
        lock(&self.shards[i].engine)
    }

    /// Locks the shard of `key`.
    pub fn lock_key(&self, ns: NsId, key: &str) -> MutexGuard<'_, Engine> {
        self.lock(self.index(ns, key))
    }

    /// Locks every shard, in order.
    pub fn lock_all(&self) -> Vec<MutexGuard<'_, Engine>> {
        self.shards.iter().map(|s| lock(&s.engine)).collect()
    }

    /// Publishes shard `i`'s pending bytes (call under its lock, after a change).
    pub fn publish_pending(&self, i: usize, bytes: usize) {
        if self.shards.len() > 1 {
            self.shards[i].pending.store(bytes, Ordering::Relaxed);
        }
    }

    /// Every shard's pending bytes as last published: the store's write buffer.
    pub fn total_pending(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.pending.load(Ordering::Relaxed))
            .sum()
    }

    /// Publishes shard `i`'s due bound (call under its lock, after a call).
    pub fn publish_due(&self, i: usize, bound: u64) {
        let due = &self.shards[i].due;
        // Its own cache line, already held: a load and, rarely, a store.
        if due.load(Ordering::Relaxed) != bound {
            due.store(bound, Ordering::Relaxed);
        }
    }

    /// Whether shard `i` may hold a key due at `now` (by its last published bound).
    pub fn may_be_due(&self, i: usize, now: u64) -> bool {
        self.shards[i].due.load(Ordering::Relaxed) <= now
    }

    /// Whether the store was closed (see the field).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the store closed; call with every lock held.
    pub fn set_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// The shard of `key` of namespace `ns` among `count` (a power of two).
pub(crate) fn shard_of(count: usize, ns: NsId, key: &str) -> usize {
    if count == 1 {
        return 0;
    }
    shard_hash(ns, key) as usize & (count - 1)
}

/// A hash of (namespace, key) for picking a shard: the engine's word mixing, then a final
/// avalanche so the low bits depend on every byte. Independent of the keyspace's own (randomly
/// seeded) table hash, so a shard's keys do not crowd a few of its table slots.
fn shard_hash(ns: NsId, key: &str) -> u64 {
    let mut h = crate::core::word_hash(u64::from(ns), key.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_shard_about_evenly() {
        let mut counts = [0usize; SHARDS];
        for i in 0..1_000 * SHARDS {
            counts[shard_hash(0, &format!("key:{i:08}")) as usize % SHARDS] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "uneven spread: {counts:?}");
        }
    }

    #[test]
    fn the_same_key_in_another_namespace_may_live_in_another_shard() {
        let moved = (0..100)
            .filter(|i| {
                let key = format!("k{i}");
                shard_hash(0, &key) % SHARDS as u64 != shard_hash(1, &key) % SHARDS as u64
            })
            .count();
        assert!(moved > 50, "namespaces must take part in the hash: {moved}");
    }
}
