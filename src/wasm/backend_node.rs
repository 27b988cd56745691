//! The Node.js file backend (feature `node`): the native file log's directory layout, written
//! and read through `fs/promises` so the event loop never blocks on I/O or fsync.
//!
//! Every byte of the layout comes from [`crate::core::log`] (segment names, headers, replay,
//! torn-tail and corruption rules, compaction ids) and [`crate::core::record`], the same code
//! the native `FileLog` uses, so a directory written by either opens in the other. This file
//! only performs the I/O, following the native crash-safety rules: a batch is appended with one
//! write at the end of the last good record (cut back on failure); a new segment appears only
//! complete (`.tmp`, sync, rename, sync the directory); compaction writes its output between
//! the old segments and the next id, then deletes the old ones oldest first.
//!
//! Lock: one process per database, by the owner-socket protocol of the native shell
//! (`src/native/owner.rs`, which explains why it is safe), so native and Node.js processes see
//! each other on every Unix. The process listens on a Unix socket (`net.Server`, `unref()`ed so
//! a script that never calls `close()` still exits, every incoming connection destroyed at
//! once) linked in as `<db>/LOCK.owner.<generation>`; an open whose highest owner socket answers
//! fails with `Error::Locked`, one whose socket is refused (its process died, however) takes
//! the next generation with an exclusive `link`. A second open in the same process is refused
//! the same way. `close()` stops listening and leaves the dead socket file behind. A database
//! path too long for a socket path is reached through `/proc/self/fd` on Linux and refused
//! elsewhere; on Windows (where `net` paths are named pipes) file databases are refused —
//! never opened unlocked.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::backend::{Backend, CompactReport, Task};
use super::options::Durability;
use crate::core::log::{
    classify_file_name, compaction_due, compaction_ids, encode_frame, encode_segment_header,
    estimate_records, lock_owner_file_name, lock_owner_temp_name, parse_lock_owner_file_name,
    records_that_fit, scan_segment, segment_file_name, CorruptPolicy, FileKind,
    LOCK_OWNER_TEMP_PREFIX, SEGMENT_HEADER_LEN, TEMP_SUFFIX,
};
use crate::core::Engine;
use crate::{Batch, Error, Record, Result};

/// A segment is sealed and a new one started past this size (the native default).
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
/// Automatic compaction waits until the log holds at least this much (the native default)...
const COMPACTION_MIN_SIZE: u64 = 16 * 1024 * 1024;
/// ... and at least this share of its records are dead (overwritten or deleted).
const COMPACTION_RATIO: f64 = 0.5;

#[wasm_bindgen(inline_js = r#"
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { join, resolve } from 'node:path';

export function randomSalt() { return new Uint8Array(randomBytes(8)); }
export async function truncateSynced(path, len) {
  const fh = await fsp.open(path, 'r+');
  try { await fh.truncate(len); await fh.sync(); } finally { await fh.close(); }
}

