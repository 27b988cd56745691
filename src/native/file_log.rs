//! The file-log backend: a database directory of append-only segment files (layout and replay
//! rules in [`crate::core::log`]), made durable with `fsync`, compacted by rewriting live
//! records into fresh segments.
//!
//! Crash safety rests on three rules:
//! - A batch is appended at the end of the last good record with one write call; if the write
//!   or its `fsync` fails, the file is cut back to that length before the batch is retried, so a
//!   retry never lands after garbage.
//! - A segment is sealed (`fsync`) before the next one exists, and a new segment appears only
//!   complete (header written to a `.tmp` file, synced, renamed, directory synced). So only the
//!   last segment can end in a torn write.
//! - Compaction writes its output to ids between the old segments and the segment new writes go
//!   to, makes it durable, then deletes the old segments oldest first. At every step the
//!   segments on disk replay to a state that holds every acknowledged write (see
//!   [`FileCompaction`]).
//!
//! It never decides what a record means: replay hands records to the engine, which applies
//! "later shadows earlier" and drops expired keys.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use bytes::Bytes;

mod live_index;

use live_index::{prefetch, LiveIndex, PreHashed, Slot};

use super::backend::{Compaction, CompactionReport, DiskStats, Replay};
use super::lock::DirLock;
use super::options::LogOptions;
use super::{Backend, Clock, Durability};
use crate::core::log::{
    classify_file_name, compaction_due, compaction_ids, decode_frame_shared, encode_frame,
    encode_segment_header, estimate_records, parse_segment_header, records_that_fit, scan_segment,
    segment_file_name, CorruptPolicy, FileKind, SegmentScan, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
    TEMP_SUFFIX,
};
use crate::core::record::DecodeError;
use crate::{Batch, Error, Record, Result};

/// How often (ms of store time) the dead-byte estimate looks for expired records.
const EXPIRY_SCAN_MS: u64 = 5_000;
/// Compaction output is written through a buffer of this size, in frames of about this size.
const WRITE_BUFFER: usize = 1024 * 1024;

/// A fresh segment salt: unpredictable to whoever chooses the values written into the segment
/// (std's per-process random hash keys, the time and a counter), so no value can hold a frame
/// that passes for one of the segment's own.
fn new_salt() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.write_u32(std::process::id());
    h.finish()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The file-log backend of [`Store::open`](super::Store::open).
pub(crate) struct FileLog {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    dir: PathBuf,
    options: LogOptions,
    clock: Arc<dyn Clock>,
    /// `None` once closed.
    lock: Option<DirLock>,
    /// Every segment on disk, the active one included.
    segments: BTreeMap<u64, SegInfo>,
    /// The segment batches are appended to; `None` until the first write needs one.
    active: Option<Active>,
    /// The id the next new segment gets.
    next_id: u64,
    index: LiveIndex,
    /// While a compaction runs: what changed since it began, by key hash (`None` = gone).
    post: Option<HashMap<u64, Option<Slot>, BuildHasherDefault<PreHashed>>>,
    last_expiry_scan: u64,
    /// After a failed automatic compaction, do not try again below this size.
    retry_compaction_at: u64,
    stats: DiskStats,
    /// The encoded frame of the batch being written (kept between batches, up to
    /// 4 × [`WRITE_BUFFER`]).
    buf: Vec<u8>,
    /// Each record's share of that frame (kept between batches).
    lens: Vec<usize>,
    /// The index updates of the batch being written (kept between batches).
    updates: Vec<IndexUpdate>,
}

#[derive(Clone, Copy, Debug, Default)]
struct SegInfo {
    bytes: u64,
    records: u64,
    /// The salt its frames are bound to.
    salt: u64,
}

struct Active {
    id: u64,
    salt: u64,
    file: File,
    /// End of the last good record: where the next batch goes.
    len: u64,
}

