//! Tags: an inverted index tag -> keys, per namespace.
//!
//! Owns only the index; whether a key is live is decided by the caller, so this module never
//! needs a clock.

use alloc::{boxed::Box, collections::BTreeMap, collections::BTreeSet, vec::Vec};

/// tag -> the keys that carry it.
#[derive(Default)]
pub(crate) struct TagIndex {
    by_tag: BTreeMap<Box<str>, BTreeSet<Box<str>>>,
}

impl TagIndex {
    pub fn add(&mut self, key: &str, tags: &[Box<str>]) {
        for tag in tags {
            self.by_tag
                .entry(tag.clone())
                .or_default()
                .insert(key.into());
        }
    }

    pub fn remove(&mut self, key: &str, tags: &[Box<str>]) {
        for tag in tags {
            if let Some(keys) = self.by_tag.get_mut(&**tag) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_tag.remove(&**tag);
                }
            }
        }
    }

    /// Keys carrying every tag in `tags` (sorted), before any liveness filter. An empty `tags`
    /// matches nothing.
    pub fn query<'a>(&'a self, tags: &[&str]) -> Vec<&'a str> {
        let mut sets = Vec::with_capacity(tags.len());
        for tag in tags {
            match self.by_tag.get(*tag) {
                Some(keys) => sets.push(keys),
                None => return Vec::new(),
            }
        }
        sets.sort_by_key(|s| s.len());
        let Some((smallest, rest)) = sets.split_first() else {
            return Vec::new();
        };
        smallest
            .iter()
            .filter(|key| rest.iter().all(|s| s.contains(*key)))
            .map(|k| &**k)
            .collect()
    }

    /// Every tag with the keys that carry it, sorted by tag.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &BTreeSet<Box<str>>)> {
        self.by_tag.iter().map(|(t, k)| (&**t, k))
    }
}
