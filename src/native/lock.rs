//! The one-process-per-database lock, taken when a store opens and released when it closes or
//! is dropped. Three layers:
//!
//! 1. A process-wide registry of open database directories: a second open in the *same*
//!    process fails here, whatever the OS lock semantics.
//! 2. An exclusive OS lock on `<db>/LOCK` via `fs4` (`flock` on Unix, `LockFileEx` on
//!    Windows), which stops other native processes. The lock file is never deleted: deleting a
//!    lock file races with another process that is about to lock it.
//! 3. On Unix, the owner socket (`super::owner`): a listening Unix socket linked in as
//!    `<db>/LOCK.owner.<generation>`. Node.js cannot take the OS lock, so this is the protocol
//!    native and Node.js processes share; each refuses a database whose highest owner socket
//!    answers. The kernel closes the socket of a dead process, so no crash, pid reuse, reboot or
//!    container restart leaves a database locked.
//!
//! On Windows only layers 1 and 2 exist (the Node.js build refuses file databases there), so
//! native processes exclude each other and nothing else needs excluding.
//!
//! A refused open reports [`Error::Locked`] naming the directory; a check that cannot be made
//! (a database path too long for a socket path outside Linux) fails the open — it never opens
//! unlocked.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

#[cfg(unix)]
use super::owner::OwnerSocket;
use crate::core::log::LOCK_FILE_NAME;
use crate::{Error, Result};

/// Database directories open in this process.
static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// An exclusive lock on one database directory; released on drop.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    dir: PathBuf,
    /// Dropped before the OS lock, so a process that gets the OS lock next finds it dead.
    #[cfg(unix)]
    owner: Option<OwnerSocket>,
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
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                unregister();
                return Err(locked());
            }
            Err(fs4::TryLockError::Error(e)) => {
                unregister();
                return Err(e.into());
            }
        }
        #[cfg(unix)]
        let owner = match OwnerSocket::acquire(&dir) {
            Ok(Some(owner)) => Some(owner),
            refused => {
                let _ = fs4::FileExt::unlock(&file);
                unregister();
                return Err(refused.err().unwrap_or_else(locked));
            }
        };
        Ok(DirLock {
            file,
            dir,
            #[cfg(unix)]
            owner,
        })
    }

    /// The locked database directory (canonical path).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        #[cfg(unix)]
        drop(self.owner.take());
        // Closing the file releases the OS lock anyway; unlocking first makes it immediate.
        let _ = fs4::FileExt::unlock(&self.file);
        OPEN.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.dir);
    }
}
