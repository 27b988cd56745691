//! The native shell: everything that needs `std` — locks, the clock, threads, files.
//!
//! - `store`: [`Store`]/[`Namespace`] handles over the engine and a [`Backend`].
//! - `file_log`: the crash-safe file log behind [`Store::open`] (layout in
//!   [`crate::core::log`]); `lock`: its one-process-per-database lock, with `owner` (Unix): the
//!   owner socket that native and Node.js processes both honour.
//! - `syncer`: the [`Syncer`] thread that flushes and sweeps many stores.
//!
//! It owns time and I/O and nothing else: what a call means is decided by the engine in
//! [`crate::core`].

mod backend;
mod batch;
mod clock;
mod file_log;
mod lock;
mod memory;
mod options;
#[cfg(unix)]
mod owner;
#[cfg(feature = "redis")]
mod redis;
mod shards;
mod store;
mod syncer;
mod value;

pub use backend::{Backend, Compaction, CompactionReport, DiskStats, RemoteChanges, Replay, Role};
pub use batch::WriteBatch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::MemoryBackend;
pub use options::{
    Durability, Options, SetOptions, DEFAULT_COMPACTION_MIN_SIZE, DEFAULT_SEGMENT_SIZE,
};
pub use store::{Entries, Namespace, Store};
pub use syncer::Syncer;
pub use value::{IntoValue, Json};
