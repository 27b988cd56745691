//! One data model across targets, from the Rust side: a value keeps its kind — text is
//! `Kind::Text` (a `string` in JavaScript), byte buffers `Kind::Bytes` (a `Uint8Array`), JSON
//! `Kind::Json` — and borrowed values of any lifetime are accepted.
#![cfg(not(target_arch = "wasm32"))]

use tidekv::{Bytes, Json, Kind, Options, SetOptions, Store, WriteBatch};

fn kind(store: &Store, key: &str) -> Kind {
    store.get_with_metadata(key).unwrap().unwrap().1.kind
}

#[test]
fn text_is_stored_as_text_and_buffers_as_bytes_borrowed_or_owned() {
    let store = Store::memory(Options::default()).unwrap();
    let owned = String::from("hello");
    let buf: Vec<u8> = vec![0, 1, 255];
    store.set("str", "hello").unwrap();
    store.set("string", owned.clone()).unwrap();
    store.set("&string", &owned).unwrap();
    store.set("slice", &buf[..]).unwrap();
    store.set("&vec", &buf).unwrap();
    store.set("vec", buf.clone()).unwrap();
    store.set("array", [1u8, 2, 3]).unwrap();
    store.set("bytes", Bytes::from_static(b"raw")).unwrap();
    store.set("json", Json(r#"{"a":1}"#.into())).unwrap();
    for key in ["str", "string", "&string"] {
        assert_eq!(kind(&store, key), Kind::Text, "{key}");
        assert_eq!(store.get(key).unwrap().as_deref(), Some(&b"hello"[..]));
    }
    for key in ["slice", "&vec", "vec", "array", "bytes"] {
        assert_eq!(kind(&store, key), Kind::Bytes, "{key}");
    }
    assert_eq!(kind(&store, "json"), Kind::Json);
    // SetOptions::kind still decides when given.
    store
        .set_with("forced", "{}", SetOptions::new().kind(Kind::Json))
        .unwrap();
    assert_eq!(kind(&store, "forced"), Kind::Json);
    // A buffer whose lifetime ends right after the call.
    {
        let short_lived = format!("made at {}", 42).into_bytes();
        store.set("short", &short_lived[..]).unwrap();
    }
    assert_eq!(
        store.get("short").unwrap().as_deref(),
        Some(&b"made at 42"[..])
    );
    let mut batch = WriteBatch::new();
    batch.set("b:text", "t").set("b:bytes", vec![1u8]);
    store.apply(batch).unwrap();
    assert_eq!(kind(&store, "b:text"), Kind::Text);
    assert_eq!(kind(&store, "b:bytes"), Kind::Bytes);
}

#[cfg(feature = "serde")]
#[test]
fn json_values_round_trip_through_serde_and_a_wrong_type_is_a_clear_error() {
    use std::collections::BTreeMap;
    let store = Store::memory(Options::default()).unwrap();
    let user = BTreeMap::from([("name", "Ada"), ("lang", "en")]);
    store.set_json("user", &user).unwrap();
    assert_eq!(kind(&store, "user"), Kind::Json);
    let back: BTreeMap<String, String> = store.get_json("user").unwrap().unwrap();
    assert_eq!(back["name"], "Ada");
    assert_eq!(store.get_json::<u32>("missing").unwrap(), None);
    let err = store.get_json::<Vec<u32>>("user").unwrap_err();
    assert!(
        matches!(&err, tidekv::Error::Json(m) if m.contains("\"user\"")),
        "{err:?}"
    );
    store.set("not json", "plain words").unwrap();
    assert!(matches!(
        store.get_json::<String>("not json"),
        Err(tidekv::Error::Json(_))
    ));
    // A map with non-string keys cannot be JSON: refused, nothing stored.
    let bad: BTreeMap<Vec<u8>, u8> = BTreeMap::from([(vec![1], 1)]);
    assert!(matches!(
        store.set_json("bad", &bad),
        Err(tidekv::Error::Json(_))
    ));
    assert!(store.get("bad").unwrap().is_none());
}
