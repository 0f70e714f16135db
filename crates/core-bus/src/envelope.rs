//! The one message type every protocol converts to and from.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use smallvec::SmallVec;

use crate::topic::Topic;

/// Which adapter a message or connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Stomp,
    MessageLoop,
    Goomerang,
    Loom,
    Chanserv,
    /// Messages made by gatewayd itself (admin API, `gatewayctl`, cluster peers).
    Internal,
    /// MQTT 3.1.1 and 5.0. After `Internal` so that the cluster encoding's indexes of the others stay put.
    Mqtt,
}

impl Protocol {
    /// Every protocol, in declaration order: `ALL[p.index()] == p`.
    pub const ALL: [Protocol; 7] = [
        Protocol::Stomp,
        Protocol::MessageLoop,
        Protocol::Goomerang,
        Protocol::Loom,
        Protocol::Chanserv,
        Protocol::Internal,
        Protocol::Mqtt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Stomp => "stomp",
            Protocol::MessageLoop => "messageloop",
            Protocol::Goomerang => "goomerang",
            Protocol::Loom => "loom",
            Protocol::Chanserv => "chanserv",
            Protocol::Internal => "internal",
            Protocol::Mqtt => "mqtt",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_index(index: u8) -> Option<Protocol> {
        Protocol::ALL.get(usize::from(index)).copied()
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process-unique connection number, allocated with [`ConnectionId::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnectionId(pub u64);

impl ConnectionId {
    pub fn next() -> ConnectionId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ConnectionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a message entered gatewayd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub protocol: Protocol,
    pub connection: ConnectionId,
}

/// A cluster-unique message id: a random per-process prefix and a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u128);

impl MessageId {
    pub fn next() -> MessageId {
        static PREFIX: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let prefix = *PREFIX.get_or_init(rand::random::<u64>);
        MessageId(u128::from(prefix) << 64 | u128::from(COUNTER.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A message's place in a topic with history: `offset` increases within `epoch` — dense (1, 2, 3, …) when the bus
/// numbers the topic, the log's sequence when a cluster backend does (the backend's `Sequencing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Position {
    pub epoch: u64,
    pub offset: u64,
}

/// Ordered user headers: names are text, values are bytes, duplicates are kept and the first one wins on lookup.
/// A name that is a constant ([`Headers::push_static`]) is kept by reference, not copied. The first header is
/// kept inline: an envelope with one header makes no allocation for the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(SmallVec<[(Cow<'static, str>, Bytes); 1]>);

impl Headers {
    pub fn new() -> Headers {
        Headers(SmallVec::new())
    }

    /// No headers, with room for `capacity` of them.
    pub fn with_capacity(capacity: usize) -> Headers {
        Headers(SmallVec::with_capacity(capacity))
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<Bytes>) {
        self.0.push((Cow::Owned(name.into()), value.into()));
    }

    /// [`Headers::push`] of a constant name, which is not copied.
    pub fn push_static(&mut self, name: &'static str, value: impl Into<Bytes>) {
        self.0.push((Cow::Borrowed(name), value.into()));
    }

    /// The first value of `name` (names compare exactly).
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The first value of `name` if it is UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| crate::text::utf8(v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> + Clone {
        self.0.iter().map(|(n, v)| (n.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total bytes of names and values, for size limits.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }

    /// Removes every header named `name` and returns the first one's value.
    pub fn take(&mut self, name: &str) -> Option<Bytes> {
        let first = self.get(name).cloned();
        self.0.retain(|(n, _)| *n != name);
        first
    }
}

impl<N: Into<String>, V: Into<Bytes>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(n, v)| (Cow::Owned(n.into()), v.into()))
                .collect(),
        )
    }
}

/// One message on the bus. Fan-out shares it behind an `Arc`; the payload is never copied.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub topic: Topic,
    pub payload: Bytes,
    pub headers: Headers,
    /// A constant (a protocol's own content type) is held without a copy.
    pub content_type: Option<Cow<'static, str>>,
    /// Partitioning / affinity key (STOMP `JMSXGroupID`, Loom key).
    pub key: Option<Bytes>,
    pub reply_to: Option<Topic>,
    pub correlation_id: Option<String>,
    /// W3C trace context `traceparent` value.
    pub traceparent: Option<String>,
    /// W3C trace context `tracestate` value (vendor data that travels with `traceparent`).
    pub tracestate: Option<String>,
    pub origin: Origin,
    pub id: MessageId,
    /// Milliseconds since the Unix epoch when the message entered gatewayd.
    pub timestamp_ms: u64,
    /// Set by the bus when the topic keeps history.
    pub position: Option<Position>,
    /// Milliseconds since the Unix epoch after which the message is no longer delivered (STOMP `expires` /
    /// `expiration`): a queue or mailbox that still holds it then drops it, counted as `expired`.
    pub expires_at_ms: Option<u64>,
}

impl Envelope {
    /// A new envelope with a fresh id and the current time; fill the optional fields directly.
    pub fn new(topic: Topic, payload: impl Into<Bytes>, origin: Origin) -> Envelope {
        Envelope::at(topic, payload, origin, now_ms())
    }

    /// [`Envelope::new`] stamped `timestamp_ms` (Unix milliseconds), for a caller that already read the clock.
    pub fn at(
        topic: Topic,
        payload: impl Into<Bytes>,
        origin: Origin,
        timestamp_ms: u64,
    ) -> Envelope {
        Envelope {
            topic,
            payload: payload.into(),
            headers: Headers::new(),
            content_type: None,
            key: None,
            reply_to: None,
            correlation_id: None,
            traceparent: None,
            tracestate: None,
            origin,
            id: MessageId::next(),
            timestamp_ms,
            position: None,
            expires_at_ms: None,
        }
    }

    /// Approximate memory charged to queues for this message.
    pub fn size(&self) -> usize {
        self.payload.len() + self.headers.byte_len() + self.topic.as_str().len() + 64
    }
}

/// The header or metadata key that carries W3C `traceparent` in the protocols that have per-message metadata.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// The header or metadata key that carries W3C `tracestate`.
pub const TRACESTATE_HEADER: &str = "tracestate";

impl Envelope {
    /// Moves the `traceparent` and `tracestate` headers a client sent (MessageLoop metadata, Goomerang
    /// headers) into [`Envelope::traceparent`] and [`Envelope::tracestate`].
    pub fn adopt_trace_headers(&mut self) {
        let text = |value: Bytes| String::from_utf8(value.to_vec()).ok();
        if let Some(value) = self.headers.take(TRACEPARENT_HEADER) {
            self.traceparent = text(value);
        }
        if let Some(value) = self.headers.take(TRACESTATE_HEADER) {
            self.tracestate = text(value);
        }
    }

    /// The user headers, then `traceparent` and `tracestate` when the message has them: what a protocol with
    /// per-message metadata delivers.
    pub fn headers_with_trace(&self) -> impl Iterator<Item = (&str, Bytes)> {
        let trace = [
            (TRACEPARENT_HEADER, self.traceparent.as_deref()),
            (TRACESTATE_HEADER, self.tracestate.as_deref()),
        ];
        self.headers
            .iter()
            .map(|(name, value)| (name, value.clone()))
            .chain(trace.into_iter().filter_map(|(name, value)| {
                value.map(|value| (name, Bytes::copy_from_slice(value.as_bytes())))
            }))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_and_first_wins() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("b", "2");
        h.push("a", "3");
        assert_eq!(h.get_str("a"), Some("1"));
        let names: Vec<_> = h.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "a"]);
    }

    #[test]
    fn message_ids_are_unique() {
        let a = MessageId::next();
        let b = MessageId::next();
        assert_ne!(a, b);
        assert_eq!(a.0 >> 64, b.0 >> 64);
    }
}