impl FileLog {
    /// Takes the lock of `dir` (which must exist). Nothing is read until
    /// [`Backend::load`].
    pub fn open(dir: &Path, options: LogOptions, clock: Arc<dyn Clock>) -> Result<FileLog> {
        options.validate()?;
        let lock = DirLock::acquire(dir)?;
        let inner = LogInner {
            dir: lock.dir().to_path_buf(),
            stats: DiskStats {
                dir: lock.dir().to_path_buf(),
                ..DiskStats::default()
            },
            options,
            clock,
            lock: Some(lock),
            segments: BTreeMap::new(),
            active: None,
            next_id: 1,
            index: LiveIndex::default(),
            post: None,
            last_expiry_scan: 0,
            retry_compaction_at: 0,
            buf: Vec::new(),
            lens: Vec::new(),
            updates: Vec::new(),
        };
        Ok(FileLog {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl Backend for FileLog {
    /// Replays every segment in id order. A torn tail of the last segment is truncated (with a
    /// warning on stderr); a bad record anywhere else is [`Error::Corrupt`] naming the file and
    /// offset — unless `skip_corrupt_records` is on — and then nothing on disk was changed
    /// (leftover `.tmp` files aside).
    ///
    /// A reader thread reads, checks and decodes the segments and keeps the dead-byte index
    /// while the calling thread applies the records to the store, so the work overlaps; records
    /// still arrive in log order.
    fn load(&mut self, replay: &mut dyn Replay) -> Result<()> {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        let now = inner.clock.now_ms();
        inner.last_expiry_scan = now;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&inner.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            match classify_file_name(&name) {
                FileKind::Segment(id) => ids.push(id),
                FileKind::Temp => {
                    // An unfinished segment or compaction output: never part of the log.
                    let _ = fs::remove_file(entry.path());
                }
                FileKind::Lock | FileKind::Other => {}
            }
        }
        ids.sort_unstable();
        let policy = if inner.options.skip_corrupt {
            CorruptPolicy::Skip
        } else {
            CorruptPolicy::Fail
        };
        let read = {
            let LogInner {
                dir, index, stats, ..
            } = &mut *inner;
            let (dir, ids) = (&*dir, &ids[..]);
            thread::scope(|scope| {
                let (tx, rx) = mpsc::sync_channel(REPLAY_QUEUE);
                // Emptied batches go back to the reader to be filled again, so no batch is
                // freed on another thread than the one that allocated it.
                let (spent_tx, spent_rx) = mpsc::channel();
                let reader = thread::Builder::new()
                    .name("tidekv-replay".into())
                    .spawn_scoped(scope, move || {
                        let channels = ReplayChannels {
                            records: tx,
                            spent: spent_rx,
                        };
                        read_segments(dir, ids, policy, now, stats, index, &channels)
                    })?;
                let mut applied = Ok(());
                'apply: for message in &rx {
                    match message {
                        Replayed::Reserve(records) => replay.reserve(records),
                        Replayed::Items(mut records) => {
                            let mut batch = records.drain(..);
                            loop {
                                // The reader wrote these records on another core: ask for
                                // the ones a few places ahead now, so they are here when
                                // their turn comes (with their keys, which the store hashes).
                                let ahead = batch.as_slice();
                                if let Some(record) = ahead.get(PREFETCH_RECORDS) {
                                    let at = (record as *const Record).cast::<u8>();
                                    let size = std::mem::size_of::<Record>();
                                    for line in (0..size).step_by(64).chain([size - 1]) {
                                        prefetch(at.wrapping_add(line));
                                    }
                                }
                                if let Some(record) = ahead.get(PREFETCH_RECORDS / 2) {
                                    prefetch(record.key().as_ptr());
                                }
                                let Some(record) = batch.next() else {
                                    break;
                                };
                                if let Err(e) = replay.record(record) {
                                    applied = Err(e);
                                    break 'apply;
                                }
                            }
                            drop(batch);
                            let _ = spent_tx.send(records);
                        }
                    }
                }
                // On an error above, the reader's next send fails and it stops.
                drop(rx);
                let read = reader
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                applied.and(read)
            })?
        };
        for (id, info) in read.segments {
            inner.segments.insert(id, info);
            inner.next_id = id.saturating_add(1);
        }
        if let Some((id, path, has_header, valid_len, tail)) = read.torn {
            log::warn!(
                target: "tidekv",
                "truncating a torn write of {tail} bytes at the end of {} (a crash during a flush; \
                 every record before it is kept)",
                path.display()
            );
            inner.stats.torn_tail_bytes = tail as u64;
            if has_header {
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid_len as u64)?;
                file.sync_all()?;
            } else {
                // Not even a whole header: the segment holds nothing.
                fs::remove_file(&path)?;
                inner.segments.remove(&id);
                sync_dir(&inner.dir)?;
            }
        }
        // Keep appending to the last segment while it has room.
        if let Some((&id, info)) = inner.segments.iter().next_back() {
            if info.bytes < inner.options.segment_size {
                let file = OpenOptions::new()
                    .write(true)
                    .open(inner.dir.join(segment_file_name(id)))?;
                inner.active = Some(Active {
                    id,
                    salt: info.salt,
                    file,
                    len: info.bytes,
                });
            }
        }
        Ok(())
    }

    /// Appends the batch to the active segment with one write call, then `fsync`s it under
    /// [`Durability::Fsync`].
    fn write(&mut self, batch: &Batch) -> Result<()> {
        lock(&self.inner).append(&batch.records)
    }

    /// Seals the active segment (`fsync`) and releases the lock.
    fn close(&mut self) -> Result<()> {
        let mut inner = lock(&self.inner);
        if let Some(active) = inner.active.take() {
            active.file.sync_all()?;
        }
        inner.lock = None;
        Ok(())
    }

    fn begin_compaction(&mut self, live: Vec<Record>) -> Result<Option<Box<dyn Compaction>>> {
        let mut inner = lock(&self.inner);
        if inner.lock.is_none() {
            return Err(Error::Closed);
        }
        if inner.post.is_some() {
            return Err(Error::Backend("a compaction is already running".into()));
        }
        // Seal the active segment: every later batch goes to a segment after the output.
        if let Some(active) = inner.active.take() {
            if let Err(e) = active.file.sync_all() {
                inner.active = Some(active);
                return Err(e.into());
            }
        }
        let old: Vec<(u64, SegInfo)> = inner.segments.iter().map(|(id, i)| (*id, *i)).collect();
        let estimate: u64 = live.iter().map(|r| r.size() as u64).sum();
        let highest = inner.next_id.saturating_sub(1);
        let (first, last, next) = compaction_ids(highest, estimate, inner.options.segment_size);
        inner.next_id = next;
        inner.post = Some(HashMap::default());
        Ok(Some(Box::new(FileCompaction {
            inner: Arc::clone(&self.inner),
            dir: inner.dir.clone(),
            live,
            old,
            first,
            last,
            segment_size: inner.options.segment_size,
            now: inner.clock.now_ms(),
        })))
    }

    fn compaction_due(&mut self) -> bool {
        let mut inner = lock(&self.inner);
        if inner.lock.is_none() || inner.post.is_some() {
            return false;
        }
        let now = inner.clock.now_ms();
        if now.saturating_sub(inner.last_expiry_scan) >= EXPIRY_SCAN_MS {
            inner.index.drop_expired(now);
            inner.last_expiry_scan = now;
        }
        let disk = inner.disk_bytes();
        disk >= inner.retry_compaction_at
            && compaction_due(
                disk,
                inner.index.live,
                inner.options.compaction_min_size,
                inner.options.compaction_ratio,
            )
    }

    fn disk_stats(&self) -> Option<DiskStats> {
        let inner = lock(&self.inner);
        let mut stats = inner.stats.clone();
        stats.segments = inner.segments.len();
        stats.disk_bytes = inner.disk_bytes();
        stats.live_bytes = inner.index.live.min(stats.disk_bytes);
        stats.dead_bytes = stats.disk_bytes - stats.live_bytes;
        stats.records = inner.segments.values().map(|s| s.records).sum();
        Some(stats)
    }
}

impl LogInner {
    fn disk_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.bytes).sum()
    }

    /// Appends `records` as one frame (one atomic unit at replay) with one write call.
    fn append(&mut self, records: &[Record]) -> Result<()> {
        if self.lock.is_none() {
            return Err(Error::Closed);
        }
        let full = self.active.as_ref().is_none_or(|a| {
            a.len >= self.options.segment_size && a.len > SEGMENT_HEADER_LEN as u64
        });
        if full {
            self.roll()?;
        }
        let Some(active) = self.active.as_mut() else {
            return Err(Error::Backend("no active segment".into()));
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut lens = std::mem::take(&mut self.lens);
        lens.clear();
        encode_frame(records, active.salt, active.len, &mut buf, &mut lens);
        let durability = self.options.durability;
        let written = (|| -> std::io::Result<()> {
            active.file.seek(SeekFrom::Start(active.len))?;
            active.file.write_all(&buf)?;
            if durability == Durability::Fsync {
                active.file.sync_data()?;
            }
            Ok(())
        })();
        let frame_len = buf.len() as u64;
        if buf.capacity() <= 4 * WRITE_BUFFER {
            self.buf = buf;
        }
        if let Err(e) = written {
            // Cut the partial write off so the retry lands right after the last good frame.
            let _ = active.file.set_len(active.len);
            self.lens = lens;
            return Err(e.into());
        }
        active.len += frame_len;
        let id = active.id;
        let info = self.segments.entry(id).or_default();
        info.bytes += frame_len;
        info.records += records.len() as u64;
        let now = self.clock.now_ms();
        let mut updates = std::mem::take(&mut self.updates);
        updates.clear();
        updates.extend(
            records
                .iter()
                .zip(&lens)
                .map(|(record, &len)| (LiveIndex::hash(record), LiveIndex::slot(record, len, now))),
        );
        self.index.set_many(&updates);
        if let Some(post) = self.post.as_mut() {
            post.extend(updates.iter().copied());
        }
        self.updates = updates;
        self.lens = lens;
        Ok(())
    }

    /// Seals the active segment and starts the next one.
    fn roll(&mut self) -> Result<()> {
        if let Some(active) = &self.active {
            active.file.set_len(active.len)?;
            active.file.sync_all()?;
        }
        let id = self.next_id;
        let salt = new_salt();
        let path = self.dir.join(segment_file_name(id));
        let tmp = temp_path(&path);
        let created = (|| -> std::io::Result<File> {
            let mut file = File::create(&tmp)?;
            file.write_all(&encode_segment_header(id, salt))?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)?;
            Ok(file)
        })();
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        };
        self.active = Some(Active {
            id,
            salt,
            file,
            len: SEGMENT_HEADER_LEN as u64,
        });
        self.segments.insert(
            id,
            SegInfo {
                bytes: SEGMENT_HEADER_LEN as u64,
                records: 0,
                salt,
            },
        );
        self.next_id = id.saturating_add(1);
        Ok(())
    }
}

