//! Counters the engine keeps, and the [`Stats`] snapshot shells hand to users.

use alloc::string::String;

/// A point-in-time view of a store's counters. Every count is since the store was opened.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// `set`/`set_with` calls that stored a value.
    pub sets: u64,
    /// `get`/`get_with_metadata` calls.
    pub gets: u64,
    /// Reads that found a live key.
    pub hits: u64,
    /// Reads that found nothing (or only an expired key).
    pub misses: u64,
    /// `delete` calls that removed a key.
    pub deletes: u64,
    /// `expire` calls that set a TTL on a live key.
    pub expires: u64,
    /// `persist` calls that removed a TTL from a live key.
    pub persists: u64,
    /// Keys held in memory across all namespaces; an expired key counts until it is swept or read.
    pub keys: u64,
    /// Sum of the held values' sizes, in bytes.
    pub value_bytes: u64,
    /// Bytes the keyspace holds, as a memory cap counts them: for each held entry its key,
    /// its value, its tags (each plus 32 bytes) and a fixed amount of bookkeeping (the entry
    /// itself and its table slot, about 140 bytes on 64-bit targets).
    pub memory_bytes: u64,
    /// Keys the memory cap evicted.
    pub evictions: u64,
    /// Bytes waiting for the backend: pending changes plus the batch in flight (uncompressed
    /// record sizes).
    pub buffer_bytes: u64,
    /// The configured buffer size, in bytes: a flush is due once `buffer_bytes` reaches it.
    pub buffer_size: u64,
    /// `buffer_bytes` as a percentage of `buffer_size` (may pass 100 while a backend fails).
    pub buffer_utilization: f64,
    /// Keys removed because their TTL passed (`expired_lazy + expired_active`).
    pub expired: u64,
    /// Expired keys removed when a read found them.
    pub expired_lazy: u64,
    /// Expired keys removed by sweeps.
    pub expired_active: u64,
    /// Sweeps run.
    pub sweeps: u64,
    /// The tick interval the engine asked for last, in ms.
    pub tick_interval_ms: u64,
    /// Batches a backend confirmed.
    pub flushes: u64,
    /// Records in confirmed batches.
    pub records_flushed: u64,
    /// Batches a backend failed; their data stayed buffered.
    pub flush_failures: u64,
    /// Whether the backend is failing now: its last call (a flush, or a read of a
    /// source-of-truth backend such as Redis) failed. Writes stay buffered meanwhile.
    pub backend_down: bool,
    /// The last backend error, if any since the store was opened.
    pub last_error: Option<String>,
}
