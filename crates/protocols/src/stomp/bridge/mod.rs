//! How a STOMP message looks on the bus and back (docs/protocols/stomp.md, "What a STOMP message
//! looks like elsewhere"), all of it in this role: SEND → [`Envelope`] here ([`to_envelope`]),
//! [`Envelope`] → MESSAGE in [`message`] ([`from_envelope`]), which uses the names made here.
//!
//! | STOMP header | envelope |
//! |---|---|
//! | body, `content-type` | payload, content type |
//! | `JMSXGroupID` | key (anycast affinity, Loom key) |
//! | `reply-to` (resolved by the session) | reply-to topic; an inbox comes back as `/reply-queue/<opaque>`, another topic as `/topic/<name>` |
//! | `correlation-id`, `traceparent`, `tracestate` | correlation id, trace context |
//! | `message-id`, `subscription`, `ack`, `redelivered` | stripped on SEND: the server owns them |
//! | `destination`, `transaction`, `receipt`, `content-length` | consumed by the session |
//! | anything else | user headers, in order |
//!
//! A user header value that is not UTF-8 (possible when another protocol published it) is
//! written to MESSAGE as [`BASE64_MARKER`] followed by its standard base64.

use bytes::{BufMut, Bytes, BytesMut};
use core_bus::names::INBOX_TOKEN;
use core_bus::{Envelope, Origin, Topic};

use crate::stomp::codec::frame::{header, Frame};

pub mod message;

pub use message::{from_envelope, Delivered};

/// Prefix of a MESSAGE header value that carries non-UTF-8 bytes as base64.
pub const BASE64_MARKER: &str = "base64:";
/// The STOMP header mapped to the envelope key.
pub const GROUP_ID: &str = "JMSXGroupID";
pub const CORRELATION_ID: &str = "correlation-id";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// ActiveMQ's message expiry: milliseconds since the Unix epoch, 0 for never.
const EXPIRES: &str = "expires";
/// RabbitMQ's per-message TTL in milliseconds.
const EXPIRATION: &str = "expiration";
/// NACK header choosing between requeue (default) and drop (RabbitMQ).
pub const REQUEUE: &str = "requeue";
/// SUBSCRIBE headers giving a `/queue/` prefetch window (RabbitMQ, ActiveMQ).
pub const PREFETCH_HEADERS: [&str; 2] = ["prefetch-count", "activemq.prefetchSize"];

const REPLY_QUEUE: &str = "/reply-queue/";

/// SEND headers that never become user headers.
const NOT_USER_HEADERS: [&str; 14] = [
    header::DESTINATION,
    header::TRANSACTION,
    header::RECEIPT,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::MESSAGE_ID,
    header::SUBSCRIPTION,
    header::ACK,
    header::REDELIVERED,
    header::REPLY_TO,
    GROUP_ID,
    CORRELATION_ID,
    TRACEPARENT,
    TRACESTATE,
];

