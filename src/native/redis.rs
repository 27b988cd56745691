//! The Redis backend (feature `redis`): a Redis server as the [`Role::SourceOfTruth`] behind a
//! [`Store`](super::Store). The store loads nothing at open, fetches a key on a miss and keeps
//! it, and writes batches back; Redis keeps the data and expires it itself.
//!
//! The layout (records, tag sets, tag hash, deadline index, all of a namespace under one hash
//! tag), the write and reap scripts and the coherence protocol are the contract in
//! `docs/REDIS.md`, which the npm package's Node.js build keeps too.
//!
//! Two connections per store: the data connection for commands, and the watcher's — a thread
//! subscribed to `__redis__:invalidate`, to which the data connection's `CLIENT TRACKING`
//! redirects. Whenever either is replaced, tracking is turned on again and the store drops its
//! copies ([`RemoteChanges::resync`]): invalidations may have been missed meanwhile.
//!
//! A failed command drops the data connection (the next call opens a new one) and fails the
//! call with [`Error::Backend`] naming the cause; a failed flush keeps its batch buffered, and
//! the store retries it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::backend::{Backend, RemoteChanges, Role};
use crate::{Batch, Error, Record, Result};

/// The write script of `docs/REDIS.md`: one namespace's part of a batch, atomically.
const WRITE_SCRIPT: &str = include_str!("../redis/write.lua");
/// The reap script of `docs/REDIS.md`: one bounded step of cleaning the deadline index.
const REAP_SCRIPT: &str = include_str!("../redis/reap.lua");
/// Deadline-index entries one reap step looks at.
const REAP_STEP: usize = 128;
/// How long connecting may take before the call fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a command may wait for its reply before the call fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the watcher looks up from its subscription to see whether it should stop.
const WATCH_POLL: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn backend_error(doing: &str, e: &redis::RedisError) -> Error {
    Error::Backend(format!("Redis {doing} failed: {e}"))
}

/// The names of one database's keys (see `docs/REDIS.md`, "Keys").
#[derive(Clone)]
struct Layout {
    /// `{tidekv:<db>:`, what every key of the database starts with.
    db_prefix: String,
}

impl Layout {
    fn new(db: &str) -> Layout {
        Layout {
            db_prefix: format!("{{tidekv:{db}:"),
        }
    }

    /// `H = {tidekv:<db>:<hex(ns)>}`, the hash tag of namespace `namespace`.
    fn space(&self, namespace: &str) -> String {
        let mut h = self.db_prefix.clone();
        for b in namespace.bytes() {
            h.push_str(&format!("{b:02x}"));
        }
        h.push('}');
        h
    }

    fn record(&self, namespace: &str, key: &str) -> Vec<u8> {
        let mut out = format!("{}:k:", self.space(namespace)).into_bytes();
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// `KEYS` of both scripts for namespace `h`: the tag hash and the deadline index.
    fn script_keys(h: &str) -> [String; 2] {
        [format!("{h}:tags"), format!("{h}:d")]
    }

    /// The (namespace, key) of a record's Redis key, `None` for any other key (tag sets,
    /// hashes, other databases) or a name tidekv did not make.
    fn parse_record(&self, redis_key: &[u8]) -> Option<(String, String)> {
        let rest = redis_key.strip_prefix(self.db_prefix.as_bytes())?;
        let close = rest.iter().position(|b| *b == b'}')?;
        let (hex, rest) = rest.split_at(close);
        let key = rest.strip_prefix(b"}:k:")?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes: Option<Vec<u8>> = hex
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
            .collect();
        let namespace = String::from_utf8(bytes?).ok()?;
        Some((namespace, String::from_utf8(key.to_vec()).ok()?))
    }
}

/// A `SCAN` pattern matching exactly the names that start with `prefix`.
fn glob_prefix(prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 1);
    for b in prefix.bytes() {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'*');
    out
}

