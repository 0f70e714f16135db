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

use crate::stomp::codec::frame::{header, Frame, SharedHeader};

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

/// What a SEND header is to its envelope.
#[derive(Clone, Copy)]
enum Role {
    ContentType,
    CorrelationId,
    Traceparent,
    Tracestate,
    GroupId,
    ReplyTo,
    /// Consumed by the session or owned by the server: never a user header.
    Consumed,
    /// Read for the expiry, and kept as a user header too.
    Expires,
    Expiration,
    User,
}

impl Role {
    /// What the header called `name` is: one match against every name the bridge knows.
    fn of(name: &[u8]) -> Role {
        const CONTENT_TYPE: &[u8] = header::CONTENT_TYPE.as_bytes();
        const CORRELATION: &[u8] = CORRELATION_ID.as_bytes();
        const TRACE_PARENT: &[u8] = TRACEPARENT.as_bytes();
        const TRACE_STATE: &[u8] = TRACESTATE.as_bytes();
        const GROUP: &[u8] = GROUP_ID.as_bytes();
        const REPLY_TO: &[u8] = header::REPLY_TO.as_bytes();
        const EXPIRES_AT: &[u8] = EXPIRES.as_bytes();
        const EXPIRATION_MS: &[u8] = EXPIRATION.as_bytes();
        const DESTINATION: &[u8] = header::DESTINATION.as_bytes();
        const TRANSACTION: &[u8] = header::TRANSACTION.as_bytes();
        const RECEIPT: &[u8] = header::RECEIPT.as_bytes();
        const CONTENT_LENGTH: &[u8] = header::CONTENT_LENGTH.as_bytes();
        const MESSAGE_ID: &[u8] = header::MESSAGE_ID.as_bytes();
        const SUBSCRIPTION: &[u8] = header::SUBSCRIPTION.as_bytes();
        const ACK: &[u8] = header::ACK.as_bytes();
        const REDELIVERED: &[u8] = header::REDELIVERED.as_bytes();
        match name {
            CONTENT_TYPE => Role::ContentType,
            CORRELATION => Role::CorrelationId,
            TRACE_PARENT => Role::Traceparent,
            TRACE_STATE => Role::Tracestate,
            GROUP => Role::GroupId,
            REPLY_TO => Role::ReplyTo,
            EXPIRES_AT => Role::Expires,
            EXPIRATION_MS => Role::Expiration,
            DESTINATION | TRANSACTION | RECEIPT | CONTENT_LENGTH | MESSAGE_ID | SUBSCRIPTION
            | ACK | REDELIVERED => Role::Consumed,
            _ => Role::User,
        }
    }
}

/// The envelope for a SEND to `topic`, stamped `timestamp_ms`. `reply_to` is the resolved `reply-to` header; when
/// the session could not resolve it, the raw header travels as a user header. The headers are read in one pass;
/// of a repeated mapped header the first counts (STOMP's "Repeated Header Entries").
pub fn to_envelope(
    frame: &Frame,
    topic: Topic,
    reply_to: Option<Topic>,
    origin: Origin,
    timestamp_ms: u64,
) -> Envelope {
    let mut envelope = Envelope::at(topic, frame.body.clone(), origin, timestamp_ms);
    let keep_reply_to = reply_to.is_none();
    envelope.reply_to = reply_to;
    let mut mapped = Mapped::default();
    for header in frame.headers.iter_shared() {
        // Which envelope field the header maps to, and whether it is also a user header.
        let (slot, user) = match Role::of(header.name()) {
            Role::ContentType => (Some(&mut mapped.content_type), false),
            Role::CorrelationId => (Some(&mut mapped.correlation_id), false),
            Role::Traceparent => (Some(&mut mapped.traceparent), false),
            Role::Tracestate => (Some(&mut mapped.tracestate), false),
            Role::GroupId => (Some(&mut mapped.group_id), false),
            Role::Expires => (Some(&mut mapped.expires), true),
            Role::Expiration => (Some(&mut mapped.expiration), true),
            Role::ReplyTo => (None, keep_reply_to),
            Role::Consumed => (None, false),
            Role::User => (None, true),
        };
        if user {
            envelope.headers.push(
                String::from_utf8_lossy(header.name()).into_owned(),
                header.shared(),
            );
        }
        if let Some(slot) = slot {
            slot.get_or_insert(header);
        }
    }
    let text = |header: Option<SharedHeader<'_>>| {
        std::str::from_utf8(header?.value()).ok().map(str::to_owned)
    };
    envelope.content_type = text(mapped.content_type).map(Into::into);
    envelope.correlation_id = text(mapped.correlation_id);
    envelope.traceparent = text(mapped.traceparent);
    envelope.tracestate = text(mapped.tracestate);
    envelope.key = mapped.group_id.map(|header| header.shared());
    envelope.expires_at_ms = expiry(
        mapped.expires.map(|header| header.value()),
        mapped.expiration.map(|header| header.value()),
        envelope.timestamp_ms,
    );
    envelope
}

