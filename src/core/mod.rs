//! The engine: a pure state machine that owns what tidekv *means*.
//!
//! It holds the keyspace, TTL deadlines, tags, the write buffer and the stats, and it answers
//! every read and queues every write. It never performs I/O, never reads a clock (every call that
//! depends on time takes `now`, in ms since the Unix epoch), never spawns a thread and needs no
//! `std` — `core` + `alloc` only. The shells (native, wasm) wrap it with locks, clocks, timers and
//! backends; data flows one way: call → engine → [`Batch`] → backend → [`Engine::ack`](crate::core::Engine::ack).

pub mod buffer;
mod crc;
pub mod dump;
pub mod evict;
pub mod expiry;
pub mod keyspace;
pub mod log;
pub mod record;
pub mod stats;
mod tags;

use alloc::{boxed::Box, string::String, vec::Vec};
use bytes::Bytes;
use hashbrown::HashMap;

pub use buffer::Batch;
use buffer::{Buffer, InFlight};
pub use evict::EvictionPolicy;
pub use expiry::SweepReport;
use expiry::{next_tick_delay, DeadlineIndex};
use keyspace::Entry;
use keyspace::Space;
pub use keyspace::{Kind, Metadata};
pub use record::{DecodeError, PutRecord, Record};
pub use stats::Stats;

use crate::{Error, Result, MAX_KEY_LEN};

/// Identifies a namespace inside one engine; `0` is the default namespace `""`.
pub type NsId = u32;

/// The engine's tunables. Every field has a documented default; [`Config::validate`] checks them.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Pending bytes at which a flush becomes due. Default 1 MiB. It is a trigger, not a cap:
    /// while a backend fails, writes keep being accepted and stay buffered.
    pub buffer_size: usize,
    /// A flush is due once the oldest pending change is this old, in ms. Default 1,000.
    pub flush_interval_ms: u64,
    /// Largest value accepted, in bytes. Default 512 MiB; at most `u32::MAX`.
    pub max_value_size: u64,
    /// Shortest delay between ticks the engine asks for, in ms. Default 10.
    pub min_tick_ms: u64,
    /// Longest delay between ticks the engine asks for, in ms. Default 1,000.
    pub max_tick_ms: u64,
    /// Most keys one sweep removes before it yields. Default 1,000.
    pub sweep_budget: usize,
    /// Compress persisted values of at least `compression_threshold` bytes. Default off.
    pub compression: bool,
    /// Smallest value that is compressed when `compression` is on, in bytes. Default 1,024.
    pub compression_threshold: usize,
    /// Queue expirations for [`Engine::take_changes`]. Default off (shells turn it on when a
    /// user registers an expiry callback, or their backend needs the expired keys).
    pub track_expired: bool,
    /// Queue every change — sets, deletes and expirations — for [`Engine::take_changes`].
    /// Default off (shells turn it on when a user registers a change callback).
    pub track_changes: bool,
    /// The most bytes the keyspace may hold — keys, values and metadata, as
    /// [`Stats::memory_bytes`] counts them. Past it, each write evicts keys chosen by
    /// `eviction` until the keyspace fits again; a single entry larger than the cap is refused
    /// ([`Error::ValueTooLarge`]). Default `None`: no cap.
    pub max_memory: Option<u64>,
    /// Which keys go first under `max_memory`. Default [`EvictionPolicy::Lru`].
    pub eviction: EvictionPolicy,
    /// Eviction drops only the engine's copy, never the data: for a shell whose backend is
    /// the source of truth (Redis), where the key stays readable from the backend. A key with
    /// an unconfirmed change of this engine's is then never evicted. Default `false`: an
    /// evicted key is removed like a delete, from the backend too.
    pub evict_copies_only: bool,
    /// Keep no write buffer: every change is final once made, and
    /// [`take_batch`](Engine::take_batch) never has one. For a shell whose backend keeps
    /// nothing (an in-memory store), where tracking pending changes would be work for nobody.
    /// Default `false`.
    pub unbuffered: bool,
}

/// How many expired keys a write reclaims on its way, at most (see `Engine::reclaim_on_write`).
pub const RECLAIM_PER_WRITE: usize = 4;

/// The default limit on a value's size: 512 MiB.
pub const DEFAULT_MAX_VALUE_SIZE: u64 = 512 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            buffer_size: 1024 * 1024,
            flush_interval_ms: 1_000,
            max_value_size: DEFAULT_MAX_VALUE_SIZE,
            min_tick_ms: 10,
            max_tick_ms: 1_000,
            sweep_budget: 1_000,
            compression: false,
            compression_threshold: 1_024,
            track_expired: false,
            track_changes: false,
            max_memory: None,
            eviction: EvictionPolicy::Lru,
            evict_copies_only: false,
            unbuffered: false,
        }
    }
}

impl Config {
    /// Checks every field's range; the error names the option.
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, reason: &str| {
            Err(Error::InvalidOption {
                option: option.into(),
                reason: reason.into(),
            })
        };
        if self.buffer_size == 0 {
            return bad("buffer_size", "must be at least 1 byte");
        }
        if self.max_memory == Some(0) {
            return bad(
                "max_memory",
                "must be at least 1 byte (leave it unset for no cap)",
            );
        }
        if self.flush_interval_ms == 0 {
            return bad("flush_interval", "must be at least 1 ms");
        }
        if self.max_value_size == 0 || self.max_value_size > u32::MAX as u64 {
            return bad("max_value_size", "must be between 1 byte and 4 GiB - 1");
        }
        if self.min_tick_ms == 0 || self.min_tick_ms > self.max_tick_ms {
            return bad("min_tick", "must be at least 1 ms and not above max_tick");
        }
        if self.sweep_budget == 0 {
            return bad("sweep_budget", "must be at least 1");
        }
        Ok(())
    }
}

/// FxHash-style mixing of `bytes`, 8 bytes at a time (the last word zero-padded, the length
/// folded in), into `seed`: cheap and unkeyed, for spreading keys where a collision costs only
/// speed — the native store's choice of shard, the deadline index's tie-break.
pub(crate) fn word_hash(seed: u64, bytes: &[u8]) -> u64 {
    const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut h = (seed ^ bytes.len() as u64).wrapping_mul(K);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
    }
    h
}

/// Checks a key: UTF-8 (guaranteed by `&str`), 1..=[`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidKey("a key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(alloc::format!(
            "a key is at most {MAX_KEY_LEN} bytes, this one has {}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a namespace or tag name: the key rules, with `""` allowed for the default namespace.
fn validate_name(what: &str, name: &str, empty_ok: bool) -> Result<()> {
    if name.is_empty() && empty_ok {
        return Ok(());
    }
    validate_key(name).map_err(|e| Error::InvalidName {
        name: name.into(),
        reason: match e {
            Error::InvalidKey(reason) => reason.replace("a key", what),
            other => alloc::format!("{other}"),
        },
    })
}

/// The latest deadline accepted: 2^53 - 1 ms after the Unix epoch (about the year 287,000),
/// the largest whole number of ms JavaScript represents exactly, so a deadline reads the same on
/// every target (`expiresAt` in JS, `expires_at` in Rust).
pub const MAX_DEADLINE_MS: u64 = (1 << 53) - 1;

/// Turns a TTL in ms into an absolute deadline.
fn deadline(now: u64, ttl_ms: u64) -> Result<u64> {
    if ttl_ms == 0 {
        return Err(Error::InvalidTtl("a TTL must be at least 1 ms".into()));
    }
    now.checked_add(ttl_ms)
        .filter(|d| *d <= MAX_DEADLINE_MS)
        .ok_or_else(|| {
            Error::InvalidTtl(alloc::format!(
                "the TTL of {ttl_ms} ms is too large: its deadline would pass 2^53 - 1 ms after \
                 the Unix epoch, the latest every target represents exactly"
            ))
        })
}

/// What happened to a key, in a [`Change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// A set, or a TTL change (`expire`, `persist`).
    Set,
    /// A delete that removed a live key.
    Delete,
    /// The key's TTL passed and expiry removed it.
    Expire,
    /// The memory cap ([`Config::max_memory`]) evicted the key.
    Evict,
}

impl ChangeOp {
    /// `"set"`, `"delete"`, `"expire"` or `"evict"`: the name JavaScript change events use.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Set => "set",
            ChangeOp::Delete => "delete",
            ChangeOp::Expire => "expire",
            ChangeOp::Evict => "evict",
        }
    }
}

/// One change to one key, as change callbacks and events report it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// The key.
    pub key: String,
    /// Its namespace (`""` is the default namespace).
    pub namespace: String,
    /// What happened.
    pub op: ChangeOp,
    /// Whether another writer of the same data made it (another tab of an IndexedDB
    /// database, see [`Engine::apply_remote`]); `false` for this engine's own calls.
    pub remote: bool,
}

/// One change of an atomic batch ([`Engine::apply`]).
#[derive(Clone, Debug, PartialEq)]
pub enum BatchOp {
    /// Store a value, as [`Engine::set`].
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// Its kind.
        kind: Kind,
        /// Time to live in ms; `None` for none.
        ttl_ms: Option<u64>,
        /// Tags (duplicates are removed).
        tags: Vec<String>,
    },
    /// Remove a key, as [`Engine::delete`].
    Delete {
        /// The key.
        key: String,
    },
}

/// Why [`Engine::apply`] refused a batch: the first op that failed its checks. Nothing changed.
#[derive(Debug)]
pub struct BatchError {
    /// The op's position in the batch (0 when the namespace itself was unknown).
    pub index: usize,
    /// What was wrong with it.
    pub error: Error,
}

impl From<BatchError> for Error {
    fn from(e: BatchError) -> Error {
        e.error
    }
}

