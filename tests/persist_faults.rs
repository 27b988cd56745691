//! Real I/O errors from the kernel, not a backend that fails on purpose: a child process (this
//! test binary re-run with an environment variable) lowers its own file-size limit
//! (`RLIMIT_FSIZE`, with `SIGXFSZ` ignored), so a write stops part-way and the kernel answers
//! `EFBIG` — the same short-write-then-error a full disk gives. Three places meet it: a flush's
//! append (the partial write must be cut off and the batch kept), the creation of a new segment
//! (nothing half-made may stay), and a compaction's output (the old log must stay exactly as it
//! was). Each time the child raises the limit again and finishes; the parent reopens the store
//! and finds every write, once, with no torn or corrupt bytes anywhere in the log.
#![cfg(unix)]

mod persist_support;

use std::path::Path;
use std::time::Duration;

use persist_support::{child_setup, segments, tempdir, ChildProcess};
use tidekv::{Error, Options, Store};

const MODE: &str = "TIDEKV_FAULT_CHILD";
const DIR: &str = "TIDEKV_FAULT_DIR";

/// The child side of every test here. Run directly (without the environment variable) it does
/// nothing; it is `#[ignore]`d so a normal run lists it as ignored, not as a passing test.
#[test]
#[ignore = "the child process of the fault tests; they run it"]
fn child_process() {
    let Some((mode, dir)) = child_setup(MODE, DIR) else {
        return;
    };
    // SAFETY: setting a signal disposition to SIG_IGN has no preconditions; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    match mode.as_str() {
        "short-append" => child_short_append(&dir),
        "failed-roll" => child_failed_roll(&dir),
        "failed-compaction" => child_failed_compaction(&dir),
        other => panic!("unknown child mode {other}"),
    }
    println!("DONE");
}

/// Sets this process's soft limit on the size of any file it writes (`None`: no limit).
fn limit_file_size(bytes: Option<u64>) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls get a valid pointer to a `rlimit` that lives across the call.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.map_or(limit.rlim_max, |b| b as libc::rlim_t);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn set_keys(store: &Store, prefix: &str, byte: u8, len: usize) {
    for i in 0..100 {
        store
            .set(&format!("{prefix}{i:03}"), vec![byte; len])
            .unwrap();
    }
}

fn expect_io_error(store: &Store) {
    match store.flush() {
        Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}"),
        other => panic!("expected EFBIG from the flush, got {other:?}"),
    }
    assert!(store.last_error().is_some());
}

/// A batch whose append stops 200 bytes in: the log must cut those bytes off again.
fn child_short_append(dir: &Path) {
    let store = Store::open(dir, Options::default()).unwrap();
    set_keys(&store, "a", 1, 50);
    store.flush().unwrap();
    let segment = segments(dir, "default").pop().unwrap();
    let good = file_len(&segment);

    limit_file_size(Some(good + 200));
    set_keys(&store, "b", 2, 500);
    for _ in 0..2 {
        expect_io_error(&store);
        assert_eq!(
            file_len(&segment),
            good,
            "the partial write was not cut off"
        );
        assert!(
            store.stats().buffer_bytes > 0,
            "the failed batch left the buffer"
        );
        assert_eq!(store.get("b099").unwrap().as_deref(), Some(&[2u8; 500][..]));
    }
    // The store stays usable while its flushes fail.
    store.set("b000", vec![3u8; 500]).unwrap();

    limit_file_size(None);
    store.flush().unwrap();
    store.close().unwrap();
}

/// The next flush must start a new segment, and even the new segment's header cannot be
/// written: no half-made segment may be left behind, and the batch must survive.
fn child_failed_roll(dir: &Path) {
    let options = || Options::default().segment_size(1024);
    let store = Store::open(dir, options()).unwrap();
    set_keys(&store, "a", 1, 50);
    store.flush().unwrap();
    let before = segments(dir, "default");
    assert!(
        file_len(&before[0]) > 1024,
        "the first segment should be full"
    );

    limit_file_size(Some(10));
    set_keys(&store, "b", 2, 50);
    expect_io_error(&store);
    let files: Vec<_> = std::fs::read_dir(dir.join("default"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tkv") || n.ends_with(".tmp"))
        .collect();
    assert_eq!(
        files.len(),
        before.len(),
        "a half-made segment was left: {files:?}"
    );

    limit_file_size(None);
    store.flush().unwrap();
    store.close().unwrap();
}

/// Every segment and temporary file of the database, with its bytes.
fn log_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("default"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), e.path()))
        .filter(|(name, _)| name.ends_with(".tkv") || name.ends_with(".tmp"))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect();
    files.sort();
    files
}

