//! Crash safety with real processes: a child process (this test binary re-run with an
//! environment variable) writes to a store and is killed with SIGKILL; the parent reopens the
//! store and checks that everything the child saw acknowledged is there, intact.
//!
//! `TIDEKV_CRASH_POINTS=1000 cargo test --test crash` runs the random kill test with 1,000 kill
//! points instead of the default 50; `TIDEKV_CRASH_SEED` picks another sequence.
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::Duration;

use persist_support::{child_setup, park, tempdir, ChildProcess, Rng, T0};
use tidekv::{
    Durability, Error, Kind, ManualClock, Options, SetOptions, Store, Syncer, WriteBatch,
};

const MODE: &str = "TIDEKV_CRASH_CHILD";
const DIR: &str = "TIDEKV_CRASH_DIR";
const SEED: &str = "TIDEKV_CRASH_CHILD_SEED";
const CHILD_TEST: &str = "child_process";

fn spawn(mode: &str, dir: &Path, seed: u64) -> ChildProcess {
    ChildProcess::spawn(
        CHILD_TEST,
        &[
            (MODE, mode.to_string()),
            (DIR, dir.display().to_string()),
            (SEED, seed.to_string()),
        ],
    )
}

const WAIT: Duration = Duration::from_secs(60);

/// The child side of every test here. Run directly (without the environment variable) it does
/// nothing; it is `#[ignore]`d so a normal run lists it as ignored, not as a passing test.
#[test]
#[ignore = "the child process of the crash tests; they run it"]
fn child_process() {
    let Some((mode, dir)) = child_setup(MODE, DIR) else {
        return;
    };
    let seed: u64 = std::env::var(SEED)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match mode.as_str() {
        "flush-then-wait" => child_flush_then_wait(&dir),
        "syncer-no-flush" => child_syncer_no_flush(&dir),
        "hold-lock" => {
            let _store = Store::open(&dir, Options::default()).unwrap();
            println!("OPEN");
            park();
        }
        "random-ops" => child_random_ops(&dir, seed),
        "batches" => child_batches(&dir, seed),
        other => panic!("unknown child mode {other}"),
    }
}

fn child_flush_then_wait(dir: &Path) -> ! {
    let clock = ManualClock::new(T0);
    let store = Store::open(dir, Options::default().clock(clock)).unwrap();
    let users = store.namespace("users").unwrap();
    for i in 0..100 {
        store
            .set_with(
                &format!("k{i}"),
                format!("value {i}"),
                SetOptions::new()
                    .kind(Kind::Text)
                    .ttl(Duration::from_secs(3_600 + i))
                    .tags(["all", if i % 2 == 0 { "even" } else { "odd" }]),
            )
            .unwrap();
    }
    users.set("alice", vec![0u8, 159, 146, 150]).unwrap();
    store.delete("k7").unwrap();
    store.flush().unwrap();
    println!("FLUSHED");
    // Never flushed: may or may not survive, but must not disturb what was flushed.
    store.set("k1", "changed after the flush").unwrap();
    park();
}

fn child_syncer_no_flush(dir: &Path) -> ! {
    let syncer = Syncer::start(Duration::from_millis(100));
    let store = Store::open(dir, Options::default().syncer(&syncer)).unwrap();
    for i in 0..50 {
        store.set(&format!("k{i}"), format!("v{i}")).unwrap();
    }
    println!("SET");
    park();
}

