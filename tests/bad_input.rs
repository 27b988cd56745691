//! The bad-input matrix of docs/BAD_INPUT.md, native rows: each bad input gets a typed, clear
//! error, and what was stored before is untouched. (Node.js and browser rows live in
//! tests/node/, tests/browser/ and tests/wasm_node.rs.)
#![cfg(not(target_arch = "wasm32"))]

mod persist_support;

use std::fs;
use std::time::Duration;

use persist_support::{tempdir, T0};
use tidekv::core::log::{encode_segment_header, segment_file_name};
use tidekv::{Error, ManualClock, Options, SetOptions, Store};

fn memory() -> Store {
    let store = Store::memory(Options::default().clock(ManualClock::new(T0))).unwrap();
    store.set("before", "kept").unwrap();
    store
}

fn untouched(store: &Store) {
    assert_eq!(store.keys("").unwrap(), ["before"]);
    assert_eq!(store.get("before").unwrap().as_deref(), Some(&b"kept"[..]));
}

#[test]
fn ttls_whose_deadline_no_target_can_represent_are_refused() {
    let s = memory();
    for ms in [1u64 << 60, 1 << 53, u64::MAX / 2] {
        let ttl = Duration::from_millis(ms);
        let err = s
            .set_with("k", "v", SetOptions::new().ttl(ttl))
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidTtl(m) if m.contains("2^53")),
            "{ms}: {err}"
        );
        assert!(matches!(s.expire("before", ttl), Err(Error::InvalidTtl(_))));
    }
    untouched(&s);
    // The largest accepted deadline round-trips exactly.
    let max = tidekv::core::MAX_DEADLINE_MS - T0;
    s.set_with(
        "far",
        "v",
        SetOptions::new().ttl(Duration::from_millis(max)),
    )
    .unwrap();
    let (_, meta) = s.get_with_metadata("far").unwrap().unwrap();
    assert_eq!(meta.expires_at, Some(tidekv::core::MAX_DEADLINE_MS));
}

#[test]
fn namespace_names_are_data_not_paths_and_round_trip_whatever_they_hold() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let long = "n".repeat(300);
    let odd = ["..", "../../etc", "a/b", "a\\b", "nul\0inside", &long];
    for name in odd {
        store
            .namespace(name)
            .unwrap()
            .set("k", name.as_bytes().to_vec())
            .unwrap();
    }
    store.close().unwrap();
    // Nothing but the database directory was created.
    let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for name in odd {
        let ns = store.namespace(name).unwrap();
        assert_eq!(ns.get("k").unwrap().as_deref(), Some(name.as_bytes()));
    }
    let too_long = "n".repeat(tidekv::MAX_KEY_LEN + 1);
    assert!(matches!(
        store.namespace(&too_long),
        Err(Error::InvalidName { .. })
    ));
    assert!(store.namespace("").is_ok(), "\"\" is the default namespace");
}

#[test]
fn a_store_path_that_is_a_file_is_refused_clearly_and_the_file_is_untouched() {
    let dir = tempdir();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"precious").unwrap();
    for path in [file.clone(), file.join("below")] {
        let err = Store::open(&path, Options::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{err:?}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"precious");
}

#[test]
fn a_segment_from_a_newer_format_version_is_refused_naming_it_and_left_as_it_is() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.set("k", "v").unwrap();
    store.close().unwrap();
    let mut header = encode_segment_header(9, 1).to_vec();
    header[8] = 3; // version 3
    let newer = dir.path().join("default").join(segment_file_name(9));
    fs::write(&newer, &header).unwrap();
    for skip in [false, true] {
        let err =
            Store::open(dir.path(), Options::default().skip_corrupt_records(skip)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("version 3") && msg.contains("newer"), "{msg}");
    }
    assert_eq!(
        fs::read(&newer).unwrap(),
        header,
        "the newer segment is left alone"
    );
}

#[test]
fn close_twice_and_use_after_close_are_closed_errors() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let ns = store.namespace("n").unwrap();
    store.set("k", "v").unwrap();
    store.close().unwrap();
    assert!(matches!(store.close(), Err(Error::Closed)));
    assert!(matches!(store.set("k", "w"), Err(Error::Closed)));
    assert!(matches!(ns.get("k"), Err(Error::Closed)));
    assert!(matches!(
        store.apply(tidekv::WriteBatch::new()),
        Err(Error::Closed)
    ));
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
