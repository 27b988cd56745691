//! Plain loops for a profiler (`valgrind --tool=callgrind`, `perf record -g`), outside
//! criterion: set `TIDEKV_BENCH_GROUPS=profile_get` (or `profile_set`, `profile_set_ttl`,
//! `profile_persist`, `profile_reopen`) and run the bench binary under the profiler. Records
//! nothing.
//!
//! - `profile_persist`: 1M sets of 100-byte values into a file store, a flush, then (unless
//!   `PERSIST_ONLY=1`) a reopen in the same process. `KEEP_DIR=path` keeps the store,
//!   `DURABILITY=buffered` skips the fsyncs, `BUFFER_MB=n` sets the write buffer.
//! - `profile_reopen`: one open of the store in `REOPEN_DIR` (a directory `profile_persist`
//!   kept), the way the reopen bench's child process opens it; without `REOPEN_DIR` it first
//!   writes one in a child process of its own (filter the profile by this process's pid).

use std::hint::black_box;

use crate::peers::{Kv, Tide, TideTtl};
use crate::point::Data;

const OPS: usize = 1_000_000;

fn fill<K: Kv>(kv: &K, data: &Data) {
    for k in &data.keys {
        kv.set(k, data.value.clone());
    }
}

pub fn run(which: &str) {
    let data = Data::new(100_000);
    match which {
        "profile_get" => {
            let kv = Tide::new();
            fill(&kv, &data);
            kv.0.flush().expect("flush");
            for i in 0..OPS {
                black_box(kv.get(&data.keys[i % data.keys.len()]));
            }
        }
        "profile_set" => {
            let kv = Tide::new();
            for i in 0..OPS {
                kv.set(&data.keys[i % data.keys.len()], data.value.clone());
            }
        }
        "profile_set_ttl" => {
            let kv = TideTtl::new();
            for i in 0..OPS {
                kv.set(&data.keys[i % data.keys.len()], data.value.clone());
            }
        }
        "profile_persist" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let dir = match std::env::var("KEEP_DIR") {
                // Keep the store for a separate reopen (TIDEKV_BENCH_REOPEN=tidekv:N:DIR).
                Ok(path) => {
                    std::fs::create_dir_all(&path).expect("KEEP_DIR");
                    tempfile::Builder::new()
                        .disable_cleanup(true)
                        .tempdir_in(path)
                        .expect("tempdir")
                }
                Err(_) => dir,
            };
            eprintln!("store in {}", dir.path().display());
            let keys: Vec<String> = (0..OPS).map(crate::point::key).collect();
            let mut options = tidekv::Options::default();
            if std::env::var("DURABILITY").as_deref() == Ok("buffered") {
                options = options.durability(tidekv::Durability::Buffered);
            }
            if let Ok(mb) = std::env::var("BUFFER_MB") {
                options = options.buffer_size(mb.parse::<usize>().expect("BUFFER_MB") << 20);
            }
            let t = std::time::Instant::now();
            let store = tidekv::Store::open(dir.path(), options).expect("open");
            for k in &keys {
                // A copy per set, as the persist bench does.
                store.set(k, &data.value[..]).expect("set");
            }
            store.flush().expect("flush");
            eprintln!("write of {OPS} records: {:?}", t.elapsed());
            store.close().expect("close");
            if std::env::var("PERSIST_ONLY").is_ok_and(|v| v == "1") {
                return;
            }
            let t = std::time::Instant::now();
            let store = tidekv::Store::open(dir.path(), tidekv::Options::default()).expect("open");
            eprintln!("reopen of {OPS} records: {:?}", t.elapsed());
            store.close().expect("close");
        }
        "profile_reopen" => {
            // The store this run wrote, if it wrote one: removed at the end.
            let mut written = None;
            let dir = match std::env::var("REOPEN_DIR") {
                Ok(dir) => std::path::PathBuf::from(dir),
                Err(_) => {
                    let root = std::env::temp_dir()
                        .join(format!("tidekv-profile-reopen-{}", std::process::id()));
                    let status =
                        std::process::Command::new(std::env::current_exe().expect("current_exe"))
                            .env("TIDEKV_BENCH_GROUPS", "profile_persist")
                            .env("PERSIST_ONLY", "1")
                            .env("KEEP_DIR", &root)
                            .status()
                            .expect("spawn the writer");
                    assert!(status.success(), "the writer failed");
                    let kept = std::fs::read_dir(&root)
                        .expect("KEEP_DIR")
                        .flatten()
                        .next()
                        .expect("the kept store");
                    written = Some(root);
                    kept.path()
                }
            };
            let t = std::time::Instant::now();
            let store = tidekv::Store::open(&dir, tidekv::Options::default()).expect("open");
            eprintln!(
                "reopen of {} records: {:?}",
                store.stats().keys,
                t.elapsed()
            );
            store.close().expect("close");
            if let Some(root) = written {
                let _ = std::fs::remove_dir_all(root);
            }
        }
        "profile_compare" => {
            // A/B timing for engine work: alternating rounds of get hits, tidekv vs the floor.
            let tide = if std::env::var("MANUAL").is_ok() {
                Tide(
                    tidekv::Store::memory(
                        tidekv::Options::default()
                            .clock(tidekv::ManualClock::new(1_700_000_000_000)),
                    )
                    .unwrap(),
                )
            } else {
                Tide::new()
            };
            let floor = crate::peers::Floor::default();
            fill(&tide, &data);
            tide.0.flush().unwrap();
            fill(&floor, &data);
            let order: Vec<usize> = (0..OPS)
                .map(|i| (i * 7_919 + 13) % data.keys.len())
                .collect();
            for round in 0..5 {
                let t = std::time::Instant::now();
                for &i in &order {
                    black_box(tide.get(&data.keys[i]));
                }
                let a = t.elapsed().as_nanos() as f64 / OPS as f64;
                let t = std::time::Instant::now();
                let with_clock = std::env::var("FLOOR_CLOCK").is_ok();
                for &i in &order {
                    if with_clock {
                        black_box(std::time::SystemTime::now());
                    }
                    black_box(floor.get(&data.keys[i]));
                }
                let b = t.elapsed().as_nanos() as f64 / OPS as f64;
                eprintln!(
                    "round {round}: tidekv {a:.1} ns, floor {b:.1} ns, ratio {:.2}",
                    a / b
                );
            }
        }
        _ => {}
    }
}
