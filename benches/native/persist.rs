//! Persistent writes and reopen: tidekv's file log against redb and sled, beside what the disk
//! itself does for sequential writes and reads, all on the same file system in one run.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::{ReadableDatabase, ReadableTable};
use tidekv::{Options, Store};

use crate::point::key;
use crate::results::record;
use crate::Scale;

const VALUE_LEN: usize = 100;
const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("kv");

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files(&p, out);
            } else if p.is_file() {
                // Regular files only: a database directory also holds its lock socket.
                out.push(p);
            }
        }
    }
}

fn write_row(peer: &str, n: usize, secs: f64, disk_bytes: u64) {
    record("persist", "time_ms", peer, secs * 1e3, "ms");
    record(
        "persist",
        "records_per_s",
        peer,
        n as f64 / secs,
        "records/s",
    );
    let payload = (n * (key(0).len() + VALUE_LEN)) as f64;
    record(
        "persist",
        "payload_mb_per_s",
        peer,
        payload / secs / 1e6,
        "MB/s",
    );
    record(
        "persist",
        "disk_mb_per_s",
        peer,
        disk_bytes as f64 / secs / 1e6,
        "MB/s",
    );
    record("persist", "disk_bytes", peer, disk_bytes as f64, "B");
}

fn open_row(peer: &str, secs: f64, bytes: Option<u64>) {
    record("reopen", "open_ms", peer, secs * 1e3, "ms");
    if let Some(b) = bytes {
        record("reopen", "mb_per_s", peer, b as f64 / secs / 1e6, "MB/s");
    }
}

/// The disk's sequential write-with-fsync speed for `bytes`: 1 MiB writes, then `fsync`
/// either once at the end or after every write (what a store flushing 1 MiB at a time meets).
fn disk_limit(root: &Path, bytes: u64) {
    let chunk = vec![0x5Au8; 1 << 20];
    for (peer, every) in [
        ("sequential write limit", false),
        ("sequential, fsync every 1 MiB", true),
    ] {
        let path = root.join(format!("raw-{every}"));
        let t = Instant::now();
        let mut f = File::create(&path).expect("create");
        let mut written = 0u64;
        while written < bytes {
            f.write_all(&chunk).expect("write");
            written += chunk.len() as u64;
            if every {
                f.sync_data().expect("fsync");
            }
        }
        f.sync_all().expect("fsync");
        let secs = t.elapsed().as_secs_f64();
        record(
            "persist",
            "disk_mb_per_s",
            peer,
            written as f64 / secs / 1e6,
            "MB/s",
        );
        record("persist", "time_ms", peer, secs * 1e3, "ms");
        drop(f);
        std::fs::remove_file(&path).expect("remove");
    }
}

