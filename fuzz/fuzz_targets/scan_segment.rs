//! Segment recovery (`scan_segment`) on arbitrary and on damaged segments.
//!
//! The first input byte picks the mode:
//!
//! - **Raw** (even): arbitrary bytes, optionally behind a valid segment header built from the
//!   input, scanned with both policies and both `is_last` values. Never a panic, and the
//!   accounting holds: `valid_len <= len`, `valid_len + torn_tail == len`, a torn tail only in the
//!   last segment, skipped spans only with `Skip`, and header + record shares + skipped spans +
//!   empty frames (one frame header each) == `valid_len`.
//! - **Built** (odd): a segment of fuzz-chosen frames written with `encode_frame`; values may
//!   hold copies of earlier frames of the same segment, the whole segment so far, or frames made
//!   for a guessed salt at a chosen offset. Then only bytes after a fuzz-chosen cut point are
//!   damaged (truncated, flipped, overwritten, inserted, deleted, copied over) — or nothing is.
//!   Every record the scan yields must be one tidekv wrote: the yielded sequence is whole
//!   frames, in the order written (a subsequence of the frames), and every frame that ends
//!   before the cut is yielded. With no damage but a truncation, the last segment recovers
//!   exactly the whole frames before it and calls the rest a torn tail.
//!
//! The segment's salt is a hash of the whole input, so the input cannot carry a frame forged
//! for it: that is the format's threat model (a salt unknowable to whoever chooses values).
#![no_main]

use std::hash::{Hash, Hasher};

use arbitrary::{Arbitrary, Result as AResult, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tidekv::core::log::{
    decode_frame, decode_frame_shared, encode_frame, encode_segment_header, scan_segment, CorruptPolicy, SegmentScan,
    FRAME_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use tidekv::core::record::{PutRecord, Record};
use tidekv::Kind;

const POLICIES: [CorruptPolicy; 2] = [CorruptPolicy::Fail, CorruptPolicy::Skip];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(mode, rest);
    } else {
        let salt = salt_of(data);
        let _ = built(&mut Unstructured::new(rest), salt);
    }
});

