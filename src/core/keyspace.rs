//! The keyspace: (namespace, key) -> entry, and the value types every shell shares.
//!
//! Owns what an entry is and how it is described to callers. It never decides *when* something
//! expires (that is `expiry`) nor what is pending for a backend (that is `buffer`).

use alloc::{boxed::Box, string::String, vec::Vec};
use bytes::Bytes;
use core::hash::BuildHasher;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::{buffer::Pending, tags::TagIndex};

/// Which kind of value an entry holds, so a shell gives back what it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Raw bytes (`Uint8Array` in JS).
    Bytes = 0,
    /// UTF-8 text (`string` in JS).
    Text = 1,
    /// A JSON document (any other JSON-serialisable JS value).
    Json = 2,
}

impl Kind {
    /// The kind for a stored tag byte, or `None` for an unknown byte.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Bytes),
            1 => Some(Kind::Text),
            2 => Some(Kind::Json),
            _ => None,
        }
    }

    /// The lower-case name used in JS metadata and in dumps: `"bytes"`, `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bytes => "bytes",
            Kind::Text => "text",
            Kind::Json => "json",
        }
    }
}

/// Everything tidekv knows about an entry besides its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Logical size of the value in bytes (after decompression).
    pub size: u64,
    /// Size of the value as a persistent backend stores it: the LZ4 block when `compressed`
    /// (and the block is smaller), else equal to `size`. The stores fill it in when asked for
    /// metadata, outside their locks; the engine alone reports `size` here (see
    /// [`Metadata::measure_stored_size`]).
    pub stored_size: u64,
    /// When the key was first written (ms since the Unix epoch). Overwriting a live key keeps it.
    pub created_at: u64,
    /// When the value, TTL or tags last changed (ms since the Unix epoch).
    pub updated_at: u64,
    /// Absolute deadline (ms since the Unix epoch) after which the key is gone; `None` = no TTL.
    pub expires_at: Option<u64>,
    /// The entry's tags, sorted and without duplicates.
    pub tags: Vec<String>,
    /// The kind of value.
    pub kind: Kind,
    /// Whether the persistent record of this value is compressed.
    pub compressed: bool,
}

impl Metadata {
    /// Sets `stored_size` to what a persistent backend stores for `value` (this metadata's
    /// value): for a compressed entry the LZ4 block's size, found by compressing all of
    /// `value`. When the block would not be smaller, the value is stored as it is and
    /// `compressed` becomes `false`. The work grows with the value: call it outside any lock.
    pub fn measure_stored_size(&mut self, value: &[u8]) {
        self.stored_size = super::record::stored_size(value, self.compressed);
        if self.compressed && self.stored_size >= value.len() as u64 {
            self.compressed = false;
        }
    }
}

/// One stored entry. Tags are kept sorted and unique.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub value: Bytes,
    pub created_at: u64,
    pub updated_at: u64,
    /// The deadline (ms since the Unix epoch), `None` for no TTL: never 0 (a deadline is a
    /// time plus at least 1 ms), so it takes 8 bytes. See [`Entry::expires_at`].
    deadline: Option<core::num::NonZeroU64>,
    pub tags: Box<[Box<str>]>,
    pub kind: Kind,
    pub compressed: bool,
    /// The key's hash, kept by [`Entries`] (set it to 0 elsewhere): it sits in what would be
    /// padding, and lets the table grow without reading and hashing every key again. Lookups
    /// do not read it (it is on another cache line than the key's pointer).
    pub(super) hash: u32,
    /// When the entry was last touched, on the engine's recency clock (only kept while a
    /// memory cap is set; see `evict`).
    pub touched: u32,
}

/// Bookkeeping bytes counted per entry besides its key, value and tags: the (key, entry) pair
/// in the dense array, its table slot and control byte.
pub(crate) const ENTRY_OVERHEAD: u64 =
    (core::mem::size_of::<(SlabKey, Entry)>() + core::mem::size_of::<u32>() + 1) as u64;

