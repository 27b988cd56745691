//! The dump format: one JSON object per line and per live entry, shared by every target — the
//! CLI's `dump` and `load`, and JavaScript's `export()` and `import()` — so a dump moves
//! between them byte for byte.
//!
//! A line is written with its fields in this order:
//! `{"created_at":…,"encoding":"utf8"|"base64","expires_at":ms|null,"key":…,"kind":"bytes"|"text"|"json","ns":…,"tags":[…],"updated_at":…,"value":…}`,
//! the value as text when it is UTF-8 and as standard base64 otherwise. A line is read with
//! only `key` and `value` required: `ns` defaults to the default namespace, `encoding` to
//! `utf8`, `tags` to none, `expires_at` to none, and `kind` to `text` for a string value
//! (`bytes` with `base64`), or `json` when `value` is any other JSON value (an object, a
//! number, ...), which is then stored as its JSON text. Times other than the deadline are not
//! read: a loaded entry is created when it is loaded.
//!
//! This module only converts; what a load may change, and how atomically, is the shell's job.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use bytes::Bytes;

use super::record::PutRecord;
use super::Kind;

/// One entry of a dump, read and checked as far as the format goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpEntry {
    /// Its line number, from 1.
    pub line: usize,
    /// The namespace (`""`: the default one).
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value's bytes.
    pub value: Bytes,
    /// Its kind.
    pub kind: Kind,
    /// Its tags.
    pub tags: Vec<String>,
    /// The absolute deadline, ms since the epoch.
    pub expires_at: Option<u64>,
}