pub fn bench(scale: &Scale, writes: bool, reopen: bool) {
    let n = scale.big;
    let base = std::env::var_os("TIDEKV_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&base).expect("bench dir");
    let root = tempfile::tempdir_in(&base).expect("tempdir");
    let root = root.path();
    let keys: Vec<String> = (0..n).map(key).collect();
    let value = vec![0xA5u8; VALUE_LEN];

    // tidekv, default options: Durability::Fsync on every flush of the 1 MiB buffer. Each set
    // gets the value as a slice and copies it, as redb's and sled's inserts below do (no
    // shared pre-built buffer for tidekv alone).
    let tdir = root.join("tidekv");
    let t = Instant::now();
    let store = Store::open(&tdir, Options::default()).expect("open");
    for k in &keys {
        store.set(k, value.as_slice()).expect("set");
    }
    store.flush().expect("flush");
    let secs = t.elapsed().as_secs_f64();
    store.close().expect("close");
    let tide_bytes = dir_size(&tdir);
    if writes {
        write_row("tidekv", n, secs, tide_bytes);
        disk_limit(root, tide_bytes);
    }

    // redb: a commit (fsync) every 1,000 inserts, and one commit at the end.
    let mut redb_path = None;
    for (peer, every) in [("redb, commit every 1,000", 1_000), ("redb, one commit", n)] {
        let path = root.join(format!("redb-{every}"));
        let t = Instant::now();
        let db = redb::Database::create(&path).expect("redb create");
        for chunk in keys.chunks(every) {
            let txn = db.begin_write().expect("begin");
            {
                let mut table = txn.open_table(TABLE).expect("table");
                for k in chunk {
                    table.insert(k.as_str(), value.as_slice()).expect("insert");
                }
            }
            txn.commit().expect("commit");
        }
        let secs = t.elapsed().as_secs_f64();
        drop(db);
        if writes {
            write_row(peer, n, secs, dir_size_file(&path));
        }
        if every == 1_000 {
            redb_path = Some(path);
        } else {
            std::fs::remove_file(&path).expect("remove");
        }
    }

    // sled: inserts, then one flush.
    let spath = root.join("sled");
    let t = Instant::now();
    let db = sled::open(&spath).expect("sled open");
    for k in &keys {
        db.insert(k.as_bytes(), value.as_slice()).expect("insert");
    }
    db.flush().expect("flush");
    let secs = t.elapsed().as_secs_f64();
    drop(db);
    if writes {
        write_row("sled, flush at the end", n, secs, dir_size(&spath));
    }

    if reopen {
        // Each open runs in a fresh child process, as after a restart: a heap that already held
        // (and freed) a million entries would make the replay look cheaper than a restart is.
        // Every store is opened REOPEN_RUNS times; the run with the median time is reported.
        let redb_path = redb_path.as_ref().expect("redb file");
        for (peer, which, path, bytes) in [
            ("tidekv", "tidekv", &tdir, Some(tide_bytes)),
            ("redb, open + full scan", "redb", redb_path, None),
            ("sled, open + full scan", "sled", &spath, None),
            ("raw read of tidekv's files", "raw", &tdir, Some(tide_bytes)),
        ] {
            let mut runs: Vec<ChildRun> = (0..REOPEN_RUNS)
                .map(|_| reopen_in_child(which, path, n))
                .collect();
            runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
            let median = &runs[runs.len() / 2];
            open_row(peer, median.secs, bytes);
            if let (Some(faults), Some(rss_kb)) = (median.minor_faults, median.peak_rss_kb) {
                record("reopen", "minor_faults", peer, faults, "page faults");
                record("reopen", "peak_rss_mb", peer, rss_kb / 1024.0, "MiB");
            }
            record("reopen", "fastest_ms", peer, runs[0].secs * 1e3, "ms");
            record(
                "reopen",
                "slowest_ms",
                peer,
                runs[runs.len() - 1].secs * 1e3,
                "ms",
            );
        }
    }
}

/// Opens per store in the reopen group (each in a fresh child process).
const REOPEN_RUNS: usize = 3;

/// What one reopen child measured.
struct ChildRun {
    secs: f64,
    minor_faults: Option<f64>,
    peak_rss_kb: Option<f64>,
}

/// Runs `open_one` in a child process (this bench binary, `TIDEKV_BENCH_REOPEN` set) and
/// returns what it measured.
fn reopen_in_child(which: &str, path: &Path, n: usize) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let out = std::process::Command::new(exe)
        .env(
            "TIDEKV_BENCH_REOPEN",
            format!("{which}:{n}:{}", path.display()),
        )
        .output()
        .expect("spawn the reopen child");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "reopen child failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    ChildRun {
        secs: field("reopen_secs ").expect("the child's reopen_secs line"),
        minor_faults: field("minor_faults "),
        peak_rss_kb: field("peak_rss_kb "),
    }
}

/// The child's side: opens one store (`"tidekv"`, `"redb"`, `"sled"`, or `"raw"` for reading
/// tidekv's files) holding `n` records, makes every record readable, prints the time.
pub fn open_one(spec: &str) {
    let mut parts = spec.splitn(3, ':');
    let (which, n, path) = (
        parts.next().expect("which"),
        parts
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .expect("n"),
        PathBuf::from(parts.next().expect("path")),
    );
    let t = Instant::now();
    match which {
        // tidekv: open replays the log; every record is then in memory.
        "tidekv" => {
            let store = Store::open(&path, Options::default()).expect("reopen");
            let secs = t.elapsed().as_secs_f64();
            assert_eq!(store.stats().keys, n as u64, "reopen lost records");
            println!("reopen_secs {secs}");
            print_process_stats();
            store.close().expect("close");
            return;
        }
        // redb and sled read lazily: open + a full scan.
        "redb" => {
            let db = redb::Database::open(&path).expect("redb open");
            let txn = db.begin_read().expect("read");
            let table = txn.open_table(TABLE).expect("table");
            let mut count = 0usize;
            for row in table.iter().expect("iter") {
                let (k, v) = row.expect("row");
                count += std::hint::black_box(k.value().len() + v.value().len()).min(1);
            }
            assert_eq!(count, n);
        }
        "sled" => {
            let db = sled::open(&path).expect("sled open");
            let mut count = 0usize;
            for row in db.iter() {
                let (k, v) = row.expect("row");
                count += std::hint::black_box(k.len() + v.len()).min(1);
            }
            assert_eq!(count, n);
        }
        // The raw read speed of tidekv's own files.
        _ => {
            let mut paths = Vec::new();
            files(&path, &mut paths);
            for p in &paths {
                std::hint::black_box(std::fs::read(p).expect("read"));
            }
        }
    }
    println!("reopen_secs {}", t.elapsed().as_secs_f64());
    print_process_stats();
}

/// The child's minor page faults and peak resident memory, from /proc (Linux only; prints
/// nothing elsewhere).
fn print_process_stats() {
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; minflt is the 10th field overall.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            if let Some(minflt) = rest.split_whitespace().nth(7) {
                println!("minor_faults {minflt}");
            }
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
        {
            println!("peak_rss_kb {kb}");
        }
    }
}

fn dir_size_file(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