/// A compaction of a [`FileLog`]. The store took `live` (every live entry, pending changes
/// included) while no batch was in flight; the log then sealed its active segment and moved new
/// writes to ids above `last`. The job:
///
/// 1. writes `live` to segments `first..=last` as `.tmp` files, syncs each, renames it into
///    place and syncs the directory — replay order is now old, output, new;
/// 2. deletes the old segments oldest first, then syncs the directory.
///
/// A crash at any point leaves old segments (a suffix of them, since deletion goes oldest
/// first), then some or all of the output, then new writes. Every output record is the state
/// of its key when the compaction began, newer than anything in the old segments and older
/// than anything after; a key missing from the output was dead then, and whatever record killed
/// it is in the remaining old suffix or among the new writes. So each combination replays to
/// every acknowledged write.
struct FileCompaction {
    inner: Arc<Mutex<LogInner>>,
    dir: PathBuf,
    live: Vec<Record>,
    old: Vec<(u64, SegInfo)>,
    first: u64,
    last: u64,
    segment_size: u64,
    now: u64,
}

impl Compaction for FileCompaction {
    fn run(self: Box<Self>) -> Result<CompactionReport> {
        let written = self.write_output();
        let mut inner = lock(&self.inner);
        let post = inner.post.take().unwrap_or_default();
        let (outputs, mut index) = match written {
            Ok(done) => done,
            Err(e) => {
                for id in self.first..=self.last {
                    let path = self.dir.join(segment_file_name(id));
                    let _ = fs::remove_file(temp_path(&path));
                    let _ = fs::remove_file(&path);
                }
                inner.stats.compaction_failures += 1;
                inner.retry_compaction_at = inner.disk_bytes().saturating_mul(2);
                return Err(e);
            }
        };
        for (id, info) in &outputs {
            inner.segments.insert(*id, *info);
        }
        for (hash, slot) in post {
            index.set(hash, slot);
        }
        inner.index = index;
        inner.stats.compactions += 1;
        inner.retry_compaction_at = 0;
        // Oldest first, stopping at the first failure, so what remains is always a suffix.
        let mut deleted = Ok(());
        for (id, _) in &self.old {
            if let Err(e) = fs::remove_file(self.dir.join(segment_file_name(*id))) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    deleted = Err(e);
                    break;
                }
            }
            inner.segments.remove(id);
        }
        drop(inner);
        deleted?;
        sync_dir(&self.dir)?;
        let records_before = self.old.iter().map(|(_, s)| s.records).sum::<u64>();
        let records_after = outputs.iter().map(|(_, s)| s.records).sum::<u64>();
        Ok(CompactionReport {
            bytes_before: self.old.iter().map(|(_, s)| s.bytes).sum(),
            bytes_after: outputs.iter().map(|(_, s)| s.bytes).sum(),
            records_before,
            records_after,
            records_dropped: records_before.saturating_sub(records_after),
            segments_before: self.old.len(),
            segments_after: outputs.len(),
        })
    }
}

