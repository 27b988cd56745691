//! `tidekv`: look inside a tidekv database, and change it, from the command line.
//!
//! A thin layer over [`tidekv::Store::open`]: parse the arguments, run one command, close the
//! store (flushing with fsync), and map the outcome to an exit code — 0 success, 1 the key was
//! not found, 2 bad usage, 3 any other error (the message goes to stderr).

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tidekv::{
    Clock, Kind, ManualClock, Namespace, Options, Record, SetOptions, Store, SystemClock,
};

/// Look inside and edit a tidekv database.
///
/// Values set here are stored as text. Durations are like 500ms, 10s, 5m, 2h, 1d or 1h30m (a
/// bare number is seconds).
#[derive(Parser)]
#[command(name = "tidekv", version)]
struct Cli {
    /// Directory that holds the databases.
    #[arg(long, global = true, default_value = "./tidekv-data")]
    dir: PathBuf,
    /// Database to open: a subdirectory of --dir.
    #[arg(long, global = true, default_value = "default")]
    db: String,
    /// Namespace for key commands (the default namespace when not given).
    #[arg(long, global = true, default_value = "")]
    ns: String,
    /// Use the Redis server at this URL (redis://host:port/) as the database's source of
    /// truth instead of files in --dir; --db names the database on it.
    #[cfg(feature = "redis")]
    #[arg(long, global = true, value_name = "URL")]
    redis: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store VALUE (as text) under KEY, replacing its value, TTL and tags.
    Set {
        /// The key.
        key: String,
        /// The value, stored as text.
        value: String,
        /// Expire the key after this long (e.g. 10s, 5m, 1h30m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// A tag for the key; repeat for more.
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
    },
    /// Print the value under KEY (exit code 1 if there is none).
    Get {
        /// The key.
        key: String,
    },
    /// Delete KEY (exit code 1 if there was none).
    Del {
        /// The key.
        key: String,
    },
    /// Print the time KEY has left, or `none` if it has no TTL (exit code 1 if no key).
    Ttl {
        /// The key.
        key: String,
    },
    /// List keys, sorted, optionally only those starting with PREFIX.
    Keys {
        /// Only keys starting with this.
        prefix: Option<String>,
    },
    /// List tags with their number of keys.
    Tags,
    /// List the keys that carry every one of the TAGs.
    Query {
        /// Tags the keys must all carry.
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// Print counters of the store and its files.
    Stats,
    /// Rewrite the log with only live records and print what it reclaimed.
    Compact,
    /// Print every live entry of every namespace as JSON lines (values base64 when not UTF-8).
    Dump,
    /// Load JSON lines written by `dump` (from FILE, or stdin when FILE is absent or `-`).
    Load {
        /// The dump file.
        file: Option<PathBuf>,
    },
}

/// How a command ended, besides success.
enum Failure {
    NotFound(String),
    Error(String),
}

impl From<tidekv::Error> for Failure {
    fn from(e: tidekv::Error) -> Self {
        Failure::Error(e.to_string())
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Error(e.to_string())
    }
}

/// Prints tidekv's warnings (a torn tail cut at open, corrupt records skipped) to stderr.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_lowercase();
            eprintln!("tidekv: {level}: {}", record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn main() -> ExitCode {
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Warn));
    let cli = Cli::parse();
    // One instant for the whole command, so `load` keeps each deadline to the millisecond.
    let clock = ManualClock::new(SystemClock.now_ms());
    let options = Options::default().db(cli.db.clone()).clock(clock.clone());
    let outcome = open(&cli, options).and_then(|store| {
        let result = run(&store, &cli, clock.now_ms());
        // Close even after a failed command, so the lock is released cleanly; report the
        // command's error first.
        let closed = store.close().map_err(Failure::from);
        result.and(closed)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::NotFound(what)) => {
            eprintln!("not found: {what}");
            ExitCode::from(1)
        }
        Err(Failure::Error(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(3)
        }
    }
}

/// The database the arguments name: files under --dir, or a Redis server with --redis.
fn open(cli: &Cli, options: Options) -> Result<Store, Failure> {
    #[cfg(feature = "redis")]
    if let Some(url) = &cli.redis {
        if matches!(cli.command, Command::Compact | Command::Dump) {
            return Err(Failure::Error(
                "compact and dump work on a file database, not with --redis".into(),
            ));
        }
        return Ok(Store::open_redis(url, options)?);
    }
    Ok(Store::open(&cli.dir, options)?)
}

fn run(store: &Store, cli: &Cli, now: u64) -> Result<(), Failure> {
    let ns = store.namespace(&cli.ns)?;
    let mut out = io::stdout().lock();
    match &cli.command {
        Command::Set {
            key,
            value,
            ttl,
            tags,
        } => {
            let mut options = SetOptions::new().kind(Kind::Text).tags(tags.clone());
            if let Some(ttl) = ttl {
                options = options.ttl(*ttl);
            }
            ns.set_with(key, value.clone(), options)?;
        }
        Command::Get { key } => {
            let value = ns.get(key)?.ok_or_else(|| Failure::NotFound(key.clone()))?;
            match std::str::from_utf8(&value) {
                Ok(text) => writeln!(out, "{text}")?,
                Err(_) => out.write_all(&value)?,
            }
        }
        Command::Del { key } => {
            if !ns.delete(key)? {
                return Err(Failure::NotFound(key.clone()));
            }
        }
        Command::Ttl { key } => {
            if !ns.contains(key)? {
                return Err(Failure::NotFound(key.clone()));
            }
            match ns.ttl(key)? {
                Some(left) => writeln!(out, "{}", format_duration(left))?,
                None => writeln!(out, "none")?,
            }
        }
        Command::Keys { prefix } => {
            for key in ns.keys(prefix.as_deref().unwrap_or(""))? {
                writeln!(out, "{key}")?;
            }
        }
        Command::Tags => {
            for (tag, count) in ns.list_tags()? {
                writeln!(out, "{tag}\t{count}")?;
            }
        }
        Command::Query { tags } => {
            for key in ns.query_by_tags(tags)? {
                writeln!(out, "{key}")?;
            }
        }
        Command::Stats => print_stats(store, &mut out)?,
        Command::Compact => {
            let r = store.compact()?;
            writeln!(
                out,
                "compacted {} segments ({} bytes, {} records) into {} ({} bytes, {} records): \
                 {} records dropped",
                r.segments_before,
                r.bytes_before,
                r.records_before,
                r.segments_after,
                r.bytes_after,
                r.records_after,
                r.records_dropped
            )?;
        }
        Command::Dump => {
            for record in store.snapshot()? {
                if let Some(line) = dump_line(&record) {
                    writeln!(out, "{line}")?;
                }
            }
        }
        Command::Load { file } => {
            let (loaded, expired) = match file.as_deref() {
                Some(path) if path.as_os_str() != "-" => {
                    load(store, io::BufReader::new(std::fs::File::open(path)?), now)?
                }
                _ => load(store, io::stdin().lock(), now)?,
            };
            writeln!(
                out,
                "loaded {loaded} keys ({expired} already expired, skipped)"
            )?;
        }
    }
    Ok(())
}

fn print_stats(store: &Store, out: &mut impl Write) -> io::Result<()> {
    let s = store.stats();
    let rows: [(&str, String); 9] = [
        ("keys", s.keys.to_string()),
        ("value_bytes", s.value_bytes.to_string()),
        ("buffer_bytes", s.buffer_bytes.to_string()),
        ("buffer_size", s.buffer_size.to_string()),
        ("expired", s.expired.to_string()),
        ("flushes", s.flushes.to_string()),
        ("records_flushed", s.records_flushed.to_string()),
        ("flush_failures", s.flush_failures.to_string()),
        ("last_error", s.last_error.unwrap_or_else(|| "none".into())),
    ];
    for (name, value) in rows {
        writeln!(out, "{name}: {value}")?;
    }
    if let Some(d) = store.disk_stats() {
        writeln!(out, "dir: {}", d.dir.display())?;
        for (name, value) in [
            ("segments", d.segments as u64),
            ("disk_bytes", d.disk_bytes),
            ("live_bytes", d.live_bytes),
            ("dead_bytes", d.dead_bytes),
            ("records", d.records),
            ("records_replayed", d.records_replayed),
            ("expired_at_open", d.expired_at_open),
            ("torn_tail_bytes", d.torn_tail_bytes),
            ("corrupt_records_skipped", d.corrupt_records_skipped),
        ] {
            writeln!(out, "{name}: {value}")?;
        }
    }
    Ok(())
}

/// One entry as a JSON line: `{"ns","key","kind","value","encoding","tags","expires_at",
/// "created_at","updated_at"}`; `encoding` is `utf8` or `base64`.
fn dump_line(record: &Record) -> Option<String> {
    let Record::Put(p) = record else {
        return None;
    };
    let (value, encoding) = match std::str::from_utf8(&p.value) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(&p.value),
            "base64",
        ),
    };
    let line = json!({
        "ns": p.namespace,
        "key": p.key,
        "kind": p.kind.as_str(),
        "value": value,
        "encoding": encoding,
        "tags": p.tags,
        "expires_at": p.expires_at,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    });
    Some(line.to_string())
}

