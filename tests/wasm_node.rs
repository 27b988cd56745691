//! The JS API of the wasm build, exercised under Node.js (and in the browser run too): values of
//! every kind round-trip, metadata and stats are camelCase, and bad input throws a clear
//! `TypeError`/`RangeError` and stores nothing.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Reflect, Uint8Array};
use tidekv::wasm::JsStore;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

fn js(src: &str) -> JsValue {
    js_sys::eval(src).expect("test JS evaluates")
}

fn get(obj: &JsValue, field: &str) -> JsValue {
    Reflect::get(obj, &JsValue::from_str(field)).unwrap()
}

fn store() -> JsStore {
    JsStore::memory(JsValue::UNDEFINED).unwrap()
}

fn opts(src: &str) -> JsValue {
    js(&format!("({src})"))
}

/// Asserts the call threw an error of class `ctor` with `code`, and returns its message.
fn thrown<T>(result: Result<T, JsValue>, ctor: &str, code: &str) -> String {
    let Err(err) = result else {
        panic!("expected a throw ({ctor} {code})")
    };
    let name = get(&get(&err, "constructor"), "name").as_string().unwrap();
    assert_eq!(name, ctor, "error class");
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some(code),
        "error code"
    );
    get(&err, "message").as_string().unwrap()
}

#[wasm_bindgen_test]
fn each_value_kind_comes_back_as_stored() {
    let s = store();
    s.set(
        "bin".into(),
        Uint8Array::from(&[1u8, 2, 255][..]).into(),
        JsValue::UNDEFINED,
    )
    .unwrap();
    s.set("txt".into(), "héllo".into(), JsValue::UNDEFINED)
        .unwrap();
    s.set(
        "obj".into(),
        opts("{ a: [1, 2, { b: null }], c: 'x' }"),
        JsValue::UNDEFINED,
    )
    .unwrap();
    s.set("num".into(), JsValue::from_f64(42.5), JsValue::UNDEFINED)
        .unwrap();

    let bin = s.get("bin".into()).unwrap();
    assert_eq!(
        bin.dyn_into::<Uint8Array>().unwrap().to_vec(),
        vec![1, 2, 255]
    );
    assert_eq!(
        s.get("txt".into()).unwrap().as_string().as_deref(),
        Some("héllo")
    );
    let obj = s.get("obj".into()).unwrap();
    assert_eq!(
        js_sys::JSON::stringify(&obj).unwrap(),
        "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}"
    );
    assert_eq!(s.get("num".into()).unwrap().as_f64(), Some(42.5));
    assert!(s.get("missing".into()).unwrap().is_undefined());
}

#[wasm_bindgen_test]
fn metadata_and_tags_are_reported_in_camel_case() {
    let s = store();
    s.set(
        "k".into(),
        "v".into(),
        opts("{ ttl: 60000, tags: ['b', 'a', 'b'] }"),
    )
    .unwrap();
    let got = s.get_with_metadata("k".into()).unwrap();
    assert_eq!(get(&got, "value").as_string().as_deref(), Some("v"));
    let meta = get(&got, "metadata");
    assert_eq!(get(&meta, "size").as_f64(), Some(1.0));
    assert_eq!(get(&meta, "storedSize").as_f64(), Some(1.0));
    assert_eq!(get(&meta, "kind").as_string().as_deref(), Some("text"));
    let created = get(&meta, "createdAt").as_f64().unwrap();
    assert_eq!(get(&meta, "updatedAt").as_f64(), Some(created));
    assert_eq!(get(&meta, "expiresAt").as_f64(), Some(created + 60_000.0));
    assert_eq!(
        js_sys::JSON::stringify(&get(&meta, "tags")).unwrap(),
        "[\"a\",\"b\"]"
    );

    let ttl = s.ttl("k".into()).unwrap().as_f64().unwrap();
    assert!(ttl > 0.0 && ttl <= 60_000.0, "ttl {ttl}");
    assert!(s.persist("k".into()).unwrap());
    assert!(s.ttl("k".into()).unwrap().is_undefined());
    assert!(s.expire("k".into(), JsValue::from_f64(5_000.0)).unwrap());
    assert!(!s.expire("nope".into(), JsValue::from_f64(5_000.0)).unwrap());

    let listed = js_sys::JSON::stringify(&s.list_tags().unwrap()).unwrap();
    assert_eq!(
        listed,
        "[{\"tag\":\"a\",\"count\":1},{\"tag\":\"b\",\"count\":1}]"
    );
    let found = s.query_by_tags(opts("['a', 'b']")).unwrap();
    assert_eq!(js_sys::JSON::stringify(&found).unwrap(), "[\"k\"]");
}

