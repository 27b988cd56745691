//! The on-disk layout of a tidekv log directory, as pure functions: file naming, the segment
//! header, and "replay these bytes into records". Every shell that reads or writes a log
//! directory (the native file log, the Node.js file backend compiled to wasm) uses exactly this
//! module, so both read and write the same directories.
//!
//! It never performs I/O, never reads a clock and needs no `std`: a shell reads a whole segment
//! into memory, hands the bytes to [`scan_segment`], and acts on the [`SegmentScan`] it gets back
//! (truncate a torn tail, report corruption).
//!
//! ## Layout
//! ```text
//! <dir>/<db>/LOCK                          OS lock file (flock-ed by a native process)
//! <dir>/<db>/LOCK.owner.<16 hex digits>    owner socket of lock generation <n>
//! <dir>/<db>/LOCK.owner.tmp-<16 hex>       an owner socket not linked to a generation yet
//! <dir>/<db>/seg-<16 hex digits>.tkv       a segment, replayed in ascending id order
//! <dir>/<db>/seg-<16 hex digits>.tkv.tmp   a segment being created; ignored and removed at open
//! segment = header (32 bytes) then frames
//! header  = magic "TIDEKVLG" | version u16 LE (= 2) | flags u16 LE (= 0) | segment id u64 LE
//!           | salt u64 LE (random, chosen when the segment is created)
//!           | CRC32 of the first 28 header bytes u32 LE
//! frame   = body_len u64 LE | offset u64 LE | record count u32 LE | flags u32 LE (= 0)
//!           | body CRC u32 LE | header CRC u32 LE | body
//! body    = record count × (record body length u32 LE | record body, see [`record`](super::record))
//! ```
//! A frame is one write: a whole batch, applied at replay entirely or not at all. Both of its
//! checksums start from the segment's salt, and its header names the offset it was written at:
//! `header CRC = CRC32(salt | first 24 header bytes)`,
//! `body CRC = CRC32(salt | first 24 header bytes | body)`. So bytes that tidekv did not write
//! at that place of that segment — a frame inside a value (a dump, a cached segment, a crafted
//! upload), a frame copied from another segment or another offset — never pass as a frame,
//! and a torn final write is always recognised as torn, never as corruption.
//!
//! A later record of a key always shadows an earlier one, across segments too. Segments are
//! append-only; a segment is sealed (and synced) before the next one is created, so only the
//! segment with the highest id can end in a torn write. A segment of another format version is
//! refused with an error that names both versions; it is never read.

use alloc::{format, string::String, vec::Vec};
use bytes::Bytes;

use super::crc::{crc32, Crc32};
use super::record::{DecodeError, Record};
use crate::{Error, Result};

/// The first 8 bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TIDEKVLG";
/// The segment format version this build writes and reads. Version 1 (one checksum per record,
/// not bound to its segment) is refused with an error naming it.
pub const SEGMENT_VERSION: u16 = 2;
/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Bytes in a frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// The name of the lock file inside a database directory.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// The prefix of every owner socket: a process that has the database open (native or Node.js)
/// listens on a Unix socket linked in as [`lock_owner_file_name`] of one generation, so another
/// process can tell a live holder (connect succeeds) from a dead one (connect is refused).
pub const LOCK_OWNER_PREFIX: &str = "LOCK.owner.";
/// The prefix of an owner socket that is bound but not linked to a generation yet: a process
/// listens there first, so its socket is live before anyone can see it under a generation name.
pub const LOCK_OWNER_TEMP_PREFIX: &str = "LOCK.owner.tmp-";
/// The suffix of a file that is being written and is not part of the log yet.
pub const TEMP_SUFFIX: &str = ".tmp";
/// The longest database name, in bytes.
pub const MAX_DB_NAME_LEN: usize = 128;

const SEGMENT_PREFIX: &str = "seg-";
const SEGMENT_SUFFIX: &str = ".tkv";

/// The file name of segment `id`: `seg-` + 16 lower-case hex digits + `.tkv`, so names sort in
/// id order.
pub fn segment_file_name(id: u64) -> String {
    format!("{SEGMENT_PREFIX}{id:016x}{SEGMENT_SUFFIX}")
}

/// The owner socket of lock generation `gen`: [`LOCK_OWNER_PREFIX`] + 16 lower-case hex digits.
pub fn lock_owner_file_name(gen: u64) -> String {
    format!("{LOCK_OWNER_PREFIX}{gen:016x}")
}

/// The temporary owner socket with random `nonce`: [`LOCK_OWNER_TEMP_PREFIX`] + 16 hex digits.
pub fn lock_owner_temp_name(nonce: u64) -> String {
    format!("{LOCK_OWNER_TEMP_PREFIX}{nonce:016x}")
}

