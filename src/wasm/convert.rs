//! JS ⇄ Rust conversions and the mapping of [`Error`] to JS exceptions.
//!
//! Wrong types become a `TypeError`, out-of-range values a `RangeError`; every error carries a
//! `code` property with the [`Error::code`] name (or `"InvalidType"`). Nothing is stored when
//! a conversion fails.

use bytes::Bytes;
use js_sys::{Array, JsString, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::{Error, Kind, Metadata, Stats};

#[wasm_bindgen(inline_js = r#"
export function encodeJson(value) {
  if (value === undefined) throw Object.assign(new TypeError('tidekv: cannot store undefined; use delete() to remove a key'), { code: 'InvalidType' });
  try {
    return JSON.stringify(value, function (key, v) {
      const where = key === '' ? '' : ` (at property "${key}")`;
      // `v` has been through toJSON already: a Date is only visible on its holder.
      if (this[key] instanceof Date) throw new TypeError(`tidekv: cannot store a Date${where}: it would come back as a string; store date.getTime() or date.toISOString()`);
      if (typeof v === 'function') throw new TypeError(`tidekv: cannot store a function${where}`);
      if (typeof v === 'bigint') throw new TypeError(`tidekv: cannot store a BigInt${where}; convert it to a string first`);
      if (typeof v === 'symbol') throw new TypeError(`tidekv: cannot store a symbol${where}`);
      if (typeof v === 'number' && !Number.isFinite(v)) throw new RangeError(`tidekv: cannot store ${v}${where}: JSON has no such number`);
      if (v instanceof Map || v instanceof Set) throw new TypeError(`tidekv: cannot store a ${v.constructor.name}${where}; convert it to an array or object first`);
      if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
        if (key === '') throw new TypeError('tidekv: binary values must be a Uint8Array');
        throw new TypeError(`tidekv: cannot store binary data inside JSON${where}; store a Uint8Array on its own key`);
      }
      return v;
    });
  } catch (e) {
    let err = e;
    if (e instanceof TypeError && !String(e.message).startsWith('tidekv:')) {
      err = new TypeError(`tidekv: value is not JSON-serialisable: ${e.message}`);
    }
    if (err instanceof Error && err.code === undefined) {
      err.code = err instanceof RangeError ? 'InvalidValue' : 'InvalidType';
    }
    throw err;
  }
}
export function listenerError(thrown) {
  let what;
  try { what = thrown instanceof Error ? thrown.message : String(thrown); } catch { what = typeof thrown; }
  const e = new Error(`tidekv: an expire listener threw: ${what}`, { cause: thrown });
  e.code = 'ListenerError';
  return e;
}
export function warn(error) { console.warn(error); }
export function makeError(ctor, message, code) {
  const e = ctor === 'TypeError' ? new TypeError(message) : ctor === 'RangeError' ? new RangeError(message) : new Error(message);
  e.code = code;
  return e;
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = encodeJson)]
    fn encode_json(value: &JsValue) -> Result<String, JsValue>;
    /// The error an `error` listener gets when an `expire` listener threw `thrown`.
    #[wasm_bindgen(js_name = listenerError)]
    pub(crate) fn listener_error(thrown: &JsValue) -> JsValue;
    #[wasm_bindgen(js_name = makeError)]
    fn make_error(ctor: &str, message: &str, code: &str) -> JsValue;
    /// Writes `error` to `console.warn`: where a failure goes when no `error` listener hears it.
    pub(crate) fn warn(error: &JsValue);
}

/// A `RangeError` with code `InvalidValue`: input whose type is right but whose content is not
/// (a malformed dump line).
pub(crate) fn invalid_value(message: &str) -> JsValue {
    make_error("RangeError", &format!("tidekv: {message}"), "InvalidValue")
}

/// A `TypeError` for a value of the wrong type.
pub(crate) fn type_error(message: &str) -> JsValue {
    make_error("TypeError", &format!("tidekv: {message}"), "InvalidType")
}

/// An engine result with its error turned into the JS exception.
pub(crate) fn js_result<T>(result: crate::Result<T>) -> Result<T, JsValue> {
    result.map_err(to_js)
}