/// The first of each SEND header [`to_envelope`] maps to a field of the envelope.
#[derive(Default)]
struct Mapped<'a> {
    content_type: Option<SharedHeader<'a>>,
    correlation_id: Option<SharedHeader<'a>>,
    traceparent: Option<SharedHeader<'a>>,
    tracestate: Option<SharedHeader<'a>>,
    group_id: Option<SharedHeader<'a>>,
    expires: Option<SharedHeader<'a>>,
    expiration: Option<SharedHeader<'a>>,
}

/// When a SEND's message expires: ActiveMQ's `expires` (milliseconds since the epoch, 0 = never) or RabbitMQ's
/// `expiration` (milliseconds from now), the earlier when both are there. Values that are not numbers are ignored,
/// as those brokers do.
fn expiry(expires: Option<&[u8]>, expiration: Option<&[u8]>, now_ms: u64) -> Option<u64> {
    let number = |value: Option<&[u8]>| {
        std::str::from_utf8(value?)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let absolute = number(expires).filter(|&at| at != 0);
    let relative = number(expiration).map(|ttl| now_ms.saturating_add(ttl));
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

    /// Of a repeated mapped header the first counts, even when it is not UTF-8; user headers keep every
    /// repeat in order; the expiry headers are read and kept; what the session consumes is stripped.
    #[test]
    fn repeated_and_consumed_headers() {
        let frame = Frame::new(Command::Send)
            .with_header("destination", "/topic/a")
            .with_header("content-type", &b"\xff"[..])
            .with_header("content-type", "text/plain")
            .with_header("traceparent", "00-a-b-01")
            .with_header("traceparent", "00-c-d-01")
            .with_header("tracestate", "k=v")
            .with_header("JMSXGroupID", "g1")
            .with_header("JMSXGroupID", "g2")
            .with_header("x-user", "1")
            .with_header("expires", "5000")
            .with_header("expires", "100")
            .with_header("expiration", "20")
            .with_header("x-user", "2")
            .with_header("transaction", "t")
            .with_header("receipt", "r")
            .with_header("content-length", "2")
            .with_header("subscription", "s")
            .with_header("ack", "a")
            .with_header("redelivered", "true")
            .with_body(&b"hi"[..]);
        let e = to_envelope(&frame, Topic::from_dotted(b"a"), None, origin(), 1_000);
        assert_eq!(e.content_type, None);
        assert_eq!(e.traceparent.as_deref(), Some("00-a-b-01"));
        assert_eq!(e.tracestate.as_deref(), Some("k=v"));
        assert_eq!(e.key.as_deref(), Some(&b"g1"[..]));
        assert_eq!(e.expires_at_ms, Some(1_020));
        let headers: Vec<_> = e
            .headers
            .iter()
            .map(|(n, v)| (n, std::str::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("x-user", "1"),
                ("expires", "5000"),
                ("expires", "100"),
                ("expiration", "20"),
                ("x-user", "2"),
            ]
        );
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