/// The generation of an owner socket name, or `None` if `name` is not exactly one (a temporary
/// owner socket is not).
pub fn parse_lock_owner_file_name(name: &str) -> Option<u64> {
    parse_hex16(name.strip_prefix(LOCK_OWNER_PREFIX)?)
}

/// Exactly 16 lower-case hex digits as a number (the form every numbered file name uses).
fn parse_hex16(hex: &str) -> Option<u64> {
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What a file found in a database directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A segment with this id.
    Segment(u64),
    /// A leftover temporary file (a segment or compaction output that was never renamed into
    /// place): safe to delete at open.
    Temp,
    /// The lock file, or an owner socket (of a generation or temporary).
    Lock,
    /// Anything else: left alone.
    Other,
}

/// Classifies a file name found in a database directory. Only exact segment names (16
/// lower-case hex digits) count as segments.
pub fn classify_file_name(name: &str) -> FileKind {
    if name == LOCK_FILE_NAME || name.starts_with(LOCK_OWNER_PREFIX) {
        return FileKind::Lock;
    }
    if let Some(base) = name.strip_suffix(TEMP_SUFFIX) {
        if parse_segment_file_name(base).is_some() {
            return FileKind::Temp;
        }
        return FileKind::Other;
    }
    match parse_segment_file_name(name) {
        Some(id) => FileKind::Segment(id),
        None => FileKind::Other,
    }
}

/// The id of a segment file name, or `None` if `name` is not exactly a segment name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_hex16(
        name.strip_prefix(SEGMENT_PREFIX)?
            .strip_suffix(SEGMENT_SUFFIX)?,
    )
}

/// Checks a database name, which becomes a directory name: ASCII letters, digits, `-`, `_` and
/// `.`, 1..=128 bytes, and never `.` or `..`. So no name can escape the parent directory.
pub fn validate_db_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidName {
            name: name.into(),
            reason: reason.into(),
        })
    };
    if name.is_empty() {
        return bad("a database name must not be empty");
    }
    if name.len() > MAX_DB_NAME_LEN {
        return bad("a database name is at most 128 bytes");
    }
    if name == "." || name == ".." {
        return bad("a database name must not be `.` or `..`");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("a database name may hold only ASCII letters, digits, `-`, `_` and `.`");
    }
    Ok(())
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The segment's id (it must match the file name).
    pub id: u64,
    /// The random salt every frame of the segment is bound to.
    pub salt: u64,
}

