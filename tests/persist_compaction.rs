//! Compaction: rewrites only live records, reports what it reclaimed, runs alongside reads,
//! writes and flushes, starts on its own past the dead-bytes ratio, and leaves a store that
//! opens with every acknowledged write whichever of its steps a crash interrupts.
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use persist_support::{open, options, segments, tempdir, T0};
use tidekv::{ManualClock, SetOptions, Store};

fn contents(store: &Store) -> BTreeMap<String, Vec<u8>> {
    store
        .keys("")
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = store.get(&k).unwrap().unwrap().to_vec();
            (k, v)
        })
        .collect()
}

fn disk_size(dir: &Path) -> u64 {
    segments(dir, "default")
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn compaction_keeps_live_records_only_and_reports_exactly() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = open(dir.path(), &clock);
    for round in 0..10 {
        for key in ["a", "b", "c", "d"] {
            store.set(key, format!("{key}-{round}")).unwrap();
        }
        store.flush().unwrap();
    }
    store.delete("d").unwrap();
    store
        .set_with("t", "ttl", SetOptions::new().ttl(Duration::from_secs(5)))
        .unwrap();
    store.flush().unwrap();
    clock.advance(Duration::from_secs(6)); // "t" is expired but not swept
    let before = disk_size(dir.path());
    let expected = contents(&store);

    let report = store.compact().unwrap();
    assert_eq!(report.records_before, 42);
    assert_eq!(report.records_after, 3);
    assert_eq!(report.records_dropped, 39);
    assert_eq!(report.bytes_before, before);
    assert_eq!(report.bytes_after, disk_size(dir.path()));
    assert!(report.bytes_after < before / 5, "{report:?}");
    assert_eq!((report.segments_before, report.segments_after), (1, 1));
    let disk = store.disk_stats().unwrap();
    assert_eq!(disk.compactions, 1);
    assert_eq!(disk.records, 3);
    assert_eq!(disk.disk_bytes, report.bytes_after);
    assert_eq!(contents(&store), expected);
    store.close().unwrap();

    let store = open(dir.path(), &clock);
    assert_eq!(contents(&store), expected);
    assert_eq!(store.disk_stats().unwrap().records_replayed, 3);
}

#[test]
fn writes_and_flushes_during_a_compaction_are_kept() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), options(&clock).segment_size(4096)).unwrap();
    for i in 0..2_000 {
        store
            .set(&format!("k{}", i % 300), format!("old-{i}"))
            .unwrap();
        if i % 50 == 0 {
            store.flush().unwrap();
        }
    }
    let writer = {
        let store = store.clone();
        thread::spawn(move || {
            for i in 0..3_000 {
                store
                    .set(&format!("k{}", i % 400), format!("new-{i}"))
                    .unwrap();
                if i % 7 == 0 {
                    store.flush().unwrap();
                }
            }
        })
    };
    let mut compactions = 0;
    while !writer.is_finished() {
        store.compact().unwrap();
        compactions += 1;
    }
    writer.join().unwrap();
    assert!(compactions >= 1);
    let expected = contents(&store);
    assert_eq!(expected.len(), 400);
    for i in 2_600..3_000 {
        assert_eq!(
            expected[&format!("k{}", i % 400)],
            format!("new-{i}").into_bytes()
        );
    }
    store.close().unwrap();
    let store = Store::open(dir.path(), options(&clock).segment_size(4096)).unwrap();
    assert_eq!(contents(&store), expected);
}

#[test]
fn automatic_compaction_starts_once_the_dead_ratio_is_passed() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let opts = || {
        options(&clock)
            .compaction_min_size(8 * 1024)
            .compaction_ratio(0.5)
            .segment_size(4096)
    };
    let store = Store::open(dir.path(), opts()).unwrap();
    let value = "v".repeat(200);
    let mut round = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.disk_stats().unwrap().compactions == 0 {
        assert!(
            Instant::now() < deadline,
            "no automatic compaction happened"
        );
        store.set("hot", format!("{value}{round}")).unwrap();
        store.flush().unwrap();
        round += 1;
    }
    // It started only past 8 KiB of log (each flush here is one frame of under 300 bytes).
    assert!(round * 300 >= 8 * 1024, "after {round} rounds");
    store.close().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        store.get("hot").unwrap().as_deref(),
        Some(format!("{value}{}", round - 1).as_bytes())
    );
}

#[test]
fn a_log_that_is_mostly_live_is_not_compacted_automatically() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Store::open(
        dir.path(),
        options(&clock)
            .compaction_min_size(4 * 1024)
            .compaction_ratio(0.5),
    )
    .unwrap();
    for i in 0..200 {
        store.set(&format!("key{i}"), "x".repeat(100)).unwrap();
        store.flush().unwrap();
    }
    assert_eq!(store.disk_stats().unwrap().compactions, 0);
    let disk = store.disk_stats().unwrap();
    assert!(disk.dead_bytes < disk.disk_bytes / 10, "{disk:?}");
}

