//! The JS-side read cache: decoded values of recently read or written keys, kept in a JS `Map`
//! per namespace, so that `get` and `has` of a key the cache knows never cross into the wasm.
//!
//! The engine stays the one source of truth; the cache is a copy that is either exact or
//! absent. An entry holds the value as the engine would hand it out (a string as is, JSON as its
//! text, bytes as a private copy), its deadline, and nothing else; a known-absent key is held
//! as a miss. The fast path serves an entry only while its deadline is in the future (one
//! `Date.now()`, only for an entry with a TTL), with the engine's rule (`now < deadline`), so a
//! key that expired always reaches the engine and its lazy expiry, `expire` event and counters.
//!
//! Coherence is kept on the Rust side, where every change passes:
//! - `get`, `has`, `set`, `delete` of one key write (or drop) that key's entry after the engine
//!   answered;
//! - every other call that goes through the engine ([`Shared::with`]) — `setMany`,
//!   `deleteMany`, `clear`, `import`, `expire`, `persist`, a `getOrSet` load, ... — empties the
//!   whole cache, as does a change another tab committed ([`Shared::refresh`]); only calls that
//!   change nothing (listings, `ttl`, `stats`, `entries`) keep it;
//! - a store with a memory cap never caches (an eviction can remove any key, and a read must
//!   stamp its key's recency), nor does a `RedisStore`'s (its source of truth is elsewhere);
//! - `close()` empties it and turns it off, so every later call reaches the engine and throws.
//!
//! A served read still counts: `gets`, `hits` and `misses` of `stats()` include it.
//! The cache holds at most 65,536 entries per namespace and 16 Mi UTF-16 units or bytes of
//! values per store (`keep` below); past that it starts again empty. A value over 1 Mi units
//! or bytes is never kept.
//!
//! [`Shared::with`]: super::store::Shared::with
//! [`Shared::refresh`]: super::store::Shared

use wasm_bindgen::prelude::*;

use bytes::Bytes;

use super::convert::type_error;
use crate::Kind;

