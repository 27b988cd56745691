//! The memory backend: accepts every batch and keeps nothing, for `Store::memory`.

use super::{Backend, Replay};
use crate::{Batch, Result};

/// A backend that confirms every batch at once and stores nothing: the data lives only in the
/// engine, and is gone when the store is dropped.
#[derive(Debug, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn keeps_nothing(&self) -> bool {
        true
    }

    fn load(&mut self, _replay: &mut dyn Replay) -> Result<()> {
        Ok(())
    }

    fn write(&mut self, _batch: &Batch) -> Result<()> {
        Ok(())
    }
}
