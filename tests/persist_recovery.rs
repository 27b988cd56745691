//! Recovery at open: a torn tail is truncated and everything before it kept; corrupt bytes are
//! never returned as data — a bad record in the middle of the log fails the open with
//! `Error::Corrupt` (changing nothing), or is skipped and counted with `skip_corrupt_records`.
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::fs;
use std::path::Path;

use persist_support::{open, options, segments, tempdir, T0};
use tidekv::core::log::SEGMENT_HEADER_LEN;
use tidekv::{Error, ManualClock, Store};

const KEYS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

fn value(key: &str) -> String {
    format!("value of {key}")
}

/// A database with KEYS in one flushed batch and "last" in a second; returns the segment's
/// bytes and where the last record starts.
fn write_db(dir: &Path, clock: &ManualClock) -> (Vec<u8>, usize) {
    let store = open(dir, clock);
    for key in KEYS {
        store.set(key, value(key)).unwrap();
    }
    store.flush().unwrap();
    let before_last = fs::metadata(&segments(dir, "default")[0]).unwrap().len() as usize;
    store.set("last", value("last")).unwrap();
    store.close().unwrap();
    let seg = &segments(dir, "default")[0];
    (fs::read(seg).unwrap(), before_last)
}

fn assert_earlier_records_intact(store: &Store) {
    for key in KEYS {
        assert_eq!(
            store.get(key).unwrap().as_deref(),
            Some(value(key).as_bytes()),
            "{key}"
        );
    }
}

#[test]
fn a_torn_last_record_is_truncated_at_every_byte_offset_and_earlier_records_stay() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let (bytes, last_at) = write_db(dir.path(), &clock);
    let seg = segments(dir.path(), "default")[0].clone();
    for cut in last_at..bytes.len() {
        fs::write(&seg, &bytes[..cut]).unwrap();
        let store = open(dir.path(), &clock);
        assert_earlier_records_intact(&store);
        assert_eq!(store.get("last").unwrap(), None, "cut at {cut}");
        let disk = store.disk_stats().unwrap();
        assert_eq!(disk.torn_tail_bytes, (cut - last_at) as u64, "cut at {cut}");
        store.close().unwrap();
        assert_eq!(fs::metadata(&seg).unwrap().len() as usize, last_at);
    }
    // After a truncation new writes append cleanly and survive the next reopen.
    let store = open(dir.path(), &clock);
    store.set("after", "crash").unwrap();
    store.close().unwrap();
    let store = open(dir.path(), &clock);
    assert_earlier_records_intact(&store);
    assert_eq!(store.get("after").unwrap().as_deref(), Some(&b"crash"[..]));
    assert_eq!(store.disk_stats().unwrap().torn_tail_bytes, 0);
}

#[test]
fn a_segment_torn_inside_its_header_is_removed_at_open() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let store = Store::open(dir.path(), options(&clock).segment_size(1024)).unwrap();
    store.set("k", "x".repeat(2000)).unwrap();
    store.flush().unwrap();
    store.set("j", "y").unwrap(); // the first segment is full: this starts a second one
    store.close().unwrap();
    let segs = segments(dir.path(), "default");
    assert_eq!(segs.len(), 2);
    fs::write(&segs[1], &fs::read(&segs[1]).unwrap()[..10]).unwrap();
    let store = open(dir.path(), &clock);
    assert_eq!(store.get("k").unwrap().map(|v| v.len()), Some(2000));
    assert_eq!(store.get("j").unwrap(), None);
    assert_eq!(segments(dir.path(), "default").len(), 1);
}

#[test]
fn leftover_temporary_files_are_ignored_and_removed() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    write_db(dir.path(), &clock);
    let tmp = dir.path().join("default/seg-00000000000000ff.tkv.tmp");
    fs::write(&tmp, b"half a compaction").unwrap();
    let store = open(dir.path(), &clock);
    assert_earlier_records_intact(&store);
    assert!(!tmp.exists());
}

