//! The one-process-per-database lock with real processes: stale owner files never lock a
//! database out (pid reuse, PID 1), a killed holder frees it at once, a live owner socket (the
//! protocol a Node.js process uses too) refuses a native open, racing openers of a stale lock
//! have exactly one winner, and a database path too long for a Unix socket path still locks.
//!
//! A child process is this test binary re-run with an environment variable (see
//! `persist_support`).
#![cfg(unix)]

mod persist_support;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use persist_support::{child_setup, park, tempdir, ChildProcess};
use tidekv::{Error, Options, Store};

const MODE: &str = "TIDEKV_LOCK_CHILD";
const DIR: &str = "TIDEKV_LOCK_DIR";
const GO: &str = "TIDEKV_LOCK_GO";
const CHILD_TEST: &str = "child_process";
const WAIT: Duration = Duration::from_secs(60);

/// The owner file of generation `gen` (the name both runtimes use).
fn owner_name(gen: u64) -> String {
    format!("LOCK.owner.{gen:016x}")
}

/// The owner files in `db`, sorted.
fn owner_files(db: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("LOCK.owner."))
        .collect();
    names.sort();
    names
}

fn spawn(mode: &str, dir: &Path, go: Option<&Path>) -> ChildProcess {
    let mut env = vec![(MODE, mode.to_string()), (DIR, dir.display().to_string())];
    if let Some(go) = go {
        env.push((GO, go.display().to_string()));
    }
    ChildProcess::spawn(CHILD_TEST, &env)
}

