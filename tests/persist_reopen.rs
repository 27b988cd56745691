//! A file-backed store keeps what it acknowledged across close and reopen: values, kinds,
//! timestamps, TTLs (absolute deadlines) and tags, in every namespace; it refuses bad database
//! names and a second open of the same database.
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::time::Duration;

use persist_support::{open, options, segments, tempdir, T0};
use tidekv::{Durability, Error, Kind, ManualClock, Options, SetOptions, Store};

#[test]
fn everything_written_is_there_after_close_and_reopen() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    store
        .set_with(
            "page",
            "<h1>hi</h1>",
            SetOptions::new()
                .kind(Kind::Text)
                .ttl(Duration::from_secs(60))
                .tags(["web", "hot"]),
        )
        .unwrap();
    store.set("raw", vec![0u8, 255, 7]).unwrap();
    store.set("gone", "x").unwrap();
    assert!(store.delete("gone").unwrap());
    let users = store.namespace("users").unwrap();
    users
        .set_with(
            "alice",
            r#"{"admin":true}"#,
            SetOptions::new().kind(Kind::Json),
        )
        .unwrap();
    let before = store.get_with_metadata("page").unwrap();
    store.close().unwrap();

    clock.advance(Duration::from_secs(10));
    let store = open(dir.path(), &clock);
    assert_eq!(store.get_with_metadata("page").unwrap(), before);
    let (_, meta) = before.unwrap();
    assert_eq!(meta.expires_at, Some(T0 + 60_000));
    assert_eq!(meta.kind, Kind::Text);
    assert_eq!(meta.tags, ["hot", "web"]);
    assert_eq!(store.ttl("page").unwrap(), Some(Duration::from_secs(50)));
    assert_eq!(
        store.get("raw").unwrap().as_deref(),
        Some(&[0u8, 255, 7][..])
    );
    assert_eq!(store.get("gone").unwrap(), None);
    assert_eq!(store.keys("").unwrap(), ["page", "raw"]);
    assert_eq!(store.query_by_tags(&["web", "hot"]).unwrap(), ["page"]);
    let users = store.namespace("users").unwrap();
    let (value, meta) = users.get_with_metadata("alice").unwrap().unwrap();
    assert_eq!(&value[..], br#"{"admin":true}"#);
    assert_eq!(meta.kind, Kind::Json);
    // "gone" was set and deleted before one flush: its single record is the Delete.
    assert_eq!(store.disk_stats().unwrap().records_replayed, 4);
}

#[test]
fn dropping_the_last_handle_flushes_and_releases_the_lock() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let ns = store.namespace("n").unwrap();
    store.set("k", "v").unwrap();
    drop(store);
    ns.set("k2", "v2").unwrap(); // the namespace handle keeps the store open
    drop(ns);
    let store = open(dir.path(), &clock);
    assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    let ns = store.namespace("n").unwrap();
    assert_eq!(ns.get("k2").unwrap().as_deref(), Some(&b"v2"[..]));
}

#[test]
fn a_later_record_shadows_an_earlier_one_across_segments() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let opts = || options(&clock).segment_size(1024);
    let store = Store::open(dir.path(), opts()).unwrap();
    for round in 0..20 {
        for key in ["a", "b", "c"] {
            store
                .set(key, format!("{key}{round}:{}", "x".repeat(100)))
                .unwrap();
        }
        if round == 10 {
            store.delete("b").unwrap();
        }
        store.flush().unwrap();
    }
    store.delete("c").unwrap();
    store.close().unwrap();
    assert!(
        segments(dir.path(), "default").len() > 3,
        "small segments roll over"
    );

    let store = Store::open(dir.path(), opts()).unwrap();
    let a = store.get("a").unwrap().unwrap();
    assert!(a.starts_with(b"a19:"), "{a:?}");
    assert!(store.get("b").unwrap().unwrap().starts_with(b"b19:"));
    assert_eq!(store.get("c").unwrap(), None);
}

