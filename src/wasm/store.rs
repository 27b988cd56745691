//! The JavaScript `Store` class.
//!
//! Reads are answered from the engine synchronously; writes go to the engine's buffer
//! synchronously; `flush()` and `close()` return Promises. A namespace handle is another
//! `Store` object bound to a namespace of the same engine.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Array, Promise};
use wasm_bindgen::prelude::*;

use super::convert::{
    metadata_out, millis, object, options, positive, stats_out, string, string_array, strings,
    to_js, value_in, value_out,
};
use crate::core::{Config, Engine, NsId};
use crate::Error;

struct Shared {
    engine: RefCell<Engine>,
    closed: Cell<bool>,
}

impl Shared {
    /// Runs `f` on the engine with the current time, refusing once the store is closed.
    fn with<R>(
        &self,
        f: impl FnOnce(&mut Engine, u64) -> Result<R, JsValue>,
    ) -> Result<R, JsValue> {
        if self.closed.get() {
            return Err(to_js(Error::Closed));
        }
        let now = js_sys::Date::now() as u64;
        f(&mut self.engine.borrow_mut(), now)
    }

    fn flush(&self) -> Result<(), JsValue> {
        self.with(|engine, _| {
            // The memory backend confirms every batch at once.
            if let Some(batch) = engine.take_batch() {
                engine.ack(batch.id);
            }
            Ok(())
        })
    }
}

/// A tidekv store. All key methods act on this handle's namespace.
#[wasm_bindgen(js_name = Store)]
pub struct JsStore {
    shared: Rc<Shared>,
    ns: NsId,
}

const STORE_OPTIONS: &[&str] = &["bufferSize", "flushInterval", "maxValueSize"];
const SET_OPTIONS: &[&str] = &["ttl", "tags"];

fn js<T>(result: crate::Result<T>) -> Result<T, JsValue> {
    result.map_err(to_js)
}

#[wasm_bindgen(js_class = Store)]
impl JsStore {
    /// An in-memory store. Options: `bufferSize` (bytes, default 1 MiB), `flushInterval` (ms,
    /// default 1000), `maxValueSize` (bytes, default 512 MiB). Unknown options throw a
    /// `TypeError` that names them.
    pub fn memory(opts: JsValue) -> Result<JsStore, JsValue> {
        let mut config = Config::default();
        for (name, value) in options(&opts, "Store options", STORE_OPTIONS)? {
            let Some(n) = positive(&value, &name)? else {
                continue;
            };
            match name.as_str() {
                "bufferSize" => config.buffer_size = n as usize,
                "flushInterval" => config.flush_interval_ms = n,
                _ => config.max_value_size = n,
            }
        }
        let engine = js(Engine::new(config))?;
        Ok(JsStore {
            shared: Rc::new(Shared {
                engine: RefCell::new(engine),
                closed: Cell::new(false),
            }),
            ns: 0,
        })
    }

    /// Stores `value` under `key`: a `Uint8Array` as bytes, a `string` as text, anything else
    /// as JSON. Options: `ttl` (ms) and `tags` (string[]). Replaces the whole entry. Throws
    /// (and stores nothing) on bad input.
    pub fn set(&self, key: JsValue, value: JsValue, opts: JsValue) -> Result<(), JsValue> {
        let key = string(&key, "key")?;
        let (value, kind) = value_in(&value)?;
        let mut ttl = None;
        let mut tags = Vec::new();
        for (name, v) in options(&opts, "set options", SET_OPTIONS)? {
            match name.as_str() {
                "ttl" => ttl = millis(&v, "ttl")?,
                _ => tags = strings(&v, "tags")?,
            }
        }
        self.shared
            .with(|e, now| js(e.set(self.ns, &key, value, kind, ttl, &tags, now)))
    }

    /// The value under `key` as it was stored (`Uint8Array`, `string` or JSON value), or
    /// `undefined` if there is none or it expired.
    pub fn get(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let key = string(&key, "key")?;
        self.shared
            .with(|e, now| match js(e.get(self.ns, &key, now))? {
                Some((value, kind)) => value_out(&value, kind),
                None => Ok(JsValue::UNDEFINED),
            })
    }

    /// `{ value, metadata: { size, createdAt, updatedAt, expiresAt, tags, kind, compressed } }`
    /// or `undefined`.
    #[wasm_bindgen(js_name = getWithMetadata)]
    pub fn get_with_metadata(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let key = string(&key, "key")?;
        self.shared.with(
            |e, now| match js(e.get_with_metadata(self.ns, &key, now))? {
                Some((value, meta)) => Ok(object(&[
                    ("value", value_out(&value, meta.kind)?),
                    ("metadata", metadata_out(&meta)),
                ])),
                None => Ok(JsValue::UNDEFINED),
            },
        )
    }