impl FileCompaction {
    /// Writes the output segments and builds their live index. No lock is held.
    fn write_output(&self) -> Result<(Vec<(u64, SegInfo)>, LiveIndex)> {
        let mut index = LiveIndex::default();
        let mut outputs = Vec::new();
        let mut records = &self.live[..];
        let mut id = self.first;
        let mut frame = Vec::new();
        let mut lens = Vec::new();
        while !records.is_empty() {
            let path = self.dir.join(segment_file_name(id));
            let tmp = temp_path(&path);
            let salt = new_salt();
            let mut out = BufWriter::with_capacity(WRITE_BUFFER, File::create(&tmp)?);
            out.write_all(&encode_segment_header(id, salt))?;
            let mut info = SegInfo {
                bytes: SEGMENT_HEADER_LEN as u64,
                records: 0,
                salt,
            };
            // The last reserved id takes whatever is left.
            while !records.is_empty() && (info.bytes < self.segment_size || id == self.last) {
                // Frames of about WRITE_BUFFER bytes, or what is left of the segment (at
                // least one record each).
                let room = if id == self.last {
                    WRITE_BUFFER
                } else {
                    let left = self.segment_size.saturating_sub(info.bytes);
                    WRITE_BUFFER.min(usize::try_from(left).unwrap_or(WRITE_BUFFER))
                };
                let (chunk, rest) = records.split_at(records_that_fit(records, room));
                records = rest;
                frame.clear();
                lens.clear();
                let len = encode_frame(chunk, salt, info.bytes, &mut frame, &mut lens);
                out.write_all(&frame)?;
                for (record, &len) in chunk.iter().zip(&lens) {
                    index.apply(record, len, self.now);
                }
                info.bytes += len as u64;
                info.records += chunk.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            outputs.push((id, info));
            id += 1;
        }
        sync_dir(&self.dir)?;
        Ok((outputs, index))
    }
}

/// Records per message from the replay's reader thread to the store being opened.
const REPLAY_BATCH: usize = 2048;
/// Messages that may wait between the two: bounds what a slow store lets pile up in memory.
const REPLAY_QUEUE: usize = 8;
/// How many records ahead of the one being applied the applying thread asks for.
const PREFETCH_RECORDS: usize = 8;

/// A message from the replay's reader thread to the store being opened.
enum Replayed {
    /// About this many records will follow (see [`Replay::reserve`]).
    Reserve(usize),
    /// The next records, in log order.
    Items(Vec<Record>),
}

/// A key's hash and its new slot in the [`LiveIndex`] (`None`: the key is dead).
type IndexUpdate = (u64, Option<Slot>);

/// The reader's ends of the replay's channels: batches out, emptied batches back.
struct ReplayChannels {
    records: SyncSender<Replayed>,
    spent: Receiver<Vec<Record>>,
}

impl ReplayChannels {
    /// Sends a size hint; false if the store stopped listening.
    fn reserve(&self, hint: usize) -> bool {
        self.records.send(Replayed::Reserve(hint)).is_ok()
    }