/// The JS exception for an engine error.
pub(crate) fn to_js(error: Error) -> JsValue {
    let ctor = match error {
        Error::InvalidKey(_)
        | Error::ValueTooLarge { .. }
        | Error::InvalidTtl(_)
        | Error::InvalidName { .. }
        | Error::InvalidOption { .. } => "RangeError",
        _ => "Error",
    };
    make_error(ctor, &format!("tidekv: {error}"), error.code())
}

fn type_name(value: &JsValue) -> String {
    if value.is_null() {
        return "null".into();
    }
    value
        .js_typeof()
        .as_string()
        .unwrap_or_else(|| "unknown".into())
}

/// A JS string that is valid Unicode (no lone surrogates), as a Rust `String`.
pub(crate) fn string(value: &JsValue, what: &str) -> Result<String, JsValue> {
    // One crossing into JS in the common case: `as_string` is `None` for a non-string, and
    // lone surrogates come back as U+FFFD, so only a string holding U+FFFD needs the check.
    let Some(s) = value.as_string() else {
        return Err(type_error(&format!(
            "{what} must be a string, got {}",
            type_name(value)
        )));
    };
    if super::cache::maybe_lone_surrogate(&s) && !value.unchecked_ref::<JsString>().is_valid_utf16()
    {
        return Err(type_error(&format!(
            "{what} contains a lone surrogate (not valid Unicode)"
        )));
    }
    Ok(s)
}

/// A value to store: `Uint8Array` -> bytes, `string` -> text, anything else -> JSON.
pub(crate) fn value_in(value: &JsValue) -> Result<(Bytes, Kind), JsValue> {
    if value.is_string() {
        return Ok((Bytes::from(string(value, "a text value")?), Kind::Text));
    }
    if let Some(bytes) = value.dyn_ref::<Uint8Array>() {
        return Ok((Bytes::from(bytes.to_vec()), Kind::Bytes));
    }
    Ok((Bytes::from(encode_json(value)?), Kind::Json))
}

/// A stored value back as the JS kind it was stored as.
pub(crate) fn value_out(value: &[u8], kind: Kind) -> Result<JsValue, JsValue> {
    Ok(match kind {
        Kind::Bytes => Uint8Array::from(value).into(),
        Kind::Text => JsValue::from_str(&String::from_utf8_lossy(value)),
        Kind::Json => js_sys::JSON::parse(&String::from_utf8_lossy(value))
            .map_err(|_| to_js(Error::Corrupt("a stored JSON value does not parse".into())))?,
    })
}

/// An optional count of milliseconds: `undefined`/`null` -> `None`; must be a finite number
/// above zero (fractions round up).
pub(crate) fn millis(value: &JsValue, what: &str) -> Result<Option<u64>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    let Some(n) = value.as_f64() else {
        return Err(type_error(&format!(
            "{what} must be a number of milliseconds, got {}",
            type_name(value)
        )));
    };
    if !n.is_finite() || n <= 0.0 || n > 9_007_199_254_740_991.0 {
        return Err(make_error(
            "RangeError",
            &format!(
                "tidekv: {what} must be a finite number of milliseconds above 0, got {}",
                js_number(n)
            ),
            "InvalidTtl",
        ));
    }
    Ok(Some(n.ceil() as u64))
}

/// `n` as JavaScript writes it (`1.5`, `NaN`, `-Infinity`), without pulling Rust's float
/// formatting into the wasm.
fn js_number(n: f64) -> String {
    js_sys::Number::from(n)
        .to_string_with_radix(10)
        .map(String::from)
        .unwrap_or_default()
}

/// A positive whole number option.
pub(crate) fn positive(value: &JsValue, option: &str) -> Result<Option<u64>, JsValue> {
    if value.is_undefined() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n)
            if n.is_finite() && n >= 1.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 =>
        {
            Ok(Some(n as u64))
        }
        Some(n) => Err(make_error(
            "RangeError",
            &format!(
                "tidekv: option {option} must be a whole number of at least 1, got {}",
                js_number(n)
            ),
            "InvalidOption",
        )),
        None => Err(type_error(&format!(
            "option {option} must be a number, got {}",
            type_name(value)
        ))),
    }
}