export function joinPath(a, b) { return join(a, b); }
export function describe(e) { return e && e.message ? String(e.message) : String(e); }
export function warn(message) { console.warn(message); }
export async function mkdirp(path) { await fsp.mkdir(path, { recursive: true }); }
export async function fileAlong(path) {
  for (let p = path; ; ) {
    const st = await fsp.stat(p).catch(() => null);
    if (st) return st.isDirectory() ? null : p;
    const parent = join(p, '..');
    if (parent === p) return null;
    p = parent;
  }
}
export async function listDir(path) { return await fsp.readdir(path); }
export async function fileSize(path) { return (await fsp.stat(path)).size; }
export async function readBytes(path) {
  const b = await fsp.readFile(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
export async function openFile(path, flags) { return await fsp.open(path, flags); }
export async function writeAt(fh, bytes, position) {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}
export async function syncData(fh) { await fh.datasync(); }
export async function syncAll(fh) { await fh.sync(); }
export async function truncateHandle(fh, len) { await fh.truncate(len); }
export async function closeHandle(fh) { await fh.close(); }
export async function truncatePath(path, len) { await fsp.truncate(path, len); }
export async function rename(from, to) { await fsp.rename(from, to); }
export async function removeFile(path) {
  try { await fsp.unlink(path); } catch (e) { if (e.code !== 'ENOENT') throw e; }
}
export async function syncDir(path) {
  let fh;
  try {
    fh = await fsp.open(path, 'r');
    await fh.sync();
  } catch (e) {
    // Some platforms cannot open or sync a directory; there is nothing more to do there.
    if (!['EISDIR', 'EPERM', 'EINVAL', 'EACCES'].includes(e.code)) throw e;
  } finally {
    if (fh) await fh.close();
  }
}
export function platform() { return process.platform; }
export function random32() { return Math.floor(Math.random() * 0x100000000); }
export function socketPath(sockets, name) { return join(sockets.base, name); }
// How the sockets of `dir` are addressed: its absolute path, or /proc/self/fd/<fd> of the opened
// directory (Linux) when that is too long for a socket path; null when neither works.
export async function openSocketDir(dir, longest) {
  const abs = resolve(dir);
  const max = process.platform === 'linux' ? 107 : 103;
  if (Buffer.byteLength(abs) + 1 + longest <= max) return { base: abs, handle: null };
  if (process.platform !== 'linux' && process.platform !== 'android') return null;
  const handle = await fsp.open(abs, 'r');
  const base = `/proc/self/fd/${handle.fd}`;
  try {
    const [a, b] = await Promise.all([fsp.stat(base), fsp.stat(abs)]);
    if (a.dev === b.dev && a.ino === b.ino) return { base, handle };
  } catch {}
  await handle.close();
  return null;
}
export async function closeSocketDir(sockets) { if (sockets.handle) await sockets.handle.close(); }
// A listening owner socket at `path`, or null if the name is taken.
export async function ownerListen(path) {
  const server = net.createServer((c) => c.destroy());
  try {
    await new Promise((ok, fail) => {
      server.once('error', fail);
      server.listen(path, () => { server.off('error', fail); ok(); });
    });
  } catch (e) {
    if (e.code === 'EADDRINUSE') return null;
    throw e;
  }
  server.on('error', () => {});
  server.unref();
  return server;
}
export function ownerClose(server) { return new Promise((done) => server.close(() => done())); }
// 'alive' (it answers, or any answer but refused), 'dead' (refused) or 'gone' (no such file).
export function ownerProbe(path) {
  return new Promise((done) => {
    const socket = net.connect(path);
    const timer = setTimeout(() => { socket.destroy(); done('alive'); }, 5000);
    const end = (answer) => { clearTimeout(timer); socket.destroy(); done(answer); };
    socket.once('connect', () => end('alive'));
    socket.once('error', (e) => end(e.code === 'ECONNREFUSED' ? 'dead' : e.code === 'ENOENT' ? 'gone' : 'alive'));
  });
}
// link(2): false if `to` exists.
export async function linkNew(from, to) {
  try { await fsp.link(from, to); return true; } catch (e) { if (e.code === 'EEXIST') return false; throw e; }
}
export async function ageMs(path) {
  try { return Date.now() - (await fsp.lstat(path)).mtimeMs; } catch { return 0; }
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = joinPath)]
    fn join_path(a: &str, b: &str) -> String;
    fn describe(e: &JsValue) -> String;
    fn warn(message: &str);
    #[wasm_bindgen(js_name = randomSalt)]
    fn random_salt() -> Vec<u8>;
    #[wasm_bindgen(catch, js_name = truncateSynced)]
    async fn truncate_synced(path: &str, len: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn mkdirp(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = fileAlong)]
    async fn file_along(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = listDir)]
    async fn list_dir(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = fileSize)]
    async fn file_size(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = readBytes)]
    async fn read_bytes(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = openFile)]
    async fn open_file(path: &str, flags: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = writeAt)]
    async fn write_at(fh: &JsValue, bytes: &Uint8Array, position: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = syncData)]
    async fn sync_data(fh: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = syncAll)]
    async fn sync_all(fh: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = truncateHandle)]
    async fn truncate_handle(fh: &JsValue, len: f64) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = closeHandle)]
    async fn close_handle(fh: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    async fn rename(from: &str, to: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = removeFile)]
    async fn remove_file(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = syncDir)]
    async fn sync_dir(path: &str) -> Result<JsValue, JsValue>;
    fn platform() -> String;
    fn random32() -> u32;
    #[wasm_bindgen(js_name = socketPath)]
    fn socket_path(sockets: &JsValue, name: &str) -> String;
    #[wasm_bindgen(catch, js_name = openSocketDir)]
    async fn open_socket_dir(dir: &str, longest: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = closeSocketDir)]
    async fn close_socket_dir(sockets: &JsValue) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch, js_name = ownerListen)]
    async fn owner_listen(path: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = ownerClose)]
    async fn owner_close(server: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = ownerProbe)]
    async fn owner_probe(path: &str) -> JsValue;
    #[wasm_bindgen(catch, js_name = linkNew)]
    async fn link_new(from: &str, to: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = ageMs)]
    async fn age_ms(path: &str) -> JsValue;
}

