//! The keyspace: (namespace, key) -> entry, and the value types every shell shares.
//!
//! Owns what an entry is and how it is described to callers. It never decides *when* something
//! expires (that is `expiry`) nor what is pending for a backend (that is `buffer`).

use alloc::{boxed::Box, string::String, vec::Vec};
use bytes::Bytes;
use hashbrown::HashMap;

use super::{buffer::Pending, tags::TagIndex};

/// Which kind of value an entry holds, so a shell gives back what it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Kind {
    /// Raw bytes (`Uint8Array` in JS).
    Bytes = 0,
    /// UTF-8 text (`string` in JS).
    Text = 1,
    /// A JSON document (any other JSON-serialisable JS value).
    Json = 2,
}

impl Kind {
    /// The kind for a stored tag byte, or `None` for an unknown byte.
    pub fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            0 => Some(Kind::Bytes),
            1 => Some(Kind::Text),
            2 => Some(Kind::Json),
            _ => None,
        }
    }

    /// The lower-case name used in JS metadata and in dumps: `"bytes"`, `"text"` or `"json"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bytes => "bytes",
            Kind::Text => "text",
            Kind::Json => "json",
        }
    }
}

/// Everything tidekv knows about an entry besides its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Logical size of the value in bytes (after decompression).
    pub size: u64,
    /// Size of the value as a persistent backend stores it: the LZ4 block when `compressed`,
    /// else equal to `size`. Computed when asked for.
    pub stored_size: u64,
    /// When the key was first written (ms since the Unix epoch). Overwriting a live key keeps it.
    pub created_at: u64,
    /// When the value, TTL or tags last changed (ms since the Unix epoch).
    pub updated_at: u64,
    /// Absolute deadline (ms since the Unix epoch) after which the key is gone; `None` = no TTL.
    pub expires_at: Option<u64>,
    /// The entry's tags, sorted and without duplicates.
    pub tags: Vec<String>,
    /// The kind of value.
    pub kind: Kind,
    /// Whether the persistent record of this value is compressed.
    pub compressed: bool,
}

/// One stored entry. Tags are kept sorted and unique.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub value: Bytes,
    pub created_at: u64,
    pub updated_at: u64,
    pub expires_at: Option<u64>,
    pub tags: Box<[Box<str>]>,
    pub kind: Kind,
    pub compressed: bool,
}

impl Entry {
    /// Whether the entry is still visible at `now`: a deadline is exclusive.
    pub fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|deadline| now < deadline)
    }

    pub fn metadata(&self) -> Metadata {
        Metadata {
            size: self.value.len() as u64,
            stored_size: if self.compressed {
                lz4_flex::block::compress(&self.value).len() as u64
            } else {
                self.value.len() as u64
            },
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            tags: self.tags.iter().map(|t| String::from(&**t)).collect(),
            kind: self.kind,
            compressed: self.compressed,
        }
    }
}

/// One namespace: its entries, its tag index and its pending (unflushed) keys.
pub(crate) struct Space {
    pub name: Box<str>,
    pub map: HashMap<Box<str>, Entry>,
    pub tags: TagIndex,
    pub pending: Pending,
}

impl Space {
    pub fn new(name: &str) -> Space {
        Space {
            name: name.into(),
            map: HashMap::new(),
            tags: TagIndex::default(),
            pending: Pending::default(),
        }
    }
}
