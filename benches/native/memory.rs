//! Memory per key: bytes a store allocates beyond the key and the value, at `scale.big` keys.
//! Measured with the counting allocator (requested bytes, on this thread).

use bytes::Bytes;

use crate::alloc_count::live_bytes;
use crate::peers::{Dash, Floor, Kv, Moka, Tide, TideTtl};
use crate::point::key;
use crate::results::record;
use crate::Scale;

const VALUE_LEN: usize = 100;

fn measure<K: Kv>(name: &str, n: usize, make: impl FnOnce() -> K, settle: impl Fn(&K)) {
    let keys: Vec<String> = (0..n).map(key).collect();
    let key_bytes: usize = keys.iter().map(String::len).sum();
    let before = live_bytes();
    let kv = make();
    for k in &keys {
        // A fresh value per key, allocated exactly (capacity == length), counted as value bytes.
        kv.set(k, Bytes::from(vec![1u8; VALUE_LEN]));
    }
    settle(&kv);
    let used = live_bytes() - before;
    let overhead = (used as f64 - (key_bytes + n * VALUE_LEN) as f64) / n as f64;
    record("memory", "total_per_key", name, used as f64 / n as f64, "B");
    record("memory", "overhead_per_key", name, overhead, "B");
    drop(kv);
}

pub fn bench(scale: &Scale) {
    let n = scale.big;
    measure("tidekv", n, Tide::new, |s| s.0.flush().expect("flush"));
    measure("tidekv_ttl", n, TideTtl::new, |s| {
        s.0.flush().expect("flush")
    });
    measure("mutex_hashmap", n, Floor::default, |_| {});
    measure("dashmap", n, Dash::default, |_| {});
    measure("moka_ttl", n, Moka::new, |m| m.0.run_pending_tasks());
}
