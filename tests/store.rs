//! The native `Store` over memory: the public Rust API behaves as documented.
#![cfg(not(target_arch = "wasm32"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidekv::{
    Backend, Batch, Error, Kind, ManualClock, Options, PutRecord, Record, Replay, SetOptions,
    Store, WriteBatch,
};

fn store() -> (Store, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    (
        Store::memory(Options::default().clock(clock.clone())).unwrap(),
        clock,
    )
}

#[test]
fn store_and_namespace_handles_are_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Store>();
    check::<tidekv::Namespace>();
}

#[test]
fn expired_key_is_never_returned() {
    let (s, clock) = store();
    s.set_with(
        "k",
        "v",
        SetOptions::new().ttl(Duration::from_secs(10)).tag("t"),
    )
    .unwrap();
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(s.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(s.ttl("k").unwrap(), Some(Duration::from_millis(1)));
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.get("k").unwrap(), None);
    assert!(!s.contains("k").unwrap());
    assert_eq!(s.ttl("k").unwrap(), None);
    assert!(s.keys("").unwrap().is_empty());
    assert!(s.query_by_tags(&["t"]).unwrap().is_empty());
    assert!(s.list_tags().unwrap().is_empty());
    assert_eq!(s.stats().expired_lazy, 1);
}

#[test]
fn sweep_removes_expired_keys_and_fires_callbacks() {
    let clock = ManualClock::new(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let s = Store::memory(
        Options::default()
            .clock(clock.clone())
            .sweep_budget(2)
            .on_expire(move |c: &tidekv::core::Change| {
                sink.lock()
                    .unwrap()
                    .push(format!("{}/{}", c.namespace, c.key))
            }),
    )
    .unwrap();
    let users = s.namespace("users").unwrap();
    for i in 0..5 {
        s.set_with(
            &format!("k{i}"),
            "v",
            SetOptions::new().ttl(Duration::from_millis(5)),
        )
        .unwrap();
    }
    users
        .set_with("u", "v", SetOptions::new().ttl(Duration::from_millis(5)))
        .unwrap();
    s.set("forever", "v").unwrap();
    clock.advance(Duration::from_millis(5));
    assert_eq!(
        s.sweep_expired(),
        6,
        "a sweep with a small budget still removes every due key"
    );
    assert_eq!(s.stats().keys, 1);
    assert_eq!(s.stats().expired_active, 6);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["/k0", "/k1", "/k2", "/k3", "/k4", "users/u"]);
}

#[test]
fn set_replaces_value_ttl_and_tags_but_keeps_created_at() {
    let (s, clock) = store();
    s.set_with(
        "k",
        "one",
        SetOptions::new()
            .ttl(Duration::from_secs(5))
            .tags(["a", "b"]),
    )
    .unwrap();
    let (_, first) = s.get_with_metadata("k").unwrap().unwrap();
    clock.advance(Duration::from_secs(1));
    s.set_with("k", "two", SetOptions::new().tag("c").kind(Kind::Text))
        .unwrap();
    let (value, meta) = s.get_with_metadata("k").unwrap().unwrap();
    assert_eq!(&value[..], b"two");
    assert_eq!(meta.expires_at, None);
    assert_eq!(meta.tags, ["c"]);
    assert_eq!(meta.kind, Kind::Text);
    assert_eq!(meta.created_at, first.created_at);
    assert_eq!(meta.updated_at, first.created_at + 1_000);
    assert!(s.query_by_tags(&["a"]).unwrap().is_empty());
}

