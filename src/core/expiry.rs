//! Active expiry: the deadline index and the tick policy.
//!
//! The index is an ordered set of `(deadline, namespace, key)`, so finding what is due costs
//! O(log n) and removing `k` expired keys costs O(k · log n) — never a scan of all keys. The tick
//! policy turns the next deadline into "when should the shell call again", clamped to
//! `[min_interval, max_interval]`. This module never reads a clock: `now` is always passed in.

use alloc::{boxed::Box, collections::BTreeSet};
use core::borrow::Borrow;
use core::cmp::Ordering;

use super::NsId;

/// One `(deadline, tie, namespace, key)` of the index. `tie` is a hash of the key: many keys
/// share a deadline (every set of one millisecond with one TTL), and ordering them by the hash
/// first means a search compares keys — a pointer to follow, a likely cache miss — almost only
/// for the key it looks for. It takes what was padding.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due(u64, u32, NsId, Box<str>);

/// The index's tie-break of `key`.
fn tie(key: &str) -> u32 {
    (super::word_hash(0, key.as_bytes()) >> 32) as u32
}

/// What the set is searched by: a `Due`, or a borrowed `(deadline, tie, namespace, &key)`, so
/// that removing an entry needs no allocation.
trait DueKey {
    fn parts(&self) -> (u64, u32, NsId, &str);
}

impl DueKey for Due {
    fn parts(&self) -> (u64, u32, NsId, &str) {
        (self.0, self.1, self.2, &self.3)
    }
}

impl DueKey for (u64, u32, NsId, &str) {
    fn parts(&self) -> (u64, u32, NsId, &str) {
        *self
    }
}

impl<'a> Borrow<dyn DueKey + 'a> for Due {
    fn borrow(&self) -> &(dyn DueKey + 'a) {
        self
    }
}

impl PartialEq for dyn DueKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn DueKey + '_ {}

impl PartialOrd for dyn DueKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn DueKey + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        // The same order as the derived `Ord` of `Due`.
        self.parts().cmp(&other.parts())
    }
}

/// The ordered (deadline, namespace, key) index.
pub(crate) struct DeadlineIndex {
    set: BTreeSet<Due>,
    /// No entry's deadline is earlier than this (`u64::MAX`: none): lowered by every insert,
    /// made exact by [`refresh`](DeadlineIndex::refresh). Reading it is one field, where the
    /// earliest entry is a walk down the tree.
    bound: u64,
}

impl Default for DeadlineIndex {
    fn default() -> Self {
        DeadlineIndex {
            set: BTreeSet::new(),
            bound: u64::MAX,
        }
    }
}

impl DeadlineIndex {
    pub fn insert(&mut self, deadline: u64, ns: NsId, key: &str) {
        self.bound = self.bound.min(deadline);
        self.set.insert(Due(deadline, tie(key), ns, key.into()));
    }

    /// A lower bound of every deadline in the index (`u64::MAX` when it is surely empty).
    pub fn bound(&self) -> u64 {
        self.bound
    }

    /// Makes [`bound`](DeadlineIndex::bound) the earliest deadline again, and returns it.
    pub fn refresh(&mut self) -> Option<u64> {
        let next = self.next_deadline();
        self.bound = next.unwrap_or(u64::MAX);
        next
    }

    pub fn remove(&mut self, deadline: u64, ns: NsId, key: &str) {
        self.set
            .remove(&(deadline, tie(key), ns, key) as &dyn DueKey);
    }

    /// The earliest deadline, if any key has a TTL.
    pub fn next_deadline(&self) -> Option<u64> {
        self.set.first().map(|due| due.0)
    }

    /// The entries in deadline order, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, NsId, &str)> {
        self.set.iter().map(|Due(d, _, ns, key)| (*d, *ns, &**key))
    }

    /// Removes and returns the earliest entry if its deadline is at or before `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, NsId, Box<str>)> {
        match self.set.first() {
            Some(due) if due.0 <= now => {
                self.set.pop_first().map(|Due(d, _, ns, key)| (d, ns, key))
            }
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
}

/// What one call to [`Engine::sweep`](super::Engine::sweep) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// How many keys this sweep removed.
    pub expired: usize,
    /// True when the budget ran out while more keys were already due.
    pub more_due: bool,
    /// The earliest deadline still in the index, if any.
    pub next_deadline: Option<u64>,
}

/// Decides when the shell should tick next, from the state after the last sweep.
pub(crate) fn next_tick_delay(
    now: u64,
    more_due: bool,
    next_deadline: Option<u64>,
    next_flush_at: Option<u64>,
    min_interval: u64,
    max_interval: u64,
) -> u64 {
    if more_due {
        return min_interval;
    }
    let wanted = [next_deadline, next_flush_at]
        .into_iter()
        .flatten()
        .map(|at| at.saturating_sub(now))
        .min()
        .unwrap_or(max_interval);
    wanted.clamp(min_interval, max_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_is_min_interval_while_sweeps_hit_their_budget() {
        assert_eq!(next_tick_delay(0, true, Some(5_000), None, 10, 1_000), 10);
    }

    #[test]
    fn tick_follows_the_next_deadline_within_bounds() {
        assert_eq!(
            next_tick_delay(1_000, false, Some(1_250), None, 10, 1_000),
            250
        );
        assert_eq!(
            next_tick_delay(1_000, false, Some(1_001), None, 10, 1_000),
            10
        );
        assert_eq!(
            next_tick_delay(1_000, false, Some(90_000), None, 10, 1_000),
            1_000
        );
    }

    #[test]
    fn tick_waits_the_max_interval_when_nothing_is_due() {
        assert_eq!(next_tick_delay(1_000, false, None, None, 10, 1_000), 1_000);
    }

    #[test]
    fn tick_comes_in_time_for_a_due_flush() {
        assert_eq!(
            next_tick_delay(1_000, false, Some(1_900), Some(1_300), 10, 1_000),
            300
        );
    }

    #[test]
    fn pop_due_takes_only_what_is_due_in_deadline_order() {
        let mut idx = DeadlineIndex::default();
        idx.insert(30, 0, "c");
        idx.insert(10, 0, "a");
        idx.insert(20, 1, "b");
        assert_eq!(idx.pop_due(20).map(|e| e.2), Some("a".into()));
        assert_eq!(idx.pop_due(20).map(|e| e.2), Some("b".into()));
        assert_eq!(idx.pop_due(20), None);
        assert_eq!(idx.next_deadline(), Some(30));
        idx.remove(30, 0, "c");
        assert_eq!(idx.len(), 0);
    }
}
