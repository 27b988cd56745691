//! The `tidekv` command-line tool, run as the real binary: every command, its output, its exit
//! codes (0 ok, 1 not found, 2 bad usage, 3 error), and dump → load round trips.
#![cfg(all(feature = "cli", not(target_arch = "wasm32")))]

mod persist_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use persist_support::tempdir;
use tidekv::{Kind, Options, SetOptions, Store};

fn tidekv(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidekv"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run tidekv")
}

/// Runs with `input` on stdin.
fn with_stdin(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidekv"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidekv");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs and expects exit code 0; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tidekv(dir, args);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn set_get_ttl_keys_tags_query_and_del_work_end_to_end() {
    let dir = tempdir();
    let d = dir.path();
    assert_eq!(
        ok(
            d,
            &["set", "user:1", "alice", "--ttl", "1h30m", "--tag", "user", "--tag", "vip"]
        ),
        ""
    );
    ok(d, &["set", "user:2", "bob", "--tag", "user"]);
    ok(d, &["set", "config", "{\"a\":1}"]);
    assert_eq!(ok(d, &["get", "user:1"]), "alice\n");
    let ttl = ok(d, &["ttl", "user:1"]);
    let secs: f64 = ttl.trim().trim_end_matches('s').parse().unwrap();
    assert!(secs > 5_000.0 && secs <= 5_400.0, "{ttl}");
    assert_eq!(ok(d, &["ttl", "user:2"]), "none\n");
    assert_eq!(ok(d, &["keys"]), "config\nuser:1\nuser:2\n");
    assert_eq!(ok(d, &["keys", "user:"]), "user:1\nuser:2\n");
    assert_eq!(ok(d, &["tags"]), "user\t2\nvip\t1\n");
    assert_eq!(ok(d, &["query", "user", "vip"]), "user:1\n");
    assert_eq!(ok(d, &["del", "user:2"]), "");
    assert_eq!(ok(d, &["keys"]), "config\nuser:1\n");
    // Namespaces are separate keyspaces.
    ok(d, &["--ns", "cache", "set", "user:1", "other"]);
    assert_eq!(ok(d, &["--ns", "cache", "get", "user:1"]), "other\n");
    assert_eq!(ok(d, &["get", "user:1"]), "alice\n");

    // Values set from the CLI are text.
    let store = Store::open(d, Options::default()).unwrap();
    let (_, meta) = store.get_with_metadata("config").unwrap().unwrap();
    assert_eq!(meta.kind, Kind::Text);
}

