//! Helpers shared by the persistence tests (`persist_*.rs`, `crash.rs`): temporary database
//! directories, segment files, and child processes that re-run the current test binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use tidekv::{ManualClock, Options, Store};

/// A fixed "now" for tests that compare absolute deadlines.
pub const T0: u64 = 1_700_000_000_000;

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tidekv-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Options with a manual clock at `T0`.
pub fn options(clock: &ManualClock) -> Options {
    Options::default().clock(clock.clone())
}

pub fn open(dir: &Path, clock: &ManualClock) -> Store {
    Store::open(dir, options(clock)).expect("open the store")
}

/// The segment files of database `db` under `dir`, oldest first.
pub fn segments(dir: &Path, db: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(db))
        .expect("list the database directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "tkv"))
        .collect();
    files.sort();
    files
}

/// A child process running `test` of this test binary with `env` set; lines of its stdout
/// arrive on the returned channel.
pub struct ChildProcess {
    pub child: Child,
    pub lines: Receiver<String>,
}

impl ChildProcess {
    pub fn spawn(test: &str, env: &[(&str, String)]) -> ChildProcess {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = Command::new(exe);
        command
            .args([
                "--ignored",
                "--exact",
                test,
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn the child process");
        let stdout: ChildStdout = child.stdout.take().expect("the child's stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess { child, lines }
    }

    /// Waits (at most `limit`) for a line starting with `prefix` and returns it.
    pub fn wait_for(&self, prefix: &str, limit: Duration) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => continue,
                Err(e) => panic!("child never printed {prefix:?}: {e}"),
            }
        }
    }

    /// SIGKILL on Unix (`TerminateProcess` on Windows), then reaps the child and returns the
    /// lines it printed that were not consumed yet.
    pub fn kill(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends at EOF; collect everything up to there.
        self.lines.iter().collect()
    }
}

impl Drop for ChildProcess {
    /// A test that fails half-way never leaves a child behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a child process: its mode (from env var `mode`) and directory (from env var `dir`), or
/// `None` when this test binary runs normally. Ends the harness's "test child_process ... "
/// line first, since the parent reads whole lines.
pub fn child_setup(mode: &str, dir: &str) -> Option<(String, PathBuf)> {
    let mode = std::env::var(mode).ok()?;
    println!();
    let dir = PathBuf::from(std::env::var(dir).expect("the child's directory"));
    Some((mode, dir))
}

/// Sleeps forever: the end of a child that waits to be killed.
pub fn park() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// A small deterministic PRNG (xorshift64*), so parent and child agree on every choice.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