/// The header that starts segment `id`, whose frames are bound to `salt`. A shell picks the
/// salt at random when it creates the segment (it needs no cryptographic quality, only to be
/// unknowable to whoever chooses the values written into the segment).
pub fn encode_segment_header(id: u64, salt: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // h[10..12]: flags, none defined.
    h[12..20].copy_from_slice(&id.to_le_bytes());
    h[20..28].copy_from_slice(&salt.to_le_bytes());
    let crc = crc32(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than a header: a segment torn while it was being created.
    Incomplete,
    /// A tidekv segment of another format version (the version it names).
    Version(u16),
    /// Not a segment header, or a damaged one.
    Corrupt(&'static str),
}

impl HeaderError {
    /// The error a shell reports for a segment whose header was refused (not for
    /// [`HeaderError::Incomplete`] in the last segment, which is a torn write).
    pub fn into_error(self) -> Error {
        match self {
            HeaderError::Incomplete => Error::Corrupt("segment is shorter than its header".into()),
            HeaderError::Version(v) => Error::Corrupt(format!(
                "segment format version {v} is not readable by this build, which reads \
                 version {SEGMENT_VERSION}{}",
                if v < SEGMENT_VERSION {
                    " (written by an older tidekv: export it with that version's `tidekv dump` \
                     and `tidekv load` it here)"
                } else {
                    " (written by a newer tidekv)"
                }
            )),
            HeaderError::Corrupt(reason) => Error::Corrupt(reason.into()),
        }
    }
}

/// Parses a segment header at the start of `bytes`.
pub fn parse_segment_header(bytes: &[u8]) -> core::result::Result<SegmentHeader, HeaderError> {
    let Some(h) = bytes.get(..SEGMENT_HEADER_LEN) else {
        // A header of an older version is shorter: still say which version it is.
        return match bytes.get(..10) {
            Some(h) if h[..8] == SEGMENT_MAGIC && u16::from_le_bytes([h[8], h[9]]) == 1 => {
                Err(HeaderError::Version(1))
            }
            _ => Err(HeaderError::Incomplete),
        };
    };
    if h[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Corrupt("not a tidekv segment (bad magic)"));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc != crc32(&h[..28]) {
        return Err(HeaderError::Corrupt("segment header CRC mismatch"));
    }
    if h[10] != 0 || h[11] != 0 {
        return Err(HeaderError::Corrupt("unknown segment flags"));
    }
    Ok(SegmentHeader {
        id: u64_at(h, 12),
        salt: u64_at(h, 20),
    })
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Appends `records` as one frame — one atomic unit at replay — to `out`, for the position
/// `offset` of a segment with `salt`. Each record's share of the frame is pushed to `lens`: its
/// body and length prefix, and for the first record the frame header too, so the shares add up
/// to the frame's length (what [`decode_frame`] reports). Returns the frame's length.
///
/// `records` may be empty (an empty frame is valid and replays as nothing).
pub fn encode_frame(
    records: &[Record],
    salt: u64,
    offset: u64,
    out: &mut Vec<u8>,
    lens: &mut Vec<usize>,
) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    for record in records {
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        let len = record.encode_body(out);
        out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        let header = if at == start + FRAME_HEADER_LEN {
            FRAME_HEADER_LEN
        } else {
            0
        };
        lens.push(header + 4 + len);
    }
    let body_len = (out.len() - start - FRAME_HEADER_LEN) as u64;
    let h = &mut out[start..start + FRAME_HEADER_LEN];
    h[..8].copy_from_slice(&body_len.to_le_bytes());
    h[8..16].copy_from_slice(&offset.to_le_bytes());
    h[16..20].copy_from_slice(&(records.len() as u32).to_le_bytes());
    // h[20..24]: flags, none defined.
    let mut crc = Crc32::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&h[..24]);
    let header_crc = crc.clone().finish();
    crc.update(&out[start + FRAME_HEADER_LEN..]);
    let body_crc = crc.finish();
    let h = &mut out[start..start + FRAME_HEADER_LEN];
    h[24..28].copy_from_slice(&body_crc.to_le_bytes());
    h[28..32].copy_from_slice(&header_crc.to_le_bytes());
    out.len() - start
}

/// How many of `records` (at least one, if there is any) make a frame of about `room` bytes:
/// records are added while their uncompressed sizes stay under `room`. For writers that split
/// a long run of records (a compaction) into frames and segments.
pub fn records_that_fit(records: &[Record], room: usize) -> usize {
    let mut n = 0;
    let mut size = 0usize;
    while n < records.len() && (n == 0 || size < room) {
        size = size.saturating_add(records[n].size());
        n += 1;
    }
    n
}

/// The length of the frame whose header starts `buf`, if the header is whole and was written
/// at `offset` of the segment with `salt`. Cheap: reads the header only.
pub fn frame_len(buf: &[u8], salt: u64, offset: u64) -> Option<u64> {
    let h = buf.get(..FRAME_HEADER_LEN)?;
    if u64_at(h, 8) != offset {
        return None;
    }
    let mut crc = Crc32::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&h[..24]);
    if crc.finish() != u32_at(h, 28) {
        return None;
    }
    Some(u64_at(h, 0).saturating_add(FRAME_HEADER_LEN as u64))
}

/// A frame that decoded: its records, each with its share of the frame in bytes (as
/// [`encode_frame`] counts them), and the frame's whole length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The records, in the order they were written.
    pub records: Vec<(Record, usize)>,
    /// Bytes of the frame, header included.
    pub len: usize,
}

/// Decodes the frame at the start of `buf`, which must sit at `offset` of the segment with
/// `salt`. A frame decodes entirely or not at all.
///
/// [`DecodeError::Incomplete`]: the bytes end inside a frame whose header checks out (a torn
/// write, or a read window too short); [`DecodeError::Corrupt`]: anything else. Never panics.
pub fn decode_frame(
    buf: &[u8],
    salt: u64,
    offset: u64,
) -> core::result::Result<Frame, DecodeError> {
    let mut records = Vec::new();
    let len = decode_frame_with(buf, salt, offset, &mut records, Bytes::copy_from_slice)?;
    Ok(Frame { records, len })
}

/// [`decode_frame`] for a reader that keeps what it read: decodes the frame at `window[at..]`
/// (which sits at `offset` of the segment with `salt`) into `out` — cleared first, left empty
/// on an error — and returns the frame's length. An uncompressed value of at least `shared_from`
/// bytes is not copied: it is a [`Bytes::slice_ref`] of `window`, so it keeps the whole
/// window's allocation alive for as long as the value lives (a reader bounds that by reading
/// in windows of a bounded size). Shorter values are copied. Reusing `out` saves one
/// allocation per frame. Same checks and errors as [`decode_frame`].
pub fn decode_frame_shared(
    window: &Bytes,
    at: usize,
    salt: u64,
    offset: u64,
    shared_from: usize,
    out: &mut Vec<(Record, usize)>,
) -> core::result::Result<usize, DecodeError> {
    let buf = window.get(at..).unwrap_or_default();
    decode_frame_with(buf, salt, offset, out, |stored| {
        if stored.len() >= shared_from {
            window.slice_ref(stored)
        } else {
            Bytes::copy_from_slice(stored)
        }
    })
}