/// Keys of up to this many bytes are kept inside their pair in the dense array.
const INLINE_KEY: usize = 22;

/// A key as the dense array keeps it: a short key (most are) inline — no allocation of its
/// own, and no pointer for a lookup to follow to compare it — a longer one on the heap. 24
/// bytes either way.
#[derive(Clone, Debug)]
pub(crate) enum SlabKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<str>),
}

impl SlabKey {
    fn as_bytes(&self) -> &[u8] {
        match self {
            SlabKey::Inline { len, bytes } => &bytes[..*len as usize],
            SlabKey::Heap(key) => key.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            // Copied from a `str` whole (see `From`), so always UTF-8: never the fallback.
            SlabKey::Inline { .. } => core::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            SlabKey::Heap(key) => key,
        }
    }

    fn inline(key: &str) -> Option<SlabKey> {
        let len = key.len();
        (len <= INLINE_KEY).then(|| {
            let mut bytes = [0; INLINE_KEY];
            bytes[..len].copy_from_slice(key.as_bytes());
            SlabKey::Inline {
                len: len as u8,
                bytes,
            }
        })
    }
}

impl From<&str> for SlabKey {
    fn from(key: &str) -> SlabKey {
        SlabKey::inline(key).unwrap_or_else(|| SlabKey::Heap(key.into()))
    }
}

impl From<Box<str>> for SlabKey {
    /// A short key is copied inline (its allocation is freed); a long one keeps its allocation.
    fn from(key: Box<str>) -> SlabKey {
        SlabKey::inline(&key).unwrap_or(SlabKey::Heap(key))
    }
}

/// Bytes counted per tag of an entry besides the tag itself: its pointer in the entry and the
/// key's place in the tag index.
pub(crate) const TAG_OVERHEAD: u64 = 32;

/// An entry's deadline as stored: `None` for none (and for 0, which no deadline is).
fn pack_deadline(expires_at: Option<u64>) -> Option<core::num::NonZeroU64> {
    expires_at.and_then(core::num::NonZeroU64::new)
}

impl Entry {
    /// A new entry; `touched` and the kept hash start at 0.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        value: Bytes,
        created_at: u64,
        updated_at: u64,
        expires_at: Option<u64>,
        tags: Box<[Box<str>]>,
        kind: Kind,
        compressed: bool,
    ) -> Entry {
        Entry {
            value,
            created_at,
            updated_at,
            deadline: pack_deadline(expires_at),
            tags,
            kind,
            compressed,
            hash: 0,
            touched: 0,
        }
    }

    /// The absolute deadline (ms since the Unix epoch), `None` for no TTL.
    pub fn expires_at(&self) -> Option<u64> {
        self.deadline.map(core::num::NonZeroU64::get)
    }

    /// Sets the deadline (`None` removes the TTL).
    pub fn set_expires_at(&mut self, expires_at: Option<u64>) {
        self.deadline = pack_deadline(expires_at);
    }

    /// The bytes this entry under `key` counts for in [`Stats::memory_bytes`](super::Stats).
    pub fn memory_bytes(&self, key: &str) -> u64 {
        let tags: u64 = self
            .tags
            .iter()
            .map(|t| t.len() as u64 + TAG_OVERHEAD)
            .sum();
        ENTRY_OVERHEAD + key.len() as u64 + self.value.len() as u64 + tags
    }

    /// Whether the entry is still visible at `now`: a deadline is exclusive.
    pub fn is_live(&self, now: u64) -> bool {
        self.deadline.is_none_or(|deadline| now < deadline.get())
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            size: self.value.len() as u64,
            stored_size: self.value.len() as u64,
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at(),
            tags: self.tags.iter().map(|t| String::from(&**t)).collect(),
            kind: self.kind,
            compressed: self.compressed,
        }
    }
}

