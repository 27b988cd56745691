//! The one binary record format every persistent backend shares, byte for byte.
//!
//! A record is a frame: a 10-byte header, then a body.
//!
//! ```text
//! header: body_len u32 LE | body_crc32 u32 LE | header_check u16 LE (low 16 bits of the CRC32
//!         of the first 8 header bytes, so a flipped length is caught before it is trusted)
//! body:   version u8 (= 1) | op u8 (1 = Put, 2 = Delete) | ...
//!   Put:    flags u8 (bit 0 compressed, bit 1 has deadline) | kind u8 | created_at u64
//!           | updated_at u64 | expires_at u64 | ns_len u32 | key_len u32 | tag_count u32
//!           | value_len u32 (logical) | stored_len u32 | ns | key | (tag_len u32 | tag)*
//!           | stored value (LZ4 block when compressed, else the value itself)
//!   Delete: ns_len u32 | key_len u32 | ns | key
//! ```
//! All integers are little-endian; all times are ms since the Unix epoch. A value is marked
//! compressed only by the flag bit, never by sniffing its bytes, so a value that happens to start
//! with any magic bytes round-trips unchanged.
//!
//! Decoding arbitrary bytes never panics: a frame that ends early is [`DecodeError::Incomplete`]
//! (a torn tail), anything that fails a check is [`DecodeError::Corrupt`].

use alloc::{string::String, vec::Vec};
use bytes::Bytes;

use super::crc::crc32;
use super::keyspace::Kind;
use crate::MAX_KEY_LEN;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 10;
/// The body format version this build writes and reads.
pub const VERSION: u8 = 1;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const FLAG_COMPRESSED: u8 = 1;
const FLAG_DEADLINE: u8 = 2;
const PUT_FIXED: usize = 2 + 2 + 8 * 3 + 4 * 5;
const DELETE_FIXED: usize = 2 + 4 * 2;

/// A Put: the whole state of one key, value and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutRecord {
    /// Namespace (`""` is the default namespace).
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The logical (uncompressed) value.
    pub value: Bytes,
    /// Kind of value.
    pub kind: Kind,
    /// First write of the key (ms since epoch).
    pub created_at: u64,
    /// Last change of the key (ms since epoch).
    pub updated_at: u64,
    /// Absolute deadline (ms since epoch), if any.
    pub expires_at: Option<u64>,
    /// Tags, sorted and unique.
    pub tags: Vec<String>,
    /// Store the value LZ4-compressed.
    pub compressed: bool,
}

/// One mutation as a backend stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The key now has this value and metadata.
    Put(PutRecord),
    /// The key no longer exists.
    Delete {
        /// Namespace of the deleted key.
        namespace: String,
        /// The deleted key.
        key: String,
    },
}

/// Why bytes did not decode into a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the frame: a torn write at the end of a log.
    Incomplete,
    /// The frame is complete but fails a check (CRC, version, bounds, UTF-8, ...).
    Corrupt(&'static str),
}

impl Record {
    /// The namespace the record belongs to.
    pub fn namespace(&self) -> &str {
        match self {
            Record::Put(p) => &p.namespace,
            Record::Delete { namespace, .. } => namespace,
        }
    }

    /// The key the record is about.
    pub fn key(&self) -> &str {
        match self {
            Record::Put(p) => &p.key,
            Record::Delete { key, .. } => key,
        }
    }

    /// The encoded size without compression: what the write buffer counts for this record.
    pub fn size(&self) -> usize {
        match self {
            Record::Put(p) => put_size(
                p.namespace.len(),
                p.key.len(),
                p.tags.iter().map(|t| t.len()),
                p.value.len(),
            ),
            Record::Delete { namespace, key } => delete_size(namespace.len(), key.len()),
        }
    }