#[test]
fn everything_flushed_survives_sigkill_with_values_ttls_and_tags_intact() {
    let dir = tempdir();
    let child = spawn("flush-then-wait", dir.path(), 0);
    child.wait_for("FLUSHED", WAIT);
    child.kill();

    let clock = ManualClock::new(T0 + 1_000);
    let store = Store::open(dir.path(), Options::default().clock(clock)).unwrap();
    let mut odd = Vec::new();
    for i in 0..100u64 {
        let key = format!("k{i}");
        if i == 7 {
            assert_eq!(store.get(&key).unwrap(), None);
            continue;
        }
        if i % 2 == 1 {
            odd.push(key.clone());
        }
        let (value, meta) = store.get_with_metadata(&key).unwrap().unwrap();
        if i != 1 {
            assert_eq!(&value[..], format!("value {i}").as_bytes());
        } else {
            let ok = [&b"value 1"[..], &b"changed after the flush"[..]];
            assert!(ok.contains(&&value[..]), "{value:?}");
        }
        assert_eq!(meta.kind, Kind::Text);
        assert_eq!(meta.expires_at, Some(T0 + (3_600 + i) * 1_000));
        assert_eq!(meta.created_at, T0);
        if i != 1 {
            assert_eq!(meta.tags, ["all", if i % 2 == 0 { "even" } else { "odd" }]);
        }
        assert_eq!(
            store.ttl(&key).unwrap(),
            Some(Duration::from_millis((3_600 + i) * 1_000 - 1_000))
        );
    }
    odd.sort();
    let mut got = store.query_by_tags(&["odd", "all"]).unwrap();
    got.retain(|k| k != "k1");
    odd.retain(|k| k != "k1");
    assert_eq!(got, odd);
    let users = store.namespace("users").unwrap();
    assert_eq!(
        users.get("alice").unwrap().as_deref(),
        Some(&[0u8, 159, 146, 150][..])
    );
}

#[test]
fn a_syncer_flushes_writes_that_were_never_flushed_before_a_sigkill() {
    let dir = tempdir();
    let child = spawn("syncer-no-flush", dir.path(), 0);
    child.wait_for("SET", WAIT);
    // About ten syncer intervals; the child never calls flush().
    thread::sleep(Duration::from_secs(1));
    child.kill();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.keys("").unwrap().len(), 50);
    for i in 0..50 {
        assert_eq!(
            store.get(&format!("k{i}")).unwrap().as_deref(),
            Some(format!("v{i}").as_bytes())
        );
    }
}

#[test]
fn a_database_open_in_another_process_is_locked_until_that_process_dies() {
    let dir = tempdir();
    let child = spawn("hold-lock", dir.path(), 0);
    child.wait_for("OPEN", WAIT);
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => {
            assert!(path.ends_with("default"), "{path}");
            assert!(
                Path::new(&path).starts_with(dir.path().canonicalize().unwrap()),
                "{path}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    child.kill();
    // The OS releases the lock of a dead process.
    Store::open(dir.path(), Options::default())
        .unwrap()
        .close()
        .unwrap();
}

// ---- random kill points --------------------------------------------------------------------

const OPS: usize = 3_000;
const KEYS: u64 = 60;
const TAGS: [&str; 3] = ["red", "green", "blue"];

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: String,
        value: String,
        ttl_ms: Option<u64>,
        tags: Vec<String>,
    },
    Delete {
        key: String,
    },
    Flush,
    Compact,
}

/// The child's operations, the same in parent and child for one seed.
fn ops(seed: u64) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    (0..OPS)
        .map(|i| match rng.below(100) {
            0..=69 => {
                let key = format!("k{}", rng.below(KEYS));
                let value = if rng.below(5) == 0 {
                    format!("{i}-").repeat(60) // long and compressible
                } else {
                    format!("v{i}")
                };
                let ttl_ms = (rng.below(4) == 0).then(|| 3_600_000 + rng.below(1_000));
                let bits = rng.below(8);
                let tags = (0..3)
                    .filter(|b| bits & (1 << b) != 0)
                    .map(|b| TAGS[b].to_string())
                    .collect();
                Op::Set {
                    key,
                    value,
                    ttl_ms,
                    tags,
                }
            }
            70..=84 => Op::Delete {
                key: format!("k{}", rng.below(KEYS)),
            },
            85..=97 => Op::Flush,
            _ => Op::Compact,
        })
        .collect()
}

/// Store options for one seed: segment sizes, durability, compression, auto compaction and a
/// syncer vary, so kills land in every code path.
fn random_options(seed: u64) -> (Options, bool) {
    let mut rng = Rng::new(seed ^ 0xabcdef);
    let options = Options::default()
        .clock(ManualClock::new(T0))
        .segment_size(1024 * (1 + rng.below(8)))
        .durability(if rng.below(2) == 0 {
            Durability::Fsync
        } else {
            Durability::Buffered
        })
        .compression(rng.below(2) == 0)
        .compression_threshold(64)
        .compaction_min_size(4 * 1024)
        .buffer_size(256 + rng.below(4096) as usize);
    (options, rng.below(3) == 0)
}

