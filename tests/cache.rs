//! What cache users reach for, natively: a memory cap with eviction, get-or-insert without a
//! stampede, iteration, `len` and `clear`.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use tidekv::core::{Change, ChangeOp};
use tidekv::{Error, EvictionPolicy, ManualClock, Options, SetOptions, Store};

fn clock() -> ManualClock {
    ManualClock::new(1_700_000_000_000)
}

fn capped(bytes: u64, policy: EvictionPolicy) -> (Store, Arc<Mutex<Vec<Change>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let store = Store::memory(
        Options::default()
            .clock(clock())
            .max_memory(bytes)
            .eviction(policy)
            .on_change(move |c: &Change| log.lock().unwrap().push(c.clone())),
    )
    .unwrap();
    (store, seen)
}

#[test]
fn the_keyspace_stays_within_the_cap_and_every_eviction_is_counted_and_reported() {
    let (s, seen) = capped(100_000, EvictionPolicy::Lru);
    for i in 0..5_000 {
        s.set(&format!("key:{i}"), vec![7u8; 100]).unwrap();
        assert!(
            s.stats().memory_bytes <= 100_000,
            "over the cap after set {i}"
        );
    }
    let stats = s.stats();
    assert!(stats.evictions > 0);
    assert_eq!(
        stats.keys + stats.evictions,
        5_000,
        "every key is held or was evicted"
    );
    let evicted = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.op == ChangeOp::Evict && !c.remote)
        .count();
    assert_eq!(evicted as u64, stats.evictions);
    // The key just written is never the one evicted for it.
    assert!(s.get("key:4999").unwrap().is_some());
}

#[test]
fn lru_keeps_the_keys_that_are_read_and_evicts_the_ones_that_are_not() {
    let (s, _) = capped(200_000, EvictionPolicy::Lru);
    for i in 0..500 {
        s.set(&format!("hot:{i}"), vec![1u8; 100]).unwrap();
    }
    for round in 0..40 {
        for i in 0..500 {
            assert!(
                s.get(&format!("hot:{i}")).unwrap().is_some(),
                "hot:{i} evicted in round {round}"
            );
        }
        for i in 0..50 {
            s.set(&format!("cold:{round}:{i}"), vec![2u8; 100]).unwrap();
        }
    }
    assert!(
        s.stats().evictions > 0,
        "the cold keys did overflow the cap"
    );
}

#[test]
fn nearest_expiry_evicts_the_soonest_deadline_first_then_falls_back_to_lru() {
    let (s, _) = capped(3_000, EvictionPolicy::NearestExpiry);
    let ttl = |secs| SetOptions::new().ttl(Duration::from_secs(secs));
    s.set_with("late", vec![0u8; 100], ttl(3_600)).unwrap();
    s.set_with("soon", vec![0u8; 100], ttl(60)).unwrap();
    s.set("forever", vec![0u8; 100]).unwrap();
    let mut i = 0;
    while s.stats().evictions == 0 {
        s.set(&format!("filler:{i}"), vec![0u8; 100]).unwrap();
        i += 1;
    }
    assert!(
        s.get("soon").unwrap().is_none(),
        "the nearest deadline went first"
    );
    assert!(s.get("late").unwrap().is_some());
    while s.stats().evictions == 1 {
        s.set(&format!("filler:{i}"), vec![0u8; 100]).unwrap();
        i += 1;
    }
    assert!(s.get("late").unwrap().is_none(), "then the next deadline");
    // No key has a TTL any more: least recently used goes next, never the cap.
    for _ in 0..100 {
        s.set(&format!("filler:{i}"), vec![0u8; 100]).unwrap();
        i += 1;
        assert!(s.stats().memory_bytes <= 3_000);
    }
}

#[test]
fn a_cap_of_zero_and_an_entry_larger_than_the_cap_are_refused_clearly() {
    let err = Store::memory(Options::default().max_memory(0)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidOption { option, .. } if option == "max_memory"),
        "{err:?}"
    );
    let (s, _) = capped(2_000, EvictionPolicy::Lru);
    s.set("small", "v").unwrap();
    let err = s.set("big", vec![0u8; 5_000]).unwrap_err();
    assert!(
        matches!(err, Error::ValueTooLarge { max: 2_000, .. }),
        "{err:?}"
    );
    assert!(s.get("big").unwrap().is_none(), "nothing stored");
    assert!(s.get("small").unwrap().is_some(), "nothing evicted for it");
    assert_eq!(s.stats().evictions, 0);
}

#[test]
fn an_evicted_key_is_deleted_from_the_files_too() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options::default().db("cap").max_memory(50_000);
    let s = Store::open(dir.path(), options()).unwrap();
    for i in 0..2_000 {
        s.set(&format!("key:{i}"), vec![3u8; 100]).unwrap();
    }
    let held: HashSet<String> = s.keys("").unwrap().into_iter().collect();
    assert!(held.len() < 2_000);
    s.close().unwrap();
    // Reopened without a cap: exactly the keys held at close, none of the evicted ones.
    let s = Store::open(dir.path(), Options::default().db("cap")).unwrap();
    let reopened: HashSet<String> = s.keys("").unwrap().into_iter().collect();
    assert_eq!(reopened, held);
    s.close().unwrap();
    // Reopened with a smaller cap: what does not fit is evicted at open.
    let s = Store::open(dir.path(), Options::default().db("cap").max_memory(10_000)).unwrap();
    assert!(s.stats().memory_bytes <= 10_000);
    assert!(s.stats().evictions > 0);
}