    /// Sends the full batch on and leaves an empty one in its place (a returned batch when
    /// there is one); false if the store stopped listening.
    fn send(&self, records: &mut Vec<Record>) -> bool {
        let next = self
            .spent
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(REPLAY_BATCH));
        let records = std::mem::replace(records, next);
        self.records.send(Replayed::Items(records)).is_ok()
    }
}

/// What the reader found on disk besides the records.
#[derive(Default)]
struct ReadSegments {
    /// Each segment replayed, in id order.
    segments: Vec<(u64, SegInfo)>,
    /// A torn last write: segment id, path, whether its header is whole, valid length, and
    /// the torn bytes after it.
    torn: Option<(u64, PathBuf, bool, usize, usize)>,
    /// The read buffers, freed only once every record has been applied (see [`BufferPool`]).
    buffers: BufferPool,
}

/// The reader's part of [`FileLog::load`]: reads each segment once (through windows of
/// [`READ_WINDOW`]), checks and decodes its records, keeps the open's counters and the
/// dead-byte `index`, and sends the records on to the store in batches, after a size hint taken
/// from the first segment.
fn read_segments(
    dir: &Path,
    ids: &[u64],
    policy: CorruptPolicy,
    now: u64,
    stats: &mut DiskStats,
    index: &mut LiveIndex,
    channels: &ReplayChannels,
) -> Result<ReadSegments> {
    let mut read = ReadSegments::default();
    let paths: Vec<PathBuf> = ids
        .iter()
        .map(|&id| dir.join(segment_file_name(id)))
        .collect();
    let mut total = 0u64;
    for path in &paths {
        total = total.saturating_add(fs::metadata(path)?.len());
    }
    let mut batch = Vec::with_capacity(REPLAY_BATCH);
    let mut slots = Vec::with_capacity(REPLAY_BATCH);
    // Set when the store stopped listening (it failed a record and returns that error).
    let mut stopped = false;
    for (i, (&id, path)) in ids.iter().zip(&paths).enumerate() {
        let mut file = File::open(path)?;
        if i == 0 {
            let mut sample = read.buffers.take();
            (&mut file)
                .take(READ_WINDOW as u64)
                .read_to_end(&mut sample)?;
            file.seek(SeekFrom::Start(0))?;
            let hint = estimate_records(&sample, total);
            read.buffers.keep(sample);
            index.reserve(hint);
            if !channels.reserve(hint) {
                return Ok(read);
            }
        }
        let is_last = i + 1 == ids.len();
        let scanned = scan_file(
            &mut file,
            id,
            is_last,
            policy,
            &mut read.buffers,
            &mut |record, len| {
                if let Record::Put(p) = &record {
                    if p.expires_at.is_some_and(|d| d <= now) {
                        stats.expired_at_open += 1;
                    }
                }
                slots.push((LiveIndex::hash(&record), LiveIndex::slot(&record, len, now)));
                stats.records_replayed += 1;
                batch.push(record);
                if batch.len() == REPLAY_BATCH {
                    index.set_many(&slots);
                    slots.clear();
                    if !channels.send(&mut batch) {
                        stopped = true;
                        return Err(Error::Closed);
                    }
                }
                Ok(())
            },
        );
        if stopped {
            return Ok(read);
        }
        let scan = scanned.map_err(|e| match e {
            Error::Corrupt(why) => Error::Corrupt(format!("{}: {why}", path.display())),
            other => other,
        })?;
        for span in &scan.corrupt {
            log::warn!(
                target: "tidekv",
                "skipped {} corrupt bytes at offset {} of {} ({})",
                span.len,
                span.offset,
                path.display(),
                span.reason
            );
        }
        stats.corrupt_records_skipped += scan.corrupt.len() as u64;
        if scan.torn_tail > 0 {
            read.torn = Some((
                id,
                path.clone(),
                scan.id.is_some(),
                scan.valid_len,
                scan.torn_tail,
            ));
        }
        let info = SegInfo {
            bytes: scan.valid_len as u64,
            records: scan.records,
            salt: scan.salt,
        };
        read.segments.push((id, info));
    }
    index.set_many(&slots);
    if !batch.is_empty() {
        // A failed send means the store already stopped with an error of its own.
        let _ = channels.send(&mut batch);
    }
    Ok(read)
}

