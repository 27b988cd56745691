//! The one error type of tidekv. Every variant is something a caller can act on; none of them is
//! ever produced by a panic path, and none of them means data was lost.

use alloc::string::String;

/// A tidekv result.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in tidekv, as one enum a caller can `match`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key was empty, longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) bytes, or otherwise
    /// unusable. Nothing was stored.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A value was larger than the store's `max_value_size`. Nothing was stored.
    #[error("value of {size} bytes is larger than the limit of {max} bytes")]
    ValueTooLarge {
        /// The size of the rejected value, in bytes.
        size: u64,
        /// The configured limit, in bytes.
        max: u64,
    },
    /// A TTL was zero, or so large that the deadline overflows. Nothing was changed.
    #[error("invalid ttl: {0}")]
    InvalidTtl(String),
    /// A namespace, tag or database name broke the naming rules. Nothing was created.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: String,
    },
    /// An option had a value outside its allowed range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: String,
        /// Why the value was refused.
        reason: String,
    },
    /// The store was closed; the handle can no longer be used.
    #[error("the store is closed")]
    Closed,
    /// An operating-system I/O error. Buffered writes stay buffered and are retried.
    #[cfg(feature = "std")]
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data failed its checks (CRC, framing, field bounds). Corrupt data is never returned
    /// as a value.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database is already open in another process or through another handle.
    #[error("database {path} is locked: it is already open in another process or handle")]
    Locked {
        /// The database directory that is locked.
        path: String,
    },
    /// A backend that is not a plain file system (IndexedDB, Node's fs, Redis) failed. Buffered
    /// writes stay buffered and are retried.
    #[error("backend error: {0}")]
    Backend(String),
    /// The loader of a get-or-insert call failed (or panicked); every caller that waited for
    /// it gets this error, and nothing was stored.
    #[error("the loader failed: {0}")]
    Load(String),
}

impl Error {
    /// A short, stable name for the variant (`"InvalidKey"`, `"Closed"`, ...), used as the `code`
    /// of JavaScript errors and in logs.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidKey(_) => "InvalidKey",
            Error::ValueTooLarge { .. } => "ValueTooLarge",
            Error::InvalidTtl(_) => "InvalidTtl",
            Error::InvalidName { .. } => "InvalidName",
            Error::InvalidOption { .. } => "InvalidOption",
            Error::Closed => "Closed",
            #[cfg(feature = "std")]
            Error::Io(_) => "Io",
            Error::Corrupt(_) => "Corrupt",
            Error::Load(_) => "Load",
            Error::Locked { .. } => "Locked",
            Error::Backend(_) => "Backend",
        }
    }
}
