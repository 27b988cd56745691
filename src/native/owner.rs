//! The owner socket (Unix only): how a process proves to every other process — native or
//! Node.js, in any pid namespace or container sharing the directory — that it has a database
//! open. It listens on a Unix domain socket linked into the database directory as
//! `LOCK.owner.<generation>` ([`lock_owner_file_name`]). The kernel stops that socket when the
//! process dies, however it dies, so a connect answers "refused" from then on: liveness comes
//! from the kernel, never from a pid that may have been reused.
//!
//! The protocol (the Node.js backend in `src/wasm/backend_node.rs` follows it step for step):
//! 1. listen on a fresh temporary name ([`lock_owner_temp_name`]), so the socket is live before
//!    anyone can see it under a generation name;
//! 2. list the directory and take the highest generation `G`; if its socket answers (or gives
//!    any answer but "refused" — a full backlog, no permission), the database is held: refuse;
//!    if it has vanished, start over;
//! 3. hard-link the temporary socket as generation `G + 1`. `link` fails if the name exists,
//!    so each generation has exactly one creator; on that failure, start over;
//! 4. list again: a generation above ours means another process decided from a newer view, so
//!    we lost: remove ours and start over;
//! 5. remove the temporary name, and dead sockets of lower generations (best effort).
//!
//! Why this gives at most one holder: the file of the highest generation is never removed (a
//! holder leaves its socket file behind at close — dead, it is harmless — and cleanup only
//! removes *lower* generations), so the highest generation only grows. A process that decided
//! from a stale view links a generation at most one above what it saw; if a live holder took a
//! generation since, either the names collide (step 3) or the holder's is higher (step 4).
//! Were a holder to remove its own file at close, the highest generation could go *down*, and
//! a process that saw the old one dead could link a generation that no later check compares
//! against a newer holder's lower one.
//!
//! A holder drains its accept queue on a small thread, so probes never fill the backlog (where
//! a full backlog reads as "refused": macOS and the BSDs). Connects are non-blocking, so a full
//! backlog on Linux answers `EAGAIN` — alive — instead of blocking. The one gap: on macOS and
//! the BSDs, a holder that is *stopped* (SIGSTOP, a debugger breakpoint) drains nothing, and
//! after about 128 probes while it is stopped a probe reads "refused" and takes the database
//! over. Linux has no such gap. Not tested here (Linux only).
//!
//! A Unix socket path holds at most 107 bytes (103 on macOS). For a longer database path, Linux
//! reaches the directory through `/proc/self/fd/<fd>` of the opened directory; elsewhere (or
//! without `/proc`) the open is refused with [`Error::Backend`] naming the limit — never opened
//! unlocked.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::core::log::{
    lock_owner_file_name, lock_owner_temp_name, parse_lock_owner_file_name, LOCK_OWNER_TEMP_PREFIX,
};
use crate::{Error, Result};

/// Rounds of steps 2–4 before giving up and reporting the database as locked.
const ATTEMPTS: usize = 64;
/// A dead temporary socket older than this is a crash leftover (a younger one may belong to a
/// process between `bind` and `listen`).
const STALE_TEMP: Duration = Duration::from_secs(60);

/// A live owner socket; dropping it stops listening (the socket file stays, dead).
#[derive(Debug)]
pub(crate) struct OwnerSocket {
    /// Dropped to wake the drain thread, which then closes the listener and ends.
    wake: Option<UnixStream>,
    drain: Option<JoinHandle<()>>,
}

impl OwnerSocket {
    /// Runs the protocol of the module docs on `dir` (canonical): `Ok(Some)` holding the
    /// database, `Ok(None)` if another process holds it.
    pub fn acquire(dir: &Path) -> Result<Option<OwnerSocket>> {
        let sockets = SocketDir::open(dir)?;
        let (owner, temp) = listen_on_temp(&sockets)?;
        let settled = settle(&sockets, &temp);
        let _ = fs::remove_file(dir.join(&temp));
        match settled? {
            Some(gen) => {
                remove_dead(&sockets, gen);
                Ok(Some(owner))
            }
            None => Ok(None),
        }
    }

    fn start(listener: UnixListener) -> io::Result<OwnerSocket> {
        listener.set_nonblocking(true)?;
        let (wake, wait) = UnixStream::pair()?;
        let drain = thread::Builder::new()
            .name("tidekv-lock".into())
            .stack_size(64 * 1024)
            .spawn(move || drain(&listener, &wait))?;
        Ok(OwnerSocket {
            wake: Some(wake),
            drain: Some(drain),
        })
    }
}

impl Drop for OwnerSocket {
    fn drop(&mut self) {
        drop(self.wake.take());
        // Joined, so the listener is closed (the database free) when this returns.
        if let Some(drain) = self.drain.take() {
            let _ = drain.join();
        }
    }
}

/// Accepts and drops every connection until `wait` becomes readable (its peer was dropped).
fn drain(listener: &UnixListener, wait: &UnixStream) {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wait.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if ready < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if fds[1].revents != 0 {
            return;
        }
        loop {
            match listener.accept() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Out of file descriptors and the like: do not spin.
                Err(_) => {
                    thread::sleep(Duration::from_millis(10));
                    break;
                }
            }
        }
    }
}