/// Bytes of a segment read at a time at open: the reader's buffer stays this small however
/// large segments are (a record larger than this grows it to fit). The unit tests use a tiny
/// window so records straddle windows everywhere.
#[cfg(not(test))]
const READ_WINDOW: usize = 4 * 1024 * 1024;
#[cfg(test)]
const READ_WINDOW: usize = 1000;

/// Values at least this long are replayed as slices of the window they were read in, not
/// copied. For a large value, copying is most of a replay's memory traffic — a second copy of
/// the data and a fresh page for each of its pages — while what a slice keeps alive besides the
/// value (its record's header and key, and whatever else shares its window) stays small next to
/// it while the window's values live. A slice does keep its whole window (at most
/// [`READ_WINDOW`], or one frame when a frame is larger) alive until it is dropped — overwritten,
/// deleted or expired — so a window whose other values are gone is memory the store still
/// holds; at worst, about the size of the log read at open. Small values are copied: for them
/// an allocation each costs about what the fresh window pages a slice needs cost (measured with
/// 100-byte values: no faster, and a larger peak), and they keep nothing else alive.
const SHARE_VALUES_FROM: usize = 1024;

/// Replays one segment file through windows of [`READ_WINDOW`] bytes. A well-formed segment is
/// decoded window by window; at anything else — a bad header, a torn tail, a corrupt record —
/// the whole file is read and [`scan_segment`] applies its rules, skipping the records already
/// visited. Either way `visit` sees exactly what `scan_segment` over the whole file would show
/// it.
///
/// An uncompressed value of at least [`SHARE_VALUES_FROM`] bytes is a slice of its window
/// ([`decode_frame_shared`]), not a copy; a shorter one is copied. See [`SHARE_VALUES_FROM`] for
/// why, and for what a slice keeps alive. A window no value was sliced from is reused for the
/// next one; a window a value holds is left to it, and the next one is a fresh allocation.
fn scan_file(
    file: &mut File,
    id: u64,
    is_last: bool,
    policy: CorruptPolicy,
    pool: &mut BufferPool,
    visit: &mut dyn FnMut(Record, usize) -> Result<()>,
) -> Result<SegmentScan> {
    let file_len = file.metadata()?.len();
    let mut first = pool.take();
    let mut eof = fill(file, &mut first, READ_WINDOW)?;
    let mut window = Bytes::from(first);
    // File offset of `window[0]`, and the next byte to decode in `window`.
    let (mut base, mut pos) = (0u64, SEGMENT_HEADER_LEN);
    let mut delivered = 0u64;
    let mut frame = Vec::new();
    let header = parse_segment_header(&window).ok().filter(|h| h.id == id);
    if let Some(header) = header {
        loop {
            let at = base + pos as u64;
            match decode_frame_shared(&window, pos, header.salt, at, SHARE_VALUES_FROM, &mut frame)
            {
                Ok(len) => {
                    for (record, len) in frame.drain(..) {
                        visit(record, len)?;
                        delivered += 1;
                    }
                    pos += len;
                }
                Err(DecodeError::Incomplete) if !eof => {
                    // A new window: the undecoded tail, then a window more, or the rest of a
                    // frame larger than a window (never past the end of the file).
                    let tail = &window[pos.min(window.len())..];
                    base += pos as u64;
                    pos = 0;
                    let frame_len = match tail.get(..8) {
                        Some(b) => {
                            let mut len = [0; 8];
                            len.copy_from_slice(b);
                            usize::try_from(u64::from_le_bytes(len))
                                .unwrap_or(usize::MAX)
                                .saturating_add(FRAME_HEADER_LEN)
                        }
                        None => 0,
                    };
                    let left = file_len.saturating_sub(base + tail.len() as u64);
                    let want = frame_len.saturating_sub(tail.len()).max(READ_WINDOW);
                    let want = want.min(usize::try_from(left).unwrap_or(want));
                    let mut next = pool.take();
                    next.reserve(tail.len().saturating_add(want));
                    next.extend_from_slice(tail);
                    eof = fill(file, &mut next, want)?;
                    pool.give_back(std::mem::replace(&mut window, Bytes::from(next)));
                }
                Err(DecodeError::Incomplete) if pos == window.len() => {
                    pool.give_back(window);
                    return Ok(SegmentScan {
                        id: Some(id),
                        salt: header.salt,
                        records: delivered,
                        valid_len: usize::try_from(base).unwrap_or(usize::MAX) + pos,
                        ..SegmentScan::default()
                    });
                }
                Err(_) => break,
            }
        }
    }
    pool.give_back(window);
    let mut all = pool.take();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut all)?;
    let mut skip = delivered;
    let scanned = scan_segment(&all, id, is_last, policy, &mut |record, len| {
        if skip > 0 {
            skip -= 1;
            return Ok(());
        }
        visit(record, len)
    });
    pool.keep(all);
    scanned
}

