//! Builders for opening a store ([`Options`]) and for one write ([`SetOptions`]).

use std::{fmt, sync::Arc, time::Duration};

use super::syncer::SyncerShared;
use super::{Clock, Syncer, SystemClock};
use crate::core::{Change, Config};
use crate::{Error, Kind, Result};

/// A callback for keys removed by expiry: `(namespace, key)`.
pub(crate) type ExpireCallback = Arc<dyn Fn(&Change) + Send + Sync>;
pub(crate) type ChangeCallback = Arc<dyn Fn(&Change) + Send + Sync>;

/// How far [`Store::flush`](super::Store::flush) takes a batch of a file-backed store before it
/// returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Written to the operating system: survives the process being killed (even `SIGKILL`),
    /// not a power loss or kernel crash. Fast.
    Buffered,
    /// Written and `fsync`ed (data) on every flush: survives a power loss once `flush()`
    /// returned. The default.
    #[default]
    Fsync,
}

/// How a store is opened. Every option has a default; set only what you need.
///
/// ```
/// use std::time::Duration;
/// use tidekv::{Durability, Options};
/// let options = Options::default()
///     .db("sessions")
///     .durability(Durability::Fsync)
///     .buffer_size(4 * 1024 * 1024)
///     .flush_interval(Duration::from_millis(200))
///     .max_value_size(1024 * 1024);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_expire: Option<ExpireCallback>,
    pub(crate) on_change: Option<ChangeCallback>,
    pub(crate) db: String,
    pub(crate) log: LogOptions,
    pub(crate) syncer: Option<Arc<SyncerShared>>,
}

/// The file-log part of [`Options`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LogOptions {
    pub durability: Durability,
    pub segment_size: u64,
    pub compaction_ratio: f64,
    pub compaction_min_size: u64,
    pub skip_corrupt: bool,
}

/// The default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// The default minimum log size for automatic compaction: 16 MiB.
pub const DEFAULT_COMPACTION_MIN_SIZE: u64 = 16 * 1024 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            durability: Durability::Fsync,
            segment_size: DEFAULT_SEGMENT_SIZE,
            compaction_ratio: 0.5,
            compaction_min_size: DEFAULT_COMPACTION_MIN_SIZE,
            skip_corrupt: false,
        }
    }
}

