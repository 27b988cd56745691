//! Operation sequences against a reference model, with flushes, injected write failures,
//! simulated crashes and reopens.
//!
//! A `Store` runs over `DiskBackend`, an in-memory backend that writes each batch as one frame
//! of a real segment (`encode_frame`) and replays it at open with `scan_segment`, as the file
//! log does. Each write can be told, by the input, to succeed, fail cleanly (nothing written),
//! fail after the frame landed (as a failed fsync), or tear: only a prefix of the frame lands
//! and the process "dies" there (the way redb's fuzzer stops its backend after the N-th write).
//!
//! After every operation the store's whole live state (`Store::snapshot`: values, kinds, tags,
//! deadlines, created/updated times) must equal the model's. After a crash — the store dropped
//! with its backend dead, so nothing more reaches the disk — the store is reopened over the
//! same bytes, and its state must be exactly the model as it was when the last frame fully
//! landed, less the keys expired by the reopen's time: every acknowledged write is there,
//! nothing that never landed appears, expired keys stay gone, and an atomic batch is there
//! whole or not at all (a batch is one operation, so it is wholly in a model state or not).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use tidekv::core::log::{
    encode_frame, encode_segment_header, estimate_records, scan_segment, CorruptPolicy,
};
use tidekv::{
    Backend, Batch, Error, Kind, ManualClock, Namespace, Options, Record, Replay, Result,
    SetOptions, Store, WriteBatch,
};

const NAMESPACES: [&str; 2] = ["", "n1"];
/// Index 4 (of `key % 5`) is the empty key, which every write must refuse.
const KEYS: [&str; 5] = ["a", "b", "ab", "c", ""];
const TAGS: [&str; 3] = ["t1", "t2", "t3"];
const SEGMENT_ID: u64 = 1;
const START_MS: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// The input.

#[derive(Arbitrary, Debug)]
struct Input {
    buffer_size: u16,
    flush_interval_ms: u16,
    compression: bool,
    compression_threshold: u8,
    salt: u64,
    /// What the n-th write does (writes past the end succeed).
    faults: Vec<Fault>,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Fault {
    Succeed,
    /// Nothing reaches the disk; the write fails (a full disk).
    Fail,
    /// The whole frame reaches the disk, then the write fails (a failed fsync).
    FailAfterLanding,
    /// `n % (frame length + 1)` bytes of the frame land, then the process dies.
    Tear(u16),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Bytes(Vec<u8>),
    /// Many copies of one byte: compressible, and fills the buffer.
    Run(u8, u16),
}

impl Value {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Value::Bytes(b) => b.clone(),
            Value::Run(b, n) => vec![*b; *n as usize % 4096],
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Set {
        ns: u8,
        key: u8,
        value: Value,
        /// `Some(0)` is a zero TTL, which must be refused.
        ttl_ms: Option<u16>,
        tags: Vec<u8>,
        kind: u8,
    },
    Delete {
        ns: u8,
        key: u8,
    },
    Apply {
        ns: u8,
        ops: Vec<BatchSpec>,
    },
    Get {
        ns: u8,
        key: u8,
    },
    Expire {
        ns: u8,
        key: u8,
        ttl_ms: u16,
    },
    Persist {
        ns: u8,
        key: u8,
    },
    QueryTag {
        ns: u8,
        tag: u8,
    },
    Advance(u16),
    Flush,
    Sweep,
    /// The process dies between two operations.
    Crash,
    /// A clean close, then an open of the same data.
    Reopen,
}

#[derive(Arbitrary, Debug)]
enum BatchSpec {
    Set {
        key: u8,
        value: Value,
        ttl_ms: Option<u16>,
        tags: Vec<u8>,
        kind: u8,
    },
    Delete {
        key: u8,
    },
}

fn ns_name(ns: u8) -> &'static str {
    NAMESPACES[ns as usize % NAMESPACES.len()]
}

fn key_name(key: u8) -> &'static str {
    KEYS[key as usize % KEYS.len()]
}