/// The replay's read buffers: a window no value was sliced from is read into again (fresh
/// pages cost more than the read), and every buffer is kept until the replay has been applied.
/// Freeing a buffer of several MiB earlier would make glibc's allocator raise its threshold for
/// serving allocations with `mmap` past that size, and the store's tables of a few MiB each,
/// allocated while the replay is applied, would then come from the heap, where growing one
/// means copying it (measured at 1M keys: 83,400 page faults instead of 69,500).
#[derive(Default)]
struct BufferPool {
    free: Vec<Vec<u8>>,
}

impl BufferPool {
    /// An empty buffer: a kept one when there is one.
    fn take(&mut self) -> Vec<u8> {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf
    }

    /// Takes back a window that no value holds (a window a value holds stays the value's).
    fn give_back(&mut self, window: Bytes) {
        if let Ok(buf) = window.try_into_mut() {
            self.keep(Vec::from(buf));
        }
    }

    fn keep(&mut self, buf: Vec<u8>) {
        self.free.push(buf);
    }
}

/// Appends up to `n` bytes of `file` to `buf`; true when the file ended before `n`.
fn fill(file: &mut File, buf: &mut Vec<u8>, n: usize) -> Result<bool> {
    buf.reserve(n);
    let got = file.take(n as u64).read_to_end(buf)?;
    Ok(got < n || n == 0)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMP_SUFFIX);
    PathBuf::from(name)
}