// The fast paths replace `get`, `has`, `set` and `stats` of the Store prototype once, the
// first time a store is handed to JS; each falls back to the wasm method it replaced whenever
// the cache cannot answer. A handle's `__tidekv` is its namespace's slot `{ c, m, n, hits,
// misses }`: the store's cache, the entries by key, how many there are, and the reads answered. `m` is a prototype-less object in
// dictionary mode, not a `Map`: a property lookup is the cheaper of the two in V8, and only a
// string key is ever looked up in it. An entry is `{ v, d, k }`: the value, the deadline
// (`Infinity` without a TTL) and how to hand the value out (0 as is, 1 `JSON.parse`, 2 a copy
// of the bytes); `MISS` is the entry of a key known to be absent.
//
// `set` reads the common options (none, or `{ ttl }` alone) itself — one crossing instead of
// one per property — and calls `__setTtl(key, value, ttl)`; every other shape goes the
// general way. A text entry that fits is encoded straight into the scratch area (`s`: views of
// the key's and the value's bytes, remade when the wasm memory grew and dropped its old
// buffer) for `__setText(keyBytes, valueBytes, ttl)`, which answers the entry's deadline
// (`Infinity` without a TTL), and the cache keeps the caller's string, which is immutable, as
// its copy. `__setText` answers `NaN` for a U+FFFD that may stand for a lone surrogate: then
// `__setTtl` checks it. A `get` the cache cannot answer sends a string key the same way, to
// `__getText(key, keyBytes)`, which answers as `get` does and fills the cache.
#[wasm_bindgen(inline_js = r#"
const KB = 3072, VB = 61440, MISS = Object.freeze({ v: undefined, d: Infinity, k: 0 });
const enc = new TextEncoder(), installed = new WeakSet();
function install(proto) {
  const { get, has, set, stats } = proto;
  const fast = {
    get(key) {
      const t = this.__tidekv;
      if (t !== undefined && typeof key === 'string') {
        const e = t.m[key];
        if (e !== undefined && (e.d === Infinity || e.d > Date.now())) {
          if (e === MISS) { t.misses++; return undefined; }
          t.hits++;
          return e.k === 0 ? e.v : e.k === 1 ? JSON.parse(e.v) : e.v.slice();
        }
        if (key.length <= KB / 3) return this.__getText(key, enc.encodeInto(key, views(t.c.s).k).written);
      }
      return get.call(this, key);
    },
    has(key) {
      const t = this.__tidekv;
      if (t !== undefined && typeof key === 'string') {
        const e = t.m[key];
        if (e !== undefined && (e.d === Infinity || e.d > Date.now())) return e !== MISS;
      }
      return has.call(this, key);
    },
    set(key, value, options) {
      let ttl;
      if (options !== undefined) {
        if (typeof options !== 'object' || options === null || Object.getPrototypeOf(options) !== Object.prototype) return set.call(this, key, value, options);
        for (const name in options) {
          if (name !== 'ttl') return set.call(this, key, value, options);
          ttl = options.ttl;
        }
      }
      const t = this.__tidekv;
      if (t === undefined || typeof key !== 'string' || typeof value !== 'string' || key.length > KB / 3 || value.length > VB / 3) return this.__setTtl(key, value, ttl);
      const c = t.c, s = views(c.s);
      const d = this.__setText(enc.encodeInto(key, s.k).written, enc.encodeInto(value, s.v).written, ttl);
      if (d !== d) return this.__setTtl(key, value, ttl);
      if (!c.on) return;
      const e = t.m[key];
      if (e === undefined || e === MISS || e.k !== 0) return keep(c, t, key, { v: value, d, k: 0 });
      // An overwrite of text: the entry is updated in place, nothing allocated.
      c.bytes += value.length - e.v.length;
      e.v = value;
      e.d = d;
      if (c.bytes > 16777216 || value.length > 1048576) clear(c, false);
    },
    stats() {
      const s = stats.call(this), t = this.__tidekv;
      if (t !== undefined) {
        for (const n of t.c.slots) {
          if (n === undefined) continue;
          s.gets += n.hits + n.misses;
          s.hits += n.hits;
          s.misses += n.misses;
        }
      }
      return s;
    },
  };
  for (const name in fast) Object.defineProperty(proto, name, { ...Object.getOwnPropertyDescriptor(proto, name), value: fast[name] });
}
function views(s) {
  if (s.k.byteLength === 0) {
    s.k = new Uint8Array(s.mem.buffer, s.at, KB);
    s.v = new Uint8Array(s.mem.buffer, s.at + KB, VB);
  }
  return s;
}
export function newCache(on, mem, at) {
  return { on, slots: [], bytes: 0, s: { mem, at, k: new Uint8Array(0), v: null } };
}
function dict() {
  const m = Object.create(null);
  m.x = 0;
  delete m.x;
  return m;
}
const slot = (c, ns) => c.slots[ns] || (c.slots[ns] = { c, m: dict(), n: 0, hits: 0, misses: 0 });
export function attach(store, c, ns) {
  const proto = Object.getPrototypeOf(store);
  if (!installed.has(proto)) { installed.add(proto); install(proto); }
  Object.defineProperty(store, '__tidekv', { value: slot(c, ns) });
  return store;
}
const size = (e) => (e === undefined || e === MISS ? 0 : e.k === 2 ? e.v.byteLength : e.v.length);
function drop(c, t, key) {
  const old = t.m[key];
  if (old !== undefined) {
    c.bytes -= size(old);
    t.n--;
    delete t.m[key];
  }
}
function keep(c, t, key, e) {
  if (size(e) > 1048576) return drop(c, t, key);
  const old = t.m[key];
  c.bytes += size(e) - size(old);
  if (old === undefined) t.n++;
  if (t.n > 65536 || c.bytes > 16777216) {
    clear(c, false);
    c.bytes = size(e);
    t.n = 1;
  }
  t.m[key] = e;
}
export function put(c, ns, key, v, d, k) {
  const t = slot(c, ns);
  if (k < 3) keep(c, t, key, { v: k === 2 ? v.slice() : v, d, k });
  else if (k === 3) keep(c, t, key, MISS);
  else drop(c, t, key);
}
export function clear(c, off) {
  for (const t of c.slots) if (t !== undefined) { t.m = dict(); t.n = 0; }
  c.bytes = 0;
  if (off) c.on = false;
}
"#)]
extern "C" {
    #[wasm_bindgen(js_name = newCache)]
    fn new_cache(on: bool, memory: JsValue, scratch: u32) -> JsValue;
    fn attach(store: JsValue, cache: &JsValue, ns: u32) -> JsValue;
    /// `how`: 0 to 2 a value (see above), 3 a miss, 4 forget the key.
    fn put(cache: &JsValue, ns: u32, key: &JsValue, value: &JsValue, deadline: f64, how: u32);
    fn clear(cache: &JsValue, off: bool);
}

/// Bytes of the scratch area for a set's key (the JS glue sends longer keys the general way).
const KEY_BYTES: usize = 3072;
/// Bytes of the scratch area for a set's text value, after the key's.
const VALUE_BYTES: usize = 61_440;