/// A namespace's entries: a dense array of (key, entry) pairs, and a hash table that holds
/// only each pair's position in it.
///
/// A table slot is one `usize` rather than a whole entry, so a million keys cost one tight array
/// (grown like a `Vec`) and a small table instead of a half-empty table of entries: less memory
/// per key, and less to touch when a replay fills it. Removing a key moves the last pair into the
/// hole, so the array stays dense.
pub(crate) struct Entries {
    /// Positions in `slab` (4 bytes: a namespace holds fewer than 2^32 keys).
    table: HashTable<u32>,
    slab: Vec<(SlabKey, Entry)>,
    hasher: DefaultHashBuilder,
}

/// The table's hash of a key, from the 32 bits its entry keeps: the multiplication spreads them
/// over the low bits (the bucket) and the top bits (the control byte) alike.
fn table_hash(key_hash: u32) -> u64 {
    u64::from(key_hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl Entries {
    fn new() -> Entries {
        Entries {
            table: HashTable::new(),
            slab: Vec::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The 32-bit hash of `key` that its entry keeps.
    fn key_hash(&self, key: &str) -> u32 {
        let h = self.hasher.hash_one(key);
        (h ^ (h >> 32)) as u32
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Entries the table holds before it next grows.
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    /// Makes room for `additional` more entries at once; `false` if it could not (the entries
    /// stay as they were).
    pub fn try_reserve(&mut self, additional: usize) -> bool {
        let slab = &self.slab;
        self.table
            .try_reserve(additional, |&i| table_hash(slab[i as usize].1.hash))
            .is_ok()
            && self.slab.try_reserve_exact(additional).is_ok()
    }

    /// Gives back room beyond what the entries need.
    pub fn shrink_to_fit(&mut self) {
        let slab = &self.slab;
        self.table
            .shrink_to_fit(|&i| table_hash(slab[i as usize].1.hash));
        self.slab.shrink_to_fit();
    }

    /// The position of `key`, or (when absent) its hash for [`Entries::insert_new`].
    pub fn find(&self, key: &str) -> Result<usize, u32> {
        let hash = self.key_hash(key);
        let slab = &self.slab;
        // The key itself, not the kept hash, decides: a short key is in the pair, at its start.
        self.table
            .find(table_hash(hash), |&i| {
                slab[i as usize].0.as_bytes() == key.as_bytes()
            })
            .map(|&i| i as usize)
            .ok_or(hash)
    }

    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.find(key).ok().map(|i| &self.slab[i].1)
    }

    /// The entry of `key`, to change in place.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        let i = self.find(key).ok()?;
        Some(&mut self.slab[i].1)
    }

    /// The pair at a position [`Entries::find`] returned.
    pub fn at(&self, pos: usize) -> (&str, &Entry) {
        let (key, entry) = &self.slab[pos];
        (key.as_str(), entry)
    }

    /// Replaces the entry at a position [`Entries::find`] returned, giving back the old one.
    pub fn replace_at(&mut self, pos: usize, mut entry: Entry) -> Entry {
        let slot = &mut self.slab[pos].1;
        entry.hash = slot.hash;
        core::mem::replace(slot, entry)
    }

    /// Adds `key`, which [`Entries::find`] just reported absent with `hash`.
    pub fn insert_new(&mut self, hash: u32, key: impl Into<SlabKey>, mut entry: Entry) {
        let pos = self.slab.len() as u32;
        entry.hash = hash;
        self.slab.push((key.into(), entry));
        let slab = &self.slab;
        self.table.insert_unique(table_hash(hash), pos, |&i| {
            table_hash(slab[i as usize].1.hash)
        });
    }

    /// Sets the entry of `key`, giving back the one it replaced.
    pub fn insert(&mut self, key: &str, entry: Entry) -> Option<Entry> {
        match self.find(key) {
            Ok(pos) => Some(self.replace_at(pos, entry)),
            Err(hash) => {
                self.insert_new(hash, key, entry);
                None
            }
        }
    }

    /// Removes `key`, giving back its entry.
    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        let hash = self.key_hash(key);
        let slab = &self.slab;
        let (pos, _) = self
            .table
            .find_entry(table_hash(hash), |&i| {
                slab[i as usize].0.as_bytes() == key.as_bytes()
            })
            .ok()?
            .remove();
        let pos = pos as usize;
        let last = self.slab.len() - 1;
        if pos != last {
            // The last pair moves into the hole: its slot must point at its new place.
            let moved = table_hash(self.slab[last].1.hash);
            let slot = self.table.find_mut(moved, |&i| i as usize == last);
            debug_assert!(slot.is_some(), "every pair has a table slot");
            if let Some(slot) = slot {
                *slot = pos as u32;
            }
        }
        Some(self.slab.swap_remove(pos).1)
    }

    /// Every (key, entry) pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.slab.iter().map(|(key, entry)| (key.as_str(), entry))
    }
}

/// One namespace: its entries, its tag index and its pending (unflushed) keys.
pub(crate) struct Space {
    pub name: Box<str>,
    pub map: Entries,
    pub tags: TagIndex,
    pub pending: Pending,
}

impl Space {
    pub fn new(name: &str) -> Space {
        Space {
            name: name.into(),
            map: Entries::new(),
            tags: TagIndex::default(),
            pending: Pending::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    fn entry(n: u64) -> Entry {
        Entry::new(Bytes::new(), n, n, None, Box::default(), Kind::Bytes, false)
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_kept_hash_costs_no_memory_per_entry() {
        // 82 bytes of fields round up to 88 with or without the 4-byte hash.
        assert_eq!(core::mem::size_of::<Entry>(), 88);
    }

    #[test]
    fn entries_stay_findable_as_removals_move_the_last_pair_into_holes() {
        let mut map = Entries::new();
        for i in 0..1_000u64 {
            assert!(map.insert(&format!("k{i}"), entry(i)).is_none());
        }
        assert_eq!(
            map.insert("k7", entry(7_000)).map(|e| e.created_at),
            Some(7)
        );
        // Remove every third key, from the middle, the front and the end of the array.
        for i in (0..1_000u64).step_by(3) {
            assert_eq!(
                map.remove(&format!("k{i}")).map(|e| e.updated_at),
                Some(if i == 7 { 7_000 } else { i })
            );
            assert!(map.remove(&format!("k{i}")).is_none());
        }
        assert_eq!(map.len(), 666);
        for i in 0..1_000u64 {
            let want = (i % 3 != 0).then_some(if i == 7 { 7_000 } else { i });
            assert_eq!(
                map.get(&format!("k{i}")).map(|e| e.created_at),
                want,
                "k{i}"
            );
        }
        assert_eq!(map.iter().count(), 666);
        map.shrink_to_fit();
        assert!(map.try_reserve(10));
        assert!(!map.try_reserve(usize::MAX));
        assert_eq!(map.get("k1").map(|e| e.created_at), Some(1));
    }

    #[test]
    fn short_keys_live_inline_and_long_ones_on_the_heap_alike() {
        let mut map = Entries::new();
        let long = "x".repeat(INLINE_KEY + 1);
        let edge = "é".repeat(INLINE_KEY / 2); // 22 bytes of two-byte characters
        for (i, key) in ["", "a", &edge, &long, "ключ"].iter().enumerate() {
            assert!(map.insert(key, entry(i as u64)).is_none());
        }
        assert!(matches!(SlabKey::from(&*edge), SlabKey::Inline { .. }));
        assert!(matches!(SlabKey::from(&*long), SlabKey::Heap(_)));
        assert!(matches!(
            SlabKey::from(Box::<str>::from("k")),
            SlabKey::Inline { .. }
        ));
        for (i, key) in ["", "a", &edge, &long, "ключ"].iter().enumerate() {
            let pos = map.find(key).unwrap();
            assert_eq!(map.at(pos).0, *key);
            assert_eq!(map.get(key).unwrap().created_at, i as u64);
        }
        // A prefix of an inline key is another key.
        assert!(map.get(&edge[..20]).is_none());
        let mut keys: Vec<&str> = map.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["", "a", &*long, &*edge, "ключ"]);
    }
}