/// Tags as the tag hash stores them: `<byte length>:<tag>`, concatenated.
fn encode_tags(tags: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for tag in tags {
        out.extend_from_slice(format!("{}:", tag.len()).as_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    out
}

/// The data connection and what tracking on it needs; shared with the watcher thread.
struct Data {
    client: redis::Client,
    connection: Option<redis::Connection>,
    layout: Layout,
    /// The watcher's connection id while it is subscribed: tracking redirects there.
    subscriber: Option<u64>,
    /// The subscriber id tracking is on for, on `connection`.
    tracking_for: Option<u64>,
    /// The store, told to drop its copies whenever tracking starts anew.
    changes: Option<Arc<dyn RemoteChanges>>,
}

impl Data {
    /// The open connection, or a new one; tracking is (re)enabled where it is off.
    fn connection(&mut self) -> Result<&mut redis::Connection> {
        if self.connection.is_none() {
            let connection = self
                .client
                .get_connection_with_timeout(CONNECT_TIMEOUT)
                .map_err(|e| backend_error("connect", &e))?;
            let timeouts = connection
                .set_read_timeout(Some(COMMAND_TIMEOUT))
                .and_then(|()| connection.set_write_timeout(Some(COMMAND_TIMEOUT)));
            timeouts.map_err(|e| backend_error("connect", &e))?;
            self.connection = Some(connection);
            self.tracking_for = None;
        }
        self.track()?;
        Ok(self.connection.as_mut().expect("connected above"))
    }

    /// Turns tracking on for the current subscriber if it is not yet, then has the store drop
    /// its copies: what changed while tracking was off is unknown.
    fn track(&mut self) -> Result<()> {
        let (Some(id), Some(connection)) = (self.subscriber, self.connection.as_mut()) else {
            return Ok(());
        };
        if self.tracking_for == Some(id) {
            return Ok(());
        }
        let on = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("REDIRECT")
            .arg(id)
            .arg("BCAST")
            .arg("PREFIX")
            .arg(&self.layout.db_prefix)
            .arg("NOLOOP")
            .query::<()>(connection);
        if let Err(e) = on {
            self.connection = None;
            return Err(backend_error("CLIENT TRACKING", &e));
        }
        self.tracking_for = Some(id);
        if let Some(changes) = &self.changes {
            changes.resync();
        }
        Ok(())
    }

    /// Runs `f` on the connection; on an error the connection is dropped, so the next call
    /// starts from a fresh one.
    ///
    /// A connection that was open before the call and turns out dead (the server restarted
    /// since) is replaced and the call made once more: every call tidekv makes can be
    /// repeated (a batch writes the same records again).
    fn with<T>(
        &mut self,
        doing: &str,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let reused = self.connection.is_some();
        let mut result = f(self.connection()?);
        if reused
            && result
                .as_ref()
                .is_err_and(|e| e.is_io_error() || e.is_connection_dropped())
        {
            self.connection = None;
            result = f(self.connection()?);
        }
        result.map_err(|e| {
            if !matches!(e.kind(), redis::ErrorKind::Server(_)) {
                self.connection = None;
            }
            backend_error(doing, &e)
        })
    }
}

/// The watcher thread, stopped on drop.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One Redis server: the one behind a store, or a master of a cluster.
struct Node {
    /// The cluster's id of the node (`CLUSTER MYID`); empty for a single server.
    id: String,
    data: Arc<Mutex<Data>>,
    watcher: Option<Watcher>,
}

impl Node {
    /// A node at `url`, connected at once.
    fn connect(url: &str, id: String, layout: &Layout) -> Result<Node> {
        let bad_url = |e: redis::RedisError| Error::InvalidOption {
            option: "url".into(),
            reason: format!("not a Redis URL ({e})"),
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(bad_url)?;
        // Small commands and replies, one round trip at a time: never wait for Nagle.
        let tcp = info.tcp_settings().clone().set_nodelay(true);
        let client = redis::Client::open(info.set_tcp_settings(tcp)).map_err(bad_url)?;
        let node = Node {
            id,
            data: Arc::new(Mutex::new(Data {
                client,
                connection: None,
                layout: layout.clone(),
                subscriber: None,
                tracking_for: None,
                changes: None,
            })),
            watcher: None,
        };
        lock(&node.data).connection()?;
        Ok(node)
    }

    /// Starts this node's watcher thread and waits (briefly) for its first subscription.
    fn watch(&mut self, layout: &Layout, changes: Arc<dyn RemoteChanges>) -> Result<()> {
        lock(&self.data).changes = Some(Arc::clone(&changes));
        let stop = Arc::new(AtomicBool::new(false));
        let watch = Watch {
            data: Arc::clone(&self.data),
            layout: layout.clone(),
            changes,
            stop: Arc::clone(&stop),
        };
        let (subscribed, first) = std::sync::mpsc::channel();
        let thread = thread::Builder::new()
            .name("tidekv-redis-watch".into())
            .spawn(move || watch.run(subscribed))?;
        self.watcher = Some(Watcher {
            stop,
            thread: Some(thread),
        });
        // A store is coherent from its first call: wait for the first subscription (a
        // failure to subscribe is retried in the background; calls work meanwhile, with
        // nothing cached for long).
        let _ = first.recv_timeout(CONNECT_TIMEOUT);
        Ok(())
    }
}

/// Where a cluster keeps each slot, and where each namespace lives.
struct Cluster {
    /// The first node's URL: other nodes are reached with its scheme and credentials.
    seed_url: String,
    /// (first slot, last slot, index into the nodes), as `CLUSTER SLOTS` said last.
    ranges: Vec<(u16, u16, usize)>,
    /// Each namespace's slot (of its hash tag), asked of the server once.
    slots: std::collections::HashMap<String, u16>,
}

/// `url` with its `host:port` replaced by `addr` (same scheme, credentials and options).
fn url_for(url: &str, addr: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.into();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{userinfo}{addr}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    )
}

/// Whether a command failed because the cluster moved a slot (or is moving it).
fn moved(e: &Error) -> bool {
    matches!(e, Error::Backend(m) if ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"]
        .iter()
        .any(|code| m.contains(code)))
}

/// A Redis server, or a Redis Cluster, as a store's source of truth. See the module docs.
pub(crate) struct RedisBackend {
    layout: Layout,
    nodes: Vec<Node>,
    /// `None` for a single server (every namespace on `nodes[0]`).
    cluster: Option<Cluster>,
    changes: Option<Arc<dyn RemoteChanges>>,
}

impl RedisBackend {
    /// A backend for database `db` on the server at `url` (`redis://host:port/`, `rediss://`,
    /// a password in the URL). Connects at once, so a wrong URL or a server that is down fails
    /// the open.
    pub(crate) fn open(url: &str, db: &str) -> Result<RedisBackend> {
        let layout = Layout::new(db);
        let node = Node::connect(url, String::new(), &layout)?;
        Ok(RedisBackend {
            layout,
            nodes: vec![node],
            cluster: None,
            changes: None,
        })
    }

    /// A backend for database `db` on the Redis Cluster that `urls` (any of its nodes) belong
    /// to: connects to the first that answers and then to every master it names.
    pub(crate) fn open_cluster(urls: &[&str], db: &str) -> Result<RedisBackend> {
        if urls.is_empty() {
            return Err(Error::InvalidOption {
                option: "urls".into(),
                reason: "a cluster needs the URL of at least one of its nodes".into(),
            });
        }
        let layout = Layout::new(db);
        let mut last_error = None;
        for url in urls {
            let mut node = match Node::connect(url, String::new(), &layout) {
                Ok(node) => node,
                Err(e @ Error::InvalidOption { .. }) => return Err(e),
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            node.id = lock(&node.data).with("CLUSTER MYID", |c| {
                redis::cmd("CLUSTER").arg("MYID").query(c)
            })?;
            let mut backend = RedisBackend {
                layout: layout.clone(),
                nodes: vec![node],
                cluster: Some(Cluster {
                    seed_url: url.to_string(),
                    ranges: Vec::new(),
                    slots: Default::default(),
                }),
                changes: None,
            };
            backend.refresh_slots()?;
            return Ok(backend);
        }
        Err(last_error.expect("at least one URL was tried"))
    }

    /// Asks the cluster where its slots are (`CLUSTER SLOTS`), connecting to masters not
    /// known yet.
    fn refresh_slots(&mut self) -> Result<()> {
        let mut reply: Option<Vec<(u16, u16, String, String)>> = None;
        let mut last_error = None;
        for node in &self.nodes {
            let asked = lock(&node.data).with("CLUSTER SLOTS", |c| {
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(c)?;
                let mut out = Vec::new();
                for range in slots {
                    let (start, end, master): (u16, u16, Vec<redis::Value>) =
                        redis::FromRedisValue::from_redis_value(range)?;
                    let (host, port, id): (String, u16, String) =
                        redis::FromRedisValue::from_redis_value(redis::Value::Array(
                            master.into_iter().take(3).collect(),
                        ))?;
                    out.push((start, end, format!("{host}:{port}"), id));
                }
                Ok(out)
            });
            match asked {
                Ok(ranges) => {
                    reply = Some(ranges);
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(reply) = reply else {
            return Err(last_error.unwrap_or_else(|| Error::Backend("no cluster node".into())));
        };
        if reply.is_empty() {
            return Err(Error::Backend(
                "Redis CLUSTER SLOTS: the cluster serves no slots (not a cluster, or not set up)"
                    .into(),
            ));
        }
        let seed_url = self.cluster.as_ref().expect("a cluster").seed_url.clone();
        let mut ranges = Vec::with_capacity(reply.len());
        for (start, end, addr, id) in reply {
            let index = match self.nodes.iter().position(|n| n.id == id) {
                Some(i) => i,
                None => {
                    let mut node = Node::connect(&url_for(&seed_url, &addr), id, &self.layout)?;
                    if let Some(changes) = &self.changes {
                        node.watch(&self.layout, Arc::clone(changes))?;
                    }
                    self.nodes.push(node);
                    self.nodes.len() - 1
                }
            };
            ranges.push((start, end, index));
        }
        ranges.sort_unstable();
        self.cluster.as_mut().expect("a cluster").ranges = ranges;
        Ok(())
    }

    /// The node that holds namespace `namespace` (hash tag `h`).
    fn node_of(&mut self, h: &str) -> Result<usize> {
        let Some(cluster) = &self.cluster else {
            return Ok(0);
        };
        let slot = match cluster.slots.get(h) {
            Some(slot) => *slot,
            None => {
                let data = &self.nodes[cluster.ranges.first().map_or(0, |r| r.2)].data;
                let slot: u16 = lock(data).with("CLUSTER KEYSLOT", |c| {
                    redis::cmd("CLUSTER").arg("KEYSLOT").arg(h).query(c)
                })?;
                self.cluster
                    .as_mut()
                    .expect("a cluster")
                    .slots
                    .insert(h.to_string(), slot);
                slot
            }
        };
        let ranges = &self.cluster.as_ref().expect("a cluster").ranges;
        ranges
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .map(|r| r.2)
            .ok_or_else(|| Error::Backend(format!("Redis Cluster: no node serves slot {slot}")))
    }

    /// Runs `f` on the connection of the node holding namespace `h`. On a cluster, a slot
    /// that moved refreshes the slot map and runs `f` once more (every call can be repeated).
    fn with<T>(
        &mut self,
        h: &str,
        doing: &str,
        mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let node = self.node_of(h)?;
        let result = lock(&self.nodes[node].data).with(doing, &mut f);
        match result {
            Err(e) if self.cluster.is_some() && moved(&e) => {
                self.refresh_slots()?;
                let node = self.node_of(h)?;
                let data = Arc::clone(&self.nodes[node].data);
                let again = lock(&data).with(doing, f);
                again
            }
            other => other,
        }
    }

    /// An `EVAL` of `script` on namespace `h`, its arguments after `H` still to add. `EVAL`,
    /// not `EVALSHA`: inside `MULTI` a `NOSCRIPT` error would not stop the commands after it.
    fn call(script: &str, h: &str) -> redis::Cmd {
        let [tags, index] = Layout::script_keys(h);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(2).arg(tags).arg(index).arg(h);
        cmd
    }

    /// One reap step of namespace `h` (see `docs/REDIS.md`, "Expiry").
    fn reap(&mut self, h: &str) -> Result<()> {
        let mut call = Self::call(REAP_SCRIPT, h);
        call.arg(REAP_STEP);
        self.with(h, "reap", |c| call.query(c))
    }

    /// The members of `keys` (keys of namespace `h`) whose record still exists.
    fn existing(&mut self, h: &str, keys: Vec<String>) -> Result<Vec<String>> {
        if keys.is_empty() {
            return Ok(keys);
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("EXISTS").arg(format!("{h}:k:{key}"));
        }
        let exists: Vec<bool> = self.with(h, "read", |c| pipe.query(c))?;
        Ok(keys
            .into_iter()
            .zip(exists)
            .filter_map(|(k, e)| e.then_some(k))
            .collect())
    }

    /// `SCAN`, on the node of namespace `h`, of every name matching `pattern`, with the part
    /// after `strip` as UTF-8.
    fn scan(&mut self, h: &str, pattern: Vec<u8>, strip: usize) -> Result<Vec<String>> {
        self.with(h, "SCAN", |c| {
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, names): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern[..])
                    .arg("COUNT")
                    .arg(1000)
                    .query(c)?;
                out.extend(
                    names
                        .into_iter()
                        .filter_map(|n| String::from_utf8(n.get(strip..)?.to_vec()).ok()),
                );
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
    }
}

impl Backend for RedisBackend {
    fn role(&self) -> Role {
        Role::SourceOfTruth
    }

    /// Nothing is replayed: the store fetches what it needs.
    fn load(&mut self, _replay: &mut dyn super::Replay) -> Result<()> {
        Ok(())
    }

    /// One `MULTI`/`EXEC` per namespace (so per hash slot), pipelined per node: the write
    /// script (tag sets, tag hash, deadline index), then each record's `SET` (with `PXAT` at
    /// its deadline), or `DEL`, then a reap step. The records are written by this connection itself, not by
    /// the script, so that tracking's `NOLOOP` spares this store its own changes.
    fn write(&mut self, batch: &Batch) -> Result<()> {
        let by_namespace = batch.by_namespace();
        let mut by_node: BTreeMap<usize, (String, redis::Pipeline)> = BTreeMap::new();
        let mut encoded = Vec::new();
        for (namespace, records) in &by_namespace {
            let h = self.layout.space(namespace);
            let node = self.node_of(&h)?;
            let (_, pipe) = by_node
                .entry(node)
                .or_insert_with(|| (h.clone(), redis::pipe()));
            pipe.cmd("MULTI").ignore();
            let mut call = Self::call(WRITE_SCRIPT, &h);
            for record in records {
                match record {
                    Record::Put(p) => {
                        let deadline = p.expires_at.map(|d| d.to_string()).unwrap_or_default();
                        call.arg("p")
                            .arg(&p.key)
                            .arg("")
                            .arg(deadline)
                            .arg(encode_tags(&p.tags));
                    }
                    Record::Delete { key, .. } => {
                        call.arg("d").arg(key).arg("").arg("").arg("");
                    }
                }
            }
            pipe.add_command(call).ignore();
            for record in records {
                let key = self.layout.record(namespace, record.key());
                match record {
                    Record::Put(p) => {
                        encoded.clear();
                        record.encode(&mut encoded);
                        let set = pipe.cmd("SET").arg(&key).arg(&encoded[..]);
                        if let Some(deadline) = p.expires_at {
                            set.arg("PXAT").arg(deadline);
                        }
                        set.ignore();
                    }
                    Record::Delete { .. } => {
                        pipe.cmd("DEL").arg(&key).ignore();
                    }
                }
            }
            let mut reap = Self::call(REAP_SCRIPT, &h);
            reap.arg(REAP_STEP);
            pipe.add_command(reap).ignore();
            pipe.cmd("EXEC");
        }
        for (h, pipe) in by_node.values() {
            // Each EXEC's reply: an array of the replies inside, or nil if it was aborted.
            let replies: Vec<redis::Value> = self.with(h, "write", |c| pipe.query(c))?;
            if replies.iter().any(|r| matches!(r, redis::Value::Nil)) {
                return Err(Error::Backend(
                    "Redis write failed: a MULTI was aborted".into(),
                ));
            }
        }
        Ok(())
    }

    /// `GET` of the key's record.
    fn fetch(&mut self, namespace: &str, key: &str) -> Result<Option<Record>> {
        let h = self.layout.space(namespace);
        let redis_key = self.layout.record(namespace, key);
        let bytes: Option<Vec<u8>> =
            self.with(&h, "read", |c| redis::cmd("GET").arg(&redis_key).query(c))?;
        bytes.map(|b| decode(&redis_key, &b)).transpose()
    }

    /// `SCAN` of the namespace's records.
    fn keys(&mut self, namespace: &str, prefix: &str) -> Result<Vec<String>> {
        let h = self.layout.space(namespace);
        let records = format!("{h}:k:");
        let mut pattern = glob_prefix(&records);
        pattern.pop();
        pattern.extend(glob_prefix(prefix));
        self.scan(&h, pattern, records.len())
    }

    /// A reap step, `SINTER` of the tag sets, and a check that each member still exists.
    fn query_by_tags(&mut self, namespace: &str, tags: &[&str]) -> Result<Vec<String>> {
        let h = self.layout.space(namespace);
        self.reap(&h)?;
        let sets: Vec<String> = tags.iter().map(|t| format!("{h}:t:{t}")).collect();
        let members: Vec<String> =
            self.with(&h, "SINTER", |c| redis::cmd("SINTER").arg(&sets).query(c))?;
        self.existing(&h, members)
    }

    /// A reap step, `SCAN` of the tag sets, and each one's existing members.
    fn tags(&mut self, namespace: &str) -> Result<Vec<(String, Vec<String>)>> {
        let h = self.layout.space(namespace);
        self.reap(&h)?;
        let prefix = format!("{h}:t:");
        let tags = self.scan(&h, glob_prefix(&prefix), prefix.len())?;
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            let set = format!("{prefix}{tag}");
            let members: Vec<String> = self.with(&h, "SMEMBERS", |c| {
                redis::cmd("SMEMBERS").arg(&set).query(c)
            })?;
            out.push((tag, self.existing(&h, members)?));
        }
        Ok(out)
    }

    /// Starts a watcher thread per node; tracking starts with its first subscription.
    fn watch(&mut self, changes: Arc<dyn RemoteChanges>) -> Result<()> {
        self.changes = Some(Arc::clone(&changes));
        for node in &mut self.nodes {
            node.watch(&self.layout, Arc::clone(&changes))?;
        }
        Ok(())
    }

    /// Stops the watchers.
    fn close(&mut self) -> Result<()> {
        for node in &mut self.nodes {
            node.watcher = None;
        }
        Ok(())
    }
}

/// A record as Redis holds it, checked: one whole record, nothing after it.
fn decode(redis_key: &[u8], bytes: &[u8]) -> Result<Record> {
    let name = || String::from_utf8_lossy(redis_key).into_owned();
    match Record::decode(bytes) {
        Ok((record, used)) if used == bytes.len() => Ok(record),
        Ok(_) => Err(Error::Corrupt(format!(
            "Redis key {}: trailing bytes after the record",
            name()
        ))),
        Err(e) => Err(Error::Corrupt(format!("Redis key {}: {e:?}", name()))),
    }
}

/// The watcher thread's state: subscribes to invalidations, hands them to the store, and
/// starts over (with a resync) whenever its connection fails.
struct Watch {
    data: Arc<Mutex<Data>>,
    layout: Layout,
    changes: Arc<dyn RemoteChanges>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// Watches until stopped; `subscribed` hears of the first subscription.
    fn run(self, subscribed: std::sync::mpsc::Sender<()>) {
        let mut failures: u32 = 0;
        while !self.stop.load(Ordering::SeqCst) {
            match self.subscribed(&subscribed) {
                Err(e) => {
                    if failures == 0 {
                        log::warn!(
                            target: "tidekv",
                            "Redis invalidations lost ({e}): local copies dropped, reconnecting"
                        );
                    }
                    failures = failures.saturating_add(1);
                }
                Ok(()) => failures = 0,
            }
            // While nobody listens, nothing can be trusted.
            {
                let mut data = lock(&self.data);
                data.subscriber = None;
                data.tracking_for = None;
            }
            self.changes.resync();
            let pause = Duration::from_millis(50 * u64::from(failures.min(20)));
            let mut waited = Duration::ZERO;
            while waited < pause && !self.stop.load(Ordering::SeqCst) {
                thread::sleep(WATCH_POLL);
                waited += WATCH_POLL;
            }
        }
    }

    /// One subscription, until its connection fails or the watcher is stopped.
    fn subscribed(&self, subscribed: &std::sync::mpsc::Sender<()>) -> redis::RedisResult<()> {
        let client = lock(&self.data).client.clone();
        let mut connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        let id: u64 = redis::cmd("CLIENT").arg("ID").query(&mut connection)?;
        let mut reader = None;
        let mut pubsub = connection.as_pubsub();
        pubsub.subscribe("__redis__:invalidate")?;
        pubsub.set_read_timeout(Some(WATCH_POLL))?;
        {
            let mut data = lock(&self.data);
            data.subscriber = Some(id);
            // With no data connection yet, its first use turns tracking on.
            let _ = data.track();
        }
        let _ = subscribed.send(());
        while !self.stop.load(Ordering::SeqCst) {
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(e) if e.is_timeout() => continue,
                Err(e) => return Err(e),
            };
            let keys: Option<Vec<Vec<u8>>> = message.get_payload()?;
            let Some(keys) = keys else {
                // FLUSHDB / FLUSHALL: everything changed.
                self.changes.resync();
                continue;
            };
            let named: Vec<(String, String)> = keys
                .iter()
                .filter_map(|k| self.layout.parse_record(k))
                .collect();
            if named.is_empty() {
                continue;
            }
            let states = if self.changes.wants_states() {
                self.read_back(&client, &mut reader, &named)
            } else {
                None
            };
            match states {
                Some(states) => {
                    for ((namespace, key), state) in named.iter().zip(states) {
                        self.changes.changed(namespace, key, Some(state));
                    }
                }
                None => {
                    for (namespace, key) in &named {
                        self.changes.changed(namespace, key, None);
                    }
                }
            }
        }
        Ok(())
    }

    /// The current records of `keys`, read on a connection of the watcher's own; `None` if
    /// they cannot be read (the keys are then only dropped, not reported with a state).
    fn read_back(
        &self,
        client: &redis::Client,
        reader: &mut Option<redis::Connection>,
        keys: &[(String, String)],
    ) -> Option<Vec<Option<Record>>> {
        if reader.is_none() {
            *reader = client.get_connection_with_timeout(CONNECT_TIMEOUT).ok();
        }
        let connection = reader.as_mut()?;
        let mut pipe = redis::pipe();
        let names: Vec<Vec<u8>> = keys
            .iter()
            .map(|(ns, key)| self.layout.record(ns, key))
            .collect();
        for name in &names {
            pipe.cmd("GET").arg(name);
        }
        let Ok(values) = pipe.query::<Vec<Option<Vec<u8>>>>(connection) else {
            *reader = None;
            return None;
        };
        Some(
            names
                .iter()
                .zip(values)
                .map(|(name, value)| value.and_then(|v| decode(name, &v).ok()))
                .collect(),
        )
    }
}
