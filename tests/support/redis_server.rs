//! A `redis-server` for tests and benches (`#[path]`-included by `tests/redis.rs` and
//! `benches/redis/main.rs`): started on a free loopback port in a temporary directory, saving
//! nothing, and stopped by its pid on drop. Debian's `redis-server` comes from
//! `scripts/install-tools.sh`.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, in a temporary directory, saving nothing;
/// stopped (by its pid) on drop.
pub struct Server {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start_on(port: u16, dir: tempfile::TempDir) -> Server {
        Server::start_with(port, dir, &["--appendonly", "no"])
    }

    /// A server with `args` added, e.g. AOF on.
    pub fn start_with(port: u16, dir: tempfile::TempDir, args: &[&str]) -> Server {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(args)
            .arg("--dir")
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

    pub fn start() -> Server {
        Server::start_on(free_port(), tempfile::tempdir().unwrap())
    }

    /// A plain client connection, to look at what tidekv wrote.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stops the server and returns what a restart on the same port needs.
    pub fn stop(mut self) -> (u16, tempfile::TempDir) {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
