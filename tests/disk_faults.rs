//! Real disk faults from the kernel, not a backend that fails on purpose:
//!
//! - **Disk full**: a 1 MiB tmpfs (root only) that the store fills until a flush meets
//!   `ENOSPC`, once while appending to a segment and once while starting new segments.
//! - **Read-only**: a read-only bind mount of the same tmpfs stacked on the store's path, so
//!   every file the store creates meets `EROFS`. (`mount -o remount,ro` of the tmpfs itself is
//!   refused with `EBUSY` while any file on it is open for writing, and an open store always
//!   holds its `LOCK` file so; files already open stay writable under a read-only bind mount, so
//!   the fault reaches the store where it creates a segment, which with a 1 KiB segment size is
//!   every flush.)
//! - **Failing fsync**: an `LD_PRELOAD` shim (`tests/faults/fsync_fault.c`, compiled here with
//!   `cc`) makes `fsync`/`fdatasync` return `EIO` in a child process while a marker file exists.
//!
//! Each time: the flush reports the error (never `Ok`), the buffer keeps the data, reads see
//! the new values, writes go on, a failed flush is never counted as confirmed, and the first
//! flush after the fault clears succeeds. Then the store is reopened (after a clean close, or
//! after `SIGKILL` of the child) and holds every acknowledged write and every later one, with
//! no torn or corrupt bytes in the log.
//!
//! A case that cannot run here (not root, no tmpfs, no C compiler) says `skipped: <why>` on
//! stderr, past the test harness's capture, rather than passing without exercising anything.
#![cfg(target_os = "linux")]

mod persist_support;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use persist_support::{child_setup, park, tempdir, ChildProcess};
use tidekv::{Durability, Error, Options, Stats, Store, Syncer, WriteBatch};

const MODE: &str = "TIDEKV_DISK_FAULT_CHILD";
const DIR: &str = "TIDEKV_DISK_FAULT_DIR";
/// Read by the shim: while this file exists, fsync and fdatasync fail with EIO.
const MARKER: &str = "TIDEKV_FSYNC_FAULT_MARKER";

/// Says why a case did not run, past the harness's output capture so it is always seen.
fn skipped(case: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {case}: {why}");
}

/// The figures of a case that ran, for the reliability report (scripts/reliability.sh).
fn reported(case: &str, error: &str, failed_flushes: u64, keys: usize) {
    let _ = writeln!(
        std::io::stderr(),
        "reliability: fault {case}: {error} injected, {failed_flushes} operations failed and \
         kept their data, the flush after it cleared succeeded, {keys} keys checked after \
         reopen, lost 0"
    );
}

// ---------------------------------------------------------------------------------------------
// Mounts
// ---------------------------------------------------------------------------------------------

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("a path without NUL")
}