/// Rounds of the owner protocol before giving up and reporting the database as locked.
const LOCK_ATTEMPTS: usize = 64;
/// A dead temporary owner socket older than this is a crash leftover.
const STALE_TEMP_MS: f64 = 60_000.0;

/// Runs the owner-socket protocol of `src/native/owner.rs` on `dir`, step for step: the
/// listening server when this process now holds the database, `None` when a live process does.
async fn acquire_owner(dir: &str) -> Result<Option<JsValue>> {
    if platform() == "win32" {
        return Err(Error::Backend(format!(
            "cannot lock database {dir}: the Node.js build locks a file database with a Unix \
             domain socket, which Windows does not offer to Node.js; use the native crate there"
        )));
    }
    let longest = lock_owner_temp_name(0).len() as u32;
    let sockets = open_socket_dir(dir, longest).await.map_err(io)?;
    if sockets.is_null() {
        return Err(Error::Backend(format!(
            "cannot lock database {dir}: its lock socket path would be past the limit of a \
             Unix socket path on this platform (107 bytes on Linux, 103 elsewhere); use a \
             shorter path"
        )));
    }
    let held = hold_owner(dir, &sockets).await;
    let _ = close_socket_dir(&sockets).await;
    held
}

async fn hold_owner(dir: &str, sockets: &JsValue) -> Result<Option<JsValue>> {
    let mut listening = None;
    for _ in 0..LOCK_ATTEMPTS {
        let nonce = (u64::from(random32()) << 32) | u64::from(random32());
        let temp = lock_owner_temp_name(nonce);
        let server = owner_listen(&socket_path(sockets, &temp))
            .await
            .map_err(io)?;
        if !server.is_null() {
            listening = Some((server, temp));
            break;
        }
    }
    let Some((server, temp)) = listening else {
        return Err(Error::Backend(format!(
            "cannot lock database {dir}: no free temporary owner socket name"
        )));
    };
    let settled = settle_owner(dir, sockets, &temp).await;
    let _ = remove_file(&join_path(dir, &temp)).await;
    match settled {
        Ok(Some(gen)) => {
            remove_dead_owners(dir, sockets, gen).await;
            Ok(Some(server))
        }
        other => {
            let _ = owner_close(&server).await;
            other.map(|_| None)
        }
    }
}

