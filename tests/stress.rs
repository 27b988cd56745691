//! Concurrency stress: many threads doing random operations on one file-backed store with a
//! 1 ms syncer, a thread sweeping expired keys and a thread compacting without pause, over
//! small segments so segments roll and compactions (manual and automatic) really run while
//! batches land. A watchdog aborts the process, with a message, if the run does not end in
//! time: a deadlock fails the test instead of hanging it.
//!
//! Each writer owns its keys and keeps a model of them: it checks its own reads against the
//! model as it goes, and remembers what it had acknowledged (its writes up to its last
//! successful `flush()`). After the run the store is closed and reopened: every key holds
//! exactly the writer's last write — so every acknowledged write is there unless the same
//! writer later overwrote, deleted or expired it — and no deleted or expired key comes back.
//!
//! That check after a clean close cannot see a write lost to a race if a later compaction
//! (which rewrites the whole keyspace from memory) put it back. So the same run also goes on
//! in a child process that announces each write and each acknowledged flush on stdout and is
//! killed with SIGKILL mid-run: after reopening, every key holds its writer's last
//! acknowledged state or a state it announced after that, never an older one.
//!
//! `TIDEKV_STRESS_SECS` sets the run's length (default 3 s; e.g. 60 for a long run) and
//! `TIDEKV_STRESS_SEED` its random choices (default: from the time; printed either way);
//! `TIDEKV_STRESS_WATCHDOG_SECS` the watchdog's bound (default 120 s, or 3 × the run + 60 s).
#![cfg(not(target_arch = "wasm32"))]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod persist_support;

use persist_support::{child_setup, park, ChildProcess};
use tidekv::{Namespace, Options, SetOptions, Store, Syncer, WriteBatch};

const WRITERS: usize = 8;
const KEYS_PER_WRITER: u64 = 48;
/// Every TTL is at most this long, so all of them have passed by the time the store reopens.
const MAX_TTL_MS: u64 = 40;

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prints past the test harness's output capture: the run's numbers are always shown.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The run's length in seconds and its seed (`TIDEKV_STRESS_SECS`, default 3;
/// `TIDEKV_STRESS_SEED`, default from the clock), said so a failing run can be repeated.
fn run_params(what: &str) -> (u64, u64) {
    let secs = env_u64("TIDEKV_STRESS_SECS").unwrap_or(3);
    let seed = env_u64("TIDEKV_STRESS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    say(&format!(
        "{what}: {secs} s, seed {seed} (TIDEKV_STRESS_SECS, TIDEKV_STRESS_SEED)"
    ));
    (secs, seed)
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

/// What a writer last did to one key.
#[derive(Clone, Debug, PartialEq)]
enum Last {
    /// Deleted (or never written).
    Gone,
    /// Set without a TTL: must be there with exactly this value.
    Value(Vec<u8>),
    /// Set or given a TTL: this value until it expires, then gone.
    Expiring(Vec<u8>),
}

/// One writer's keys: `(namespace index, key) -> what it last did`.
type Model = BTreeMap<String, Last>;

/// Counters shared with the watchdog, so a hang says where things stood.
#[derive(Default)]
struct Progress {
    ops: AtomicU64,
    flushes: AtomicU64,
    sweeps: AtomicU64,
    compactions: AtomicU64,
    writers_done: AtomicU64,
}

/// What one writer leaves behind.
struct WriterReport {
    /// Its keys' final state.
    model: Model,
    /// Its keys' state at its last successful flush.
    acked: Model,
    ops: u64,
}

/// The namespaces writers share (each writer uses one, keys never overlap).
fn namespace_name(writer: usize) -> String {
    format!("ns{}", writer % 3)
}

/// The value a writer stores in key `key` at its write number `seq`: determined by the three,
/// so a parent process can tell which write a value came from.
fn value(writer: usize, key: u64, seq: u64) -> Vec<u8> {
    let mut value = format!("w{writer}-k{key}-s{seq}-").into_bytes();
    // Mostly small, now and then a few KiB so segments roll often.
    let mix = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let pad = if mix % 20 == 0 {
        2_000 + mix % 3_000
    } else {
        mix % 120
    };
    value.resize(value.len() + pad as usize, b'a' + (seq % 26) as u8);
    value
}

