//! Expiry: the cost of a sweep tick when nothing is due, and the time to reclaim a mass of keys
//! that expire at once, with the latency of concurrent gets while it happens.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use tidekv::core::{Config, Engine};
use tidekv::{Kind, ManualClock, Options, SetOptions, Store, Syncer};

use crate::peers::{Kv, Moka, Tide, LONG_TTL};
use crate::point::key;
use crate::results::record;
use crate::Scale;

/// Keys read by the concurrent reader; they never expire.
const LIVE: usize = 10_000;
const NOW: u64 = 1_700_000_000_000;

pub fn bench_tick(c: &mut Criterion, scale: &Scale) {
    let n = scale.big;
    let value = Bytes::from(vec![7u8; 100]);
    let mut group = c.benchmark_group("sweep_tick");

    // The core alone: Engine::sweep with the default budget.
    let mut engine = Engine::new(Config::default()).expect("engine");
    let no_tags: [&str; 0] = [];
    for i in 0..n {
        engine
            .set(
                0,
                &key(i),
                value.clone(),
                Kind::Bytes,
                Some(3_600_000),
                &no_tags,
                NOW,
            )
            .expect("set");
        if i % 10_000 == 0 {
            // Keep the write buffer from growing without bound, as a shell's flushes would.
            if let Some(batch) = engine.take_batch() {
                engine.ack(batch.id);
            }
        }
    }
    if let Some(batch) = engine.take_batch() {
        engine.ack(batch.id);
    }
    group.bench_function("tidekv_engine_sweep", |b| {
        b.iter(|| black_box(engine.sweep(NOW + 1, 1_000)))
    });
    drop(engine);

    // The store: lock + clock + sweep, what a timer tick calls.
    let store = Tide::new();
    for i in 0..n {
        store
            .0
            .set_with(&key(i), value.clone(), SetOptions::new().ttl(LONG_TTL))
            .expect("set");
    }
    store.0.flush().expect("flush");
    group.bench_function("tidekv_store_sweep_expired", |b| {
        b.iter(|| black_box(store.0.sweep_expired()))
    });
    drop(store);

    // moka's housekeeping with nothing due.
    let moka = Moka::new();
    for i in 0..n {
        moka.set(&key(i), value.clone());
    }
    moka.0.run_pending_tasks();
    group.bench_function("moka_run_pending_tasks", |b| {
        b.iter(|| moka.0.run_pending_tasks())
    });
    group.finish();
}

/// Runs `reclaim` while another thread reads live keys as fast as it can; returns the reclaim
/// time and the reader's latencies (ns) during it.
fn with_reader<K: Kv>(kv: Arc<K>, reclaim: impl FnOnce() -> usize) -> (Duration, usize, Histogram) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let reader = {
        let (kv, stop, started) = (kv.clone(), stop.clone(), started.clone());
        std::thread::spawn(move || {
            let keys: Vec<String> = (0..LIVE).map(|i| format!("live:{i:06}")).collect();
            let mut lat = Histogram::default();
            let mut i = 0usize;
            started.store(true, Ordering::Release);
            while !stop.load(Ordering::Acquire) {
                let t = Instant::now();
                let hit = kv.get(&keys[i % LIVE]);
                lat.add(t.elapsed().as_nanos() as u64);
                assert!(hit.is_some(), "a live key went missing during the reclaim");
                i = i.wrapping_add(7_919);
            }
            lat
        })
    };
    while !started.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    let t = Instant::now();
    let removed = reclaim();
    let took = t.elapsed();
    stop.store(true, Ordering::Release);
    let lat = reader.join().expect("reader");
    (took, removed, lat)
}

/// Latencies in buckets: exact below 1,024 ns, then 64 buckets per power of two (within
/// ~1.6%), so a reader can record hundreds of millions of gets in constant memory.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; 1_024 + 64 * 64],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    fn bucket(ns: u64) -> usize {
        if ns < 1_024 {
            return ns as usize;
        }
        let exp = 63 - ns.leading_zeros() as usize; // >= 10
        let sub = ((ns >> (exp - 6)) & 63) as usize;
        1_024 + (exp - 10) * 64 + sub
    }

    fn lower_bound(bucket: usize) -> u64 {
        if bucket < 1_024 {
            return bucket as u64;
        }
        let (exp, sub) = ((bucket - 1_024) / 64 + 10, (bucket - 1_024) % 64);
        (1u64 << exp) + ((sub as u64) << (exp - 6))
    }

    fn add(&mut self, ns: u64) {
        let last = self.counts.len() - 1;
        self.counts[Self::bucket(ns).min(last)] += 1;
        self.total += 1;
        self.max = self.max.max(ns);
    }

    fn pct(&self, p: f64) -> f64 {
        if self.total == 0 {
            return f64::NAN;
        }
        let want = ((self.total - 1) as f64 * p).round() as u64 + 1;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::lower_bound(i) as f64;
            }
        }
        self.max as f64
    }
}

