//! tidekv on Redis against the plain `redis` crate and `redis-benchmark`, on one
//! `redis-server` this binary starts on a free loopback port (scripts/bench.sh runs it).
//!
//! - `TIDEKV_BENCH_QUICK=1`: fewer operations (CI proves it runs).
//! - `TIDEKV_BENCH_OUT=path`: where to write the rows (JSON, read by `scripts/bench_report.py`).
//!
//! Every value is built per call from the key, as a user's code would (no shared pre-built
//! value); the keys are built before the timed loops, for every contender alike. This is a
//! benchmark, not a test: nothing here asserts a time.

#[path = "../../tests/support/redis_server.rs"]
mod redis_server;
#[path = "../native/results.rs"]
mod results;

use std::process::Command;
use std::time::{Duration, Instant};

use redis_server::Server;
use tidekv::{Options, Store, Syncer};

/// Empties the server between contenders.
fn flushall(server: &Server) {
    redis::cmd("FLUSHALL")
        .query::<()>(&mut server.raw())
        .unwrap();
}

fn key(i: usize) -> String {
    format!("key:{i:08}")
}

/// A 100-byte value made for key `i`, as an application would build it per call.
fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value-{i:08}-").into_bytes();
    v.resize(100, b'x');
    v
}

fn per_s(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// Records one figure of the `redis` group.
fn row(metric: &str, peer: &str, value: f64) {
    results::record("redis", metric, peer, value, "ops/s");
}

fn main() {
    let quick = std::env::var_os("TIDEKV_BENCH_QUICK").is_some();
    let out = std::env::var("TIDEKV_BENCH_OUT").unwrap_or_else(|_| "redis-results.json".into());
    // Plain per-call commands are one round trip each: fewer of them.
    let (n, n_plain) = if quick {
        (5_000, 1_000)
    } else {
        (200_000, 20_000)
    };
    let server = Server::start();
    // The plain client as tuned as tidekv's own connections: TCP_NODELAY.
    let info = redis::IntoConnectionInfo::into_connection_info(server.url()).unwrap();
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    let client = redis::Client::open(info.set_tcp_settings(tcp)).unwrap();
    let mut plain = client.get_connection().unwrap();
    results::record("redis", "keys", "-", n as f64, "keys");
    let keys: Vec<String> = (0..n).map(key).collect();

    // Sets with the plain client: one round trip per SET, then hand-written pipelines.
    let t = Instant::now();
    for (i, key) in keys.iter().enumerate().take(n_plain) {
        redis::cmd("SET")
            .arg(key)
            .arg(value(i))
            .query::<()>(&mut plain)
            .unwrap();
    }
    let rate = per_s(n_plain, t.elapsed());
    row("sets_per_s", "redis crate, one SET per call", rate);
    row("landed_per_s", "redis crate, one SET per call", rate);
    flushall(&server);

    let t = Instant::now();
    for (c, chunk) in keys.chunks(1_000).enumerate() {
        let mut pipe = redis::pipe();
        for (j, key) in chunk.iter().enumerate() {
            pipe.cmd("SET").arg(key).arg(value(c * 1_000 + j)).ignore();
        }
        pipe.query::<()>(&mut plain).unwrap();
    }
    let rate = per_s(n, t.elapsed());
    row("sets_per_s", "redis crate, pipelines of 1,000 SETs", rate);
    row("landed_per_s", "redis crate, pipelines of 1,000 SETs", rate);
    flushall(&server);

    // tidekv with a Syncer, as a service would run it: a set returns once it is in memory
    // (buffered sets/s); the syncer lands the buffer in the background, and the final flush
    // waits until Redis acknowledged everything (landed/s).
    let syncer = Syncer::start(Duration::from_millis(100));
    let options = Options::default().db("bench").syncer(&syncer);
    let store = Store::open_redis(&server.url(), options).unwrap();
    let t = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        store.set(key, value(i)).unwrap();
    }
    let buffered = t.elapsed();
    store.flush().unwrap();
    let landed = t.elapsed();
    row(
        "sets_per_s",
        "tidekv on Redis, buffered (Syncer)",
        per_s(n, buffered),
    );
    row(
        "landed_per_s",
        "tidekv on Redis, buffered (Syncer)",
        per_s(n, landed),
    );
    store.close().unwrap();
    flushall(&server);

    // Without a syncer, a writer flushes inline whenever the 1 MiB buffer fills.
    let store = Store::open_redis(&server.url(), Options::default().db("bench")).unwrap();
    let t = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        store.set(key, value(i)).unwrap();
    }
    store.flush().unwrap();
    let rate = per_s(n, t.elapsed());
    row(
        "landed_per_s",
        "tidekv on Redis, no Syncer (inline flushes)",
        rate,
    );

    store.close().unwrap();

    // Reads of the keys the plain GETs read below, by a fresh store (it holds nothing): the
    // first read of each goes to Redis and keeps a copy; the second is served locally.
    let fresh = Store::open_redis(&server.url(), Options::default().db("bench")).unwrap();
    let read_all = || {
        let t = Instant::now();
        let found = keys[..n_plain]
            .iter()
            .filter(|k| fresh.get(k).unwrap().is_some())
            .count();
        assert_eq!(found, n_plain);
        per_s(n_plain, t.elapsed())
    };
    let first = read_all();
    row(
        "gets_per_s",
        "tidekv on Redis, first read (from Redis)",
        first,
    );
    let again = read_all();
    row("gets_per_s", "tidekv on Redis, served locally", again);
    fresh.close().unwrap();

    let names: Vec<String> = keys
        .iter()
        .map(|k| format!("{{tidekv:bench:}}:k:{k}"))
        .collect();
    let t = Instant::now();
    for name in &names[..n_plain] {
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(name).query(&mut plain).unwrap();
        assert!(v.is_some());
    }
    row(
        "gets_per_s",
        "redis crate, one GET per call",
        per_s(n_plain, t.elapsed()),
    );

    // redis-benchmark on the same server: 50 clients, no pipelining, 100-byte values.
    let requests = if quick { 10_000 } else { 200_000 };
    let bench = Command::new("redis-benchmark")
        .args(["-p", &server.port.to_string(), "-h", "127.0.0.1"])
        .args([
            "-t",
            "set,get",
            "-d",
            "100",
            "-n",
            &requests.to_string(),
            "--csv",
        ])
        .output();
    match bench {
        Ok(o) if o.status.success() => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let cols: Vec<&str> = line.split(',').map(|c| c.trim_matches('"')).collect();
                let rps = cols.get(1).and_then(|v| v.parse::<f64>().ok());
                let metric = match cols.first() {
                    Some(&"SET") => "sets_per_s",
                    Some(&"GET") => "gets_per_s",
                    _ => continue,
                };
                if let Some(rps) = rps {
                    row(metric, "redis-benchmark (50 clients)", rps);
                }
            }
        }
        other => eprintln!("redis-benchmark did not run: {other:?}"),
    }
    results::write(&out);
}