#[test]
fn ttl_deadlines_hold_across_restarts_and_expired_records_are_dropped_at_open() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    let ttl = |s| SetOptions::new().ttl(Duration::from_secs(s)).tag("t");
    store.set_with("short", "1", ttl(10)).unwrap();
    store.set_with("long", "2", ttl(100)).unwrap();
    store.set("forever", "3").unwrap();
    store.close().unwrap();

    // Closed for 30 s: "short" expired meanwhile, "long" has 70 s left.
    clock.advance(Duration::from_secs(30));
    let store = open(dir.path(), &clock);
    assert_eq!(store.get("short").unwrap(), None);
    assert_eq!(store.ttl("long").unwrap(), Some(Duration::from_secs(70)));
    assert_eq!(store.ttl("forever").unwrap(), None);
    assert_eq!(store.keys("").unwrap(), ["forever", "long"]);
    assert_eq!(store.query_by_tags(&["t"]).unwrap(), ["long"]);
    assert_eq!(store.disk_stats().unwrap().expired_at_open, 1);
    assert_eq!(store.stats().keys, 2);
    store.close().unwrap();

    clock.advance(Duration::from_secs(70));
    let store = open(dir.path(), &clock);
    assert_eq!(store.keys("").unwrap(), ["forever"]);
}

#[test]
fn expire_and_persist_survive_a_reopen() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    store.set("a", "1").unwrap();
    store
        .set_with("b", "2", SetOptions::new().ttl(Duration::from_secs(5)))
        .unwrap();
    store.expire("a", Duration::from_secs(20)).unwrap();
    store.persist("b").unwrap();
    store.close().unwrap();
    clock.advance(Duration::from_secs(10));
    let store = open(dir.path(), &clock);
    assert_eq!(store.ttl("a").unwrap(), Some(Duration::from_secs(10)));
    assert_eq!(store.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.ttl("b").unwrap(), None);
}

#[test]
fn compressed_values_round_trip_and_reopen_and_look_alike_values_do_not() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let opts = || {
        options(&clock)
            .compression(true)
            .compression_threshold(1024)
    };
    let big = "tidekv ".repeat(10_000).into_bytes();
    // A small value that starts with an LZ4 frame magic and a block that would decompress.
    let magic = [0x04, 0x22, 0x4d, 0x18, 0x40, 0x00, 0x00, 0x00];
    let store = Store::open(dir.path(), opts()).unwrap();
    store.set("big", big.clone()).unwrap();
    store.set("magic", magic.to_vec()).unwrap();
    let (_, meta) = store.get_with_metadata("big").unwrap().unwrap();
    assert!(meta.compressed);
    assert_eq!(meta.size, big.len() as u64);
    assert!(
        meta.stored_size > 0 && meta.stored_size < 1_000,
        "metadata reports the stored size, got {}",
        meta.stored_size
    );
    store.close().unwrap();
    let disk = store_files_size(dir.path());
    assert!(
        disk < 5_000,
        "70 kB of repeated text is stored compressed, got {disk} bytes"
    );

    // Reading needs no option: the record says whether it is compressed.
    let store = Store::open(dir.path(), options(&clock)).unwrap();
    assert_eq!(store.get("big").unwrap().as_deref(), Some(&big[..]));
    assert_eq!(store.get("magic").unwrap().as_deref(), Some(&magic[..]));
    let (_, meta) = store.get_with_metadata("magic").unwrap().unwrap();
    assert!(!meta.compressed);
    assert_eq!((meta.size, meta.stored_size), (8, 8));
}

fn store_files_size(dir: &std::path::Path) -> u64 {
    segments(dir, "default")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn bad_database_names_are_refused_and_nothing_is_created() {
    let dir = tempdir();
    let root = dir.path().join("root");
    for name in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a\\b",
        "a\0b",
        "/abs",
        "x y",
        &"n".repeat(129),
    ] {
        match Store::open(&root, Options::default().db(name)) {
            Err(Error::InvalidName { name: got, .. }) => assert_eq!(got, name),
            other => panic!("db name {name:?} gave {other:?}"),
        }
    }
    assert!(!root.exists(), "nothing may be created for a bad name");
    assert!(!dir.path().join("x").exists());
    for name in ["a", "my-db_1.v2", &"n".repeat(128)] {
        Store::open(&root, Options::default().db(name))
            .unwrap()
            .close()
            .unwrap();
        assert!(root.join(name).is_dir());
    }
}

