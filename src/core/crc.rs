//! CRC-32 (IEEE 802.3, the checksum of zlib and `crc32fast`): the one checksum of the record
//! format and the segment header.
//!
//! Native builds and the Node.js build use `crc32fast` (SIMD where the CPU has it, else 16 KiB
//! of tables). The browser build uses a byte-at-a-time table of 1 KiB built at compile time
//! instead: a smaller download, for a checksum that runs over one flush or one IndexedDB replay
//! at a time. Both give the same value for every input (tested below), so every build reads
//! every other build's records.

/// The CRC-32 of `bytes`.
#[cfg(not(all(target_arch = "wasm32", not(feature = "node"))))]
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The CRC-32 of `bytes`.
#[cfg(all(target_arch = "wasm32", not(feature = "node")))]
pub fn crc32(bytes: &[u8]) -> u32 {
    compact(bytes)
}

/// A CRC-32 computed over several pieces, as if they were one buffer (a log frame's checksum
/// starts from its segment's salt).
#[derive(Clone)]
pub struct Crc32 {
    #[cfg(not(all(target_arch = "wasm32", not(feature = "node"))))]
    inner: crc32fast::Hasher,
    #[cfg(all(target_arch = "wasm32", not(feature = "node")))]
    register: u32,
}

impl Crc32 {
    /// The CRC of nothing yet.
    pub fn new() -> Self {
        Crc32 {
            #[cfg(not(all(target_arch = "wasm32", not(feature = "node"))))]
            inner: crc32fast::Hasher::new(),
            #[cfg(all(target_arch = "wasm32", not(feature = "node")))]
            register: !0,
        }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        #[cfg(not(all(target_arch = "wasm32", not(feature = "node"))))]
        self.inner.update(bytes);
        #[cfg(all(target_arch = "wasm32", not(feature = "node")))]
        {
            self.register = compact_update(self.register, bytes);
        }
    }

    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        #[cfg(not(all(target_arch = "wasm32", not(feature = "node"))))]
        return self.inner.finalize();
        #[cfg(all(target_arch = "wasm32", not(feature = "node")))]
        return !self.register;
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Crc32::new()
    }
}

/// The reflected polynomial of CRC-32 (IEEE).
const POLY: u32 = 0xEDB8_8320;

/// `TABLE[b]`: the CRC register after shifting byte `b` through it.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 one byte at a time through [`TABLE`].
#[cfg_attr(
    not(any(all(target_arch = "wasm32", not(feature = "node")), test)),
    allow(dead_code)
)]
fn compact(bytes: &[u8]) -> u32 {
    !compact_update(!0, bytes)
}

/// Shifts `bytes` through the CRC register `c` (not inverted at either end).
#[cfg_attr(
    not(any(all(target_arch = "wasm32", not(feature = "node")), test)),
    allow(dead_code)
)]
fn compact_update(mut c: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn the_compact_table_gives_crc32fast_values_for_every_length_and_content() {
        assert_eq!(compact(b""), 0);
        // The standard check value of CRC-32.
        assert_eq!(compact(b"123456789"), 0xCBF4_3926);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let data: Vec<u8> = (0..5_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for len in (0..200).chain([1_000, 4_096, 4_990]) {
            for start in [0, 1, 3] {
                let slice = &data[start..start + len];
                assert_eq!(compact(slice), crc32fast::hash(slice), "len {len}");
                let mut pieces = Crc32::new();
                pieces.update(&slice[..len / 3]);
                pieces.update(&slice[len / 3..]);
                assert_eq!(
                    pieces.finish(),
                    crc32fast::hash(slice),
                    "len {len} in pieces"
                );
                let (a, b) = slice.split_at(len / 2);
                assert_eq!(
                    !compact_update(compact_update(!0, a), b),
                    crc32fast::hash(slice)
                );
            }
        }
    }
}