/// The envelope for a SEND to `topic`, stamped `timestamp_ms`. `reply_to` is the resolved `reply-to` header; when
/// the session could not resolve it, the raw header travels as a user header.
pub fn to_envelope(
    frame: &Frame,
    topic: Topic,
    reply_to: Option<Topic>,
    origin: Origin,
    timestamp_ms: u64,
) -> Envelope {
    let mut envelope = Envelope::at(topic, frame.body.clone(), origin, timestamp_ms);
    let text = |name: &str| {
        frame
            .header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    envelope.content_type = text(header::CONTENT_TYPE).map(Into::into);
    envelope.correlation_id = text(CORRELATION_ID);
    envelope.traceparent = text(TRACEPARENT);
    envelope.tracestate = text(TRACESTATE);
    envelope.key = frame.headers.get_bytes(GROUP_ID);
    envelope.expires_at_ms = expiry(&text, envelope.timestamp_ms);
    let keep_reply_to = reply_to.is_none();
    envelope.reply_to = reply_to;
    for (name, value) in frame.headers.iter_shared() {
        let consumed = NOT_USER_HEADERS.iter().any(|n| name == n.as_bytes());
        if consumed && !(keep_reply_to && name == header::REPLY_TO.as_bytes()) {
            continue;
        }
        envelope
            .headers
            .push(String::from_utf8_lossy(name).into_owned(), value);
    }
    envelope
}

/// When a SEND's message expires: ActiveMQ's `expires` (milliseconds since the epoch, 0 = never) or RabbitMQ's
/// `expiration` (milliseconds from now), the earlier when both are there. Values that are not numbers are ignored,
/// as those brokers do.
fn expiry(text: &impl Fn(&str) -> Option<String>, now_ms: u64) -> Option<u64> {
    let number = |name: &str| text(name).and_then(|v| v.trim().parse::<u64>().ok());
    let absolute = number(EXPIRES).filter(|&at| at != 0);
    let relative = number(EXPIRATION).map(|ttl| now_ms.saturating_add(ttl));
    match (absolute, relative) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The `/reply-queue/` address of an inbox topic, or `None` if `topic` is not an inbox.
pub fn reply_queue_of(topic: &Topic) -> Option<String> {
    let rest = topic
        .as_str()
        .strip_prefix(INBOX_TOKEN)?
        .strip_prefix('.')?;
    Some(format!("{REPLY_QUEUE}{rest}"))
}

/// The inbox topic a `/reply-queue/<opaque>` name stands for.
pub fn inbox_of_reply_queue(opaque: &str) -> Option<Topic> {
    let topic = Topic::parse(&format!("{INBOX_TOKEN}.{opaque}")).ok()?;
    (topic.tokens().count() >= 3).then_some(topic)
}

/// `prefix` followed by the topic's name (dotted; canonical for internal topics).
pub fn named(prefix: &str, topic: &Topic) -> Bytes {
    let dotted = crate::names::topic_to_name(topic);
    let mut value = BytesMut::with_capacity(prefix.len() + dotted.len());
    value.put_slice(prefix.as_bytes());
    value.put_slice(&dotted);
    value.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::codec::frame::Command;
    use core_bus::{ConnectionId, Protocol};

    fn origin() -> Origin {
        Origin {
            protocol: Protocol::Stomp,
            connection: ConnectionId(7),
        }
    }

    #[test]
    fn send_headers_map_onto_the_envelope() {
        let frame = Frame::new(Command::Send)
            .with_header("destination", "/queue/a")
            .with_header("message-id", "forged")
            .with_header("content-type", "text/plain")
            .with_header("JMSXGroupID", "g1")
            .with_header("correlation-id", "c-9")
            .with_header("x-user", "a:b")
            .with_header("reply-to", "/odd/place")
            .with_body(&b"hi\0there"[..]);
        let topic = Topic::from_dotted(b"a");
        let e = to_envelope(&frame, topic.clone(), None, origin(), 7);
        assert_eq!(e.timestamp_ms, 7);
        assert_eq!(e.topic, topic);
        assert_eq!(&e.payload[..], b"hi\0there");
        assert_eq!(e.content_type.as_deref(), Some("text/plain"));
        assert_eq!(e.key.as_deref(), Some(&b"g1"[..]));
        assert_eq!(e.correlation_id.as_deref(), Some("c-9"));
        let names: Vec<_> = e.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["x-user", "reply-to"]);
        let resolved = to_envelope(&frame, topic, Some(Topic::from_dotted(b"r")), origin(), 7);
        assert_eq!(resolved.headers.len(), 1);
        assert_eq!(resolved.reply_to, Some(Topic::from_dotted(b"r")));
    }

    #[test]
    fn inbox_reply_queue_round_trip() {
        let inbox = core_bus::names::inbox(ConnectionId(5), b"r.1");
        let address = reply_queue_of(&inbox).unwrap();
        assert_eq!(address, "/reply-queue/5.r%2E1");
        let opaque = address.strip_prefix(REPLY_QUEUE).unwrap();
        assert_eq!(inbox_of_reply_queue(opaque), Some(inbox));
        assert_eq!(reply_queue_of(&Topic::from_dotted(b"orders")), None);
        assert_eq!(inbox_of_reply_queue("5"), None);
    }
}
