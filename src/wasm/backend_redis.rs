//! The Redis backend of the Node.js build (feature `node`): a Redis server as the source of
//! truth behind a `RedisStore`, through the `redis` npm package (node-redis), imported lazily by
//! the JS link in `backend_redis.js` only when a store is opened with a `redis` option.
//!
//! Wire layout (docs/REDIS.md, the contract the native crate keeps too), per database `db` and
//! namespace `ns`, with `H = {tidekv:<db>:<hex(ns)>}`:
//! ```text
//! H:k:<key>   string      the key's record (`Record::encode` of its Put), expiring at its deadline
//! H:t:<tag>   set         the keys carrying <tag>
//! H:tags      hash        key -> its tags as "<byte length>:<tag>" concatenated
//! H:d         sorted set  key -> deadline (ms), for keys with tags and a deadline
//! ```
//! A flush is one `MULTI`/`EXEC`: per namespace of the batch an `EVAL` of `src/redis/write.lua`
//! (tag sets, tag hash, deadline index), each record's own `SET` (`PXAT` its deadline) or `DEL` —
//! sent by the client, so `NOLOOP` keeps the store from hearing its own writes — and one bounded
//! step of `src/redis/reap.lua`. The scripts are the crate's own files, included here, so every
//! client runs the same copy.
//!
//! Coherence: the link keeps a data connection with `CLIENT TRACKING ON REDIRECT <subscriber>
//! BCAST PREFIX {tidekv:<db>: NOLOOP` and a subscriber connection on `__redis__:invalidate`.
//! This file turns each invalidation into (namespace, key) pairs and hands them to the store's
//! listener ([`Remote`]); a fetch that an invalidation of one of its keys (or a reset) overtook
//! is sent again, so no answer older than an invalidation is ever returned.
//!
//! What this file never does: touch the engine. The store (`store_redis.rs`) decides what an
//! invalidation does to its local copies.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use js_sys::{Array, Function, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::backend::{Backend, CompactReport, Task};
use crate::{Batch, Error, Record, Result};

/// The write script of docs/REDIS.md.
const WRITE_LUA: &str = include_str!("../redis/write.lua");
/// The reap script of docs/REDIS.md.
const REAP_LUA: &str = include_str!("../redis/reap.lua");
/// Deadline-index members one reap step looks at, at most (as the native client).
const REAP_LIMIT: &str = "128";
/// How often a fetch is sent again when invalidations keep overtaking it.
const FETCH_ATTEMPTS: usize = 8;

#[wasm_bindgen(module = "/src/wasm/backend_redis.js")]
extern "C" {
    type RedisLink;
    #[wasm_bindgen(constructor)]
    fn new(url: &str, prefix: &str, on_invalidate: &Function, on_reset: &Function) -> RedisLink;
    #[wasm_bindgen(method, catch)]
    async fn ensure(this: &RedisLink) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn run(
        this: &RedisLink,
        commands: Array,
        binary: bool,
    ) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn transaction(
        this: &RedisLink,
        commands: Array,
    ) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    async fn scan(this: &RedisLink, pattern: &str) -> std::result::Result<JsValue, JsValue>;
    #[wasm_bindgen(method)]
    fn close(this: &RedisLink);
    #[wasm_bindgen(method, getter)]
    fn connected(this: &RedisLink) -> bool;
    #[wasm_bindgen(method, getter, js_name = lastError)]
    fn last_error(this: &RedisLink) -> Option<String>;
}

/// What Redis told the store about keys it may hold copies of.
pub(crate) enum Remote {
    /// Another client changed these keys (namespace, key), or Redis expired or evicted them.
    Keys(Vec<(String, String)>),
    /// Any copy may be stale: a connection was lost or replaced, or the database was flushed.
    Everything,
    /// A batch was confirmed: keys invalidated while it was in flight can be settled now.
    Confirmed,
}

/// Receives [`Remote`] news; set once by the store.
pub(crate) type RemoteListener = Box<dyn Fn(Remote)>;

/// Counters of the Redis side, for `stats().redis`.
#[derive(Clone, Copy, Default)]
pub(crate) struct RedisCounters {
    /// Keys read from Redis (misses of the local tier, read-backs).
    pub fetched: u64,
    /// Keys another client changed, as Redis reported them.
    pub invalidations: u64,
    /// Times every local copy was dropped (reconnects, flushes of the database).
    pub resets: u64,
}

/// A fetch in progress: the keys it reads and whether news about one of them came meanwhile.
struct Watch {
    id: u64,
    namespace: String,
    keys: Vec<String>,
    overtaken: bool,
}