#[wasm_bindgen_test]
fn keys_has_delete_and_namespaces_behave_like_rust() {
    let s = store();
    for k in ["user:2", "user:1", "post:1"] {
        s.set(k.into(), "x".into(), JsValue::UNDEFINED).unwrap();
    }
    let users = s.namespace("users".into()).unwrap();
    users
        .set("user:9".into(), "y".into(), JsValue::UNDEFINED)
        .unwrap();
    assert_eq!(
        js_sys::JSON::stringify(&s.keys("user:".into()).unwrap()).unwrap(),
        "[\"user:1\",\"user:2\"]"
    );
    assert_eq!(
        Array::from(&s.keys(JsValue::UNDEFINED).unwrap()).length(),
        3
    );
    assert_eq!(
        js_sys::JSON::stringify(&users.keys(JsValue::UNDEFINED).unwrap()).unwrap(),
        "[\"user:9\"]"
    );
    assert!(s.has("post:1".into()).unwrap());
    assert!(s.delete("post:1".into()).unwrap());
    assert!(!s.delete("post:1".into()).unwrap());
    assert!(!s.has("post:1".into()).unwrap());
    assert!(!users.has("user:1".into()).unwrap());

    let stats = s.stats();
    assert_eq!(get(&stats, "keys").as_f64(), Some(3.0));
    assert_eq!(get(&stats, "sets").as_f64(), Some(4.0));
    // A memory store writes nowhere, so it keeps no write buffer.
    assert_eq!(get(&stats, "bufferBytes").as_f64(), Some(0.0));
    assert!(get(&stats, "lastError").is_null());
}