    /// Whether `key` holds a live value.
    pub fn has(&self, key: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        self.shared
            .with(|e, now| js(e.contains(self.ns, &key, now)))
    }

    /// Removes `key`; `true` if it held a live value.
    pub fn delete(&self, key: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        self.shared.with(|e, now| js(e.delete(self.ns, &key, now)))
    }

    /// Milliseconds until `key` expires, or `undefined` if it has no TTL or does not exist.
    pub fn ttl(&self, key: JsValue) -> Result<JsValue, JsValue> {
        let key = string(&key, "key")?;
        self.shared.with(|e, now| {
            Ok(js(e.ttl(self.ns, &key, now))?
                .map_or(JsValue::UNDEFINED, |ms| JsValue::from_f64(ms as f64)))
        })
    }

    /// Makes `key` expire `ttl` ms from now, keeping value and tags; `true` if the key exists.
    pub fn expire(&self, key: JsValue, ttl: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        let Some(ttl) = millis(&ttl, "ttl")? else {
            return Err(super::convert::type_error(
                "ttl is required: a number of milliseconds",
            ));
        };
        self.shared
            .with(|e, now| js(e.expire(self.ns, &key, ttl, now)))
    }

    /// Removes the TTL of `key`; `true` if the key exists.
    pub fn persist(&self, key: JsValue) -> Result<bool, JsValue> {
        let key = string(&key, "key")?;
        self.shared.with(|e, now| js(e.persist(self.ns, &key, now)))
    }

    /// Live keys starting with `prefix` (default: all), sorted.
    pub fn keys(&self, prefix: JsValue) -> Result<JsValue, JsValue> {
        let prefix = if prefix.is_undefined() {
            String::new()
        } else {
            string(&prefix, "prefix")?
        };
        self.shared
            .with(|e, now| Ok(string_array(e.keys(self.ns, &prefix, now))))
    }

    /// Live keys carrying every one of `tags`, sorted.
    #[wasm_bindgen(js_name = queryByTags)]
    pub fn query_by_tags(&self, tags: JsValue) -> Result<JsValue, JsValue> {
        let tags = strings(&tags, "tags")?;
        self.shared
            .with(|e, now| Ok(string_array(e.query_by_tags(self.ns, &tags, now))))
    }

    /// `[{ tag, count }]` for every tag on a live key, sorted by tag.
    #[wasm_bindgen(js_name = listTags)]
    pub fn list_tags(&self) -> Result<JsValue, JsValue> {
        self.shared.with(|e, now| {
            let list: Array = e
                .list_tags(self.ns, now)
                .into_iter()
                .map(|(tag, count)| {
                    object(&[
                        ("tag", JsValue::from(tag)),
                        ("count", JsValue::from_f64(count as f64)),
                    ])
                })
                .collect();
            Ok(list.into())
        })
    }

    /// A handle to namespace `name` of the same store (its own keys and tags).
    pub fn namespace(&self, name: JsValue) -> Result<JsStore, JsValue> {
        let name = string(&name, "namespace name")?;
        let ns = self.shared.with(|e, _| js(e.namespace(&name)))?;
        Ok(JsStore {
            shared: Rc::clone(&self.shared),
            ns,
        })
    }

    /// Removes every expired key now; returns how many.
    #[wasm_bindgen(js_name = sweepExpired)]
    pub fn sweep_expired(&self) -> Result<u32, JsValue> {
        self.shared.with(|e, now| {
            let mut removed = 0;
            loop {
                let budget = e.config().sweep_budget;
                let report = e.sweep(now, budget);
                removed += report.expired as u32;
                if !report.more_due {
                    return Ok(removed);
                }
            }
        })
    }

    /// The store's counters, camelCase.
    pub fn stats(&self) -> JsValue {
        stats_out(&self.shared.engine.borrow().stats())
    }

    /// Writes everything buffered; resolves once the backend confirmed it.
    pub fn flush(&self) -> Promise {
        match self.shared.flush() {
            Ok(()) => Promise::resolve(&JsValue::UNDEFINED),
            Err(e) => Promise::reject(&e),
        }
    }

    /// Flushes, then closes the store; every later call throws an error with code `Closed`.
    pub fn close(&self) -> Promise {
        match self.shared.flush() {
            Ok(()) => {
                self.shared.closed.set(true);
                Promise::resolve(&JsValue::UNDEFINED)
            }
            Err(e) => Promise::reject(&e),
        }
    }
}
