//! `tidekv`: look inside a tidekv database, and change it, from the command line.
//!
//! A thin layer over [`tidekv::Store::open`]: parse the arguments, run one command, close the
//! store (flushing with fsync), and map the outcome to an exit code — 0 success, 1 the key was
//! not found, 2 bad usage, 3 any other error (the message goes to stderr).

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// Store VALUE under KEY, replacing its value, TTL and tags. The value is stored as text,
    /// or with --json as JSON; `-` reads it from stdin (text if UTF-8, else bytes).
    Set {
        /// The key.
        key: String,
        /// The value; `-` reads it from stdin. Leave it out with --file.
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Read the value from this file (text if UTF-8, else bytes).
        #[arg(long, conflicts_with = "value", value_name = "PATH")]
        file: Option<PathBuf>,
        /// Store the value as JSON (checked first; JavaScript reads back the parsed value).
        #[arg(long)]
        json: bool,
        /// Expire the key after this long (e.g. 10s, 5m, 1h30m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        /// Tags for the key: repeat the option, or separate them with commas (a,b).
        #[arg(long = "tag", value_name = "TAG", value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Print the value under KEY (exit code 1 if there is none). Binary data is not written to
    /// a terminal unless --raw is given.
    Get {
        /// The key.
        key: String,
        /// Write binary values to a terminal too.
        #[arg(long)]
        raw: bool,
    },
    /// Delete KEY (exit code 1 if there was none).
    Del {
        /// The key.
        key: String,
    },
    /// Exit with code 0 if KEY holds a live value, 1 if not (prints nothing).
    Exists {
        /// The key.
        key: String,
    },
    /// Print KEY's metadata as a JSON line: kind, size, tags, created/updated/expiry times.
    Meta {
        /// The key.
        key: String,
    },
    /// Print the time KEY has left, or `none` if it has no TTL (exit code 1 if no key).
    Ttl {
        /// The key.
        key: String,
    },
    /// Make KEY expire TTL from now, keeping its value and tags (exit code 1 if no key).
    Expire {
        /// The key.
        key: String,
        /// How long from now (e.g. 10s, 5m, 1h30m).
        #[arg(value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Remove KEY's TTL (exit code 1 if no key).
    Persist {
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
        /// Tags the keys must all carry (repeat, or separate with commas).
        #[arg(required = true, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Print counters of the store and its files.
    Stats,
    /// Rewrite the log with only live records and print what it reclaimed.
    Compact,
    /// Print every live entry of every namespace as JSON lines (values base64 when not UTF-8).
    Dump,
    /// Load JSON lines written by `dump` (from FILE, or stdin when FILE is absent or `-`).
    /// A line needs only `key` and `value`; `ns`, `kind`, `encoding`, `tags` and `expires_at`
    /// default to the default namespace, text (JSON for a non-string value), UTF-8, none, none.
    Load {
        /// The dump file.
        file: Option<PathBuf>,
    },
}

impl Command {
    /// Whether the command only reads: it must find a database, never create one.
    fn reads_only(&self) -> bool {
        !matches!(
            self,
            Command::Set { .. }
                | Command::Del { .. }
                | Command::Expire { .. }
                | Command::Persist { .. }
                | Command::Load { .. }
        )
    }
}

/// How a command ended, besides success.
enum Failure {
    NotFound(String),
    /// Exit code 1 with nothing printed (`exists` of a missing key).
    Silent,
    /// Bad input: exit code 2, like a usage error.
    Usage(String),
    Error(String),
}

impl From<tidekv::Error> for Failure {
    fn from(e: tidekv::Error) -> Self {
        use tidekv::Error as E;
        match e {
            E::InvalidKey(_)
            | E::InvalidTtl(_)
            | E::InvalidName { .. }
            | E::InvalidOption { .. }
            | E::ValueTooLarge { .. }
            | E::Json(_) => Failure::Usage(e.to_string()),
            e => Failure::Error(e.to_string()),
        }
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
        Err(Failure::Silent) => ExitCode::from(1),
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
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
    tidekv::core::log::validate_db_name(&cli.db)?;
    let db = cli.dir.join(&cli.db);
    if cli.command.reads_only() && !db.is_dir() {
        return Err(Failure::Error(format!(
            "no database at {} (`set` or `load` creates one; check --dir and --db)",
            db.display()
        )));
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
            file,
            json,
            ttl,
            tags,
        } => {
            let bytes = match (value.as_deref(), file) {
                (_, Some(path)) => std::fs::read(path)?,
                (Some("-"), None) => {
                    let mut buf = Vec::new();
                    io::Read::read_to_end(&mut io::stdin().lock(), &mut buf)?;
                    buf
                }
                (Some(text), None) => text.as_bytes().to_vec(),
                (None, None) => return Err(Failure::Usage("no value given".into())),
            };
            let kind = if *json {
                serde_json::from_slice::<Value>(&bytes)
                    .map_err(|e| Failure::Usage(format!("--json: the value is not JSON: {e}")))?;
                Kind::Json
            } else if std::str::from_utf8(&bytes).is_ok() {
                Kind::Text
            } else {
                Kind::Bytes
            };
            let mut options = SetOptions::new().kind(kind).tags(tags.clone());
            if let Some(ttl) = ttl {
                options = options.ttl(*ttl);
            }
            ns.set_with(key, bytes, options)?;
        }
        Command::Get { key, raw } => {
            let value = ns.get(key)?.ok_or_else(|| Failure::NotFound(key.clone()))?;
            match std::str::from_utf8(&value) {
                Ok(text) => writeln!(out, "{text}")?,
                Err(_) if !raw && io::IsTerminal::is_terminal(&io::stdout()) => {
                    eprintln!(
                        "{key} holds {} bytes of binary data: not written to a terminal \
                         (use --raw, or redirect the output)",
                        value.len()
                    );
                }
                Err(_) => out.write_all(&value)?,
            }
        }
        Command::Del { key } => {
            if !ns.delete(key)? {
                return Err(Failure::NotFound(key.clone()));
            }
        }
        Command::Exists { key } => {
            if !ns.contains(key)? {
                return Err(Failure::Silent);
            }
        }
        Command::Meta { key } => {
            let (value, meta) = ns
                .get_with_metadata(key)?
                .ok_or_else(|| Failure::NotFound(key.clone()))?;
            let line = json!({
                "ns": ns.name(),
                "key": key,
                "kind": meta.kind.as_str(),
                "size": value.len(),
                "stored_size": meta.stored_size,
                "compressed": meta.compressed,
                "tags": meta.tags,
                "created_at": meta.created_at,
                "updated_at": meta.updated_at,
                "expires_at": meta.expires_at,
                "ttl_ms": meta.expires_at.map(|d| d.saturating_sub(now)),
            });
            writeln!(out, "{line}")?;
        }
        Command::Expire { key, ttl } => {
            if !ns.expire(key, *ttl)? {
                return Err(Failure::NotFound(key.clone()));
            }
        }
        Command::Persist { key } => {
            if !ns.persist(key)? {
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
                if let Record::Put(p) = &record {
                    writeln!(out, "{}", tidekv::core::dump::line(p))?;
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

/// One checked line of a dump: where it goes and what to store.
struct Line {
    ns: String,
    key: String,
    value: Vec<u8>,
    options: SetOptions,
}

/// Loads dump lines, all or nothing: every line is checked first (a bad one fails the load
/// naming its line number, and nothing is stored), then all of them are applied as one
/// batch per namespace, which the closing flush writes as one batch. Returns (keys loaded,
/// keys skipped because their deadline passed). Each deadline is kept exactly (the store's
/// clock is `now` for the whole command); created and updated times become the time of the
/// load.
fn load(store: &Store, input: impl BufRead, now: u64) -> Result<(u64, u64), Failure> {
    let mut lines = Vec::new();
    let mut expired = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(&line, now)
            .map_err(|why| Failure::Usage(format!("line {}: {why}", i + 1)))?
        {
            Some(line) => lines.push(line),
            None => expired += 1,
        }
    }
    // The store's own checks (keys, tags, sizes) run first on a scratch store with the same
    // limits, so a refused entry fails the load before the real store changes at all.
    apply_lines(&Store::memory(Options::default())?, &lines)?;
    apply_lines(store, &lines)?;
    Ok((lines.len() as u64, expired))
}

/// Applies `lines` as one batch per namespace.
fn apply_lines(store: &Store, lines: &[Line]) -> Result<(), Failure> {
    let mut batches: Vec<(Namespace, tidekv::WriteBatch)> = Vec::new();
    for line in lines {
        let at = match batches.iter().position(|(ns, _)| ns.name() == line.ns) {
            Some(at) => at,
            None => {
                batches.push((store.namespace(&line.ns)?, tidekv::WriteBatch::new()));
                batches.len() - 1
            }
        };
        batches[at]
            .1
            .set_with(line.key.clone(), &line.value[..], line.options.clone());
    }
    for (ns, batch) in batches {
        ns.apply(batch)?;
    }
    Ok(())
}

/// Checks one dump line (the format is `tidekv::core::dump`'s, shared with JavaScript's
/// `import`). `Ok(None)`: its deadline has passed (skipped).
fn parse_line(line: &str, now: u64) -> Result<Option<Line>, String> {
    let entry = tidekv::core::dump::parse_line(line, 0)?;
    let mut options = SetOptions::new().kind(entry.kind).tags(entry.tags);
    if let Some(deadline) = entry.expires_at {
        if deadline <= now {
            return Ok(None);
        }
        options = options.ttl(Duration::from_millis(deadline - now));
    }
    Ok(Some(Line {
        ns: entry.namespace,
        key: entry.key,
        value: entry.value.to_vec(),
        options,
    }))
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