    /// Appends the encoded frame (header and body) to `out` and returns how many bytes it added.
    pub fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_LEN]);
        let body_len = self.encode_body(out);
        let crc = crc32(&out[start + HEADER_LEN..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        let check = header_check(&out[start..start + 8]);
        out[start + 8..start + 10].copy_from_slice(&check.to_le_bytes());
        out.len() - start
    }

    /// Appends the record's body alone (no header, no CRC) to `out` and returns its length: the
    /// unit a log frame ([`crate::core::log`]) carries many of under one checksum.
    ///
    /// A value marked `compressed` is stored as an LZ4 block only when that block is smaller
    /// than the value; otherwise it is stored as it is and the record is not marked compressed,
    /// so a stored value is never larger than the value itself.
    pub fn encode_body(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.push(VERSION);
        match self {
            Record::Put(p) => {
                let packed = if p.compressed {
                    Some(lz4_flex::block::compress(&p.value)).filter(|c| c.len() < p.value.len())
                } else {
                    None
                };
                let stored: &[u8] = packed.as_deref().unwrap_or(&p.value);
                out.push(OP_PUT);
                let mut flags = 0;
                if packed.is_some() {
                    flags |= FLAG_COMPRESSED;
                }
                if p.expires_at.is_some() {
                    flags |= FLAG_DEADLINE;
                }
                out.push(flags);
                out.push(p.kind as u8);
                for t in [p.created_at, p.updated_at, p.expires_at.unwrap_or(0)] {
                    out.extend_from_slice(&t.to_le_bytes());
                }
                for n in [
                    p.namespace.len(),
                    p.key.len(),
                    p.tags.len(),
                    p.value.len(),
                    stored.len(),
                ] {
                    out.extend_from_slice(&(n as u32).to_le_bytes());
                }
                out.extend_from_slice(p.namespace.as_bytes());
                out.extend_from_slice(p.key.as_bytes());
                for tag in &p.tags {
                    out.extend_from_slice(&(tag.len() as u32).to_le_bytes());
                    out.extend_from_slice(tag.as_bytes());
                }
                out.extend_from_slice(stored);
            }
            Record::Delete { namespace, key } => {
                out.push(OP_DELETE);
                out.extend_from_slice(&(namespace.len() as u32).to_le_bytes());
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(namespace.as_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
        out.len() - start
    }

    /// Decodes a record body written by [`encode_body`](Record::encode_body). The body must be
    /// exactly one record: trailing bytes are corruption.
    pub fn decode_body(body: &[u8]) -> Result<Record, DecodeError> {
        decode_body(body, &mut Bytes::copy_from_slice)
    }

    /// [`decode_body`](Record::decode_body), with `value` turning the stored bytes of an
    /// uncompressed value (a slice of `body`) into the record's value: a reader that holds its
    /// buffer as [`Bytes`] passes `|v| buffer.slice_ref(v)` and copies nothing.
    pub(crate) fn decode_body_with(
        body: &[u8],
        value: &mut dyn FnMut(&[u8]) -> Bytes,
    ) -> Result<Record, DecodeError> {
        decode_body(body, value)
    }

    /// Decodes the frame at the start of `buf`, returning the record and the bytes it used.
    pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Incomplete);
        }
        let check = u16::from_le_bytes([buf[8], buf[9]]);
        if check != header_check(&buf[..8]) {
            return Err(DecodeError::Corrupt("frame header check mismatch"));
        }
        let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let total = HEADER_LEN
            .checked_add(body_len)
            .ok_or(DecodeError::Corrupt("frame length overflows"))?;
        if buf.len() < total {
            return Err(DecodeError::Incomplete);
        }
        let body = &buf[HEADER_LEN..total];
        if crc32(body) != crc {
            return Err(DecodeError::Corrupt("record CRC mismatch"));
        }
        let record = decode_body(body, &mut Bytes::copy_from_slice)?;
        Ok((record, total))
    }
}

/// Encoded size of a Put without compression. Saturates instead of wrapping (on 32-bit
/// targets), so an entry too large to encode never looks small; see [`put_body_len`].
pub(crate) fn put_size(
    ns_len: usize,
    key_len: usize,
    tag_lens: impl Iterator<Item = usize>,
    value_len: usize,
) -> usize {
    let body = put_body_len(ns_len, key_len, tag_lens, value_len);
    usize::try_from(body.saturating_add(HEADER_LEN as u64)).unwrap_or(usize::MAX)
}

