//! `Frame.headers`: a `map<string, string>` on the wire, kept here as an ordered list of unique keys.
//!
//! Upstream decoders let a repeated key take its last value; [`FrameHeaders::insert`] does the same and
//! keeps the position where the key first appeared, so decoding is deterministic and encoding follows
//! the order the headers were built in. Keys are case-sensitive and values may be empty.

/// The headers of one frame: unique keys, in insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameHeaders(Vec<(String, String)>);

impl FrameHeaders {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing the value of an existing `key` in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn from_entries(entries: Vec<super::proto::HeaderEntry>) -> Self {
        entries
            .into_iter()
            .map(|entry| (entry.key, entry.value))
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn to_entries(&self) -> Vec<super::proto::HeaderEntry> {
        self.0
            .iter()
            .map(|(key, value)| super::proto::HeaderEntry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for FrameHeaders {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Self::new();
        for (key, value) in iter {
            headers.insert(key, value);
        }
        headers
    }
}

impl IntoIterator for FrameHeaders {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_key_takes_last_value_at_first_position() {
        let headers: FrameHeaders = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(headers.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
        assert_eq!(headers.get("a"), Some("3"));
        assert_eq!(headers.get("A"), None);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn entries_round_trip() {
        let headers: FrameHeaders = [("x", ""), ("", "y")].into_iter().collect();
        assert_eq!(FrameHeaders::from_entries(headers.to_entries()), headers);
    }
}