/// The child side of every test here; `#[ignore]`d so a normal run lists it as ignored.
#[test]
#[ignore = "the child process of the lock tests; they run it"]
fn child_process() {
    let Some((mode, dir)) = child_setup(MODE, DIR) else {
        return;
    };
    match mode.as_str() {
        "hold" => {
            let _store = Store::open(&dir, Options::default()).unwrap();
            println!("OPEN");
            park();
        }
        "race" => {
            // Start together: wait for the parent's go file, then try once and report.
            let go = PathBuf::from(std::env::var(GO).unwrap());
            println!("READY");
            while !go.exists() {
                std::thread::sleep(Duration::from_micros(200));
            }
            match Store::open(&dir, Options::default()) {
                Ok(store) => {
                    println!("WON");
                    let _keep = store;
                    park();
                }
                Err(Error::Locked { .. }) => println!("LOCKED"),
                Err(e) => println!("ERROR {e}"),
            }
            park();
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// A listening socket linked in as owner generation `gen` of `db`, the way a live holder (native
/// or Node.js) announces itself.
fn fake_owner(db: &Path, gen: u64) -> UnixListener {
    let temp = db.join("LOCK.owner.tmp-test");
    let listener = UnixListener::bind(&temp).unwrap();
    std::fs::hard_link(&temp, db.join(owner_name(gen))).unwrap();
    std::fs::remove_file(&temp).unwrap();
    listener
}

#[test]
fn an_owner_file_of_a_dead_process_whose_pid_is_in_use_does_not_lock_the_database_out() {
    // `LOCK.node` as the previous lock wrote it: the pid of a process that died without
    // close(), since reused — by PID 1 (a container restart) or by any live process.
    for pid in [1, std::process::id()] {
        let dir = tempdir();
        let db = dir.path().join("default");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("LOCK.node"), format!("{pid}\n")).unwrap();
        let store = Store::open(dir.path(), Options::default())
            .unwrap_or_else(|e| panic!("a stale owner naming pid {pid} locked the db: {e}"));
        store.set("k", "v").unwrap();
        store.close().unwrap();
    }
}

#[test]
fn a_dead_owner_socket_does_not_lock_the_database_out() {
    let dir = tempdir();
    let db = dir.path().join("default");
    std::fs::create_dir_all(&db).unwrap();
    drop(fake_owner(&db, 7)); // its process died: the socket file stays, nobody listens
    let store = Store::open(dir.path(), Options::default()).unwrap();
    // The new owner took the next generation and removed the dead one.
    assert_eq!(owner_files(&db), [owner_name(8)]);
    store.close().unwrap();
}

#[test]
fn a_live_owner_socket_refuses_a_native_open_until_it_stops_listening() {
    let dir = tempdir();
    let db = dir.path().join("default");
    std::fs::create_dir_all(&db).unwrap();
    let owner = fake_owner(&db, 3);
    match Store::open(dir.path(), Options::default()) {
        Err(Error::Locked { path }) => assert!(path.ends_with("default"), "{path}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert_eq!(
        owner_files(&db),
        [owner_name(3)],
        "a refused open leaves nothing behind"
    );
    drop(owner);
    Store::open(dir.path(), Options::default())
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn a_native_holder_answers_on_its_owner_socket_and_stops_at_close() {
    let dir = tempdir();
    let db = dir.path().join("default");
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let owners = owner_files(&db);
    assert_eq!(owners, [owner_name(1)]);
    let path = db.join(&owners[0]);
    // Far more probes than a listen backlog holds: the holder drains them and stays alive.
    for _ in 0..600 {
        UnixStream::connect(&path).expect("the holder answers");
    }
    store.close().unwrap();
    let err = UnixStream::connect(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // Reopen in the same process: the next generation.
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(owner_files(&db), [owner_name(2)]);
    store.close().unwrap();
}

#[test]
fn a_holder_killed_with_sigkill_frees_the_database_at_once() {
    let dir = tempdir();
    let child = spawn("hold", dir.path(), None);
    child.wait_for("OPEN", WAIT);
    assert!(matches!(
        Store::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    child.kill();
    Store::open(dir.path(), Options::default())
        .unwrap()
        .close()
        .unwrap();
}

#[test]
fn processes_racing_for_a_stale_lock_have_exactly_one_winner() {
    const RACERS: usize = 8;
    const ROUNDS: usize = 5;
    let dir = tempdir();
    let db = dir.path().join("default");
    std::fs::create_dir_all(&db).unwrap();
    for round in 0..ROUNDS {
        // The lock a killed holder left behind.
        let holder = spawn("hold", dir.path(), None);
        holder.wait_for("OPEN", WAIT);
        holder.kill();

        let go = dir.path().join(format!("go-{round}"));
        let children: Vec<ChildProcess> = (0..RACERS)
            .map(|_| spawn("race", dir.path(), Some(&go)))
            .collect();
        for child in &children {
            child.wait_for("READY", WAIT);
        }
        std::fs::write(&go, b"").unwrap();
        let results: Vec<String> = children
            .iter()
            .map(|c| {
                let deadline = Instant::now() + WAIT;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match c.lines.recv_timeout(left) {
                        Ok(l) if ["WON", "LOCKED", "ERROR"].iter().any(|p| l.starts_with(p)) => {
                            break l
                        }
                        Ok(_) => continue,
                        Err(e) => panic!("round {round}: a racer never answered: {e}"),
                    }
                }
            })
            .collect();
        let won = results.iter().filter(|r| *r == "WON").count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(
            results.iter().all(|r| r == "WON" || r == "LOCKED"),
            "round {round}: {results:?}"
        );
        for child in children {
            child.kill();
        }
    }
}

#[test]
fn a_database_path_longer_than_a_socket_path_still_locks() {
    let dir = tempdir();
    // sun_path holds 108 bytes on Linux (104 on macOS): go well past it.
    let mut parent = dir.path().to_path_buf();
    while parent.as_os_str().len() < 160 {
        parent.push("a-rather-long-directory-name");
    }
    std::fs::create_dir_all(&parent).unwrap();
    let child = spawn("hold", &parent, None);
    child.wait_for("OPEN", WAIT);
    let db = parent.join("default");
    let owners = owner_files(&db);
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert!(
        db.join(&owners[0]).as_os_str().len() > 108,
        "the owner socket's path is past the limit"
    );
    assert!(matches!(
        Store::open(&parent, Options::default()),
        Err(Error::Locked { .. })
    ));
    child.kill();
    let store = Store::open(&parent, Options::default()).unwrap();
    store.set("k", "v").unwrap();
    store.close().unwrap();
}
