//! What `set` accepts: any value that knows its [`Kind`], so every target reads back what was
//! stored — text as a `string` in JavaScript, bytes as a `Uint8Array`, JSON as a JSON value.

use bytes::Bytes;

use crate::Kind;

/// A value a store can hold, with the [`Kind`] it is stored as. Text (`&str`, `String`) is
/// [`Kind::Text`]; byte buffers (`&[u8]`, `Vec<u8>`, [`Bytes`], arrays) are [`Kind::Bytes`];
/// [`Json`] is [`Kind::Json`]. Borrowed values are copied; owned ones (`String`, `Vec<u8>`,
/// `Bytes`) are taken without a copy. [`SetOptions::kind`](super::SetOptions::kind) overrides
/// the kind.
///
/// ```
/// use tidekv::{Kind, Options, Store};
/// # fn main() -> tidekv::Result<()> {
/// let store = Store::memory(Options::default())?;
/// let buf = vec![1u8, 2, 3];
/// store.set("text", "hello")?;                 // Kind::Text: a string in JavaScript
/// store.set("bytes", &buf[..])?;               // Kind::Bytes: a Uint8Array
/// store.set("owned", buf)?;
/// let (_, meta) = store.get_with_metadata("text")?.unwrap();
/// assert_eq!(meta.kind, Kind::Text);
/// # Ok(()) }
/// ```
pub trait IntoValue {
    /// The value's bytes and its kind.
    fn into_value(self) -> (Bytes, Kind);
}

/// A JSON document stored as [`Kind::Json`] (JavaScript reads back the parsed value). It is
/// taken as text and checked by the store's JSON readers, not here; with the `serde` feature,
/// [`Namespace::set_json`](super::Namespace::set_json) serializes a value for you.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json(pub String);

impl IntoValue for Json {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::from(self.0), Kind::Json)
    }
}

impl IntoValue for &str {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::copy_from_slice(self.as_bytes()), Kind::Text)
    }
}

impl IntoValue for String {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::from(self), Kind::Text)
    }
}

impl IntoValue for &String {
    fn into_value(self) -> (Bytes, Kind) {
        self.as_str().into_value()
    }
}

impl IntoValue for &[u8] {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::copy_from_slice(self), Kind::Bytes)
    }
}

impl<const N: usize> IntoValue for &[u8; N] {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::copy_from_slice(self), Kind::Bytes)
    }
}

impl<const N: usize> IntoValue for [u8; N] {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::copy_from_slice(&self), Kind::Bytes)
    }
}

impl IntoValue for Vec<u8> {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::from(self), Kind::Bytes)
    }
}

impl IntoValue for &Vec<u8> {
    fn into_value(self) -> (Bytes, Kind) {
        self.as_slice().into_value()
    }
}

impl IntoValue for Box<[u8]> {
    fn into_value(self) -> (Bytes, Kind) {
        (Bytes::from(self), Kind::Bytes)
    }
}

impl IntoValue for Bytes {
    fn into_value(self) -> (Bytes, Kind) {
        (self, Kind::Bytes)
    }
}

impl IntoValue for &Bytes {
    fn into_value(self) -> (Bytes, Kind) {
        (self.clone(), Kind::Bytes)
    }
}