/// The length of a Put's body without compression, in 64-bit arithmetic so it never wraps.
/// An entry is accepted only if this is at most [`MAX_BODY_LEN`]: every length field of the
/// format is 32 bits wide.
pub(crate) fn put_body_len(
    ns_len: usize,
    key_len: usize,
    tag_lens: impl Iterator<Item = usize>,
    value_len: usize,
) -> u64 {
    let tags = tag_lens.fold(0u64, |sum, t| sum.saturating_add(4 + t as u64));
    (PUT_FIXED as u64)
        .saturating_add(ns_len as u64)
        .saturating_add(key_len as u64)
        .saturating_add(tags)
        .saturating_add(value_len as u64)
}

/// The longest record body the format can describe (its length fields are 32 bits wide).
pub const MAX_BODY_LEN: u64 = u32::MAX as u64;

/// Encoded size of a Delete.
pub(crate) fn delete_size(ns_len: usize, key_len: usize) -> usize {
    HEADER_LEN + DELETE_FIXED + ns_len + key_len
}

/// What a value costs a persistent backend: the LZ4 block when `compressed` and the block is
/// smaller than the value, else the value itself (the rule [`Record::encode_body`] follows).
/// Runs LZ4 over the whole value when `compressed`: call it outside any lock.
pub fn stored_size(value: &[u8], compressed: bool) -> u64 {
    if compressed {
        let packed = lz4_flex::block::compress(value).len();
        packed.min(value.len()) as u64
    } else {
        value.len() as u64
    }
}

/// The most bytes an LZ4 block of `stored` bytes can decompress to: every byte of a block adds
/// at most 255 bytes of output. A record claiming more is corrupt; checking this before
/// decompressing keeps a crafted record from making the reader allocate gigabytes.
fn lz4_max_output(stored: usize) -> usize {
    stored.saturating_mul(255).saturating_add(16)
}

fn header_check(first8: &[u8]) -> u16 {
    (crc32(first8) & 0xffff) as u16
}

/// A bounds-checked reader over a record body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Corrupt(
                "field runs past the end of the record",
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self, len: usize) -> Result<String, DecodeError> {
        let b = self.take(len)?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| DecodeError::Corrupt("string is not UTF-8"))
    }
}

fn decode_body(body: &[u8], value: &mut dyn FnMut(&[u8]) -> Bytes) -> Result<Record, DecodeError> {
    let mut r = Reader { buf: body };
    if r.u8()? != VERSION {
        return Err(DecodeError::Corrupt("unknown record version"));
    }
    let record = match r.u8()? {
        OP_PUT => {
            let flags = r.u8()?;
            if flags & !(FLAG_COMPRESSED | FLAG_DEADLINE) != 0 {
                return Err(DecodeError::Corrupt("unknown record flags"));
            }
            let kind = Kind::from_u8(r.u8()?).ok_or(DecodeError::Corrupt("unknown value kind"))?;
            let created_at = r.u64()?;
            let updated_at = r.u64()?;
            let deadline = r.u64()?;
            let (ns_len, key_len, tag_count) = (r.u32()?, r.u32()?, r.u32()?);
            let (value_len, stored_len) = (r.u32()?, r.u32()?);
            let namespace = r.str(ns_len)?;
            let key = r.str(key_len)?;
            check_name(&namespace, true)?;
            check_name(&key, false)?;
            // Every tag takes at least 5 bytes, so a huge count cannot make us allocate.
            if tag_count > r.buf.len() / 5 {
                return Err(DecodeError::Corrupt(
                    "tag count runs past the end of the record",
                ));
            }
            let mut tags = Vec::with_capacity(tag_count);
            for _ in 0..tag_count {
                let len = r.u32()?;
                let tag = r.str(len)?;
                check_name(&tag, false)?;
                tags.push(tag);
            }
            let stored = r.take(stored_len)?;
            let compressed = flags & FLAG_COMPRESSED != 0;
            let value = if compressed {
                if value_len > lz4_max_output(stored_len) {
                    return Err(DecodeError::Corrupt(
                        "compressed value claims more than its block can hold",
                    ));
                }
                let v = lz4_flex::block::decompress(stored, value_len)
                    .map_err(|_| DecodeError::Corrupt("compressed value does not decompress"))?;
                if v.len() != value_len {
                    return Err(DecodeError::Corrupt("decompressed size mismatch"));
                }
                Bytes::from(v)
            } else {
                if stored_len != value_len {
                    return Err(DecodeError::Corrupt("value length mismatch"));
                }
                value(stored)
            };
            Record::Put(PutRecord {
                namespace,
                key,
                value,
                kind,
                created_at,
                updated_at,
                expires_at: (flags & FLAG_DEADLINE != 0).then_some(deadline),
                tags,
                compressed,
            })
        }
        OP_DELETE => {
            let (ns_len, key_len) = (r.u32()?, r.u32()?);
            let namespace = r.str(ns_len)?;
            let key = r.str(key_len)?;
            check_name(&namespace, true)?;
            check_name(&key, false)?;
            Record::Delete { namespace, key }
        }
        _ => return Err(DecodeError::Corrupt("unknown record op")),
    };
    if !r.buf.is_empty() {
        return Err(DecodeError::Corrupt("trailing bytes in record"));
    }
    Ok(record)
}

