//! [`WriteBatch`]: many sets and deletes applied as one atomic change.

use bytes::Bytes;

use super::options::{ttl_ms, SetOptions};
use super::IntoValue;
use crate::core::BatchOp;
use crate::{Kind, Result};

/// One set of a batch: the value, its kind, and the options.
type Set = ((Bytes, Kind), SetOptions);

/// Sets and deletes that [`Namespace::apply`](super::Namespace::apply) makes as one change:
/// all of them or none.
///
/// - **Checked first.** Every key, value, TTL and tag is checked before anything changes; one
///   bad entry fails the whole batch with that entry's error, and nothing is stored.
/// - **Seen whole.** Other threads see the store before the batch or after all of it.
/// - **Durable whole.** The batch reaches the backend in one flush — for the file log one
///   frame, for IndexedDB one transaction — so a crash replays all of it or none of it.
///
/// Later entries win over earlier ones for the same key, as separate calls would.
///
/// ```
/// use std::time::Duration;
/// use tidekv::{Options, SetOptions, Store, WriteBatch};
///
/// # fn main() -> tidekv::Result<()> {
/// let store = Store::memory(Options::default())?;
/// store.set("old", "x")?;
/// let mut batch = WriteBatch::new();
/// batch
///     .set("a", "1")
///     .set_with("b", "2", SetOptions::new().ttl(Duration::from_secs(60)))
///     .delete("old");
/// store.apply(batch)?;
/// assert_eq!(store.keys("")?, ["a", "b"]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(String, Option<Set>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds a set of `key` to `value` with no TTL and no tags (as [`Namespace::set`]).
    ///
    /// [`Namespace::set`]: super::Namespace::set
    pub fn set(&mut self, key: impl Into<String>, value: impl IntoValue) -> &mut Self {
        self.set_with(key, value, SetOptions::new())
    }

    /// Adds a set with a TTL, tags and a kind (as [`Namespace::set_with`]).
    ///
    /// [`Namespace::set_with`]: super::Namespace::set_with
    pub fn set_with(
        &mut self,
        key: impl Into<String>,
        value: impl IntoValue,
        options: SetOptions,
    ) -> &mut Self {
        self.ops
            .push((key.into(), Some((value.into_value(), options))));
        self
    }

    /// Adds a delete of `key` (as [`Namespace::delete`]).
    ///
    /// [`Namespace::delete`]: super::Namespace::delete
    pub fn delete(&mut self, key: impl Into<String>) -> &mut Self {
        self.ops.push((key.into(), None));
        self
    }

    /// How many sets and deletes the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch holds nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The engine's form of the batch; fails on a TTL that cannot be one (zero, too large).
    pub(crate) fn into_ops(self) -> Result<Vec<BatchOp>> {
        self.ops
            .into_iter()
            .map(|(key, op)| match op {
                Some(((value, kind), options)) => Ok(BatchOp::Set {
                    key,
                    value,
                    kind: options.kind.unwrap_or(kind),
                    ttl_ms: options.ttl.map(ttl_ms).transpose()?,
                    tags: options.tags,
                }),
                None => Ok(BatchOp::Delete { key }),
            })
            .collect()
    }
}