thread_local! {
    /// Where the JS glue's `set` encodes a text entry (key, then value) for [`scratch_entry`]:
    /// one area per realm, never moved.
    static SCRATCH: Box<[u8]> = vec![0; KEY_BYTES + VALUE_BYTES].into_boxed_slice();
}

/// What the JS glue encoded into the scratch area: the key and the text value, or `None` if
/// either may hold a lone surrogate (encoded as U+FFFD), which only the JS string can tell.
pub(crate) fn scratch_entry(
    key_len: u32,
    value_len: u32,
) -> Result<Option<(String, Bytes)>, JsValue> {
    let (key_len, value_len) = (key_len as usize, value_len as usize);
    if key_len > KEY_BYTES || value_len > VALUE_BYTES {
        return Err(type_error("the scratch area holds no such entry"));
    }
    SCRATCH.with(|s| {
        let key = core::str::from_utf8(&s[..key_len]);
        let value = &s[KEY_BYTES..KEY_BYTES + value_len];
        let value_ok = core::str::from_utf8(value).is_ok_and(|v| !maybe_lone_surrogate(v));
        match key {
            Ok(key) if value_ok && !maybe_lone_surrogate(key) => {
                Ok(Some((key.to_owned(), Bytes::copy_from_slice(value))))
            }
            _ => Ok(None),
        }
    })
}

/// The key the JS glue encoded into the scratch area, or `None` if it may hold a lone
/// surrogate (see [`scratch_entry`]).
pub(crate) fn scratch_key(key_len: u32) -> Result<Option<String>, JsValue> {
    let key_len = key_len as usize;
    if key_len > KEY_BYTES {
        return Err(type_error("the scratch area holds no such key"));
    }
    SCRATCH.with(|s| match core::str::from_utf8(&s[..key_len]) {
        Ok(key) if !maybe_lone_surrogate(key) => Ok(Some(key.to_owned())),
        _ => Ok(None),
    })
}

/// Whether `s` holds U+FFFD, which a JS string's lone surrogate becomes in UTF-8.
pub(crate) fn maybe_lone_surrogate(s: &str) -> bool {
    // A `char` pattern outside ASCII is searched as a string: look for its first byte first.
    !s.is_ascii() && s.contains("\u{FFFD}")
}

/// One store's read cache (shared by its namespace handles). Every method is a no-op on a
/// cache that is off.
pub(crate) struct Cache {
    js: JsValue,
    on: std::cell::Cell<bool>,
}

impl Cache {
    /// A cache, on or (a memory cap, a `RedisStore`) off for good.
    pub(crate) fn new(on: bool) -> Cache {
        Cache {
            js: new_cache(
                on,
                wasm_bindgen::memory(),
                SCRATCH.with(|s| s.as_ptr() as u32),
            ),
            on: std::cell::Cell::new(on),
        }
    }

    /// Binds the JS object of a store handle of namespace `ns` to this cache (installing the
    /// fast paths on its class once) and returns it.
    pub(crate) fn attach(&self, handle: JsValue, ns: u32) -> JsValue {
        attach(handle, &self.js, ns)
    }

    /// `key` holds `value` (as the engine hands it out: `Uint8Array`, string, or JSON's text
    /// for `kind` JSON) until `deadline` (`None`: no TTL).
    pub(crate) fn put(
        &self,
        ns: u32,
        key: &JsValue,
        value: &JsValue,
        kind: Kind,
        deadline: Option<u64>,
    ) {
        if self.on.get() {
            let how = match kind {
                Kind::Text => 0,
                Kind::Json => 1,
                Kind::Bytes => 2,
            };
            put(
                &self.js,
                ns,
                key,
                value,
                deadline.map_or(f64::INFINITY, |d| d as f64),
                how,
            );
        }
    }

    /// `key` holds nothing.
    pub(crate) fn put_miss(&self, ns: u32, key: &JsValue) {
        if self.on.get() {
            put(&self.js, ns, key, &JsValue::UNDEFINED, f64::INFINITY, 3);
        }
    }

    /// Drops what the cache knows of `key`.
    pub(crate) fn forget(&self, ns: u32, key: &JsValue) {
        if self.on.get() {
            put(&self.js, ns, key, &JsValue::UNDEFINED, 0.0, 4);
        }
    }

    /// Drops everything: the engine changed in a way the cache does not follow key by key.
    pub(crate) fn clear(&self) {
        if self.on.get() {
            clear(&self.js, false);
        }
    }

    /// Empties the cache and keeps it off from now on (the store closed).
    pub(crate) fn off(&self) {
        if self.on.replace(false) {
            clear(&self.js, true);
        }
    }
}