/// The one frame decoder: `value` turns a stored (uncompressed) value, a slice of `buf`, into
/// the record's value.
fn decode_frame_with(
    buf: &[u8],
    salt: u64,
    offset: u64,
    out: &mut Vec<(Record, usize)>,
    mut value: impl FnMut(&[u8]) -> Bytes,
) -> core::result::Result<usize, DecodeError> {
    out.clear();
    if buf.len() < FRAME_HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let Some(total) = frame_len(buf, salt, offset) else {
        return Err(DecodeError::Corrupt(
            "frame header does not check out for this segment and offset",
        ));
    };
    let h = &buf[..FRAME_HEADER_LEN];
    if u32_at(h, 20) != 0 {
        return Err(DecodeError::Corrupt("unknown frame flags"));
    }
    let total = match usize::try_from(total) {
        Ok(total) if total <= buf.len() => total,
        _ => return Err(DecodeError::Incomplete),
    };
    let body = &buf[FRAME_HEADER_LEN..total];
    let mut crc = Crc32::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&h[..24]);
    crc.update(body);
    if crc.finish() != u32_at(h, 24) {
        return Err(DecodeError::Corrupt("frame CRC mismatch"));
    }
    let count = u32_at(h, 16) as usize;
    // Every record takes at least 5 bytes, so a huge count cannot make us allocate.
    if count > body.len() / 5 {
        return Err(DecodeError::Corrupt(
            "record count runs past the end of the frame",
        ));
    }
    out.reserve(count);
    let mut pos = 0;
    let decoded = (|| {
        for _ in 0..count {
            let len = match body.get(pos..pos + 4) {
                Some(b) => u32_at(b, 0) as usize,
                None => {
                    return Err(DecodeError::Corrupt(
                        "record runs past the end of the frame",
                    ))
                }
            };
            let Some(record_body) = body.get(pos + 4..pos + 4 + len) else {
                return Err(DecodeError::Corrupt(
                    "record runs past the end of the frame",
                ));
            };
            let header = if pos == 0 { FRAME_HEADER_LEN } else { 0 };
            let record = Record::decode_body_with(record_body, &mut value)?;
            out.push((record, header + 4 + len));
            pos += 4 + len;
        }
        if pos != body.len() {
            return Err(DecodeError::Corrupt("trailing bytes in frame"));
        }
        Ok(total)
    })();
    if decoded.is_err() {
        out.clear();
    }
    decoded
}

/// How [`scan_segment`] treats a record that fails its checks *before* the end of the data
/// (a bad record followed by a good one — not a torn tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CorruptPolicy {
    /// Stop and return [`Error::Corrupt`] naming the offset (the default: nothing is guessed).
    #[default]
    Fail,
    /// Skip to the next record that passes its checks and count the skipped bytes.
    Skip,
}

/// A run of bytes [`scan_segment`] skipped because it did not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptSpan {
    /// Offset of the first bad byte in the segment.
    pub offset: usize,
    /// Bytes skipped.
    pub len: usize,
    /// What the first bad frame failed.
    pub reason: &'static str,
}

/// What one segment held.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SegmentScan {
    /// The id in the segment's header (`None` if the header itself was torn).
    pub id: Option<u64>,
    /// The salt in the segment's header (0 if the header was torn): a shell that keeps
    /// appending to the segment binds its frames to it.
    pub salt: u64,
    /// Records decoded and handed to the visitor.
    pub records: u64,
    /// Bytes from the start of the segment to the end of its last good record: where the next
    /// record should be written. A shell truncates the file to this length when it is shorter
    /// than the file.
    pub valid_len: usize,
    /// Bytes after `valid_len` that are a torn write (only ever in the last segment).
    pub torn_tail: usize,
    /// Bad records that were skipped (only with [`CorruptPolicy::Skip`]).
    pub corrupt: Vec<CorruptSpan>,
}

