//! Point operations in memory — get hit, get miss, set, delete — for every peer at 1 and 2
//! threads, under criterion. One criterion iteration is one operation *on each thread*, so at
//! 2 threads throughput is 2 / time-per-iteration.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};

use crate::peers::{Dash, Floor, Kv, Moka, Tide, TideTtl};
use crate::Scale;

const MASK: usize = (1 << 16) - 1;

/// Keys, values and a fixed pseudo-random access order shared by every peer.
pub struct Data {
    pub keys: Vec<String>,
    misses: Vec<String>,
    order: Vec<usize>,
    pub value: Bytes,
}

pub fn key(i: usize) -> String {
    format!("key:{i:08}")
}

impl Data {
    pub fn new(n: usize) -> Data {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let order = (0..=MASK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as usize
            })
            .collect();
        Data {
            keys: (0..n).map(key).collect(),
            misses: (0..n).map(|i| format!("none:{i:08}")).collect(),
            order,
            value: Bytes::from(vec![0xA5u8; 100]),
        }
    }

    /// The value to store, copied as a user's code would hand over its own buffer: each set
    /// (of every peer) stores its own allocation. A clone of one shared `Bytes` would make
    /// every stored value share one reference count, which threads reading different keys
    /// would then fight over.
    pub fn value(&self) -> Bytes {
        Bytes::copy_from_slice(&self.value)
    }
}

#[derive(Clone, Copy)]
enum Op {
    GetHit,
    GetMiss,
    Set,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetHit => "get_hit",
            Op::GetMiss => "get_miss",
            Op::Set => "set",
            Op::Delete => "delete",
        }
    }
}

/// Runs `iters` operations on each of `threads` threads; returns the wall time from the moment
/// all threads start to the moment the last one ends.
fn run<K: Kv>(kv: &Arc<K>, data: &Arc<Data>, op: Op, threads: usize, iters: u64) -> Duration {
    // Delete needs keys to delete: each thread gets its own fresh ones, inserted untimed.
    let doomed: Vec<Vec<String>> = match op {
        Op::Delete => (0..threads)
            .map(|t| {
                (0..iters)
                    .map(|i| {
                        let k = format!("del:{t}:{i:010}");
                        kv.set(&k, data.value());
                        k
                    })
                    .collect()
            })
            .collect(),
        _ => vec![Vec::new(); threads],
    };
    let barrier = Arc::new(Barrier::new(threads));
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = doomed
            .into_iter()
            .enumerate()
            .map(|(t, doomed)| {
                let (kv, data, barrier) = (kv.clone(), data.clone(), barrier.clone());
                s.spawn(move || {
                    let offset = t * 7_919;
                    barrier.wait();
                    let start = Instant::now();
                    match op {
                        Op::GetHit => {
                            for i in 0..iters as usize {
                                let k = &data.keys[data.order[(i + offset) & MASK]];
                                black_box(kv.get(k));
                            }
                        }
                        Op::GetMiss => {
                            for i in 0..iters as usize {
                                let k = &data.misses[data.order[(i + offset) & MASK]];
                                black_box(kv.get(k));
                            }
                        }
                        Op::Set => {
                            for i in 0..iters as usize {
                                let k = &data.keys[data.order[(i + offset) & MASK]];
                                kv.set(k, data.value());
                            }
                        }
                        Op::Delete => {
                            for k in &doomed {
                                black_box(kv.delete(k));
                            }
                        }
                    }
                    let end = Instant::now();
                    drop(doomed);
                    (start, end)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let start = spans.iter().map(|s| s.0).min().unwrap();
    let end = spans.iter().map(|s| s.1).max().unwrap();
    end - start
}

fn peer<K: Kv>(c: &mut Criterion, data: &Arc<Data>, name: &str, kv: K, threads: usize) {
    let kv = Arc::new(kv);
    for key in &data.keys {
        kv.set(key, data.value());
    }
    kv.settle();
    let mut group = c.benchmark_group(format!("point_{threads}t"));
    for op in [Op::GetHit, Op::GetMiss, Op::Set, Op::Delete] {
        group.bench_function(BenchmarkId::new(name, op.name()), |b| {
            b.iter_custom(|iters| run(&kv, data, op, threads, iters))
        });
    }
    group.finish();
}

pub fn bench(c: &mut Criterion, scale: &Scale) {
    // What one wall-clock read costs on this machine: tidekv reads it for TTLs and flush timing.
    let mut clock = c.benchmark_group("clock");
    clock.bench_function("system_time_now", |b| {
        b.iter(|| black_box(std::time::SystemTime::now()))
    });
    let data = Arc::new(Data::new(scale.point_keys));
    // The same read in a loop of cache-missing lookups: the floor's get hit, without and with
    // one clock read per operation (what a store that checks a TTL on every read pays).
    let floor = Floor::default();
    for key in &data.keys {
        floor.set(key, data.value());
    }
    for (name, with_clock) in [("floor_get", false), ("floor_get_with_clock", true)] {
        clock.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(1);
                if with_clock {
                    black_box(std::time::SystemTime::now());
                }
                black_box(floor.get(&data.keys[data.order[i & MASK]]))
            })
        });
    }
    clock.finish();
    drop(floor);
    for threads in [1, 2, 4] {
        peer(c, &data, "tidekv", Tide::new(), threads);
        peer(c, &data, "tidekv_ttl", TideTtl::new(), threads);
        peer(c, &data, "mutex_hashmap", Floor::default(), threads);
        peer(c, &data, "dashmap", Dash::default(), threads);
        peer(c, &data, "moka_ttl", Moka::new(), threads);
    }
}