/// A compaction whose output cannot be written must leave the old log exactly as it was, with
/// no half-written output, and the store working; a later compaction then succeeds.
fn child_failed_compaction(dir: &Path) {
    let store = Store::open(dir, Options::default()).unwrap();
    for round in 0..5u8 {
        for i in 0..100 {
            store.set(&format!("k{i:03}"), vec![round; 200]).unwrap();
        }
        store.flush().unwrap();
    }
    let before = log_files(dir);

    // The live data is about 26 KB: its rewrite stops at 4 KB.
    limit_file_size(Some(4096));
    match store.compact() {
        Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "{e}"),
        other => panic!("expected EFBIG from the compaction, got {other:?}"),
    }
    assert!(
        log_files(dir) == before,
        "a failed compaction changed the log"
    );
    assert_eq!(store.get("k042").unwrap().as_deref(), Some(&[4u8; 200][..]));
    store.set("after", "x").unwrap();

    limit_file_size(None);
    let report = store.compact().unwrap();
    assert_eq!(report.records_before, 500);
    // Every live key, the pending "after" included.
    assert_eq!(report.records_after, 101);
    store.flush().unwrap();
    store.close().unwrap();
}

fn run_child(mode: &str, dir: &Path) {
    let mut child = ChildProcess::spawn(
        "child_process",
        &[(MODE, mode.to_string()), (DIR, dir.display().to_string())],
    );
    child.wait_for("DONE", Duration::from_secs(60));
    let status = child.child.wait().unwrap();
    assert!(status.success(), "the child failed: {status}");
}

/// Reopens the store the child left and checks that every key holds its newest value, that
/// each write was logged exactly once, and that the log has no torn or corrupt bytes.
fn check_reopen(dir: &Path, b000: u8, b_len: usize, records: u64) {
    let store = Store::open(dir, Options::default()).unwrap();
    for i in 0..100 {
        let a = store.get(&format!("a{i:03}")).unwrap();
        assert_eq!(a.as_deref(), Some(&[1u8; 50][..]), "a{i:03}");
        let b = store.get(&format!("b{i:03}")).unwrap();
        let byte = if i == 0 { b000 } else { 2 };
        assert_eq!(b.as_deref(), Some(&vec![byte; b_len][..]), "b{i:03}");
    }
    let disk = store.disk_stats().unwrap();
    assert_eq!(disk.records_replayed, records, "{disk:?}");
    assert_eq!(disk.torn_tail_bytes, 0, "{disk:?}");
    assert_eq!(disk.corrupt_records_skipped, 0, "{disk:?}");
    store.close().unwrap();
}

#[test]
fn a_write_the_kernel_stops_part_way_is_cut_off_and_the_batch_retried_whole() {
    let dir = tempdir();
    run_child("short-append", dir.path());
    check_reopen(dir.path(), 3, 500, 200);
}

#[test]
fn a_segment_that_cannot_be_created_leaves_nothing_behind_and_loses_nothing() {
    let dir = tempdir();
    run_child("failed-roll", dir.path());
    check_reopen(dir.path(), 2, 50, 200);
}

#[test]
fn a_compaction_the_disk_cannot_take_changes_nothing_and_a_later_one_succeeds() {
    let dir = tempdir();
    run_child("failed-compaction", dir.path());
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for i in 0..100 {
        let got = store.get(&format!("k{i:03}")).unwrap();
        assert_eq!(got.as_deref(), Some(&[4u8; 200][..]), "k{i:03}");
    }
    assert_eq!(store.get("after").unwrap().as_deref(), Some(&b"x"[..]));
    let disk = store.disk_stats().unwrap();
    assert_eq!((disk.torn_tail_bytes, disk.corrupt_records_skipped), (0, 0));
    store.close().unwrap();
}
