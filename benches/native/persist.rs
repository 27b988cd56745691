//! Persistent writes and reopen: tidekv's file log against redb and sled, beside what the disk
//! itself does for sequential writes and reads, all on the same file system in one run.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::ReadableTable;
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
            } else {
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
    let value_bytes = bytes::Bytes::from(value.clone());

    // tidekv, default options: Durability::Fsync on every flush of the 1 MiB buffer.
    let tdir = root.join("tidekv");
    let t = Instant::now();
    let store = Store::open(&tdir, Options::default()).expect("open");
    for k in &keys {
        store.set(k, value_bytes.clone()).expect("set");
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
        // tidekv: open replays the log; every record is then in memory.
        let t = Instant::now();
        let store = Store::open(&tdir, Options::default()).expect("reopen");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(store.stats().keys, n as u64, "reopen lost records");
        store.close().expect("close");
        open_row("tidekv", secs, Some(tide_bytes));

        // redb: open + a full scan (it reads lazily).
        let path = redb_path.as_ref().expect("redb file");
        let t = Instant::now();
        let db = redb::Database::open(path).expect("redb open");
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(TABLE).expect("table");
        let mut count = 0usize;
        for row in table.iter().expect("iter") {
            let (k, v) = row.expect("row");
            count += std::hint::black_box(k.value().len() + v.value().len()).min(1);
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(count, n);
        drop((table, txn, db));
        open_row("redb, open + full scan", secs, None);

        // sled: open + a full scan.
        let t = Instant::now();
        let db = sled::open(&spath).expect("sled open");
        let mut count = 0usize;
        for row in db.iter() {
            let (k, v) = row.expect("row");
            count += std::hint::black_box(k.len() + v.len()).min(1);
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(count, n);
        drop(db);
        open_row("sled, open + full scan", secs, None);

        // The raw read speed of tidekv's own files.
        let mut paths = Vec::new();
        files(&tdir, &mut paths);
        let t = Instant::now();
        let mut total = 0u64;
        for p in &paths {
            total += std::hint::black_box(std::fs::read(p).expect("read")).len() as u64;
        }
        open_row(
            "raw read of tidekv's files",
            t.elapsed().as_secs_f64(),
            Some(total),
        );
    }
}

fn dir_size_file(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
