//! `Record::decode` and `Record::decode_body` on arbitrary bytes.
//!
//! - Never a panic, whatever the bytes.
//! - A frame that decodes used no more bytes than it was given, and decodes the same from
//!   exactly those bytes; every shorter prefix of it is `Incomplete`, never a record.
//! - A decoded record re-encodes (frame and body) to bytes that decode to the same record, and
//!   that encoding is a fixed point. The one field allowed to change is `compressed`: it asks
//!   for compression, and `encode_body` stores a value as it is when the LZ4 block would not be
//!   smaller, so a crafted compressed record may come back uncompressed (same value).
//! - `Record::size` is the uncompressed encoding's exact length (the write buffer counts it).
//!
//! The input is tried three ways: as a whole frame, as a bare body, and as a body wrapped in a
//! frame header with correct checksums (so the body decoder is reached through `decode` too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidekv::core::record::{DecodeError, Record, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    check_frame(data);

    if let Ok(record) = Record::decode_body(data) {
        round_trip(&record);
    }

    // The same bytes as a body under a valid header (body_len, body CRC, header check).
    let framed = frame_of_body(data);
    match Record::decode(&framed) {
        Ok((record, used)) => {
            assert_eq!(used, framed.len());
            assert_eq!(Record::decode_body(data).as_ref(), Ok(&record));
        }
        Err(DecodeError::Corrupt(_)) => assert!(Record::decode_body(data).is_err()),
        Err(DecodeError::Incomplete) => panic!("a whole frame was reported incomplete"),
    }
    check_frame(&framed);
});

fn check_frame(data: &[u8]) {
    match Record::decode(data) {
        Ok((record, used)) => {
            assert!(
                (HEADER_LEN..=data.len()).contains(&used),
                "used {used} of {}",
                data.len()
            );
            assert_eq!(
                Record::decode(&data[..used]),
                Ok((record.clone(), used)),
                "the frame decodes the same from exactly its own bytes"
            );
            // A torn copy of a good frame is never a record (spot checks, to stay fast).
            for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, used / 2, used - 1] {
                if cut < used {
                    assert_eq!(
                        Record::decode(&data[..cut]),
                        Err(DecodeError::Incomplete),
                        "cut {cut} of {used}"
                    );
                }
            }
            round_trip(&record);
        }
        Err(DecodeError::Incomplete) | Err(DecodeError::Corrupt(_)) => {}
    }
}

fn frame_of_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(body).to_le_bytes());
    let check = (crc32(&out[..8]) & 0xffff) as u16;
    out.extend_from_slice(&check.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// CRC-32 (IEEE), bitwise: an independent implementation of what the format specifies.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn without_compressed_flag(record: &Record) -> Record {
    let mut r = record.clone();
    if let Record::Put(p) = &mut r {
        p.compressed = false;
    }
    r
}

fn round_trip(record: &Record) {
    // Whole frame.
    let mut frame = Vec::new();
    let n = record.encode(&mut frame);
    assert_eq!(n, frame.len());
    let (again, used) = Record::decode(&frame).expect("a re-encoded record decodes");
    assert_eq!(used, n);
    assert_eq!(
        without_compressed_flag(&again),
        without_compressed_flag(record),
        "re-encoding changed the record"
    );
    if !matches!(record, Record::Put(p) if p.compressed) {
        assert_eq!(&again, record, "an uncompressed record round-trips exactly");
    }
    // A fixed point: the re-decoded record encodes to the very same bytes, and decodes to itself.
    let mut frame2 = Vec::new();
    again.encode(&mut frame2);
    assert_eq!(frame2, frame, "encoding is not a fixed point");
    assert_eq!(Record::decode(&frame2), Ok((again.clone(), n)));

    // Bare body.
    let mut body = Vec::new();
    let len = record.encode_body(&mut body);
    assert_eq!(len, body.len());
    assert_eq!(
        &body[..],
        &frame[HEADER_LEN..],
        "the frame carries the body unchanged"
    );
    assert_eq!(Record::decode_body(&body), Ok(again));

    // The size the write buffer counts is the exact uncompressed encoding.
    let plain = without_compressed_flag(record);
    let mut plain_frame = Vec::new();
    assert_eq!(plain.encode(&mut plain_frame), record.size());
}