fn child_random_ops(dir: &Path, seed: u64) -> ! {
    let (options, with_syncer) = random_options(seed);
    let syncer = with_syncer.then(|| Syncer::start(Duration::from_millis(1)));
    let options = match &syncer {
        Some(s) => options.syncer(s),
        None => options,
    };
    let store = Store::open(dir, options).unwrap();
    println!("READY");
    for (i, op) in ops(seed).into_iter().enumerate() {
        match op {
            Op::Set {
                key,
                value,
                ttl_ms,
                tags,
            } => {
                let mut opts = SetOptions::new().kind(Kind::Text).tags(tags);
                if let Some(ms) = ttl_ms {
                    opts = opts.ttl(Duration::from_millis(ms));
                }
                store.set_with(&key, value, opts).unwrap();
            }
            Op::Delete { key } => {
                store.delete(&key).unwrap();
            }
            Op::Flush => {
                store.flush().unwrap();
                // Every operation before `i` is acknowledged.
                println!("ACK {i}");
            }
            Op::Compact => {
                store.compact().unwrap();
            }
        }
    }
    println!("DONE");
    park();
}

/// A key's state as the parent can check it: value, sorted tags, absolute deadline.
type KeyState = Option<(String, Vec<String>, Option<u64>)>;

/// For every key, the states it may legally have after a crash once operations before `acked`
/// were acknowledged: its state at `acked`, or any state it took after.
fn allowed_states(ops: &[Op], acked: usize) -> BTreeMap<String, Vec<KeyState>> {
    let mut state: BTreeMap<String, KeyState> =
        (0..KEYS).map(|k| (format!("k{k}"), None)).collect();
    let apply = |state: &mut BTreeMap<String, KeyState>, op: &Op| -> Option<String> {
        match op {
            Op::Set {
                key,
                value,
                ttl_ms,
                tags,
            } => {
                let mut tags = tags.clone();
                tags.sort();
                state.insert(
                    key.clone(),
                    Some((value.clone(), tags, ttl_ms.map(|t| T0 + t))),
                );
                Some(key.clone())
            }
            Op::Delete { key } => {
                state.insert(key.clone(), None);
                Some(key.clone())
            }
            Op::Flush | Op::Compact => None,
        }
    };
    for op in &ops[..acked] {
        apply(&mut state, op);
    }
    let mut allowed: BTreeMap<String, Vec<KeyState>> = state
        .iter()
        .map(|(k, s)| (k.clone(), vec![s.clone()]))
        .collect();
    for op in &ops[acked..] {
        if let Some(key) = apply(&mut state, op) {
            allowed.get_mut(&key).unwrap().push(state[&key].clone());
        }
    }
    allowed
}