/// State the link's callbacks share with the backend.
#[derive(Default)]
struct Inbox {
    listener: RefCell<Option<RemoteListener>>,
    watches: RefCell<Vec<Watch>>,
    counters: Cell<RedisCounters>,
}

impl Inbox {
    fn tell(&self, news: Remote) {
        if let Some(listener) = &*self.listener.borrow() {
            listener(news);
        }
    }

    fn count(&self, f: impl FnOnce(&mut RedisCounters)) {
        let mut c = self.counters.get();
        f(&mut c);
        self.counters.set(c);
    }
}

/// A Redis server as a store's source of truth. See the module docs.
pub(crate) struct RedisBackend {
    link: RedisLink,
    db: String,
    inbox: Rc<Inbox>,
    next_watch: Cell<u64>,
    /// The keys (namespace, key) of the batch being written.
    in_flight: RefCell<Vec<(String, String)>>,
    _on_invalidate: Closure<dyn Fn(JsValue)>,
    _on_reset: Closure<dyn Fn()>,
}

/// `H` of docs/REDIS.md: `{tidekv:<db>:<hex(ns)>}`.
pub(crate) fn hash_tag(db: &str, namespace: &str) -> String {
    let mut out = format!("{{tidekv:{db}:");
    for b in namespace.bytes() {
        out.push_str(&format!("{b:02x}"));
    }
    out.push('}');
    out
}

/// The (namespace, key) a Redis key of database `db` names, if it is a record key (`H:k:<key>`).
pub(crate) fn parse_record_key(db: &str, redis_key: &str) -> Option<(String, String)> {
    let rest = redis_key
        .strip_prefix("{tidekv:")?
        .strip_prefix(db)?
        .strip_prefix(':')?;
    let (hex, key) = rest.split_once("}:k:")?;
    if hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((String::from_utf8(bytes).ok()?, key.into()))
}

/// Tags as `H:tags` holds them: `<byte length>:<tag>`, concatenated.
pub(crate) fn encode_tags(tags: &[String]) -> String {
    tags.iter().map(|t| format!("{}:{t}", t.len())).collect()
}

/// The tags of an `H:tags` value; `None` if it is not in that form.
pub(crate) fn decode_tags(mut encoded: &str) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    while !encoded.is_empty() {
        let (len, rest) = encoded.split_once(':')?;
        let len: usize = len.parse().ok()?;
        tags.push(rest.get(..len)?.to_string());
        encoded = &rest[len..];
    }
    Some(tags)
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn describe(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

fn backend_error(doing: &str, e: &JsValue) -> Error {
    Error::Backend(format!("Redis {doing} failed: {}", describe(e)))
}

/// A command for the link: its arguments as JS strings.
fn command(args: &[&str]) -> JsValue {
    args.iter()
        .map(|a| JsValue::from_str(a))
        .collect::<Array>()
        .into()
}

/// A reply that must be an array.
fn reply_array(value: JsValue, doing: &str) -> Result<Array> {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return Err(Error::Backend(format!(
            "Redis {doing} failed: {}",
            String::from(e.message())
        )));
    }
    value
        .dyn_into::<Array>()
        .map_err(|v| Error::Backend(format!("Redis {doing}: unexpected reply {v:?}")))
}

/// A reply that must be a number.
fn reply_number(value: &JsValue, doing: &str) -> Result<f64> {
    if let Some(e) = value.dyn_ref::<js_sys::Error>() {
        return Err(Error::Backend(format!(
            "Redis {doing} failed: {}",
            String::from(e.message())
        )));
    }
    value
        .as_f64()
        .ok_or_else(|| Error::Backend(format!("Redis {doing}: unexpected reply {value:?}")))
}

fn reply_strings(value: JsValue, doing: &str) -> Result<Vec<String>> {
    Ok(reply_array(value, doing)?
        .iter()
        .filter_map(|v| v.as_string())
        .collect())
}

