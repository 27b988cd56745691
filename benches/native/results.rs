//! The bench's own results file: one JSON object per measurement, read by
//! `scripts/bench_report.py` together with criterion's estimates.

use std::fmt::Write as _;
use std::sync::Mutex;

static ROWS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Records `value` (in `unit`) for `peer` in `group`/`metric`, and prints it.
pub fn record(group: &str, metric: &str, peer: &str, value: f64, unit: &str) {
    println!("{group:>10} | {metric:<34} | {peer:<28} | {value:>14.3} {unit}");
    let value = if value.is_finite() { value } else { -1.0 };
    ROWS.lock().unwrap().push(format!(
        "{{\"group\":{},\"metric\":{},\"peer\":{},\"value\":{value},\"unit\":{}}}",
        json_str(group),
        json_str(metric),
        json_str(peer),
        json_str(unit)
    ));
}

/// Writes every recorded row to `path` as a JSON array.
pub fn write(path: &str) {
    let rows = ROWS.lock().unwrap();
    let body = format!("[\n{}\n]\n", rows.join(",\n"));
    std::fs::write(path, body).unwrap_or_else(|e| panic!("writing {path}: {e}"));
}