#[test]
fn expire_and_persist_change_only_the_ttl() {
    let (s, clock) = store();
    s.set_with("k", "v", SetOptions::new().tag("t")).unwrap();
    assert!(s.expire("k", Duration::from_secs(2)).unwrap());
    assert_eq!(s.ttl("k").unwrap(), Some(Duration::from_secs(2)));
    assert!(s.persist("k").unwrap());
    assert_eq!(s.ttl("k").unwrap(), None);
    clock.advance(Duration::from_secs(3));
    assert_eq!(s.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(s.query_by_tags(&["t"]).unwrap(), ["k"]);
    assert!(!s.expire("missing", Duration::from_secs(1)).unwrap());
    assert!(!s.persist("missing").unwrap());
}

#[test]
fn tags_query_returns_keys_with_all_tags_sorted() {
    let (s, _) = store();
    s.set_with("c", "v", SetOptions::new().tags(["x", "y"]))
        .unwrap();
    s.set_with("a", "v", SetOptions::new().tags(["x", "y", "z"]))
        .unwrap();
    s.set_with("b", "v", SetOptions::new().tags(["x"])).unwrap();
    assert_eq!(s.query_by_tags(&["x", "y"]).unwrap(), ["a", "c"]);
    assert_eq!(s.query_by_tags(&["x"]).unwrap(), ["a", "b", "c"]);
    assert!(s.query_by_tags(&["nope"]).unwrap().is_empty());
    assert!(s.query_by_tags::<&str>(&[]).unwrap().is_empty());
    let tags = s.list_tags().unwrap();
    assert_eq!(
        tags,
        [
            ("x".to_string(), 3),
            ("y".to_string(), 2),
            ("z".to_string(), 1)
        ]
    );
}

#[test]
fn namespaces_have_their_own_keys_and_tags() {
    let (s, _) = store();
    let a = s.namespace("a").unwrap();
    let b = s.namespace("b").unwrap();
    a.set_with("k", "in a", SetOptions::new().tag("t")).unwrap();
    b.set("k", "in b").unwrap();
    assert_eq!(a.get("k").unwrap().as_deref(), Some(&b"in a"[..]));
    assert_eq!(b.get("k").unwrap().as_deref(), Some(&b"in b"[..]));
    assert_eq!(s.get("k").unwrap(), None);
    assert!(b.query_by_tags(&["t"]).unwrap().is_empty());
    assert_eq!(s.namespace("a").unwrap().keys("").unwrap(), ["k"]);
    assert_eq!(a.name(), "a");
    assert_eq!(s.stats().keys, 2);
}

#[test]
fn bad_input_is_refused_with_a_matchable_error_and_stores_nothing() {
    let (s, _) = store();
    assert!(matches!(s.set("", "v"), Err(Error::InvalidKey(_))));
    let long = "k".repeat(tidekv::MAX_KEY_LEN + 1);
    assert!(matches!(s.set(&long, "v"), Err(Error::InvalidKey(_))));
    s.set(&"k".repeat(tidekv::MAX_KEY_LEN), "v").unwrap();
    assert!(matches!(
        s.set_with("k", "v", SetOptions::new().ttl(Duration::ZERO)),
        Err(Error::InvalidTtl(_))
    ));
    assert!(matches!(
        s.expire("k", Duration::ZERO),
        Err(Error::InvalidTtl(_))
    ));
    assert!(matches!(
        s.set_with("k", "v", SetOptions::new().ttl(Duration::MAX)),
        Err(Error::InvalidTtl(_))
    ));
    assert!(matches!(
        s.set_with("k", "v", SetOptions::new().tag("")),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(s.namespace(&long), Err(Error::InvalidName { .. })));
    assert!(matches!(s.get(""), Err(Error::InvalidKey(_))));
    assert_eq!(
        s.keys("").unwrap().len(),
        1,
        "only the valid 64 KiB key was stored"
    );
}

#[test]
fn values_over_the_limit_are_refused() {
    let s = Store::memory(Options::default().max_value_size(8)).unwrap();
    s.set("ok", vec![0u8; 8]).unwrap();
    match s.set("big", vec![0u8; 9]) {
        Err(Error::ValueTooLarge { size: 9, max: 8 }) => {}
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    assert!(!s.contains("big").unwrap());
}

#[test]
fn invalid_options_are_refused_naming_the_option() {
    match Store::memory(Options::default().buffer_size(0)) {
        Err(Error::InvalidOption { option, .. }) => assert_eq!(option, "buffer_size"),
        other => panic!("expected InvalidOption, got {other:?}"),
    }
}

#[test]
fn calls_after_close_fail_with_closed() {
    let (s, _) = store();
    let ns = s.namespace("n").unwrap();
    s.set("k", "v").unwrap();
    s.close().unwrap();
    assert!(matches!(s.get("k"), Err(Error::Closed)));
    assert!(matches!(ns.set("k", "v"), Err(Error::Closed)));
    assert!(matches!(s.flush(), Err(Error::Closed)));
    assert!(matches!(s.close(), Err(Error::Closed)));
}

/// A backend that records batches and can be told to fail; at open it replays `stored`,
/// announcing `hint` records first.
#[derive(Clone, Default)]
struct Recorder {
    batches: Arc<Mutex<Vec<Vec<Record>>>>,
    fail: Arc<Mutex<bool>>,
    stored: Vec<Record>,
    hint: usize,
}

impl Backend for Recorder {
    fn load(&mut self, replay: &mut dyn Replay) -> tidekv::Result<()> {
        replay.reserve(self.hint);
        for record in &self.stored {
            replay.record(record.clone())?;
        }
        Ok(())
    }
    fn write(&mut self, batch: &Batch) -> tidekv::Result<()> {
        if *self.fail.lock().unwrap() {
            return Err(Error::Backend("disk full".into()));
        }
        self.batches.lock().unwrap().push(batch.records.clone());
        Ok(())
    }
}

fn put(namespace: &str, key: &str, value: &str) -> Record {
    Record::Put(PutRecord {
        namespace: namespace.into(),
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        kind: Kind::Text,
        created_at: 1,
        updated_at: 1,
        expires_at: None,
        tags: vec![],
        compressed: false,
    })
}

#[test]
fn a_custom_backend_replays_into_the_store_whatever_size_it_announces() {
    let stored = vec![
        put("", "a", "1"),
        put("", "b", "2"),
        put("n", "a", "3"),
        Record::Delete {
            namespace: "".into(),
            key: "b".into(),
        },
        put("", "a", "4"),
    ];
    // Far too few, far too many, and more than memory could ever hold: only a hint.
    for hint in [0, 1, 1_000_000, usize::MAX] {
        let backend = Recorder {
            stored: stored.clone(),
            hint,
            ..Recorder::default()
        };
        let s = Store::with_backend(Box::new(backend), Options::default()).unwrap();
        assert_eq!(
            s.get("a").unwrap().as_deref(),
            Some(&b"4"[..]),
            "hint {hint}"
        );
        assert_eq!(s.get("b").unwrap(), None);
        let n = s.namespace("n").unwrap();
        assert_eq!(n.get("a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(s.stats().keys, 2);
        assert_eq!(
            s.stats().buffer_bytes,
            0,
            "replayed records are not pending"
        );
    }
}

#[test]
fn a_replayed_record_the_store_refuses_fails_the_open() {
    let long = "n".repeat(tidekv::MAX_KEY_LEN + 1);
    let backend = Recorder {
        stored: vec![put("", "a", "1"), put(&long, "k", "v")],
        ..Recorder::default()
    };
    let err = Store::with_backend(Box::new(backend), Options::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
}

#[test]
fn overwriting_a_pending_key_replaces_its_bytes() {
    let s = Store::with_backend(Box::new(Recorder::default()), Options::default()).unwrap();
    s.set("k", vec![0u8; 100]).unwrap();
    let one = s.stats().buffer_bytes;
    s.set("k", vec![0u8; 100]).unwrap();
    assert_eq!(s.stats().buffer_bytes, one);
    s.set("k", vec![0u8; 50]).unwrap();
    assert_eq!(s.stats().buffer_bytes, one - 50);
    s.flush().unwrap();
    assert_eq!(s.stats().buffer_bytes, 0);
    assert_eq!(s.stats().flushes, 1);
}

#[test]
fn a_memory_store_keeps_no_write_buffer_and_flushes_nothing() {
    let (s, _) = store();
    s.set("k", vec![0u8; 100]).unwrap();
    s.set("gone", "x").unwrap();
    s.delete("gone").unwrap();
    let stats = s.stats();
    assert_eq!((stats.buffer_bytes, stats.sets, stats.deletes), (0, 2, 1));
    s.flush().unwrap();
    assert_eq!(s.stats().flushes, 0, "nothing to write, so no flush");
    assert_eq!(s.get("k").unwrap().as_deref(), Some(&[0u8; 100][..]));
    s.close().unwrap();
}

#[test]
fn a_failed_flush_keeps_the_data_and_never_overwrites_a_newer_write() {
    let backend = Recorder::default();
    let s = Store::with_backend(Box::new(backend.clone()), Options::default()).unwrap();
    s.set("k", "old").unwrap();
    s.set("other", "x").unwrap();
    *backend.fail.lock().unwrap() = true;
    assert!(matches!(s.flush(), Err(Error::Backend(_))));
    assert_eq!(s.last_error().as_deref(), Some("backend error: disk full"));
    assert_eq!(s.stats().flush_failures, 1);
    s.set("k", "new").unwrap();
    assert_eq!(s.get("k").unwrap().as_deref(), Some(&b"new"[..]));
    *backend.fail.lock().unwrap() = false;
    s.flush().unwrap();
    let batches = backend.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1);
    let mut written: Vec<(String, Vec<u8>)> = batches[0]
        .iter()
        .map(|r| match r {
            Record::Put(p) => (p.key.clone(), p.value.to_vec()),
            Record::Delete { key, .. } => panic!("unexpected delete of {key}"),
        })
        .collect();
    // Records of different keys may come in any order (the store's shards each give theirs).
    written.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(
        written,
        [
            ("other".to_string(), b"x".to_vec()),
            ("k".to_string(), b"new".to_vec())
        ]
    );
}

#[test]
fn a_full_buffer_flushes_without_an_explicit_call() {
    let backend = Recorder::default();
    let s = Store::with_backend(
        Box::new(backend.clone()),
        Options::default().buffer_size(1_000),
    )
    .unwrap();
    for i in 0..20 {
        s.set(&format!("k{i}"), vec![7u8; 100]).unwrap();
    }
    let flushed: usize = backend.batches.lock().unwrap().iter().map(Vec::len).sum();
    assert!(flushed >= 10, "only {flushed} records reached the backend");
    assert!(s.stats().buffer_bytes < 1_000);
}

#[test]
fn dropping_the_last_handle_flushes() {
    let backend = Recorder::default();
    let s = Store::with_backend(Box::new(backend.clone()), Options::default()).unwrap();
    let clone = s.clone();
    s.set("k", "v").unwrap();
    drop(s);
    assert!(
        backend.batches.lock().unwrap().is_empty(),
        "a live clone keeps the store open"
    );
    drop(clone);
    assert_eq!(backend.batches.lock().unwrap().len(), 1);
}

#[test]
fn concurrent_writers_lose_nothing() {
    let backend = Recorder::default();
    let s = Store::with_backend(
        Box::new(backend.clone()),
        Options::default().buffer_size(4_096),
    )
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    s.set(&format!("t{t}-{i}"), format!("{i}")).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.keys("").unwrap().len(), 2_000);
    let mut written = std::collections::BTreeSet::new();
    for batch in backend.batches.lock().unwrap().iter() {
        for r in batch {
            written.insert(r.key().to_string());
        }
    }
    assert_eq!(written.len(), 2_000, "every write reached the backend");
}

#[test]
fn a_write_batch_applies_all_or_nothing_and_names_no_partial_state() {
    let (s, _) = store();
    s.set("old", "x").unwrap();
    let users = s.namespace("users").unwrap();
    // One bad entry anywhere: the error is that entry's, nothing changed.
    let mut bad = tidekv::WriteBatch::new();
    bad.set("a", "1")
        .set_with("b", "2", SetOptions::new().ttl(Duration::ZERO))
        .delete("old");
    assert!(matches!(s.apply(bad), Err(Error::InvalidTtl(_))));
    let mut bad = tidekv::WriteBatch::new();
    bad.set("a", "1").delete("");
    assert!(matches!(s.apply(bad), Err(Error::InvalidKey(_))));
    let mut bad = tidekv::WriteBatch::new();
    bad.set("a", "1")
        .set_with("b", "2", SetOptions::new().tag(""));
    assert!(matches!(s.apply(bad), Err(Error::InvalidName { .. })));
    assert_eq!(s.keys("").unwrap(), ["old"]);
    // A good batch, on a namespace handle too.
    let mut batch = tidekv::WriteBatch::new();
    batch
        .set("a", "1")
        .set_with("b", "2", SetOptions::new().tag("t").kind(Kind::Text))
        .delete("old")
        .delete("never-there");
    assert_eq!((batch.len(), batch.is_empty()), (4, false));
    assert_eq!(s.apply(batch).unwrap(), 1);
    assert_eq!(s.keys("").unwrap(), ["a", "b"]);
    assert_eq!(s.query_by_tags(&["t"]).unwrap(), ["b"]);
    let mut batch = tidekv::WriteBatch::new();
    batch.set("u1", "ada").set("u2", "grace");
    users.apply(batch).unwrap();
    assert_eq!(users.keys("").unwrap(), ["u1", "u2"]);
    assert_eq!(s.apply(tidekv::WriteBatch::new()).unwrap(), 0);
}

#[test]
fn readers_see_a_write_batch_entirely_or_not_at_all() {
    let (s, _) = store();
    let keys: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (s, keys, stop) = (s.clone(), keys.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut version = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                version += 1;
                let mut batch = tidekv::WriteBatch::new();
                for key in &keys {
                    batch.set(key.clone(), version.to_le_bytes().to_vec());
                }
                s.apply(batch).unwrap();
            }
            version
        })
    };
    let mut checked = 0;
    while checked < 2_000 {
        // Every key of one snapshot belongs to the same batch.
        let snapshot = s.snapshot().unwrap();
        if snapshot.is_empty() {
            continue;
        }
        let values: Vec<&[u8]> = snapshot
            .iter()
            .map(|r| match r {
                Record::Put(p) => &p.value[..],
                Record::Delete { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(values.len(), keys.len());
        assert!(
            values.iter().all(|v| *v == values[0]),
            "a partial batch was visible"
        );
        checked += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.join().unwrap() > 0);
}

#[test]
fn an_entry_too_large_for_the_record_format_is_refused_at_set() {
    // Regression: with max_value_size at its top (4 GiB - 1), a value near the limit plus a
    // long key or a tag encoded a frame whose 32-bit lengths wrapped; the write was
    // acknowledged and then lost or made the store unopenable at replay.
    let s = Store::memory(Options::default().max_value_size(u32::MAX as u64)).unwrap();
    // Zeroed memory is only reserved, never touched: a 4 GiB value costs nothing here.
    let huge = bytes::Bytes::from(vec![0u8; u32::MAX as usize - 64]);
    let err = s.set(&"k".repeat(1_000), huge.clone()).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
    let err = s
        .set_with("k", huge, SetOptions::new().tag("t".repeat(100)))
        .unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }), "{err:?}");
    assert_eq!(s.keys("").unwrap(), Vec::<String>::new());
}

#[test]
fn a_store_without_a_syncer_reclaims_expired_keys_as_it_is_written_to() {
    // Regression: with no syncer nothing swept, so a TTL cache grew until the process died.
    let (s, clock) = store();
    for i in 0..10_000 {
        s.set_with(
            &format!("session:{i}"),
            "x",
            SetOptions::new().ttl(Duration::from_secs(1)),
        )
        .unwrap();
    }
    clock.advance(Duration::from_secs(2));
    for i in 0..5_000 {
        s.set(&format!("page:{i}"), "y").unwrap();
    }
    let stats = s.stats();
    // Each write reclaims up to tidekv::core::RECLAIM_PER_WRITE expired keys on its way.
    assert_eq!(stats.keys, 5_000, "{stats:?}");
    assert_eq!(stats.expired, 10_000);
    assert_eq!(s.keys("session:").unwrap(), Vec::<String>::new());
}

#[test]
fn change_callbacks_hear_every_set_delete_and_expiry_in_order_after_the_locks_are_released() {
    use tidekv::core::{Change, ChangeOp};
    let clock = ManualClock::new(1_700_000_000_000);
    let seen: Arc<Mutex<Vec<(String, String, ChangeOp)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let slot: Arc<Mutex<Option<Store>>> = Arc::default();
    let inner = Arc::clone(&slot);
    let s = Store::memory(
        Options::default()
            .clock(clock.clone())
            .on_change(move |c: &Change| {
                log.lock()
                    .unwrap()
                    .push((c.namespace.clone(), c.key.clone(), c.op));
                // The store's locks are released: a callback may use the store.
                if let Some(store) = inner.lock().unwrap().as_ref() {
                    store.contains(&c.key).unwrap();
                }
            }),
    )
    .unwrap();
    *slot.lock().unwrap() = Some(s.clone());
    let users = s.namespace("users").unwrap();
    s.set_with("a", "1", SetOptions::new().ttl(Duration::from_secs(5)))
        .unwrap();
    users.set("u", "ada").unwrap();
    s.expire("a", Duration::from_secs(1)).unwrap();
    assert!(
        !s.delete("missing").unwrap(),
        "a delete of nothing is no change"
    );
    let mut batch = tidekv::WriteBatch::new();
    batch.set("b", "2").delete("a");
    s.apply(batch).unwrap();
    s.set_with("c", "3", SetOptions::new().ttl(Duration::from_secs(1)))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(s.get("c").unwrap(), None); // lazy expiry
    let want = [
        ("", "a", ChangeOp::Set),
        ("users", "u", ChangeOp::Set),
        ("", "a", ChangeOp::Set), // a TTL change
        ("", "b", ChangeOp::Set),
        ("", "a", ChangeOp::Delete),
        ("", "c", ChangeOp::Set),
        ("", "c", ChangeOp::Expire),
    ];
    let got = seen.lock().unwrap().clone();
    let want: Vec<(String, String, ChangeOp)> = want
        .iter()
        .map(|(ns, k, op)| (ns.to_string(), k.to_string(), *op))
        .collect();
    assert_eq!(got, want);
    *slot.lock().unwrap() = None;
}

#[test]
fn a_replay_at_open_is_not_a_change() {
    let seen: Arc<Mutex<usize>> = Arc::default();
    let count = Arc::clone(&seen);
    let backend = Recorder {
        stored: vec![put("", "a", "1"), put("ns", "b", "2")],
        ..Recorder::default()
    };
    let s = Store::with_backend(
        Box::new(backend),
        Options::default().on_change(move |_| *count.lock().unwrap() += 1),
    )
    .unwrap();
    assert_eq!(s.keys("").unwrap(), ["a"]);
    assert_eq!(*seen.lock().unwrap(), 0);
    s.set("c", "3").unwrap();
    assert_eq!(*seen.lock().unwrap(), 1);
}

/// A source-of-truth backend over a shared map, counting fetches; `load` must never be called.
#[derive(Clone, Default)]
struct Truth {
    map: Arc<Mutex<std::collections::BTreeMap<(String, String), Record>>>,
    fetches: Arc<Mutex<usize>>,
    fail: Arc<Mutex<bool>>,
}

impl Backend for Truth {
    fn role(&self) -> tidekv::Role {
        tidekv::Role::SourceOfTruth
    }
    fn load(&mut self, _: &mut dyn Replay) -> tidekv::Result<()> {
        panic!("a source of truth is never replayed at open");
    }
    fn write(&mut self, batch: &Batch) -> tidekv::Result<()> {
        let mut map = self.map.lock().unwrap();
        for record in &batch.records {
            let at = (record.namespace().to_string(), record.key().to_string());
            match record {
                Record::Put(_) => map.insert(at, record.clone()),
                Record::Delete { .. } => map.remove(&at),
            };
        }
        Ok(())
    }
    fn fetch(&mut self, namespace: &str, key: &str) -> tidekv::Result<Option<Record>> {
        if *self.fail.lock().unwrap() {
            return Err(Error::Backend("connection refused".into()));
        }
        *self.fetches.lock().unwrap() += 1;
        let at = (namespace.to_string(), key.to_string());
        Ok(self.map.lock().unwrap().get(&at).cloned())
    }
}

#[test]
fn a_source_of_truth_is_asked_on_a_miss_and_never_replayed() {
    // Regression: the store ignored the role, replayed every backend at open and never fetched.
    let truth = Truth::default();
    truth.map.lock().unwrap().insert(
        ("".into(), "there".into()),
        put("", "there", "from the source"),
    );
    truth
        .map
        .lock()
        .unwrap()
        .insert(("users".into(), "ada".into()), put("users", "ada", "Ada"));
    let s = Store::with_backend(Box::new(truth.clone()), Options::default()).unwrap();
    let fetches = || *truth.fetches.lock().unwrap();
    assert_eq!(fetches(), 0, "nothing is loaded at open");
    // A miss asks the backend once; the answer is kept.
    assert_eq!(
        s.get("there").unwrap().as_deref(),
        Some(&b"from the source"[..])
    );
    assert_eq!(
        s.get("there").unwrap().as_deref(),
        Some(&b"from the source"[..])
    );
    assert_eq!(fetches(), 1);
    assert_eq!(
        s.namespace("users").unwrap().get("ada").unwrap().as_deref(),
        Some(&b"Ada"[..])
    );
    assert_eq!(s.get("nowhere").unwrap(), None);
    // What the source holds past its deadline is never served.
    let mut stale = put("", "stale", "old");
    if let Record::Put(p) = &mut stale {
        p.expires_at = Some(2);
    }
    truth
        .map
        .lock()
        .unwrap()
        .insert(("".into(), "stale".into()), stale);
    assert_eq!(s.get("stale").unwrap(), None);
    // A delete of a key only the backend holds reaches the backend.
    assert!(s.namespace("users").unwrap().delete("ada").unwrap());
    s.flush().unwrap();
    assert!(!truth
        .map
        .lock()
        .unwrap()
        .contains_key(&("users".into(), "ada".into())));
    // A pending local delete is never undone by a fetch.
    s.delete("there").unwrap();
    assert_eq!(s.get("there").unwrap(), None);
    assert!(!s.contains("there").unwrap());
    s.flush().unwrap();
    // Writes land in the backend; a fetch error is the read's error, naming the cause.
    s.set("new", "v").unwrap();
    s.flush().unwrap();
    assert!(truth
        .map
        .lock()
        .unwrap()
        .contains_key(&("".into(), "new".into())));
    *truth.fail.lock().unwrap() = true;
    let err = s.get("unknown").unwrap_err();
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert_eq!(
        s.get("new").unwrap().as_deref(),
        Some(&b"v"[..]),
        "cached keys need no fetch"
    );
}

#[test]
fn a_write_batch_over_many_keys_is_seen_whole_and_lands_in_one_backend_write() {
    let backend = Recorder::default();
    let batches = Arc::clone(&backend.batches);
    let s = Store::with_backend(Box::new(backend), Options::default()).unwrap();
    let reader = {
        let s = s.clone();
        std::thread::spawn(move || {
            // Keys spread over every shard; a listing sees all of the batch or none of it.
            loop {
                let n = s.keys("b:").unwrap().len();
                assert!(n == 0 || n == 500, "a listing saw part of a batch: {n}");
                if n == 500 {
                    break;
                }
            }
        })
    };
    let mut batch = WriteBatch::new();
    for i in 0..500 {
        batch.set(format!("b:{i:03}"), "v");
    }
    s.apply(batch).unwrap();
    reader.join().unwrap();
    s.flush().unwrap();
    let written = batches.lock().unwrap();
    assert_eq!(written.len(), 1, "one flush, one write");
    assert_eq!(written[0].len(), 500);
    assert_eq!(s.stats().flushes, 1);
}

#[test]
fn a_refused_op_anywhere_in_a_batch_leaves_every_key_untouched() {
    let (s, _) = store();
    let mut batch = WriteBatch::new();
    for i in 0..100 {
        batch.set(format!("k{i:02}"), "v");
    }
    batch.set("", "no key").set("k-last", "v");
    assert!(matches!(s.apply(batch), Err(Error::InvalidKey { .. })));
    assert_eq!(s.len().unwrap(), 0);
    // The first refused op is the one reported, wherever its key lives.
    for first in 0..20 {
        let mut batch = WriteBatch::new();
        for i in 0..20 {
            if i == first {
                batch.set("", "no key");
            } else if i > first {
                // Refused too (an empty tag), but later: never the error reported.
                batch.set_with(format!("t{i}"), "v", SetOptions::new().tags([""]));
            } else {
                batch.set(format!("t{i}"), "v");
            }
        }
        assert!(matches!(s.apply(batch), Err(Error::InvalidKey { .. })));
    }
    assert_eq!(s.len().unwrap(), 0);
}

#[test]
fn listings_cover_every_key_once_sorted_with_tags_counted_once() {
    let (s, _) = store();
    let other = s.namespace("other").unwrap();
    let tagged = SetOptions::new().tags(["t"]);
    for i in (0..1_000).rev() {
        s.set_with(&format!("k{i:04}"), "v", tagged.clone())
            .unwrap();
        other.set(&format!("o{i:04}"), "w").unwrap();
    }
    let want: Vec<String> = (0..1_000).map(|i| format!("k{i:04}")).collect();
    assert_eq!(s.keys("").unwrap(), want);
    assert_eq!(s.query_by_tags(&["t"]).unwrap(), want);
    assert_eq!(s.list_tags().unwrap(), [("t".to_string(), 1_000)]);
    assert_eq!((s.len().unwrap(), other.len().unwrap()), (1_000, 1_000));
    let mut walked: Vec<String> = s.entries("k").unwrap().map(|e| e.unwrap().0).collect();
    walked.sort();
    assert_eq!(walked, want);
    // A snapshot: namespaces in creation order, keys sorted within each.
    let snap: Vec<(String, String)> = s
        .snapshot()
        .unwrap()
        .iter()
        .map(|r| (r.namespace().to_string(), r.key().to_string()))
        .collect();
    assert_eq!(snap.len(), 2_000);
    assert!(snap[..1_000].iter().all(|(ns, _)| ns.is_empty()));
    assert!(snap
        .windows(2)
        .all(|w| w[0] < w[1] || w[0].0.is_empty() && !w[1].0.is_empty()));
    assert_eq!(s.clear().unwrap(), 1_000);
    assert!(s.is_empty().unwrap());
    assert_eq!(s.stats().keys, 1_000, "the other namespace stays");
}