#[wasm_bindgen_test]
fn bad_keys_throw_and_store_nothing() {
    let s = store();
    for key in ["42", "null", "undefined", "({})", "Symbol('k')"] {
        let msg = thrown(
            s.set(js(key), "v".into(), JsValue::UNDEFINED),
            "TypeError",
            "InvalidType",
        );
        assert!(msg.contains("key must be a string"), "{msg}");
    }
    thrown(
        s.set("".into(), "v".into(), JsValue::UNDEFINED),
        "RangeError",
        "InvalidKey",
    );
    thrown(
        s.set(js("'a\\uD800'"), "v".into(), JsValue::UNDEFINED),
        "TypeError",
        "InvalidType",
    );
    thrown(s.get(JsValue::from_f64(1.0)), "TypeError", "InvalidType");
    assert_eq!(get(&s.stats(), "keys").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
fn bad_ttls_throw_range_or_type_errors_and_store_nothing() {
    let s = store();
    for ttl in ["NaN", "-1", "0", "Infinity", "-Infinity"] {
        let msg = thrown(
            s.set("k".into(), "v".into(), opts(&format!("{{ ttl: {ttl} }}"))),
            "RangeError",
            "InvalidTtl",
        );
        assert!(msg.contains("ttl"), "{msg}");
    }
    thrown(
        s.set("k".into(), "v".into(), opts("{ ttl: '10' }")),
        "TypeError",
        "InvalidType",
    );
    thrown(s.expire("k".into(), js("NaN")), "RangeError", "InvalidTtl");
    assert!(!s.has("k".into()).unwrap());
}

#[wasm_bindgen_test]
fn unstorable_values_throw_clear_errors_and_store_nothing() {
    let s = store();
    let cases = [
        ("(function f() {})", "TypeError", "function"),
        (
            "({ a: () => 1 })",
            "TypeError",
            "function (at property \"a\")",
        ),
        ("10n", "TypeError", "BigInt"),
        ("({ n: 10n })", "TypeError", "BigInt"),
        (
            "(() => { const o = {}; o.self = o; return o; })()",
            "TypeError",
            "not JSON-serialisable",
        ),
        ("undefined", "TypeError", "undefined"),
        ("NaN", "RangeError", "NaN"),
        ("new Map()", "TypeError", "Map"),
        ("new Float32Array(2)", "TypeError", "Uint8Array"),
        ("new Date(0)", "TypeError", "cannot store a Date"),
        (
            "({ at: new Date(0) })",
            "TypeError",
            "Date (at property \"at\")",
        ),
    ];
    for (src, ctor, needle) in cases {
        let Err(err) = s.set("k".into(), js(src), JsValue::UNDEFINED) else {
            panic!("{src} was stored")
        };
        let name = get(&get(&err, "constructor"), "name").as_string().unwrap();
        let msg = get(&err, "message").as_string().unwrap();
        assert_eq!(name, ctor, "{src}: {msg}");
        assert!(msg.contains(needle), "{src}: {msg}");
    }
    assert!(!s.has("k".into()).unwrap());
}

#[wasm_bindgen_test]
fn unknown_or_ill_typed_options_throw_naming_the_option() {
    let msg = thrown(
        JsStore::memory(opts("{ bufferSise: 10 }")),
        "TypeError",
        "InvalidType",
    );
    assert!(msg.contains("bufferSise"), "{msg}");
    thrown(
        JsStore::memory(opts("{ bufferSize: 'big' }")),
        "TypeError",
        "InvalidType",
    );
    thrown(
        JsStore::memory(opts("{ bufferSize: -5 }")),
        "RangeError",
        "InvalidOption",
    );
    let s = store();
    let msg = thrown(
        s.set("k".into(), "v".into(), opts("{ tll: 5 }")),
        "TypeError",
        "InvalidType",
    );
    assert!(msg.contains("tll"), "{msg}");
    thrown(
        s.set("k".into(), "v".into(), opts("{ tags: 'a' }")),
        "TypeError",
        "InvalidType",
    );
    thrown(
        s.set("k".into(), "v".into(), opts("{ tags: [1] }")),
        "TypeError",
        "InvalidType",
    );
    thrown(
        s.set("k".into(), "v".into(), opts("{ tags: [''] }")),
        "RangeError",
        "InvalidName",
    );
    assert!(!s.has("k".into()).unwrap());
}

#[wasm_bindgen_test]
fn too_large_values_throw_value_too_large() {
    let s = JsStore::memory(opts("{ maxValueSize: 4 }")).unwrap();
    s.set("ok".into(), "1234".into(), JsValue::UNDEFINED)
        .unwrap();
    thrown(
        s.set("big".into(), "12345".into(), JsValue::UNDEFINED),
        "RangeError",
        "ValueTooLarge",
    );
    assert!(!s.has("big".into()).unwrap());
}

#[wasm_bindgen_test]
async fn closed_store_throws_closed() {
    let s = store();
    s.set("k".into(), "v".into(), JsValue::UNDEFINED).unwrap();
    wasm_bindgen_futures::JsFuture::from(s.flush())
        .await
        .unwrap();
    // Nothing to write: a memory store's flush resolves without a batch.
    assert_eq!(get(&s.stats(), "flushes").as_f64(), Some(0.0));
    wasm_bindgen_futures::JsFuture::from(s.close())
        .await
        .unwrap();
    thrown(s.get("k".into()), "Error", "Closed");
}

async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout: js_sys::Function = get(&global, "setTimeout").dyn_into().unwrap();
        set_timeout
            .call2(&JsValue::UNDEFINED, &resolve, &JsValue::from(ms))
            .unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
async fn expire_listeners_hear_lazy_expiry_as_the_change_event() {
    let s = store();
    let seen = js("globalThis.__tidekvSeen = []");
    // The same event object as 'change' gets: `{ key, namespace, op, remote }`.
    let listener = js("(e) => globalThis.__tidekvSeen.push(`${e.key}@${e.namespace}/${e.op}/${e.remote}/${Object.keys(e).sort()}`)");
    s.on("expire".into(), listener.clone()).unwrap();
    let jobs = s.namespace("jobs".into()).unwrap();
    s.set("a".into(), "1".into(), opts("{ ttl: 1 }")).unwrap();
    jobs.set("b".into(), "2".into(), opts("{ ttl: 1 }"))
        .unwrap();
    sleep_ms(5).await;
    assert!(s.get("a".into()).unwrap().is_undefined());
    assert!(!jobs.has("b".into()).unwrap());
    // Both keys share one deadline: their events may come in either order.
    let mut events: Vec<String> = Array::from(&seen)
        .iter()
        .map(|e| e.as_string().unwrap())
        .collect();
    events.sort();
    assert_eq!(
        events,
        [
            "a@/expire/false/key,namespace,op,remote",
            "b@jobs/expire/false/key,namespace,op,remote"
        ]
    );
    s.off("expire".into(), listener).unwrap();
    s.set("c".into(), "3".into(), opts("{ ttl: 1 }")).unwrap();
    sleep_ms(5).await;
    assert!(!s.has("c".into()).unwrap());
    assert_eq!(Array::from(&seen).length(), 2);
}

#[wasm_bindgen_test]
fn listeners_need_a_known_event_and_a_function() {
    let s = store();
    let msg = thrown(
        s.on("expired".into(), js("() => {}")),
        "TypeError",
        "InvalidType",
    );
    assert!(msg.contains("expired"), "{msg}");
    thrown(
        s.on("error".into(), "not a function".into()),
        "TypeError",
        "InvalidType",
    );
}

#[wasm_bindgen_test]
async fn a_flush_commits_every_earlier_write_and_closed_stores_refuse_work() {
    let s = store();
    s.set("k".into(), "v".into(), JsValue::UNDEFINED).unwrap();
    let first = s.flush();
    s.set("k2".into(), "v".into(), JsValue::UNDEFINED).unwrap();
    let second = s.flush();
    wasm_bindgen_futures::JsFuture::from(second).await.unwrap();
    wasm_bindgen_futures::JsFuture::from(first).await.unwrap();
    // A memory store keeps no buffer: both flushes resolve with nothing to write.
    let stats = s.stats();
    assert_eq!(get(&stats, "recordsFlushed").as_f64(), Some(0.0));
    assert_eq!(get(&stats, "bufferBytes").as_f64(), Some(0.0));
    assert_eq!(
        s.get("k2".into()).unwrap().as_string().as_deref(),
        Some("v")
    );
    wasm_bindgen_futures::JsFuture::from(s.close())
        .await
        .unwrap();
    let err = wasm_bindgen_futures::JsFuture::from(s.flush())
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code").as_string().as_deref(), Some("Closed"));
    let err = wasm_bindgen_futures::JsFuture::from(s.close())
        .await
        .unwrap_err();
    assert_eq!(get(&err, "code").as_string().as_deref(), Some("Closed"));
}

#[wasm_bindgen_test]
fn set_many_stores_all_entries_or_none_and_names_a_bad_one() {
    let s = store();
    s.set("old".into(), "x".into(), JsValue::UNDEFINED).unwrap();
    let keys = |s: &JsStore| -> Vec<String> {
        Array::from(&s.keys(JsValue::UNDEFINED).unwrap())
            .iter()
            .map(|k| k.as_string().unwrap())
            .collect()
    };
    // Bad entries of every sort: the whole call throws, naming the entry, and stores nothing.
    let cases = [
        ("[['a', 1], ['', 2]]", "RangeError", "InvalidKey", "entry 1"),
        (
            "[['a', 1], ['b', 2, { ttl: -1 }]]",
            "RangeError",
            "InvalidTtl",
            "entry 1",
        ),
        (
            "[['a', 1], ['b', () => 1]]",
            "TypeError",
            "InvalidType",
            "entry 1",
        ),
        (
            "[['a', 1], ['b', 2, { tags: [''] }]]",
            "RangeError",
            "InvalidName",
            "entry 1",
        ),
        ("[['a', 1], 'b']", "TypeError", "InvalidType", "entry 1"),
        ("[['a', 1], ['b']]", "TypeError", "InvalidType", "entry 1"),
        (
            "[['a', 1], ['b', 2, {}, 'extra']]",
            "TypeError",
            "InvalidType",
            "entry 1",
        ),
        (
            "[['a', 1], ['b', 2, { color: 'red' }]]",
            "TypeError",
            "InvalidType",
            "color",
        ),
        ("[[7, 1]]", "TypeError", "InvalidType", "entry 0"),
        ("{ a: 1 }", "TypeError", "InvalidType", "array"),
    ];
    for (src, ctor, code, says) in cases {
        let msg = thrown(s.set_many(opts(src)), ctor, code);
        assert!(msg.contains(says), "{src}: {msg}");
        assert!(msg.starts_with("tidekv: "), "{src}: {msg}");
        assert_eq!(keys(&s), ["old"], "{src}");
    }
    // A good batch, and a later entry for a key wins as separate calls would.
    s.set_many(opts(
        "[['a', 'text'], ['b', { n: 1 }, { ttl: 60000, tags: ['t'] }], ['c', new Uint8Array([7])], ['a', 'again']]",
    ))
    .unwrap();
    assert_eq!(keys(&s), ["a", "b", "c", "old"]);
    assert_eq!(
        s.get("a".into()).unwrap().as_string().as_deref(),
        Some("again")
    );
    assert_eq!(
        get(&s.get("b".into()).unwrap(), "n").as_f64(),
        Some(1.0),
        "JSON comes back as JSON"
    );
    assert!(s.ttl("b".into()).unwrap().as_f64().is_some());
    let tagged = Array::from(&s.query_by_tags(opts("['t']")).unwrap());
    assert_eq!(tagged.get(0).as_string().as_deref(), Some("b"));
    s.set_many(opts("[]")).unwrap();
}

#[wasm_bindgen_test]
fn delete_many_removes_all_keys_or_none_and_counts_the_live_ones() {
    let s = store();
    s.set_many(opts("[['a', 1], ['b', 2], ['c', 3]]")).unwrap();
    let msg = thrown(s.delete_many(opts("['a', 7]")), "TypeError", "InvalidType");
    assert!(msg.contains("entry 1"), "{msg}");
    let msg = thrown(s.delete_many(opts("['a', '']")), "RangeError", "InvalidKey");
    assert!(msg.contains("entry 1"), "{msg}");
    assert!(s.has("a".into()).unwrap());
    assert_eq!(
        s.delete_many(opts("['a', 'c', 'missing', 'a']")).unwrap(),
        2
    );
    let left = Array::from(&s.keys(JsValue::UNDEFINED).unwrap());
    assert_eq!(left.length(), 1);
    assert_eq!(left.get(0).as_string().as_deref(), Some("b"));
    // A namespace handle has its own.
    let ns = s.namespace("users".into()).unwrap();
    ns.set_many(opts("[['u1', 'ada']]")).unwrap();
    assert_eq!(ns.delete_many(opts("['u1', 'b']")).unwrap(), 1);
    assert!(s.has("b".into()).unwrap());
}

#[wasm_bindgen_test]
async fn the_bad_input_matrix_rows_for_javascript_values() {
    let s = store();
    s.set("before".into(), "kept".into(), JsValue::UNDEFINED)
        .unwrap();
    let long_key = JsValue::from("k".repeat(65_537));
    thrown(
        s.set(long_key, "v".into(), JsValue::UNDEFINED),
        "RangeError",
        "InvalidKey",
    );
    for ttl in ["2 ** 60", "2 ** 53", "2 ** 53 - 1", "Number.MAX_VALUE"] {
        let msg = thrown(
            s.set("k".into(), "v".into(), opts(&format!("{{ ttl: {ttl} }}"))),
            "RangeError",
            "InvalidTtl",
        );
        assert!(msg.contains("ttl") || msg.contains("TTL"), "{ttl}: {msg}");
    }
    // Namespace names are data, never paths: anything a key may be is accepted.
    for name in ["..", "a/b", "a\\b", "nul\0inside"] {
        let ns = s.namespace(name.into()).unwrap();
        ns.set("k".into(), name.into(), JsValue::UNDEFINED).unwrap();
        assert_eq!(
            ns.get("k".into()).unwrap().as_string().as_deref(),
            Some(name)
        );
    }
    let keys = Array::from(&s.keys(JsValue::UNDEFINED).unwrap());
    assert_eq!(
        keys.length(),
        1,
        "only \"before\" is in the default namespace"
    );
    // close twice, use after close.
    let ns = s.namespace("n".into()).unwrap();
    wasm_bindgen_futures::JsFuture::from(s.close())
        .await
        .unwrap();
    let again = wasm_bindgen_futures::JsFuture::from(s.close()).await;
    assert_eq!(
        get(&again.unwrap_err(), "code").as_string().as_deref(),
        Some("Closed")
    );
    thrown(s.get("before".into()), "Error", "Closed");
    thrown(
        ns.set("k".into(), "v".into(), JsValue::UNDEFINED),
        "Error",
        "Closed",
    );
    thrown(s.set_many(opts("[['a', 1]]")), "Error", "Closed");
}

#[wasm_bindgen_test]
fn change_listeners_hear_sets_deletes_and_expiries_as_local_changes() {
    let s = store();
    let log = js("(globalThis.__tidekvChanges = [], (e) => globalThis.__tidekvChanges.push(e))");
    s.on("change".into(), log.clone()).unwrap();
    s.set("a".into(), "1".into(), opts("{ ttl: 1 }")).unwrap();
    s.namespace("users".into())
        .unwrap()
        .set("u".into(), "ada".into(), JsValue::UNDEFINED)
        .unwrap();
    s.set_many(opts("[['b', 2]]")).unwrap();
    assert_eq!(s.delete_many(opts("['b', 'missing']")).unwrap(), 1);
    // Wait past a's TTL, then read it: lazy expiry.
    let until = js_sys::Date::now() + 5.0;
    while js_sys::Date::now() < until {}
    assert!(s.get("a".into()).unwrap().is_undefined());
    let events = Array::from(&js("globalThis.__tidekvChanges"));
    let got: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}/{}/{}/{}",
                get(&e, "namespace").as_string().unwrap(),
                get(&e, "key").as_string().unwrap(),
                get(&e, "op").as_string().unwrap(),
                get(&e, "remote").as_bool().unwrap()
            )
        })
        .collect();
    // `a` expires on the first call made after its 1 ms TTL ran out: the
    // read above, or any earlier write (writes reclaim expired keys) on a slow
    // machine. So the expiry comes after `a`'s set, at a place that depends on
    // timing; every other event keeps the order of the calls.
    let expire_at = got.iter().position(|e| e == "/a/expire/false");
    assert!(
        expire_at.is_some_and(|i| i > 0),
        "one expiry of a, after its set: {got:?}"
    );
    let mut calls = got.clone();
    calls.remove(expire_at.unwrap());
    assert_eq!(
        calls,
        [
            "/a/set/false",
            "users/u/set/false",
            "/b/set/false",
            "/b/delete/false",
        ]
    );
    // off() removes the listener; a throwing listener is reported through `error`.
    s.off("change".into(), log).unwrap();
    s.set("c".into(), "3".into(), JsValue::UNDEFINED).unwrap();
    assert_eq!(Array::from(&js("globalThis.__tidekvChanges")).length(), 5);
    let errors =
        js("(globalThis.__tidekvErrors = [], (e) => globalThis.__tidekvErrors.push(e.code))");
    s.on("error".into(), errors).unwrap();
    s.on("change".into(), js("(() => { throw new Error('boom'); })"))
        .unwrap();
    s.set("d".into(), "4".into(), JsValue::UNDEFINED).unwrap();
    let codes = Array::from(&js("globalThis.__tidekvErrors"));
    assert_eq!(codes.get(0).as_string().as_deref(), Some("ListenerError"));
}