/// The read a writer expects of a key it owns.
fn check_read(got: Option<&[u8]>, want: &Last, key: &str) {
    match want {
        Last::Gone => assert_eq!(got, None, "{key}: a deleted key reads as present"),
        Last::Value(v) => assert_eq!(got, Some(&v[..]), "{key}: wrong value"),
        // Expired or not: either is right, but never another value.
        Last::Expiring(v) => assert!(got.is_none() || got == Some(&v[..]), "{key}: wrong value"),
    }
}

/// How a writer tells a parent process what it does (the SIGKILL variant); silent in-process.
/// Lines: `W <writer> <key> V<seq>|E|D` before a write (a value, a TTL, gone), and
/// `A <writer>` once a flush returned Ok: every write announced before it is acknowledged.
#[derive(Clone, Copy)]
struct Announce(bool);

impl Announce {
    fn write(self, writer: usize, key: u64, code: &str) {
        if self.0 {
            println!("W {writer} {key} {code}");
        }
    }
    fn acked(self, writer: usize) {
        if self.0 {
            println!("A {writer}");
        }
    }
}

fn writer(
    store: Store,
    writer: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    announce: Announce,
) -> WriterReport {
    let mut rng = Rng::new(seed ^ (writer as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let ns: Namespace = store.namespace(&namespace_name(writer)).unwrap();
    let key_name = |k: u64| format!("w{writer}-k{k:03}");
    let mut model: Model = (0..KEYS_PER_WRITER)
        .map(|k| (key_name(k), Last::Gone))
        .collect();
    let mut acked = model.clone();
    let (mut ops, mut seq) = (0u64, 0u64);
    let ttl = |rng: &mut Rng| Duration::from_millis(1 + rng.below(MAX_TTL_MS));
    while !stop.load(Ordering::Relaxed) {
        ops += 1;
        let k = rng.below(KEYS_PER_WRITER);
        let key = key_name(k);
        match rng.below(100) {
            0..=29 => {
                seq += 1;
                let v = value(writer, k, seq);
                announce.write(writer, k, &format!("V{seq}"));
                ns.set(&key, v.clone()).unwrap();
                model.insert(key, Last::Value(v));
            }
            30..=39 => {
                seq += 1;
                let v = value(writer, k, seq);
                let options = SetOptions::new().ttl(ttl(&mut rng)).tags(["stress"]);
                announce.write(writer, k, "E");
                ns.set_with(&key, v.clone(), options).unwrap();
                model.insert(key, Last::Expiring(v));
            }
            40..=59 => {
                let got = ns.get(&key).unwrap();
                check_read(got.as_deref(), &model[&key], &key);
            }
            60..=69 => {
                announce.write(writer, k, "D");
                let removed = ns.delete(&key).unwrap();
                match &model[&key] {
                    Last::Value(_) => assert!(removed, "{key}: a live key was not deleted"),
                    Last::Gone => assert!(!removed, "{key}: a deleted key was deleted again"),
                    Last::Expiring(_) => {}
                }
                model.insert(key, Last::Gone);
            }
            70..=79 => {
                let mut batch = WriteBatch::new();
                let mut changes = Vec::new();
                for _ in 0..1 + rng.below(4) {
                    let k = rng.below(KEYS_PER_WRITER);
                    let key = key_name(k);
                    seq += 1;
                    let v = value(writer, k, seq);
                    match rng.below(3) {
                        0 => {
                            announce.write(writer, k, "D");
                            batch.delete(key.clone());
                            changes.push((key, Last::Gone));
                        }
                        1 => {
                            announce.write(writer, k, "E");
                            let options = SetOptions::new().ttl(ttl(&mut rng));
                            batch.set_with(key.clone(), v.clone(), options);
                            changes.push((key, Last::Expiring(v)));
                        }
                        _ => {
                            announce.write(writer, k, &format!("V{seq}"));
                            batch.set(key.clone(), v.clone());
                            changes.push((key, Last::Value(v)));
                        }
                    }
                }
                ns.apply(batch).unwrap();
                model.extend(changes);
            }
            80..=87 => {
                announce.write(writer, k, "E");
                let live = ns.expire(&key, ttl(&mut rng)).unwrap();
                match model[&key].clone() {
                    Last::Value(v) => {
                        assert!(live, "{key}: expire missed a live key");
                        model.insert(key, Last::Expiring(v));
                    }
                    Last::Gone => assert!(!live, "{key}: expire found a deleted key"),
                    Last::Expiring(v) if live => {
                        model.insert(key, Last::Expiring(v));
                    }
                    Last::Expiring(_) => {
                        model.insert(key, Last::Gone);
                    }
                }
            }
            88..=93 => {
                // Everything up to here is acknowledged once this returns Ok.
                ns.keys("").unwrap();
                store.flush().unwrap();
                acked = model.clone();
                announce.acked(writer);
                progress.flushes.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let got = ns.get_with_metadata(&key).unwrap();
                check_read(got.as_ref().map(|(v, _)| &v[..]), &model[&key], &key);
            }
        }
        progress.ops.fetch_add(1, Ordering::Relaxed);
    }
    // A last flush, so the whole model is acknowledged too.
    store.flush().unwrap();
    announce.acked(writer);
    progress.writers_done.fetch_add(1, Ordering::Relaxed);
    WriterReport { model, acked, ops }
}

/// A run in progress: the store, its syncer and every thread working on it.
struct Running {
    syncer: Syncer,
    store: Store,
    stop: Arc<AtomicBool>,
    writers: Vec<thread::JoinHandle<WriterReport>>,
    sweeper: thread::JoinHandle<usize>,
    compactor: thread::JoinHandle<()>,
}

/// Opens the store in `dir` (small segments, automatic compaction early, a 1 ms syncer) and
/// starts the writers, the sweeper and the compactor on it.
fn start(dir: &Path, seed: u64, progress: &Arc<Progress>, announce: Announce) -> Running {
    let syncer = Syncer::start(Duration::from_millis(1));
    let options = Options::default()
        .segment_size(8 * 1024)
        .compaction_min_size(32 * 1024)
        .compaction_ratio(0.3)
        .buffer_size(16 * 1024)
        .syncer(&syncer);
    let store = Store::open(dir, options).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers = (0..WRITERS)
        .map(|w| {
            let (store, stop, progress) = (store.clone(), Arc::clone(&stop), Arc::clone(progress));
            thread::Builder::new()
                .name(format!("stress-writer-{w}"))
                .spawn(move || writer(store, w, seed, stop, progress, announce))
                .unwrap()
        })
        .collect();
    let sweeper = {
        let (store, stop, progress) = (store.clone(), Arc::clone(&stop), Arc::clone(progress));
        thread::spawn(move || {
            let mut swept = 0;
            while !stop.load(Ordering::Relaxed) {
                swept += store.sweep_expired();
                // Also the calls that take the backend's lock from outside a flush.
                let _ = store.disk_stats().unwrap();
                let _ = store.stats();
                progress.sweeps.fetch_add(1, Ordering::Relaxed);
            }
            swept
        })
    };
    let compactor = {
        let (store, stop, progress) = (store.clone(), Arc::clone(&stop), Arc::clone(progress));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                store.compact().unwrap();
                progress.compactions.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    Running {
        syncer,
        store,
        stop,
        writers,
        sweeper,
        compactor,
    }
}

/// Aborts the process if `done` is not set within `limit`: a deadlock must fail, not hang.
fn watchdog(limit: Duration, done: Arc<AtomicBool>, progress: Arc<Progress>) {
    let start = Instant::now();
    thread::Builder::new()
        .name("stress-watchdog".into())
        .spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > limit {
                    say(&format!(
                        "stress watchdog: the run did not finish within {limit:?} (a deadlock?): \
                         {} ops, {} flushes, {} sweeps, {} compactions, {} of {WRITERS} writers \
                         done; aborting",
                        progress.ops.load(Ordering::SeqCst),
                        progress.flushes.load(Ordering::SeqCst),
                        progress.sweeps.load(Ordering::SeqCst),
                        progress.compactions.load(Ordering::SeqCst),
                        progress.writers_done.load(Ordering::SeqCst),
                    ));
                    std::process::abort();
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
        .unwrap();
}

#[test]
fn many_threads_with_a_1ms_syncer_sweeper_and_compaction_lose_no_acknowledged_write() {
    let (secs, seed) = run_params("stress");
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let limit = env_u64("TIDEKV_STRESS_WATCHDOG_SECS").unwrap_or(120.max(secs * 3 + 60));
    watchdog(
        Duration::from_secs(limit),
        Arc::clone(&done),
        Arc::clone(&progress),
    );

    let dir = tempfile::Builder::new()
        .prefix("tidekv-stress-")
        .tempdir()
        .unwrap();
    let Running {
        syncer,
        store,
        stop,
        writers,
        sweeper,
        compactor,
    } = start(dir.path(), seed, &progress, Announce(false));

    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<WriterReport> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let swept = sweeper.join().unwrap();
    compactor.join().unwrap();

    let stats = store.stats();
    let disk = store.disk_stats().unwrap();
    store.close().unwrap();
    drop(store);
    syncer.shutdown();
    done.store(true, Ordering::SeqCst);
    let ops: u64 = reports.iter().map(|r| r.ops).sum();
    say(&format!(
        "stress: {ops} operations by {WRITERS} writers in {:.1} s; {} flushes confirmed ({} by \
         writers), {swept} keys swept, {} compactions ({} manual calls), {} segments at the end",
        started.elapsed().as_secs_f64(),
        stats.flushes,
        progress.flushes.load(Ordering::SeqCst),
        disk.compactions,
        progress.compactions.load(Ordering::SeqCst),
        disk.segments,
    ));
    assert_eq!(stats.flush_failures, 0, "{stats:?}");
    assert_eq!(disk.compaction_failures, 0, "{disk:?}");
    say(&format!(
        "reliability: stress {ops} operations by {WRITERS} threads in {:.0} s with a 1 ms \
         syncer, a sweeper and {} compactions; deadlocks 0 (watchdog), acknowledged writes \
         lost 0",
        started.elapsed().as_secs_f64(),
        disk.compactions,
    ));
    assert!(
        disk.compactions > 1,
        "compaction never ran with the writes: {disk:?}"
    );
    assert!(ops > 1_000, "too few operations to mean anything: {ops}");

    // Every TTL has passed once the store reopens.
    thread::sleep(Duration::from_millis(2 * MAX_TTL_MS));
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (mut present, mut acked_checked) = (0, 0);
    for (w, report) in reports.iter().enumerate() {
        let ns = store.namespace(&namespace_name(w)).unwrap();
        let prefix = format!("w{w}-");
        let mut live = Vec::new();
        for (key, last) in &report.model {
            let got = ns.get(key).unwrap();
            match last {
                Last::Value(v) => {
                    assert!(
                        got.as_deref() == Some(&v[..]),
                        "{key}: its last write was lost after reopening (got {} bytes: {:?})",
                        got.as_ref().map_or(0, |g| g.len()),
                        got.as_ref()
                            .map(|g| String::from_utf8_lossy(&g[..g.len().min(24)]))
                    );
                    live.push(key.clone());
                    present += 1;
                }
                Last::Gone | Last::Expiring(_) => assert!(
                    got.is_none(),
                    "{key}: deleted or expired, yet back after reopening: {:?}",
                    got.as_ref()
                        .map(|g| String::from_utf8_lossy(&g[..g.len().min(24)]))
                ),
            }
            // What the writer had acknowledged is there unless it changed the key since.
            if report.acked[key] == *last {
                acked_checked += 1;
            }
        }
        assert_eq!(ns.keys(&prefix).unwrap(), live, "writer {w}'s keys");
    }
    let disk = store.disk_stats().unwrap();
    assert_eq!((disk.torn_tail_bytes, disk.corrupt_records_skipped), (0, 0));
    store.close().unwrap();
    say(&format!(
        "stress: after reopening, {present} keys hold their last value; {acked_checked} keys \
         unchanged since their writer's last acknowledged flush; {:.1} s in all",
        started.elapsed().as_secs_f64()
    ));
}

// ---------------------------------------------------------------------------------------------
// The same run, killed with SIGKILL in the middle
// ---------------------------------------------------------------------------------------------

const MODE: &str = "TIDEKV_STRESS_CHILD";
const DIR: &str = "TIDEKV_STRESS_DIR";
const CHILD_SEED: &str = "TIDEKV_STRESS_CHILD_SEED";

/// The child side of the SIGKILL variant: the same run, announcing every write and every
/// acknowledged flush on stdout, until the parent kills it. Run directly (without the
/// environment variable) it does nothing; it is `#[ignore]`d so a normal run lists it as
/// ignored, not as a passing test.
#[test]
#[ignore = "the child process of the SIGKILL stress test; it runs it"]
fn child_process() {
    let Some((_mode, dir)) = child_setup(MODE, DIR) else {
        return;
    };
    std::panic::set_hook(Box::new(|info| {
        println!("CHILD PANIC: {}", info.to_string().replace('\n', " | "));
    }));
    let seed = env_u64(CHILD_SEED).expect("the child's seed");
    let progress = Arc::new(Progress::default());
    let _running = start(&dir, seed, &progress, Announce(true));
    println!("RUNNING");
    park();
}

/// What the parent knows of one key from the child's announcements: the state at the
/// writer's last acknowledged flush, and the writes announced since (any of which may or may
/// not have reached the disk). `Some(seq)`: the value of write `seq`; `None`: no value.
#[derive(Clone, Default)]
struct Heard {
    acked: Option<u64>,
    since: Vec<Option<u64>>,
}

/// Applies one line of the child's stdout to `heard`; true for an acknowledgement.
fn hear(line: &str, heard: &mut [Vec<Heard>]) -> Option<usize> {
    if line.starts_with("CHILD PANIC") {
        panic!("{line}");
    }
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("W"), Some(w), Some(k), Some(code)) => {
            // A line cut short by the kill is ignored: its write never started.
            let (Ok(w), Ok(k)) = (w.parse::<usize>(), k.parse::<usize>()) else {
                return None;
            };
            let outcome = match code {
                "E" | "D" => None,
                _ => match code.strip_prefix('V').map(str::parse::<u64>) {
                    Some(Ok(seq)) => Some(seq),
                    _ => return None,
                },
            };
            heard[w][k].since.push(outcome);
            None
        }
        (Some("A"), Some(w), None, None) => {
            let w: usize = w.parse().ok()?;
            for key in &mut heard[w] {
                if let Some(&last) = key.since.last() {
                    key.acked = last;
                    key.since.clear();
                }
            }
            Some(w)
        }
        _ => None,
    }
}

#[test]
fn a_stress_run_killed_with_sigkill_keeps_every_acknowledged_write() {
    let (secs, seed) = run_params("stress (SIGKILL)");
    let dir = tempfile::Builder::new()
        .prefix("tidekv-stress-kill-")
        .tempdir()
        .unwrap();
    let child = ChildProcess::spawn(
        "child_process",
        &[
            (MODE, "run".to_string()),
            (DIR, dir.path().display().to_string()),
            (CHILD_SEED, seed.to_string()),
        ],
    );
    let mut heard = vec![vec![Heard::default(); KEYS_PER_WRITER as usize]; WRITERS];
    let mut last_ack: Vec<Option<Instant>> = vec![None; WRITERS];
    let (mut lines, mut acks) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match child.lines.recv_timeout(left) {
            Ok(line) => {
                lines += 1;
                if let Some(w) = hear(&line, &mut heard) {
                    acks += 1;
                    last_ack[w] = Some(Instant::now());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
            Err(e) => panic!("the child ended before it was killed: {e}"),
        }
    }
    // Every writer was still making progress when the kill came: no deadlock.
    for (w, at) in last_ack.iter().enumerate() {
        assert!(
            at.is_some_and(|at| at.elapsed() < Duration::from_secs(5)),
            "writer {w} acknowledged nothing in the last 5 s of the run (a deadlock?)"
        );
    }
    for line in child.kill() {
        lines += 1;
        acks += u64::from(hear(&line, &mut heard).is_some());
    }

    thread::sleep(Duration::from_millis(2 * MAX_TTL_MS));
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let (mut exact, mut open_ended) = (0, 0);
    for (w, keys) in heard.iter().enumerate() {
        let ns = store.namespace(&namespace_name(w)).unwrap();
        for (k, key) in keys.iter().enumerate() {
            let name = format!("w{w}-k{k:03}");
            let got = ns.get(&name).unwrap();
            let allowed = || std::iter::once(key.acked).chain(key.since.iter().copied());
            let fine = match &got {
                None => allowed().any(|o| o.is_none()),
                Some(v) => allowed()
                    .flatten()
                    .any(|seq| value(w, k as u64, seq) == v[..]),
            };
            assert!(
                fine,
                "{name}: after SIGKILL it holds {:?}, but its writer's last acknowledged state \
                 was {:?} and it announced {:?} since",
                got.as_ref()
                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(24)]).into_owned()),
                key.acked,
                key.since
            );
            if key.since.is_empty() {
                exact += 1;
            } else {
                open_ended += 1;
            }
        }
    }
    let disk = store.disk_stats().unwrap();
    assert_eq!(disk.corrupt_records_skipped, 0, "{disk:?}");
    store.close().unwrap();
    say(&format!(
        "stress (SIGKILL): {lines} lines, {acks} acknowledged flushes heard; after reopening \
         {exact} keys hold exactly their acknowledged state, {open_ended} keys one of their \
         acknowledged or later states"
    ));
    say(&format!(
        "reliability: stress killed with SIGKILL mid-run: {acks} acknowledged flushes, {} keys \
         checked after reopen, lost 0",
        exact + open_ended
    ));
}
