//! Redis as the source of truth (feature `redis`), against a real `redis-server` this test
//! starts on 127.0.0.1 on a free port (`scripts/install-tools.sh` installs Debian's
//! `redis-server`). Two stores on one server stand for two processes sharing it.
#![cfg(all(feature = "redis", not(target_arch = "wasm32")))]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tidekv::{Error, Kind, Options, SetOptions, Store, WriteBatch};

/// A `redis-server` on a free loopback port, in a temporary directory, saving nothing;
/// stopped (by its pid) on drop.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start_on(port: u16, dir: tempfile::TempDir) -> Server {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/install-tools.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Server {
            child,
            port,
            _dir: dir,
        }
    }

    fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Server::start_on(port, tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server and returns what a restart on the same port needs.
    fn stop(mut self) -> (u16, tempfile::TempDir) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        // Take the directory out without running Drop's kill again.
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        (port, dir)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err =
        Store::open_redis(&format!("redis://127.0.0.1:{port}/"), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Backend(_)), "{err:?}");
}
