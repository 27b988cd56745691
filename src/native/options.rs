//! Builders for opening a store ([`Options`]) and for one write ([`SetOptions`]).

use std::{fmt, sync::Arc, time::Duration};

use super::{Clock, SystemClock};
use crate::{core::Config, Error, Kind, Result};

/// A callback for keys removed by expiry: `(namespace, key)`.
pub(crate) type ExpireCallback = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// How a store is opened. Every option has a default; set only what you need.
///
/// ```
/// use std::time::Duration;
/// use tidekv::Options;
/// let options = Options::default()
///     .buffer_size(4 * 1024 * 1024)
///     .flush_interval(Duration::from_millis(200))
///     .max_value_size(1024 * 1024);
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) config: Config,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) on_expire: Option<ExpireCallback>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            on_expire: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("config", &self.config)
            .field("on_expire", &self.on_expire.is_some())
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

    /// Called with `(namespace, key)` for every key removed by expiry, lazily or by a sweep,
    /// after the store's locks are released. Default: none.
    pub fn on_expire(mut self, callback: impl Fn(&str, &str) + Send + Sync + 'static) -> Self {
        self.on_expire = Some(Arc::new(callback));
        self.config.track_expired = true;
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
    /// No TTL, no tags, kind [`Kind::Bytes`].
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

    /// The kind of value, so JavaScript reads back a string or JSON. Default [`Kind::Bytes`].
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
