//! The native half of the cross-target test (`tests/node/cross_target.test.mjs`): writes the
//! shared test data set into a database directory, or dumps a directory as JSON lines, so the
//! Node.js build of the npm package and this crate can each read what the other wrote.
//!
//! ```text
//! cargo run --example cross_target -- write DIR DB   # write the data set (see `write`)
//! cargo run --example cross_target -- dump DIR DB    # one JSON object per key, sorted
//! cargo run --example cross_target -- hold DIR DB    # keep it open until stdin closes
//! cargo run --example cross_target -- plain DIR DB   # values as plain Rust types (see `plain`)
//! ```

use std::time::Duration;

use tidekv::{Kind, Options, SetOptions, Store};

/// The data set both sides write (the Node test writes the same one).
fn write(store: &Store) -> tidekv::Result<()> {
    store.set_with("bin", &[0u8, 1, 255][..], SetOptions::new().tags(["b"]))?;
    let text = SetOptions::new().kind(Kind::Text);
    store.set_with(
        "txt",
        "héllo",
        text.clone().ttl(Duration::from_secs(3600)).tags(["a", "b"]),
    )?;
    store.set_with(
        "obj",
        r#"{"deep":[1,{"x":null}]}"#,
        SetOptions::new().kind(Kind::Json),
    )?;
    store.set_with("big", "tide ".repeat(1000), text.clone())?;
    store.set_with("gone", "soon", text.clone())?;
    store.delete("gone")?;
    store.set_with("short", "x", text.clone().ttl(Duration::from_millis(150)))?;
    store
        .namespace("users")?
        .set_with("u1", "ada", text.tags(["admin"]))?;
    Ok(())
}

/// Values as a Rust program writes them without naming a kind: each keeps the kind its type
/// says (text, bytes, JSON), so JavaScript reads back a string, a `Uint8Array`, an object.
fn plain(store: &Store) -> tidekv::Result<()> {
    store.set("k", "hello")?;
    store.set("owned", String::from("wörld"))?;
    let name = String::from("borrowed");
    store.set("borrowed", &name)?;
    store.set("raw", vec![0u8, 1, 255])?;
    store.set("slice", &[7u8, 8][..])?;
    #[cfg(feature = "serde")]
    store.set_json(
        "json",
        &std::collections::BTreeMap::from([("a", 1u32), ("b", 2)]),
    )?;
    Ok(())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn dump(store: &Store) -> tidekv::Result<()> {
    for ns in ["", "users"] {
        let space = store.namespace(ns)?;
        for key in space.keys("")? {
            let Some((value, meta)) = space.get_with_metadata(&key)? else {
                continue;
            };
            let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
            let tags: Vec<String> = meta.tags.iter().map(|t| json_string(t)).collect();
            println!(
                "{{\"namespace\":{},\"key\":{},\"kind\":\"{}\",\"hex\":\"{hex}\",\"tags\":[{}],\"createdAt\":{},\"expiresAt\":{},\"compressed\":{}}}",
                json_string(ns),
                json_string(&key),
                meta.kind.as_str(),
                tags.join(","),
                meta.created_at,
                meta.expires_at.map_or("null".into(), |d| d.to_string()),
                meta.compressed,
            );
        }
    }
    Ok(())
}

fn main() -> tidekv::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, dir, db] = &args[..] else {
        eprintln!("usage: cross_target (write|dump|hold|plain) DIR DB");
        std::process::exit(2);
    };
    let store = Store::open(dir, Options::default().db(db.as_str()).compression(true))?;
    match command.as_str() {
        "write" => write(&store)?,
        "dump" => dump(&store)?,
        "plain" => plain(&store)?,
        "hold" => {
            println!("holding");
            std::io::Write::flush(&mut std::io::stdout())?;
            // Returns at end of input: the parent closing our stdin releases the database.
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
        }
        other => {
            eprintln!("unknown command {other:?}");
            std::process::exit(2);
        }
    }
    store.close()
}