#[test]
fn a_second_open_in_the_same_process_is_locked_until_the_first_closes() {
    let dir = tempdir();
    let first = Store::open(dir.path(), Options::default()).unwrap();
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert!(path.ends_with("default"), "{path}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Another database of the same directory is independent.
    let other = Store::open(dir.path(), Options::default().db("other")).unwrap();
    first.close().unwrap();
    let again = Store::open(dir.path(), Options::default()).unwrap();
    again.close().unwrap();
    other.close().unwrap();
}

#[test]
fn calls_after_close_fail_with_closed() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.close().unwrap();
    assert!(matches!(store.set("k", "v"), Err(Error::Closed)));
    assert!(matches!(store.flush(), Err(Error::Closed)));
    assert!(matches!(store.compact(), Err(Error::Closed)));
    assert!(matches!(store.close(), Err(Error::Closed)));
}

#[test]
fn invalid_log_options_are_refused_before_anything_is_created() {
    let dir = tempdir();
    let root = dir.path().join("root");
    for opts in [
        Options::default().segment_size(10),
        Options::default().compaction_ratio(0.0),
        Options::default().compaction_ratio(1.5),
        Options::default().buffer_size(0),
    ] {
        assert!(matches!(
            Store::open(&root, opts),
            Err(Error::InvalidOption { .. })
        ));
    }
    assert!(!root.exists());
}

#[test]
fn buffered_durability_also_persists_on_flush() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), options(&clock).durability(Durability::Buffered)).unwrap();
    store.set("k", "v").unwrap();
    store.flush().unwrap();
    assert_eq!(store.stats().flushes, 1);
    store.close().unwrap();
    let store = open(dir.path(), &clock);
    assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// The value of `key` after `round` rounds of writes: sizes from a few bytes to several KiB, so
/// a replay copies some values and keeps others as slices of the window they were read in.
fn mixed_value(key: u32, round: u32) -> Vec<u8> {
    let len = [7, 100, 1_023, 1_024, 3_000, 9_000][(key as usize + round as usize) % 6];
    (0..len)
        .map(|i| (key as usize * 31 + round as usize * 7 + i) as u8)
        .collect()
}

#[test]
fn a_reopened_store_returns_every_key_whether_its_value_was_copied_or_shared() {
    // About 13 MiB of records: several of the replay's 4 MiB read windows, frames that straddle
    // them, and two segments, with overwrites and deletes in between.
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let keys = 4_000u32;
    let store = Store::open(dir.path(), options(&clock).segment_size(8 << 20)).unwrap();
    for round in 0..2 {
        for k in 0..keys {
            store.set(&format!("k{k}"), mixed_value(k, round)).unwrap();
            if round == 1 && k % 9 == 0 {
                assert!(store.delete(&format!("k{}", k / 2)).unwrap());
            }
        }
        store.flush().unwrap();
    }
    let expected: Vec<(String, Option<Vec<u8>>)> = (0..keys)
        .map(|k| {
            let key = format!("k{k}");
            let value = store.get(&key).unwrap().map(|v| v.to_vec());
            (key, value)
        })
        .collect();
    store.close().unwrap();
    assert!(segments(dir.path(), "default").len() >= 2);

    let store = Store::open(dir.path(), options(&clock)).unwrap();
    for (key, value) in &expected {
        assert_eq!(
            store.get(key).unwrap().map(|v| v.to_vec()),
            *value,
            "{key} after a reopen"
        );
    }
    // Replace half the values (dropping what the replay read) and read the rest again: a value
    // kept from a read window must not change when other values of that window go.
    for (key, _) in expected.iter().step_by(2) {
        store.set(key, b"new".to_vec()).unwrap();
    }
    for (i, (key, value)) in expected.iter().enumerate() {
        let want = if i % 2 == 0 {
            Some(b"new".to_vec())
        } else {
            value.clone()
        };
        assert_eq!(store.get(key).unwrap().map(|v| v.to_vec()), want, "{key}");
    }
    store.close().unwrap();
    let store = Store::open(dir.path(), options(&clock)).unwrap();
    for (i, (key, value)) in expected.iter().enumerate() {
        let want = if i % 2 == 0 {
            Some(b"new".to_vec())
        } else {
            value.clone()
        };
        assert_eq!(
            store.get(key).unwrap().map(|v| v.to_vec()),
            want,
            "{key} after a second reopen"
        );
    }
    store.close().unwrap();
}
