//! The options of `Store.open(options)` and `Store.memory(options)`, read from a JS object.
//!
//! Unknown options and ill-typed values throw a `TypeError` naming the option; values of the
//! right type but out of range a `RangeError`. Nothing is opened or created when parsing fails.

use wasm_bindgen::JsValue;

use super::convert::{js_result, options, positive, string, to_js, type_error};
use super::scheduler;
use crate::core::{log::validate_db_name, Config, EvictionPolicy};
use crate::Error;

/// Where a store keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendKind {
    /// Nothing is persisted.
    Memory,
    /// An IndexedDB database.
    IndexedDb,
    /// Segment files under `path/<name>/` (the Node.js build only).
    Fs,
    /// A Redis server as the source of truth (the Node.js build only).
    Redis,
}

/// How far a flush goes before it resolves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Handed to the OS / a relaxed IndexedDB transaction.
    Buffered,
    /// Files: fsync'ed. IndexedDB: a strict transaction.
    Fsync,
    /// As `Fsync`, and for files also the directory on every new segment.
    Strict,
}

/// Parsed `Store.open` options.
pub(crate) struct OpenOptions {
    pub name: String,
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub path: Option<String>,
    pub backend: BackendKind,
    /// `None`: the backend's default (IndexedDB relaxed, files fsync).
    pub durability: Option<Durability>,
    pub config: Config,
    /// Ask the browser to keep the database when storage runs short (IndexedDB only).
    pub persist: bool,
    /// The Redis server's URL (`redis://` or `rediss://`), for backend `Redis`.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub redis: Option<String>,
}

const OPEN_OPTIONS: &[&str] = &[
    "name",
    "path",
    "backend",
    "bufferSize",
    "flushInterval",
    "durability",
    "compression",
    "maxValueSize",
    "persist",
    "redis",
    "maxMemory",
    "eviction",
];
const MEMORY_OPTIONS: &[&str] = &[
    "bufferSize",
    "flushInterval",
    "maxValueSize",
    "compression",
    "maxMemory",
    "eviction",
];

fn one_of<'a>(value: &JsValue, option: &str, allowed: &[&'a str]) -> Result<&'a str, JsValue> {
    let got = string(value, &format!("option {option}"))?;
    allowed.iter().find(|a| **a == got).copied().ok_or_else(|| {
        type_error(&format!(
            "option {option} must be one of '{}', got {got:?}",
            allowed.join("', '")
        ))
    })
}