#[test]
fn a_missing_key_exits_with_1_and_says_so() {
    let dir = tempdir();
    ok(dir.path(), &["set", "other", "v"]);
    for args in [
        &["get", "nope"][..],
        &["del", "nope"],
        &["ttl", "nope"],
        &["meta", "nope"],
        &["persist", "nope"],
        &["expire", "nope", "10s"],
    ] {
        let out = tidekv(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), "not found: nope\n");
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn bad_usage_exits_with_2_and_errors_exit_with_3() {
    let dir = tempdir();
    let d = dir.path();
    for args in [
        &["set", "k", "v", "--ttl", "0s"][..],
        &["set", "k", "v", "--ttl", "10 parsecs"],
        &["set", "k"],
        &["query"],
        &["frobnicate"],
    ] {
        assert_eq!(tidekv(d, args).status.code(), Some(2), "{args:?}");
    }
    // Bad values are bad usage too (exit 2), with the store's own message.
    let out = tidekv(d, &["--db", "../escape", "set", "k", "v"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: invalid name \"../escape\""),
        "{}",
        stderr(&out)
    );
    assert!(!d.join("../escape").exists());
    let out = tidekv(d, &["set", "", "v"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid key"), "{}", stderr(&out));
    let out = tidekv(d, &["set", "k", "{not json", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not JSON"), "{}", stderr(&out));
    // An error that is not the input's: exit 3.
    std::fs::write(d.join("a-file"), "").unwrap();
    let out = tidekv(&d.join("a-file"), &["set", "k", "v"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a file where a directory must be is bad input"
    );
}

#[test]
fn read_only_commands_never_create_a_database() {
    let dir = tempdir();
    let typo = dir.path().join("typo");
    for args in [
        &["keys"][..],
        &["get", "k"],
        &["exists", "k"],
        &["meta", "k"],
        &["ttl", "k"],
        &["tags"],
        &["query", "t"],
        &["stats"],
        &["dump"],
        &["compact"],
    ] {
        let out = tidekv(&typo, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(stderr(&out).contains("no database at"), "{}", stderr(&out));
        assert!(!typo.exists(), "{args:?} created the directory");
    }
    ok(&typo, &["set", "k", "v"]);
    assert!(typo.join("default").is_dir(), "a write creates it");
}

#[test]
fn exists_meta_expire_and_persist_work_and_tags_split_on_commas() {
    let dir = tempdir();
    let d = dir.path();
    ok(d, &["set", "k", "v", "--tag", "a,b", "--tag", "c"]);
    assert_eq!(ok(d, &["exists", "k"]), "");
    let out = tidekv(d, &["exists", "missing"]);
    assert_eq!(
        (out.status.code(), stdout(&out), stderr(&out)),
        (Some(1), String::new(), String::new())
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(d, &["meta", "k"])).unwrap();
    assert_eq!(meta["kind"], "text");
    assert_eq!(meta["size"], 1);
    assert_eq!(meta["tags"], serde_json::json!(["a", "b", "c"]));
    assert!(meta["expires_at"].is_null());
    assert_eq!(ok(d, &["query", "a,c"]), "k\n");
    ok(d, &["expire", "k", "1h"]);
    let meta: serde_json::Value = serde_json::from_str(&ok(d, &["meta", "k"])).unwrap();
    let ttl = meta["ttl_ms"].as_u64().unwrap();
    assert!(ttl > 3_500_000 && ttl <= 3_600_000, "{meta}");
    ok(d, &["persist", "k"]);
    assert_eq!(ok(d, &["ttl", "k"]), "none\n");
}

#[test]
fn set_reads_stdin_or_a_file_and_json_is_stored_as_json() {
    let dir = tempdir();
    let d = dir.path();
    assert!(with_stdin(d, &["set", "bin", "-"], &[0, 159, 146, 150])
        .status
        .success());
    let file = d.join("doc.json");
    std::fs::write(&file, "{\"a\": [1, 2]}").unwrap();
    ok(
        d,
        &["set", "doc", "--file", file.to_str().unwrap(), "--json"],
    );
    ok(d, &["set", "plain", "--file", file.to_str().unwrap()]);
    // Binary data piped out is written as it is (stdout is not a terminal here).
    let out = tidekv(d, &["get", "bin"]);
    assert_eq!(out.stdout, [0, 159, 146, 150]);
    let store = Store::open(d, Options::default()).unwrap();
    let kind = |k: &str| store.get_with_metadata(k).unwrap().unwrap().1.kind;
    assert_eq!(
        (kind("bin"), kind("doc"), kind("plain")),
        (Kind::Bytes, Kind::Json, Kind::Text)
    );
}

#[test]
fn load_takes_minimal_lines_and_is_all_or_nothing() {
    let dir = tempdir();
    let d = dir.path();
    let file = d.join("in.jsonl");
    std::fs::write(
        &file,
        "{\"key\":\"a\",\"value\":\"text\"}\n{\"key\":\"b\",\"value\":{\"n\":1}}\n",
    )
    .unwrap();
    assert_eq!(
        ok(d, &["load", file.to_str().unwrap()]),
        "loaded 2 keys (0 already expired, skipped)\n"
    );
    let meta: serde_json::Value = serde_json::from_str(&ok(d, &["meta", "b"])).unwrap();
    assert_eq!(meta["kind"], "json");
    assert_eq!(ok(d, &["get", "b"]), "{\"n\":1}\n");
    // A bad third line: nothing of the file is loaded, the error names the line.
    std::fs::write(
        &file,
        "{\"key\":\"c\",\"value\":\"1\"}\n{\"key\":\"d\",\"value\":\"2\"}\n{\"key\":\"e\"}\n",
    )
    .unwrap();
    let out = tidekv(d, &["load", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 3: `value` is missing"),
        "{}",
        stderr(&out)
    );
    // A line the store refuses (an empty key) is caught before anything is stored.
    std::fs::write(
        &file,
        "{\"key\":\"f\",\"value\":\"1\"}\n{\"key\":\"\",\"value\":\"2\"}\n",
    )
    .unwrap();
    assert_eq!(
        tidekv(d, &["load", file.to_str().unwrap()]).status.code(),
        Some(2)
    );
    assert_eq!(ok(d, &["keys"]), "a\nb\n");
}

#[test]
fn a_database_open_elsewhere_is_reported_as_locked() {
    let dir = tempdir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let out = tidekv(dir.path(), &["keys"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("is locked"), "{}", stderr(&out));
    store.close().unwrap();
    ok(dir.path(), &["keys"]);
}

#[test]
fn every_command_has_help() {
    let dir = tempdir();
    let top = ok(dir.path(), &["--help"]);
    let commands = [
        "set", "get", "del", "exists", "meta", "ttl", "expire", "persist", "keys", "tags", "query",
        "stats", "compact", "dump", "load",
    ];
    for command in commands {
        assert!(top.contains(command), "top-level help lists {command}");
        let help = ok(dir.path(), &[command, "--help"]);
        assert!(help.contains("Usage: tidekv"), "{command}: {help}");
    }
}

#[test]
fn dump_prints_json_lines_and_load_reads_them_back() {
    let dir = tempdir();
    let d = dir.path();
    {
        let store = Store::open(d, Options::default().db("src")).unwrap();
        store
            .set_with(
                "text",
                "héllo",
                SetOptions::new()
                    .kind(Kind::Text)
                    .tags(["a", "b"])
                    .ttl(std::time::Duration::from_secs(3_600)),
            )
            .unwrap();
        store.set("binary", vec![0u8, 0xff, 0xfe, 1]).unwrap();
        store
            .namespace("json")
            .unwrap()
            .set_with("doc", "{\"x\":[1,2]}", SetOptions::new().kind(Kind::Json))
            .unwrap();
        store.close().unwrap();
    }
    let dump = ok(d, &["--db", "src", "dump"]);
    let lines: Vec<serde_json::Value> = dump
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let binary = lines.iter().find(|l| l["key"] == "binary").unwrap();
    assert_eq!(binary["encoding"], "base64");
    assert_eq!(binary["value"], "AP/+AQ==");
    assert_eq!(binary["kind"], "bytes");
    let text = lines.iter().find(|l| l["key"] == "text").unwrap();
    assert_eq!(text["encoding"], "utf8");
    assert_eq!(text["value"], "héllo");
    assert_eq!(text["tags"], serde_json::json!(["a", "b"]));
    assert!(text["expires_at"].is_u64());
    let doc = lines.iter().find(|l| l["key"] == "doc").unwrap();
    assert_eq!(
        (doc["ns"].as_str(), doc["kind"].as_str()),
        (Some("json"), Some("json"))
    );

    // load from stdin
    let out = with_stdin(d, &["--db", "dst", "load"], dump.as_bytes());
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "loaded 3 keys (0 already expired, skipped)\n");

    let store = Store::open(d, Options::default().db("dst")).unwrap();
    assert_eq!(
        store.get("binary").unwrap().as_deref(),
        Some(&[0u8, 0xff, 0xfe, 1][..])
    );
    let (value, meta) = store.get_with_metadata("text").unwrap().unwrap();
    assert_eq!(&value[..], "héllo".as_bytes());
    assert_eq!(
        (meta.kind, meta.tags),
        (Kind::Text, vec!["a".into(), "b".into()])
    );
    assert_eq!(meta.expires_at, text["expires_at"].as_u64());
    let (_, meta) = store
        .namespace("json")
        .unwrap()
        .get_with_metadata("doc")
        .unwrap()
        .unwrap();
    assert_eq!(meta.kind, Kind::Json);
    store.close().unwrap();

    // load from a file, with a line that is already expired and one that is broken
    let file = d.join("dump.jsonl");
    std::fs::write(
        &file,
        "{\"ns\":\"\",\"key\":\"old\",\"value\":\"x\",\"expires_at\":1}\n\n",
    )
    .unwrap();
    let out = ok(d, &["--db", "dst2", "load", file.to_str().unwrap()]);
    assert_eq!(out, "loaded 0 keys (1 already expired, skipped)\n");
    std::fs::write(
        &file,
        "{\"ns\":\"\",\"key\":\"k\",\"value\":\"!!\",\"encoding\":\"base64\"}\n",
    )
    .unwrap();
    let out = tidekv(d, &["--db", "dst2", "load", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: line 1: bad base64 value"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stats_and_compact_describe_the_store() {
    let dir = tempdir();
    let d = dir.path();
    for i in 0..5 {
        ok(d, &["set", "k", &format!("v{i}")]);
    }
    let stats = ok(d, &["stats"]);
    let lines: Vec<&str> = stats.lines().collect();
    for line in ["keys: 1", "segments: 1", "records: 5", "last_error: none"] {
        assert!(lines.contains(&line), "{line} in {stats}");
    }
    let report = ok(d, &["compact"]);
    assert!(report.contains("5 records) into 1"), "{report}");
    assert!(report.ends_with("4 records dropped\n"), "{report}");
    assert_eq!(ok(d, &["get", "k"]), "v4\n");
}

#[test]
fn the_default_directory_is_tidekv_data_in_the_working_directory() {
    let dir = tempdir();
    let out = Command::new(env!("CARGO_BIN_EXE_tidekv"))
        .current_dir(dir.path())
        .args(["set", "k", "v"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(dir.path().join("tidekv-data/default").is_dir());
}

#[test]
fn binary_data_is_not_written_to_a_terminal_unless_raw() {
    let dir = tempdir();
    let d = dir.path();
    ok(d, &["set", "bin", "--file", env!("CARGO_BIN_EXE_tidekv")]);
    // `script` (util-linux, Essential on Debian) runs the command on a pseudo-terminal.
    let on_tty = |extra: &str| {
        let command = format!(
            "{} --dir {} get bin {extra}",
            env!("CARGO_BIN_EXE_tidekv"),
            d.display()
        );
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .output()
            .expect("script runs")
    };
    let out = on_tty("");
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("bytes of binary data"), "{shown}");
    assert!(shown.len() < 500, "the notice, not the data");
    let out = on_tty("--raw");
    assert!(out.stdout.len() > 10_000, "--raw writes the data");
}
