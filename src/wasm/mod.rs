//! The wasm shell: the JavaScript `Store` class of the npm package.
//!
//! It owns conversions between JS values and the engine's types, the JS errors callers see, and
//! (later) timers and browser/Node backends. It never decides what an operation means: that is
//! the engine's job in [`crate::core`]. Everything here runs on one JS thread, so the engine sits
//! in a `RefCell`, not a lock.

mod convert;
mod store;

pub use store::JsStore;