fn report(peer: &str, took: Duration, removed: usize, lat: &Histogram) {
    record(
        "reclaim",
        "reclaim_time",
        peer,
        took.as_secs_f64() * 1e3,
        "ms",
    );
    record("reclaim", "keys_reclaimed", peer, removed as f64, "keys");
    record("reclaim", "get_p50", peer, lat.pct(0.50), "ns");
    record("reclaim", "get_p99", peer, lat.pct(0.99), "ns");
    record("reclaim", "get_max", peer, lat.max as f64 / 1e6, "ms");
    record("reclaim", "gets_during", peer, lat.total as f64, "gets");
}

/// `LIVE` keys without a TTL, then `n` keys that all expire 1 s from the store's clock, flushed.
fn fill_for_reclaim(store: &Tide, n: usize, value: &Bytes) {
    for i in 0..LIVE {
        store.set(&format!("live:{i:06}"), value.clone());
    }
    for i in 0..n {
        store
            .0
            .set_with(
                &key(i),
                value.clone(),
                SetOptions::new().ttl(Duration::from_secs(1)),
            )
            .expect("set");
    }
    store.0.flush().expect("flush");
}

pub fn bench_reclaim(scale: &Scale) {
    let n = scale.big;
    let value = Bytes::from(vec![7u8; 100]);

    // tidekv: a manual clock makes every key due at the same instant.
    let clock = ManualClock::new(NOW);
    let store = Arc::new(Tide(
        Store::memory(Options::default().clock(clock.clone())).expect("open"),
    ));
    fill_for_reclaim(&store, n, &value);
    clock.advance(Duration::from_secs(2));
    let s = store.clone();
    let (took, removed, lat) = with_reader(store.clone(), move || s.0.sweep_expired());
    report("tidekv sweep_expired()", took, removed, &lat);
    drop(store);

    // tidekv with a Syncer: what a store left to itself does — a sweep of `sweep_budget` keys
    // per tick, ticks as close as `min_tick` while sweeps hit their budget.
    let clock = ManualClock::new(NOW);
    let syncer = Syncer::start(Duration::from_secs(1));
    let store = Arc::new(Tide(
        Store::memory(Options::default().clock(clock.clone()).syncer(&syncer)).expect("open"),
    ));
    fill_for_reclaim(&store, n, &value);
    let s = store.clone();
    let (took, _, lat) = with_reader(store.clone(), move || {
        clock.advance(Duration::from_secs(2));
        let give_up = Instant::now() + Duration::from_secs(300);
        while s.0.stats().keys > LIVE as u64 && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(2));
        }
        n - (s.0.stats().keys as usize - LIVE)
    });
    report(
        "tidekv + Syncer (ticks)",
        took,
        n - (store.0.stats().keys as usize - LIVE),
        &lat,
    );
    drop(store);
    syncer.shutdown();

    // moka: per-entry expiry (its timer wheel), real time.
    struct PerKey;
    impl moka::Expiry<String, Bytes> for PerKey {
        fn expire_after_create(&self, key: &String, _: &Bytes, _: Instant) -> Option<Duration> {
            (!key.starts_with("live:")).then_some(Duration::from_secs(1))
        }
    }
    let moka = Arc::new(Moka(
        moka::sync::Cache::builder().expire_after(PerKey).build(),
    ));
    for i in 0..LIVE {
        moka.set(&format!("live:{i:06}"), value.clone());
    }
    for i in 0..n {
        moka.set(&key(i), value.clone());
    }
    // Every key is due 1 s after its insert: wait until the last one is.
    std::thread::sleep(Duration::from_millis(1_100));
    let m = moka.clone();
    let (took, _, lat) = with_reader(moka.clone(), move || {
        let give_up = Instant::now() + Duration::from_secs(60);
        while m.0.entry_count() > LIVE as u64 && Instant::now() < give_up {
            m.0.run_pending_tasks();
        }
        0
    });
    report("moka run_pending_tasks()", took, n, &lat);
}
