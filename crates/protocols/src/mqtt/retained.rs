//! Retained messages: the last retained publish of each topic, shared by every MQTT listener of the process,
//! bounded in count and payload bytes. A retained publish with an empty payload clears its topic; a new topic
//! over a bound is refused (the message is still published). Subscribing hands out the matching ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use core_bus::{Envelope, Pattern, Topic};
use parking_lot::Mutex;

/// What [`Retained::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Kept,
    Cleared,
    /// Over `max_retained_messages` or `max_retained_bytes`.
    Full,
}

#[derive(Default)]
struct Inner {
    messages: BTreeMap<Topic, Arc<Envelope>>,
    bytes: usize,
}

/// The retained store; clones share it.
#[derive(Clone)]
pub struct Retained {
    inner: Arc<Mutex<Inner>>,
    limits: Arc<Mutex<(usize, usize)>>,
}

impl Retained {
    pub fn new(max_messages: usize, max_bytes: usize) -> Retained {
        Retained {
            inner: Arc::default(),
            limits: Arc::new(Mutex::new((max_messages, max_bytes))),
        }
    }

    /// New bounds (a reload); messages already kept stay.
    pub fn set_limits(&self, max_messages: usize, max_bytes: usize) {
        *self.limits.lock() = (max_messages, max_bytes);
    }

    /// Keeps `envelope` as its topic's retained message, or clears the topic when the payload is empty.
    pub fn store(&self, envelope: Arc<Envelope>) -> Stored {
        let (max_messages, max_bytes) = *self.limits.lock();
        let mut inner = self.inner.lock();
        let old = inner
            .messages
            .get(&envelope.topic)
            .map_or(0, |m| m.payload.len());
        if envelope.payload.is_empty() {
            if inner.messages.remove(&envelope.topic).is_some() {
                inner.bytes -= old;
            }
            return Stored::Cleared;
        }
        let replacing = inner.messages.contains_key(&envelope.topic);
        let bytes = inner.bytes - old + envelope.payload.len();
        if (!replacing && inner.messages.len() >= max_messages) || bytes > max_bytes {
            return Stored::Full;
        }
        inner.bytes = bytes;
        inner.messages.insert(envelope.topic.clone(), envelope);
        Stored::Kept
    }

    /// The retained messages whose topic `pattern` matches.
    pub fn matching(&self, pattern: &Pattern) -> Vec<Arc<Envelope>> {
        let inner = self.inner.lock();
        match pattern.as_topic() {
            Some(topic) => inner.messages.get(&topic).cloned().into_iter().collect(),
            None => inner
                .messages
                .iter()
                .filter(|(topic, _)| pattern.matches(topic))
                .map(|(_, message)| message.clone())
                .collect(),
        }
    }

    /// How many topics hold a retained message.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().messages.len()
    }
}

#[cfg(test)]
mod tests {
    use core_bus::{ConnectionId, Origin, Protocol};

    use super::*;

    fn message(topic: &str, payload: &'static [u8]) -> Arc<Envelope> {
        let origin = Origin {
            protocol: Protocol::Mqtt,
            connection: ConnectionId(1),
        };
        Arc::new(Envelope::new(
            Topic::from_dotted(topic.as_bytes()),
            payload,
            origin,
        ))
    }

    #[test]
    fn keeps_the_last_and_clears_on_empty() {
        let retained = Retained::new(10, 100);
        assert_eq!(retained.store(message("a.b", b"1")), Stored::Kept);
        assert_eq!(retained.store(message("a.b", b"22")), Stored::Kept);
        assert_eq!(retained.store(message("a.c", b"3")), Stored::Kept);
        let all = retained.matching(&Pattern::parse("a.*").unwrap());
        assert_eq!(all.len(), 2);
        let exact = retained.matching(&Pattern::parse("a.b").unwrap());
        assert_eq!(&exact[0].payload[..], b"22");
        assert_eq!(retained.store(message("a.b", b"")), Stored::Cleared);
        assert_eq!(retained.len(), 1);
    }

    #[test]
    fn bounded_in_count_and_bytes() {
        let retained = Retained::new(2, 5);
        assert_eq!(retained.store(message("a", b"1")), Stored::Kept);
        assert_eq!(retained.store(message("b", b"1")), Stored::Kept);
        assert_eq!(retained.store(message("c", b"1")), Stored::Full);
        // Replacing an existing topic is not a new one.
        assert_eq!(retained.store(message("a", b"1234")), Stored::Kept);
        assert_eq!(retained.store(message("b", b"12")), Stored::Full);
        assert_eq!(retained.len(), 2);
    }
}