/// Awaits `promise`, returning what it settled with (`Err` if it rejected).
async fn settled(promise: js_sys::Promise) -> Result<JsValue, JsValue> {
    wasm_bindgen_futures::JsFuture::from(promise).await
}

#[wasm_bindgen_test]
fn bad_memory_caps_and_eviction_policies_are_refused() {
    for cap in ["0", "-1", "1.5", "Infinity", "NaN"] {
        let msg = thrown(
            JsStore::memory(opts(&format!("{{ maxMemory: {cap} }}"))),
            "RangeError",
            "InvalidOption",
        );
        assert!(msg.contains("maxMemory"), "{msg}");
    }
    thrown(
        JsStore::memory(opts("{ maxMemory: '1mb' }")),
        "TypeError",
        "InvalidType",
    );
    let msg = thrown(
        JsStore::memory(opts("{ eviction: 'fifo' }")),
        "TypeError",
        "InvalidType",
    );
    assert!(msg.contains("'lru', 'nearest-expiry'"), "{msg}");
    let s = JsStore::memory(opts("{ maxMemory: 2000, eviction: 'nearest-expiry' }")).unwrap();
    let stats = s.stats();
    assert_eq!(get(&stats, "evictions").as_f64(), Some(0.0));
    assert_eq!(get(&stats, "memoryBytes").as_f64(), Some(0.0));
}

