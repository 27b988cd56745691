//! `entries()`: walks over a store's live entries, a chunk at a time, wrapped in the JS
//! iterator protocol.
//!
//! The walk itself is the engine's ([`Engine::next_entries`]): each chunk looks at a bounded
//! number of positions, so a walk of a million keys never builds a million-entry array, and
//! writes made between chunks are allowed (a key live for the whole walk comes exactly once).
//! The iterators are small generators in JS that ask Rust for the next chunk and free the Rust
//! side when the walk ends or the loop is left early.

use std::rc::Rc;

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::convert::{js_result, metadata_out, value_out};
use super::store::Shared;
use crate::core::{Engine, EntriesCursor, NsId};
use crate::Metadata;

/// Positions of the keyspace one chunk looks at (and so the most entries it returns).
pub(crate) const CHUNK: usize = 256;

#[wasm_bindgen(inline_js = r#"
export function iterate(chunks) {
  return (function* entries() {
    try {
      for (let chunk; (chunk = chunks.chunk()) !== null; ) yield* chunk;
    } finally {
      chunks.free();
    }
  })();
}
export function iterateAsync(chunks) {
  return (async function* entries() {
    try {
      for (let chunk; (chunk = await chunks.chunk()) !== null; ) yield* chunk;
    } finally {
      chunks.free();
    }
  })();
}
"#)]
extern "C" {
    /// A generator over `chunks` (an object whose `chunk()` returns an array of entries, or
    /// `null` once the walk is over), freeing it at the end.
    pub(crate) fn iterate(chunks: JsValue) -> JsValue;
    /// As [`iterate`], for a `chunk()` that returns a promise: an async generator.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    #[wasm_bindgen(js_name = iterateAsync)]
    pub(crate) fn iterate_async(chunks: JsValue) -> JsValue;
}

/// One entry as `entries()` yields it: `[key, value, metadata]`.
pub(crate) fn entry_out(key: &str, value: &[u8], mut meta: Metadata) -> Result<JsValue, JsValue> {
    meta.measure_stored_size(value);
    let value = value_out(value, meta.kind)?;
    Ok(Array::of3(&JsValue::from_str(key), &value, &metadata_out(&meta)).into())
}

/// The walk behind `Store.entries()`: the engine's cursor over one namespace (internal; the
/// iterator `entries()` returns wraps it).
#[wasm_bindgen]
pub struct EntryChunks {
    shared: Rc<Shared>,
    cursor: EntriesCursor,
}

impl EntryChunks {
    /// A walk over the live entries of namespace `ns` whose key starts with `prefix`.
    pub(crate) fn start(shared: &Rc<Shared>, ns: NsId, prefix: &str) -> Result<JsValue, JsValue> {
        let cursor = shared.with(|e: &mut Engine, _| js_result(e.entries_cursor(ns, prefix)))?;
        let chunks = EntryChunks {
            shared: Rc::clone(shared),
            cursor,
        };
        Ok(iterate(chunks.into()))
    }
}

#[wasm_bindgen]
impl EntryChunks {
    /// The next entries (`[key, value, metadata]` arrays, in no particular order; maybe none
    /// when no key of this stretch matched), or `null` once the walk is over. Each call looks
    /// at [`CHUNK`] positions at most. Throws code `Closed` once the store is closed.
    pub fn chunk(&mut self) -> Result<JsValue, JsValue> {
        let cursor = &mut self.cursor;
        self.shared.with(|e, now| {
            if cursor.is_done() {
                return Ok(JsValue::NULL);
            }
            let out = Array::new();
            for (key, value, meta) in js_result(e.next_entries(cursor, CHUNK, now))? {
                out.push(&entry_out(&key, &value, meta)?);
            }
            Ok(out.into())
        })
    }
}
