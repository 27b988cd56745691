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
//! segment = header (24 bytes) then record frames (see [`record`](super::record))
//! header  = magic "TIDEKVLG" | version u16 LE (= 1) | flags u16 LE (= 0) | segment id u64 LE
//!           | CRC32 of the first 20 header bytes u32 LE
//! ```
//! A later record of a key always shadows an earlier one, across segments too. Segments are
//! append-only; a segment is sealed (and synced) before the next one is created, so only the
//! segment with the highest id can end in a torn write.

use alloc::{format, string::String, vec::Vec};

use super::crc::crc32;
use super::record::{DecodeError, Record, HEADER_LEN};
use crate::{Error, Result};

/// The first 8 bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"TIDEKVLG";
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u16 = 1;
/// Bytes in a segment header.
pub const SEGMENT_HEADER_LEN: usize = 24;
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
    let hex = name.strip_prefix(LOCK_OWNER_PREFIX)?;
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
    let hex = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
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

/// The header that starts segment `id`.
pub fn encode_segment_header(id: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    // h[10..12]: flags, none defined.
    h[12..20].copy_from_slice(&id.to_le_bytes());
    let crc = crc32(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Parses a segment header at the start of `bytes` and returns the segment id.
pub fn parse_segment_header(bytes: &[u8]) -> core::result::Result<u64, DecodeError> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(DecodeError::Incomplete);
    }
    let h = &bytes[..SEGMENT_HEADER_LEN];
    if h[..8] != SEGMENT_MAGIC {
        return Err(DecodeError::Corrupt("not a tidekv segment (bad magic)"));
    }
    let crc = u32::from_le_bytes([h[20], h[21], h[22], h[23]]);
    if crc != crc32(&h[..20]) {
        return Err(DecodeError::Corrupt("segment header CRC mismatch"));
    }
    if u16::from_le_bytes([h[8], h[9]]) != SEGMENT_VERSION {
        return Err(DecodeError::Corrupt("unknown segment version"));
    }
    if h[10] != 0 || h[11] != 0 {
        return Err(DecodeError::Corrupt("unknown segment flags"));
    }
    let mut id = [0; 8];
    id.copy_from_slice(&h[12..20]);
    Ok(u64::from_le_bytes(id))
}

/// Encodes `records` one after the other into `out` (one write call's worth) and returns the
/// bytes added.
pub fn encode_records(records: &[Record], out: &mut Vec<u8>) -> usize {
    records.iter().map(|r| r.encode(out)).sum()
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

/// Replays one segment: checks the header, decodes every record in order and hands each to
/// `visit` with its frame length in bytes.
///
/// - `expected_id`: the id from the file name; a header that disagrees is corruption.
/// - `is_last`: whether this is the newest segment. Only there may the data end in a torn write:
///   a record that is incomplete, or bytes that fail their checks with no good record after them,
///   become [`SegmentScan::torn_tail`] (a torn header gives `id: None`, `valid_len: 0`). In an
///   older segment both are corruption.
/// - `policy`: what to do with a bad record that has good records after it (see
///   [`CorruptPolicy`]). With `Fail`, the error names the offset and nothing after it is visited.
///
/// Errors: [`Error::Corrupt`] as above, or whatever `visit` returns. Never panics, whatever the
/// bytes.
pub fn scan_segment(
    bytes: &[u8],
    expected_id: u64,
    is_last: bool,
    policy: CorruptPolicy,
    visit: &mut dyn FnMut(Record, usize) -> Result<()>,
) -> Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    match parse_segment_header(bytes) {
        Ok(id) if id == expected_id => scan.id = Some(id),
        Ok(id) => {
            return Err(Error::Corrupt(format!(
                "segment header says id {id:#x}, its file name says {expected_id:#x}"
            )))
        }
        Err(DecodeError::Incomplete) if is_last => {
            scan.torn_tail = bytes.len();
            return Ok(scan);
        }
        Err(DecodeError::Incomplete) => {
            return Err(Error::Corrupt("segment is shorter than its header".into()));
        }
        Err(DecodeError::Corrupt(reason)) => return Err(Error::Corrupt(reason.into())),
    }
    let mut pos = SEGMENT_HEADER_LEN;
    scan.valid_len = pos;
    while pos < bytes.len() {
        let reason = match Record::decode(&bytes[pos..]) {
            Ok((record, len)) => {
                visit(record, len)?;
                scan.records += 1;
                pos += len;
                scan.valid_len = pos;
                continue;
            }
            Err(DecodeError::Incomplete) => "record runs past the end of the segment",
            Err(DecodeError::Corrupt(reason)) => reason,
        };
        match next_good_record(bytes, pos + 1) {
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

/// The offset of the first record at or after `from` that decodes completely, if any. The frame
/// header check (16 bits) and the body CRC (32 bits) make a false match in garbage negligible.
/// About how many records a log of `total_bytes` holds, judged from one of its segments
/// (`sample`, read whole): the sample's frames are counted by their length fields alone (no CRC,
/// no decoding) and the rest of the log is assumed to hold frames of the same mean size. A hint
/// for sizing tables before a replay, never a count to trust.
pub fn estimate_records(sample: &[u8], total_bytes: u64) -> usize {
    let mut frames = 0u64;
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(header) = sample.get(pos..pos + HEADER_LEN) {
        let body = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        pos = pos.saturating_add(HEADER_LEN).saturating_add(body);
        if pos > sample.len() {
            break;
        }
        frames += 1;
    }
    let framed = pos.min(sample.len()).saturating_sub(SEGMENT_HEADER_LEN) as u64;
    if frames == 0 || framed == 0 {
        return 0;
    }
    let estimate = total_bytes as u128 * frames as u128 / framed as u128;
    usize::try_from(estimate).unwrap_or(usize::MAX)
}

fn next_good_record(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&at| Record::decode(&bytes[at..]).is_ok())
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

    fn segment(id: u64, records: &[Record]) -> Vec<u8> {
        let mut out = encode_segment_header(id).to_vec();
        encode_records(records, &mut out);
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
        let h = encode_segment_header(0xdead_beef);
        assert_eq!(parse_segment_header(&h), Ok(0xdead_beef));
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
        let h = encode_segment_header(7);
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
        assert_eq!(estimate_records(&seg[..SEGMENT_HEADER_LEN], body), 0);
        assert_eq!(estimate_records(&[], body), 0);
        let mut huge = seg[..SEGMENT_HEADER_LEN].to_vec();
        huge.extend_from_slice(&[0xff; HEADER_LEN]);
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
}