#[test]
fn a_bad_record_in_the_middle_fails_the_open_and_changes_nothing() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let (bytes, _) = write_db(dir.path(), &clock);
    let seg = segments(dir.path(), "default")[0].clone();
    let mut bad = bytes.clone();
    bad[SEGMENT_HEADER_LEN + 40] ^= 0x01; // inside the first frame's body
    fs::write(&seg, &bad).unwrap();
    match Store::open(dir.path(), options(&clock)) {
        Err(Error::Corrupt(msg)) => {
            assert!(msg.contains("seg-0000000000000001.tkv"), "{msg}");
            assert!(
                msg.contains(&format!("at byte {SEGMENT_HEADER_LEN}")),
                "{msg}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        bad,
        "a failed open must not touch the log"
    );
    // The failed open released its lock.
    // Skipping drops the whole first flush (one frame, all or nothing), never a part of it.
    let store = Store::open(dir.path(), options(&clock).skip_corrupt_records(true)).unwrap();
    for key in KEYS {
        assert_eq!(store.get(key).unwrap(), None, "{key}");
    }
    assert_eq!(
        store.get("last").unwrap().as_deref(),
        Some(value("last").as_bytes())
    );
    assert_eq!(store.disk_stats().unwrap().corrupt_records_skipped, 1);
    // A compaction rewrites a clean log: the strict open works again.
    store.compact().unwrap();
    store.close().unwrap();
    let store = open(dir.path(), &clock);
    assert_eq!(store.keys("").unwrap(), ["last"]);
}

#[test]
fn no_bit_flip_anywhere_is_ever_returned_as_data() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    let (bytes, _) = write_db(dir.path(), &clock);
    let seg = segments(dir.path(), "default")[0].clone();
    let mut outcomes = [0usize; 3]; // corrupt error, opened (all intact), opened (some lost)
    for byte in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut bad = bytes.clone();
            bad[byte] ^= 1 << bit;
            for skip in [false, true] {
                fs::write(&seg, &bad).unwrap();
                let opened = Store::open(dir.path(), options(&clock).skip_corrupt_records(skip));
                let store = match opened {
                    Err(Error::Corrupt(_)) => {
                        outcomes[0] += 1;
                        continue;
                    }
                    Err(e) => panic!("byte {byte} bit {bit}: unexpected error {e}"),
                    Ok(store) => store,
                };
                let mut all = true;
                for key in store.keys("").unwrap() {
                    let got = store.get(&key).unwrap().unwrap();
                    assert!(
                        KEYS.contains(&key.as_str()) || key == "last",
                        "byte {byte} bit {bit}: invented key {key:?}"
                    );
                    assert_eq!(&got[..], value(&key).as_bytes(), "byte {byte} bit {bit}");
                }
                all &= store.keys("").unwrap().len() == 5;
                outcomes[if all { 1 } else { 2 }] += 1;
                drop(store);
            }
        }
    }
    assert!(outcomes[0] > 0 && outcomes[2] > 0, "{outcomes:?}");
}

/// A segment of about 6 MiB — more than the 4 MiB window open reads at a time — with `n` keys
/// `k00000..` of 100-byte values; returns its path.
fn write_big_segment(dir: &Path, clock: &ManualClock, n: usize) -> std::path::PathBuf {
    let store = open(dir, clock);
    for i in 0..n {
        store.set(&format!("k{i:05}"), vec![i as u8; 100]).unwrap();
    }
    store.close().unwrap();
    let segs = segments(dir, "default");
    assert_eq!(segs.len(), 1);
    assert!(fs::metadata(&segs[0]).unwrap().len() > 6 << 20);
    segs[0].clone()
}

/// The keys `k00000..` missing from `store`, by number.
fn lost_keys(store: &Store) -> Vec<usize> {
    (0..40_000)
        .filter(|i| store.get(&format!("k{i:05}")).unwrap().is_none())
        .collect()
}

/// Keys written in one flush are consecutive: a lost frame is a run without gaps.
fn assert_contiguous(lost: &[usize]) {
    assert!(!lost.is_empty());
    assert_eq!(lost.last().unwrap() - lost[0] + 1, lost.len(), "{lost:?}");
}