/// Where a walk of [`Engine::next_entries`] stands. Holds a 64-bit hash of every key it
/// returned (to return none twice), so it costs 8 bytes per key returned.
pub struct EntriesCursor {
    ns: NsId,
    prefix: String,
    /// Positions below this are still to walk.
    pos: usize,
    seen: hashbrown::HashSet<u64>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl EntriesCursor {
    /// Whether the walk has looked at every position.
    pub fn is_done(&self) -> bool {
        self.pos == 0
    }
}

/// What [`Engine::check_set`] worked out for a set that may go ahead.
struct CheckedSet<'t> {
    expires_at: Option<u64>,
    tag_list: Vec<&'t str>,
    record_size: usize,
}

/// The engine. See the module docs.
pub struct Engine {
    config: Config,
    spaces: Vec<Space>,
    space_ids: HashMap<String, NsId>,
    deadlines: DeadlineIndex,
    buffer: Buffer,
    stats: Stats,
    last_sweep_more_due: bool,
    /// Changes queued for [`Engine::take_changes`].
    changes: Vec<Change>,
    /// Records a replay announced ([`Engine::reserve_for_load`]) and no namespace took yet.
    load_hint: usize,
    /// The recency clock: ticks on every touch of an entry while a memory cap is set.
    touches: u64,
    /// Picks the entries an `Lru` eviction compares.
    sampler: evict::Sampler,
    /// The oldest eviction candidates seen so far: (touched, namespace, key).
    pool: Vec<(u32, NsId, Box<str>)>,
}

impl Engine {
    /// A new, empty engine. Fails only if `config` does not validate.
    pub fn new(config: Config) -> Result<Engine> {
        config.validate()?;
        let mut engine = Engine {
            spaces: Vec::new(),
            space_ids: HashMap::new(),
            deadlines: DeadlineIndex::default(),
            buffer: Buffer::default(),
            stats: Stats {
                buffer_size: config.buffer_size as u64,
                ..Stats::default()
            },
            config,
            last_sweep_more_due: false,
            changes: Vec::new(),
            load_hint: 0,
            touches: 0,
            sampler: evict::Sampler::default(),
            pool: Vec::new(),
        };
        engine.namespace("")?;
        Ok(engine)
    }

    /// The engine's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The id of namespace `name`, creating it if needed. `""` is the default namespace (id 0);
    /// other names follow the key rules.
    pub fn namespace(&mut self, name: &str) -> Result<NsId> {
        if name.is_empty() && !self.spaces.is_empty() {
            // The default namespace, created first by `new` (the common case of a replay).
            return Ok(0);
        }
        if let Some(id) = self.space_ids.get(name) {
            return Ok(*id);
        }
        validate_name("a namespace name", name, true)?;
        let id = self.spaces.len() as NsId;
        self.spaces.push(Space::new(name));
        self.space_ids.insert(name.into(), id);
        Ok(id)
    }

    /// The name of namespace `ns`. [`Error::InvalidName`] if this engine has no such namespace.
    pub fn namespace_name(&self, ns: NsId) -> Result<&str> {
        self.check_ns(ns)?;
        Ok(&self.spaces[ns as usize].name)
    }

    /// Every call that takes an [`NsId`] checks it first: an id this engine never handed out is
    /// an error, never a panic.
    fn check_ns(&self, ns: NsId) -> Result<()> {
        if (ns as usize) < self.spaces.len() {
            Ok(())
        } else {
            Err(Error::InvalidName {
                name: alloc::format!("#{ns}"),
                reason: alloc::format!(
                    "no namespace has this id in this engine (it has {})",
                    self.spaces.len()
                ),
            })
        }
    }

    fn space(&mut self, ns: NsId) -> &mut Space {
        &mut self.spaces[ns as usize]
    }

    /// Stores `value` under `key`, replacing the whole entry — value, TTL and tags — like Redis
    /// `SET`. A live key keeps its `created_at`. `ttl_ms` of `None` means no expiry.
    ///
    /// Errors (and then nothing changed): [`Error::InvalidKey`], [`Error::ValueTooLarge`] (the
    /// value is over `max_value_size`, or the entry — namespace, key, tags and value — would
    /// encode to a record over [`record::MAX_BODY_LEN`] bytes), [`Error::InvalidTtl`],
    /// [`Error::InvalidName`] (a tag, or an unknown `ns`).
    #[allow(clippy::too_many_arguments)]
    pub fn set<S: AsRef<str>>(
        &mut self,
        ns: NsId,
        key: &str,
        value: Bytes,
        kind: Kind,
        ttl_ms: Option<u64>,
        tags: &[S],
        now: u64,
    ) -> Result<()> {
        let checked = self.check_set(ns, key, &value, ttl_ms, tags, now)?;
        self.set_checked(ns, key, value, kind, checked, now);
        Ok(())
    }

    /// Applies `ops` to namespace `ns` in order, all or nothing: every op is checked first (the
    /// checks of [`set`](Engine::set) and [`delete`](Engine::delete)), and only if all pass are
    /// they applied. A caller that holds the engine for the whole call (as every shell does)
    /// shows readers all of the batch or none of it, and since a flush takes every pending
    /// change as one [`Batch`] — one frame in a log — a crash never replays part of it.
    /// Returns how many deletes removed a live key; on error, which op was refused and why.
    pub fn apply(
        &mut self,
        ns: NsId,
        ops: &[BatchOp],
        now: u64,
    ) -> core::result::Result<usize, BatchError> {
        let checked = self.check_ops(ns, ops, now)?;
        let mut deleted = 0;
        for (op, checked) in ops.iter().zip(checked) {
            match (op, checked) {
                (
                    BatchOp::Set {
                        key, value, kind, ..
                    },
                    Some(checked),
                ) => self.set_checked(ns, key, value.clone(), *kind, checked, now),
                (BatchOp::Delete { key }, _) => {
                    // Checked above: the namespace and the key are valid.
                    deleted += usize::from(self.delete(ns, key, now).unwrap_or(false));
                }
                (BatchOp::Set { .. }, None) => unreachable!("every set was checked"),
            }
        }
        Ok(deleted)
    }

    /// The checks [`apply`](Engine::apply) runs before it changes anything, alone: `Ok` if
    /// every op of `ops` would be accepted. A shell whose keys live in several engines checks
    /// each engine's part first, then applies them, so the whole batch stays all or nothing.
    pub fn check_batch(
        &self,
        ns: NsId,
        ops: &[BatchOp],
        now: u64,
    ) -> core::result::Result<(), BatchError> {
        self.check_ops(ns, ops, now).map(|_| ())
    }

