//! Model-based test of the engine: random sequences of operations run against the engine and
//! against a plain reference model, and every observable answer must agree — reads, TTLs, tag
//! queries, key listings, and the write buffer's content and byte count.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;
use tidekv::core::{Config, Engine, NsId, Record};
use tidekv::Kind;

const NAMESPACES: [&str; 2] = ["", "users"];
const KEYS: [&str; 4] = ["a", "ab", "b", "c"];
const TAGS: [&str; 3] = ["t1", "t2", "t3"];

#[derive(Clone, Debug)]
enum Op {
    Set {
        ns: usize,
        key: usize,
        value: Vec<u8>,
        ttl: Option<u64>,
        tags: Vec<usize>,
    },
    Get {
        ns: usize,
        key: usize,
    },
    Delete {
        ns: usize,
        key: usize,
    },
    Expire {
        ns: usize,
        key: usize,
        ttl: u64,
    },
    Persist {
        ns: usize,
        key: usize,
    },
    Advance(u64),
    Sweep(usize),
    TakeBatch,
    Ack,
    Fail,
}

fn op() -> impl Strategy<Value = Op> {
    let ns = 0..NAMESPACES.len();
    let key = 0..KEYS.len();
    prop_oneof![
        4 => (ns.clone(), key.clone(), prop::collection::vec(any::<u8>(), 0..12),
              prop::option::of(1u64..50), prop::collection::vec(0..TAGS.len(), 0..3))
            .prop_map(|(ns, key, value, ttl, tags)| Op::Set { ns, key, value, ttl, tags }),
        2 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Op::Get { ns, key }),
        1 => (ns.clone(), key.clone()).prop_map(|(ns, key)| Op::Delete { ns, key }),
        1 => (ns.clone(), key.clone(), 1u64..50).prop_map(|(ns, key, ttl)| Op::Expire { ns, key, ttl }),
        1 => (ns, key).prop_map(|(ns, key)| Op::Persist { ns, key }),
        2 => (0u64..30).prop_map(Op::Advance),
        1 => (1usize..4).prop_map(Op::Sweep),
        1 => Just(Op::TakeBatch),
        1 => Just(Op::Ack),
        1 => Just(Op::Fail),
    ]
}

#[derive(Clone, Debug)]
struct Entry {
    value: Vec<u8>,
    created_at: u64,
    updated_at: u64,
    expires_at: Option<u64>,
    tags: BTreeSet<String>,
}

type Slot = (usize, String);

#[derive(Default)]
struct Model {
    now: u64,
    map: BTreeMap<Slot, Entry>,
    dirty: BTreeSet<Slot>,
    in_flight: Option<(u64, BTreeSet<Slot>, usize)>,
}

impl Model {
    fn live(&self, slot: &Slot) -> Option<&Entry> {
        self.map
            .get(slot)
            .filter(|e| e.expires_at.is_none_or(|d| self.now < d))
    }
}

struct Harness {
    engine: Engine,
    ns: Vec<NsId>,
    model: Model,
}

