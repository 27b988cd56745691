//! The Syncer flushes every store it serves on its interval and when a buffer fills, sweeps
//! expired keys (firing expiry callbacks), flushes one last time at shutdown, and retries failed
//! flushes without losing data. Concurrent writers never lose a write or see a read gap.
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use persist_support::{options, tempdir, T0};
use tidekv::{Backend, Batch, Error, ManualClock, Options, Record, Replay, Store, Syncer};

/// Polls `done` until it holds; fails the test after 20 s (a generous bound, not a timing
/// assertion).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_syncer_flushes_a_store_that_never_calls_flush() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let syncer = Syncer::start(Duration::from_millis(20));
    let store = Store::open(dir.path(), options(&clock).syncer(&syncer)).unwrap();
    store.set("k", "v").unwrap();
    eventually("the write reached the log", || {
        store.disk_stats().unwrap().records == 1
    });
    assert_eq!(store.stats().buffer_bytes, 0);
}

#[test]
fn one_syncer_serves_many_stores_and_forgets_dropped_ones() {
    let dir = tempdir();
    let syncer = Syncer::start(Duration::from_millis(10));
    let stores: Vec<Store> = (0..5)
        .map(|i| {
            Store::open(
                dir.path(),
                Options::default().db(format!("db{i}")).syncer(&syncer),
            )
            .unwrap()
        })
        .collect();
    assert_eq!(syncer.stores(), 5);
    for (i, store) in stores.iter().enumerate() {
        for k in 0..=i {
            store.set(&format!("k{k}"), "v").unwrap();
        }
    }
    for (i, store) in stores.iter().enumerate() {
        eventually("every store was flushed", || {
            store.disk_stats().unwrap().records == i as u64 + 1
        });
    }
    let mut stores = stores;
    stores.pop();
    assert_eq!(syncer.stores(), 4);
    stores[0].close().unwrap();
    assert_eq!(syncer.stores(), 3);
}

#[test]
fn shutdown_flushes_every_store_one_last_time() {
    let dir = tempdir();
    let syncer = Syncer::start(Duration::from_secs(3600));
    // Neither the syncer's interval nor the store's flush interval comes up during the test.
    let opts = |db: &str| {
        Options::default()
            .db(db)
            .flush_interval(Duration::from_secs(3600))
            .syncer(&syncer)
    };
    let a = Store::open(dir.path(), opts("a")).unwrap();
    let b = Store::open(dir.path(), opts("b")).unwrap();
    a.set("x", "1").unwrap();
    b.set("y", "2").unwrap();
    assert_eq!(a.disk_stats().unwrap().records, 0);
    syncer.shutdown();
    assert!(!syncer.is_running());
    assert_eq!(a.disk_stats().unwrap().records, 1);
    assert_eq!(b.disk_stats().unwrap().records, 1);
    // After the syncer is gone the store flushes on its own again.
    a.set("z", "3").unwrap();
    a.flush().unwrap();
    assert_eq!(a.disk_stats().unwrap().records, 2);
}

#[test]
fn dropping_the_syncer_shuts_it_down_with_a_final_flush() {
    let dir = tempdir();
    let syncer = Syncer::start(Duration::from_secs(3600));
    let store = Store::open(dir.path(), Options::default().syncer(&syncer)).unwrap();
    store.set("x", "1").unwrap();
    drop(syncer);
    assert_eq!(store.disk_stats().unwrap().records, 1);
}

#[test]
fn a_full_buffer_is_flushed_promptly_without_waiting_for_the_interval() {
    let dir = tempdir();
    let syncer = Syncer::start(Duration::from_secs(3600));
    let store = Store::open(
        dir.path(),
        Options::default()
            .buffer_size(1024)
            .flush_interval(Duration::from_secs(3600))
            .syncer(&syncer),
    )
    .unwrap();
    store.set("big", "x".repeat(2048)).unwrap();
    eventually("the full buffer was flushed", || store.stats().flushes == 1);
}

#[test]
fn without_a_syncer_a_full_buffer_is_flushed_by_the_writer() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default().buffer_size(1024)).unwrap();
    store.set("small", "x").unwrap();
    assert_eq!(store.stats().flushes, 0);
    store.set("big", "x".repeat(2048)).unwrap();
    assert_eq!(store.stats().flushes, 1);
    assert_eq!(store.disk_stats().unwrap().records, 2);
}