impl RedisBackend {
    /// A backend for database `db` on the server at `url`. Connects at once, so a server that
    /// cannot be reached (or a missing `redis` package) fails the open, naming the cause.
    pub(crate) async fn open(url: &str, db: &str) -> Result<Rc<RedisBackend>> {
        let inbox = Rc::new(Inbox::default());
        let on_invalidate = {
            let inbox = Rc::downgrade(&inbox);
            let db = db.to_string();
            Closure::<dyn Fn(JsValue)>::new(move |keys: JsValue| {
                let Some(inbox) = inbox.upgrade() else {
                    return;
                };
                if keys.is_null() || keys.is_undefined() {
                    // FLUSHDB / FLUSHALL: no key named, every key gone.
                    reset(&inbox);
                    return;
                }
                let keys: Vec<(String, String)> = Array::from(&keys)
                    .iter()
                    .filter_map(|k| k.as_string())
                    .filter_map(|k| parse_record_key(&db, &k))
                    .collect();
                if keys.is_empty() {
                    return;
                }
                inbox.count(|c| c.invalidations += keys.len() as u64);
                for watch in inbox.watches.borrow_mut().iter_mut() {
                    if keys
                        .iter()
                        .any(|(ns, k)| *ns == watch.namespace && watch.keys.contains(k))
                    {
                        watch.overtaken = true;
                    }
                }
                inbox.tell(Remote::Keys(keys));
            })
        };
        let on_reset = {
            let inbox = Rc::downgrade(&inbox);
            Closure::<dyn Fn()>::new(move || {
                if let Some(inbox) = inbox.upgrade() {
                    reset(&inbox);
                }
            })
        };
        let link = RedisLink::new(
            url,
            &format!("{{tidekv:{db}:"),
            on_invalidate.as_ref().unchecked_ref(),
            on_reset.as_ref().unchecked_ref(),
        );
        link.ensure()
            .await
            .map_err(|e| Error::Backend(describe(&e)))?;
        Ok(Rc::new(RedisBackend {
            link,
            db: db.into(),
            inbox,
            next_watch: Cell::new(0),
            in_flight: RefCell::default(),
            _on_invalidate: on_invalidate,
            _on_reset: on_reset,
        }))
    }

    /// From now on, `listener` hears what Redis reports (see [`Remote`]).
    pub(crate) fn listen(&self, listener: RemoteListener) {
        *self.inbox.listener.borrow_mut() = Some(listener);
    }

    /// Whether both connections are up now.
    pub(crate) fn connected(&self) -> bool {
        self.link.connected()
    }

    /// The last connection error, until a connection succeeds again.
    pub(crate) fn connection_error(&self) -> Option<String> {
        self.link.last_error()
    }

    /// The counters of the Redis side.
    pub(crate) fn counters(&self) -> RedisCounters {
        self.inbox.counters.get()
    }

    /// The keys (namespace, key) of the batch being written, if any.
    pub(crate) fn in_flight(&self) -> Vec<(String, String)> {
        self.in_flight.borrow().clone()
    }

    fn h(&self, namespace: &str) -> String {
        hash_tag(&self.db, namespace)
    }