fn tag_list(tags: &[u8]) -> Vec<String> {
    tags.iter()
        .take(4)
        .map(|t| TAGS[*t as usize % TAGS.len()].to_string())
        .collect()
}

fn kind_of(kind: u8) -> Kind {
    Kind::from_u8(kind % 3).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The backend: a segment in memory, shared with the harness so it outlives every store.

#[derive(Default)]
struct Disk {
    /// The segment as it is on "disk": header, then frames, maybe a torn last frame.
    bytes: Vec<u8>,
    salt: u64,
    /// Frames that reached the disk whole (acknowledged or not).
    landed: u64,
    /// Writes seen by live backends, across opens: indexes `faults`.
    writes: usize,
    faults: Vec<Fault>,
    /// The process died: nothing more reaches the disk.
    dead: bool,
}

struct DiskBackend(Arc<Mutex<Disk>>);

impl Backend for DiskBackend {
    fn load(&mut self, replay: &mut dyn Replay) -> Result<()> {
        let mut disk = self.0.lock().unwrap();
        if disk.bytes.is_empty() {
            let header = encode_segment_header(SEGMENT_ID, disk.salt);
            disk.bytes.extend_from_slice(&header);
            return Ok(());
        }
        let body = disk.bytes.len() as u64;
        replay.reserve(estimate_records(&disk.bytes, body));
        let mut failed = None;
        let debug = std::env::var_os("TIDEKV_FUZZ_DEBUG").is_some();
        let scan = scan_segment(
            &disk.bytes,
            SEGMENT_ID,
            true,
            CorruptPolicy::Fail,
            &mut |r, _| {
                if debug {
                    eprintln!("replay: {r:?}");
                }
                replay
                    .record(r)
                    .inspect_err(|e| failed = Some(e.to_string()))
            },
        );
        let scan = match scan {
            Ok(scan) => scan,
            Err(e) => panic!("the segment did not replay: {e} (replay error: {failed:?})"),
        };
        assert_eq!(
            scan.id,
            Some(SEGMENT_ID),
            "the header is written whole at creation"
        );
        assert!(scan.corrupt.is_empty());
        // As the file log does: cut a torn tail off, so new frames follow the last good one.
        disk.bytes.truncate(scan.valid_len);
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<()> {
        let mut disk = self.0.lock().unwrap();
        if disk.dead {
            // The process is gone; the store's last flush on drop goes nowhere.
            return Ok(());
        }
        let fault = disk
            .faults
            .get(disk.writes)
            .copied()
            .unwrap_or(Fault::Succeed);
        if std::env::var_os("TIDEKV_FUZZ_DEBUG").is_some() {
            eprintln!("write #{} ({fault:?}): {:?}", disk.writes, batch.records);
        }
        disk.writes += 1;
        let offset = disk.bytes.len();
        let salt = disk.salt;
        let mut frame = Vec::new();
        encode_frame(
            &batch.records,
            salt,
            offset as u64,
            &mut frame,
            &mut Vec::new(),
        );
        match fault {
            Fault::Succeed => {
                disk.bytes.extend_from_slice(&frame);
                disk.landed += 1;
                Ok(())
            }
            Fault::Fail => Err(Error::Backend("injected: nothing written".into())),
            Fault::FailAfterLanding => {
                disk.bytes.extend_from_slice(&frame);
                disk.landed += 1;
                Err(Error::Backend("injected: written, then failed".into()))
            }
            Fault::Tear(n) => {
                let keep = n as usize % (frame.len() + 1);
                disk.bytes.extend_from_slice(&frame[..keep]);
                if keep == frame.len() {
                    disk.landed += 1;
                }
                disk.dead = true;
                Err(Error::Backend("injected: torn write, process died".into()))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: Vec<u8>,
    kind: Kind,
    expires_at: Option<u64>,
    tags: Vec<String>,
    created_at: u64,
    updated_at: u64,
}

impl Entry {
    fn live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|d| now < d)
    }
}

type Model = BTreeMap<(String, String), Entry>;

fn live(model: &Model, now: u64) -> Model {
    model
        .iter()
        .filter(|(_, e)| e.live(now))
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect()
}

/// A set as the model sees it; `Err` if the store must refuse it.
fn model_set(
    model: &mut Model,
    now: u64,
    ns: &str,
    key: &str,
    value: Vec<u8>,
    kind: Kind,
    ttl_ms: Option<u16>,
    tags: Vec<String>,
) -> std::result::Result<(), ()> {
    if key.is_empty() || ttl_ms == Some(0) {
        return Err(());
    }
    let slot = (ns.to_string(), key.to_string());
    let created_at = match model.get(&slot) {
        Some(old) if old.live(now) => old.created_at,
        _ => now,
    };
    let mut tags = tags;
    tags.sort();
    tags.dedup();
    model.insert(
        slot,
        Entry {
            value,
            kind,
            expires_at: ttl_ms.map(|t| now + u64::from(t)),
            tags,
            created_at,
            updated_at: now,
        },
    );
    Ok(())
}

/// A delete as the model sees it: whether a live key was removed.
fn model_delete(model: &mut Model, now: u64, ns: &str, key: &str) -> bool {
    model
        .remove(&(ns.to_string(), key.to_string()))
        .is_some_and(|e| e.live(now))
}

/// The store's whole live state, in the model's terms.
fn observed(store: &Store) -> Model {
    let mut out = Model::new();
    for record in store.snapshot().expect("snapshot") {
        let Record::Put(p) = record else {
            panic!("a snapshot holds only puts: {record:?}");
        };
        let slot = (p.namespace.clone(), p.key.clone());
        let entry = Entry {
            value: p.value.to_vec(),
            kind: p.kind,
            expires_at: p.expires_at,
            tags: p.tags,
            created_at: p.created_at,
            updated_at: p.updated_at,
        };
        assert!(
            out.insert(slot, entry).is_none(),
            "a key twice in a snapshot"
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Run {
    disk: Arc<Mutex<Disk>>,
    clock: ManualClock,
    options: Options,
    store: Option<Store>,
    model: Model,
    /// The model as it was when the last frame landed whole: what a crash must leave.
    durable: Model,
    landed: u64,
}

impl Run {
    fn now(&self) -> u64 {
        use tidekv::Clock;
        self.clock.now_ms()
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// A handle to namespace `ns`. Any call may start a flush, this one too: a frame that
    /// lands here holds the model as it is before the operation changes it.
    fn handle(&mut self, ns: &str) -> Namespace {
        let handle = self.store().namespace(ns).expect("namespace");
        self.note_landed();
        handle
    }

    /// A frame landed whole since the last look: the model as it is now is durable.
    fn note_landed(&mut self) {
        let landed = self.disk.lock().unwrap().landed;
        if landed != self.landed {
            self.landed = landed;
            self.durable = self.model.clone();
        }
    }

    fn open(&mut self) {
        let backend = DiskBackend(Arc::clone(&self.disk));
        let store = Store::with_backend(Box::new(backend), self.options.clone())
            .unwrap_or_else(|e| panic!("reopen failed: {e}"));
        self.store = Some(store);
    }

    /// The process dies now: nothing more reaches the disk, and the store is opened again.
    fn crash_and_reopen(&mut self) {
        self.disk.lock().unwrap().dead = true;
        drop(self.store.take());
        self.disk.lock().unwrap().dead = false;
        self.open();
        let now = self.now();
        let expected = live(&self.durable, now);
        let got = observed(self.store());
        assert_eq!(
            got, expected,
            "after a crash the store does not hold exactly what had landed"
        );
        self.model = expected.clone();
        self.durable = expected;
    }

    /// After every operation: a frame that landed makes the current model durable; a dead
    /// process is reopened; the store's state must equal the model's.
    fn settle(&mut self) {
        self.note_landed();
        if self.disk.lock().unwrap().dead {
            self.crash_and_reopen();
        }
        let now = self.now();
        assert_eq!(
            observed(self.store()),
            live(&self.model, now),
            "store and model disagree"
        );
    }

    fn step(&mut self, op: &Op) {
        let now = self.now();
        match op {
            Op::Set {
                ns,
                key,
                value,
                ttl_ms,
                tags,
                kind,
            } => {
                let (ns, key) = (ns_name(*ns), key_name(*key));
                let tags = tag_list(tags);
                let mut options = SetOptions::new().tags(tags.clone()).kind(kind_of(*kind));
                if let Some(ttl) = ttl_ms {
                    options = options.ttl(Duration::from_millis(u64::from(*ttl)));
                }
                let handle = self.handle(ns);
                let got = handle.set_with(key, value.bytes(), options);
                let want = model_set(
                    &mut self.model,
                    now,
                    ns,
                    key,
                    value.bytes(),
                    kind_of(*kind),
                    *ttl_ms,
                    tags,
                );
                assert_eq!(got.is_ok(), want.is_ok(), "set {ns}/{key:?}: {got:?}");
            }
            Op::Delete { ns, key } => {
                let (ns, key) = (ns_name(*ns), key_name(*key));
                let got = self.handle(ns).delete(key);
                if key.is_empty() {
                    assert!(got.is_err());
                } else {
                    let want = model_delete(&mut self.model, now, ns, key);
                    assert_eq!(got.unwrap(), want, "delete {ns}/{key}");
                }
            }
            Op::Apply { ns, ops } => {
                let ns = ns_name(*ns);
                let mut batch = WriteBatch::new();
                let mut next = self.model.clone();
                let mut valid = true;
                let mut deleted = 0;
                for spec in ops.iter().take(8) {
                    match spec {
                        BatchSpec::Set {
                            key,
                            value,
                            ttl_ms,
                            tags,
                            kind,
                        } => {
                            let key = key_name(*key);
                            let tags = tag_list(tags);
                            let mut options =
                                SetOptions::new().tags(tags.clone()).kind(kind_of(*kind));
                            if let Some(ttl) = ttl_ms {
                                options = options.ttl(Duration::from_millis(u64::from(*ttl)));
                            }
                            batch.set_with(key, value.bytes(), options);
                            let kind = kind_of(*kind);
                            valid &= model_set(
                                &mut next,
                                now,
                                ns,
                                key,
                                value.bytes(),
                                kind,
                                *ttl_ms,
                                tags,
                            )
                            .is_ok();
                        }
                        BatchSpec::Delete { key } => {
                            let key = key_name(*key);
                            batch.delete(key);
                            if key.is_empty() {
                                valid = false;
                            } else {
                                deleted += usize::from(model_delete(&mut next, now, ns, key));
                            }
                        }
                    }
                }
                let got = self.handle(ns).apply(batch);
                if valid {
                    assert_eq!(got.unwrap(), deleted, "apply: deleted count");
                    self.model = next;
                } else {
                    assert!(got.is_err(), "apply: an invalid batch was accepted");
                }
            }
            Op::Get { ns, key } => {
                let (ns, key) = (ns_name(*ns), key_name(*key));
                let got = self.handle(ns).get_with_metadata(key);
                if key.is_empty() {
                    assert!(got.is_err());
                    return;
                }
                let want = self
                    .model
                    .get(&(ns.to_string(), key.to_string()))
                    .filter(|e| e.live(now));
                match (got.unwrap(), want) {
                    (None, None) => {}
                    (Some((value, meta)), Some(e)) => {
                        assert_eq!(&value[..], &e.value[..]);
                        assert_eq!(meta.kind, e.kind);
                        assert_eq!(meta.tags, e.tags);
                        assert_eq!(meta.expires_at, e.expires_at);
                        assert_eq!(meta.created_at, e.created_at);
                        assert_eq!(meta.updated_at, e.updated_at);
                        assert_eq!(meta.size, e.value.len() as u64);
                    }
                    (got, want) => panic!("get {ns}/{key}: store {got:?}, model {want:?}"),
                }
            }
            Op::Expire { ns, key, ttl_ms } => {
                let (ns, key) = (ns_name(*ns), key_name(*key));
                let got = self
                    .handle(ns)
                    .expire(key, Duration::from_millis(u64::from(*ttl_ms)));
                if key.is_empty() || *ttl_ms == 0 {
                    assert!(got.is_err(), "expire {ns}/{key:?} {ttl_ms}");
                    return;
                }
                let slot = (ns.to_string(), key.to_string());
                let want = match self.model.get_mut(&slot).filter(|e| e.live(now)) {
                    Some(e) => {
                        let deadline = now + u64::from(*ttl_ms);
                        if e.expires_at != Some(deadline) {
                            e.expires_at = Some(deadline);
                            e.updated_at = now;
                        }
                        true
                    }
                    None => false,
                };
                assert_eq!(got.unwrap(), want, "expire {ns}/{key}");
            }
            Op::Persist { ns, key } => {
                let (ns, key) = (ns_name(*ns), key_name(*key));
                let got = self.handle(ns).persist(key);
                if key.is_empty() {
                    assert!(got.is_err());
                    return;
                }
                let slot = (ns.to_string(), key.to_string());
                let want = match self.model.get_mut(&slot).filter(|e| e.live(now)) {
                    Some(e) => {
                        if e.expires_at.is_some() {
                            e.expires_at = None;
                            e.updated_at = now;
                        }
                        true
                    }
                    None => false,
                };
                assert_eq!(got.unwrap(), want, "persist {ns}/{key}");
            }
            Op::QueryTag { ns, tag } => {
                let ns = ns_name(*ns);
                let tag = TAGS[*tag as usize % TAGS.len()];
                let got: BTreeSet<String> = self
                    .handle(ns)
                    .query_by_tags(&[tag])
                    .unwrap()
                    .into_iter()
                    .collect();
                let want: BTreeSet<String> = self
                    .model
                    .iter()
                    .filter(|((n, _), e)| n == ns && e.live(now) && e.tags.iter().any(|t| t == tag))
                    .map(|((_, k), _)| k.clone())
                    .collect();
                assert_eq!(got, want, "query_by_tags {ns} {tag}");
            }
            Op::Advance(ms) => self.clock.advance(Duration::from_millis(u64::from(*ms))),
            Op::Flush => {
                // May fail by injection; then the changes stay buffered.
                let _ = self.store().flush();
            }
            Op::Sweep => {
                self.store().sweep_expired();
            }
            Op::Crash => self.crash_and_reopen(),
            Op::Reopen => {
                let closed = self.store().close();
                self.note_landed();
                match closed {
                    Ok(()) => {
                        // A clean close left everything on disk.
                        assert_eq!(
                            live(&self.durable, now),
                            live(&self.model, now),
                            "close returned Ok with changes not written"
                        );
                        drop(self.store.take());
                        self.open();
                        assert_eq!(
                            observed(self.store()),
                            live(&self.model, now),
                            "clean reopen"
                        );
                    }
                    // A failed close keeps the store open; the process then dies.
                    Err(_) => self.crash_and_reopen(),
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    if std::env::var_os("TIDEKV_FUZZ_DEBUG").is_some() {
        eprintln!("{input:#?}");
    }
    let clock = ManualClock::new(START_MS);
    let options = Options::default()
        .clock(clock.clone())
        .buffer_size(usize::from(input.buffer_size).max(1))
        .flush_interval(Duration::from_millis(
            u64::from(input.flush_interval_ms).max(1),
        ))
        .compression(input.compression)
        .compression_threshold(usize::from(input.compression_threshold));
    let disk = Arc::new(Mutex::new(Disk {
        salt: input.salt,
        faults: input.faults,
        ..Disk::default()
    }));
    let mut run = Run {
        disk,
        clock,
        options,
        store: None,
        model: Model::new(),
        durable: Model::new(),
        landed: 0,
    };
    run.open();
    for op in input.ops.iter().take(64) {
        run.step(op);
        run.settle();
    }
    // The end: one more crash, which must keep exactly what landed.
    run.crash_and_reopen();
    let store = run.store.take().unwrap();
    store.close().expect("a close with no fault left");
});