/// `p` as one dump line, without its newline.
pub fn line(p: &PutRecord) -> String {
    let (value, encoding) = match core::str::from_utf8(&p.value) {
        Ok(text) => (String::from(text), "utf8"),
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

/// Reads every line of `text`; the first bad one is an error saying `line <n>: <what is
/// wrong>`. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<DumpEntry>, String> {
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

/// Reads one line (numbered `line`).
pub fn parse_line(raw: &str, line: usize) -> Result<DumpEntry, String> {
    let fields = match Parser::new(raw).document() {
        Ok(Json::Object(fields, _)) => fields,
        Ok(_) => return Err("not a JSON object".into()),
        Err(why) => {
            return Err(format!(
                "not a JSON object ({why}); a cut-off line means the dump is truncated"
            ))
        }
    };
    let field = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .filter(|v| !matches!(v, Json::Null))
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match field(name) {
            None => Ok(None),
            Some(Json::String(s, _)) => Ok(Some(s)),
            Some(_) => Err(format!("`{name}` must be a string")),
        }
    };
    let namespace = String::from(text("ns")?.unwrap_or(""));
    let key = String::from(text("key")?.ok_or("`key` is missing")?);
    let encoding = text("encoding")?.unwrap_or("utf8");
    let (value, natural) = match field("value") {
        None if fields.iter().any(|(k, _)| k == "value") => {
            return Err("`value` is null".into());
        }
        None => return Err("`value` is missing".into()),
        Some(Json::String(s, _)) => match encoding {
            "utf8" => (Bytes::from(s.clone()), Kind::Text),
            "base64" => (
                Bytes::from(base64_decode(s).map_err(|why| format!("bad base64 value: {why}"))?),
                Kind::Bytes,
            ),
            other => return Err(format!("unknown encoding {other:?}")),
        },
        // Any other JSON value is the value itself, stored as its JSON text.
        Some(other) => (Bytes::from(String::from(other.raw())), Kind::Json),
    };
    if !matches!(encoding, "utf8" | "base64") {
        return Err(format!("unknown encoding {encoding:?}"));
    }
    let kind = match text("kind")? {
        None => natural,
        Some("bytes") => Kind::Bytes,
        Some("text") => Kind::Text,
        Some("json") => Kind::Json,
        Some(other) => return Err(format!("unknown kind {other:?}")),
    };
    match kind {
        Kind::Text if core::str::from_utf8(&value).is_err() => {
            return Err("`kind` is text but the value is not UTF-8".into());
        }
        Kind::Json => {
            let text = core::str::from_utf8(&value)
                .map_err(|_| String::from("`kind` is json but the value is not UTF-8"))?;
            Parser::new(text)
                .document()
                .map_err(|why| format!("`kind` is json but the value is not JSON ({why})"))?;
        }
        _ => {}
    }
    let tags = match field("tags") {
        None => Vec::new(),
        Some(Json::Array(items, _)) => items
            .iter()
            .map(|t| match t {
                Json::String(s, _) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or("`tags` must be strings")?,
        Some(_) => return Err("`tags` must be an array".into()),
    };
    let expires_at = match field("expires_at") {
        None => None,
        Some(Json::Number(n)) => Some(
            n.parse::<u64>()
                .ok()
                .filter(|d| *d <= super::MAX_DEADLINE_MS)
                .ok_or(
                    "`expires_at` must be ms since the epoch (a whole number, at most 2^53 - 1)",
                )?,
        ),
        Some(_) => return Err("`expires_at` must be ms since the epoch".into()),
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

/// A JSON value as the reader needs it: strings decoded, everything else as its text.
#[derive(Debug)]
enum Json<'a> {
    Null,
    /// `true` or `false`, as written.
    Bool(&'a str),
    /// A number, as written.
    Number(&'a str),
    String(String, &'a str),
    Array(Vec<Json<'a>>, &'a str),
    Object(Vec<(String, Json<'a>)>, &'a str),
}

impl<'a> Json<'a> {
    /// The value's JSON text, as written in the line.
    fn raw(&self) -> &'a str {
        match self {
            Json::Null => "null",
            Json::Bool(raw) | Json::Number(raw) => raw,
            Json::String(_, raw) | Json::Array(_, raw) | Json::Object(_, raw) => raw,
        }
    }
}

/// A strict JSON reader (RFC 8259) for one line; nesting is limited so a crafted line cannot
/// exhaust the stack.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

/// How deeply arrays and objects may nest.
const MAX_DEPTH: usize = 128;

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// The whole text as one value, with nothing after it but whitespace.
    fn document(mut self) -> Result<Json<'a>, String> {
        let value = self.value()?;
        self.space();
        if self.pos != self.text.len() {
            return Err(format!("unexpected text at column {}", self.pos + 1));
        }
        Ok(value)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        match self.peek() {
            None => format!("{what}, but the line ends"),
            Some(_) => format!("{what} at column {}", self.pos + 1),
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn value(&mut self) -> Result<Json<'a>, String> {
        self.space();
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.nested(|p| p.object(start)),
            Some(b'[') => self.nested(|p| p.array(start)),
            Some(b'"') => {
                let s = self.string()?;
                Ok(Json::String(s, &self.text[start..self.pos]))
            }
            Some(b't') => self.word("true").map(Json::Bool),
            Some(b'f') => self.word("false").map(Json::Bool),
            Some(b'n') => self.word("null").map(|_| Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a JSON value")),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Json<'a>, String>,
    ) -> Result<Json<'a>, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let value = f(self);
        self.depth -= 1;
        value
    }

    fn word(&mut self, word: &'static str) -> Result<&'a str, String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(&self.text[self.pos - word.len()..self.pos])
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn number(&mut self) -> Result<Json<'a>, String> {
        let start = self.pos;
        let digits = |p: &mut Self| {
            let from = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > from
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        if self.peek() == Some(b'0') {
            self.pos += 1;
        } else if !digits(self) {
            return Err(self.error("expected digits"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.error("expected digits after `.`"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.error("expected digits in the exponent"));
            }
        }
        Ok(Json::Number(&self.text[start..self.pos]))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(stop) = rest.find(|c: char| c == '"' || c == '\\' || (c as u32) < 0x20) else {
                self.pos = self.text.len();
                return Err(self.error("a string is not closed"));
            };
            out.push_str(&rest[..stop]);
            self.pos += stop;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.error("a bad escape in a string")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                _ => return Err(self.error("a control character in a string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already read), surrogate pairs joined.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.text[self.pos..].starts_with("\\u") {
                return Err(self.error("a lone surrogate in a string"));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("a lone surrogate in a string"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("a lone surrogate in a string"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected four hex digits after `\\u`"))?;
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| self.error("bad hex digits"))
    }

    fn array(&mut self, start: usize) -> Result<Json<'a>, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.space();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items, &self.text[start..self.pos]));
        }
        loop {
            items.push(self.value()?);
            self.space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items, &self.text[start..self.pos]));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self, start: usize) -> Result<Json<'a>, String> {
        self.expect(b'{')?;
        let mut fields = Vec::new();
        self.space();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(fields, &self.text[start..self.pos]));
        }
        loop {
            self.space();
            let name = self.string()?;
            self.space();
            self.expect(b':')?;
            fields.push((name, self.value()?));
            self.space();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(fields, &self.text[start..self.pos]));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }
}

/// Appends `s` as a JSON string, escaped as serde_json and `JSON.stringify` escape it.
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

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
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

/// Standard base64 with padding, strictly: no whitespace, no missing padding, no stray bits in
/// the last symbol.
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn put(value: &[u8], kind: Kind) -> PutRecord {
        PutRecord {
            namespace: "ns\"1".into(),
            key: "k\n\u{1}é".into(),
            value: Bytes::copy_from_slice(value),
            kind,
            tags: vec!["a".into(), "b,c".into()],
            created_at: 1,
            updated_at: 2,
            expires_at: Some(1_700_000_000_000),
            compressed: false,
        }
    }

    #[test]
    fn a_written_line_reads_back_as_the_same_entry() {
        for (value, kind) in [
            (&b"h\xc3\xa9llo \"x\""[..], Kind::Text),
            (&[0u8, 0xff, 0xfe, 1][..], Kind::Bytes),
            (&b"{\"a\":[1,2]}"[..], Kind::Json),
        ] {
            let p = put(value, kind);
            let text = line(&p);
            let e = parse_line(&text, 7).unwrap();
            assert_eq!(
                (e.line, &*e.namespace, &*e.key, &e.value[..], e.kind),
                (7, "ns\"1", "k\n\u{1}é", value, kind)
            );
            assert_eq!((e.tags, e.expires_at), (p.tags.clone(), p.expires_at));
        }
    }

    #[test]
    fn the_written_format_is_exact() {
        let mut p = put(b"v", Kind::Text);
        p.namespace = String::new();
        p.key = "k".into();
        p.tags.clear();
        p.expires_at = None;
        assert_eq!(
            line(&p),
            "{\"created_at\":1,\"encoding\":\"utf8\",\"expires_at\":null,\"key\":\"k\",\
             \"kind\":\"text\",\"ns\":\"\",\"tags\":[],\"updated_at\":2,\"value\":\"v\"}"
        );
    }

    #[test]
    fn minimal_lines_take_the_defaults() {
        let e = parse_line(r#"{"key":"a","value":"text"}"#, 1).unwrap();
        assert_eq!(
            (&*e.namespace, e.kind, &e.value[..]),
            ("", Kind::Text, &b"text"[..])
        );
        let e = parse_line(r#"{"key":"b","value": {"n" : [1, 2.5e3, true, null]}}"#, 1).unwrap();
        assert_eq!(
            (e.kind, &e.value[..]),
            (Kind::Json, &br#"{"n" : [1, 2.5e3, true, null]}"#[..])
        );
        let e = parse_line(r#"{"key":"c","value":"AAE=","encoding":"base64"}"#, 1).unwrap();
        assert_eq!((e.kind, &e.value[..]), (Kind::Bytes, &[0u8, 1][..]));
        let e = parse_line(r#"{"key":"d","value":42}"#, 1).unwrap();
        assert_eq!((e.kind, &e.value[..]), (Kind::Json, &b"42"[..]));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (text, why) in [
            (r#"{"key":"a","value":"x""#, "truncated"),
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (r#"{"key":5,"value":"x"}"#, "`key` must be a string"),
            (r#"{"value":"x"}"#, "`key` is missing"),
            (r#"{"key":"a"}"#, "`value` is missing"),
            (r#"{"key":"a","value":null}"#, "`value` is null"),
            (
                r#"{"key":"a","value":"!!!!","encoding":"base64"}"#,
                "bad base64",
            ),
            (
                r#"{"key":"a","value":"x","kind":"yaml"}"#,
                "unknown kind \"yaml\"",
            ),
            (
                r#"{"key":"a","value":"x","encoding":"hex"}"#,
                "unknown encoding \"hex\"",
            ),
            (
                r#"{"key":"a","value":"x","tags":"t"}"#,
                "`tags` must be an array",
            ),
            (
                r#"{"key":"a","value":"x","tags":[1]}"#,
                "`tags` must be strings",
            ),
            (r#"{"key":"a","value":"x","expires_at":-5}"#, "expires_at"),
            (r#"{"key":"a","value":"x","expires_at":1.5}"#, "expires_at"),
            (r#"{"key":"a","value":"{x","kind":"json"}"#, "not JSON"),
            (r#"{"key":"a","value":"\ud800"}"#, "lone surrogate"),
            (r#"{"key":"a","value":"x"} trailing"#, "unexpected text"),
        ] {
            let err = parse_line(text, 1).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let deep = "[".repeat(10_000);
        let err = parse_line(&deep, 1).unwrap_err();
        assert!(err.contains("nested deeper"), "{err}");
        let err = parse("\n{\"key\":\"a\",\"value\":\"x\"}\n{oops\n").unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");
    }
}