/// Steps 2–4: our generation, or `None` if a live process holds the database.
async fn settle_owner(dir: &str, sockets: &JsValue, temp: &str) -> Result<Option<u64>> {
    for _ in 0..LOCK_ATTEMPTS {
        let top = owner_generations(dir).await?.last().copied();
        if let Some(top) = top {
            let answer = owner_probe(&socket_path(sockets, &lock_owner_file_name(top))).await;
            match answer.as_string().as_deref() {
                Some("dead") => {}
                Some("gone") => continue,
                _ => return Ok(None),
            }
        }
        let gen = match top {
            None => 1,
            Some(top) => top
                .checked_add(1)
                .ok_or_else(|| Error::Backend(format!("{dir}: lock generations exhausted")))?,
        };
        let mine = join_path(dir, &lock_owner_file_name(gen));
        let linked = link_new(&join_path(dir, temp), &mine).await.map_err(io)?;
        if linked.as_bool() != Some(true) {
            continue;
        }
        if owner_generations(dir)
            .await?
            .last()
            .is_some_and(|&g| g > gen)
        {
            // Lost; ours is not the highest, so removing it is safe.
            let _ = remove_file(&mine).await;
            continue;
        }
        return Ok(Some(gen));
    }
    Ok(None)
}

/// Step 5 (best effort): dead owner sockets below `gen`, and dead old temporary ones.
async fn remove_dead_owners(dir: &str, sockets: &JsValue, gen: u64) {
    let Ok(names) = list_dir(dir).await else {
        return;
    };
    let names: js_sys::Array = names.unchecked_into();
    for name in names.iter().filter_map(|n| n.as_string()) {
        let candidate = match parse_lock_owner_file_name(&name) {
            Some(g) => g < gen,
            None => {
                name.starts_with(LOCK_OWNER_TEMP_PREFIX)
                    && age_ms(&join_path(dir, &name)).await.as_f64().unwrap_or(0.0) > STALE_TEMP_MS
            }
        };
        if candidate
            && owner_probe(&socket_path(sockets, &name))
                .await
                .as_string()
                .as_deref()
                == Some("dead")
        {
            let _ = remove_file(&join_path(dir, &name)).await;
        }
    }
}

/// The owner generations present in `dir`, ascending.
async fn owner_generations(dir: &str) -> Result<Vec<u64>> {
    let names: js_sys::Array = list_dir(dir).await.map_err(io)?.unchecked_into();
    let mut gens: Vec<u64> = names
        .iter()
        .filter_map(|n| n.as_string())
        .filter_map(|n| parse_lock_owner_file_name(&n))
        .collect();
    gens.sort_unstable();
    Ok(gens)
}

/// A Node.js fs error as a tidekv I/O error (the message names the call, code and path).
fn io(e: JsValue) -> Error {
    Error::Io(std::io::Error::other(describe(&e)))
}

/// A fresh segment salt from Node's `crypto.randomBytes` (see [`encode_segment_header`]).
fn new_salt() -> u64 {
    let bytes = random_salt();
    let mut salt = [0; 8];
    salt.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(salt)
}

/// Compaction frames hold about this many bytes of records each.
const FRAME_BYTES: usize = 1024 * 1024;

#[derive(Clone, Copy, Debug, Default)]
struct SegInfo {
    bytes: u64,
    records: u64,
    /// The salt its frames are bound to.
    salt: u64,
}

/// The segment batches are appended to.
struct Active {
    id: u64,
    salt: u64,
    handle: JsValue,
    /// End of the last good record: where the next batch goes.
    len: u64,
}

/// See the module docs.
pub(crate) struct FsBackend {
    dir: String,
    durability: Durability,
    /// Taken out while a write uses it; `None` until the first write needs a segment.
    active: RefCell<Option<Active>>,
    segments: RefCell<BTreeMap<u64, SegInfo>>,
    next_id: Cell<u64>,
    locked: Cell<bool>,
    /// After a failed compaction, no automatic one below this many bytes on disk.
    retry_compaction_at: Cell<u64>,
    /// The listening owner socket (a `net.Server`) while the database is open.
    owner: RefCell<Option<JsValue>>,
}

