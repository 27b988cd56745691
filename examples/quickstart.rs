//! The quickstart from the README: `cargo run --example quickstart`.

use std::time::Duration;

use tidekv::{Kind, ManualClock, Options, SetOptions, Store};

fn main() -> tidekv::Result<()> {
    // A manual clock makes expiry visible without waiting; the default is the system clock.
    let clock = ManualClock::new(1_700_000_000_000);
    let store = Store::memory(Options::default().clock(clock.clone()))?;

    store.set("greeting", "hello")?;
    store.set_with(
        "session:42",
        r#"{"user":"ada"}"#,
        SetOptions::new()
            .ttl(Duration::from_secs(60))
            .tags(["session", "web"])
            .kind(Kind::Json),
    )?;
    let users = store.namespace("users")?;
    users.set("ada", "Ada Lovelace")?;

    println!("greeting    = {:?}", store.get("greeting")?);
    println!("session ttl = {:?}", store.ttl("session:42")?);
    println!("web keys    = {:?}", store.query_by_tags(&["web"])?);
    println!("tags        = {:?}", store.list_tags()?);
    println!("users       = {:?}", users.keys("")?);

    clock.advance(Duration::from_secs(61));
    println!("after 61 s  = {:?} (expired)", store.get("session:42")?);

    store.flush()?;
    let stats = store.stats();
    println!(
        "stats       = {} keys, {} value bytes, {} expired, {} flushes",
        stats.keys, stats.value_bytes, stats.expired, stats.flushes
    );
    store.close()
}