/// Replays one segment: checks the header, decodes every frame in order and hands each record
/// to `visit` with its share of the frame in bytes.
///
/// - `expected_id`: the id from the file name; a header that disagrees is corruption.
/// - `is_last`: whether this is the newest segment. Only there may the data end in a torn write:
///   a frame that is incomplete, or bytes that fail their checks with no good frame after them,
///   become [`SegmentScan::torn_tail`] (a torn header gives `id: None`, `valid_len: 0`). In an
///   older segment both are corruption.
/// - `policy`: what to do with a bad frame that has good frames after it (see
///   [`CorruptPolicy`]). With `Fail`, the error names the offset and nothing after it is visited.
///
/// A "good frame" is one that passes its checks for this segment's salt *at the offset where it
/// is found*, so a frame inside a torn record's value is never taken for one.
///
/// Errors: [`Error::Corrupt`] as above (a segment of another format version names it), or
/// whatever `visit` returns. Never panics, whatever the bytes.
pub fn scan_segment(
    bytes: &[u8],
    expected_id: u64,
    is_last: bool,
    policy: CorruptPolicy,
    visit: &mut dyn FnMut(Record, usize) -> Result<()>,
) -> Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    let salt = match parse_segment_header(bytes) {
        Ok(h) if h.id == expected_id => {
            scan.id = Some(h.id);
            scan.salt = h.salt;
            h.salt
        }
        Ok(h) => {
            return Err(Error::Corrupt(format!(
                "segment header says id {:#x}, its file name says {expected_id:#x}",
                h.id
            )))
        }
        Err(HeaderError::Incomplete) if is_last => {
            scan.torn_tail = bytes.len();
            return Ok(scan);
        }
        Err(e) => return Err(e.into_error()),
    };
    let mut pos = SEGMENT_HEADER_LEN;
    scan.valid_len = pos;
    while pos < bytes.len() {
        let reason = match decode_frame(&bytes[pos..], salt, pos as u64) {
            Ok(frame) => {
                for (record, len) in frame.records {
                    visit(record, len)?;
                    scan.records += 1;
                }
                pos += frame.len;
                scan.valid_len = pos;
                continue;
            }
            Err(DecodeError::Incomplete) => "frame runs past the end of the segment",
            Err(DecodeError::Corrupt(reason)) => reason,
        };
        match next_good_frame(bytes, salt, pos + 1) {
            None if is_last => {
                scan.torn_tail = bytes.len() - pos;
                return Ok(scan);
            }
            next => {
                let end = next.unwrap_or(bytes.len());
                if policy == CorruptPolicy::Fail {
                    return Err(Error::Corrupt(format!("{reason} at byte {pos}")));
                }
                scan.corrupt.push(CorruptSpan {
                    offset: pos,
                    len: end - pos,
                    reason,
                });
                pos = end;
                scan.valid_len = pos;
            }
        }
    }
    Ok(scan)
}

/// The offset of the first frame at or after `from` that decodes completely *at that offset*
/// for this segment's `salt`, if any. Only tidekv writes such a frame: the header CRC covers the
/// salt and the offset, so most candidates are rejected after reading 32 bytes.
fn next_good_frame(bytes: &[u8], salt: u64, from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        frame_len(&bytes[at..], salt, at as u64).is_some()
            && decode_frame(&bytes[at..], salt, at as u64).is_ok()
    })
}

/// About how many records a log of `total_bytes` holds, judged from one of its segments
/// (`sample`, read whole or in part): the sample's frames are walked by their length and count
/// fields alone (no CRC, no decoding) and the rest of the log is assumed to hold records of the
/// same mean size. A hint for sizing tables before a replay, never a count to trust.
pub fn estimate_records(sample: &[u8], total_bytes: u64) -> usize {
    let mut records = 0u64;
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(header) = sample.get(pos..pos + FRAME_HEADER_LEN) {
        let body = usize::try_from(u64_at(header, 0)).unwrap_or(usize::MAX);
        let end = pos.saturating_add(FRAME_HEADER_LEN).saturating_add(body);
        if end > sample.len() {
            break;
        }
        pos = end;
        records += u64::from(u32_at(header, 16));
    }
    let framed = pos.min(sample.len()).saturating_sub(SEGMENT_HEADER_LEN) as u64;
    if records == 0 || framed == 0 {
        return 0;
    }
    let estimate = total_bytes as u128 * records as u128 / framed as u128;
    usize::try_from(estimate).unwrap_or(usize::MAX)
}

/// Segment ids for a compaction whose live data is about `live_bytes` (uncompressed record
/// sizes): the output takes ids `active + 1 ..= active + n` (one per `segment_size`, at least
/// one) and new writes continue at the returned next id, so replay order is: old segments, the
/// compacted output, then everything written after the compaction began.
pub fn compaction_ids(active: u64, live_bytes: u64, segment_size: u64) -> (u64, u64, u64) {
    let n = live_bytes.div_ceil(segment_size.max(1)).max(1);
    let first = active.saturating_add(1);
    let last = active.saturating_add(n);
    (first, last, last.saturating_add(1))
}