/// Loads dump lines; returns (keys loaded, keys skipped because their deadline passed). Each
/// deadline is kept exactly (the store's clock is `now` for the whole command); created and
/// updated times become the time of the load.
fn load(store: &Store, input: impl BufRead, now: u64) -> Result<(u64, u64), Failure> {
    let (mut loaded, mut expired) = (0, 0);
    let mut spaces: Vec<Namespace> = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| Failure::Error(format!("line {}: {why}", i + 1));
        let entry: Value = serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
        let text = |field: &str| -> Result<&str, Failure> {
            entry[field]
                .as_str()
                .ok_or_else(|| bad(&format!("`{field}` must be a string")))
        };
        let (ns, key, raw) = (text("ns")?, text("key")?, text("value")?);
        let value = match entry["encoding"].as_str().unwrap_or("utf8") {
            "utf8" => raw.as_bytes().to_vec(),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| bad(&format!("bad base64 value: {e}")))?,
            other => return Err(bad(&format!("unknown encoding {other:?}"))),
        };
        let kind = match entry["kind"].as_str().unwrap_or("bytes") {
            "bytes" => Kind::Bytes,
            "text" => Kind::Text,
            "json" => Kind::Json,
            other => return Err(bad(&format!("unknown kind {other:?}"))),
        };
        let tags = match &entry["tags"] {
            Value::Null => Vec::new(),
            Value::Array(tags) => tags
                .iter()
                .map(|t| t.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| bad("`tags` must be strings"))?,
            _ => return Err(bad("`tags` must be an array")),
        };
        let mut options = SetOptions::new().kind(kind).tags(tags);
        match &entry["expires_at"] {
            Value::Null => {}
            deadline => {
                let deadline = deadline
                    .as_u64()
                    .ok_or_else(|| bad("`expires_at` must be ms since the epoch"))?;
                if deadline <= now {
                    expired += 1;
                    continue;
                }
                options = options.ttl(Duration::from_millis(deadline - now));
            }
        }
        let space = match spaces.iter().find(|s| s.name() == ns) {
            Some(space) => space.clone(),
            None => {
                let space = store.namespace(ns).map_err(|e| bad(&e.to_string()))?;
                spaces.push(space.clone());
                space
            }
        };
        space
            .set_with(key, value, options)
            .map_err(|e| bad(&e.to_string()))?;
        loaded += 1;
    }
    Ok((loaded, expired))
}

/// Parses `500ms`, `10s`, `5m`, `2h`, `1d`, combinations like `1h30m`, or a bare number of
/// seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 10s, 5m or 1h30m"))?;
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3_600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in {text:?} (use ms, s, m, h or d)"
                ))
            }
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    if total.is_zero() {
        return Err("a TTL must be more than zero".into());
    }
    Ok(total)
}

fn format_duration(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}