    /// The records Redis holds for `keys` of `namespace` (`None`: no such key), read in one
    /// pipeline. Sent again if an invalidation of one of the keys, or a reset, came while it
    /// was on its way, so the answer is never older than the news the store has heard.
    pub(crate) async fn fetch(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<Vec<Option<Record>>> {
        let h = self.h(namespace);
        let commands: Array = keys
            .iter()
            .map(|k| command(&["GET", &format!("{h}:k:{k}")]))
            .collect();
        let id = self.next_watch.get();
        self.next_watch.set(id + 1);
        for _ in 0..FETCH_ATTEMPTS {
            self.inbox.watches.borrow_mut().push(Watch {
                id,
                namespace: namespace.into(),
                keys: keys.to_vec(),
                overtaken: false,
            });
            let replies = self.link.run(commands.clone(), true).await;
            let overtaken = {
                let mut watches = self.inbox.watches.borrow_mut();
                let at = watches.iter().position(|w| w.id == id);
                at.is_some_and(|at| watches.remove(at).overtaken)
            };
            let replies = replies.map_err(|e| backend_error("read", &e))?;
            if overtaken {
                continue;
            }
            self.inbox.count(|c| c.fetched += keys.len() as u64);
            return Array::from(&replies)
                .iter()
                .zip(keys)
                .map(|(reply, key)| self.decode(namespace, key, reply))
                .collect();
        }
        Err(Error::Backend(format!(
            "Redis read failed: {namespace:?}/{:?} changed during {FETCH_ATTEMPTS} reads in a row",
            keys.first().map_or("", String::as_str)
        )))
    }

    fn decode(&self, namespace: &str, key: &str, reply: JsValue) -> Result<Option<Record>> {
        if reply.is_null() || reply.is_undefined() {
            return Ok(None);
        }
        let redis_key = format!("{}:k:{key}", self.h(namespace));
        if let Some(e) = reply.dyn_ref::<js_sys::Error>() {
            return Err(Error::Backend(format!(
                "Redis GET {redis_key} failed: {}",
                String::from(e.message())
            )));
        }
        let Some(bytes) = reply.dyn_ref::<Uint8Array>().map(Uint8Array::to_vec) else {
            return Err(Error::Corrupt(format!(
                "Redis key {redis_key}: not a string"
            )));
        };
        let record = match Record::decode(&bytes) {
            Ok((record, used)) if used == bytes.len() => record,
            Ok(_) => {
                return Err(Error::Corrupt(format!(
                    "Redis key {redis_key}: trailing bytes after the record"
                )))
            }
            Err(e) => return Err(Error::Corrupt(format!("Redis key {redis_key}: {e:?}"))),
        };
        if record.namespace() != namespace || record.key() != key {
            return Err(Error::Corrupt(format!(
                "Redis key {redis_key} holds the record of {:?}/{:?}",
                record.namespace(),
                record.key()
            )));
        }
        Ok(Some(record))
    }

    /// Keys of `namespace` starting with `prefix`, by `SCAN` (never `KEYS`).
    pub(crate) async fn scan_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>> {
        let h = self.h(namespace);
        let pattern = format!("{}*", glob_escape(&format!("{h}:k:{prefix}")));
        let found = self
            .link
            .scan(&pattern)
            .await
            .map_err(|e| backend_error("SCAN", &e))?;
        let strip = format!("{h}:k:");
        Ok(reply_strings(found, "SCAN")?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&strip).map(String::from))
            .collect())
    }

    /// One bounded step of the reap script for `namespace`.
    async fn reap(&self, namespace: &str) -> Result<()> {
        let replies = self
            .link
            .run(Array::of1(&self.reap_call(namespace)), false)
            .await
            .map_err(|e| backend_error("reap", &e))?;
        reply_number(&Array::from(&replies).get(0), "reap").map(drop)
    }

    /// `EVAL` of the reap script for `namespace`: one bounded step.
    fn reap_call(&self, namespace: &str) -> JsValue {
        let h = self.h(namespace);
        command(&[
            "EVAL",
            REAP_LUA,
            "2",
            &format!("{h}:tags"),
            &format!("{h}:d"),
            &h,
            REAP_LIMIT,
        ])
    }

    /// Keys of `namespace` carrying every one of `tags` that Redis holds now: a reap step,
    /// `SINTER` of the tag sets, then an `EXISTS` of each member, so an expired key is never
    /// listed.
    pub(crate) async fn query_tags(&self, namespace: &str, tags: &[String]) -> Result<Vec<String>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        self.reap(namespace).await?;
        let h = self.h(namespace);
        let mut sinter = vec![JsValue::from_str("SINTER")];
        sinter.extend(
            tags.iter()
                .map(|t| JsValue::from_str(&format!("{h}:t:{t}"))),
        );
        let sinter: Array = sinter.into_iter().collect();
        let replies = self
            .link
            .run(Array::of1(&sinter), false)
            .await
            .map_err(|e| backend_error("SINTER", &e))?;
        let members = reply_strings(Array::from(&replies).get(0), "SINTER")?;
        if members.is_empty() {
            return Ok(members);
        }
        let exists: Array = members
            .iter()
            .map(|k| command(&["EXISTS", &format!("{h}:k:{k}")]))
            .collect();
        let replies = self
            .link
            .run(exists, false)
            .await
            .map_err(|e| backend_error("EXISTS", &e))?;
        let mut live = Vec::new();
        for (member, reply) in members.into_iter().zip(Array::from(&replies).iter()) {
            if reply_number(&reply, "EXISTS")? > 0.0 {
                live.push(member);
            }
        }
        Ok(live)
    }

    /// The tags of `namespace` in use in Redis, with how many keys carry each (`SCAN` of the
    /// tag sets and `SCARD` of each, after a reap step), and the tags Redis holds for each of
    /// `keys` (empty for a key without tags).
    pub(crate) async fn tag_counts(
        &self,
        namespace: &str,
        keys: &[String],
    ) -> Result<(BTreeMap<String, u64>, Vec<Vec<String>>)> {
        self.reap(namespace).await?;
        let h = self.h(namespace);
        let strip = format!("{h}:t:");
        let found = self
            .link
            .scan(&format!("{}*", glob_escape(&strip)))
            .await
            .map_err(|e| backend_error("SCAN", &e))?;
        let sets = reply_strings(found, "SCAN")?;
        let mut commands: Vec<JsValue> = sets.iter().map(|s| command(&["SCARD", s])).collect();
        if !keys.is_empty() {
            let mut hmget = vec![
                JsValue::from_str("HMGET"),
                JsValue::from_str(&format!("{h}:tags")),
            ];
            hmget.extend(keys.iter().map(|k| JsValue::from_str(k)));
            commands.push(hmget.into_iter().collect::<Array>().into());
        }
        let replies = self
            .link
            .run(commands.into_iter().collect(), false)
            .await
            .map_err(|e| backend_error("SCARD", &e))?;
        let replies = Array::from(&replies);
        let mut counts = BTreeMap::new();
        for (i, set) in sets.iter().enumerate() {
            let n = reply_number(&replies.get(i as u32), "SCARD")?;
            if let Some(tag) = set.strip_prefix(&strip) {
                if n > 0.0 {
                    counts.insert(tag.to_string(), n as u64);
                }
            }
        }
        let mut tags_of = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let held = reply_array(replies.get(sets.len() as u32), "HMGET")?;
            for value in held.iter() {
                tags_of.push(
                    value
                        .as_string()
                        .and_then(|s| decode_tags(&s))
                        .unwrap_or_default(),
                );
            }
        }
        Ok((counts, tags_of))
    }

    /// The commands of one namespace's part of a batch, appended to `out`: the write script
    /// (tags and deadline index), each record's `SET` (with `PXAT` at its deadline) or `DEL`,
    /// a reap step.
    fn write_commands(&self, namespace: &str, records: &[&Record], out: &Array) {
        let h = self.h(namespace);
        let tags_key = format!("{h}:tags");
        let index_key = format!("{h}:d");
        let script = Array::new();
        for arg in ["EVAL", WRITE_LUA, "2", &tags_key, &index_key, &h] {
            script.push(&JsValue::from_str(arg));
        }
        for record in records {
            match record {
                Record::Put(p) => {
                    let deadline = p.expires_at.map(|d| d.to_string()).unwrap_or_default();
                    for arg in ["p", &p.key, "", &deadline, &encode_tags(&p.tags)] {
                        script.push(&JsValue::from_str(arg));
                    }
                }
                Record::Delete { key, .. } => {
                    for arg in ["d", key, "", "", ""] {
                        script.push(&JsValue::from_str(arg));
                    }
                }
            }
        }
        out.push(&script);
        let mut buf = Vec::new();
        for record in records {
            let key = JsValue::from_str(&format!("{h}:k:{}", record.key()));
            match record {
                Record::Put(p) => {
                    buf.clear();
                    record.encode(&mut buf);
                    let set =
                        Array::of3(&JsValue::from_str("SET"), &key, &Uint8Array::from(&buf[..]));
                    if let Some(deadline) = p.expires_at {
                        set.push(&JsValue::from_str("PXAT"));
                        set.push(&JsValue::from_str(&deadline.to_string()));
                    }
                    out.push(&set);
                }
                Record::Delete { .. } => {
                    out.push(&Array::of2(&JsValue::from_str("DEL"), &key));
                }
            }
        }
        out.push(&self.reap_call(namespace));
    }

    /// The batch as one `MULTI`/`EXEC` (docs/REDIS.md, "Writes").
    async fn write_batch(&self, batch: &Batch) -> Result<()> {
        let by_namespace = batch.by_namespace();
        let commands = Array::new();
        for (namespace, records) in &by_namespace {
            self.write_commands(namespace, records, &commands);
        }
        self.link
            .transaction(commands)
            .await
            .map_err(|e| backend_error("write", &e))?;
        Ok(())
    }
}