/// `mount(2)`, with the OS error on failure.
fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let source = source.map(|s| CString::new(s).unwrap());
    let fstype = fstype.map(|s| CString::new(s).unwrap());
    let data = data.map(|s| CString::new(s).unwrap());
    let target = c_path(target);
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Unmounts the topmost mount at `target`; if it is busy (a failed test left files open),
/// detaches it lazily so nothing stays mounted.
fn unmount(target: &Path) {
    let path = c_path(target);
    // SAFETY: a NUL-terminated path that outlives the calls.
    unsafe {
        if libc::umount2(path.as_ptr(), 0) != 0 {
            let err = std::io::Error::last_os_error();
            if libc::umount2(path.as_ptr(), libc::MNT_DETACH) != 0 {
                eprintln!(
                    "warning: could not unmount {}: {err}, then {}",
                    target.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

/// A small tmpfs on a fresh temporary directory, unmounted on drop (always, even when the
/// test fails), with an optional read-only bind mount of itself stacked on top.
struct Tmpfs {
    /// Mounts stacked on the directory, the tmpfs first.
    mounts: usize,
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -t tmpfs -o size=<size>`), or says why it cannot.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root, so no tmpfs can be mounted".into());
        }
        let dir = tempdir();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            0,
            Some(&format!("size={size},mode=0755")),
        )
        .map_err(|e| format!("mount -t tmpfs -o size={size} failed: {e}"))?;
        Ok(Tmpfs { mounts: 1, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Stacks a read-only bind mount of the tmpfs on its own path: from now on every path
    /// lookup lands on the read-only mount (a new file: `EROFS`), while files opened before
    /// stay writable.
    fn make_read_only(&mut self) -> std::io::Result<()> {
        mount(
            Some(self.path().to_str().unwrap()),
            self.path(),
            None,
            libc::MS_BIND,
            None,
        )?;
        self.mounts += 1;
        mount(
            None,
            self.path(),
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY,
            None,
        )
    }

    /// Takes the read-only mount away again.
    fn make_writable(&mut self) {
        assert_eq!(self.mounts, 2, "not read-only");
        unmount(self.path());
        self.mounts -= 1;
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..self.mounts {
            unmount(self.path());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------------------------

/// Options under which only the test's own `flush()` calls write: no flush falls due on its
/// own (buffer size or age), so every flush and its outcome is counted here.
fn manual_flush_options() -> Options {
    Options::default()
        .buffer_size(64 * 1024 * 1024)
        .flush_interval(Duration::from_secs(3_600))
}

/// The log's files (segments and leftovers of unfinished ones) with their lengths.
fn log_lens(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir.join("default"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), e))
        .filter(|(name, _)| name.ends_with(".tkv") || name.ends_with(".tmp"))
        .map(|(name, e)| (name, e.metadata().unwrap().len()))
        .collect()
}

fn raw_os_error(err: &Error) -> Option<i32> {
    match err {
        Error::Io(e) => e.raw_os_error(),
        _ => None,
    }
}

/// The error a flush met must be `Error::Io` naming `errno`.
fn assert_io(err: &Error, errno: i32, what: &str) {
    assert_eq!(
        raw_os_error(err),
        Some(errno),
        "{what}: expected Error::Io with {}, got {err:?}",
        std::io::Error::from_raw_os_error(errno)
    );
}

/// A write made by a test: the value now, or `None` if deleted.
type Model = BTreeMap<String, Option<Vec<u8>>>;

/// Every key of `model` reads as the model says in `store`.
fn assert_reads(store: &Store, model: &Model, when: &str) {
    for (key, want) in model {
        let got = store.get(key).unwrap();
        assert_eq!(
            got.as_deref(),
            want.as_deref(),
            "{when}: key {key} reads wrong"
        );
    }
}

/// Reopens the store in `dir` with default options and checks that it holds exactly `model`
/// (every write, once, no other key) and that the log had no torn or corrupt bytes.
fn assert_reopens_with(dir: &Path, model: &Model) {
    let store = Store::open(dir, Options::default()).expect("reopen with default options");
    assert_reads(&store, model, "after reopening");
    let live: Vec<String> = model
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(store.keys("").unwrap(), live, "the keys after reopening");
    let disk = store.disk_stats().unwrap();
    assert_eq!(
        disk.torn_tail_bytes, 0,
        "a torn tail after a clean end: {disk:?}"
    );
    assert_eq!(disk.corrupt_records_skipped, 0, "{disk:?}");
    store.close().unwrap();
    let leftovers: Vec<_> = log_lens(dir)
        .into_keys()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "unfinished segments left: {leftovers:?}"
    );
}

/// What a failed flush must leave: one more failure counted, no more confirmed batches, the
/// data still buffered, the error kept, and the log exactly as before the attempt (the
/// partial write cut off, no half-made segment).
fn assert_failed_flush_kept_everything(
    store: &Store,
    before: &Stats,
    failures: u64,
    log_before: &BTreeMap<String, u64>,
    dir: &Path,
) {
    let stats = store.stats();
    assert_eq!(
        stats.flushes, before.flushes,
        "a failed flush was counted as confirmed"
    );
    assert_eq!(stats.flush_failures, before.flush_failures + failures);
    assert!(
        stats.buffer_bytes > 0,
        "the failed batch left the buffer: {stats:?}"
    );
    assert!(stats.last_error.is_some(), "the error was not kept");
    assert_eq!(
        &log_lens(dir),
        log_before,
        "the failed flush left bytes or files behind in the log"
    );
}

// ---------------------------------------------------------------------------------------------
// Disk full
// ---------------------------------------------------------------------------------------------

/// While the fault lasts: a second flush, a compaction and a close all fail with `errno`,
/// change nothing on disk, and every write stays readable.
fn assert_the_fault_holds(
    store: &Store,
    stats_before: &Stats,
    log_before: &BTreeMap<String, u64>,
    dir: &Path,
    model: &Model,
    errno: i32,
) {
    let err = store.flush().unwrap_err();
    assert_io(&err, errno, "the second flush during the fault");
    assert_failed_flush_kept_everything(store, stats_before, 2, log_before, dir);
    let err = store.compact().unwrap_err();
    assert_io(&err, errno, "a compaction during the fault");
    assert_eq!(
        &log_lens(dir),
        log_before,
        "a failed compaction changed the log"
    );
    let err = store.close().unwrap_err();
    assert_io(&err, errno, "a close during the fault");
    assert_reads(store, model, "after the failed close");
}

/// Once the fault has cleared: the next flush succeeds and takes everything, the store
/// closes, and a reopen finds every write.
fn recovers(
    store: Store,
    stats_before: &Stats,
    dir: &Path,
    model: &Model,
    (case, error): (&str, &str),
) {
    store
        .flush()
        .expect("the first flush after the fault cleared");
    let stats = store.stats();
    assert_eq!(stats.flushes, stats_before.flushes + 1, "{stats:?}");
    assert_eq!(stats.flush_failures, stats_before.flush_failures + 3);
    assert_eq!(stats.buffer_bytes, 0, "{stats:?}");
    store.close().unwrap();
    drop(store);
    assert_reopens_with(dir, model);
    reported(
        case,
        error,
        stats.flush_failures - stats_before.flush_failures,
        model.len(),
    );
}

/// Fills a 1 MiB tmpfs until a flush meets ENOSPC, then frees space. `segment_size` small
/// makes every flush start a new segment, so the fault meets segment creation as well as the
/// append.
fn disk_full(case: &str, segment_size: Option<u64>) {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(why) => return skipped(case, &why),
    };
    let dir = fs.path();
    // Written before the store fills the rest; deleting it is what frees space later.
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0xA5u8; 256 * 1024]).unwrap();

    let options = || {
        let options = manual_flush_options();
        match segment_size {
            Some(bytes) => options.segment_size(bytes),
            None => options,
        }
    };
    let store = Store::open(dir, options()).unwrap();
    let mut model = Model::new();
    let mut acked = 0u64;
    let mut round = 0u32;
    let (err, log_before, stats_before) = loop {
        for i in 0..8 {
            let key = format!("r{round:03}-{i}");
            let value = vec![(round % 251) as u8; 4_000];
            store.set(&key, value.clone()).unwrap();
            model.insert(key, Some(value));
        }
        let log_before = log_lens(dir);
        let stats_before = store.stats();
        match store.flush() {
            Ok(()) => acked += 1,
            Err(e) => break (e, log_before, stats_before),
        }
        round += 1;
        assert!(round < 1_000, "the tmpfs never filled up");
    };
    assert!(acked > 5, "the disk filled before anything was written");
    assert_io(&err, libc::ENOSPC, "the flush on a full disk");
    assert_eq!(stats_before.flushes, acked);
    assert_failed_flush_kept_everything(&store, &stats_before, 1, &log_before, dir);
    assert_reads(&store, &model, "after the failed flush");

    // Reads and writes go on: new keys, an overwrite of a key of the failed batch, a delete of
    // an acknowledged key, and an atomic batch.
    let failed_key = format!("r{round:03}-0");
    store.set(&failed_key, "newer").unwrap();
    model.insert(failed_key, Some(b"newer".to_vec()));
    assert!(store.delete("r000-0").unwrap());
    model.insert("r000-0".into(), None);
    let mut batch = WriteBatch::new();
    batch
        .set("during-1", "x")
        .set("during-2", "y")
        .delete("r001-1");
    store.apply(batch).unwrap();
    model.insert("during-1".into(), Some(b"x".to_vec()));
    model.insert("during-2".into(), Some(b"y".to_vec()));
    model.insert("r001-1".into(), None);
    assert_reads(&store, &model, "during the fault");

    // Still full: flushes, a compaction and close fail the same way and change nothing.
    assert_the_fault_holds(
        &store,
        &stats_before,
        &log_before,
        dir,
        &model,
        libc::ENOSPC,
    );
    assert_eq!(store.disk_stats().unwrap().compaction_failures, 1);

    // Space comes back: the next flush succeeds and takes everything.
    std::fs::remove_file(&filler).unwrap();
    recovers(store, &stats_before, dir, &model, (case, "ENOSPC"));
}

#[test]
fn a_full_disk_fails_the_append_keeps_the_batch_and_the_flush_after_space_returns_succeeds() {
    disk_full("disk full while appending (tmpfs)", None);
}

#[test]
fn a_full_disk_fails_new_segments_keeps_the_batch_and_the_flush_after_space_returns_succeeds() {
    disk_full("disk full while starting segments (tmpfs)", Some(16 * 1024));
}

// ---------------------------------------------------------------------------------------------
// Read-only file system
// ---------------------------------------------------------------------------------------------

#[test]
fn a_read_only_file_system_fails_the_flush_keeps_the_batch_and_the_flush_after_rw_succeeds() {
    let case = "read-only file system (read-only bind mount on a tmpfs)";
    let mut fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => return skipped(case, &why),
    };
    let dir = fs.path().to_path_buf();
    let dir = dir.as_path();
    // 1 KiB segments: every flush of more than that starts a new segment file.
    let store = Store::open(dir, manual_flush_options().segment_size(1024)).unwrap();
    let mut model = Model::new();
    let write_round = |store: &Store, model: &mut Model, round: &str| {
        for i in 0..10 {
            let key = format!("{round}{i:02}");
            let value = format!("{round}-{i}-").repeat(40).into_bytes();
            store.set(&key, value.clone()).unwrap();
            model.insert(key, Some(value));
        }
    };
    write_round(&store, &mut model, "a");
    store.flush().unwrap();
    write_round(&store, &mut model, "b");
    store.flush().unwrap();

    if let Err(e) = fs.make_read_only() {
        drop(store);
        return skipped(case, &format!("a read-only bind mount failed: {e}"));
    }
    // The fault is real: the kernel refuses new files under the store's path.
    let probe = std::fs::File::create(dir.join("probe")).unwrap_err();
    assert_eq!(probe.raw_os_error(), Some(libc::EROFS), "{probe}");

    write_round(&store, &mut model, "c");
    store.set("a00", "overwritten").unwrap();
    model.insert("a00".into(), Some(b"overwritten".to_vec()));
    let log_before = log_lens(dir);
    let stats_before = store.stats();
    let err = store.flush().unwrap_err();
    assert_io(&err, libc::EROFS, "the flush on a read-only file system");
    assert_failed_flush_kept_everything(&store, &stats_before, 1, &log_before, dir);
    assert_reads(&store, &model, "after the failed flush");

    // Reads and writes go on.
    assert!(store.delete("b03").unwrap());
    model.insert("b03".into(), None);
    let mut batch = WriteBatch::new();
    batch.set("d1", "one").delete("c05");
    store.apply(batch).unwrap();
    model.insert("d1".into(), Some(b"one".to_vec()));
    model.insert("c05".into(), None);
    assert_reads(&store, &model, "during the fault");

    assert_the_fault_holds(&store, &stats_before, &log_before, dir, &model, libc::EROFS);

    fs.make_writable();
    recovers(store, &stats_before, dir, &model, (case, "EROFS"));
}

// ---------------------------------------------------------------------------------------------
// Failing fsync (LD_PRELOAD shim, child process)
// ---------------------------------------------------------------------------------------------

/// Builds the shim into `out`, or says why it cannot (no C compiler).
fn build_shim(out: &Path) -> Result<PathBuf, String> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/fsync_fault.c");
    let lib = out.join("libtidekv_fsync_fault.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = match Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&source)
        .arg("-ldl")
        .output()
    {
        Ok(output) => output,
        Err(e) => return Err(format!("no C compiler ({cc}: {e})")),
    };
    assert!(
        output.status.success(),
        "{cc} failed to build the shim: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(lib)
}

/// One of the shim's counters in this process (the shim must be loaded).
fn shim_counter(name: &str) -> u64 {
    let symbol = CString::new(name).unwrap();
    // SAFETY: dlsym with a NUL-terminated name; a non-null result is the address of the
    // shim's `unsigned long` counter, which is only ever changed atomically.
    unsafe {
        let ptr = libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr());
        assert!(
            !ptr.is_null(),
            "the fsync shim is not loaded in this process (LD_PRELOAD)"
        );
        (*ptr.cast::<std::sync::atomic::AtomicU64>()).load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Every write the fsync child makes, in its final state: the parent's expectation.
fn fsync_child_model() -> Model {
    let mut model = Model::new();
    for i in 0..50 {
        model.insert(format!("a{i:03}"), Some(format!("a-{i}").into_bytes()));
        model.insert(format!("b{i:03}"), Some(format!("b-{i}").into_bytes()));
    }
    model.insert("a000".into(), Some(b"a-new".to_vec()));
    model.insert("a001".into(), None);
    for i in 0..10 {
        model.insert(format!("c{i:03}"), Some(format!("c-{i}").into_bytes()));
    }
    model.insert("d0".into(), Some(b"d-0".to_vec()));
    model.insert("d1".into(), Some(b"d-1".to_vec()));
    model.insert("b049".into(), None);
    for i in 0..20 {
        model.insert(format!("e{i:03}"), Some(format!("e-{i}").into_bytes()));
    }
    model
}

/// The child side of the fsync test. Run directly (without the environment variable) it does
/// nothing; it is `#[ignore]`d so a normal run lists it as ignored, not as a passing test.
#[test]
#[ignore = "the child process of the fsync fault test; it runs it"]
fn child_process() {
    let Some((mode, dir)) = child_setup(MODE, DIR) else {
        return;
    };
    // The parent reads stdout only: report a failed assertion there.
    std::panic::set_hook(Box::new(|info| {
        println!("CHILD PANIC: {}", info.to_string().replace('\n', " | "));
    }));
    match mode.as_str() {
        "fsync" => child_fsync(&dir),
        other => panic!("unknown child mode {other}"),
    }
}

fn child_fsync(dir: &Path) -> ! {
    let marker = PathBuf::from(std::env::var(MARKER).expect("the marker path"));
    let options = || manual_flush_options().durability(Durability::Fsync);
    let store = Store::open(dir, options()).unwrap();
    let mut model = Model::new();

    // Acknowledged before the fault, through a real fsync.
    let passed = shim_counter("tidekv_shim_passed");
    for i in 0..50 {
        let (key, value) = (format!("a{i:03}"), format!("a-{i}").into_bytes());
        store.set(&key, value.clone()).unwrap();
        model.insert(key, Some(value));
    }
    store.flush().unwrap();
    assert!(
        shim_counter("tidekv_shim_passed") > passed,
        "the flush never called fsync/fdatasync"
    );
    println!("ACKED a");

    // The fault: every fsync fails with EIO.
    std::fs::write(&marker, b"").unwrap();
    let failed = shim_counter("tidekv_shim_failed");
    for i in 0..50 {
        let (key, value) = (format!("b{i:03}"), format!("b-{i}").into_bytes());
        store.set(&key, value.clone()).unwrap();
        model.insert(key, Some(value));
    }
    store.set("a000", "a-new").unwrap();
    model.insert("a000".into(), Some(b"a-new".to_vec()));
    assert!(store.delete("a001").unwrap());
    model.insert("a001".into(), None);
    let log_before = log_lens(dir);
    let stats_before = store.stats();
    match store.flush() {
        Ok(()) => panic!("a flush returned Ok although its fsync failed"),
        Err(e) => assert_io(&e, libc::EIO, "the flush whose fsync failed"),
    }
    assert!(
        shim_counter("tidekv_shim_failed") > failed,
        "no fsync failed"
    );
    // The written frame is cut off again: bytes whose fsync failed are never trusted, the
    // retry writes them anew (and fsyncs them again).
    assert_failed_flush_kept_everything(&store, &stats_before, 1, &log_before, dir);
    assert_reads(&store, &model, "after the failed flush");

    // Reads and writes go on.
    for i in 0..10 {
        let (key, value) = (format!("c{i:03}"), format!("c-{i}").into_bytes());
        store.set(&key, value.clone()).unwrap();
        model.insert(key, Some(value));
    }
    let mut batch = WriteBatch::new();
    batch.set("d0", "d-0").set("d1", "d-1").delete("b049");
    store.apply(batch).unwrap();
    model.insert("d0".into(), Some(b"d-0".to_vec()));
    model.insert("d1".into(), Some(b"d-1".to_vec()));
    model.insert("b049".into(), None);
    assert!(
        store.flush().is_err(),
        "a flush returned Ok during the fault"
    );
    assert_failed_flush_kept_everything(&store, &stats_before, 2, &log_before, dir);
    // A close cannot finish either, and leaves the store open with its data.
    assert!(
        store.close().is_err(),
        "a close returned Ok during the fault"
    );
    assert_reads(&store, &model, "after the failed close");
    let stats = store.stats();
    assert_eq!(stats.flushes, stats_before.flushes, "{stats:?}");
    assert_eq!(stats.flush_failures, stats_before.flush_failures + 3);

    // The fault clears: the next flush succeeds, through a real fsync.
    std::fs::remove_file(&marker).unwrap();
    let passed = shim_counter("tidekv_shim_passed");
    store.flush().expect("the first flush after the fault");
    assert!(shim_counter("tidekv_shim_passed") > passed);
    let stats = store.stats();
    assert_eq!(stats.flushes, stats_before.flushes + 1, "{stats:?}");
    assert_eq!(stats.buffer_bytes, 0, "{stats:?}");
    assert!(log_lens(dir).values().sum::<u64>() > log_before.values().sum::<u64>());
    println!("ACKED b");
    store.close().unwrap();
    drop(store);

    // The same with a syncer that retries on its own: while fsync fails no batch is confirmed;
    // once it works again the syncer's retry empties the buffer.
    let syncer = Syncer::start(Duration::from_millis(5));
    let store = Store::open(dir, options().syncer(&syncer)).unwrap();
    assert_reads(&store, &model, "after reopening in the child");
    std::fs::write(&marker, b"").unwrap();
    let failed = shim_counter("tidekv_shim_failed");
    for i in 0..20 {
        let (key, value) = (format!("e{i:03}"), format!("e-{i}").into_bytes());
        store.set(&key, value.clone()).unwrap();
        model.insert(key, Some(value));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while shim_counter("tidekv_shim_failed") == failed || store.stats().flush_failures < 2 {
        assert!(Instant::now() < until, "the syncer never tried to flush");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    let stats = store.stats();
    assert_eq!(stats.flushes, 0, "a batch was confirmed while fsync failed");
    assert!(stats.buffer_bytes > 0, "{stats:?}");
    assert_reads(&store, &model, "while the syncer's flushes fail");
    std::fs::remove_file(&marker).unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = store.stats();
        if stats.buffer_bytes == 0 && stats.flushes >= 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "the syncer never retried: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("ACKED e");
    assert_eq!(
        model,
        fsync_child_model(),
        "the child's and parent's model differ"
    );
    println!("FSYNC FAILURES {}", shim_counter("tidekv_shim_failed"));
    println!("READY");
    // Killed here by the parent, with the store open and the syncer running.
    park();
}

/// Waits for `line` from the child, failing at once with the child's panic if it had one.
/// Returns the line (`line` may be the start of it).
fn expect_line(child: &ChildProcess, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match child.lines.recv_timeout(left) {
            Ok(got) if got.starts_with(line) => return got,
            Ok(got) if got.starts_with("CHILD PANIC") => panic!("{got}"),
            Ok(_) => continue,
            Err(e) => panic!("the child never printed {line:?}: {e}"),
        }
    }
}

#[test]
fn a_failing_fsync_is_never_reported_durable_and_the_flush_after_it_clears_succeeds() {
    let case = "failing fsync (LD_PRELOAD shim)";
    if !cfg!(target_env = "gnu") {
        return skipped(
            case,
            "LD_PRELOAD needs a dynamically linked glibc test binary",
        );
    }
    let build = tempdir();
    let shim = match build_shim(build.path()) {
        Ok(shim) => shim,
        Err(why) => return skipped(case, &why),
    };
    let dir = tempdir();
    let marker = build.path().join("fsync-fails");
    let child = ChildProcess::spawn(
        "child_process",
        &[
            (MODE, "fsync".to_string()),
            (DIR, dir.path().display().to_string()),
            (MARKER, marker.display().to_string()),
            ("LD_PRELOAD", shim.display().to_string()),
        ],
    );
    for line in ["ACKED a", "ACKED b", "ACKED e"] {
        expect_line(&child, line);
    }
    let fsync_failures: u64 = expect_line(&child, "FSYNC FAILURES ")
        .trim_start_matches("FSYNC FAILURES ")
        .parse()
        .unwrap();
    expect_line(&child, "READY");
    child.kill();
    assert!(!marker.exists(), "the child left the fault on");
    // Opened here without the shim: after SIGKILL, everything the child saw acknowledged.
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let model = fsync_child_model();
    assert_reads(&store, &model, "after SIGKILL of the child");
    let disk = store.disk_stats().unwrap();
    assert_eq!(disk.torn_tail_bytes, 0, "{disk:?}");
    assert_eq!(disk.corrupt_records_skipped, 0, "{disk:?}");
    store.close().unwrap();
    reported(case, "EIO from fsync", fsync_failures, model.len());
}