/// The own properties of an options object, refusing unknown names. `undefined`/`null` -> none.
pub(crate) fn options(
    value: &JsValue,
    what: &str,
    known: &[&str],
) -> Result<Vec<(String, JsValue)>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(Vec::new());
    }
    if !value.is_object() || Array::is_array(value) || value.is_function() {
        return Err(type_error(&format!(
            "{what} must be an object, got {}",
            type_name(value)
        )));
    }
    let mut out = Vec::new();
    for name in Object::keys(value.unchecked_ref::<Object>()).iter() {
        let name = name.as_string().unwrap_or_default();
        if !known.contains(&name.as_str()) {
            return Err(type_error(&format!(
                "unknown option {name:?} in {what} (known: {})",
                known.join(", ")
            )));
        }
        let v = Reflect::get(value, &JsValue::from_str(&name))?;
        out.push((name, v));
    }
    Ok(out)
}

/// An array of strings (tags).
pub(crate) fn strings(value: &JsValue, what: &str) -> Result<Vec<String>, JsValue> {
    if value.is_undefined() {
        return Ok(Vec::new());
    }
    let Some(array) = value.dyn_ref::<Array>() else {
        return Err(type_error(&format!(
            "{what} must be an array of strings, got {}",
            type_name(value)
        )));
    };
    array
        .iter()
        .map(|v| string(&v, &format!("every entry of {what}")))
        .collect()
}

/// A plain object from (name, value) pairs.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let obj = Object::new();
    for (name, value) in fields {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&obj, &JsValue::from_str(name), value);
    }
    obj.into()
}

pub(crate) fn string_array(items: impl IntoIterator<Item = String>) -> JsValue {
    items
        .into_iter()
        .map(JsValue::from)
        .collect::<Array>()
        .into()
}

fn num(n: u64) -> JsValue {
    JsValue::from_f64(n as f64)
}

pub(crate) fn metadata_out(meta: &Metadata) -> JsValue {
    object(&[
        ("size", num(meta.size)),
        ("createdAt", num(meta.created_at)),
        ("updatedAt", num(meta.updated_at)),
        ("expiresAt", meta.expires_at.map_or(JsValue::NULL, num)),
        ("tags", string_array(meta.tags.iter().cloned())),
        ("kind", JsValue::from_str(meta.kind.as_str())),
        ("compressed", JsValue::from_bool(meta.compressed)),
        ("storedSize", num(meta.stored_size)),
    ])
}

pub(crate) fn stats_out(s: &Stats) -> JsValue {
    object(&[
        ("sets", num(s.sets)),
        ("gets", num(s.gets)),
        ("hits", num(s.hits)),
        ("misses", num(s.misses)),
        ("deletes", num(s.deletes)),
        ("expires", num(s.expires)),
        ("persists", num(s.persists)),
        ("keys", num(s.keys)),
        ("valueBytes", num(s.value_bytes)),
        ("memoryBytes", num(s.memory_bytes)),
        ("evictions", num(s.evictions)),
        ("bufferBytes", num(s.buffer_bytes)),
        ("bufferSize", num(s.buffer_size)),
        ("bufferUtilization", JsValue::from_f64(s.buffer_utilization)),
        ("expired", num(s.expired)),
        ("expiredLazy", num(s.expired_lazy)),
        ("expiredActive", num(s.expired_active)),
        ("sweeps", num(s.sweeps)),
        ("tickIntervalMs", num(s.tick_interval_ms)),
        ("flushes", num(s.flushes)),
        ("recordsFlushed", num(s.records_flushed)),
        ("flushFailures", num(s.flush_failures)),
        (
            "lastError",
            s.last_error
                .as_deref()
                .map_or(JsValue::NULL, JsValue::from_str),
        ),
    ])
}

/// `[{ tag, count }]`, in the order given: what `listTags()` returns.
pub(crate) fn tag_counts_out(counts: impl IntoIterator<Item = (String, f64)>) -> JsValue {
    let list: Array = counts
        .into_iter()
        .map(|(tag, count)| {
            object(&[
                ("tag", JsValue::from(tag)),
                ("count", JsValue::from_f64(count)),
            ])
        })
        .collect();
    list.into()
}