/// Applies one engine option; `false` if `name` is not one.
fn engine_option(config: &mut Config, name: &str, value: &JsValue) -> Result<bool, JsValue> {
    match name {
        "bufferSize" | "flushInterval" | "maxValueSize" => {
            if let Some(n) = positive(value, name)? {
                match name {
                    "bufferSize" => config.buffer_size = usize::try_from(n).unwrap_or(usize::MAX),
                    "flushInterval" => config.flush_interval_ms = n,
                    _ => config.max_value_size = n,
                }
            }
        }
        "maxMemory" => config.max_memory = positive(value, name)?,
        "eviction" => {
            if !value.is_undefined() {
                config.eviction = match one_of(value, name, &["lru", "nearest-expiry"])? {
                    "lru" => EvictionPolicy::Lru,
                    _ => EvictionPolicy::NearestExpiry,
                };
            }
        }
        "compression" => {
            if !value.is_undefined() {
                config.compression = value
                    .as_bool()
                    .ok_or_else(|| type_error("option compression must be a boolean"))?;
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The engine configuration of `Store.memory(options)`.
pub(crate) fn memory_config(opts: &JsValue) -> Result<Config, JsValue> {
    let mut config = Config::default();
    for (name, value) in options(opts, "Store options", MEMORY_OPTIONS)? {
        engine_option(&mut config, &name, &value)?;
    }
    js_result(config.validate())?;
    // A memory store writes nothing anywhere: a change is final when made, with no buffer.
    config.unbuffered = true;
    Ok(config)
}

impl OpenOptions {
    /// Reads `Store.open` options, choosing the default backend for this realm.
    pub(crate) fn parse(opts: &JsValue) -> Result<OpenOptions, JsValue> {
        let mut config = Config::default();
        let mut name = String::from("default");
        let mut path = None;
        let mut backend = None;
        let mut durability = None;
        let mut persist = false;
        let mut redis = None;
        for (option, value) in options(opts, "Store options", OPEN_OPTIONS)? {
            if engine_option(&mut config, &option, &value)? || value.is_undefined() {
                continue;
            }
            match option.as_str() {
                "name" => name = string(&value, "option name")?,
                "path" => {
                    let p = string(&value, "option path")?;
                    if p.is_empty() {
                        return Err(type_error("option path must not be empty"));
                    }
                    path = Some(p);
                }
                "redis" => redis = Some(redis_url(&value)?),
                "persist" => {
                    persist = value.as_bool().ok_or_else(|| {
                        type_error("option persist must be a boolean (true asks the browser to keep the data)")
                    })?;
                }
                "backend" => {
                    backend = Some(
                        match one_of(&value, "backend", &["indexeddb", "fs", "memory"])? {
                            "indexeddb" => BackendKind::IndexedDb,
                            "fs" => BackendKind::Fs,
                            _ => BackendKind::Memory,
                        },
                    )
                }
                _ => {
                    durability = Some(
                        match one_of(&value, "durability", &["buffered", "fsync", "strict"])? {
                            "buffered" => Durability::Buffered,
                            "fsync" => Durability::Fsync,
                            _ => Durability::Strict,
                        },
                    )
                }
            }
        }
        js_result(validate_db_name(&name))?;
        js_result(config.validate())?;
        if redis.is_some() {
            for (given, option) in [
                (backend.is_some(), "backend"),
                (path.is_some(), "path"),
                (durability.is_some(), "durability"),
                (persist, "persist"),
            ] {
                if given {
                    return Err(type_error(&format!(
                        "option {option} cannot be combined with redis: Redis is the store's backend"
                    )));
                }
            }
            backend = Some(BackendKind::Redis);
        }
        let backend = match backend {
            Some(b) => b,
            None if path.is_some() => BackendKind::Fs,
            // A store that silently keeps nothing would lose data: say which one is meant.
            None if scheduler::is_node() => {
                return Err(type_error(
                    "in Node.js, Store.open needs option path (the directory for the files, \
                     kept under path/<name>/) or backend: 'memory' for a store that keeps \
                     nothing after close",
                ))
            }
            None => BackendKind::IndexedDb,
        };
        if backend == BackendKind::Fs && path.is_none() {
            return Err(type_error(
                "option path is required with backend 'fs': the directory that holds databases",
            ));
        }
        if backend != BackendKind::Fs && path.is_some() {
            return Err(type_error("option path is only used by backend 'fs'"));
        }
        if persist && backend != BackendKind::IndexedDb {
            return Err(type_error(
                "option persist is only used by backend 'indexeddb' (browser storage)",
            ));
        }
        Ok(OpenOptions {
            name,
            path,
            backend,
            durability,
            config,
            persist,
            redis,
        })
    }
}

/// The `redis` option: a `redis://` or `rediss://` URL with a host.
fn redis_url(value: &JsValue) -> Result<String, JsValue> {
    let url = string(value, "option redis")?;
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    let host = rest
        .map(|r| r.rsplit_once('@').map_or(r, |(_, host)| host))
        .unwrap_or("");
    if host.is_empty() || host.starts_with('/') || host.starts_with(':') {
        return Err(to_js(Error::InvalidOption {
            option: "redis".into(),
            reason: format!(
                "must be a URL such as redis://host:port/ or rediss://user:password@host:port/, got {url:?}"
            ),
        }));
    }
    Ok(url)
}