#[wasm_bindgen_test]
fn a_memory_cap_evicts_with_change_events_and_counts_in_stats() {
    let s = JsStore::memory(opts("{ maxMemory: 3000 }")).unwrap();
    js("globalThis.__tidekvEvicted = []");
    s.on(
        "change".into(),
        js("(e) => e.op === 'evict' && globalThis.__tidekvEvicted.push(e.key)"),
    )
    .unwrap();
    for i in 0..50 {
        s.set(
            format!("k{i}").into(),
            "x".repeat(100).into(),
            JsValue::UNDEFINED,
        )
        .unwrap();
        assert!(get(&s.stats(), "memoryBytes").as_f64().unwrap() <= 3000.0);
    }
    let evicted = js("globalThis.__tidekvEvicted.length").as_f64().unwrap();
    assert!(evicted > 0.0);
    assert_eq!(get(&s.stats(), "evictions").as_f64(), Some(evicted));
    assert_eq!(s.size().unwrap() + evicted, 50.0);
}

#[wasm_bindgen_test]
async fn get_or_set_refuses_bad_arguments_before_the_loader_and_stores_nothing_when_it_fails() {
    let s = store();
    js("globalThis.__tidekvLoads = 0");
    let never = js("() => { globalThis.__tidekvLoads += 1; return 'v'; }");
    for (key, options, ctor, code) in [
        ("''", "undefined", "RangeError", "InvalidKey"),
        ("1", "undefined", "TypeError", "InvalidType"),
        ("'k'", "({ ttl: 0 })", "RangeError", "InvalidTtl"),
        ("'k'", "({ tags: [''] })", "RangeError", "InvalidName"),
    ] {
        let err = settled(s.get_or_set(js(key), never.clone(), js(options)))
            .await
            .unwrap_err();
        let name = get(&get(&err, "constructor"), "name").as_string();
        assert_eq!(name.as_deref(), Some(ctor), "{key} {options}");
        assert_eq!(get(&err, "code").as_string().as_deref(), Some(code));
    }
    assert_eq!(js("globalThis.__tidekvLoads").as_f64(), Some(0.0));
    let err = settled(s.get_or_set("k".into(), "v".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert!(get(&err, "message").as_string().unwrap().contains("loader"));

    let thrown_by_loader = settled(s.get_or_set(
        "k".into(),
        js("async () => { throw new Error('no data') }"),
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        get(&thrown_by_loader, "message").as_string().as_deref(),
        Some("no data")
    );
    let empty = settled(s.get_or_set("k".into(), js("() => undefined"), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(
        get(&get(&empty, "constructor"), "name")
            .as_string()
            .as_deref(),
        Some("TypeError")
    );
    assert!(!s.has("k".into()).unwrap());

    let loaded = settled(s.get_or_set("k".into(), never.clone(), opts("{ tags: ['t'] }")))
        .await
        .unwrap();
    assert_eq!(loaded.as_string().as_deref(), Some("v"));
    assert_eq!(js("globalThis.__tidekvLoads").as_f64(), Some(1.0));
    let again = settled(s.get_or_set("k".into(), never, JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(again.as_string().as_deref(), Some("v"));
    assert_eq!(js("globalThis.__tidekvLoads").as_f64(), Some(1.0));
}

#[wasm_bindgen_test]
async fn export_then_import_round_trips_every_kind_and_namespace() {
    let s = store();
    s.set(
        "bin".into(),
        js("new Uint8Array([0, 255])"),
        JsValue::UNDEFINED,
    )
    .unwrap();
    s.set("txt".into(), "a\"b\n".into(), opts("{ tags: ['t'] }"))
        .unwrap();
    s.namespace("ns".into())
        .unwrap()
        .set("j".into(), js("({ x: [1] })"), JsValue::UNDEFINED)
        .unwrap();
    let dump = settled(s.export_dump()).await.unwrap().as_string().unwrap();
    assert_eq!(dump.lines().count(), 3);
    assert!(
        dump.contains(
            r#""encoding":"base64","expires_at":null,"key":"bin","kind":"bytes","ns":"","tags":[]"#
        ),
        "{dump}"
    );
    assert!(dump.contains(r#""value":"AP8="}"#), "{dump}");
    let t = store();
    let report = settled(t.import_dump(dump.clone().into())).await.unwrap();
    assert_eq!(get(&report, "loaded").as_f64(), Some(3.0));
    let bin: Uint8Array = t.get("bin".into()).unwrap().dyn_into().unwrap();
    assert_eq!(bin.to_vec(), vec![0, 255]);
    assert_eq!(
        t.get("txt".into()).unwrap().as_string().as_deref(),
        Some("a\"b\n")
    );
    let j = t.namespace("ns".into()).unwrap().get("j".into()).unwrap();
    assert_eq!(js_sys::JSON::stringify(&j).unwrap(), "{\"x\":[1]}");
    let cut = &dump[..dump.len() - 5];
    let err = settled(store().import_dump(cut.into())).await.unwrap_err();
    let msg = get(&err, "message").as_string().unwrap();
    assert!(msg.starts_with("tidekv: import: line 3: "), "{msg}");
}

#[wasm_bindgen_test]
async fn close_on_a_namespace_handle_rejects_and_the_store_stays_open() {
    let s = store();
    let jobs = s.namespace("jobs".into()).unwrap();
    jobs.set("k".into(), "v".into(), JsValue::UNDEFINED)
        .unwrap();
    let err = wasm_bindgen_futures::JsFuture::from(jobs.close())
        .await
        .expect_err("a handle's close() rejects");
    assert_eq!(
        get(&get(&err, "constructor"), "name")
            .as_string()
            .as_deref(),
        Some("TypeError")
    );
    assert_eq!(
        get(&err, "code").as_string().as_deref(),
        Some("InvalidType")
    );
    let msg = get(&err, "message").as_string().unwrap();
    assert!(msg.contains("namespace handle"), "{msg}");
    assert_eq!(
        jobs.get("k".into()).unwrap().as_string().as_deref(),
        Some("v")
    );
    s.set("k".into(), "still open".into(), JsValue::UNDEFINED)
        .unwrap();
    wasm_bindgen_futures::JsFuture::from(s.close())
        .await
        .unwrap();
    thrown(jobs.get("k".into()), "Error", "Closed");
}
