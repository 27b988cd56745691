//! The one-process-per-database lock: an exclusive OS lock on `<db>/LOCK`, taken when a store
//! opens and released when it closes or is dropped.
//!
//! Two layers, so the answer is the same on every platform: a process-wide registry of open
//! database directories (a second open in the *same* process fails here, whatever the OS lock
//! semantics), then the OS lock via `fs4` (`flock` on Unix, `LockFileEx` on Windows), which
//! stops other processes. The lock file itself is never deleted: deleting a lock file races
//! with another process that is about to lock it.
//!
//! Node.js cannot take that OS lock, so a Node process marks its ownership with
//! [`NODE_OWNER_FILE_NAME`] (its pid) and checks for our OS lock only after creating it. We check
//! for that file only after taking the OS lock. Whichever of the two comes second sees the other,
//! so a native and a Node process can never both have a database open.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::core::log::{LOCK_FILE_NAME, NODE_OWNER_FILE_NAME};
use crate::{Error, Result};

/// Database directories open in this process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// An exclusive lock on one database directory; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Locks `dir` (which must exist). [`Error::Locked`] naming `dir` if it is open in this or
    /// another process.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let dir = dir.canonicalize()?;
        let locked = || Error::Locked {
            path: dir.display().to_string(),
        };
        if !OPEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(dir.clone())
        {
            return Err(locked());
        }
        let unregister = || {
            OPEN.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&dir);
        };
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE_NAME))
        {
            Ok(file) => file,
            Err(e) => {
                unregister();
                return Err(e.into());
            }
        };
        // Called through the trait: `File::try_lock` (std, Rust 1.89+) would shadow it.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) if node_owner_alive(&dir) => {
                let _ = fs4::FileExt::unlock(&file);
                unregister();
                Err(locked())
            }
            Ok(()) => Ok(DirLock { file, dir }),
            Err(fs4::TryLockError::WouldBlock) => {
                unregister();
                Err(locked())
            }
            Err(fs4::TryLockError::Error(e)) => {
                unregister();
                Err(e.into())
            }
        }
    }

    /// The locked database directory (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether a Node.js process that is still running has `dir` open (see the module docs). A pid
/// that cannot be checked on this platform counts as running; a file without a pid counts only
/// while it is fresh (its owner may be about to write the pid).
fn node_owner_alive(dir: &Path) -> bool {
    let path = dir.join(NODE_OWNER_FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) => process_alive(pid),
        Err(_) => std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 10),
    }
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    pid != 0 && Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(not(target_os = "linux"))]
fn process_alive(pid: u32) -> bool {
    pid != 0
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Closing the file releases the OS lock anyway; unlocking first makes it immediate.
        let _ = fs4::FileExt::unlock(&self.file);
        OPEN.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.dir);
    }
}