impl FsBackend {
    /// Opens (creating if needed) database `name` under `path`, takes its lock and replays its
    /// segments into `engine`. A torn tail of the last segment is cut off with a warning; a bad
    /// record elsewhere fails the open with [`Error::Corrupt`] naming the file and offset.
    pub(crate) async fn open(
        path: &str,
        name: &str,
        durability: Durability,
        engine: &mut Engine,
        now: u64,
    ) -> Result<Rc<FsBackend>> {
        let dir = join_path(path, name);
        // A file where a directory must be: say so, and never touch the file.
        if let Some(file) = file_along(&dir).await.map_err(io)?.as_string() {
            return Err(Error::InvalidOption {
                option: "path".into(),
                reason: format!(
                    "{file} is a file, not a directory: a store needs a directory there"
                ),
            });
        }
        mkdirp(&dir).await.map_err(io)?;
        let Some(owner) = acquire_owner(&dir).await? else {
            return Err(Error::Locked { path: dir });
        };
        let backend = Rc::new(FsBackend {
            dir,
            durability,
            active: RefCell::new(None),
            segments: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(1),
            locked: Cell::new(true),
            retry_compaction_at: Cell::new(0),
            owner: RefCell::new(Some(owner)),
        });
        if let Err(e) = backend.replay(engine, now).await {
            backend.release().await;
            return Err(e);
        }
        Ok(backend)
    }

    fn file(&self, name: &str) -> String {
        join_path(&self.dir, name)
    }

    async fn replay(&self, engine: &mut Engine, now: u64) -> Result<()> {
        let names: js_sys::Array = list_dir(&self.dir).await.map_err(io)?.unchecked_into();
        let mut ids = Vec::new();
        for name in names.iter().filter_map(|n| n.as_string()) {
            match classify_file_name(&name) {
                FileKind::Segment(id) => ids.push(id),
                // An unfinished segment or compaction output: never part of the log.
                FileKind::Temp => remove_file(&self.file(&name)).await.map(drop).map_err(io)?,
                FileKind::Lock | FileKind::Other => {}
            }
        }
        ids.sort_unstable();
        let mut total = 0u64;
        for &id in &ids {
            let size = file_size(&self.file(&segment_file_name(id)))
                .await
                .map_err(io)?;
            total = total.saturating_add(size.as_f64().unwrap_or(0.0) as u64);
        }
        let mut torn = None;
        for (i, &id) in ids.iter().enumerate() {
            let path = self.file(&segment_file_name(id));
            let bytes: Uint8Array = read_bytes(&path).await.map_err(io)?.unchecked_into();
            let bytes = bytes.to_vec();
            if i == 0 {
                engine.reserve_for_load(estimate_records(&bytes, total));
            }
            let is_last = i + 1 == ids.len();
            let scan = scan_segment(
                &bytes,
                id,
                is_last,
                CorruptPolicy::Fail,
                &mut |record, _| engine.load(record, now),
            )
            .map_err(|e| match e {
                Error::Corrupt(why) => Error::Corrupt(format!("{path}: {why}")),
                other => other,
            })?;
            if scan.torn_tail > 0 {
                torn = Some((id, path, scan.id.is_some(), scan.valid_len, scan.torn_tail));
            }
            self.segments.borrow_mut().insert(
                id,
                SegInfo {
                    bytes: scan.valid_len as u64,
                    records: scan.records,
                    salt: scan.salt,
                },
            );
            self.next_id.set(id.saturating_add(1));
        }
        engine.finish_load();
        if let Some((id, path, has_header, valid_len, tail)) = torn {
            warn(&format!(
                "tidekv: warning: truncating a torn write of {tail} bytes at the end of {path}"
            ));
            if has_header {
                // Synced, as natively: the cut must not come back after a power loss, where a
                // later append would land behind the torn bytes.
                truncate_synced(&path, valid_len as f64).await.map_err(io)?;
            } else {
                // Not even a whole header: the segment holds nothing.
                remove_file(&path).await.map_err(io)?;
                self.segments.borrow_mut().remove(&id);
                sync_dir(&self.dir).await.map_err(io)?;
            }
        }
        // Keep appending to the last segment while it has room.
        let last = self
            .segments
            .borrow()
            .iter()
            .next_back()
            .map(|(id, s)| (*id, *s));
        if let Some((id, info)) = last.filter(|(_, s)| s.bytes < SEGMENT_SIZE) {
            let handle = open_file(&self.file(&segment_file_name(id)), "r+")
                .await
                .map_err(io)?;
            *self.active.borrow_mut() = Some(Active {
                id,
                salt: info.salt,
                handle,
                len: info.bytes,
            });
        }
        Ok(())
    }