    /// Each op of `ops` checked: a set's checked form, `None` for a delete.
    fn check_ops<'t>(
        &self,
        ns: NsId,
        ops: &'t [BatchOp],
        now: u64,
    ) -> core::result::Result<Vec<Option<CheckedSet<'t>>>, BatchError> {
        self.check_ns(ns)
            .map_err(|error| BatchError { index: 0, error })?;
        let mut checked = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let check = match op {
                BatchOp::Set {
                    key,
                    value,
                    ttl_ms,
                    tags,
                    ..
                } => self.check_set(ns, key, value, *ttl_ms, tags, now).map(Some),
                BatchOp::Delete { key } => validate_key(key).map(|()| None),
            };
            checked.push(check.map_err(|error| BatchError { index, error })?);
        }
        Ok(checked)
    }

    /// Every check of a set, with nothing changed: the deadline, the sorted unique tags and the
    /// record's size.
    fn check_set<'t, S: AsRef<str>>(
        &self,
        ns: NsId,
        key: &str,
        value: &Bytes,
        ttl_ms: Option<u64>,
        tags: &'t [S],
        now: u64,
    ) -> Result<CheckedSet<'t>> {
        self.check_ns(ns)?;
        validate_key(key)?;
        if value.len() as u64 > self.config.max_value_size {
            return Err(Error::ValueTooLarge {
                size: value.len() as u64,
                max: self.config.max_value_size,
            });
        }
        let expires_at = ttl_ms.map(|ttl| deadline(now, ttl)).transpose()?;
        let mut tag_list: Vec<&str> = Vec::with_capacity(tags.len());
        for tag in tags {
            validate_name("a tag", tag.as_ref(), false)?;
            tag_list.push(tag.as_ref());
        }
        tag_list.sort_unstable();
        tag_list.dedup();
        let space = &self.spaces[ns as usize];
        let tag_lens = || tag_list.iter().map(|t| t.len());
        let body = record::put_body_len(space.name.len(), key.len(), tag_lens(), value.len());
        if body > record::MAX_BODY_LEN {
            // The record's 32-bit length fields would wrap: refuse now, never write a frame
            // that replays as something else.
            return Err(Error::ValueTooLarge {
                size: body,
                max: record::MAX_BODY_LEN,
            });
        }
        if let Some(cap) = self.config.max_memory {
            let tag_bytes: u64 = tag_lens().map(|n| n as u64 + keyspace::TAG_OVERHEAD).sum();
            let entry =
                keyspace::ENTRY_OVERHEAD + key.len() as u64 + value.len() as u64 + tag_bytes;
            if entry > cap {
                // It could never fit: refuse it rather than evict everything for nothing.
                return Err(Error::ValueTooLarge {
                    size: entry,
                    max: cap,
                });
            }
        }
        let record_size = record::put_size(space.name.len(), key.len(), tag_lens(), value.len());
        Ok(CheckedSet {
            expires_at,
            tag_list,
            record_size,
        })
    }

    /// A set that passed [`check_set`](Engine::check_set).
    fn set_checked(
        &mut self,
        ns: NsId,
        key: &str,
        value: Bytes,
        kind: Kind,
        checked: CheckedSet<'_>,
        now: u64,
    ) {
        let CheckedSet {
            expires_at,
            tag_list,
            record_size,
        } = checked;
        let compressed =
            self.config.compression && value.len() >= self.config.compression_threshold;
        let touched = self.touch();
        let space = &mut self.spaces[ns as usize];
        // One lookup: a live entry is overwritten in place; an expired one goes through lazy
        // expiry first (as any access does), then a fresh entry is inserted.
        let fresh = match space.map.get_mut(key) {
            Some(entry) if entry.is_live(now) => {
                Self::overwrite(
                    entry,
                    &mut space.tags,
                    &mut self.deadlines,
                    &mut self.stats,
                    (ns, key, now, touched),
                    (value, expires_at, tag_list, kind, compressed),
                );
                None
            }
            found => Some((value, tag_list, found.is_some())),
        };
        if let Some((value, tag_list, expired)) = fresh {
            if expired {
                self.expire_if_due(ns, key, now);
            }
            let mut entry = Entry::new(
                value,
                now,
                now,
                expires_at,
                tag_list.into_iter().map(Into::into).collect(),
                kind,
                compressed,
            );
            entry.touched = touched;
            self.insert_entry(ns, key, entry);
        }
        if !self.config.unbuffered {
            let space = &mut self.spaces[ns as usize];
            self.buffer.mark(&mut space.pending, key, record_size, now);
        }
        self.stats.sets += 1;
        self.note(ns, key, ChangeOp::Set);
        self.reclaim_on_write(now);
        self.evict_to_cap(Some((ns, key)), now);
    }

    /// The next tick of the recency clock, stamped on an entry a call touches; 0 without a
    /// memory cap (nothing reads it then, and a get stays as cheap as without eviction).
    fn touch(&mut self) -> u32 {
        if self.config.max_memory.is_none() {
            return 0;
        }
        self.touches += 1;
        self.touches as u32
    }

    /// Evicts keys until the keyspace fits [`Config::max_memory`] again, never `protect` (the
    /// key a write just stored). Each eviction is O(1) (`Lru`: a few samples) or O(log n)
    /// (`NearestExpiry`), and a key is evicted once: O(1) amortised per write.
    fn evict_to_cap(&mut self, protect: Option<(NsId, &str)>, now: u64) {
        let Some(cap) = self.config.max_memory else {
            return;
        };
        while self.stats.memory_bytes > cap {
            let victim = match self.config.eviction {
                EvictionPolicy::NearestExpiry => self
                    .nearest_expiry_victim(protect)
                    .or_else(|| self.lru_victim(protect)),
                EvictionPolicy::Lru => self.lru_victim(protect),
            };
            let Some((ns, key)) = victim else {
                // Everything left is protected (the key just written, or changes a
                // source-of-truth backend has not confirmed): the next write tries again.
                return;
            };
            self.evict(ns, &key, now);
        }
    }

    /// Whether eviction may take `key`.
    fn evictable(&self, ns: NsId, key: &str, protect: Option<(NsId, &str)>) -> bool {
        protect != Some((ns, key)) && !(self.config.evict_copies_only && self.is_local(ns, key))
    }

    /// The key with the nearest deadline that may be evicted, if any.
    fn nearest_expiry_victim(&self, protect: Option<(NsId, &str)>) -> Option<(NsId, String)> {
        self.deadlines
            .iter()
            .take(evict::MAX_LOOKS)
            .find(|(_, ns, key)| self.evictable(*ns, key, protect))
            .map(|(_, ns, key)| (ns, String::from(key)))
    }

    /// The least recently touched key that may be evicted, approximately: a few entries
    /// sampled at random join a small pool of the oldest candidates seen so far (as Redis's
    /// eviction pool), and the oldest of the pool that is still as it was goes.
    fn lru_victim(&mut self, protect: Option<(NsId, &str)>) -> Option<(NsId, String)> {
        let total: usize = self.spaces.iter().map(|s| s.map.len()).sum();
        if total == 0 {
            return None;
        }
        let clock = self.touches as u32;
        let age = |touched: u32| clock.wrapping_sub(touched);
        let mut kept = 0;
        for _ in 0..evict::MAX_LOOKS {
            let mut at = self.sampler.below(total);
            let mut ns = 0;
            while at >= self.spaces[ns].map.len() {
                at -= self.spaces[ns].map.len();
                ns += 1;
            }
            let (key, entry) = self.spaces[ns].map.at(at);
            if !self.evictable(ns as NsId, key, protect) {
                continue;
            }
            kept += 1;
            let touched = entry.touched;
            let pool = &mut self.pool;
            if !pool.iter().any(|c| c.1 == ns as NsId && *c.2 == *key) {
                if pool.len() < evict::POOL_SIZE {
                    pool.push((touched, ns as NsId, key.into()));
                } else if let Some(youngest) = (0..pool.len()).min_by_key(|&i| age(pool[i].0)) {
                    if age(touched) > age(pool[youngest].0) {
                        pool[youngest] = (touched, ns as NsId, key.into());
                    }
                }
            }
            if kept == evict::LRU_SAMPLES {
                break;
            }
        }
        // The oldest candidate that still exists untouched since it was seen.
        while let Some(oldest) = (0..self.pool.len()).max_by_key(|&i| age(self.pool[i].0)) {
            let (touched, ns, key) = self.pool.swap_remove(oldest);
            let current = self.spaces[ns as usize].map.get(&key).map(|e| e.touched);
            if current == Some(touched) && self.evictable(ns, &key, protect) {
                return Some((ns, key.into()));
            }
        }
        None
    }

    /// Removes `key` for the memory cap: like a delete (pending for the backend), or with
    /// [`Config::evict_copies_only`] only from memory. Counted and reported as an eviction.
    fn evict(&mut self, ns: NsId, key: &str, now: u64) {
        if self.remove_entry(ns, key).is_none() {
            return;
        }
        if !self.config.evict_copies_only {
            self.mark(ns, key, now);
        }
        self.stats.evictions += 1;
        self.note(ns, key, ChangeOp::Evict);
    }

    /// Replaces a live entry's value, TTL and tags, keeping its key allocation and
    /// `created_at`; the deadline and tag indexes change only where they differ — the same end
    /// state as remove + insert.
    fn overwrite(
        entry: &mut Entry,
        tag_index: &mut tags::TagIndex,
        deadlines: &mut DeadlineIndex,
        stats: &mut Stats,
        (ns, key, now, touched): (NsId, &str, u64, u32),
        (value, expires_at, tag_list, kind, compressed): (
            Bytes,
            Option<u64>,
            Vec<&str>,
            Kind,
            bool,
        ),
    ) {
        stats.value_bytes = stats.value_bytes - entry.value.len() as u64 + value.len() as u64;
        stats.memory_bytes -= entry.memory_bytes(key);
        if entry.expires_at() != expires_at {
            if let Some(d) = entry.expires_at() {
                deadlines.remove(d, ns, key);
            }
            if let Some(d) = expires_at {
                deadlines.insert(d, ns, key);
            }
        }
        if entry.tags.len() != tag_list.len()
            || entry.tags.iter().zip(&tag_list).any(|(a, b)| **a != **b)
        {
            let tags: Box<[Box<str>]> = tag_list.into_iter().map(Into::into).collect();
            tag_index.remove(key, &entry.tags);
            tag_index.add(key, &tags);
            entry.tags = tags;
        }
        entry.value = value;
        entry.updated_at = now;
        entry.set_expires_at(expires_at);
        entry.kind = kind;
        entry.compressed = compressed;
        entry.touched = touched;
        stats.memory_bytes += entry.memory_bytes(key);
    }

    /// The value and kind under `key`, if it is live. Counts a hit or a miss.
    pub fn get(&mut self, ns: NsId, key: &str, now: u64) -> Result<Option<(Bytes, Kind)>> {
        self.read(ns, key, now, |e| (e.value.clone(), e.kind))
    }

    /// [`get`](Engine::get) for a shell whose clock read is not free: `now` is called only
    /// when the answer depends on the time (the entry has a TTL), at most once. Same answer,
    /// same counters and the same lazy expiry as `get(ns, key, now())`.
    pub fn get_lazy(
        &mut self,
        ns: NsId,
        key: &str,
        now: &mut dyn FnMut() -> u64,
    ) -> Result<Option<(Bytes, Kind)>> {
        let mut at = None;
        let mut now = || *at.get_or_insert_with(&mut *now);
        if let Some(hit) = self.get_if_held(ns, key, &mut now)? {
            return Ok(Some(hit));
        }
        // A miss: nothing held, or a copy whose deadline passed (removed now: lazy expiry).
        if self.spaces[ns as usize].map.get(key).is_some() {
            self.expire_if_due(ns, key, now());
        }
        self.stats.gets += 1;
        self.stats.misses += 1;
        Ok(None)
    }

    /// [`get_lazy`](Engine::get_lazy)'s hit alone: the value if a live copy of `key` is held
    /// (counted as a get and a hit), else `None` with nothing counted or changed — for a
    /// shell that asks its source-of-truth backend on a miss and then calls `get_lazy`.
    pub fn get_if_held(
        &mut self,
        ns: NsId,
        key: &str,
        now: &mut dyn FnMut() -> u64,
    ) -> Result<Option<(Bytes, Kind)>> {
        self.check_ns(ns)?;
        validate_key(key)?;
        let capped = self.config.max_memory.is_some();
        let Some(entry) = self.spaces[ns as usize].map.get_mut(key) else {
            return Ok(None);
        };
        if entry.expires_at().is_some_and(|deadline| now() >= deadline) {
            return Ok(None);
        }
        if capped {
            // The recency clock, inlined: the entry is borrowed.
            self.touches += 1;
            entry.touched = self.touches as u32;
        }
        let answer = (entry.value.clone(), entry.kind);
        self.stats.gets += 1;
        self.stats.hits += 1;
        Ok(Some(answer))
    }

    /// The value and metadata under `key`, if it is live. Counts a hit or a miss.
    ///
    /// The metadata's `stored_size` is the value's logical size here: measuring a compressed
    /// value's stored size runs LZ4 over all of it, so the engine leaves that to the caller,
    /// outside its lock ([`Metadata::measure_stored_size`]).
    pub fn get_with_metadata(
        &mut self,
        ns: NsId,
        key: &str,
        now: u64,
    ) -> Result<Option<(Bytes, Metadata)>> {
        self.read(ns, key, now, |e| (e.value.clone(), e.metadata()))
    }

    /// Looks `key` up once: a live entry is answered through `f`; an expired one is removed
    /// (lazy expiry). Counts a hit or a miss.
    fn read<R>(
        &mut self,
        ns: NsId,
        key: &str,
        now: u64,
        f: impl FnOnce(&Entry) -> R,
    ) -> Result<Option<R>> {
        self.check_ns(ns)?;
        validate_key(key)?;
        self.stats.gets += 1;
        let touched = self.touch();
        match self.spaces[ns as usize].map.get_mut(key) {
            Some(entry) if entry.is_live(now) => {
                if touched != 0 {
                    entry.touched = touched;
                }
                let answer = f(entry);
                self.stats.hits += 1;
                Ok(Some(answer))
            }
            Some(_) => {
                self.expire_if_due(ns, key, now);
                self.stats.misses += 1;
                Ok(None)
            }
            None => {
                self.stats.misses += 1;
                Ok(None)
            }
        }
    }

    /// Whether `key` is live.
    pub fn contains(&mut self, ns: NsId, key: &str, now: u64) -> Result<bool> {
        self.check_ns(ns)?;
        validate_key(key)?;
        match self.spaces[ns as usize].map.get(key) {
            Some(entry) if entry.is_live(now) => Ok(true),
            Some(_) => {
                self.expire_if_due(ns, key, now);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    /// Removes `key`; true if it was live.
    pub fn delete(&mut self, ns: NsId, key: &str, now: u64) -> Result<bool> {
        self.check_ns(ns)?;
        validate_key(key)?;
        self.expire_if_due(ns, key, now);
        if self.remove_entry(ns, key).is_none() {
            return Ok(false);
        }
        self.mark(ns, key, now);
        self.stats.deletes += 1;
        self.note(ns, key, ChangeOp::Delete);
        self.reclaim_on_write(now);
        Ok(true)
    }

    /// Time left before `key` expires, in ms; `None` if the key is not live or has no TTL.
    pub fn ttl(&mut self, ns: NsId, key: &str, now: u64) -> Result<Option<u64>> {
        self.check_ns(ns)?;
        validate_key(key)?;
        self.expire_if_due(ns, key, now);
        Ok(self.spaces[ns as usize]
            .map
            .get(key)
            .and_then(|e| e.expires_at())
            .map(|d| d - now))
    }

    /// Gives a live `key` a TTL of `ttl_ms`, keeping its value and tags; true if the key was live.
    pub fn expire(&mut self, ns: NsId, key: &str, ttl_ms: u64, now: u64) -> Result<bool> {
        self.check_ns(ns)?;
        validate_key(key)?;
        let new_deadline = deadline(now, ttl_ms)?;
        self.set_deadline(ns, key, Some(new_deadline), now)
            .map(|changed| {
                if changed.is_some() {
                    self.stats.expires += 1;
                }
                changed.is_some()
            })
    }

    /// Removes the TTL of a live `key`; true if the key was live (with or without a TTL).
    pub fn persist(&mut self, ns: NsId, key: &str, now: u64) -> Result<bool> {
        self.check_ns(ns)?;
        validate_key(key)?;
        self.set_deadline(ns, key, None, now).map(|old| match old {
            Some(Some(_)) => {
                self.stats.persists += 1;
                true
            }
            Some(None) => true,
            None => false,
        })
    }

    /// Changes the deadline of a live key. Returns `None` if the key is not live, else the old
    /// deadline. Marks the key pending only if the deadline changed.
    fn set_deadline(
        &mut self,
        ns: NsId,
        key: &str,
        new: Option<u64>,
        now: u64,
    ) -> Result<Option<Option<u64>>> {
        self.expire_if_due(ns, key, now);
        let Some(entry) = self.spaces[ns as usize].map.get_mut(key) else {
            return Ok(None);
        };
        let old = entry.expires_at();
        if old == new {
            return Ok(Some(old));
        }
        entry.set_expires_at(new);
        entry.updated_at = now;
        if let Some(d) = old {
            self.deadlines.remove(d, ns, key);
        }
        if let Some(d) = new {
            self.deadlines.insert(d, ns, key);
        }
        self.mark(ns, key, now);
        self.note(ns, key, ChangeOp::Set);
        Ok(Some(old))
    }

    /// Live keys starting with `prefix`, sorted; `""` lists all.
    pub fn keys(&self, ns: NsId, prefix: &str, now: u64) -> Result<Vec<String>> {
        self.check_ns(ns)?;
        let mut keys: Vec<String> = self.spaces[ns as usize]
            .map
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && e.is_live(now))
            .map(|(k, _)| String::from(k))
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// A walk over the live entries of namespace `ns` whose key starts with `prefix`, taken
    /// a few at a time with [`next_entries`](Engine::next_entries) — so a shell holds its lock
    /// only for one chunk at a time, and writes go on between chunks.
    pub fn entries_cursor(&self, ns: NsId, prefix: &str) -> Result<EntriesCursor> {
        self.check_ns(ns)?;
        Ok(EntriesCursor {
            ns,
            prefix: String::from(prefix),
            pos: self.spaces[ns as usize].map.len(),
            seen: hashbrown::HashSet::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        })
    }

    /// The next live entries of `cursor`'s walk: up to `max` positions of the keyspace are
    /// looked at, so a call costs O(max) whatever the prefix. An empty answer with
    /// [`EntriesCursor::is_done`] means the walk is over (an empty answer before that only
    /// means no key in that stretch matched).
    ///
    /// Guarantees, with writes between calls: a key live for the whole walk is returned
    /// exactly once; a key set or deleted during the walk may or may not be. Order is not
    /// sorted. Reading is not a use (recency and stats are untouched).
    pub fn next_entries(
        &self,
        cursor: &mut EntriesCursor,
        max: usize,
        now: u64,
    ) -> Result<Vec<(String, Bytes, Metadata)>> {
        use core::hash::BuildHasher;
        self.check_ns(cursor.ns)?;
        let map = &self.spaces[cursor.ns as usize].map;
        // The array only shrinks by moving its last pair into a hole: walking from the end,
        // a pair moved from the walked part into the rest is met twice (and skipped the second
        // time); none is ever moved past the walk.
        cursor.pos = cursor.pos.min(map.len());
        let mut out = Vec::new();
        for _ in 0..max.max(1) {
            if cursor.pos == 0 {
                break;
            }
            cursor.pos -= 1;
            let (key, entry) = map.at(cursor.pos);
            if !key.starts_with(&*cursor.prefix) || !entry.is_live(now) {
                continue;
            }
            if cursor.seen.insert(cursor.hasher.hash_one(key)) {
                out.push((String::from(key), entry.value.clone(), entry.metadata()));
            }
        }
        Ok(out)
    }

    /// Live keys of namespace `ns`: the keys held minus those whose deadline has passed and
    /// that expiry has not removed yet. O(expired-but-held keys).
    pub fn len(&self, ns: NsId, now: u64) -> Result<usize> {
        self.check_ns(ns)?;
        let expired = self
            .deadlines
            .iter()
            .take_while(|(d, _, _)| *d <= now)
            .filter(|(_, n, _)| *n == ns)
            .count();
        Ok(self.spaces[ns as usize].map.len() - expired)
    }

    /// Deletes every key of namespace `ns`, as one change: each becomes a pending delete in
    /// the same batch, so it reaches the backend whole at the next flush (a crash replays
    /// all of it or none of it). Returns how many live keys it removed.
    pub fn clear(&mut self, ns: NsId, now: u64) -> Result<usize> {
        self.check_ns(ns)?;
        let keys: Vec<String> = self.spaces[ns as usize]
            .map
            .iter()
            .map(|(k, _)| String::from(k))
            .collect();
        let mut removed = 0;
        for key in keys {
            removed += usize::from(self.delete(ns, &key, now)?);
        }
        Ok(removed)
    }

    /// For a source-of-truth shell's `clear`: a pending delete (and a `Delete` change) for each
    /// of `keys` that this engine does not hold — keys the backend holds and this engine never
    /// fetched — so they leave the backend in the same batch as the held ones. Returns how
    /// many it marked. Keys this engine holds are left to [`clear`](Engine::clear).
    pub fn delete_unheld(&mut self, ns: NsId, keys: &[String], now: u64) -> Result<usize> {
        self.check_ns(ns)?;
        let mut marked = 0;
        for key in keys {
            validate_key(key)?;
            if self.spaces[ns as usize].map.get(key).is_some() || self.is_pending(ns, key) {
                continue;
            }
            self.mark(ns, key, now);
            self.stats.deletes += 1;
            self.note(ns, key, ChangeOp::Delete);
            marked += 1;
        }
        Ok(marked)
    }

    /// Live keys that carry every tag in `tags`, sorted. No tags match nothing.
    pub fn query_by_tags<S: AsRef<str>>(
        &self,
        ns: NsId,
        tags: &[S],
        now: u64,
    ) -> Result<Vec<String>> {
        self.check_ns(ns)?;
        let tags: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
        let space = &self.spaces[ns as usize];
        Ok(space
            .tags
            .query(&tags)
            .into_iter()
            .filter(|k| space.map.get(k).is_some_and(|e| e.is_live(now)))
            .map(String::from)
            .collect())
    }

    /// Every tag carried by a live key, with how many live keys carry it, sorted by tag.
    pub fn list_tags(&self, ns: NsId, now: u64) -> Result<Vec<(String, usize)>> {
        self.check_ns(ns)?;
        let space = &self.spaces[ns as usize];
        Ok(space
            .tags
            .iter()
            .map(|(tag, keys)| {
                let live = keys
                    .iter()
                    .filter(|k| space.map.get(k).is_some_and(|e| e.is_live(now)))
                    .count();
                (String::from(tag), live)
            })
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    /// Removes up to `budget` keys whose deadline is at or before `now`, earliest first. Costs
    /// O(removed · log n), independent of how many keys are live.
    pub fn sweep(&mut self, now: u64, budget: usize) -> SweepReport {
        let expired = self.remove_due(now, budget);
        self.stats.sweeps += 1;
        self.stats.expired = self.stats.expired_lazy + self.stats.expired_active;
        let next_deadline = self.deadlines.refresh();
        self.last_sweep_more_due = next_deadline.is_some_and(|d| d <= now);
        SweepReport {
            expired,
            more_due: self.last_sweep_more_due,
            next_deadline,
        }
    }

    /// Removes up to `budget` keys whose deadline is at or before `now`, earliest first.
    fn remove_due(&mut self, now: u64, budget: usize) -> usize {
        let mut expired = 0;
        while expired < budget {
            let Some((_, ns, key)) = self.deadlines.pop_due(now) else {
                break;
            };
            let removed = self.spaces[ns as usize].map.remove(&key);
            if let Some(entry) = removed {
                self.forget_entry(ns, &key, &entry);
                self.after_expiry(ns, &key);
                self.stats.expired_active += 1;
                expired += 1;
            }
        }
        expired
    }

    /// Every write reclaims up to [`RECLAIM_PER_WRITE`] expired keys on its way, when any are
    /// due: so memory held by expired keys is given back on every target even when nothing
    /// ticks (a native store without a syncer, a JS realm whose timers are throttled), at a
    /// bounded cost per write — one look at the earliest deadline when nothing is due.
    fn reclaim_on_write(&mut self, now: u64) {
        // The bound is one field; the earliest deadline itself is looked up only when the
        // bound says something may be due.
        if self.deadlines.bound() <= now && self.deadlines.refresh().is_some_and(|d| d <= now) {
            self.remove_due(now, RECLAIM_PER_WRITE);
            self.stats.expired = self.stats.expired_lazy + self.stats.expired_active;
        }
    }

    /// No key of this engine expires before this time, ms since the Unix epoch (`u64::MAX`:
    /// no key has a TTL): a lower bound, exact after each [`sweep`](Engine::sweep). A shell
    /// with several engines skips a sweep of one whose bound is still ahead, without locking
    /// it.
    pub fn due_bound(&self) -> u64 {
        self.deadlines.bound()
    }

    /// How long the shell should wait before its next tick (sweep and flush check), in ms:
    /// the next deadline or due flush, clamped to `[min_tick_ms, max_tick_ms]`, and the minimum
    /// while the last sweep ran out of budget.
    pub fn next_tick_ms(&mut self, now: u64) -> u64 {
        let next_flush_at = self
            .buffer
            .oldest_at
            .map(|t| t + self.config.flush_interval_ms);
        let delay = next_tick_delay(
            now,
            self.last_sweep_more_due,
            self.deadlines.next_deadline(),
            next_flush_at,
            self.config.min_tick_ms,
            self.config.max_tick_ms,
        );
        self.stats.tick_interval_ms = delay;
        delay
    }

    /// Whether the shell should flush now: the buffer reached `buffer_size`, or the oldest
    /// pending change is `flush_interval_ms` old. Never true while a batch is in flight.
    pub fn flush_due(&self, now: u64) -> bool {
        self.flush_due_lazy(&mut || now)
    }

    /// [`flush_due`](Engine::flush_due), calling `now` only when the answer depends on the
    /// time (something is pending, no batch is in flight, and the buffer is not full).
    pub fn flush_due_lazy(&self, now: &mut dyn FnMut() -> u64) -> bool {
        if self.buffer.in_flight.is_some() || self.buffer.pending_keys == 0 {
            return false;
        }
        self.buffer.pending_bytes >= self.config.buffer_size
            || self
                .buffer
                .oldest_at
                .is_some_and(|t| now().saturating_sub(t) >= self.config.flush_interval_ms)
    }

    /// Whether anything is pending or in flight.
    pub fn has_unflushed(&self) -> bool {
        self.buffer.pending_keys > 0 || self.buffer.in_flight.is_some()
    }

    /// Takes every pending change as one batch, in change order. Returns `None` when nothing is
    /// pending or a batch is already in flight (one at a time, so batches land in order).
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.buffer.in_flight.is_some() || self.buffer.pending_keys == 0 {
            return None;
        }
        let mut keys = Vec::with_capacity(self.buffer.pending_keys);
        for (ns, space) in self.spaces.iter_mut().enumerate() {
            for (key, dirty) in space.pending.dirty.drain() {
                keys.push((ns as NsId, key, dirty.seq));
            }
        }
        sort_by_seq(&mut keys);
        let records: Vec<Record> = keys
            .iter()
            .map(|(ns, key, _)| self.state(*ns, key))
            .collect();
        let bytes = self.buffer.pending_bytes;
        debug_assert_eq!(bytes, records.iter().map(Record::size).sum::<usize>());
        self.buffer.next_batch_id += 1;
        let id = self.buffer.next_batch_id;
        self.buffer.in_flight = Some(InFlight {
            id,
            keys,
            bytes,
            oldest_at: self.buffer.oldest_at.take().unwrap_or(0),
        });
        self.buffer.pending_bytes = 0;
        self.buffer.pending_keys = 0;
        Some(Batch { id, records, bytes })
    }

    /// The backend confirmed batch `id`: its bytes leave the buffer. False if `id` is not the
    /// batch in flight (nothing changes then).
    pub fn ack(&mut self, id: u64) -> bool {
        match self.buffer.in_flight.take_if(|f| f.id == id) {
            Some(flight) => {
                self.stats.backend_down = false;
                self.stats.flushes += 1;
                self.stats.records_flushed += flight.keys.len() as u64;
                true
            }
            None => false,
        }
    }

    /// The backend failed batch `id`: every key in it becomes pending again unless a newer change
    /// already made it pending, so nothing is lost and nothing newer is overwritten. `error` is
    /// kept in stats. False if `id` is not the batch in flight.
    pub fn fail(&mut self, id: u64, error: &str) -> bool {
        let Some(flight) = self.buffer.in_flight.take_if(|f| f.id == id) else {
            return false;
        };
        for (ns, key, seq) in flight.keys {
            let bytes = self.state_size(ns, &key);
            let space = &mut self.spaces[ns as usize];
            self.buffer.give_back(&mut space.pending, key, seq, bytes);
        }
        if self.buffer.pending_keys > 0 {
            let oldest = self
                .buffer
                .oldest_at
                .map_or(flight.oldest_at, |t| t.min(flight.oldest_at));
            self.buffer.oldest_at = Some(oldest);
        }
        self.stats.flush_failures += 1;
        self.stats.backend_down = true;
        self.stats.last_error = Some(error.into());
        true
    }

    /// Records an error a shell met outside a batch (for stats and `last_error`).
    pub fn note_error(&mut self, error: &str) {
        self.stats.last_error = Some(error.into());
    }

    /// The pending changes as the records the next batch would hold, in change order (for
    /// inspection and tests; the batch in flight is not included).
    pub fn pending_records(&self) -> Vec<Record> {
        let mut keys: Vec<(u64, NsId, &str)> = Vec::new();
        for (ns, space) in self.spaces.iter().enumerate() {
            keys.extend(
                space
                    .pending
                    .dirty
                    .iter()
                    .map(|(k, d)| (d.seq, ns as NsId, &**k)),
            );
        }
        keys.sort_unstable();
        keys.into_iter()
            .map(|(_, ns, key)| self.state(ns, key))
            .collect()
    }

    /// Bytes of pending changes, not counting the batch in flight.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.pending_bytes
    }

    /// A hint before a replay: about `records` records will be [`load`](Self::load)ed. The
    /// first namespace that receives a live one makes room for all of them at once, instead of
    /// growing its table step by step (each step rehashes every entry so far);
    /// [`finish_load`](Self::finish_load) gives back room that turned out not to be needed. A
    /// wrong figure costs only time or memory, never correctness.
    pub fn reserve_for_load(&mut self, records: usize) {
        self.load_hint = records;
    }

    /// Ends a replay: a namespace whose table [`reserve_for_load`](Self::reserve_for_load)
    /// made larger than growing it one entry at a time would have is shrunk to fit.
    pub fn finish_load(&mut self) {
        self.load_hint = 0;
        // A replay larger than the memory cap: what does not fit is evicted (deleted from the
        // backend at the next flush, like any eviction).
        self.evict_to_cap(None, 0);
        for space in &mut self.spaces {
            // Grown one entry at a time, a table is at most about twice as large as its
            // entries; more than that is room a hint reserved for records that were dead.
            if space.map.capacity() > 2 * space.map.len() + 16 {
                space.map.shrink_to_fit();
            }
        }
    }

    /// Applies a record replayed from a backend at open. It does not become pending. A Put whose
    /// deadline has passed removes the key (it shadows any older record of that key).
    pub fn load(&mut self, record: Record, now: u64) -> Result<()> {
        let ns = self.namespace(record.namespace())?;
        match record {
            Record::Put(p) => {
                if p.expires_at.is_some_and(|d| now >= d) {
                    self.remove_entry(ns, &p.key);
                    return Ok(());
                }
                let fetched = (self.config.evict_copies_only && self.config.max_memory.is_some())
                    .then(|| p.key.clone());
                if self.load_hint > 0 {
                    let map = &mut self.spaces[ns as usize].map;
                    if map.is_empty() {
                        // Only a hint: if the room cannot be had, the table grows as usual.
                        map.try_reserve(self.load_hint);
                    }
                    self.load_hint = 0;
                }
                let mut entry = Entry::new(
                    p.value,
                    p.created_at,
                    p.updated_at,
                    p.expires_at,
                    p.tags.into_iter().map(String::into_boxed_str).collect(),
                    p.kind,
                    p.compressed,
                );
                entry.touched = self.touch();
                // One hash lookup per record, and the record's own key allocation becomes the
                // map's key. Same end state as remove + insert: the old entry leaves the
                // indexes before the new one enters them.
                let Engine {
                    spaces,
                    deadlines,
                    stats,
                    ..
                } = self;
                let Space { map, tags, .. } = &mut spaces[ns as usize];
                match map.find(&p.key) {
                    Ok(pos) => {
                        let (key, old) = map.at(pos);
                        if let Some(d) = old.expires_at() {
                            deadlines.remove(d, ns, key);
                        }
                        stats.value_bytes -= old.value.len() as u64;
                        stats.memory_bytes -= old.memory_bytes(key);
                        tags.remove(key, &old.tags);
                        index(deadlines, stats, tags, ns, key, &entry);
                        map.replace_at(pos, entry);
                    }
                    Err(hash) => {
                        index(deadlines, stats, tags, ns, &p.key, &entry);
                        map.insert_new(hash, p.key.into_boxed_str(), entry);
                    }
                }
                if let Some(key) = fetched {
                    // A copy fetched from a source-of-truth backend counts against the cap.
                    self.evict_to_cap(Some((ns, &key)), now);
                }
            }
            Record::Delete { key, .. } => {
                self.remove_entry(ns, &key);
            }
        }
        Ok(())
    }

    /// Whether `key` has a change of this engine's that its backend has not confirmed yet
    /// (pending, or in the batch in flight). Such a key is this engine's to decide: the
    /// change will reach the backend after anything another writer committed before.
    pub fn is_local(&self, ns: NsId, key: &str) -> bool {
        let Some(space) = self.spaces.get(ns as usize) else {
            return false;
        };
        space.pending.dirty.contains_key(key)
            || self
                .buffer
                .in_flight
                .as_ref()
                .is_some_and(|f| f.keys.iter().any(|(n, k, _)| *n == ns && **k == *key))
    }

    /// The id of namespace `name` if this engine has it; unlike
    /// [`namespace`](Self::namespace), never creates one.
    pub fn find_namespace(&self, name: &str) -> Option<NsId> {
        if name.is_empty() {
            return (!self.spaces.is_empty()).then_some(0);
        }
        self.space_ids.get(name).copied()
    }

    /// Whether `key` has a pending change: one not yet taken into a batch. Such a change
    /// reaches the backend after anything another writer committed so far, so it wins.
    pub fn is_pending(&self, ns: NsId, key: &str) -> bool {
        self.spaces
            .get(ns as usize)
            .is_some_and(|space| space.pending.dirty.contains_key(key))
    }

    /// The keys of the batch in flight, if any, as (namespace, key).
    pub fn in_flight_keys(&self) -> Vec<(NsId, String)> {
        self.buffer.in_flight.as_ref().map_or_else(Vec::new, |f| {
            f.keys
                .iter()
                .map(|(ns, key, _)| (*ns, String::from(&**key)))
                .collect()
        })
    }

    /// The keys of namespace `ns` with a change the backend has not confirmed (pending or in
    /// flight): for these, the engine's state is the one to show, whatever the backend holds.
    pub fn unconfirmed_keys(&self, ns: NsId) -> Result<Vec<String>> {
        self.check_ns(ns)?;
        let mut keys: Vec<String> = self.spaces[ns as usize]
            .pending
            .dirty
            .keys()
            .map(|k| String::from(&**k))
            .collect();
        if let Some(flight) = &self.buffer.in_flight {
            keys.extend(
                flight
                    .keys
                    .iter()
                    .filter(|(n, _, _)| *n == ns)
                    .map(|(_, k, _)| String::from(&**k)),
            );
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Drops the copy of `key` held for a source-of-truth backend (another writer changed it),
    /// unless the key [`is_local`](Self::is_local). Nothing becomes pending and no change is
    /// reported. Returns whether a copy was dropped.
    pub fn forget(&mut self, ns: NsId, key: &str) -> bool {
        if (ns as usize) >= self.spaces.len() || self.is_local(ns, key) {
            return false;
        }
        self.remove_entry(ns, key).is_some()
    }

    /// [`forget`](Self::forget) for every key that is not local: what a source-of-truth
    /// store does when it may have missed other writers' changes. Returns the copies dropped.
    pub fn forget_all(&mut self) -> usize {
        let mut doomed = Vec::new();
        for (ns, space) in self.spaces.iter().enumerate() {
            for (key, _) in space.map.iter() {
                if !self.is_local(ns as NsId, key) {
                    doomed.push((ns as NsId, String::from(key)));
                }
            }
        }
        for (ns, key) in &doomed {
            self.remove_entry(*ns, key);
        }
        doomed.len()
    }

    /// Whether a copy of `key` is held, live or expired: `Some(deadline)` if so (without
    /// touching stats or recency).
    pub fn held_deadline(&self, ns: NsId, key: &str) -> Option<Option<u64>> {
        self.spaces
            .get(ns as usize)?
            .map
            .get(key)
            .map(|entry| entry.expires_at())
    }

    /// Records whether the last call a shell made to its backend (a flush, or a read of a
    /// source-of-truth backend) succeeded: [`Stats::backend_down`] shows it, and a failure's
    /// message becomes [`Stats::last_error`].
    pub fn note_backend(&mut self, result: core::result::Result<(), &str>) {
        match result {
            Ok(()) => self.stats.backend_down = false,
            Err(error) => {
                self.stats.backend_down = true;
                self.stats.last_error = Some(error.into());
            }
        }
    }

    /// Applies a record another writer committed to the shared backend (another tab), as read
    /// back from it: the key takes that state without becoming pending — unless the key
    /// [`is_local`](Self::is_local), whose own change wins once it lands. Returns the change
    /// it made (`remote: true`), or `None` when nothing changed (a local key, the same state).
    pub fn apply_remote(&mut self, record: Record, now: u64) -> Result<Option<Change>> {
        let ns = self.namespace(record.namespace())?;
        let key = String::from(record.key());
        if self.is_local(ns, &key) {
            return Ok(None);
        }
        let current = self.spaces[ns as usize]
            .map
            .get(&key)
            .filter(|e| e.is_live(now))
            .map(|e| put_record(&self.spaces[ns as usize].name, &key, e));
        let op = match &record {
            Record::Put(p) if current.as_ref().is_some_and(|c| same_put(c, p)) => return Ok(None),
            Record::Put(p) if p.expires_at.is_some_and(|d| d <= now) => {
                if current.is_none() {
                    return Ok(None);
                }
                ChangeOp::Expire
            }
            Record::Put(_) => ChangeOp::Set,
            Record::Delete { .. } if current.is_none() => return Ok(None),
            Record::Delete { .. } => ChangeOp::Delete,
        };
        self.load(record, now)?;
        Ok(Some(Change {
            key,
            namespace: String::from(&*self.spaces[ns as usize].name),
            op,
            remote: true,
        }))
    }

    /// Every live entry as a Put record, namespaces in creation order and keys sorted: what a
    /// compaction writes, or a dump prints.
    pub fn snapshot(&self, now: u64) -> Vec<Record> {
        let mut out = Vec::new();
        for space in &self.spaces {
            let mut keys: Vec<&str> = space
                .map
                .iter()
                .filter(|(_, e)| e.is_live(now))
                .map(|(k, _)| k)
                .collect();
            keys.sort_unstable();
            for key in keys {
                let Some(entry) = space.map.get(key) else {
                    continue;
                };
                out.push(Record::Put(put_record(&space.name, key, entry)));
            }
        }
        out
    }

    /// What a compaction must write: [`snapshot`](Self::snapshot) — every live entry as a Put,
    /// pending changes included — plus a Delete for every key whose pending change is a
    /// removal. Without those Deletes, a crash after the compaction's output is durable but
    /// before the pending delete is flushed would let an older Put of the key, left in a
    /// segment the compaction had not deleted yet, come back — and the output would hold the
    /// sets of an unflushed batch without its deletes.
    pub fn compaction_snapshot(&self, now: u64) -> Vec<Record> {
        let mut out = self.snapshot(now);
        for space in &self.spaces {
            let mut deleted: Vec<&str> = space
                .pending
                .dirty
                .keys()
                .map(|k| &**k)
                .filter(|k| !space.map.get(k).is_some_and(|e| e.is_live(now)))
                .collect();
            deleted.sort_unstable();
            out.extend(deleted.into_iter().map(|key| Record::Delete {
                namespace: String::from(&*space.name),
                key: String::from(key),
            }));
        }
        out
    }

    /// The changes made since the last call, in the order they were made: every set, delete
    /// and expiration when `track_changes` is on; only expirations when just `track_expired`
    /// is. A replay at open is not a change.
    pub fn take_changes(&mut self) -> Vec<Change> {
        core::mem::take(&mut self.changes)
    }

    /// Turns the queueing of expirations on or off (for expiry callbacks and events).
    pub fn set_track_expired(&mut self, on: bool) {
        self.config.track_expired = on;
        let all = self.config.track_changes;
        self.changes
            .retain(|c| all || on || c.op != ChangeOp::Expire);
    }

    /// Turns the queueing of every change on or off (for change callbacks and events).
    pub fn set_track_changes(&mut self, on: bool) {
        self.config.track_changes = on;
        if !on {
            let expired = self.config.track_expired;
            self.changes.retain(|c| expired && c.op == ChangeOp::Expire);
        }
    }

    /// Queues a change if someone listens for it.
    fn note(&mut self, ns: NsId, key: &str, op: ChangeOp) {
        let wanted =
            self.config.track_changes || (op == ChangeOp::Expire && self.config.track_expired);
        if wanted {
            self.changes.push(Change {
                key: String::from(key),
                namespace: String::from(&*self.spaces[ns as usize].name),
                op,
                remote: false,
            });
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.keys = self.spaces.iter().map(|s| s.map.len() as u64).sum();
        stats.buffer_bytes = self.buffer.total_bytes() as u64;
        stats.buffer_utilization =
            stats.buffer_bytes as f64 * 100.0 / self.config.buffer_size as f64;
        stats.expired = stats.expired_lazy + stats.expired_active;
        stats
    }

    // ---- internal bookkeeping -------------------------------------------------------------

    /// Lazy expiry: removes `key` if its deadline has passed.
    fn expire_if_due(&mut self, ns: NsId, key: &str, now: u64) {
        let space = &mut self.spaces[ns as usize];
        if space.map.get(key).is_some_and(|e| !e.is_live(now)) {
            if let Some(entry) = space.map.remove(key) {
                self.forget_entry(ns, key, &entry);
                self.after_expiry(ns, key);
                self.stats.expired_lazy += 1;
            }
        }
    }

    /// After expiry removed a key: a pending change of it becomes a Delete, and the event is
    /// queued if asked for.
    fn after_expiry(&mut self, ns: NsId, key: &str) {
        if !self.config.unbuffered {
            let size = self.state_size(ns, key);
            let space = &mut self.spaces[ns as usize];
            self.buffer.resize(&mut space.pending, key, size);
        }
        self.note(ns, key, ChangeOp::Expire);
    }

    fn insert_entry(&mut self, ns: NsId, key: &str, entry: Entry) {
        self.index_entry(ns, key, &entry);
        self.space(ns).map.insert(key, entry);
    }

    /// Adds an entry about to enter the map to the indexes and counters.
    fn index_entry(&mut self, ns: NsId, key: &str, entry: &Entry) {
        let space = &mut self.spaces[ns as usize];
        index(
            &mut self.deadlines,
            &mut self.stats,
            &mut space.tags,
            ns,
            key,
            entry,
        );
    }

    fn remove_entry(&mut self, ns: NsId, key: &str) -> Option<Entry> {
        let entry = self.space(ns).map.remove(key)?;
        self.forget_entry(ns, key, &entry);
        Some(entry)
    }

    /// Drops an entry that left the map from the indexes and counters.
    fn forget_entry(&mut self, ns: NsId, key: &str, entry: &Entry) {
        if let Some(d) = entry.expires_at() {
            self.deadlines.remove(d, ns, key);
        }
        self.stats.value_bytes -= entry.value.len() as u64;
        self.stats.memory_bytes -= entry.memory_bytes(key);
        self.space(ns).tags.remove(key, &entry.tags);
    }

    fn mark(&mut self, ns: NsId, key: &str, now: u64) {
        if self.config.unbuffered {
            return;
        }
        let size = self.state_size(ns, key);
        let space = &mut self.spaces[ns as usize];
        self.buffer.mark(&mut space.pending, key, size, now);
    }

    /// The record that describes `key` now: a Put if it is held, else a Delete.
    fn state(&self, ns: NsId, key: &str) -> Record {
        let space = &self.spaces[ns as usize];
        match space.map.get(key) {
            Some(entry) => Record::Put(put_record(&space.name, key, entry)),
            None => Record::Delete {
                namespace: String::from(&*space.name),
                key: String::from(key),
            },
        }
    }

    fn state_size(&self, ns: NsId, key: &str) -> usize {
        let space = &self.spaces[ns as usize];
        match space.map.get(key) {
            Some(e) => record::put_size(
                space.name.len(),
                key.len(),
                e.tags.iter().map(|t| t.len()),
                e.value.len(),
            ),
            None => record::delete_size(space.name.len(), key.len()),
        }
    }
}

/// Adds an entry about to enter a namespace's map to the deadline and tag indexes and the
/// counters (a free function, so callers can hold a borrow of the map meanwhile).
fn index(
    deadlines: &mut DeadlineIndex,
    stats: &mut Stats,
    tags: &mut tags::TagIndex,
    ns: NsId,
    key: &str,
    entry: &Entry,
) {
    if let Some(d) = entry.expires_at() {
        deadlines.insert(d, ns, key);
    }
    stats.value_bytes += entry.value.len() as u64;
    stats.memory_bytes += entry.memory_bytes(key);
    tags.add(key, &entry.tags);
}

/// Puts pending keys in change order. Sequence numbers are unique and, in a batch, usually
/// dense (most keys changed once), so they are placed by offset in one pass; a sparse range
/// (a few keys changed many times) falls back to a comparison sort.
fn sort_by_seq(keys: &mut Vec<(NsId, Box<str>, u64)>) {
    let (Some(min), Some(max)) = (
        keys.iter().map(|k| k.2).min(),
        keys.iter().map(|k| k.2).max(),
    ) else {
        return;
    };
    let range = (max - min) as usize + 1;
    if range > keys.len().saturating_mul(4) {
        keys.sort_unstable_by_key(|(_, _, seq)| *seq);
        return;
    }
    let mut slots: Vec<Option<(NsId, Box<str>, u64)>> = Vec::new();
    slots.resize_with(range, || None);
    for k in keys.drain(..) {
        let at = (k.2 - min) as usize;
        slots[at] = Some(k);
    }
    keys.extend(slots.into_iter().flatten());
}

/// Whether two Puts describe the same state (compression is how it is stored, not what it is).
fn same_put(a: &PutRecord, b: &PutRecord) -> bool {
    a.value == b.value
        && a.kind == b.kind
        && a.expires_at == b.expires_at
        && a.tags == b.tags
        && a.updated_at == b.updated_at
}

fn put_record(namespace: &str, key: &str, entry: &Entry) -> PutRecord {
    PutRecord {
        namespace: namespace.into(),
        key: key.into(),
        value: entry.value.clone(),
        kind: entry.kind,
        created_at: entry.created_at,
        updated_at: entry.updated_at,
        expires_at: entry.expires_at(),
        tags: entry.tags.iter().map(|t| String::from(&**t)).collect(),
        compressed: entry.compressed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;
    const NO_TAGS: [&str; 0] = [];

    fn engine() -> Engine {
        Engine::new(Config::default()).unwrap()
    }

    fn set(e: &mut Engine, key: &str, ttl: Option<u64>, tags: &[&str], now: u64) {
        e.set(0, key, Bytes::from_static(b"v"), Kind::Text, ttl, tags, now)
            .unwrap();
    }

    #[test]
    fn get_lazy_reads_the_clock_only_for_a_key_with_a_ttl() {
        let mut e = engine();
        set(&mut e, "plain", None, &NO_TAGS, T0);
        set(&mut e, "ttl", Some(1_000), &NO_TAGS, T0);
        let mut reads = 0;
        let mut clock = || {
            reads += 1;
            T0 + 10
        };
        assert!(e.get_lazy(0, "plain", &mut clock).unwrap().is_some());
        assert!(e.get_lazy(0, "missing", &mut clock).unwrap().is_none());
        assert!(e.get_lazy(0, "ttl", &mut clock).unwrap().is_some());
        assert_eq!(reads, 1);
    }

    #[test]
    fn get_lazy_answers_counts_and_expires_exactly_like_get() {
        let (mut a, mut b) = (engine(), engine());
        for e in [&mut a, &mut b] {
            set(e, "plain", None, &NO_TAGS, T0);
            set(e, "soon", Some(100), &["t"], T0);
            set(e, "later", Some(10_000), &NO_TAGS, T0);
        }
        let at = T0 + 100; // "soon" is due (a deadline is exclusive)
        for key in ["plain", "soon", "later", "missing", "soon"] {
            assert_eq!(
                a.get(0, key, at).unwrap(),
                b.get_lazy(0, key, &mut || at).unwrap()
            );
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            (
                sa.gets,
                sa.hits,
                sa.misses,
                sa.expired_lazy,
                sa.keys,
                sa.buffer_bytes
            ),
            (
                sb.gets,
                sb.hits,
                sb.misses,
                sb.expired_lazy,
                sb.keys,
                sb.buffer_bytes
            )
        );
        assert_eq!(a.pending_records(), b.pending_records());
        assert_eq!(sb.expired_lazy, 1);
    }

    #[test]
    fn flush_due_lazy_agrees_with_flush_due_and_skips_the_clock_when_nothing_is_pending() {
        let mut e = engine();
        let mut reads = 0;
        assert!(!e.flush_due_lazy(&mut || {
            reads += 1;
            T0
        }));
        assert_eq!(reads, 0);
        set(&mut e, "k", None, &NO_TAGS, T0);
        for at in [T0, T0 + 999, T0 + 1_000] {
            assert_eq!(e.flush_due(at), e.flush_due_lazy(&mut || at));
        }
    }

    #[test]
    fn overwriting_in_place_moves_the_deadline_and_tags_and_keeps_created_at() {
        let mut e = engine();
        set(&mut e, "k", Some(100), &["a", "b"], T0);
        set(&mut e, "k", None, &["b", "c"], T0 + 50);
        let (_, meta) = e.get_with_metadata(0, "k", T0 + 50).unwrap().unwrap();
        assert_eq!((meta.created_at, meta.updated_at), (T0, T0 + 50));
        assert_eq!(meta.expires_at, None);
        assert_eq!(
            e.query_by_tags(0, &["a"], T0 + 50).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            e.query_by_tags(0, &["b", "c"], T0 + 50).unwrap(),
            vec!["k".to_string()]
        );
        // The old deadline is gone from the index: nothing to sweep, the key stays.
        assert_eq!(e.sweep(T0 + 200, 10).expired, 0);
        assert!(e.contains(0, "k", T0 + 200).unwrap());
        set(&mut e, "k", Some(100), &NO_TAGS, T0 + 300);
        assert_eq!(e.sweep(T0 + 400, 10).expired, 1);
        assert_eq!(e.stats().value_bytes, 0);
    }

    #[test]
    fn a_batch_lists_changes_in_change_order_dense_or_sparse() {
        let mut e = engine();
        for key in ["c", "a", "b"] {
            set(&mut e, key, None, &NO_TAGS, T0);
        }
        for _ in 0..100 {
            set(&mut e, "a", None, &NO_TAGS, T0); // "a" moves to the end, seqs now sparse
        }
        let batch = e.take_batch().unwrap();
        let keys: Vec<&str> = batch.records.iter().map(Record::key).collect();
        assert_eq!(keys, ["c", "b", "a"]);
    }

    #[test]
    fn an_unknown_namespace_id_is_an_error_never_a_panic() {
        let mut e = engine();
        let v = || Bytes::from_static(b"v");
        let unknown: NsId = 7;
        let is_err = |r: Result<()>| matches!(r, Err(Error::InvalidName { .. }));
        assert!(is_err(e.set(
            unknown,
            "k",
            v(),
            Kind::Bytes,
            None,
            &NO_TAGS,
            T0
        )));
        assert!(is_err(e.get(unknown, "k", T0).map(drop)));
        assert!(is_err(e.get_lazy(unknown, "k", &mut || T0).map(drop)));
        assert!(is_err(e.get_with_metadata(unknown, "k", T0).map(drop)));
        assert!(is_err(e.contains(unknown, "k", T0).map(drop)));
        assert!(is_err(e.delete(unknown, "k", T0).map(drop)));
        assert!(is_err(e.ttl(unknown, "k", T0).map(drop)));
        assert!(is_err(e.expire(unknown, "k", 5, T0).map(drop)));
        assert!(is_err(e.persist(unknown, "k", T0).map(drop)));
        assert!(is_err(e.keys(unknown, "", T0).map(drop)));
        assert!(is_err(e.query_by_tags(unknown, &["t"], T0).map(drop)));
        assert!(is_err(e.list_tags(unknown, T0).map(drop)));
        assert!(is_err(e.namespace_name(unknown).map(drop)));
        let op = BatchOp::Delete { key: "k".into() };
        assert!(e.apply(unknown, &[op], T0).is_err());
        assert_eq!(e.stats().keys, 0);
        assert!(!e.has_unflushed());
    }

    #[test]
    fn an_entry_whose_record_would_overflow_its_length_fields_is_refused() {
        // Zeroed memory is only reserved, never touched: a 4 GiB value costs nothing here.
        let mut e = Engine::new(Config {
            max_value_size: u32::MAX as u64,
            ..Config::default()
        })
        .unwrap();
        let huge = Bytes::from(vec![0u8; u32::MAX as usize - 64]);
        let key = "k".repeat(1_000);
        match e.set(0, &key, huge.clone(), Kind::Bytes, None, &NO_TAGS, T0) {
            Err(Error::ValueTooLarge { size, max }) => {
                assert!(size > max, "{size} {max}");
                assert_eq!(max, u32::MAX as u64);
            }
            other => panic!("expected ValueTooLarge, got {other:?}"),
        }
        // Tags count too: a small key, but tags that push the record over the limit.
        let tags = ["t".repeat(100)];
        let r = e.set(0, "k", huge, Kind::Bytes, None, &tags, T0);
        assert!(matches!(r, Err(Error::ValueTooLarge { .. })), "{r:?}");
        assert_eq!(e.stats().keys, 0);
        assert!(!e.has_unflushed());
    }

    #[test]
    fn metadata_from_the_engine_does_no_compression_work() {
        let mut e = Engine::new(Config {
            compression: true,
            ..Config::default()
        })
        .unwrap();
        let value = Bytes::from(vec![b'z'; 100_000]);
        e.set(0, "k", value.clone(), Kind::Bytes, None, &NO_TAGS, T0)
            .unwrap();
        let (got, mut meta) = e.get_with_metadata(0, "k", T0).unwrap().unwrap();
        // Unmeasured: the logical size, so the engine (and the lock around it) never ran LZ4.
        assert_eq!((meta.size, meta.stored_size), (100_000, 100_000));
        assert!(meta.compressed);
        meta.measure_stored_size(&got);
        assert!(meta.stored_size < 1_000, "{}", meta.stored_size);
        // A value that does not compress is stored as it is, and says so.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4_096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        e.set(0, "n", Bytes::from(noise), Kind::Bytes, None, &NO_TAGS, T0)
            .unwrap();
        let (got, mut meta) = e.get_with_metadata(0, "n", T0).unwrap().unwrap();
        meta.measure_stored_size(&got);
        assert_eq!((meta.stored_size, meta.compressed), (4_096, false));
    }

    fn put_op(key: &str, value: &'static [u8], ttl_ms: Option<u64>, tags: &[&str]) -> BatchOp {
        BatchOp::Set {
            key: key.into(),
            value: Bytes::from_static(value),
            kind: Kind::Text,
            ttl_ms,
            tags: tags.iter().map(|t| String::from(*t)).collect(),
        }
    }

    #[test]
    fn a_batch_applies_all_of_its_changes_or_none() {
        let mut e = engine();
        set(&mut e, "old", None, &NO_TAGS, T0);
        set(&mut e, "keep", None, &NO_TAGS, T0);
        let before = e.take_batch().unwrap();
        e.ack(before.id);
        // A bad op anywhere refuses the whole batch and names it; nothing changes.
        let bad_ops = [
            (put_op("", b"v", None, &[]), 1),
            (put_op("b", b"v", Some(0), &[]), 1),
            (put_op("b", b"v", None, &[""]), 1),
            (BatchOp::Delete { key: String::new() }, 1),
        ];
        for (bad, index) in bad_ops {
            let ops = [
                put_op("a", b"1", None, &[]),
                bad,
                put_op("c", b"3", None, &[]),
            ];
            let err = e.apply(0, &ops, T0 + 1).unwrap_err();
            assert_eq!(err.index, index, "{:?}", err.error);
            assert_eq!(e.keys(0, "", T0 + 1).unwrap(), ["keep", "old"]);
            assert!(!e.has_unflushed());
        }
        // A good batch: in order (a later op on a key wins), deletes counted.
        let ops = [
            put_op("a", b"1", Some(1_000), &["t"]),
            BatchOp::Delete { key: "old".into() },
            BatchOp::Delete {
                key: "missing".into(),
            },
            put_op("a", b"2", None, &["u"]),
            put_op("b", b"3", None, &[]),
        ];
        assert_eq!(e.apply(0, &ops, T0 + 2).unwrap(), 1);
        assert_eq!(e.keys(0, "", T0 + 2).unwrap(), ["a", "b", "keep"]);
        let (value, meta) = e.get_with_metadata(0, "a", T0 + 2).unwrap().unwrap();
        assert_eq!((&value[..], meta.expires_at), (&b"2"[..], None));
        assert_eq!(e.query_by_tags(0, &["u"], T0 + 2).unwrap(), ["a"]);
        // One flush carries the whole batch.
        let batch = e.take_batch().unwrap();
        let keys: Vec<&str> = batch.records.iter().map(Record::key).collect();
        assert_eq!(keys, ["old", "a", "b"]);
        assert!(matches!(&batch.records[0], Record::Delete { .. }));
    }

    #[test]
    fn a_remote_record_applies_unless_the_key_has_an_unconfirmed_local_change() {
        let mut e = engine();
        let remote = |key: &str, value: &'static [u8], expires_at: Option<u64>| {
            Record::Put(PutRecord {
                namespace: String::new(),
                key: key.into(),
                value: Bytes::from_static(value),
                kind: Kind::Text,
                created_at: T0,
                updated_at: T0,
                expires_at,
                tags: Vec::new(),
                compressed: false,
            })
        };
        // A key this engine never touched takes the remote state, silently as to the buffer.
        let change = e
            .apply_remote(remote("a", b"1", None), T0)
            .unwrap()
            .unwrap();
        assert_eq!((change.op, change.remote), (ChangeOp::Set, true));
        assert_eq!(&e.get(0, "a", T0).unwrap().unwrap().0[..], b"1");
        assert!(!e.has_unflushed());
        // The same state again is no change.
        assert!(e
            .apply_remote(remote("a", b"1", None), T0)
            .unwrap()
            .is_none());
        // A pending local change wins, and so does one in flight.
        set(&mut e, "b", None, &NO_TAGS, T0);
        assert!(e
            .apply_remote(remote("b", b"theirs", None), T0)
            .unwrap()
            .is_none());
        let batch = e.take_batch().unwrap();
        assert!(e.is_local(0, "b"));
        assert!(e
            .apply_remote(remote("b", b"theirs", None), T0)
            .unwrap()
            .is_none());
        e.ack(batch.id);
        assert!(!e.is_local(0, "b"));
        // Deletes and records that expired where they were written.
        let del = Record::Delete {
            namespace: String::new(),
            key: "a".into(),
        };
        assert_eq!(
            e.apply_remote(del.clone(), T0).unwrap().unwrap().op,
            ChangeOp::Delete
        );
        assert!(e.apply_remote(del, T0).unwrap().is_none());
        let op = e
            .apply_remote(remote("b", b"gone", Some(T0)), T0)
            .unwrap()
            .unwrap()
            .op;
        assert_eq!(op, ChangeOp::Expire);
        assert_eq!(e.keys(0, "", T0).unwrap(), Vec::<String>::new());
        assert!(!e.has_unflushed());
    }
}
