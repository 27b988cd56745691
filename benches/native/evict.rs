//! The cost of a memory cap: a get hit that stamps recency against one without a cap, and a
//! set of a new key that evicts one against the same set on a store that just grows.

use std::hint::black_box;
use std::time::Instant;

use criterion::Criterion;
use tidekv::{Options, Store};

use crate::point::Data;
use crate::Scale;

/// A store preloaded with every key of `data`, capped at `cap` bytes (none for `None`).
fn preloaded(data: &Data, cap: Option<u64>) -> Store {
    let options = match cap {
        Some(bytes) => Options::default().max_memory(bytes),
        None => Options::default(),
    };
    let store = Store::memory(options).expect("open");
    for key in &data.keys {
        store.set(key, data.value()).expect("set");
    }
    store.flush().expect("flush");
    store
}

pub fn bench(c: &mut Criterion, scale: &Scale) {
    let data = Data::new(scale.point_keys);
    let uncapped = preloaded(&data, None);
    let held = uncapped.stats().memory_bytes;
    let mut group = c.benchmark_group("evict");
    // Get hits: a cap with room to spare, so every key stays and every hit stamps recency.
    let roomy = preloaded(&data, Some(held * 2));
    for (name, store) in [("no_cap", &uncapped), ("capped", &roomy)] {
        group.bench_function(format!("{name}/get_hit"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(7_919);
                black_box(store.get(&data.keys[i % data.keys.len()]).expect("get"))
            })
        });
    }
    drop(roomy);
    // Sets of keys never seen before: the uncapped store grows; the one at its cap evicts a
    // key for every key it takes. Key names are built in both loops alike.
    let full = preloaded(&data, Some(held));
    let mut n = 0u64;
    for (name, store) in [("no_cap", &uncapped), ("at_cap", &full)] {
        group.bench_function(format!("{name}/set_new"), |b| {
            b.iter_custom(|iters| {
                let keys: Vec<String> = (0..iters).map(|i| format!("new:{}", n + i)).collect();
                n += iters;
                let start = Instant::now();
                for key in &keys {
                    store.set(key, data.value()).expect("set");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
    crate::results::record(
        "evict",
        "evictions",
        "at_cap",
        full.stats().evictions as f64,
        "keys",
    );
}