/// Simulates a crash at each step of a compaction by putting back the old segments a real
/// crash could leave (all of them, or the newest ones after some deletions) next to all or
/// part of the output: every combination must open to the same contents.
#[test]
fn every_state_a_crashed_compaction_can_leave_opens_with_all_acknowledged_writes() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let opts = || options(&clock).segment_size(1024);
    let store = Store::open(dir.path(), opts()).unwrap();
    for i in 0..120 {
        store
            .set(&format!("k{}", i % 30), format!("{i:>60}"))
            .unwrap();
        if i % 9 == 0 {
            store.delete(&format!("k{}", (i + 3) % 30)).unwrap();
        }
        store.flush().unwrap();
    }
    let expected = contents(&store);
    let old = segment_files(dir.path());
    let report = store.compact().unwrap();
    store.close().unwrap();
    assert!(old.len() > 3 && report.segments_after > 1, "{report:?}");
    let output = segment_files(dir.path());

    let check = |old_kept: &[(std::path::PathBuf, Vec<u8>)], out_kept: usize| {
        for p in segments(dir.path(), "default") {
            fs::remove_file(p).unwrap();
        }
        for (p, bytes) in old_kept.iter().chain(&output[..out_kept]) {
            fs::write(p, bytes).unwrap();
        }
        let store = Store::open(dir.path(), opts()).unwrap();
        assert_eq!(
            contents(&store),
            expected,
            "{} old segments, {out_kept} output segments",
            old_kept.len()
        );
    };
    // Crashed while writing the output: all old segments, some of the output.
    for out_kept in 0..=output.len() {
        check(&old, out_kept);
    }
    // Crashed while deleting old segments (oldest first): a suffix of them, all the output.
    for first_kept in 0..=old.len() {
        check(&old[first_kept..], output.len());
    }
}

#[test]
fn reads_are_served_while_a_compaction_runs() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Arc::new(open(dir.path(), &clock));
    for i in 0..5_000 {
        store.set(&format!("k{i}"), "x".repeat(100)).unwrap();
    }
    store.flush().unwrap();
    let compactor = {
        let store = Arc::clone(&store);
        thread::spawn(move || store.compact().unwrap())
    };
    let mut reads = 0u64;
    while !compactor.is_finished() {
        assert_eq!(store.get("k42").unwrap().map(|v| v.len()), Some(100));
        reads += 1;
    }
    let report = compactor.join().unwrap();
    assert_eq!(report.records_after, 5_000);
    assert!(reads >= 1);
}

/// Regression (found by the SIGKILL test of atomic batches): a compaction wrote the pending
/// sets of the store but not its pending deletes. A crash after the output was durable but
/// before the old segments were gone and the delete was flushed brought back the deleted key's
/// older value — and kept the sets of an unflushed batch without its delete.
#[test]
fn a_crash_mid_compaction_never_brings_back_a_key_whose_delete_was_pending() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), options(&clock).segment_size(1024)).unwrap();
    store.set("k", "old").unwrap();
    store.set("other", "x").unwrap();
    store.flush().unwrap();
    let old = segment_files(dir.path());
    // One atomic change, not flushed: a set and a delete.
    let mut batch = tidekv::WriteBatch::new();
    batch.set("other", "y").delete("k");
    store.apply(batch).unwrap();
    store.compact().unwrap();
    // The crash: the output is durable, the old segments are still there (their deletion had
    // not happened yet), the pending batch never reached the log.
    let crashed = tempdir();
    fs::create_dir(crashed.path().join("default")).unwrap();
    for path in segments(dir.path(), "default") {
        fs::copy(
            &path,
            crashed
                .path()
                .join("default")
                .join(path.file_name().unwrap()),
        )
        .unwrap();
    }
    for (path, bytes) in &old {
        fs::write(
            crashed
                .path()
                .join("default")
                .join(path.file_name().unwrap()),
            bytes,
        )
        .unwrap();
    }
    drop(store);
    let reopened = open(crashed.path(), &clock);
    let k = reopened.get("k").unwrap();
    let other = reopened.get("other").unwrap();
    // All of the batch (it reached the output) or none of it, never a mix, never "old" back
    // beside the batch's set.
    match (k.as_deref(), other.as_deref()) {
        (None, Some(b"y")) | (Some(b"old"), Some(b"x")) => {}
        (k, other) => {
            panic!("k = {k:?}, other = {other:?}: part of a batch, or a deleted key back")
        }
    }
}

/// Every segment of the default database under `dir`, with its bytes, oldest first.
fn segment_files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    segments(dir, "default")
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}