#[test]
fn damage_past_the_first_read_window_is_found_and_nothing_before_it_is_lost() {
    const N: usize = 40_000;
    let clock = ManualClock::new(T0);
    let check = |store: &Store, missing: &[usize]| {
        for i in 0..N {
            let got = store.get(&format!("k{i:05}")).unwrap();
            let want = (!missing.contains(&i)).then(|| vec![i as u8; 100]);
            assert_eq!(got, want.map(Into::into), "k{i:05}");
        }
    };

    // A torn tail: the last record loses its last byte.
    let dir = tempdir();
    let seg = write_big_segment(dir.path(), &clock, N);
    let len = fs::metadata(&seg).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    // The last flush is one frame: all of it is cut, and nothing before it.
    let store = open(dir.path(), &clock);
    let lost = lost_keys(&store);
    assert_eq!(
        lost.last(),
        Some(&(N - 1)),
        "the torn write is the last one"
    );
    assert_contiguous(&lost);
    check(&store, &lost);
    assert!(store.disk_stats().unwrap().torn_tail_bytes > 0);
    store.close().unwrap();

    // A flipped bit at 5 MiB, in the second window: the strict open names it, nothing changes;
    // skipping loses that one frame (one flush) only.
    let dir = tempdir();
    let seg = write_big_segment(dir.path(), &clock, N);
    let mut bytes = fs::read(&seg).unwrap();
    bytes[5 << 20] ^= 0x04;
    fs::write(&seg, &bytes).unwrap();
    match Store::open(dir.path(), options(&clock)) {
        Err(Error::Corrupt(msg)) => assert!(msg.contains("at byte"), "{msg}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(
        fs::read(&seg).unwrap() == bytes,
        "a failed open must not touch the log"
    );
    let store = Store::open(dir.path(), options(&clock).skip_corrupt_records(true)).unwrap();
    let disk = store.disk_stats().unwrap();
    assert_eq!(disk.corrupt_records_skipped, 1);
    let lost = lost_keys(&store);
    assert!(
        !lost.is_empty() && lost.len() < N / 4,
        "{} lost",
        lost.len()
    );
    assert_contiguous(&lost);
    assert_eq!(disk.records_replayed, (N - lost.len()) as u64);
    check(&store, &lost);
    store.close().unwrap();
}

/// Regression (a torn tail whose value holds frames): a value that is a whole tidekv segment —
/// a backup, a cached log — is torn at every offset of its write. Recovery must cut the write
/// back; it used to find the frames *inside the value* and either refuse to open (`Corrupt`)
/// or, with `skip_corrupt_records`, replay them as real records.
#[test]
fn a_torn_write_of_a_value_holding_tidekv_frames_is_cut_back_and_never_replayed() {
    let dir = tempdir();
    let clock = ManualClock::new(T0);
    // The carried segment: records a replay must never see, in another database.
    let donor = open(dir.path(), &clock);
    for i in 0..8 {
        donor
            .set(&format!("phantom-{i}"), value("phantom"))
            .unwrap();
        donor.flush().unwrap();
    }
    donor.close().unwrap();
    let carried = fs::read(&segments(dir.path(), "default")[0]).unwrap();
    let victim = tempdir();
    let store = open(victim.path(), &clock);
    for key in KEYS {
        store.set(key, value(key)).unwrap();
    }
    store.flush().unwrap();
    let seg = segments(victim.path(), "default")[0].clone();
    let before = fs::metadata(&seg).unwrap().len() as usize;
    store.set("backup", carried.clone()).unwrap();
    store.close().unwrap();
    let bytes = fs::read(&seg).unwrap();
    assert!(bytes.len() > before + carried.len());
    for cut in (before + 1..bytes.len()).step_by(7) {
        for skip in [false, true] {
            // The crash left this one segment (a compaction below replaces it).
            for old in segments(victim.path(), "default") {
                fs::remove_file(old).unwrap();
            }
            fs::write(&seg, &bytes[..cut]).unwrap();
            let store = Store::open(victim.path(), options(&clock).skip_corrupt_records(skip))
                .unwrap_or_else(|e| panic!("cut {cut}, skip {skip}: {e}"));
            assert_earlier_records_intact(&store);
            assert_eq!(store.keys("").unwrap(), KEYS, "cut {cut}, skip {skip}");
            let disk = store.disk_stats().unwrap();
            assert_eq!(disk.corrupt_records_skipped, 0, "cut {cut}");
            assert_eq!(disk.torn_tail_bytes, (cut - before) as u64, "cut {cut}");
            store.compact().unwrap();
            store.close().unwrap();
            // Compaction made nothing phantom permanent either.
            let store = open(victim.path(), &clock);
            assert_eq!(store.keys("").unwrap(), KEYS, "cut {cut}, skip {skip}");
            store.close().unwrap();
        }
    }
}
