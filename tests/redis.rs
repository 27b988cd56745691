//! Redis as the source of truth (feature `redis`), against a real `redis-server` this test
//! starts on 127.0.0.1 on a free port (`scripts/install-tools.sh` installs Debian's
//! `redis-server`). Two stores on one server stand for two processes sharing it.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tidekv::core::{Change, ChangeOp};
use tidekv::{Error, Kind, Options, SetOptions, Store, Syncer, WriteBatch};

#[path = "support/redis_server.rs"]
mod redis_server;

use redis_server::{free_port, Server};

/// Polls `f` until it is true, for at most `bound`; whether it became true.
fn within(bound: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The acceptance bound for another instance's write to reach a cached copy.
const STALE_BOUND: Duration = Duration::from_secs(2);

fn open(server: &Server, db: &str) -> Store {
    Store::open_redis(&server.url(), Options::default().db(db)).unwrap()
}

#[test]
fn what_one_store_flushes_another_store_on_the_same_server_reads() {
    let server = Server::start();
    let a = open(&server, "app");
    let b = open(&server, "app");
    a.set_with(
        "user:1",
        r#"{"name":"Ada"}"#,
        SetOptions::new().kind(Kind::Json).tag("users"),
    )
    .unwrap();
    a.namespace("sessions").unwrap().set("s1", "x").unwrap();
    assert_eq!(b.get("user:1").unwrap(), None, "not flushed yet");
    a.flush().unwrap();
    let (value, meta) = b.get_with_metadata("user:1").unwrap().unwrap();
    assert_eq!(&value[..], br#"{"name":"Ada"}"#);
    assert_eq!(
        (meta.kind, meta.tags),
        (Kind::Json, vec!["users".to_string()])
    );
    assert_eq!(
        b.namespace("sessions")
            .unwrap()
            .get("s1")
            .unwrap()
            .as_deref(),
        Some(&b"x"[..])
    );
    // Another database on the same server is another keyspace.
    assert_eq!(open(&server, "other").get("user:1").unwrap(), None);
    // Deletes and atomic batches reach the server.
    let mut batch = WriteBatch::new();
    batch.set("k1", "1").set("k2", "2").delete("user:1");
    b.apply(batch).unwrap();
    b.flush().unwrap();
    let c = open(&server, "app");
    assert_eq!(c.get("user:1").unwrap(), None);
    assert_eq!(c.get("k2").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn redis_expires_keys_at_the_same_absolute_deadline() {
    let server = Server::start();
    let a = open(&server, "ttl");
    a.set_with(
        "short",
        "v",
        SetOptions::new().ttl(Duration::from_millis(300)),
    )
    .unwrap();
    a.flush().unwrap();
    let b = open(&server, "ttl");
    let (_, meta) = b.get_with_metadata("short").unwrap().unwrap();
    let (_, mine) = a.get_with_metadata("short").unwrap().unwrap();
    assert_eq!(meta.expires_at, mine.expires_at);
    thread::sleep(Duration::from_millis(400));
    assert_eq!(
        open(&server, "ttl").get("short").unwrap(),
        None,
        "gone from Redis too"
    );
    assert_eq!(a.get("short").unwrap(), None);
}

#[test]
fn with_redis_down_writes_stay_buffered_and_land_when_it_returns() {
    let server = Server::start();
    let a = open(&server, "faults");
    a.set("before", "1").unwrap();
    a.flush().unwrap();
    let (port, dir) = server.stop();
    a.set("during", "2").unwrap();
    let err = a.flush().unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("Redis"), "{err}");
    assert!(a.stats().buffer_bytes > 0, "the write stays buffered");
    assert_eq!(a.get("during").unwrap().as_deref(), Some(&b"2"[..]));
    let err = a.get("never-seen").unwrap_err();
    assert!(
        matches!(err, Error::Backend(_)),
        "a read that needs Redis names the cause"
    );
    // Redis returns (empty: it saved nothing): the next flush lands what was buffered.
    let server = Server::start_on(port, dir);
    a.flush().unwrap();
    let b = open(&server, "faults");
    assert_eq!(b.get("during").unwrap().as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_bad_url_or_a_server_that_is_not_there_fails_the_open_clearly() {
    let err = Store::open_redis("not a url", Options::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
    let port = free_port();
    let err =
        Store::open_redis(&format!("redis://127.0.0.1:{port}/"), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
}

#[test]
fn records_tag_sets_and_the_deadline_index_follow_the_documented_layout() {
    let server = Server::start();
    let a = open(&server, "app");
    let deadline_ttl = Duration::from_secs(600);
    a.namespace("users")
        .unwrap()
        .set_with(
            "u:1",
            "ada",
            SetOptions::new().ttl(deadline_ttl).tag("staff").tag("red"),
        )
        .unwrap();
    a.flush().unwrap();
    let mut raw = server.raw();
    // H = {tidekv:app:7573657273}: "users" in hex.
    let h = "{tidekv:app:7573657273}";
    let record: Vec<u8> = redis::cmd("GET")
        .arg(format!("{h}:k:u:1"))
        .query(&mut raw)
        .unwrap();
    let (decoded, _) = tidekv::Record::decode(&record).unwrap();
    assert_eq!((decoded.namespace(), decoded.key()), ("users", "u:1"));
    let member: bool = redis::cmd("SISMEMBER")
        .arg(format!("{h}:t:staff"))
        .arg("u:1")
        .query(&mut raw)
        .unwrap();
    assert!(member);
    let tags: String = redis::cmd("HGET")
        .arg(format!("{h}:tags"))
        .arg("u:1")
        .query(&mut raw)
        .unwrap();
    assert_eq!(tags, "3:red5:staff");
    let score: u64 = redis::cmd("ZSCORE")
        .arg(format!("{h}:d"))
        .arg("u:1")
        .query(&mut raw)
        .unwrap();
    let pexpiretime: u64 = redis::cmd("PEXPIRETIME")
        .arg(format!("{h}:k:u:1"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(score, pexpiretime, "the index holds Redis's own deadline");
    // Replacing the tags takes the key out of the sets it left.
    a.namespace("users")
        .unwrap()
        .set_with("u:1", "ada", SetOptions::new().tag("blue"))
        .unwrap();
    a.flush().unwrap();
    let staff: u64 = redis::cmd("SCARD")
        .arg(format!("{h}:t:staff"))
        .query(&mut raw)
        .unwrap();
    let indexed: u64 = redis::cmd("ZCARD")
        .arg(format!("{h}:d"))
        .query(&mut raw)
        .unwrap();
    assert_eq!((staff, indexed), (0, 0));
}

#[test]
fn listings_and_tag_queries_see_the_server_and_this_stores_unflushed_changes() {
    let server = Server::start();
    let a = open(&server, "list");
    let b = open(&server, "list");
    for (key, tag) in [
        ("user:1", "admin"),
        ("user:2", "guest"),
        ("order:1", "admin"),
    ] {
        a.set_with(key, "v", SetOptions::new().tag(tag).tag("all"))
            .unwrap();
    }
    a.set("star*[x]", "glob characters in a key").unwrap();
    a.flush().unwrap();
    // b has changes of its own that Redis has not seen yet.
    b.set_with("user:3", "v", SetOptions::new().tag("admin"))
        .unwrap();
    assert!(b.delete("user:2").unwrap());
    b.set_with("order:1", "v", SetOptions::new().tag("archived"))
        .unwrap();
    assert_eq!(b.keys("user:").unwrap(), ["user:1", "user:3"]);
    assert_eq!(
        b.keys("star*").unwrap(),
        ["star*[x]"],
        "a prefix is not a pattern"
    );
    assert_eq!(b.keys("star?").unwrap(), Vec::<String>::new());
    assert_eq!(b.query_by_tags(&["admin"]).unwrap(), ["user:1", "user:3"]);
    assert_eq!(b.query_by_tags(&["admin", "all"]).unwrap(), ["user:1"]);
    assert!(b.query_by_tags::<&str>(&[]).unwrap().is_empty());
    assert_eq!(
        b.list_tags().unwrap(),
        [
            ("admin".to_string(), 2),
            ("all".to_string(), 1),
            ("archived".to_string(), 1)
        ]
    );
    // Once b flushed, a fresh store sees the same.
    b.flush().unwrap();
    let c = open(&server, "list");
    assert_eq!(c.query_by_tags(&["admin"]).unwrap(), ["user:1", "user:3"]);
    assert_eq!(c.keys("").unwrap().len(), 4);
    // Other namespaces and databases are other keyspaces.
    assert!(c.namespace("x").unwrap().keys("").unwrap().is_empty());
    assert!(open(&server, "other").keys("").unwrap().is_empty());
}

#[test]
fn a_tag_query_never_returns_an_expired_key_and_the_tag_sets_are_cleaned() {
    let server = Server::start();
    let a = open(&server, "reap");
    a.set_with(
        "short",
        "v",
        SetOptions::new().ttl(Duration::from_millis(200)).tag("t"),
    )
    .unwrap();
    a.set_with("long", "v", SetOptions::new().tag("t")).unwrap();
    a.flush().unwrap();
    assert_eq!(a.query_by_tags(&["t"]).unwrap(), ["long", "short"]);
    thread::sleep(Duration::from_millis(300));
    let b = open(&server, "reap");
    assert_eq!(b.query_by_tags(&["t"]).unwrap(), ["long"]);
    assert_eq!(b.list_tags().unwrap(), [("t".to_string(), 1)]);
    let mut raw = server.raw();
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg("{tidekv:reap:}:t:t")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        members,
        ["long"],
        "the reap step removed the expired member"
    );
}

/// A store whose change events are recorded.
fn open_listening(server: &Server, db: &str) -> (Store, Arc<Mutex<Vec<Change>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let store = Store::open_redis(
        &server.url(),
        Options::default()
            .db(db)
            .on_change(move |c: &Change| log.lock().unwrap().push(c.clone())),
    )
    .unwrap();
    (store, seen)
}

#[test]
fn another_instances_write_reaches_a_cached_copy_within_the_bound_with_a_remote_event() {
    let server = Server::start();
    let (a, seen) = open_listening(&server, "coherent");
    let b = open(&server, "coherent");
    b.set("k", "1").unwrap();
    b.flush().unwrap();
    assert_eq!(
        a.get("k").unwrap().as_deref(),
        Some(&b"1"[..]),
        "now cached"
    );
    b.set("k", "2").unwrap();
    b.flush().unwrap();
    assert!(
        within(STALE_BOUND, || a.get("k").unwrap().as_deref()
            == Some(&b"2"[..])),
        "a still serves the old value"
    );
    b.delete("k").unwrap();
    b.flush().unwrap();
    assert!(within(STALE_BOUND, || a.get("k").unwrap().is_none()));
    assert!(within(STALE_BOUND, || seen.lock().unwrap().len() >= 3));
    let events: Vec<(String, ChangeOp, bool)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.key.clone(), c.op, c.remote))
        .collect();
    assert_eq!(
        events,
        [
            ("k".to_string(), ChangeOp::Set, true),
            ("k".to_string(), ChangeOp::Set, true),
            ("k".to_string(), ChangeOp::Delete, true)
        ]
    );
    // a's own writes are reported once, as local, never echoed back as remote.
    seen.lock().unwrap().clear();
    a.set("mine", "x").unwrap();
    a.flush().unwrap();
    b.set("theirs", "y").unwrap();
    b.flush().unwrap();
    assert!(within(STALE_BOUND, || seen
        .lock()
        .unwrap()
        .iter()
        .any(|c| c.key == "theirs")));
    let events: Vec<(String, bool)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.key.clone(), c.remote))
        .collect();
    assert_eq!(
        events,
        [("mine".to_string(), false), ("theirs".to_string(), true)]
    );
}

#[test]
fn a_pending_write_is_never_replaced_by_another_instances_older_one() {
    let server = Server::start();
    let a = open(&server, "pending");
    let b = open(&server, "pending");
    a.set("k", "a's, unflushed").unwrap();
    b.set("k", "b's").unwrap();
    b.flush().unwrap();
    thread::sleep(Duration::from_millis(200));
    assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"a's, unflushed"[..]));
    a.flush().unwrap();
    assert!(within(STALE_BOUND, || b.get("k").unwrap().as_deref()
        == Some(&b"a's, unflushed"[..])));
}

#[test]
fn a_redis_restart_loses_no_acknowledged_or_buffered_write_and_drops_stale_copies() {
    let port = free_port();
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let server = Server::start_with(port, tempfile::tempdir().unwrap(), &aof);
    let syncer = Syncer::start(Duration::from_millis(50));
    let a = Store::open_redis(
        &server.url(),
        Options::default().db("restart").syncer(&syncer),
    )
    .unwrap();
    let b = open(&server, "restart");
    for i in 0..100 {
        a.set(&format!("acked:{i}"), i.to_string()).unwrap();
    }
    a.flush().unwrap();
    b.set("shared", "old").unwrap();
    b.flush().unwrap();
    assert_eq!(a.get("shared").unwrap().as_deref(), Some(&b"old"[..]));
    // SHUTDOWN NOSAVE: the server goes at once; with AOF on, what it acknowledged stays.
    let _ = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query::<()>(&mut server.raw());
    let (port, dir) = server.stop();
    for i in 0..50 {
        a.set(&format!("buffered:{i}"), i.to_string()).unwrap();
    }
    assert!(
        within(STALE_BOUND, || a.stats().backend_down),
        "stats show the outage"
    );
    assert!(a.stats().last_error.unwrap_or_default().contains("Redis"));
    let err = a.get("never-seen").unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
    let server = Server::start_with(port, dir, &aof);
    b.set("shared", "new").unwrap();
    b.flush().unwrap();
    // The syncer lands the buffered writes on its own once Redis is back.
    let c = open(&server, "restart");
    assert!(within(Duration::from_secs(15), || c
        .get("buffered:49")
        .unwrap()
        .is_some()));
    for i in 0..100 {
        assert_eq!(
            c.get(&format!("acked:{i}")).unwrap().as_deref(),
            Some(i.to_string().as_bytes()),
            "acknowledged write {i} survived the restart"
        );
    }
    for i in 0..50 {
        assert!(c.get(&format!("buffered:{i}")).unwrap().is_some());
    }
    assert!(within(STALE_BOUND, || a.get("shared").unwrap().as_deref()
        == Some(&b"new"[..])));
    assert!(within(STALE_BOUND, || !a.stats().backend_down));
}

#[cfg(feature = "cli")]
#[test]
fn the_cli_with_redis_writes_what_a_store_reads_and_refuses_file_only_commands() {
    let server = Server::start();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidekv"))
            .args(["--redis", &server.url(), "--db", "cli"])
            .args(args)
            .output()
            .unwrap()
    };
    let set = cli(&["set", "greeting", "hello", "--tag", "t", "--ttl", "1h"]);
    assert!(set.status.success(), "{set:?}");
    let store = open(&server, "cli");
    let (value, meta) = store.get_with_metadata("greeting").unwrap().unwrap();
    assert_eq!((&value[..], meta.kind), (&b"hello"[..], Kind::Text));
    assert!(meta.expires_at.is_some());
    store.set("from-rust", "hi").unwrap();
    store.flush().unwrap();
    let get = cli(&["get", "from-rust"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "hi\n");
    let query = cli(&["query", "t"]);
    assert_eq!(String::from_utf8_lossy(&query.stdout), "greeting\n");
    let dump = cli(&["dump"]);
    assert_eq!(dump.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&dump.stderr).contains("--redis"));
}

/// A 3-master Redis Cluster on loopback ports (`--cluster-enabled yes`, then
/// `redis-cli --cluster create`); its servers stop on drop.
struct ClusterServers {
    nodes: Vec<Server>,
}

impl ClusterServers {
    fn start() -> ClusterServers {
        let nodes: Vec<Server> = (0..3)
            .map(|_| {
                Server::start_with(
                    free_port(),
                    tempfile::tempdir().unwrap(),
                    &["--appendonly", "no", "--cluster-enabled", "yes"],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli is installed with redis-server");
        assert!(created.status.success(), "{created:?}");
        for node in &nodes {
            assert!(
                within(Duration::from_secs(20), || {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut node.raw())
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                }),
                "the cluster did not come up"
            );
        }
        ClusterServers { nodes }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// The port of the master that holds `redis_key`'s slot.
    fn holder(&self, redis_key: &str) -> u16 {
        let mut raw = self.nodes[0].raw();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(redis_key)
            .query(&mut raw)
            .unwrap();
        let ranges: Vec<(u16, u16, (String, u16))> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query(&mut raw)
            .map(|v: Vec<redis::Value>| {
                v.into_iter()
                    .map(|r| {
                        let (a, b, node): (u16, u16, Vec<redis::Value>) =
                            redis::FromRedisValue::from_redis_value(r).unwrap();
                        let hp: (String, u16) = redis::FromRedisValue::from_redis_value(
                            redis::Value::Array(node.into_iter().take(2).collect()),
                        )
                        .unwrap();
                        (a, b, hp)
                    })
                    .collect()
            })
            .unwrap();
        ranges
            .into_iter()
            .find(|(a, b, _)| (*a..=*b).contains(&slot))
            .unwrap()
            .2
             .1
    }
}

#[test]
fn a_cluster_spreads_namespaces_over_its_masters_and_keeps_each_one_atomic_and_coherent() {
    let cluster = ClusterServers::start();
    let urls = cluster.urls();
    let (a, seen) = {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let store = Store::open_redis_cluster(
            &urls[..1],
            Options::default()
                .db("c")
                .on_change(move |c: &Change| log.lock().unwrap().push(c.clone())),
        )
        .unwrap();
        (store, seen)
    };
    let b = Store::open_redis_cluster(&urls[2..], Options::default().db("c")).unwrap();
    // Namespaces whose hash tags land on different masters.
    let names: Vec<String> = (0..12).map(|i| format!("ns{i}")).collect();
    let holders: std::collections::BTreeSet<u16> = names
        .iter()
        .map(|n| {
            let hex: String = n.bytes().map(|b| format!("{b:02x}")).collect();
            cluster.holder(&format!("{{tidekv:c:{hex}}}"))
        })
        .collect();
    assert!(holders.len() >= 2, "the namespaces cover several masters");
    for name in &names {
        let ns = a.namespace(name).unwrap();
        let mut batch = WriteBatch::new();
        batch
            .set("k", format!("{name}-v1"))
            .set("other", "x")
            .delete("missing");
        ns.apply(batch).unwrap();
        ns.set_with("tagged", "t", SetOptions::new().tag("red"))
            .unwrap();
    }
    a.flush().unwrap();
    for name in &names {
        let ns = b.namespace(name).unwrap();
        assert_eq!(
            ns.get("k").unwrap().as_deref(),
            Some(format!("{name}-v1").as_bytes())
        );
        assert_eq!(ns.keys("").unwrap(), ["k", "other", "tagged"]);
        assert_eq!(ns.query_by_tags(&["red"]).unwrap(), ["tagged"]);
    }
    // b's write reaches a's cached copies on every master, with remote events.
    for name in &names {
        b.namespace(name).unwrap().set("k", "v2").unwrap();
    }
    b.flush().unwrap();
    for name in &names {
        let ns = a.namespace(name).unwrap();
        assert!(
            within(STALE_BOUND, || ns.get("k").unwrap().as_deref()
                == Some(&b"v2"[..])),
            "{name} stale on a"
        );
    }
    let remote_k = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|c| c.remote && c.key == "k")
            .count()
    };
    assert!(
        within(STALE_BOUND, || remote_k() == names.len()),
        "{:?}",
        seen.lock().unwrap()
    );
    // A fresh store seeded with another node reads the same.
    let c = Store::open_redis_cluster(&urls[1..2], Options::default().db("c")).unwrap();
    assert_eq!(
        c.namespace("ns5").unwrap().get("k").unwrap().as_deref(),
        Some(&b"v2"[..])
    );
    let err = Store::open_redis_cluster::<&str>(&[], Options::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (scripts/install-tools.sh)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

#[cfg(feature = "cli")]
#[test]
fn rediss_urls_connect_over_tls_and_an_untrusted_certificate_fails_clearly() {
    // A CA and a server certificate for 127.0.0.1, made for this test.
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=tidekv test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    let path = |f: &str| d.join(f).to_str().unwrap().to_string();
    let port = free_port();
    let tls = [
        "--appendonly",
        "no",
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--tls-cert-file",
        &path("server.pem"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.pem"),
        "--tls-auth-clients",
        "no",
    ];
    let _server = Server::start_with(port, tempfile::tempdir().unwrap(), &tls);
    let url = format!("rediss://127.0.0.1:{port}/");
    // The CLI trusts the test CA through SSL_CERT_FILE, as any rustls-native-certs user would.
    let cli = |ca: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidekv"))
            .env("SSL_CERT_FILE", ca)
            .args(["--redis", &url, "--db", "tls"])
            .args(args)
            .output()
            .unwrap()
    };
    let set = cli(&path("ca.pem"), &["set", "k", "over tls"]);
    assert!(set.status.success(), "{set:?}");
    let get = cli(&path("ca.pem"), &["get", "k"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout), "over tls\n");
    // A certificate nobody trusts: a clear Backend error at open, nothing written.
    let untrusted = cli(&path("server.pem"), &["set", "k2", "v"]);
    assert_eq!(untrusted.status.code(), Some(3), "{untrusted:?}");
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("Redis connect failed"), "{stderr}");
}

#[test]
fn cache_features_on_redis_cap_only_copies_and_list_clear_and_load_through_the_server() {
    let server = Server::start();
    let writer = open(&server, "cache");
    for i in 0..500 {
        writer.set(&format!("k:{i:03}"), vec![1u8; 200]).unwrap();
    }
    writer.flush().unwrap();
    // A capped reader: its copies stay under the cap; an evicted copy is read again from
    // Redis, where the data stays.
    let reader = Store::open_redis(
        &server.url(),
        Options::default().db("cache").max_memory(20_000),
    )
    .unwrap();
    for i in 0..500 {
        assert!(reader.get(&format!("k:{i:03}")).unwrap().is_some());
        assert!(reader.stats().memory_bytes <= 20_000);
    }
    assert!(reader.stats().evictions > 0);
    assert!(
        reader.get("k:000").unwrap().is_some(),
        "evicted copy, data kept"
    );
    assert_eq!(open(&server, "cache").len().unwrap(), 500);
    // An unflushed write of the capped store is never evicted (it would be lost).
    for i in 0..200 {
        reader.set(&format!("mine:{i}"), vec![2u8; 200]).unwrap();
    }
    reader.flush().unwrap();
    assert_eq!(open(&server, "cache").keys("mine:").unwrap().len(), 200);

    // get_or_insert_with: the loader runs on a miss in Redis, and another store reads the
    // stored value from Redis without loading.
    let calls = AtomicUsize::new(0);
    let load = || {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>("loaded")
    };
    let v = writer
        .get_or_insert_with("lazy", SetOptions::new(), load)
        .unwrap();
    assert_eq!(&v[..], b"loaded");
    writer.flush().unwrap();
    let other = open(&server, "cache");
    let v = other
        .get_or_insert_with("lazy", SetOptions::new(), || Err::<&str, _>("not called"))
        .unwrap();
    assert_eq!(&v[..], b"loaded");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // entries and len see the server and this store's unflushed writes; clear removes every
    // key from Redis at the next flush.
    other.set("k:new", "unflushed").unwrap();
    let keys: std::collections::BTreeSet<String> =
        other.entries("k:").unwrap().map(|e| e.unwrap().0).collect();
    assert_eq!(keys.len(), 501);
    assert!(keys.contains("k:new"));
    assert_eq!(other.len().unwrap(), 702);
    assert_eq!(other.clear().unwrap(), 702);
    assert_eq!(other.len().unwrap(), 0);
    other.flush().unwrap();
    assert_eq!(open(&server, "cache").len().unwrap(), 0);
}
