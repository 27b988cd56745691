//! Eviction under a memory cap ([`Config::max_memory`](super::Config::max_memory)): which key
//! goes when the keyspace holds more bytes than the cap allows.
//!
//! Recency is a logical clock, not time: every touch of an entry (a get, a set) while a cap is
//! set stamps it with the next tick, so no clock is read for it. `Lru` is sampled, as Redis
//! does: a few entries picked at random join a pool of the 16 oldest candidates seen so far,
//! and the oldest one still untouched goes — O(1) per eviction, and close to exact LRU. `NearestExpiry` evicts the key whose
//! deadline is nearest (Redis's `volatile-ttl`), and once no key has a TTL, falls back to `Lru`.

/// Which keys a memory cap evicts first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EvictionPolicy {
    /// The least recently used key (a get or a set uses it), approximated by sampling a few
    /// keys at random, as Redis does. The default.
    #[default]
    Lru,
    /// The key whose TTL runs out soonest (Redis's `volatile-ttl`); keys without a TTL go
    /// least recently used first once no key with a TTL is left.
    NearestExpiry,
}

/// Entries sampled per `Lru` eviction.
pub(crate) const LRU_SAMPLES: usize = 5;

/// The oldest candidates an `Lru` eviction keeps between evictions (Redis keeps 16 too).
pub(crate) const POOL_SIZE: usize = 16;

/// Picks a victim never stops on: at most this many samples (or deadline-index entries) are
/// looked at before an eviction gives up for this write (everything left is protected).
pub(crate) const MAX_LOOKS: usize = 64;

/// A small, fast, deterministic generator for sampling (xorshift64*): eviction needs spread,
/// not secrecy.
#[derive(Clone, Debug)]
pub(crate) struct Sampler(u64);

impl Default for Sampler {
    fn default() -> Self {
        Sampler(0x9E37_79B9_7F4A_7C15)
    }
}

impl Sampler {
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}