    /// Writes a complete new segment file holding `records` in frames of about
    /// [`FRAME_BYTES`]: `.tmp`, synced, renamed into place. Returns its info.
    async fn create_segment(&self, id: u64, records: &[Record]) -> Result<SegInfo> {
        let path = self.file(&segment_file_name(id));
        let tmp = format!("{path}{TEMP_SUFFIX}");
        let salt = new_salt();
        let mut bytes = encode_segment_header(id, salt).to_vec();
        let mut rest = records;
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(records_that_fit(rest, FRAME_BYTES));
            rest = tail;
            let offset = bytes.len() as u64;
            encode_frame(chunk, salt, offset, &mut bytes, &mut Vec::new());
        }
        let written = async {
            let handle = open_file(&tmp, "w").await?;
            let result = async {
                write_at(&handle, &Uint8Array::from(&bytes[..]), 0.0).await?;
                sync_all(&handle).await
            }
            .await;
            close_handle(&handle).await?;
            result?;
            rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            let _ = remove_file(&tmp).await;
            return Err(io(e));
        }
        let info = SegInfo {
            bytes: bytes.len() as u64,
            records: records.len() as u64,
            salt,
        };
        self.segments.borrow_mut().insert(id, info);
        Ok(info)
    }

    /// Seals the active segment (if any) and closes its handle.
    async fn seal(&self) -> Result<()> {
        let Some(active) = self.active.borrow_mut().take() else {
            return Ok(());
        };
        let sealed = async {
            truncate_handle(&active.handle, active.len as f64).await?;
            sync_all(&active.handle).await
        }
        .await;
        let closed = close_handle(&active.handle).await;
        sealed.and(closed).map(drop).map_err(io)
    }

    /// Seals the active segment and starts the next one.
    async fn roll(&self) -> Result<Active> {
        self.seal().await?;
        let id = self.next_id.get();
        let info = self.create_segment(id, &[]).await?;
        sync_dir(&self.dir).await.map_err(io)?;
        self.next_id.set(id.saturating_add(1));
        let handle = open_file(&self.file(&segment_file_name(id)), "r+")
            .await
            .map_err(io)?;
        Ok(Active {
            id,
            salt: info.salt,
            handle,
            len: SEGMENT_HEADER_LEN as u64,
        })
    }

    async fn append(&self, records: &[Record]) -> Result<()> {
        if !self.locked.get() {
            return Err(Error::Closed);
        }
        let current = self.active.borrow_mut().take();
        let mut active = match current {
            Some(a) if a.len < SEGMENT_SIZE || a.len <= SEGMENT_HEADER_LEN as u64 => a,
            other => {
                *self.active.borrow_mut() = other;
                self.roll().await?
            }
        };
        // The whole batch is one frame: replayed entirely or not at all.
        let mut buf = Vec::new();
        encode_frame(records, active.salt, active.len, &mut buf, &mut Vec::new());
        let sync = self.durability != Durability::Buffered;
        let written = async {
            write_at(
                &active.handle,
                &Uint8Array::from(&buf[..]),
                active.len as f64,
            )
            .await?;
            if sync {
                sync_data(&active.handle).await?;
            }
            Ok::<(), JsValue>(())
        }
        .await;
        if let Err(e) = written {
            // Cut the partial write off so the retry lands right after the last good record.
            let _ = truncate_handle(&active.handle, active.len as f64).await;
            *self.active.borrow_mut() = Some(active);
            return Err(io(e));
        }
        active.len += buf.len() as u64;
        let info = &mut *self.segments.borrow_mut();
        let info = info.entry(active.id).or_default();
        info.bytes += buf.len() as u64;
        info.records += records.len() as u64;
        *self.active.borrow_mut() = Some(active);
        Ok(())
    }

    async fn compact_live(&self, live: Vec<Record>) -> Result<CompactReport> {
        if !self.locked.get() {
            return Err(Error::Closed);
        }
        // Every later batch goes to a segment after the output.
        self.seal().await?;
        let old: Vec<(u64, SegInfo)> = self
            .segments
            .borrow()
            .iter()
            .map(|(id, s)| (*id, *s))
            .collect();
        let estimate: u64 = live.iter().map(|r| r.size() as u64).sum();
        let highest = self.next_id.get().saturating_sub(1);
        let (first, last, next) = compaction_ids(highest, estimate, SEGMENT_SIZE);
        self.next_id.set(next);

        let mut outputs = Vec::new();
        let written = async {
            // Each output segment takes about SEGMENT_SIZE of records; the last reserved id
            // takes whatever is left.
            let mut rest = &live[..];
            let mut id = first;
            loop {
                let n = if id == last {
                    rest.len()
                } else {
                    records_that_fit(rest, (SEGMENT_SIZE as usize) - SEGMENT_HEADER_LEN)
                };
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let info = self.create_segment(id, chunk).await?;
                outputs.push((id, info.records));
                if rest.is_empty() {
                    break;
                }
                id += 1;
            }
            sync_dir(&self.dir).await.map_err(io)
        }
        .await;
        if let Err(e) = written {
            let disk: u64 = self.segments.borrow().values().map(|s| s.bytes).sum();
            self.retry_compaction_at.set(disk.saturating_mul(2));
            for id in first..=last {
                let path = self.file(&segment_file_name(id));
                let _ = remove_file(&format!("{path}{TEMP_SUFFIX}")).await;
                let _ = remove_file(&path).await;
                self.segments.borrow_mut().remove(&id);
            }
            return Err(e);
        }
        let mut report = CompactReport::default();
        {
            let mut segments = self.segments.borrow_mut();
            for (id, records) in &outputs {
                let info = segments.entry(*id).or_default();
                info.records = *records;
                report.bytes_after += info.bytes;
                report.records_after += *records;
            }
        }
        // Oldest first, so what a crash leaves is always a suffix of the old segments.
        for (id, info) in &old {
            remove_file(&self.file(&segment_file_name(*id)))
                .await
                .map_err(io)?;
            self.segments.borrow_mut().remove(id);
            report.bytes_before += info.bytes;
            report.records_before += info.records;
        }
        sync_dir(&self.dir).await.map_err(io)?;
        self.retry_compaction_at.set(0);
        Ok(report)
    }

    /// Gives up the lock: stops listening on the owner socket (its file stays, dead; see
    /// `src/native/owner.rs` for why it must).
    async fn release(&self) {
        self.locked.set(false);
        let owner = self.owner.borrow_mut().take();
        if let Some(server) = owner {
            let _ = owner_close(&server).await;
        }
    }
}

impl Backend for FsBackend {
    fn write(self: Rc<Self>, batch: Batch) -> Task<()> {
        Box::pin(async move { self.append(&batch.records).await })
    }

    fn compact(self: Rc<Self>, live: Vec<Record>) -> Task<CompactReport> {
        Box::pin(async move { self.compact_live(live).await })
    }

    fn close(self: Rc<Self>) -> Task<()> {
        Box::pin(async move {
            let sealed = self.seal().await;
            self.release().await;
            sealed
        })
    }

    /// Judged by records, not bytes (the backend keeps no per-key index): every live key has
    /// one newest record in the log, so the records beyond `live_keys` are dead. Due once the
    /// log holds [`COMPACTION_MIN_SIZE`] and half its records are dead.
    fn compaction_due(&self, live_keys: u64) -> bool {
        let segments = self.segments.borrow();
        let disk: u64 = segments.values().map(|s| s.bytes).sum();
        let records: u64 = segments.values().map(|s| s.records).sum();
        self.locked.get()
            && disk >= COMPACTION_MIN_SIZE.max(self.retry_compaction_at.get())
            && compaction_due(records, live_keys.min(records), 1, COMPACTION_RATIO)
    }
}
