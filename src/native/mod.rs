//! The native shell: everything that needs `std` — locks, the clock, backends.
//!
//! It owns time and I/O and nothing else: what a call means is decided by the engine in
//! [`crate::core`].

mod backend;
mod clock;
mod memory;
mod options;
mod store;

pub use backend::{Backend, Role};
pub use clock::{Clock, ManualClock, SystemClock};
pub use memory::MemoryBackend;
pub use options::{Options, SetOptions};
pub use store::{Namespace, Store};
