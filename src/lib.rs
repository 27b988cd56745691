//! # tidekv
//!
//! A key-value store with per-key expiry and fast buffered writes, from one crate for Rust
//! programs, browsers and Node.js — one API, one data format.
//!
//! ```
//! use std::time::Duration;
//! use tidekv::{ManualClock, Options, SetOptions, Store};
//!
//! # fn main() -> tidekv::Result<()> {
//! let clock = ManualClock::new(1_700_000_000_000);
//! let store = Store::memory(Options::default().clock(clock.clone()))?;
//! store.set_with("session", "abc", SetOptions::new().ttl(Duration::from_secs(60)).tags(["web"]))?;
//! assert_eq!(store.get("session")?.as_deref(), Some(&b"abc"[..]));
//! assert_eq!(store.query_by_tags(&["web"])?, vec!["session".to_string()]);
//!
//! clock.advance(Duration::from_secs(61));
//! assert_eq!(store.get("session")?, None); // expired data never comes back
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! ## How it is built
//! - [`crate::core`]: the engine, a pure state machine with no I/O, no clock, no threads
//!   and no `std` (build with `--no-default-features` for a `no_std` target).
//! - The native shell (on every target but `wasm32`): [`Store`], a `Send + Sync` handle over the
//!   engine with a clock and a [`Backend`].
//! - The wasm shell (`wasm32` only): the JavaScript `Store` class of the npm package.
//!
//! Data flows one way: a call → the engine (which answers reads and queues writes) → a batch →
//! a backend → an acknowledgement back into the engine. See [`guide::architecture`].
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

extern crate alloc;

/// The engine every shell is built on: exposed for tidekv's own tests, fuzz targets and
/// benchmarks, hidden from these docs and not part of the supported API (it may change in any
/// release). Everything a user or a backend author needs is re-exported at the crate root.
#[doc(hidden)]
pub mod core;
mod error;

pub use crate::core::{
    Batch, Change, ChangeOp, Config, EvictionPolicy, Kind, Metadata, PutRecord, Record, Stats,
};
/// The byte buffer values come back in: cheap to clone (reference-counted), derefs to
/// `&[u8]`. Re-exported so callers need no `bytes` dependency of their own.
pub use bytes::Bytes;
pub use error::{Error, Result};

/// Design notes, from the repository's `docs/`: how tidekv is built, and the contract every
/// tidekv client of a Redis server keeps.
pub mod guide {
    #[doc = include_str!("../docs/ARCHITECTURE.md")]
    pub mod architecture {}
    #[doc = include_str!("../docs/REDIS.md")]
    pub mod redis {}
}

/// The longest key (and namespace or tag name) accepted, in bytes.
pub const MAX_KEY_LEN: usize = 65_536;

#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
mod native;
#[cfg(all(feature = "std", not(target_arch = "wasm32")))]
pub use native::*;

#[cfg(all(feature = "std", target_arch = "wasm32"))]
pub mod wasm;

/// Compiles (and runs) the README's Rust examples, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