#[test]
fn sigkill_at_random_points_of_writes_flushes_and_compactions_loses_no_acknowledged_write() {
    let points: u64 = std::env::var("TIDEKV_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let base: u64 = std::env::var("TIDEKV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut acked_points = 0;
    let mut finished = 0;
    let mut keys_checked = 0;
    for point in 0..points {
        let seed = base * 1_000_003 + point;
        let dir = tempdir();
        let child = spawn("random-ops", dir.path(), seed);
        child.wait_for("READY", WAIT);
        let mut rng = Rng::new(seed);
        thread::sleep(Duration::from_micros(rng.below(60_000)));
        let lines = child.kill();
        let acked = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ACK "))
            .filter_map(|n| n.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        if acked > 0 {
            acked_points += 1;
        }
        if lines.iter().any(|l| l == "DONE") {
            finished += 1;
        }

        let clock = ManualClock::new(T0);
        let store = Store::open(dir.path(), Options::default().clock(clock))
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after a kill failed: {e}"));
        let allowed = allowed_states(&ops(seed), acked);
        for key in store.keys("").unwrap() {
            assert!(allowed.contains_key(&key), "seed {seed}: unknown key {key}");
        }
        keys_checked += allowed.len();
        for (key, states) in &allowed {
            let got: KeyState = store.get_with_metadata(key).unwrap().map(|(v, m)| {
                let value = String::from_utf8(v.to_vec()).expect("values are text");
                (value, m.tags, m.expires_at)
            });
            assert!(
                states.contains(&got),
                "seed {seed}, acked before op {acked}: {key} is {got:?}, allowed {states:?}"
            );
        }
        for tag in TAGS {
            let mut expect: Vec<String> = allowed
                .keys()
                .filter(|k| {
                    store
                        .get_with_metadata(k)
                        .unwrap()
                        .is_some_and(|(_, m)| m.tags.iter().any(|t| t == tag))
                })
                .cloned()
                .collect();
            expect.sort();
            assert_eq!(store.query_by_tags(&[tag]).unwrap(), expect, "seed {seed}");
        }
        store.close().unwrap();
    }
    println!(
        "reliability: random-ops kill points {points}, after an acknowledged flush {acked_points}, \
         keys checked {keys_checked}, lost 0, failed opens 0, phantoms 0 ({finished} kills came \
         after the child finished)"
    );
    assert!(
        acked_points > 0,
        "no kill landed after an acknowledged flush"
    );
}

// ---- atomic batches under SIGKILL -----------------------------------------------------------

/// Keys every batch of the "batches" child writes, all with the batch's number.
const BATCH_KEYS: usize = 24;

fn child_batches(dir: &Path, seed: u64) -> ! {
    let mut rng = Rng::new(seed);
    let syncer = (seed % 2 == 0).then(|| Syncer::start(Duration::from_millis(1)));
    let mut options = Options::default()
        .durability(if seed % 3 == 0 {
            Durability::Fsync
        } else {
            Durability::Buffered
        })
        .segment_size(256 * 1024)
        .compaction_min_size(64 * 1024);
    if let Some(s) = &syncer {
        options = options.syncer(s);
    }
    let store = Store::open(dir, options).unwrap();
    println!("READY");
    for version in 1u32.. {
        let mut batch = WriteBatch::new();
        for k in 0..BATCH_KEYS {
            // Values of up to 16 KiB: a batch's frame spans many pages, so kills land inside.
            let mut value = version.to_le_bytes().to_vec();
            value.resize(4 + rng.below(16 * 1024) as usize, k as u8);
            batch.set(format!("k{k:02}"), value);
        }
        if version % 7 == 0 {
            batch.delete("k00");
        }
        store.apply(batch).unwrap();
        if rng.below(3) == 0 {
            store.flush().unwrap();
            println!("ACK {version}");
        }
        if rng.below(40) == 0 {
            store.compact().unwrap();
        }
    }
    unreachable!()
}

/// The batch number a value carries.
fn batch_of(value: &[u8]) -> u32 {
    u32::from_le_bytes(value[..4].try_into().unwrap())
}

#[test]
fn sigkill_during_atomic_batches_never_replays_part_of_a_batch() {
    let points: u64 = std::env::var("TIDEKV_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(20, |n| (n / 2).max(1));
    let mut checked = 0;
    let mut keys_checked = 0;
    for point in 0..points {
        let seed = 7_000_003 + point;
        let dir = tempdir();
        let child = spawn("batches", dir.path(), seed);
        child.wait_for("READY", WAIT);
        thread::sleep(Duration::from_micros(Rng::new(seed).below(80_000)));
        let lines = child.kill();
        let acked = lines
            .iter()
            .filter_map(|l| l.strip_prefix("ACK "))
            .filter_map(|n| n.parse::<u32>().ok())
            .max()
            .unwrap_or(0);
        let store = Store::open(dir.path(), Options::default())
            .unwrap_or_else(|e| panic!("seed {seed}: reopen after a kill failed: {e}"));
        let mut versions = Vec::new();
        for k in 0..BATCH_KEYS {
            if let Some(v) = store.get(&format!("k{k:02}")).unwrap() {
                versions.push(batch_of(&v));
            }
        }
        let version = versions.iter().copied().max().unwrap_or(0);
        // All keys from one batch (k00 may be deleted by that batch), never a mix.
        assert!(
            versions.iter().all(|&v| v == version),
            "seed {seed}: a partial batch was replayed: {versions:?}"
        );
        let expect = if version == 0 {
            0
        } else if version % 7 == 0 {
            BATCH_KEYS - 1
        } else {
            BATCH_KEYS
        };
        assert_eq!(versions.len(), expect, "seed {seed}: batch {version}");
        keys_checked += BATCH_KEYS;
        assert!(
            version >= acked,
            "seed {seed}: batch {acked} was acknowledged, {version} found"
        );
        checked += 1;
        store.close().unwrap();
    }
    println!(
        "reliability: atomic-batch kill points {checked}, keys checked {keys_checked}, \
         partial batches 0, failed opens 0"
    );
}