/// Whether a log of `disk_bytes` of which `live_bytes` are live should be compacted: at least
/// `min_bytes` on disk and a dead share of at least `ratio` (0 < ratio < 1; 1.0 or more never).
pub fn compaction_due(disk_bytes: u64, live_bytes: u64, min_bytes: u64, ratio: f64) -> bool {
    if disk_bytes < min_bytes || disk_bytes == 0 || ratio.is_nan() || ratio >= 1.0 {
        return false;
    }
    let dead = disk_bytes.saturating_sub(live_bytes);
    dead as f64 >= disk_bytes as f64 * ratio
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Kind, PutRecord};
    use alloc::{string::ToString, vec, vec::Vec};
    use bytes::Bytes;

    fn put(key: &str, value: &str) -> Record {
        Record::Put(PutRecord {
            namespace: String::new(),
            key: key.to_string(),
            value: Bytes::copy_from_slice(value.as_bytes()),
            kind: Kind::Text,
            created_at: 1,
            updated_at: 1,
            expires_at: None,
            tags: vec![],
            compressed: false,
        })
    }

    const SALT: u64 = 0x5a17_5a17_5a17_5a17;

    /// A segment with one frame per record, as one flush per write would leave it.
    fn segment(id: u64, records: &[Record]) -> Vec<u8> {
        let batches: Vec<&[Record]> = records.iter().map(core::slice::from_ref).collect();
        segment_of_batches(id, &batches)
    }

    /// A segment with one frame per batch.
    fn segment_of_batches(id: u64, batches: &[&[Record]]) -> Vec<u8> {
        let mut out = encode_segment_header(id, SALT).to_vec();
        for batch in batches {
            let offset = out.len() as u64;
            encode_frame(batch, SALT, offset, &mut out, &mut Vec::new());
        }
        out
    }

    fn keys(bytes: &[u8], last: bool, policy: CorruptPolicy) -> Result<(Vec<String>, SegmentScan)> {
        let mut seen = Vec::new();
        let scan = scan_segment(bytes, 7, last, policy, &mut |r, _| {
            seen.push(r.key().to_string());
            Ok(())
        })?;
        Ok((seen, scan))
    }

    #[test]
    fn segment_names_round_trip_and_sort_in_id_order() {
        assert_eq!(segment_file_name(255), "seg-00000000000000ff.tkv");
        assert_eq!(
            parse_segment_file_name("seg-00000000000000ff.tkv"),
            Some(255)
        );
        assert_eq!(
            classify_file_name("seg-00000000000000ff.tkv.tmp"),
            FileKind::Temp
        );
        assert_eq!(classify_file_name("LOCK"), FileKind::Lock);
        for bad in [
            "seg-FF.tkv",
            "seg-00000000000000FF.tkv",
            "seg-000000000000000g.tkv",
            "x.tkv",
        ] {
            assert_eq!(classify_file_name(bad), FileKind::Other, "{bad}");
        }
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn lock_owner_names_round_trip_and_count_as_lock_files() {
        assert_eq!(lock_owner_file_name(255), "LOCK.owner.00000000000000ff");
        assert_eq!(
            parse_lock_owner_file_name("LOCK.owner.00000000000000ff"),
            Some(255)
        );
        assert_eq!(lock_owner_temp_name(1), "LOCK.owner.tmp-0000000000000001");
        for lock in [
            "LOCK.owner.00000000000000ff",
            "LOCK.owner.tmp-0000000000000001",
        ] {
            assert_eq!(classify_file_name(lock), FileKind::Lock, "{lock}");
        }
        for not_a_gen in [
            "LOCK.owner.tmp-0000000000000001",
            "LOCK.owner.FF",
            "LOCK.owner.00000000000000FF",
            "LOCK",
        ] {
            assert_eq!(parse_lock_owner_file_name(not_a_gen), None, "{not_a_gen}");
        }
    }

    #[test]
    fn db_names_that_could_escape_the_directory_are_refused() {
        for ok in ["default", "a-b_c.d", "X9", &"n".repeat(128)] {
            assert!(validate_db_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "é",
            " x",
            &"n".repeat(129),
        ] {
            assert!(
                matches!(validate_db_name(bad), Err(Error::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_round_trips_and_every_bit_flip_is_caught() {
        let h = encode_segment_header(0xdead_beef, 42);
        assert_eq!(
            parse_segment_header(&h),
            Ok(SegmentHeader {
                id: 0xdead_beef,
                salt: 42
            })
        );
        for byte in 0..h.len() {
            for bit in 0..8 {
                let mut bad = h;
                bad[byte] ^= 1 << bit;
                assert!(parse_segment_header(&bad).is_err(), "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn every_truncation_of_the_last_record_is_a_torn_tail_and_keeps_the_rest() {
        let full = segment(7, &[put("a", "1"), put("b", "2")]);
        let first_end = segment(7, &[put("a", "1")]).len();
        for cut in first_end..full.len() {
            let (seen, scan) = keys(&full[..cut], true, CorruptPolicy::Fail).unwrap();
            assert_eq!(seen, ["a"], "cut {cut}");
            assert_eq!(scan.valid_len, first_end);
            assert_eq!(scan.torn_tail, cut - first_end);
        }
    }

    #[test]
    fn torn_header_in_the_last_segment_is_empty_and_elsewhere_corrupt() {
        let h = encode_segment_header(7, SALT);
        let (seen, scan) = keys(&h[..10], true, CorruptPolicy::Fail).unwrap();
        assert!(seen.is_empty());
        assert_eq!((scan.id, scan.valid_len, scan.torn_tail), (None, 0, 10));
        assert!(matches!(
            keys(&h[..10], false, CorruptPolicy::Fail),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_bad_record_in_the_middle_fails_or_is_skipped_by_policy() {
        let mut bytes = segment(7, &[put("a", "1"), put("b", "2"), put("c", "3")]);
        let b_at = segment(7, &[put("a", "1")]).len();
        bytes[b_at + 12] ^= 0x40; // inside b's body: CRC mismatch
        match keys(&bytes, true, CorruptPolicy::Fail) {
            Err(Error::Corrupt(msg)) => assert!(msg.contains(&b_at.to_string()), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let (seen, scan) = keys(&bytes, true, CorruptPolicy::Skip).unwrap();
        assert_eq!(seen, ["a", "c"]);
        assert_eq!(scan.corrupt.len(), 1);
        assert_eq!(scan.corrupt[0].offset, b_at);
        assert_eq!(scan.valid_len, bytes.len());
    }

    #[test]
    fn garbage_after_the_last_good_record_is_torn_only_in_the_last_segment() {
        let mut bytes = segment(7, &[put("a", "1")]);
        let good = bytes.len();
        bytes.extend_from_slice(&[0; 40]);
        let (_, scan) = keys(&bytes, true, CorruptPolicy::Fail).unwrap();
        assert_eq!((scan.valid_len, scan.torn_tail), (good, 40));
        assert!(matches!(
            keys(&bytes, false, CorruptPolicy::Fail),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn a_header_naming_another_segment_is_corrupt() {
        let bytes = segment(8, &[put("a", "1")]);
        assert!(matches!(
            keys(&bytes, true, CorruptPolicy::Skip),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn record_estimate_scales_the_sample_to_the_whole_log() {
        let records: Vec<Record> = (0..100)
            .map(|i| put(&format!("k{i:03}"), "value"))
            .collect();
        let seg = segment(1, &records);
        let body = (seg.len() - SEGMENT_HEADER_LEN) as u64;
        assert_eq!(estimate_records(&seg, body), 100);
        assert_eq!(estimate_records(&seg, body * 3), 300);
        // A torn last frame still gives a figure near the truth, and nothing panics.
        let torn = &seg[..seg.len() - 3];
        assert!((99..=100).contains(&estimate_records(torn, body)));
        // Records in batches count as records, not frames.
        let batches: Vec<&[Record]> = records.chunks(10).collect();
        let batched = segment_of_batches(1, &batches);
        let batched_body = (batched.len() - SEGMENT_HEADER_LEN) as u64;
        assert_eq!(estimate_records(&batched, batched_body), 100);
        assert_eq!(estimate_records(&seg[..SEGMENT_HEADER_LEN], body), 0);
        assert_eq!(estimate_records(&[], body), 0);
        let mut huge = seg[..SEGMENT_HEADER_LEN].to_vec();
        huge.extend_from_slice(&[0xff; FRAME_HEADER_LEN]);
        assert_eq!(estimate_records(&huge, u64::MAX), 0);
    }

    #[test]
    fn compaction_output_sits_between_old_segments_and_new_writes() {
        assert_eq!(compaction_ids(5, 0, 100), (6, 6, 7));
        assert_eq!(compaction_ids(5, 250, 100), (6, 8, 9));
    }

    #[test]
    fn compaction_is_due_only_above_the_minimum_and_the_ratio() {
        assert!(!compaction_due(999, 0, 1_000, 0.5));
        assert!(compaction_due(1_000, 500, 1_000, 0.5));
        assert!(!compaction_due(1_000, 501, 1_000, 0.5));
        assert!(!compaction_due(1_000, 0, 1_000, 1.0));
    }
    /// A value that holds whole, valid frames of tidekv's own: what a dump or a cached segment
    /// stored as a value looks like.
    fn value_holding_frames() -> String {
        let inner = segment(7, &[put("phantom", "never written"), put("b", "x")]);
        // Stored as text, so keep the bytes as they are (Latin-1 view, one char per byte).
        inner.iter().map(|&b| b as char).collect()
    }

    #[test]
    fn a_torn_write_whose_value_holds_frames_is_cut_back_and_replays_no_phantom() {
        // Regression: recovery used to search byte by byte for the next frame that decodes and
        // found one inside the torn record's own value.
        let carrier = put("carrier", &value_holding_frames());
        let full = segment(7, &[put("a", "1"), carrier]);
        let first_end = segment(7, &[put("a", "1")]).len();
        for cut in first_end + 1..full.len() {
            for policy in [CorruptPolicy::Fail, CorruptPolicy::Skip] {
                let (seen, scan) = keys(&full[..cut], true, policy)
                    .unwrap_or_else(|e| panic!("cut {cut} {policy:?}: {e}"));
                assert_eq!(seen, ["a"], "cut {cut} {policy:?}");
                assert_eq!(
                    (scan.valid_len, scan.torn_tail),
                    (first_end, cut - first_end)
                );
                assert!(scan.corrupt.is_empty());
            }
        }
    }

    #[test]
    fn a_frame_copied_to_another_offset_or_segment_never_passes() {
        let one = segment(7, &[put("a", "1")]);
        let frame = &one[SEGMENT_HEADER_LEN..];
        // The same frame bytes again, right after the first: its header names another offset.
        let mut twice = one.clone();
        twice.extend_from_slice(frame);
        let (seen, scan) = keys(&twice, true, CorruptPolicy::Skip).unwrap();
        assert_eq!(seen, ["a"]);
        assert_eq!(scan.torn_tail, frame.len());
        // A frame of another segment (another salt) at the very same offset.
        let mut other = encode_segment_header(7, SALT ^ 1).to_vec();
        other.extend_from_slice(frame);
        let (seen, _) = keys(&other, true, CorruptPolicy::Skip).unwrap();
        assert!(seen.is_empty());
    }

    #[test]
    fn a_batch_frame_replays_whole_or_not_at_all() {
        let batch = [put("a", "1"), put("b", "2"), put("c", "3")];
        let full = segment_of_batches(7, &[&[put("x", "0")], &batch]);
        let first_end = segment(7, &[put("x", "0")]).len();
        for cut in first_end..full.len() {
            let (seen, _) = keys(&full[..cut], true, CorruptPolicy::Fail).unwrap();
            assert_eq!(seen, ["x"], "cut {cut}");
        }
        let (seen, scan) = keys(&full, true, CorruptPolicy::Fail).unwrap();
        assert_eq!(seen, ["x", "a", "b", "c"]);
        assert_eq!(scan.records, 4);
        // A flipped bit anywhere in the batch frame drops all of it, never a part.
        for at in first_end..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x01;
            let (seen, _) = keys(&bad, true, CorruptPolicy::Skip).unwrap();
            assert_eq!(seen, ["x"], "flip at {at}");
        }
    }

    #[test]
    fn a_shared_decode_slices_long_values_copies_short_ones_and_agrees_with_a_copying_one() {
        let long = "L".repeat(300);
        let mut compressed = put("z", &"zz".repeat(400));
        if let Record::Put(p) = &mut compressed {
            p.compressed = true;
        }
        let batch = [
            put("short", "s"),
            put("long", &long),
            compressed,
            Record::Delete {
                namespace: String::new(),
                key: "gone".to_string(),
            },
        ];
        let seg = segment_of_batches(7, &[&batch]);
        let window = Bytes::from(seg.clone());
        let at = SEGMENT_HEADER_LEN;
        let mut out = vec![(put("stale", "x"), 1)];
        let len = decode_frame_shared(&window, at, SALT, at as u64, 100, &mut out).unwrap();
        let copied = decode_frame(&seg[at..], SALT, at as u64).unwrap();
        assert_eq!((len, &out), (copied.len, &copied.records));
        let inside = |v: &Bytes| window.as_ptr_range().contains(&v.as_ptr());
        let values: Vec<&Bytes> = out
            .iter()
            .filter_map(|(r, _)| match r {
                Record::Put(p) => Some(&p.value),
                Record::Delete { .. } => None,
            })
            .collect();
        assert!(!inside(values[0]), "a short value is copied");
        assert!(inside(values[1]), "a long value is a slice of the window");
        assert!(!inside(values[2]), "a compressed value is decompressed");
        // A kept value outlives the window it was read in, unchanged.
        drop(window);
        assert_eq!(values[1].as_ref(), long.as_bytes());
        // A bad frame leaves nothing behind in `out`.
        let mut bad = seg.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let bad = Bytes::from(bad);
        assert!(decode_frame_shared(&bad, at, SALT, at as u64, 100, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn a_segment_of_another_format_version_is_refused_naming_the_version() {
        // The version 1 header: magic, version 1, flags, id, CRC (24 bytes).
        let mut v1 = SEGMENT_MAGIC.to_vec();
        v1.extend_from_slice(&1u16.to_le_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&7u64.to_le_bytes());
        let crc = crc32(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        v1.extend_from_slice(&[0; 40]);
        let mut v3 = encode_segment_header(7, SALT).to_vec();
        v3[8] = 3;
        for (bytes, version) in [(&v1, 1), (&v1[..20].to_vec(), 1), (&v3, 3)] {
            for last in [true, false] {
                match keys(bytes, last, CorruptPolicy::Skip) {
                    Err(Error::Corrupt(msg)) => {
                        assert!(msg.contains(&format!("version {version}")), "{msg}");
                        assert!(msg.contains("reads version 2"), "{msg}");
                    }
                    other => panic!("version {version}: expected an error, got {other:?}"),
                }
            }
        }
    }
}
