//! Native warnings go through the `log` crate, so an application routes or silences them; a
//! process without a logger prints nothing. (One test binary: the logger is process-global.)
#![cfg(not(target_arch = "wasm32"))]

use std::sync::Mutex;

use tidekv::{Options, Store};

/// Keeps every record tidekv logs.
struct Capture(Mutex<Vec<(log::Level, String, String)>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push((
            record.level(),
            record.target().to_string(),
            record.args().to_string(),
        ));
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

fn warnings() -> Vec<String> {
    CAPTURE
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(level, target, _)| *level <= log::Level::Warn && target == "tidekv")
        .map(|(_, _, message)| message.clone())
        .collect()
}

#[test]
fn a_torn_tail_is_a_logged_warning_and_the_success_path_logs_none() {
    log::set_logger(&CAPTURE).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), Options::default().db("db")).unwrap();
    for i in 0..100 {
        s.set(&format!("k{i}"), "v").unwrap();
    }
    s.flush().unwrap();
    s.compact().unwrap();
    s.close().unwrap();
    let s = Store::open(dir.path(), Options::default().db("db")).unwrap();
    s.close().unwrap();
    assert_eq!(
        warnings(),
        Vec::<String>::new(),
        "no warning when all is well"
    );
    // A torn write at the end of the newest segment: cut back at open, with a warning.
    let db = dir.path().join("db");
    let mut segments: Vec<_> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tkv"))
        .collect();
    segments.sort();
    let last = segments.last().expect("a segment");
    let mut bytes = std::fs::read(last).unwrap();
    bytes.extend_from_slice(&[0xAB; 40]);
    std::fs::write(last, bytes).unwrap();
    let s = Store::open(dir.path(), Options::default().db("db")).unwrap();
    assert_eq!(s.keys("").unwrap().len(), 100);
    let logged = warnings();
    assert!(
        logged.iter().any(|m| m.contains("torn write of 40 bytes")),
        "{logged:?}"
    );
}
