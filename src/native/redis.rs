//! The Redis backend (feature `redis`): a Redis server as the [`Role::SourceOfTruth`] behind a
//! [`Store`](super::Store). The store loads nothing at open, fetches a key on a miss and keeps
//! it, and writes batches back; Redis keeps the data and expires it itself.
//!
//! Layout, per database `db` and namespace `ns` (`hex(ns)`: the namespace's bytes in hex, so
//! any namespace name makes a valid hash tag):
//! ```text
//! {tidekv:<db>:<hex(ns)>}:k:<key>   the key's record, in the record format every backend
//!                                   shares (`core::record`, as IndexedDB stores it), with
//!                                   PEXPIREAT at the record's deadline
//! ```
//! The hash tag puts a namespace in one cluster slot, so the writes of one namespace in a
//! batch go in one `MULTI`/`EXEC`: a flush, and so an atomic `WriteBatch`, is atomic per
//! namespace.
//!
//! A failed command drops the connection (the next call opens a new one) and fails the call
//! with [`Error::Backend`] naming the cause; a failed flush keeps its batch buffered, and the
//! store retries it.

use std::collections::BTreeMap;

use super::backend::{Backend, Replay, Role};
use crate::{Batch, Error, Record, Result};

/// A Redis server as a store's source of truth. See the module docs.
pub(crate) struct RedisBackend {
    client: redis::Client,
    connection: Option<redis::Connection>,
    db: String,
}

fn backend_error(doing: &str, e: &redis::RedisError) -> Error {
    Error::Backend(format!("Redis {doing} failed: {e}"))
}

impl RedisBackend {
    /// A backend for database `db` on the server at `url` (`redis://host:port/`, `rediss://`,
    /// a password in the URL). Connects at once, so a wrong URL or a server that is down fails
    /// the open.
    pub(crate) fn open(url: &str, db: &str) -> Result<RedisBackend> {
        let client = redis::Client::open(url).map_err(|e| Error::InvalidOption {
            option: "url".into(),
            reason: format!("not a Redis URL ({e})"),
        })?;
        let mut backend = RedisBackend {
            client,
            connection: None,
            db: db.into(),
        };
        backend.connection()?;
        Ok(backend)
    }

    /// The open connection, or a new one.
    fn connection(&mut self) -> Result<&mut redis::Connection> {
        if self.connection.is_none() {
            let connection = self
                .client
                .get_connection()
                .map_err(|e| backend_error("connect", &e))?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("just connected"))
    }

    /// The Redis key of `key` in namespace `namespace`.
    fn redis_key(&self, namespace: &str, key: &str) -> Vec<u8> {
        let mut out = format!("{{tidekv:{}:", self.db).into_bytes();
        for b in namespace.bytes() {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out.extend_from_slice(b"}:k:");
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// Runs `f` on the connection; on an error the connection is dropped, so the next call
    /// starts from a fresh one.
    fn with<T>(
        &mut self,
        doing: &str,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let result = f(self.connection()?);
        result.map_err(|e| {
            self.connection = None;
            backend_error(doing, &e)
        })
    }
}

impl Backend for RedisBackend {
    fn role(&self) -> Role {
        Role::SourceOfTruth
    }

    /// Nothing is replayed: the store fetches what it needs.
    fn load(&mut self, _replay: &mut dyn Replay) -> Result<()> {
        Ok(())
    }

    /// One `MULTI`/`EXEC` per namespace of the batch: `SET` (and `PEXPIREAT` at a deadline)
    /// for a Put, `DEL` for a Delete.
    fn write(&mut self, batch: &Batch) -> Result<()> {
        let mut by_namespace: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
        for record in &batch.records {
            by_namespace
                .entry(record.namespace())
                .or_default()
                .push(record);
        }
        let mut buf = Vec::new();
        for (namespace, records) in by_namespace {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for record in records {
                let key = self.redis_key(namespace, record.key());
                match record {
                    Record::Put(p) => {
                        buf.clear();
                        record.encode(&mut buf);
                        pipe.cmd("SET").arg(&key).arg(&buf[..]).ignore();
                        if let Some(deadline) = p.expires_at {
                            pipe.cmd("PEXPIREAT").arg(&key).arg(deadline).ignore();
                        }
                    }
                    Record::Delete { .. } => {
                        pipe.cmd("DEL").arg(&key).ignore();
                    }
                }
            }
            self.with("write", |c| pipe.query::<()>(c))?;
        }
        Ok(())
    }

    /// `GET` of the key's record.
    fn fetch(&mut self, namespace: &str, key: &str) -> Result<Option<Record>> {
        let redis_key = self.redis_key(namespace, key);
        let bytes: Option<Vec<u8>> =
            self.with("read", |c| redis::cmd("GET").arg(&redis_key).query(c))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        match Record::decode(&bytes) {
            Ok((record, used)) if used == bytes.len() => Ok(Some(record)),
            Ok(_) => Err(Error::Corrupt(format!(
                "Redis key {}: trailing bytes after the record",
                String::from_utf8_lossy(&redis_key)
            ))),
            Err(e) => Err(Error::Corrupt(format!(
                "Redis key {}: {e:?}",
                String::from_utf8_lossy(&redis_key)
            ))),
        }
    }
}