fn salt_of(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

/// Scans `bytes` as segment `id`, returning the yielded (record, share) pairs and the result.
fn scan(
    bytes: &[u8],
    id: u64,
    is_last: bool,
    policy: CorruptPolicy,
) -> (Vec<(Record, usize)>, tidekv::Result<SegmentScan>) {
    let mut seen = Vec::new();
    let result = scan_segment(bytes, id, is_last, policy, &mut |r, len| {
        seen.push((r, len));
        Ok(())
    });
    if let Ok(scan) = &result {
        check_accounting(bytes, is_last, policy, &seen, scan);
    }
    (seen, result)
}

fn check_accounting(
    bytes: &[u8],
    is_last: bool,
    policy: CorruptPolicy,
    seen: &[(Record, usize)],
    scan: &SegmentScan,
) {
    let len = bytes.len();
    assert!(
        scan.valid_len <= len,
        "valid_len {} > len {len}",
        scan.valid_len
    );
    assert_eq!(
        scan.valid_len + scan.torn_tail,
        len,
        "valid_len + torn_tail != len"
    );
    assert!(
        is_last || scan.torn_tail == 0,
        "a torn tail in a segment that is not the last"
    );
    assert_eq!(scan.records, seen.len() as u64);
    if policy == CorruptPolicy::Fail {
        assert!(scan.corrupt.is_empty(), "Fail skipped bytes");
    }
    match scan.id {
        None => {
            assert!(is_last && seen.is_empty() && scan.valid_len == 0);
            assert!(len < SEGMENT_HEADER_LEN);
        }
        Some(_) => {
            let shares: usize = seen.iter().map(|(_, n)| n).sum();
            let skipped: usize = scan.corrupt.iter().map(|c| c.len).sum();
            // The rest is empty frames (no records), which are exactly a frame header each.
            let accounted = SEGMENT_HEADER_LEN + shares + skipped;
            assert!(
                accounted <= scan.valid_len && (scan.valid_len - accounted) % FRAME_HEADER_LEN == 0,
                "header + record shares + skipped spans ({accounted}) do not account for \
                 valid_len ({}) with whole empty frames",
                scan.valid_len
            );
            let mut at = SEGMENT_HEADER_LEN;
            for span in &scan.corrupt {
                assert!(span.offset >= at && span.len > 0, "{:?}", scan.corrupt);
                at = span.offset + span.len;
            }
            assert!(at <= scan.valid_len);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw mode.

fn raw(mode: u8, rest: &[u8]) {
    let mut bytes = Vec::new();
    let mut id = 7;
    let mut body = rest;
    if mode & 2 != 0 && rest.len() >= 16 {
        // A valid header from the input: id and salt, then the rest as frames.
        id = u64::from_le_bytes(rest[..8].try_into().unwrap());
        let salt = u64::from_le_bytes(rest[8..16].try_into().unwrap());
        bytes.extend_from_slice(&encode_segment_header(id, salt));
        body = &rest[16..];
        if mode & 4 != 0 {
            id ^= 1; // the file name disagrees with the header
        }
    }
    bytes.extend_from_slice(body);
    for is_last in [true, false] {
        for policy in POLICIES {
            let _ = scan(&bytes, id, is_last, policy);
        }
    }
    if bytes.len() >= SEGMENT_HEADER_LEN {
        let salt = u64::from_le_bytes(bytes[20..28].try_into().unwrap());
        shared_agrees(&bytes, SEGMENT_HEADER_LEN, salt, mode as usize);
    }
}

/// The decoder a native replay uses (values sliced from the read window from `shared_from`
/// bytes on) gives exactly what the copying one gives, whatever the bytes.
fn shared_agrees(bytes: &[u8], at: usize, salt: u64, shared_from: usize) {
    let copied = decode_frame(&bytes[at..], salt, at as u64);
    let window = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    let shared = decode_frame_shared(&window, at, salt, at as u64, shared_from, &mut out);
    match (copied, shared) {
        (Ok(frame), Ok(len)) => assert_eq!((frame.len, frame.records), (len, out)),
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(out.is_empty(), "a failed shared decode left records behind");
        }
        (a, b) => panic!("copying decode {a:?}, shared decode {b:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Built mode.

#[derive(Arbitrary, Debug)]
enum Value {
    Bytes(Vec<u8>),
    /// Many copies of one byte: compresses when asked to.
    Run(u8, u16),
    /// A copy of frame `n` (modulo the frames written so far) of this segment.
    CopyOfFrame(u8),
    /// The whole segment so far, header included (a dump or a cached segment as a value).
    SegmentSoFar,
    /// A frame of the given records for `salt` at `offset`: made for a guessed salt.
    ForgedFrame {
        salt: u64,
        offset: u16,
        keys: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
struct RecordSpec {
    delete: bool,
    ns: u8,
    key: String,
    value: Value,
    kind: u8,
    created_at: u64,
    updated_at: u64,
    expires_at: Option<u64>,
    tags: Vec<u8>,
    compressed: bool,
    latin1: bool,
}

#[derive(Arbitrary, Debug)]
enum Damage {
    Truncate(u32),
    Flip(u32, u8),
    Overwrite(u32, Vec<u8>),
    Insert(u32, Vec<u8>),
    Delete(u32, u16),
    /// Copies `len` bytes from anywhere (`src`) over bytes after the cut (`dst`).
    CopyWithin {
        src: u32,
        len: u16,
        dst: u32,
    },
    Append(Vec<u8>),
}

const MAX_COPY: usize = 16 * 1024;

const NAMESPACES: [&str; 3] = ["", "users", "n\u{e9}"];

fn make_record(spec: RecordSpec, salt: u64, segment: &[u8], frames: &[(usize, usize)]) -> Record {
    let namespace = NAMESPACES[spec.ns as usize % NAMESPACES.len()].to_string();
    let mut key: String = spec.key.chars().take(32).collect();
    if key.is_empty() {
        key.push('k');
    }
    if spec.delete {
        return Record::Delete { namespace, key };
    }
    let value: Vec<u8> = match spec.value {
        Value::Bytes(b) => b,
        Value::Run(b, n) => vec![b; n as usize % 2048],
        Value::CopyOfFrame(n) if !frames.is_empty() => {
            let (at, len) = frames[n as usize % frames.len()];
            segment[at..at + len.min(MAX_COPY)].to_vec()
        }
        // At most the first 16 KiB, so copies of copies cannot grow the segment exponentially.
        Value::CopyOfFrame(_) | Value::SegmentSoFar => {
            segment[..segment.len().min(MAX_COPY)].to_vec()
        }
        Value::ForgedFrame {
            salt: guess,
            offset,
            keys,
        } => {
            if guess == salt {
                return Record::Delete { namespace, key }; // a guessed salt: not the threat model
            }
            let records: Vec<Record> = keys
                .iter()
                .take(8)
                .map(|k| Record::Delete {
                    namespace: String::new(),
                    key: format!("phantom{k}"),
                })
                .collect();
            let mut out = Vec::new();
            encode_frame(
                &records,
                guess,
                u64::from(offset),
                &mut out,
                &mut Vec::new(),
            );
            out
        }
    };
    let mut tags: Vec<String> = spec
        .tags
        .iter()
        .take(6)
        .map(|t| format!("t{}", t % 8))
        .collect();
    tags.sort();
    tags.dedup();
    Record::Put(PutRecord {
        namespace,
        key,
        value: if spec.latin1 {
            // As text: what a value holding frames looks like when stored as a string.
            Bytes::from(
                value
                    .iter()
                    .map(|&b| b as char)
                    .collect::<String>()
                    .into_bytes(),
            )
        } else {
            Bytes::from(value)
        },
        kind: Kind::from_u8(spec.kind % 3).unwrap(),
        created_at: spec.created_at,
        updated_at: spec.updated_at,
        expires_at: spec.expires_at,
        tags,
        compressed: spec.compressed,
    })
}

fn built(u: &mut Unstructured<'_>, salt: u64) -> AResult<()> {
    let id: u64 = u.arbitrary()?;
    let mut segment = encode_segment_header(id, salt).to_vec();
    // Each frame: its offset and length in the segment, its records and their shares.
    let mut frames: Vec<(usize, usize)> = Vec::new();
    let mut written: Vec<Vec<(Record, usize)>> = Vec::new();
    let n_frames = u.int_in_range(0..=12)?;
    for _ in 0..n_frames {
        let n_records = u.int_in_range(0..=4)?;
        let mut records = Vec::new();
        for _ in 0..n_records {
            let spec: RecordSpec = u.arbitrary()?;
            records.push(make_record(spec, salt, &segment, &frames));
        }
        let at = segment.len();
        let mut lens = Vec::new();
        let len = encode_frame(&records, salt, at as u64, &mut segment, &mut lens);
        frames.push((at, len));
        // What the frame holds as a reader sees it: `compressed` is only a request, dropped
        // when the LZ4 block would not be smaller.
        let frame = decode_frame(&segment[at..], salt, at as u64).expect("a frame just written");
        shared_agrees(&segment, at, salt, len % 257);
        assert_eq!(frame.len, len);
        assert_eq!(frame.records.len(), records.len());
        for ((got, got_len), (want, want_len)) in
            frame.records.iter().zip(records.iter().zip(&lens))
        {
            assert_eq!(got_len, want_len);
            assert_eq!(plain(got), plain(want), "a frame did not round-trip");
        }
        written.push(frame.records);
    }
    let total = segment.len();

    // The cut: nothing before it is touched.
    let cut =
        SEGMENT_HEADER_LEN + u.int_in_range(0..=(total - SEGMENT_HEADER_LEN) as u32)? as usize;
    let damages: Vec<Damage> = if u.arbitrary()? {
        u.arbitrary()?
    } else {
        Vec::new()
    };
    let mut truncate_only = true;
    let mut bytes = segment.clone();
    for damage in damages.into_iter().take(8) {
        let span = bytes.len().saturating_sub(cut) + 1;
        let after = |x: u32| cut + x as usize % span;
        match damage {
            Damage::Truncate(at) => bytes.truncate(after(at)),
            Damage::Flip(at, mask) => {
                truncate_only = false;
                if let Some(b) = bytes.get_mut(after(at)) {
                    *b ^= mask.max(1);
                }
            }
            Damage::Overwrite(at, with) => {
                truncate_only = false;
                let at = after(at);
                for (i, b) in with.into_iter().enumerate() {
                    match bytes.get_mut(at + i) {
                        Some(slot) => *slot = b,
                        None => bytes.push(b),
                    }
                }
            }
            Damage::Insert(at, with) => {
                truncate_only = false;
                let at = after(at).min(bytes.len());
                bytes.splice(at..at, with);
            }
            Damage::Delete(at, len) => {
                truncate_only = false;
                let at = after(at).min(bytes.len());
                let end = (at + len as usize).min(bytes.len());
                bytes.drain(at..end);
            }
            Damage::CopyWithin { src, len, dst } => {
                truncate_only = false;
                if bytes.is_empty() {
                    continue;
                }
                let src = src as usize % bytes.len();
                let end = (src + len as usize).min(bytes.len());
                let piece = bytes[src..end].to_vec();
                let dst = after(dst);
                for (i, b) in piece.into_iter().enumerate() {
                    match bytes.get_mut(dst + i) {
                        Some(slot) => *slot = b,
                        None => bytes.push(b),
                    }
                }
            }
            Damage::Append(with) => {
                truncate_only = false;
                bytes.extend_from_slice(&with);
            }
        }
    }
    assert_eq!(
        &bytes[..cut.min(bytes.len())],
        &segment[..cut.min(bytes.len())]
    );

    // Frames that end at or before the cut (and before a truncation) are intact; with no
    // damage but truncations, every frame that ends before the end is.
    let intact_end = if truncate_only {
        bytes.len()
    } else {
        cut.min(bytes.len())
    };
    let intact = frames
        .iter()
        .take_while(|(at, len)| at + len <= intact_end)
        .count();
    let intact_records: Vec<&(Record, usize)> = written[..intact].iter().flatten().collect();

    for is_last in [true, false] {
        for policy in POLICIES {
            let (seen, result) = scan(&bytes, id, is_last, policy);
            assert!(
                is_subsequence_of_frames(&seen, &written),
                "a record tidekv did not write (or not a whole frame, or out of order): \
                 {is_last} {policy:?}\nseen {seen:?}\nwritten {written:?}"
            );
            assert!(
                seen.len() >= intact_records.len()
                    && seen.iter().zip(&intact_records).all(|(a, b)| a == *b),
                "a frame before the cut was not replayed ({is_last} {policy:?})"
            );
            if truncate_only {
                let end = if intact == 0 {
                    SEGMENT_HEADER_LEN
                } else {
                    frames[intact - 1].0 + frames[intact - 1].1
                };
                let whole = bytes.len() == end;
                assert_eq!(
                    seen.len(),
                    intact_records.len(),
                    "more than the whole frames"
                );
                match (result, is_last || whole, policy) {
                    // The last segment: the rest is a torn tail, whatever the policy.
                    (Ok(scan), true, _) => {
                        assert_eq!(scan.valid_len, end);
                        assert_eq!(scan.torn_tail, bytes.len() - end);
                        assert!(scan.corrupt.is_empty());
                    }
                    // An older segment torn: corruption, which `Skip` skips to the end.
                    (Err(_), false, CorruptPolicy::Fail) => {}
                    (Ok(scan), false, CorruptPolicy::Skip) => {
                        assert_eq!(scan.valid_len, bytes.len());
                        assert_eq!(scan.corrupt.len(), 1);
                        assert_eq!(scan.corrupt[0].offset, end);
                    }
                    (result, ..) => panic!(
                        "a cleanly truncated segment ({is_last} {policy:?}, whole frames up to \
                         {end} of {}): {result:?}",
                        bytes.len()
                    ),
                }
            }
        }
    }
    Ok(())
}

fn plain(record: &Record) -> Record {
    let mut r = record.clone();
    if let Record::Put(p) = &mut r {
        p.compressed = false;
    }
    r
}

/// Whether `seen` is a concatenation of whole frames of `written`, in increasing frame order.
fn is_subsequence_of_frames(seen: &[(Record, usize)], written: &[Vec<(Record, usize)>]) -> bool {
    // best[p]: the lowest frame index that may come next after matching seen[..p].
    let mut best = vec![usize::MAX; seen.len() + 1];
    best[0] = 0;
    for p in 0..seen.len() {
        if best[p] == usize::MAX {
            continue;
        }
        for (f, frame) in written.iter().enumerate().skip(best[p]) {
            if frame.is_empty() || p + frame.len() > seen.len() {
                continue;
            }
            if seen[p..p + frame.len()] == frame[..] {
                let q = p + frame.len();
                best[q] = best[q].min(f + 1);
            }
        }
    }
    best[seen.len()] != usize::MAX
}