/// Every local copy is suspect: count it and tell the store; overtakes every fetch on its way.
fn reset(inbox: &Inbox) {
    inbox.count(|c| c.resets += 1);
    for watch in inbox.watches.borrow_mut().iter_mut() {
        watch.overtaken = true;
    }
    inbox.tell(Remote::Everything);
}

impl Backend for RedisBackend {
    fn write(self: Rc<Self>, batch: Batch) -> Task<()> {
        Box::pin(async move {
            *self.in_flight.borrow_mut() = batch
                .records
                .iter()
                .map(|r| (r.namespace().to_string(), r.key().to_string()))
                .collect();
            let result = self.write_batch(&batch).await;
            self.in_flight.borrow_mut().clear();
            result
        })
    }

    /// Redis keeps one record per key and expires it itself: nothing to rewrite.
    fn compact(self: Rc<Self>, _live: Vec<Record>) -> Task<CompactReport> {
        Box::pin(async { Ok(CompactReport::default()) })
    }

    fn close(self: Rc<Self>) -> Task<()> {
        Box::pin(async move {
            self.link.close();
            *self.inbox.listener.borrow_mut() = None;
            Ok(())
        })
    }

    fn confirmed(self: Rc<Self>) {
        self.inbox.tell(Remote::Confirmed);
    }
}