impl Harness {
    fn new() -> Harness {
        let mut engine = Engine::new(Config::default()).unwrap();
        let ns = NAMESPACES
            .iter()
            .map(|n| engine.namespace(n).unwrap())
            .collect();
        Harness {
            engine,
            ns,
            model: Model {
                now: 1_000,
                ..Model::default()
            },
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.model.now;
        let m = &mut self.model;
        match op.clone() {
            Op::Set {
                ns,
                key,
                value,
                ttl,
                tags,
            } => {
                let tags: Vec<&str> = tags.iter().map(|t| TAGS[*t]).collect();
                self.engine
                    .set(
                        self.ns[ns],
                        KEYS[key],
                        Bytes::from(value.clone()),
                        Kind::Bytes,
                        ttl,
                        &tags,
                        now,
                    )
                    .unwrap();
                let slot = (ns, KEYS[key].to_string());
                let created_at = m.live(&slot).map_or(now, |e| e.created_at);
                m.map.insert(
                    slot.clone(),
                    Entry {
                        value,
                        created_at,
                        updated_at: now,
                        expires_at: ttl.map(|t| now + t),
                        tags: tags.iter().map(|t| t.to_string()).collect(),
                    },
                );
                m.dirty.insert(slot);
            }
            Op::Get { ns, key } => {
                let got = self
                    .engine
                    .get_with_metadata(self.ns[ns], KEYS[key], now)
                    .unwrap();
                let want = m.live(&(ns, KEYS[key].to_string()));
                match (got, want) {
                    (None, None) => {}
                    (Some((value, meta)), Some(e)) => {
                        assert_eq!(&value[..], &e.value[..]);
                        assert_eq!(meta.size, e.value.len() as u64);
                        assert_eq!(meta.created_at, e.created_at);
                        assert_eq!(meta.updated_at, e.updated_at);
                        assert_eq!(meta.expires_at, e.expires_at);
                        assert_eq!(meta.tags, e.tags.iter().cloned().collect::<Vec<_>>());
                    }
                    (got, want) => panic!("get {ns}/{}: engine {got:?}, model {want:?}", KEYS[key]),
                }
            }
            Op::Delete { ns, key } => {
                let slot = (ns, KEYS[key].to_string());
                let existed = m.live(&slot).is_some();
                assert_eq!(
                    self.engine.delete(self.ns[ns], KEYS[key], now).unwrap(),
                    existed
                );
                if existed {
                    m.dirty.insert(slot.clone());
                }
                m.map.remove(&slot);
            }
            Op::Expire { ns, key, ttl } => {
                let slot = (ns, KEYS[key].to_string());
                let live = m.live(&slot).is_some();
                assert_eq!(
                    self.engine
                        .expire(self.ns[ns], KEYS[key], ttl, now)
                        .unwrap(),
                    live
                );
                if live {
                    let e = m.map.get_mut(&slot).unwrap();
                    if e.expires_at != Some(now + ttl) {
                        e.expires_at = Some(now + ttl);
                        e.updated_at = now;
                        m.dirty.insert(slot);
                    }
                }
            }
            Op::Persist { ns, key } => {
                let slot = (ns, KEYS[key].to_string());
                let live = m.live(&slot).is_some();
                assert_eq!(
                    self.engine.persist(self.ns[ns], KEYS[key], now).unwrap(),
                    live
                );
                if live {
                    let e = m.map.get_mut(&slot).unwrap();
                    if e.expires_at.is_some() {
                        e.expires_at = None;
                        e.updated_at = now;
                        m.dirty.insert(slot);
                    }
                }
            }
            Op::Advance(ms) => m.now += ms,
            Op::Sweep(budget) => {
                let due = m
                    .map
                    .values()
                    .filter(|e| e.expires_at.is_some_and(|d| d <= now))
                    .count();
                let report = self.engine.sweep(now, budget);
                assert!(
                    report.expired <= budget.min(due),
                    "swept {report:?} of {due} due"
                );
                if !report.more_due {
                    let live = m.map.keys().filter(|s| m.live(s).is_some()).count() as u64;
                    assert_eq!(
                        self.engine.stats().keys,
                        live,
                        "a full sweep leaves only live keys"
                    );
                }
            }
            Op::TakeBatch => match self.engine.take_batch() {
                Some(batch) => {
                    assert!(
                        m.in_flight.is_none(),
                        "a second batch while one is in flight"
                    );
                    let keys: BTreeSet<Slot> = batch.records.iter().map(slot_of).collect();
                    assert_eq!(keys, m.dirty, "batch keys");
                    assert_eq!(
                        batch.records.len(),
                        keys.len(),
                        "a key appears once per batch"
                    );
                    assert_eq!(
                        batch.bytes,
                        batch.records.iter().map(Record::size).sum::<usize>()
                    );
                    for record in &batch.records {
                        check_record(m, record);
                    }
                    m.in_flight = Some((batch.id, std::mem::take(&mut m.dirty), batch.bytes));
                }
                None => assert!(
                    m.in_flight.is_some() || m.dirty.is_empty(),
                    "no batch though {:?} pending",
                    m.dirty
                ),
            },
            Op::Ack => {
                if let Some((id, _, _)) = m.in_flight.take() {
                    assert!(self.engine.ack(id));
                    assert!(!self.engine.ack(id), "a batch acks once");
                }
            }
            Op::Fail => {
                if let Some((id, keys, _)) = m.in_flight.take() {
                    assert!(self.engine.fail(id, "disk on fire"));
                    m.dirty.extend(keys);
                    assert_eq!(
                        self.engine.stats().last_error.as_deref(),
                        Some("disk on fire")
                    );
                }
            }
        }
        self.check_everything();
    }

    fn check_everything(&mut self) {
        let now = self.model.now;
        for (ns_idx, &ns) in self.ns.clone().iter().enumerate() {
            // Listings first (they never remove anything), then point reads.
            let live: Vec<String> = self
                .model
                .map
                .keys()
                .filter(|s| s.0 == ns_idx && self.model.live(s).is_some())
                .map(|s| s.1.clone())
                .collect();
            assert_eq!(self.engine.keys(ns, "", now).unwrap(), live, "keys()");
            let with_a: Vec<String> = live
                .iter()
                .filter(|k| k.starts_with('a'))
                .cloned()
                .collect();
            assert_eq!(
                self.engine.keys(ns, "a", now).unwrap(),
                with_a,
                "keys(\"a\")"
            );
            for query in [
                vec!["t1"],
                vec!["t2"],
                vec!["t1", "t2"],
                vec!["t1", "t2", "t3"],
            ] {
                let want: Vec<String> = live
                    .iter()
                    .filter(|k| {
                        let e = &self.model.map[&(ns_idx, (*k).clone())];
                        query.iter().all(|t| e.tags.contains(*t))
                    })
                    .cloned()
                    .collect();
                assert_eq!(
                    self.engine.query_by_tags(ns, &query, now).unwrap(),
                    want,
                    "query {query:?}"
                );
            }
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for k in &live {
                for t in &self.model.map[&(ns_idx, k.clone())].tags {
                    *counts.entry(t.clone()).or_default() += 1;
                }
            }
            assert_eq!(
                self.engine.list_tags(ns, now).unwrap(),
                counts.into_iter().collect::<Vec<_>>()
            );
            for key in KEYS {
                let want = self.model.live(&(ns_idx, key.to_string())).cloned();
                assert_eq!(
                    self.engine.contains(ns, key, now).unwrap(),
                    want.is_some(),
                    "contains {key}"
                );
                let ttl = want.and_then(|e| e.expires_at).map(|d| d - now);
                assert_eq!(self.engine.ttl(ns, key, now).unwrap(), ttl, "ttl {key}");
            }
        }
        // The buffer: exactly the model's pending keys, each with its newest state.
        let pending = self.engine.pending_records();
        let keys: BTreeSet<Slot> = pending.iter().map(slot_of).collect();
        assert_eq!(keys, self.model.dirty, "pending keys");
        for record in &pending {
            check_record(&self.model, record);
        }
        let pending_bytes: usize = pending.iter().map(Record::size).sum();
        assert_eq!(
            self.engine.pending_bytes(),
            pending_bytes,
            "pending byte count"
        );
        let in_flight = self.model.in_flight.as_ref().map_or(0, |f| f.2);
        assert_eq!(
            self.engine.stats().buffer_bytes,
            (pending_bytes + in_flight) as u64
        );
    }
}

fn slot_of(record: &Record) -> Slot {
    let ns = NAMESPACES
        .iter()
        .position(|n| *n == record.namespace())
        .unwrap();
    (ns, record.key().to_string())
}

/// A record must carry the model's newest state of its key: the exact Put for a live key; a
/// Delete for a deleted key; for an expired key, either its last Put (with a passed deadline) or
/// a Delete — both make the key absent on replay.
fn check_record(m: &Model, record: &Record) {
    let slot = slot_of(record);
    match (record, m.map.get(&slot)) {
        (Record::Delete { .. }, None) => {}
        (Record::Delete { .. }, Some(_)) if m.live(&slot).is_none() => {}
        (Record::Put(p), Some(e)) => {
            assert_eq!(&p.value[..], &e.value[..], "value of {slot:?}");
            assert_eq!(p.expires_at, e.expires_at);
            assert_eq!(p.created_at, e.created_at);
            assert_eq!(p.updated_at, e.updated_at);
            assert_eq!(p.tags, e.tags.iter().cloned().collect::<Vec<_>>());
        }
        (record, want) => panic!("record {record:?} but model has {want:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness::new();
        for op in &ops {
            h.apply(op);
        }
    }
}
