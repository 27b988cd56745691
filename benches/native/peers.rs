//! The stores under test behind one small trait, so every bench loop is the same code for
//! every peer (monomorphised: no dynamic dispatch in the timed loops).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tidekv::{Options, SetOptions, Store};

/// A TTL long enough never to pass during a bench.
pub const LONG_TTL: Duration = Duration::from_secs(3_600);

pub trait Kv: Send + Sync + 'static {
    fn get(&self, key: &str) -> Option<Bytes>;
    fn set(&self, key: &str, value: Bytes);
    fn delete(&self, key: &str) -> bool;
    /// Brings the store to its steady state after a preload (tidekv: flush the write buffer,
    /// as its Syncer would within one interval).
    fn settle(&self) {}
}

/// tidekv's in-memory store, default options (system clock, 1 MiB buffer, memory backend).
pub struct Tide(pub Store);

impl Tide {
    pub fn new() -> Tide {
        Tide(Store::memory(Options::default()).expect("open"))
    }
}

impl Kv for Tide {
    fn settle(&self) {
        self.0.flush().expect("flush")
    }
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).expect("get")
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0.set(key, value).expect("set")
    }
    fn delete(&self, key: &str) -> bool {
        self.0.delete(key).expect("delete")
    }
}

/// tidekv where every write carries a TTL (what moka's `time_to_live` does to every entry).
pub struct TideTtl(pub Store);

impl TideTtl {
    pub fn new() -> TideTtl {
        TideTtl(Store::memory(Options::default()).expect("open"))
    }
}

impl Kv for TideTtl {
    fn settle(&self) {
        self.0.flush().expect("flush")
    }
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).expect("get")
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0
            .set_with(key, value, SetOptions::new().ttl(LONG_TTL))
            .expect("set")
    }
    fn delete(&self, key: &str) -> bool {
        self.0.delete(key).expect("delete")
    }
}

/// The floor: `std::sync::Mutex<std::collections::HashMap<String, Bytes>>`.
#[derive(Default)]
pub struct Floor(Mutex<HashMap<String, Bytes>>);

impl Kv for Floor {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0.lock().unwrap().insert(key.to_owned(), value);
    }
    fn delete(&self, key: &str) -> bool {
        self.0.lock().unwrap().remove(key).is_some()
    }
}

/// `dashmap::DashMap<String, Bytes>` (sharded locks).
#[derive(Default)]
pub struct Dash(dashmap::DashMap<String, Bytes>);

impl Kv for Dash {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key).map(|v| v.clone())
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0.insert(key.to_owned(), value);
    }
    fn delete(&self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }
}

/// `moka::sync::Cache<String, Bytes>` with a time-to-live on every entry.
pub struct Moka(pub moka::sync::Cache<String, Bytes>);

impl Moka {
    pub fn new() -> Moka {
        Moka::with_ttl(LONG_TTL)
    }
    pub fn with_ttl(ttl: Duration) -> Moka {
        Moka(moka::sync::Cache::builder().time_to_live(ttl).build())
    }
}

impl Kv for Moka {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.0.get(key)
    }
    fn set(&self, key: &str, value: Bytes) {
        self.0.insert(key.to_owned(), value);
    }
    fn delete(&self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }
}