/// Step 1: a live listener on a fresh temporary name; returns it and the name.
fn listen_on_temp(sockets: &SocketDir) -> Result<(OwnerSocket, String)> {
    for _ in 0..ATTEMPTS {
        let temp = lock_owner_temp_name(nonce());
        match UnixListener::bind(sockets.socket_path(&temp)) {
            Ok(listener) => return Ok((OwnerSocket::start(listener)?, temp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("no free temporary name for the owner socket").into())
}

/// Steps 2–4: our generation, or `None` if a live process holds the database.
fn settle(sockets: &SocketDir, temp: &str) -> Result<Option<u64>> {
    for _ in 0..ATTEMPTS {
        let top = generations(&sockets.dir)?.last().copied();
        if let Some(top) = top {
            match probe(&sockets.socket_path(&lock_owner_file_name(top)))? {
                Probe::Alive => return Ok(None),
                Probe::Gone => continue,
                Probe::Dead => {}
            }
        }
        let gen = match top {
            None => 1,
            Some(top) => top.checked_add(1).ok_or_else(|| {
                Error::Backend(format!(
                    "{}: lock generations exhausted",
                    sockets.dir.display()
                ))
            })?,
        };
        let mine = sockets.dir.join(lock_owner_file_name(gen));
        match fs::hard_link(sockets.dir.join(temp), &mine) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
        if generations(&sockets.dir)?.last().is_some_and(|&g| g > gen) {
            // Lost; ours is not the highest, so removing it is safe.
            let _ = fs::remove_file(&mine);
            continue;
        }
        return Ok(Some(gen));
    }
    Ok(None)
}

/// Step 5 (best effort): removes dead owner sockets below generation `gen`, and dead
/// temporary ones old enough to be crash leftovers.
fn remove_dead(sockets: &SocketDir, gen: u64) {
    let Ok(entries) = fs::read_dir(&sockets.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let candidate = match parse_lock_owner_file_name(name) {
            Some(g) => g < gen,
            None => {
                name.starts_with(LOCK_OWNER_TEMP_PREFIX)
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > STALE_TEMP)
            }
        };
        if candidate && matches!(probe(&sockets.socket_path(name)), Ok(Probe::Dead)) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The owner generations present in `dir`, ascending.
fn generations(dir: &Path) -> io::Result<Vec<u64>> {
    let mut gens = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(gen) = entry?
            .file_name()
            .to_str()
            .and_then(parse_lock_owner_file_name)
        {
            gens.push(gen);
        }
    }
    gens.sort_unstable();
    Ok(gens)
}

/// What a connect to an owner socket says about its process.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Listening, or any answer but "refused": treat as a live holder.
    Alive,
    /// Refused: nobody listens (the process died or closed the database).
    Dead,
    /// The file is gone.
    Gone,
}

/// A non-blocking connect to the socket at `path` (already short enough).
fn probe(path: &Path) -> io::Result<Probe> {
    let (addr, len) = sockaddr(path.as_os_str())?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let kind = libc::SOCK_STREAM;
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_UNIX, kind, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: fcntl(2) on a descriptor we own.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc == 0 {
        return Ok(Probe::Alive);
    }
    Ok(match io::Error::last_os_error().raw_os_error() {
        Some(libc::ECONNREFUSED) => Probe::Dead,
        Some(libc::ENOENT) => Probe::Gone,
        // EAGAIN (a full backlog), EINPROGRESS, EACCES...: someone may be there.
        _ => Probe::Alive,
    })
}

/// `path` as a socket address, or `InvalidInput` if it does not fit.
fn sockaddr(path: &OsStr) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path too long for a Unix socket",
        ));
    }
    for (to, from) in addr.sun_path.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// The longest socket path this platform takes, in bytes.
fn max_socket_path() -> usize {
    // SAFETY: as in `sockaddr`.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}

/// The database directory, and how its sockets are addressed.
struct SocketDir {
    dir: PathBuf,
    /// The opened directory when its path is too long for a socket path (Linux): sockets are
    /// then addressed as `/proc/self/fd/<fd>/<name>`, which bind and connect both resolve.
    handle: Option<File>,
}

impl SocketDir {
    fn open(dir: &Path) -> Result<SocketDir> {
        // The longest name the protocol binds or connects to.
        let longest = lock_owner_temp_name(0).len();
        let needed = dir.as_os_str().len() + 1 + longest;
        if needed <= max_socket_path() {
            return Ok(SocketDir {
                dir: dir.to_path_buf(),
                handle: None,
            });
        }
        let too_long = || {
            Error::Backend(format!(
                "cannot lock database {}: its lock socket path would be {needed} bytes, past \
                 the {}-byte limit of a Unix socket path on this platform; use a shorter path",
                dir.display(),
                max_socket_path()
            ))
        };
        if !cfg!(any(target_os = "linux", target_os = "android")) {
            return Err(too_long());
        }
        let handle = File::open(dir)?;
        let sockets = SocketDir {
            dir: dir.to_path_buf(),
            handle: Some(handle),
        };
        // Without /proc (or if it does not lead back here), refuse rather than guess.
        let via_proc = sockets.socket_path("");
        match (fs::metadata(&via_proc), fs::metadata(dir)) {
            (Ok(a), Ok(b)) if same_file(&a, &b) => Ok(sockets),
            _ => Err(too_long()),
        }
    }

    /// The address to bind or connect to for socket `name` in the directory.
    fn socket_path(&self, name: &str) -> PathBuf {
        match &self.handle {
            None => self.dir.join(name),
            Some(handle) => {
                PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name)
            }
        }
    }
}

fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// A random number for a temporary socket name (unique enough; a collision only retries).
fn nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}
