//! The wasm shell: the JavaScript `Store` class of the npm package.
//!
//! It owns conversions between JS values and the engine's types, the JS errors callers see, the
//! realm's timer ([`scheduler`]) and the browser and Node.js backends (IndexedDB, and with the
//! `node` feature, segment files through `fs/promises` and a Redis server through node-redis,
//! whose stores are the `RedisStore` class). It never decides what an operation
//! means: that is the engine's job in [`crate::core`]. Everything here runs on one JS thread, so
//! the engine sits in a `RefCell`, not a lock.

mod backend;
mod backend_idb;
#[cfg(feature = "node")]
mod backend_node;
#[cfg(feature = "node")]
mod backend_redis;
mod cache;
mod convert;
mod idb;
mod options;
mod scheduler;
mod store;
#[cfg(feature = "node")]
mod store_redis;
mod walk;

pub use store::JsStore;
#[cfg(feature = "node")]
pub use store_redis::{JsRedisStore, RedisEntryChunks};
pub use walk::EntryChunks;
