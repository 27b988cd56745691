//! The file log's dead-byte estimate: for each live key (by a 64-bit hash of namespace and key)
//! the size of its newest record, and its deadline if it has one.
//!
//! It is updated for every record written or replayed, so it is built for that: one flat
//! open-addressing table of 16-byte cells (hash, bytes, a deadline flag) with linear probing,
//! at most half full, so a lookup touches one cache line (rarely two) and a batch of updates
//! can ask for the cells it will touch ahead of time ([`LiveIndex::set_many`]), which overlaps
//! their cache misses. Deadlines sit in a side table holding only keys that have one, which is
//! also all [`LiveIndex::drop_expired`] walks. About 32 to 64 bytes per key (the table doubles
//! when half full), plus 16 per key with a deadline.
//!
//! It never decides anything about data: it only feeds `compaction_due` and `DiskStats`.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use crate::Record;

/// A key's newest record, as the index keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// The record's share of its frame, in bytes.
    pub bytes: u32,
    /// `u64::MAX` for none.
    pub deadline: u64,
}

/// One cell of the table; `hash == 0` marks an empty cell (a key whose hash is 0 is kept as 1).
#[derive(Clone, Copy, Default)]
struct Cell {
    hash: u64,
    bytes: u32,
    /// Whether the key has an entry in [`LiveIndex::deadlines`].
    has_deadline: bool,
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct LiveIndex {
    /// A power of two in length (or empty), at most half full.
    cells: Vec<Cell>,
    /// Occupied cells.
    len: usize,
    /// The deadline of every key that has one, by hash.
    deadlines: HashMap<u64, u64, BuildHasherDefault<PreHashed>>,
    /// Sum of the cells' bytes.
    pub live: u64,
}

/// Updates ahead of the current one whose cell [`LiveIndex::set_many`] asks the CPU for.
const PREFETCH_AHEAD: usize = 16;

/// The side table's keys are already hashes: use them as they are.
#[derive(Default)]
pub(super) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One hasher for every index of the process (seeded once), so a compaction's index and the
/// live one agree.
fn key_hasher() -> &'static hashbrown::DefaultHashBuilder {
    static HASHER: OnceLock<hashbrown::DefaultHashBuilder> = OnceLock::new();
    HASHER.get_or_init(hashbrown::DefaultHashBuilder::default)
}

/// Asks the CPU to start loading the cache line at `p` (a hint only: never faults, and does
/// nothing on targets without a prefetch instruction here).
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing architecturally and never faults, for
    // any address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl LiveIndex {
    /// The hash the index keeps `record`'s key under.
    pub fn hash(record: &Record) -> u64 {
        key_hasher().hash_one((record.namespace(), record.key()))
    }

    /// The slot `record` (a frame share of `bytes`) gives its key: `None` if it leaves the key
    /// dead (a Delete, or a Put whose deadline is not after `now`).
    pub fn slot(record: &Record, bytes: usize, now: u64) -> Option<Slot> {
        match record {
            Record::Put(p) if p.expires_at.is_none_or(|d| now < d) => Some(Slot {
                bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                deadline: p.expires_at.unwrap_or(u64::MAX),
            }),
            _ => None,
        }
    }

    /// Notes that `record` (a frame share of `bytes`) is now the newest of its key; returns
    /// the slot it left (`None` if the key is now dead).
    pub fn apply(&mut self, record: &Record, bytes: usize, now: u64) -> Option<Slot> {
        let slot = Self::slot(record, bytes, now);
        self.set(Self::hash(record), slot);
        slot
    }

    /// Makes room for `keys` keys in all, so that many fit without the table growing (a hint:
    /// if the room cannot be had, the table grows as usual).
    pub fn reserve(&mut self, keys: usize) {
        let want = keys.saturating_mul(2).checked_next_power_of_two();
        if let Some(cells) = want.filter(|&c| c > self.cells.len()) {
            let mut bigger = Vec::new();
            if bigger.try_reserve_exact(cells).is_ok() {
                bigger.resize(cells, Cell::default());
                self.rehash_into(bigger);
            }
        }
    }

    /// Applies `updates` in order, as [`set`](Self::set) one by one would, loading the cells
    /// of the next few ahead of time.
    pub fn set_many(&mut self, updates: &[(u64, Option<Slot>)]) {
        self.reserve(self.len + updates.len());
        for (i, &(hash, slot)) in updates.iter().enumerate() {
            if let Some(&(ahead, _)) = updates.get(i + PREFETCH_AHEAD) {
                if !self.cells.is_empty() {
                    let home = self.home(cell_hash(ahead));
                    prefetch(self.cells.as_ptr().wrapping_add(home));
                }
            }
            self.set(hash, slot);
        }
    }

    /// Makes `slot` the state of the key with `hash` (`None`: the key is dead).
    pub fn set(&mut self, hash: u64, slot: Option<Slot>) {
        let hash = cell_hash(hash);
        match slot {
            Some(slot) => {
                if (self.len + 1) * 2 > self.cells.len() {
                    self.grow();
                }
                let (at, found) = self.find(hash);
                let cell = &mut self.cells[at];
                if found {
                    self.live -= u64::from(cell.bytes);
                } else {
                    self.len += 1;
                }
                let had_deadline = found && cell.has_deadline;
                let has_deadline = slot.deadline != u64::MAX;
                *cell = Cell {
                    hash,
                    bytes: slot.bytes,
                    has_deadline,
                };
                self.live += u64::from(slot.bytes);
                if has_deadline {
                    self.deadlines.insert(hash, slot.deadline);
                } else if had_deadline {
                    self.deadlines.remove(&hash);
                }
            }
            None => {
                if self.cells.is_empty() {
                    return;
                }
                let (at, found) = self.find(hash);
                if found {
                    let cell = self.cells[at];
                    self.live -= u64::from(cell.bytes);
                    if cell.has_deadline {
                        self.deadlines.remove(&hash);
                    }
                    self.remove_at(at);
                }
            }
        }
    }

    /// Forgets records whose deadline has passed: their bytes are dead.
    pub fn drop_expired(&mut self, now: u64) {
        let expired: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|&(_, &deadline)| deadline <= now)
            .map(|(&hash, _)| hash)
            .collect();
        for hash in expired {
            self.deadlines.remove(&hash);
            let (at, found) = self.find(hash);
            if found {
                self.live -= u64::from(self.cells[at].bytes);
                self.remove_at(at);
            }
        }
    }

    /// Keys in the index.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    fn home(&self, hash: u64) -> usize {
        (hash as usize) & (self.cells.len() - 1)
    }

    /// The cell holding `hash` (true), or the empty cell where it would go (false). The table
    /// must not be empty; it is never full.
    fn find(&self, hash: u64) -> (usize, bool) {
        let mask = self.cells.len() - 1;
        let mut at = self.home(hash);
        loop {
            let cell = &self.cells[at];
            if cell.hash == hash {
                return (at, true);
            }
            if cell.hash == 0 {
                return (at, false);
            }
            at = (at + 1) & mask;
        }
    }

    /// Empties cell `at` and moves later cells of its run back so every key stays reachable
    /// from its home cell (deletion without tombstones).
    fn remove_at(&mut self, at: usize) {
        let mask = self.cells.len() - 1;
        let (mut hole, mut next) = (at, at);
        loop {
            next = (next + 1) & mask;
            let cell = self.cells[next];
            if cell.hash == 0 {
                break;
            }
            let home = self.home(cell.hash);
            // The cell may move into the hole unless its home lies cyclically in (hole, next].
            let stays = if hole <= next {
                hole < home && home <= next
            } else {
                hole < home || home <= next
            };
            if !stays {
                self.cells[hole] = cell;
                hole = next;
            }
        }
        self.cells[hole] = Cell::default();
        self.len -= 1;
    }

    fn grow(&mut self) {
        let cells = (self.cells.len() * 2).max(16);
        self.rehash_into(vec![Cell::default(); cells]);
    }

    fn rehash_into(&mut self, cells: Vec<Cell>) {
        let old = std::mem::replace(&mut self.cells, cells);
        for cell in old.into_iter().filter(|c| c.hash != 0) {
            let (at, _) = self.find(cell.hash);
            self.cells[at] = cell;
        }
    }
}