#[test]
fn concurrent_misses_of_one_key_run_the_loader_once_and_all_get_its_value() {
    let s = Store::memory(Options::default()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let (s, calls, start) = (s.clone(), Arc::clone(&calls), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                s.get_or_insert_with("user:1", SetOptions::new().tag("users"), || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(100));
                    Ok::<_, String>("ada")
                })
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(&t.join().unwrap()[..], b"ada");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one load for sixteen misses"
    );
    assert_eq!(
        s.query_by_tags(&["users"]).unwrap(),
        ["user:1"],
        "stored with its options"
    );
}

#[test]
fn a_failing_or_panicking_loader_reaches_every_waiter_and_stores_nothing() {
    let s = Store::memory(Options::default()).unwrap();
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, start) = (s.clone(), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                s.get_or_insert_with("k", SetOptions::new(), || {
                    thread::sleep(Duration::from_millis(50));
                    Err::<&str, _>("upstream is down")
                })
            })
        })
        .collect();
    for t in threads {
        let err = t.join().unwrap().unwrap_err();
        assert!(
            matches!(&err, Error::Load(m) if m.contains("upstream is down")),
            "{err:?}"
        );
    }
    assert!(s.get("k").unwrap().is_none());
    // A loader that panics: the waiters are released with an error, never left hanging.
    let waiter = {
        let s = s.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            s.get_or_insert_with("p", SetOptions::new(), || Ok::<_, String>("late"))
        })
    };
    let leader = {
        let s = s.clone();
        thread::spawn(move || {
            s.get_or_insert_with("p", SetOptions::new(), || -> Result<&str, String> {
                thread::sleep(Duration::from_millis(100));
                panic!("loader bug")
            })
        })
    };
    assert!(leader.join().is_err(), "the leader's panic is its own");
    let answer = waiter.join().unwrap();
    assert!(
        matches!(&answer, Err(Error::Load(m)) if m.contains("panicked")) || answer.is_ok(),
        "{answer:?}"
    );
    // A value the store refuses: an error, nothing stored.
    let small = Store::memory(Options::default().max_value_size(4)).unwrap();
    let err = small
        .get_or_insert_with("k", SetOptions::new(), || Ok::<_, String>("too long"))
        .unwrap_err();
    assert!(
        matches!(&err, Error::Load(m) if m.contains("larger")),
        "{err:?}"
    );
    assert!(small.get("k").unwrap().is_none());
}

#[test]
fn entries_walk_every_live_key_once_even_while_keys_are_deleted() {
    let c = clock();
    let s = Store::memory(Options::default().clock(c.clone())).unwrap();
    for i in 0..2_000 {
        s.set(&format!("a:{i:04}"), i.to_string()).unwrap();
    }
    for i in 0..100 {
        s.set(&format!("b:{i}"), "other prefix").unwrap();
    }
    s.set_with(
        "a:expired",
        "x",
        SetOptions::new().ttl(Duration::from_secs(1)),
    )
    .unwrap();
    c.advance(Duration::from_secs(2));
    let mut seen = HashSet::new();
    for (n, entry) in s.entries("a:").unwrap().enumerate() {
        let (key, value, meta) = entry.unwrap();
        assert_eq!(value.len() as u64, meta.size);
        assert!(seen.insert(key.clone()), "{key} returned twice");
        // Delete keys the walk has not reached yet and keys it has: the rest stay exact.
        if n % 3 == 0 {
            s.delete(&format!("a:{:04}", (n * 7) % 2_000)).unwrap();
        }
    }
    assert!(!seen.contains("a:expired"));
    assert!(seen.iter().all(|k| k.starts_with("a:")));
    // Every key never deleted was returned.
    for key in s.keys("a:").unwrap() {
        assert!(seen.contains(&key), "{key} missed");
    }
    assert_eq!(s.len().unwrap(), s.keys("").unwrap().len());
}

#[test]
fn clear_removes_every_key_as_one_change_durable_at_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Options::default().db("clear")).unwrap();
    let users = s.namespace("users").unwrap();
    for i in 0..300 {
        users.set(&format!("u:{i}"), "v").unwrap();
    }
    s.set("kept", "in another namespace").unwrap();
    s.flush().unwrap();
    assert_eq!(users.len().unwrap(), 300);
    assert_eq!(users.clear().unwrap(), 300);
    assert!(users.is_empty().unwrap());
    assert_eq!(users.clear().unwrap(), 0, "nothing left to clear");
    s.close().unwrap();
    let s = Store::open(dir.path(), Options::default().db("clear")).unwrap();
    assert!(s.namespace("users").unwrap().is_empty().unwrap());
    assert_eq!(
        s.get("kept").unwrap().as_deref(),
        Some(&b"in another namespace"[..])
    );
}