impl LogOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, reason: &str| {
            Err(Error::InvalidOption {
                option: option.into(),
                reason: reason.into(),
            })
        };
        if self.segment_size < 1024 {
            return bad("segment_size", "must be at least 1 KiB");
        }
        if !(self.compaction_ratio > 0.0 && self.compaction_ratio <= 1.0) {
            return bad("compaction_ratio", "must be above 0 and at most 1");
        }
        Ok(())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            on_expire: None,
            on_change: None,
            db: "default".into(),
            log: LogOptions::default(),
            syncer: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("db", &self.db)
            .field("log", &self.log)
            .field("syncer", &self.syncer.is_some())
            .field("on_expire", &self.on_expire.is_some())
            .field("on_change", &self.on_change.is_some())
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Bytes of pending writes at which a flush starts. Default 1 MiB. A bigger buffer means
    /// fewer, larger writes; a write is never refused because the buffer is full.
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.config.buffer_size = bytes;
        self
    }

    /// Longest time a write waits in the buffer before a flush is due. Default 1 s; at least
    /// 1 ms.
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.config.flush_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Largest value accepted, in bytes; bigger values fail with [`Error::ValueTooLarge`].
    /// Default 512 MiB; at most 4 GiB - 1.
    pub fn max_value_size(mut self, bytes: u64) -> Self {
        self.config.max_value_size = bytes;
        self
    }

    /// Where time comes from. Default: [`SystemClock`]. Use a [`ManualClock`](super::ManualClock)
    /// to drive expiry in tests.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Called for every key removed by expiry, lazily or by a sweep, after the store's locks
    /// are released, with the same [`Change`] event [`on_change`](Options::on_change) gets
    /// (`op` is `ChangeOp::Expire`; JavaScript's `'expire'` event carries the same fields).
    /// Default: none.
    ///
    /// ```
    /// use tidekv::core::Change;
    /// use tidekv::Options;
    /// let options = Options::default().on_expire(|c: &Change| {
    ///     println!("{}/{} expired", c.namespace, c.key);
    /// });
    /// # let _ = options;
    /// ```
    pub fn on_expire(mut self, callback: impl Fn(&Change) + Send + Sync + 'static) -> Self {
        self.on_expire = Some(Arc::new(callback));
        self.config.track_expired = true;
        self
    }

    /// Called with every change this store makes — each set (and TTL change), each delete
    /// that removed a live key, each expiry — in the order they happened, after the store's
    /// locks are released (so the callback may use the store). A replay at open is not a
    /// change. Default: none; without a callback no change is recorded at all.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tidekv::core::{Change, ChangeOp};
    /// use tidekv::{Options, Store};
    ///
    /// # fn main() -> tidekv::Result<()> {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let store = Store::memory(Options::default().on_change(move |c: &Change| {
    ///     log.lock().unwrap().push((c.key.clone(), c.op));
    /// }))?;
    /// store.set("a", "1")?;
    /// store.delete("a")?;
    /// assert_eq!(*seen.lock().unwrap(), [("a".into(), ChangeOp::Set), ("a".into(), ChangeOp::Delete)]);
    /// # Ok(()) }
    /// ```
    pub fn on_change(mut self, callback: impl Fn(&Change) + Send + Sync + 'static) -> Self {
        self.on_change = Some(Arc::new(callback));
        self.config.track_changes = true;
        self
    }

    /// Caps the bytes the keyspace holds — keys, values and metadata, as
    /// [`Stats::memory_bytes`](crate::Stats::memory_bytes) counts them. Past the cap, every
    /// write evicts keys chosen by [`eviction`](Options::eviction) until the keyspace fits:
    /// an evicted key is removed like a delete (from the files too, at the next flush),
    /// counted in `Stats::evictions` and reported to [`on_change`](Options::on_change) as
    /// `ChangeOp::Evict`. On a Redis store the cap bounds the local copies: eviction drops a
    /// copy, never the data in Redis, and never a change Redis has not confirmed. A single
    /// entry larger than the cap is refused with [`Error::ValueTooLarge`](crate::Error).
    /// `0` is refused by the open ([`Error::InvalidOption`](crate::Error)). Default: no cap.
    ///
    /// ```
    /// use tidekv::{EvictionPolicy, Options, Store};
    /// # fn main() -> tidekv::Result<()> {
    /// let store = Store::memory(Options::default().max_memory(64 * 1024).eviction(EvictionPolicy::Lru))?;
    /// for i in 0..10_000 {
    ///     store.set(&format!("key:{i}"), vec![0u8; 100])?;
    /// }
    /// assert!(store.stats().memory_bytes <= 64 * 1024);
    /// assert!(store.stats().evictions > 0);
    /// # Ok(()) }
    /// ```
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.config.max_memory = Some(bytes);
        self
    }

    /// Which keys [`max_memory`](Options::max_memory) evicts first. Default
    /// [`EvictionPolicy::Lru`](crate::EvictionPolicy::Lru).
    pub fn eviction(mut self, policy: crate::EvictionPolicy) -> Self {
        self.config.eviction = policy;
        self
    }

    /// Most keys one sweep tick removes before yielding. Default 1,000. Higher reclaims a burst
    /// of expiries faster; lower keeps each tick short.
    pub fn sweep_budget(mut self, keys: usize) -> Self {
        self.config.sweep_budget = keys;
        self
    }

    /// Compress persisted values of at least `threshold` bytes (LZ4). Default off, 1 KiB.
    /// Values in memory are never compressed.
    pub fn compression(mut self, on: bool) -> Self {
        self.config.compression = on;
        self
    }

    /// Smallest value compressed when compression is on, in bytes. Default 1,024.
    pub fn compression_threshold(mut self, bytes: usize) -> Self {
        self.config.compression_threshold = bytes;
        self
    }

    /// Which database of the directory [`Store::open`](super::Store::open) opens: `dir/<name>/`.
    /// Default `"default"`. A name is 1..=128 bytes of ASCII letters, digits, `-`, `_` and `.`,
    /// and never `.` or `..`; anything else fails the open with [`Error::InvalidName`] before
    /// anything is created. Ignored by [`Store::memory`](super::Store::memory).
    pub fn db(mut self, name: impl Into<String>) -> Self {
        self.db = name.into();
        self
    }

    /// How durable a flush of a file-backed store is before it returns. Default
    /// [`Durability::Fsync`]; [`Durability::Buffered`] trades power-loss safety for speed.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.log.durability = durability;
        self
    }

    /// Size in bytes at which the file log starts a new segment file. Default 64 MiB; at least
    /// 1 KiB. A batch is never split, so a segment can end up larger. Smaller segments make
    /// compaction's rewrite granularity finer but mean more files.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.log.segment_size = bytes;
        self
    }

    /// Automatic compaction starts (in a background thread) once at least this share of the
    /// log on disk is dead — overwritten, deleted or expired records. Default 0.5; above 0 and
    /// at most 1, where 1 turns automatic compaction off ([`Store::compact`](super::Store::compact)
    /// still works).
    pub fn compaction_ratio(mut self, ratio: f64) -> Self {
        self.log.compaction_ratio = ratio;
        self
    }

    /// Automatic compaction never runs while the log is smaller than this, in bytes. Default
    /// 16 MiB.
    pub fn compaction_min_size(mut self, bytes: u64) -> Self {
        self.log.compaction_min_size = bytes;
        self
    }

    /// What opening a file-backed store does with a record that fails its checks in the middle
    /// of the log (not a torn tail, which is always truncated). Default `false`: the open fails
    /// with [`Error::Corrupt`] naming the file and offset, and nothing on disk is changed. With
    /// `true` the bad bytes are skipped (counted in
    /// [`DiskStats::corrupt_records_skipped`](super::DiskStats::corrupt_records_skipped), with a
    /// warning on stderr) and the open goes on; an older record of the
    /// same key may then be what the store holds. The bad bytes stay on disk until the next
    /// compaction.
    pub fn skip_corrupt_records(mut self, skip: bool) -> Self {
        self.log.skip_corrupt = skip;
        self
    }

    /// Hands the store to a background [`Syncer`] that flushes it every interval, sweeps
    /// expired keys and flushes promptly when the buffer fills. Default: none — the store then
    /// flushes on [`flush`](super::Store::flush), when the buffer fills (in the writing thread)
    /// and on close.
    pub fn syncer(mut self, syncer: &Syncer) -> Self {
        self.syncer = Some(syncer.shared());
        self
    }
}

/// Options for one write: TTL, tags and the kind of value.
///
/// ```
/// use std::time::Duration;
/// use tidekv::{Kind, SetOptions};
/// let opts = SetOptions::new().ttl(Duration::from_secs(30)).tags(["user", "hot"]).kind(Kind::Text);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<String>,
    pub(crate) kind: Option<Kind>,
}

impl SetOptions {
    /// No TTL, no tags, the value's own kind (see [`IntoValue`](super::IntoValue)).
    pub fn new() -> Self {
        SetOptions::default()
    }

    /// The key expires `ttl` after the write. Must not be zero; sub-millisecond parts round up
    /// to the next millisecond.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Replaces the tags (duplicates are removed; each tag follows the key rules).
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// The kind of value, so JavaScript reads back a string, bytes or JSON. Default: the
    /// value's own kind ([`IntoValue`](super::IntoValue): text for `&str` and `String`, bytes
    /// for byte buffers).
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }
}

/// A TTL as whole milliseconds, rounding up; zero and overflowing TTLs are errors.
pub(crate) fn ttl_ms(ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::InvalidTtl("a TTL must not be zero".into()));
    }
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).map_err(|_| Error::InvalidTtl("the TTL is too large".into()))
}