/// Makes renames and deletions in `dir` durable. A no-op where directories cannot be opened
/// (Windows), whose file systems order metadata updates themselves.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::native::{Options, Store, SystemClock};

    /// What a replay delivered: the size hint and every record, in order.
    #[derive(Default)]
    struct Collect {
        hint: Option<usize>,
        records: Vec<Record>,
        /// Fail at this record (counting from 0).
        fail_at: Option<usize>,
    }

    impl Replay for Collect {
        fn reserve(&mut self, records: usize) {
            self.hint = Some(records);
        }
        fn record(&mut self, record: Record) -> Result<()> {
            if self.fail_at == Some(self.records.len()) {
                return Err(Error::Backend("the store refused a record".into()));
            }
            self.records.push(record);
            Ok(())
        }
    }

    /// A database of many small segments, with overwrites and deletes, and its directory.
    fn many_segments() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(
            root.path(),
            Options::default()
                .durability(Durability::Buffered)
                .segment_size(64 * 1024),
        )
        .unwrap();
        for i in 0..20_000u32 {
            store
                .set(&format!("k{:05}", i % 7_000), i.to_le_bytes().to_vec())
                .unwrap();
            if i % 11 == 0 {
                store.delete(&format!("k{:05}", i % 5_000)).unwrap();
            }
            if i % 500 == 0 {
                store.flush().unwrap();
            }
        }
        store.close().unwrap();
        let dir = root.path().join("default");
        (root, dir)
    }

    /// A Put of key `k<i>` in the default namespace holding `value`.
    fn put(i: u32, value: Vec<u8>) -> Record {
        Record::Put(crate::core::PutRecord {
            namespace: String::new(),
            key: format!("k{i}"),
            value: value.into(),
            kind: crate::Kind::Bytes,
            created_at: 1,
            updated_at: 1,
            expires_at: None,
            tags: vec![],
            compressed: false,
        })
    }

    fn open_log(dir: &Path) -> FileLog {
        FileLog::open(dir, LogOptions::default(), Arc::new(SystemClock)).unwrap()
    }

    #[test]
    fn replay_delivers_exactly_what_a_sequential_scan_reads_in_the_same_order() {
        let (_root, dir) = many_segments();
        let mut expected = Vec::new();
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .unwrap()
            .filter_map(
                |e| match classify_file_name(e.unwrap().file_name().to_str()?) {
                    FileKind::Segment(id) => Some(id),
                    _ => None,
                },
            )
            .collect();
        ids.sort_unstable();
        assert!(ids.len() > 5, "the test needs several segments");
        for (i, &id) in ids.iter().enumerate() {
            let bytes = fs::read(dir.join(segment_file_name(id))).unwrap();
            let last = i + 1 == ids.len();
            scan_segment(&bytes, id, last, CorruptPolicy::Fail, &mut |r, _| {
                expected.push(r);
                Ok(())
            })
            .unwrap();
        }
        let mut log = open_log(&dir);
        let mut replay = Collect::default();
        log.load(&mut replay).unwrap();
        assert!(
            replay.records == expected,
            "records differ from a sequential scan"
        );
        // The hint comes from the first segment's mean record size.
        let hint = replay.hint.expect("a size hint before the records") as f64;
        let n = expected.len() as f64;
        assert!(
            (0.8 * n..=1.2 * n).contains(&hint),
            "hint {hint} for {n} records"
        );
        let stats = log.disk_stats().unwrap();
        assert_eq!(stats.records_replayed, expected.len() as u64);
        assert!(stats.live_bytes > 0 && stats.dead_bytes > 0, "{stats:?}");
        log.close().unwrap();
    }

    /// Everything a scan reports, to compare two scans.
    fn scan_summary(scan: &SegmentScan) -> (Option<u64>, u64, usize, usize, Vec<(usize, usize)>) {
        let spans = scan.corrupt.iter().map(|c| (c.offset, c.len)).collect();
        (scan.id, scan.records, scan.valid_len, scan.torn_tail, spans)
    }

    #[test]
    fn a_windowed_scan_matches_a_whole_file_scan_through_tears_and_bit_flips() {
        // Records from 5 bytes to several windows long, so frames straddle every boundary.
        let records: Vec<Record> = (0..60u32)
            .map(|i| put(i, vec![i as u8; [5, 300, 999, 2_500][i as usize % 4]]))
            .collect();
        // Frames of 1 to 4 records, so frames straddle windows too.
        let mut clean = encode_segment_header(7, 99).to_vec();
        for chunk in records.chunks(4) {
            for part in chunk.chunks(1 + chunk[0].size() % 4) {
                let offset = clean.len() as u64;
                encode_frame(part, 99, offset, &mut clean, &mut Vec::new());
            }
        }
        assert!(clean.len() > 20 * READ_WINDOW);
        let mut variants = vec![clean.clone()];
        for cut in (0..clean.len()).step_by(997) {
            variants.push(clean[..cut].to_vec());
        }
        for at in (0..clean.len()).step_by(1_499) {
            let mut flipped = clean.clone();
            flipped[at] ^= 0x10;
            variants.push(flipped);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        // One pool for every scan: buffers go from one file's scan to the next, as they do
        // from one segment to the next at open.
        let mut pool = BufferPool::default();
        for bytes in &variants {
            fs::write(&path, bytes).unwrap();
            for is_last in [true, false] {
                for policy in [CorruptPolicy::Fail, CorruptPolicy::Skip] {
                    let mut want = Vec::new();
                    let whole = scan_segment(bytes, 7, is_last, policy, &mut |r, len| {
                        want.push((r, len));
                        Ok(())
                    });
                    let mut got = Vec::new();
                    let mut file = File::open(&path).unwrap();
                    let windowed =
                        scan_file(&mut file, 7, is_last, policy, &mut pool, &mut |r, len| {
                            got.push((r, len));
                            Ok(())
                        });
                    let context = format!("{} bytes, last {is_last}, {policy:?}", bytes.len());
                    match (whole, windowed) {
                        (Ok(w), Ok(g)) => {
                            assert_eq!(scan_summary(&w), scan_summary(&g), "{context}")
                        }
                        (Err(w), Err(g)) => assert_eq!(w.to_string(), g.to_string(), "{context}"),
                        (w, g) => panic!("{context}: whole {w:?}, windowed {g:?}"),
                    }
                    assert!(got == want, "{context}: different records");
                }
            }
        }
    }

    #[test]
    fn values_kept_from_a_window_are_unchanged_after_later_windows_are_read() {
        // Runs of short values (copied: their windows are read into again) between long ones
        // (slices: their windows must never be read into again).
        let records: Vec<Record> = (0..400u32)
            .map(|i| {
                let len = if i % 10 == 9 {
                    SHARE_VALUES_FROM + 1
                } else {
                    40
                };
                put(i, (0..len).map(|j| (i as usize + j) as u8).collect())
            })
            .collect();
        let mut bytes = encode_segment_header(7, 99).to_vec();
        for record in &records {
            let offset = bytes.len() as u64;
            encode_frame(
                core::slice::from_ref(record),
                99,
                offset,
                &mut bytes,
                &mut Vec::new(),
            );
        }
        assert!(bytes.len() > 20 * READ_WINDOW);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        fs::write(&path, &bytes).unwrap();
        let mut got = Vec::new();
        let mut file = File::open(&path).unwrap();
        let mut pool = BufferPool::default();
        scan_file(
            &mut file,
            7,
            true,
            CorruptPolicy::Fail,
            &mut pool,
            &mut |r, _| {
                got.push(r);
                Ok(())
            },
        )
        .unwrap();
        assert!(
            !pool.free.is_empty(),
            "windows no value holds are kept for reuse"
        );
        assert!(
            got == records,
            "a value changed after its window was passed"
        );
    }

    #[test]
    fn a_record_the_store_refuses_stops_the_replay_with_that_error() {
        let (_root, dir) = many_segments();
        // Early (while the reader still has most of the log to send) and late.
        for fail_at in [0, 3_000, 20_000] {
            let mut log = open_log(&dir);
            let mut replay = Collect {
                fail_at: Some(fail_at),
                ..Collect::default()
            };
            let err = log.load(&mut replay).unwrap_err();
            assert!(matches!(err, Error::Backend(_)), "{err:?}");
            assert_eq!(replay.records.len(), fail_at);
            log.close().unwrap();
        }
    }
}