fn check_name(name: &str, empty_ok: bool) -> Result<(), DecodeError> {
    if (name.is_empty() && !empty_ok) || name.len() > MAX_KEY_LEN {
        return Err(DecodeError::Corrupt(
            "key, namespace or tag length out of range",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{string::ToString, vec};

    fn put(value: &[u8], compressed: bool) -> Record {
        Record::Put(PutRecord {
            namespace: "users".into(),
            key: "alice".into(),
            value: Bytes::copy_from_slice(value),
            kind: Kind::Json,
            created_at: 1,
            updated_at: 2,
            expires_at: Some(3),
            tags: vec!["a".to_string(), "b".to_string()],
            compressed,
        })
    }

    #[test]
    fn put_and_delete_round_trip_with_exact_sizes() {
        let del = Record::Delete {
            namespace: "".into(),
            key: "k".into(),
        };
        for rec in [put(b"{\"x\":1}", false), del] {
            let mut buf = Vec::new();
            let n = rec.encode(&mut buf);
            assert_eq!(n, buf.len());
            assert_eq!(n, rec.size());
            assert_eq!(Record::decode(&buf), Ok((rec, n)));
        }
    }

    #[test]
    fn compressed_value_round_trips_and_is_smaller() {
        let value = vec![b'z'; 10_000];
        let rec = put(&value, true);
        let mut buf = Vec::new();
        let n = rec.encode(&mut buf);
        assert!(n < 1_000, "10 kB of one byte should compress, got {n}");
        assert_eq!(Record::decode(&buf).unwrap().0, rec);
    }

    #[test]
    fn value_that_looks_like_lz4_is_not_decompressed() {
        let mut looks = Vec::new();
        looks.extend_from_slice(&lz4_flex::block::compress(b"hello hello hello"));
        let rec = put(&looks, false);
        let mut buf = Vec::new();
        rec.encode(&mut buf);
        assert_eq!(Record::decode(&buf).unwrap().0, rec);
    }

    #[test]
    fn every_truncation_is_incomplete_never_a_record() {
        let mut buf = Vec::new();
        put(b"value", false).encode(&mut buf);
        for cut in 0..buf.len() {
            assert_eq!(
                Record::decode(&buf[..cut]),
                Err(DecodeError::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut buf = Vec::new();
        put(b"value", false).encode(&mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                match Record::decode(&bad) {
                    Ok(_) => panic!("flip of byte {byte} bit {bit} decoded as a record"),
                    Err(DecodeError::Corrupt(_)) | Err(DecodeError::Incomplete) => {}
                }
            }
        }
    }
}
