//! The dump format of the CLI (`tidekv dump`, `tidekv load`), for `export()` and `import()`:
//! one JSON object per line and per live entry, written exactly as the CLI writes it — fields
//! `created_at, encoding, expires_at, key, kind, ns, tags, updated_at, value` in that order,
//! the value as text when it is UTF-8 (`"encoding":"utf8"`) and base64 otherwise, the deadline
//! as ms since the epoch or `null` — so a dump moves between the CLI, Node.js and browsers
//! byte for byte. Reading accepts what `tidekv load` accepts, with the same defaults (`utf8`,
//! kind `bytes`, no tags, no deadline).
//!
//! This file only converts; what an import may change, and how atomically, is the store's job.

use bytes::Bytes;
use js_sys::{Array, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use super::convert::string;
use crate::core::PutRecord;
use crate::Kind;

/// One entry of a dump, read and checked as far as the format goes.
pub(crate) struct DumpEntry {
    /// Its line number, from 1.
    pub line: usize,
    pub namespace: String,
    pub key: String,
    pub value: Bytes,
    pub kind: Kind,
    pub tags: Vec<String>,
    /// The absolute deadline, ms since the epoch.
    pub expires_at: Option<u64>,
}

/// `p` as one dump line (without its newline), as `tidekv dump` prints it.
pub(crate) fn line(p: &PutRecord) -> String {
    let (value, encoding) = match core::str::from_utf8(&p.value) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (base64_encode(&p.value), "base64"),
    };
    let mut out = String::with_capacity(value.len() + p.key.len() + 128);
    out.push_str("{\"created_at\":");
    out.push_str(&p.created_at.to_string());
    out.push_str(",\"encoding\":");
    json_string(&mut out, encoding);
    out.push_str(",\"expires_at\":");
    match p.expires_at {
        Some(deadline) => out.push_str(&deadline.to_string()),
        None => out.push_str("null"),
    }
    out.push_str(",\"key\":");
    json_string(&mut out, &p.key);
    out.push_str(",\"kind\":");
    json_string(&mut out, p.kind.as_str());
    out.push_str(",\"ns\":");
    json_string(&mut out, &p.namespace);
    out.push_str(",\"tags\":[");
    for (i, tag) in p.tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(&mut out, tag);
    }
    out.push_str("],\"updated_at\":");
    out.push_str(&p.updated_at.to_string());
    out.push_str(",\"value\":");
    json_string(&mut out, &value);
    out.push('}');
    out
}

/// Appends `s` as a JSON string, escaped as serde_json (and `JSON.stringify`) escape it.
fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = c as usize;
                out.push_str("\\u00");
                out.push(HEX[n >> 4] as char);
                out.push(HEX[n & 0xf] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads every line of `text`; the first bad one is an error saying `line <n>: <what is
/// wrong>`. Blank lines are skipped, as `tidekv load` skips them.
pub(crate) fn parse(text: &str) -> Result<Vec<DumpEntry>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        out.push(parse_line(raw, line).map_err(|why| format!("line {line}: {why}"))?);
    }
    Ok(out)
}

fn parse_line(raw: &str, line: usize) -> Result<DumpEntry, String> {
    let parsed = js_sys::JSON::parse(raw).map_err(|e| {
        let why = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .unwrap_or_default();
        format!("not a JSON object ({why}); a cut-off line means the dump is truncated")
    })?;
    if !parsed.is_object() || Array::is_array(&parsed) {
        return Err("not a JSON object".into());
    }
    let field = |name: &str| Reflect::get(&parsed, &JsValue::from_str(name)).unwrap_or_default();
    let text = |name: &str| -> Result<String, String> {
        let v = field(name);
        if !v.is_string() {
            return Err(format!("`{name}` must be a string"));
        }
        string(&v, &format!("`{name}`")).map_err(|e| message(&e))
    };
    let (namespace, key, raw_value) = (text("ns")?, text("key")?, text("value")?);
    let or_default = |name: &str, default: &str| field(name).as_string().unwrap_or(default.into());
    let value = match or_default("encoding", "utf8").as_str() {
        "utf8" => Bytes::from(raw_value),
        "base64" => Bytes::from(
            base64_decode(&raw_value).map_err(|why| format!("bad base64 value: {why}"))?,
        ),
        other => return Err(format!("unknown encoding {other:?}")),
    };
    let kind = match or_default("kind", "bytes").as_str() {
        "bytes" => Kind::Bytes,
        "text" => Kind::Text,
        "json" => Kind::Json,
        other => return Err(format!("unknown kind {other:?}")),
    };
    let tags = field("tags");
    let tags = if tags.is_null() || tags.is_undefined() {
        Vec::new()
    } else if let Some(list) = tags.dyn_ref::<Array>() {
        list.iter()
            .map(|t| t.as_string())
            .collect::<Option<Vec<_>>>()
            .ok_or("`tags` must be strings")?
    } else {
        return Err("`tags` must be an array".into());
    };
    let deadline = field("expires_at");
    let expires_at = if deadline.is_null() || deadline.is_undefined() {
        None
    } else {
        match deadline.as_f64() {
            Some(n) if n >= 0.0 && js_sys::Number::is_safe_integer(&deadline) => Some(n as u64),
            _ => return Err("`expires_at` must be ms since the epoch".into()),
        }
    };
    Ok(DumpEntry {
        line,
        namespace,
        key,
        value,
        kind,
        tags,
        expires_at,
    })
}

/// The message of a JS error (without the `tidekv: ` prefix).
fn message(error: &JsValue) -> String {
    let text = error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_default();
    text.strip_prefix("tidekv: ").unwrap_or(&text).to_string()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as the CLI writes it.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding, strictly: what the CLI's decoder accepts (no whitespace, no
/// missing padding, no stray bits in the last symbol).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return Err(format!("its length {} is not a multiple of 4", bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let last = bytes.len() / 4;
    for (q, quad) in bytes.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|b| **b == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != last) {
            return Err("padding in the middle".into());
        }
        let mut n = 0u32;
        for (i, b) in quad[..4 - pad].iter().enumerate() {
            let Some(v) = ALPHABET.iter().position(|a| a == b) else {
                return Err(format!("{:?} is not a base64 symbol", *b as char));
            };
            n |= (v as u32) << (18 - 6 * i);
        }
        let keep = 3 - pad;
        if n & (0xff_ffff >> (8 * keep)) != 0 {
            return Err("stray bits in the last symbol".into());
        }
        out.extend_from_slice(&n.to_be_bytes()[1..1 + keep]);
    }
    Ok(out)
}