/// The hash as a cell keeps it: never 0, which marks an empty cell.
fn cell_hash(hash: u64) -> u64 {
    hash.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(bytes: u32, deadline: u64) -> Option<Slot> {
        Some(Slot { bytes, deadline })
    }

    /// A reference model: what the index must agree with.
    #[derive(Default)]
    struct Model(std::collections::HashMap<u64, Slot>);

    impl Model {
        fn live(&self) -> u64 {
            self.0.values().map(|s| u64::from(s.bytes)).sum()
        }
    }

    #[test]
    fn the_index_agrees_with_a_map_through_inserts_overwrites_removals_and_expiry() {
        let mut index = LiveIndex::default();
        let mut model = Model::default();
        // Few distinct hashes with colliding low bits, so runs form, wrap and are cut by
        // removals; 0 and 1 share a cell hash on purpose.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hash = match x % 7 {
                0 => (x >> 8) % 64 * 1024,
                1 => 0,
                _ => (x >> 8) % 3_000,
            };
            let update = match (x >> 40) % 4 {
                0 => None,
                1 => slot((x >> 20) as u32 % 500, 1_000 + (x >> 50) % 1_000),
                _ => slot((x >> 20) as u32 % 500, u64::MAX),
            };
            if step % 3 == 0 {
                index.set_many(&[(hash, update), (hash ^ 5, update)]);
                for h in [hash, hash ^ 5] {
                    match update {
                        Some(s) => model.0.insert(cell_hash(h), s),
                        None => model.0.remove(&cell_hash(h)),
                    };
                }
            } else {
                index.set(hash, update);
                match update {
                    Some(s) => model.0.insert(cell_hash(hash), s),
                    None => model.0.remove(&cell_hash(hash)),
                };
            }
            if step % 10_000 == 9_999 {
                let now = 1_000 + step % 1_000;
                index.drop_expired(now);
                model.0.retain(|_, s| now < s.deadline);
            }
            assert_eq!(index.live, model.live(), "step {step}");
            assert_eq!(index.len(), model.0.len(), "step {step}");
        }
        for (&hash, s) in &model.0 {
            let (at, found) = index.find(hash);
            assert!(found, "{hash} lost");
            assert_eq!(index.cells[at].bytes, s.bytes);
            assert_eq!(index.cells[at].has_deadline, s.deadline != u64::MAX);
        }
        assert_eq!(
            index.deadlines.len(),
            model.0.values().filter(|s| s.deadline != u64::MAX).count()
        );
    }

    #[test]
    fn reserve_keeps_every_key_and_never_shrinks() {
        let mut index = LiveIndex::default();
        for h in 1..=100u64 {
            index.set(h, slot(10, u64::MAX));
        }
        index.reserve(10_000);
        assert!(index.cells.len() >= 20_000);
        index.reserve(5);
        assert!(index.cells.len() >= 20_000);
        assert_eq!((index.len(), index.live), (100, 1_000));
        for h in 1..=100u64 {
            assert!(index.find(h).1);
        }
    }
}
