//! Decoding never lets the bytes on disk choose how much memory the reader allocates: a record
//! whose checksum is valid but whose declared sizes are absurd is refused before any large
//! allocation. A counting allocator measures the largest single allocation made while decoding.
#![cfg(not(target_arch = "wasm32"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tidekv::core::record::DecodeError;
use tidekv::Record;

/// The system allocator, remembering the largest allocation since the last reset.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A Put record frame (the single-record format IndexedDB stores) marked compressed, whose
/// stored block is `block` and whose declared logical size is `value_len`, with valid checks.
fn crafted_put(block: &[u8], value_len: u32) -> Vec<u8> {
    let mut body = vec![1u8, 1, 1, 0]; // version 1, Put, flags: compressed, kind: bytes
    body.extend_from_slice(&[0; 24]); // created, updated, deadline
    for n in [0u32, 1, 0, value_len, block.len() as u32] {
        body.extend_from_slice(&n.to_le_bytes()); // ns, key, tags, value, stored lengths
    }
    body.push(b'k');
    body.extend_from_slice(block);
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let check = (crc32fast::hash(&frame) & 0xffff) as u16;
    frame.extend_from_slice(&check.to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

#[test]
fn a_compressed_record_claiming_gigabytes_is_refused_without_allocating_them() {
    // Regression: LZ4 decompression allocated the declared size (up to 4 GiB) first.
    let block = lz4_flex_block_of_zeros();
    for claimed in [u32::MAX, 1 << 30, 64 << 20] {
        let frame = crafted_put(&block, claimed);
        LARGEST.store(0, Ordering::Relaxed);
        let decoded = Record::decode(&frame);
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            matches!(decoded, Err(DecodeError::Corrupt(_))),
            "claimed {claimed}: {decoded:?}"
        );
        assert!(
            largest < 1 << 20,
            "claimed {claimed}: decoding allocated {largest} bytes at once"
        );
    }
    // The honest size of the same block still decodes.
    let frame = crafted_put(&block, 1_000);
    let (record, _) = Record::decode(&frame).unwrap();
    assert!(matches!(record, Record::Put(p) if p.value.len() == 1_000));
}

/// An LZ4 block of 1,000 zero bytes, made by the encoder tidekv itself writes with.
fn lz4_flex_block_of_zeros() -> Vec<u8> {
    let mut frame = Vec::new();
    let record = Record::Put(tidekv::PutRecord {
        namespace: String::new(),
        key: "k".into(),
        value: vec![0u8; 1_000].into(),
        kind: tidekv::Kind::Bytes,
        created_at: 0,
        updated_at: 0,
        expires_at: None,
        tags: vec![],
        compressed: true,
    });
    record.encode(&mut frame);
    // The block is the tail of the frame: after the fixed fields and the one-byte key.
    frame[10 + 4 + 24 + 20 + 1..].to_vec()
}