#[test]
fn syncer_sweeps_fire_expiry_callbacks() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let syncer = Syncer::start(Duration::from_millis(10));
    let store = Store::open(
        dir.path(),
        options(&clock)
            .syncer(&syncer)
            .on_expire(move |c: &tidekv::core::Change| {
                sink.lock()
                    .unwrap()
                    .push(format!("{}/{}", c.namespace, c.key))
            }),
    )
    .unwrap();
    let users = store.namespace("users").unwrap();
    users
        .set_with(
            "bob",
            "x",
            tidekv::SetOptions::new().ttl(Duration::from_secs(1)),
        )
        .unwrap();
    store.set("stays", "y").unwrap();
    clock.advance(Duration::from_secs(2));
    eventually("the syncer swept the expired key", || {
        !seen.lock().unwrap().is_empty()
    });
    assert_eq!(*seen.lock().unwrap(), ["users/bob"]);
    assert_eq!(store.stats().expired_active, 1);
}

/// A backend that fails its first `failures` writes, then keeps what it is given.
struct Flaky {
    failures: Arc<AtomicUsize>,
    written: Arc<Mutex<Vec<Record>>>,
}

impl Backend for Flaky {
    fn load(&mut self, _replay: &mut dyn Replay) -> tidekv::Result<()> {
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> tidekv::Result<()> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(Error::Backend("disk on fire".into()));
        }
        self.written
            .lock()
            .unwrap()
            .extend(batch.records.iter().cloned());
        Ok(())
    }
}

#[test]
fn failed_flushes_are_kept_retried_with_backoff_and_lose_nothing() {
    let failures = Arc::new(AtomicUsize::new(3));
    let written = Arc::new(Mutex::new(Vec::new()));
    let backend = Flaky {
        failures: Arc::clone(&failures),
        written: Arc::clone(&written),
    };
    let syncer = Syncer::start(Duration::from_millis(5));
    let store = Store::with_backend(Box::new(backend), Options::default().syncer(&syncer)).unwrap();
    store.set("a", "1").unwrap();
    eventually("the first flush failed", || store.last_error().is_some());
    assert_eq!(
        store.last_error().as_deref(),
        Some("backend error: disk on fire")
    );
    // The store stays usable while flushes fail.
    store.set("b", "2").unwrap();
    assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    eventually("the retries got through", || {
        written.lock().unwrap().len() == 2
    });
    let stats = store.stats();
    assert_eq!(stats.flush_failures, 3);
    assert_eq!(stats.buffer_bytes, 0);
    let mut keys: Vec<String> = written
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.key().to_string())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn an_explicit_flush_reports_a_failure_and_keeps_the_data_buffered() {
    let failures = Arc::new(AtomicUsize::new(1));
    let written = Arc::new(Mutex::new(Vec::new()));
    let backend = Flaky {
        failures: Arc::clone(&failures),
        written: Arc::clone(&written),
    };
    let store = Store::with_backend(Box::new(backend), Options::default()).unwrap();
    store.set("a", "1").unwrap();
    assert!(matches!(store.flush(), Err(Error::Backend(_))));
    assert!(store.stats().buffer_bytes > 0);
    store.flush().unwrap();
    assert_eq!(written.lock().unwrap().len(), 1);
    assert_eq!(store.stats().buffer_bytes, 0);
}

#[test]
fn concurrent_writers_during_flushes_lose_nothing_and_never_see_a_gap() {
    let dir = tempdir();
    let syncer = Syncer::start(Duration::from_millis(1));
    let opts = || Options::default().buffer_size(4 * 1024);
    let store = Store::open(dir.path(), opts().syncer(&syncer)).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..1_500 {
                    let key = format!("t{t}-{}", i % 500);
                    let value = format!("{t}:{i}");
                    store.set(&key, value.clone()).unwrap();
                    // Written just now, maybe while a flush is writing: always readable.
                    assert_eq!(store.get(&key).unwrap().as_deref(), Some(value.as_bytes()));
                    if i % 300 == 0 {
                        store.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(store.stats().flushes > 4);
    drop(store);
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(store.keys("").unwrap().len(), 2_000);
    for t in 0..4 {
        for i in 1_000..1_500 {
            let key = format!("t{t}-{}", i % 500);
            assert_eq!(
                store.get(&key).unwrap().as_deref(),
                Some(format!("{t}:{i}").as_bytes())
            );
        }
    }
}
