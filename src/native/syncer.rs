//! The Syncer: one background thread that flushes and sweeps many stores.
//!
//! It holds only weak references, so a store that is dropped simply disappears from its list.
//! It sleeps on a condvar until the next thing is due — the next flush round, a store's next
//! sweep tick (the engine's adaptive schedule) or a flush retry — and is woken at once by
//! [`Syncer::shutdown`], by a new store, or by a store whose buffer filled up. What a store does
//! when serviced lives in the store (`Shared::service`); this file only keeps time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::store::Shared;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A background thread that keeps stores flushed and swept.
///
/// Every `flush_interval` it flushes each registered store that has unflushed changes — however
/// few — so nothing waits in memory much longer than one interval. It sweeps expired keys on
/// each store's own schedule (firing [`Options::on_expire`](super::Options::on_expire)
/// callbacks), flushes a store as soon as its buffer fills, and starts automatic compactions.
/// A failed flush keeps its data buffered, is recorded in the store's
/// [`last_error`](super::Store::last_error), and is retried with a backoff (100 ms, doubling,
/// at most 5 s); the store stays fully usable meanwhile.
///
/// One syncer can serve any number of stores:
/// ```
/// # fn main() -> tidekv::Result<()> {
/// use std::time::Duration;
/// use tidekv::{Options, Store, Syncer};
/// let dir = std::env::temp_dir().join(format!("tidekv-doc-syncer-{}", std::process::id()));
/// let syncer = Syncer::start(Duration::from_millis(100));
/// let users = Store::open(&dir, Options::default().db("users").syncer(&syncer))?;
/// let carts = Store::open(&dir, Options::default().db("carts").syncer(&syncer))?;
/// users.set("alice", "admin")?; // on disk within about 100 ms, no flush() needed
/// carts.set("alice", "3 items")?;
/// syncer.shutdown(); // final flush of both stores, then the thread ends
/// # drop((users, carts)); std::fs::remove_dir_all(&dir)?;
/// # Ok(()) }
/// ```
/// Dropping the `Syncer` shuts it down the same way. Stores outlive it: after a shutdown they
/// flush on their own (on `flush()`, when the buffer fills, on close).
#[derive(Debug)]
pub struct Syncer {
    shared: Arc<SyncerShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct SyncerShared {
    interval: Duration,
    running: AtomicBool,
    state: Mutex<SyncerState>,
    wake: Condvar,
}

impl std::fmt::Debug for SyncerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncerShared")
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct SyncerState {
    stores: Vec<Weak<Shared>>,
    shutdown: bool,
    woken: bool,
}

impl Syncer {
    /// Starts the thread. `flush_interval` is how often every store with unflushed changes is
    /// flushed (at least 1 ms; a zero interval is raised to 1 ms).
    pub fn start(flush_interval: Duration) -> Syncer {
        let shared = Arc::new(SyncerShared {
            interval: flush_interval.max(Duration::from_millis(1)),
            running: AtomicBool::new(true),
            state: Mutex::new(SyncerState::default()),
            wake: Condvar::new(),
        });
        let runner = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("tidekv-syncer".into())
            .spawn(move || run(&runner))
            .map_err(|e| {
                // Without a thread the stores fall back to flushing on their own.
                shared.running.store(false, Ordering::SeqCst);
                log::warn!(
                    target: "tidekv",
                    "could not start the syncer thread, stores flush on their own: {e}"
                );
            })
            .ok();
        Syncer {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// The flush interval the syncer was started with.
    pub fn flush_interval(&self) -> Duration {
        self.shared.interval
    }

    /// How many open stores it serves now.
    pub fn stores(&self) -> usize {
        let stores: Vec<Arc<Shared>> = lock(&self.shared.state)
            .stores
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        stores.iter().filter(|s| !s.is_closed()).count()
    }

    /// Whether the thread is running (it stops on [`shutdown`](Syncer::shutdown)).
    pub fn is_running(&self) -> bool {
        self.shared.is_running()
    }

    /// Stops the thread: wakes it at once, lets it flush every store one last time, and waits
    /// for it to end. Calling it again does nothing. Errors of that last flush stay in each
    /// store's `last_error`, and the data stays buffered there.
    pub fn shutdown(&self) {
        {
            let mut state = lock(&self.shared.state);
            state.shutdown = true;
            self.shared.wake.notify_all();
        }
        let handle = lock(&self.thread).take();
        if let Some(handle) = handle {
            // From inside the syncer thread (an expiry callback) the thread ends on its own.
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    pub(crate) fn shared(&self) -> Arc<SyncerShared> {
        Arc::clone(&self.shared)
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl SyncerShared {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Adds a store; false if the syncer already stopped (the store then flushes on its own).
    pub fn register(&self, store: Weak<Shared>) -> bool {
        let mut state = lock(&self.state);
        if state.shutdown || !self.is_running() {
            return false;
        }
        state.stores.push(store);
        state.woken = true;
        self.wake.notify_all();
        true
    }

    /// Wakes the thread for a prompt pass (a store's buffer filled up).
    pub fn wake(&self) {
        let mut state = lock(&self.state);
        state.woken = true;
        self.wake.notify_all();
    }
}

fn run(shared: &SyncerShared) {
    let mut next_round = Instant::now() + shared.interval;
    loop {
        let stores: Vec<Arc<Shared>> = {
            let mut state = lock(&shared.state);
            if state.shutdown {
                break;
            }
            state.woken = false;
            state
                .stores
                .retain(|w| w.upgrade().is_some_and(|s| !s.is_closed()));
            state.stores.iter().filter_map(Weak::upgrade).collect()
        };
        // No syncer lock is held while stores are serviced: a store may call back into it.
        let now = Instant::now();
        let round = now >= next_round;
        if round {
            next_round = now + shared.interval;
        }
        let mut wake_at = next_round;
        for store in &stores {
            store.service(round, now);
            wake_at = wake_at.min(store.next_wake());
        }
        drop(stores);
        let mut state = lock(&shared.state);
        while !state.shutdown && !state.woken {
            let now = Instant::now();
            if now >= wake_at {
                break;
            }
            state = shared
                .wake
                .wait_timeout(state, wake_at - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
    // Stores that write from now on flush on their own; then the last flush of each.
    shared.running.store(false, Ordering::SeqCst);
    let stores: Vec<Arc<Shared>> = lock(&shared.state)
        .stores
        .drain(..)
        .filter_map(|w| w.upgrade())
        .collect();
    for store in stores {
        store.final_flush();
    }
}
