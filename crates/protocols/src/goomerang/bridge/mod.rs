//! How Goomerang messages meet the bus (docs/protocols/goomerang.md, "How messages map"), as pure functions over
//! topics, header lists and envelopes; [`routing`]: the topics plain sends go to, and the kinds foreign messages
//! are delivered as.
//!
//! Towards the bus, a message keeps its protobuf bytes verbatim, names its type in the [`KIND_HEADER`]
//! header and has content type [`PROTOBUF_CONTENT_TYPE`]. Towards a Goomerang client, a bus message that
//! carries that header is delivered as its own kind; any other (foreign) body is wrapped in a
//! `BytesValue`-shaped message (field 1 = the body) of the configured [`WrapperKind`], and its content
//! type travels as a `content-type` header. Bus headers are an ordered list of `(name, value bytes)`;
//! Goomerang headers are UTF-8 strings.
//!
//! Goomerang topic names become canonical topics split on `.` ([`topic`]). The internal topics it uses
//! are [`broadcast_topic`] (`$goomerang.broadcast`) and [`rpc_topic`] (`$rpc.goomerang.<kind>`); names
//! in the internal `$` namespace are refused from clients ([`is_reserved_topic`]).

pub mod routing;

use bytes::Bytes;
use core_bus::{names, Envelope, Headers, Origin, Topic, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use prost::Message;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use self::routing::ForeignKinds;
use crate::goomerang::codec::headers::FrameHeaders;
use crate::goomerang::codec::Delivery;

/// First character of gatewayd's internal topic names (inboxes, RPC requests, broadcast).
pub const RESERVED_TOPIC_PREFIX: &str = "$";
/// The tokens of the bus topic broadcasts go to; every Goomerang connection is subscribed to it implicitly.
pub const BROADCAST_TOKENS: [&str; 2] = ["$goomerang", "broadcast"];
/// The protocol token of the RPC topics sync requests are bridged to: `$rpc.goomerang.<kind>`.
pub const RPC_PROTOCOL: &str = "goomerang";
/// The prefix the client puts on user header keys of publish and broadcast commands.
pub const USER_HEADER_PREFIX: &str = "message-";
/// Bus header naming the protobuf full name of a Goomerang body.
pub const KIND_HEADER: &str = "goomerang-kind";
/// Bus header with the body's media type (used when the envelope itself has none).
pub const CONTENT_TYPE_HEADER: &str = "content-type";
/// Bus header naming the identity of the Goomerang connection that made a direct or sync send (set by gatewayd,
/// never taken from the client).
pub const SENDER_HEADER: &str = "goomerang-sender";
/// The media type of bodies that came from a Goomerang client.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";

/// Whether a client's topic name is in gatewayd's internal `$` namespace. Clients may not subscribe,
/// unsubscribe or publish there: broadcast and sync requests have their own commands.
pub fn is_reserved_topic(name: &str) -> bool {
    name.starts_with(RESERVED_TOPIC_PREFIX)
}

/// The canonical topic of a client's topic name: the name split on `.`, every other character literal.
pub fn topic(name: &str) -> Topic {
    Topic::from_dotted(name.as_bytes())
}

/// The bus topic of broadcasts, `$goomerang.broadcast`.
pub fn broadcast_topic() -> Topic {
    Topic::from_tokens(BROADCAST_TOKENS)
}

/// The bus topic a sync request of `kind` is bridged to: `$rpc.goomerang.<kind>`, the kind as one token
/// (its dots escaped).
pub fn rpc_topic(kind: &str) -> Topic {
    names::rpc_topic(RPC_PROTOCOL, [kind])
}

/// The user headers of a publish or broadcast command: keys with the `message-` prefix, prefix
/// removed; every other header is dropped, as upstream does.
pub fn user_headers(command_headers: &FrameHeaders) -> FrameHeaders {
    command_headers
        .iter()
        .filter_map(|(key, value)| key.strip_prefix(USER_HEADER_PREFIX).map(|key| (key, value)))
        .collect()
}

/// The headers of a publish or broadcast command carrying `user` headers, as the Go client builds them.
pub fn command_headers(user: &FrameHeaders) -> FrameHeaders {
    user.iter()
        .map(|(key, value)| (format!("{USER_HEADER_PREFIX}{key}"), value))
        .collect()
}

/// Bus headers for a Goomerang message of `kind` with `user` headers: [`KIND_HEADER`], then the user
/// headers except [`KIND_HEADER`] and [`CONTENT_TYPE_HEADER`] (the content type is the envelope's own). The
/// constant names are not copied, nor is `kind`.
pub fn to_bus_headers(kind: Bytes, user: &FrameHeaders) -> Headers {
    let mut headers = Headers::with_capacity(1 + user.len());
    headers.push_static(KIND_HEADER, kind);
    for (key, value) in user.iter().filter(|(key, _)| !is_reserved_header(key)) {
        headers.push(key, Bytes::copy_from_slice(value.as_bytes()));
    }
    headers
}

/// The bus envelope for a Goomerang message of `kind` with `user` headers, published on `topic`: the body
/// verbatim, [`to_bus_headers`], content type [`PROTOBUF_CONTENT_TYPE`]. `kind` becomes the header's value
/// without a copy.
pub fn to_envelope(
    topic: Topic,
    kind: Utf8Bytes,
    body: Bytes,
    user: &FrameHeaders,
    origin: Origin,
    timestamp_ms: u64,
) -> Envelope {
    let mut envelope = Envelope::at(topic, body, origin, timestamp_ms);
    envelope.headers = to_bus_headers(Bytes::from(kind), user);
    envelope.adopt_trace_headers();
    envelope.content_type = Some(PROTOBUF_CONTENT_TYPE.into());
    envelope
}

/// The bus envelope of a direct or sync send of `kind` by `sender` on `topic`: [`to_envelope`] with the
/// [`SENDER_HEADER`] set to the sender (a client's own header of that name is dropped).
pub fn to_send_envelope(
    topic: Topic,
    kind: &str,
    body: Bytes,
    user: &FrameHeaders,
    origin: Origin,
    timestamp_ms: u64,
    sender: &str,
) -> Envelope {
    let user: FrameHeaders = user
        .iter()
        .filter(|(key, _)| *key != SENDER_HEADER)
        .collect();
    let mut envelope = to_envelope(topic, kind.into(), body, &user, origin, timestamp_ms);
    envelope
        .headers
        .push_static(SENDER_HEADER, sender.to_owned());
    envelope
}

/// What a Goomerang client receives for `envelope`: [`delivery_from_bus`] with the envelope's content
/// type standing in for a missing `content-type` header. A foreign envelope (no usable [`KIND_HEADER`]) that
/// `foreign` names a kind for keeps its body and is delivered as that kind.
pub fn from_envelope(
    envelope: &Envelope,
    wrapper: &WrapperKind,
    foreign: &ForeignKinds,
) -> Delivery {
    // Borrowed from the envelope, and not collected: building the delivery copies only what it keeps.
    // The kind is looked up (and its UTF-8 checked) once: the envelope's own, else the one `foreign` names.
    let kind = own_kind(&envelope.headers)
        .or_else(|| foreign.kind_of(&envelope.topic))
        .filter(|kind| !kind.is_empty());
    let content_type = envelope
        .content_type
        .as_deref()
        .map(|content_type| (CONTENT_TYPE_HEADER, content_type.as_bytes()));
    let trace = [
        (TRACEPARENT_HEADER, &envelope.traceparent),
        (TRACESTATE_HEADER, &envelope.tracestate),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value.as_deref()?.as_bytes())));
    let headers = content_type
        .into_iter()
        .chain(
            envelope
                .headers
                .iter()
                .map(|(name, value)| (name, &value[..])),
        )
        .chain(trace);
    delivery_from_headers(envelope.payload.clone(), kind, headers, wrapper)
}

/// What a Goomerang client receives for a bus message with `body` and `headers`.
///
/// With a [`KIND_HEADER`] the body passes through as that kind; without one it is wrapped as
/// `wrapper` and the bus `content-type`, if any, is kept. The other headers follow in order; a
/// repeated name keeps its first value, and a header whose name or value is not UTF-8 is left out
/// (a protobuf string must be UTF-8).
pub fn delivery_from_bus(body: Bytes, headers: &Headers, wrapper: &WrapperKind) -> Delivery {
    let kind = own_kind(headers);
    let headers = headers.iter().map(|(name, value)| (name, &value[..]));
    delivery_from_headers(body, kind, headers, wrapper)
}

/// The usable [`KIND_HEADER`] of `headers`: its first value, when that is UTF-8 and not empty.
fn own_kind(headers: &Headers) -> Option<&str> {
    headers.get_str(KIND_HEADER).filter(|kind| !kind.is_empty())
}

/// [`delivery_from_bus`] over borrowed headers, with the delivery's `kind` (a usable [`KIND_HEADER`]'s value)
/// already found.
fn delivery_from_headers<'a>(
    body: Bytes,
    kind: Option<&str>,
    headers: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
    wrapper: &WrapperKind,
) -> Delivery {
    let mut out = FrameHeaders::new();
    let (kind, payload) = match kind {
        Some(kind) => (kind.to_owned(), body),
        None => {
            let content_type = headers
                .clone()
                .find(|(key, _)| *key == CONTENT_TYPE_HEADER)
                .and_then(|(_, value)| std::str::from_utf8(value).ok());
            if let Some(content_type) = content_type {
                out.insert(CONTENT_TYPE_HEADER, content_type);
            }
            (
                wrapper.as_str().to_owned(),
                Bytes::from(body.encode_to_vec()),
            )
        }
    };
    for (name, value) in headers {
        if is_reserved_header(name) || out.get(name).is_some() {
            continue;
        }
        if let Ok(value) = std::str::from_utf8(value) {
            out.insert(name, value);
        }
    }
    Delivery {
        kind,
        payload,
        headers: out,
    }
}

fn is_reserved_header(name: &str) -> bool {
    name == KIND_HEADER || name == CONTENT_TYPE_HEADER
}

/// The kind foreign bodies are delivered as. Its message must have the shape of
/// `google.protobuf.BytesValue`: the body in field 1 as bytes. In config it is the full name as a string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WrapperKind(String);

/// A configured wrapper kind is not a protobuf full name (`pkg.Name`, no leading dot, no type URL).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not a protobuf message full name")]
pub struct InvalidKind(pub String);

impl WrapperKind {
    /// The default, which every Go client can register (`wrapperspb.BytesValue`).
    pub const BYTES_VALUE: &'static str = "google.protobuf.BytesValue";

    /// A wrapper kind from configuration.
    pub fn new(kind: impl Into<String>) -> Result<Self, InvalidKind> {
        let kind = kind.into();
        let valid = kind.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if valid {
            Ok(Self(kind))
        } else {
            Err(InvalidKind(kind))
        }
    }

    /// The full name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WrapperKind {
    type Error = InvalidKind;

    fn try_from(kind: String) -> Result<Self, InvalidKind> {
        Self::new(kind)
    }
}

impl From<WrapperKind> for String {
    fn from(kind: WrapperKind) -> String {
        kind.0
    }
}

impl Default for WrapperKind {
    fn default() -> Self {
        Self(Self::BYTES_VALUE.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use proptest::prelude::*;

    use super::*;
    use crate::goomerang::codec::encode_delivery;

    fn bus(pairs: &[(&str, &[u8])]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Bytes::copy_from_slice(v)))
            .collect()
    }

    fn frame_headers(pairs: &[(&str, &str)]) -> FrameHeaders {
        pairs.iter().copied().collect()
    }

    #[test]
    fn reserved_and_internal_topics() {
        assert_eq!(broadcast_topic().as_str(), "$goomerang.broadcast");
        assert_eq!(rpc_topic("a.B").as_str(), "$rpc.goomerang.a%2EB");
        for internal in [broadcast_topic(), rpc_topic("a.B")] {
            assert!(internal.is_internal());
            let name = internal.to_dotted().unwrap();
            assert!(is_reserved_topic(&name), "{name}");
        }
        assert!(is_reserved_topic("$inbox.1.x"));
        assert!(!is_reserved_topic("goomerang.broadcast"));
        assert!(!is_reserved_topic("news$"));
        assert_eq!(topic("orders.eu").as_str(), "orders.eu");
        assert_eq!(topic("a b.*").as_str(), "a%20b.%2A");
        assert_eq!(topic("").as_str(), "%_");
    }

    #[test]
    fn prefix_is_stripped_and_unprefixed_headers_dropped() {
        let sent = frame_headers(&[
            ("message-a", "b"),
            ("x", "y"),
            ("message-", "e"),
            ("Message-c", "d"),
        ]);
        assert_eq!(user_headers(&sent), frame_headers(&[("a", "b"), ("", "e")]));
        let user = frame_headers(&[("a", "b"), ("", "e")]);
        assert_eq!(user_headers(&command_headers(&user)), user);
    }

    #[test]
    fn publish_to_bus_headers_and_envelope() {
        let user = frame_headers(&[
            ("trace", "1"),
            ("content-type", "text/plain"),
            ("goomerang-kind", "x"),
        ]);
        assert_eq!(
            to_bus_headers(Bytes::from_static(b"a.B"), &user),
            bus(&[("goomerang-kind", b"a.B"), ("trace", b"1")])
        );
        let origin = Origin {
            protocol: core_bus::Protocol::Goomerang,
            connection: core_bus::ConnectionId(7),
        };
        let envelope = to_envelope(
            topic("news"),
            "a.B".into(),
            Bytes::from_static(b"\x0a\x02hi"),
            &user,
            origin,
            1_700_000_000_000,
        );
        assert_eq!(envelope.topic.as_str(), "news");
        assert_eq!(envelope.timestamp_ms, 1_700_000_000_000);
        assert_eq!(&envelope.payload[..], b"\x0a\x02hi");
        assert_eq!(
            envelope.content_type.as_deref(),
            Some("application/x-protobuf")
        );
        assert_eq!(envelope.headers.get_str("goomerang-kind"), Some("a.B"));
        assert_eq!(envelope.headers.len(), 2);
        assert_eq!(
            from_envelope(&envelope, &WrapperKind::default(), &ForeignKinds::default()),
            Delivery {
                kind: "a.B".into(),
                payload: Bytes::from_static(b"\x0a\x02hi"),
                headers: frame_headers(&[("trace", "1")]),
            }
        );
    }

    #[test]
    fn foreign_envelope_content_type_becomes_a_header() {
        let origin = Origin {
            protocol: core_bus::Protocol::Stomp,
            connection: core_bus::ConnectionId(1),
        };
        let mut envelope = Envelope::new(topic("news"), Bytes::from_static(b"{}"), origin);
        envelope.content_type = Some("application/json".into());
        envelope.headers.push("content-type", "text/plain");
        envelope.headers.push("x", "1");
        let delivery = from_envelope(&envelope, &WrapperKind::default(), &ForeignKinds::default());
        assert_eq!(delivery.kind, "google.protobuf.BytesValue");
        assert_eq!(&delivery.payload[..], b"\x0a\x02{}");
        assert_eq!(
            delivery.headers,
            frame_headers(&[("content-type", "application/json"), ("x", "1")])
        );
    }

    #[test]
    fn goomerang_bodies_pass_through() {
        let delivery = delivery_from_bus(
            Bytes::from_static(b"\x0a\x02hi"),
            &bus(&[
                ("goomerang-kind", b"a.B"),
                ("content-type", b"application/x-protobuf"),
                ("trace", b"1"),
                ("trace", b"2"),
                ("bin", b"\xff"),
            ]),
            &WrapperKind::default(),
        );
        assert_eq!(
            delivery,
            Delivery {
                kind: "a.B".into(),
                payload: Bytes::from_static(b"\x0a\x02hi"),
                headers: frame_headers(&[("trace", "1")]),
            }
        );
    }

    #[test]
    fn foreign_bodies_are_wrapped() {
        // JSON `{}` with `content-type: application/json`, 84 bytes (docs/protocols/goomerang.md,
        // "Deliveries and sync replies").
        let delivery = delivery_from_bus(
            Bytes::from_static(b"{}"),
            &bus(&[("content-type", b"application/json")]),
            &WrapperKind::default(),
        );
        let creation = UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000);
        let mut expected = vec![0x12, 0x1a];
        expected.extend_from_slice(b"google.protobuf.BytesValue");
        expected.extend_from_slice(&[0x18, 0x04]);
        expected.extend_from_slice(&[
            0x2a, 0x0c, 0x08, 0x80, 0xe2, 0xcf, 0xaa, 0x06, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01,
        ]);
        expected.extend_from_slice(&[0x32, 0x20, 0x0a, 0x0c]);
        expected.extend_from_slice(b"content-type");
        expected.extend_from_slice(&[0x12, 0x10]);
        expected.extend_from_slice(b"application/json");
        expected.extend_from_slice(&[0x3a, 0x04, 0x0a, 0x02, b'{', b'}']);
        assert_eq!(expected.len(), 84);
        assert_eq!(encode_delivery(&delivery, creation), expected);
    }

    #[test]
    fn empty_or_binary_kind_header_means_foreign() {
        let wrapper = WrapperKind::new("acme.Blob").unwrap();
        for kind in [&b""[..], b"\xff"] {
            let delivery = delivery_from_bus(
                Bytes::new(),
                &bus(&[("goomerang-kind", kind), ("h", b"v")]),
                &wrapper,
            );
            // An empty body gives an empty BytesValue payload.
            assert_eq!(
                delivery,
                Delivery {
                    kind: "acme.Blob".into(),
                    payload: Bytes::new(),
                    headers: frame_headers(&[("h", "v")]),
                }
            );
        }
    }

    #[test]
    fn wrapper_kind_validation() {
        assert_eq!(
            WrapperKind::default().as_str(),
            "google.protobuf.BytesValue"
        );
        assert!(WrapperKind::new("gatewayd.v1.Envelope").is_ok());
        assert!(WrapperKind::new("Blob").is_ok());
        for bad in [
            "",
            ".a.B",
            "a..B",
            "a.B.",
            "type.googleapis.com/a.B",
            "1a.B",
            "a-b.C",
        ] {
            assert_eq!(WrapperKind::new(bad), Err(InvalidKind(bad.into())), "{bad}");
        }
    }

    proptest! {
        /// Goomerang → bus → Goomerang keeps kind, bytes and the user headers (minus the two reserved names).
        #[test]
        fn goomerang_round_trip_through_the_bus(
            kind in "[a-z]{1,6}(\\.[A-Z][a-z]{0,6}){1,2}",
            body in proptest::collection::vec(any::<u8>(), 0..32),
            user in proptest::collection::vec((".{0,8}", ".{0,4}"), 0..6),
        ) {
            let user: FrameHeaders = user.into_iter().collect();
            let sent = command_headers(&user);
            let bus_headers = to_bus_headers(Bytes::from(kind.clone()), &user_headers(&sent));
            let delivery = delivery_from_bus(Bytes::from(body.clone()), &bus_headers, &WrapperKind::default());
            let expected: FrameHeaders = user.iter().filter(|(k, _)| !is_reserved_header(k)).collect();
            prop_assert_eq!(delivery, Delivery { kind, payload: Bytes::from(body), headers: expected });
        }

        /// A foreign body comes back out of the wrapper unchanged.
        #[test]
        fn wrapped_bodies_decode_as_bytes_value(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let delivery = delivery_from_bus(Bytes::from(body.clone()), &Headers::new(), &WrapperKind::default());
            prop_assert_eq!(Bytes::decode(delivery.payload).unwrap(), Bytes::from(body));
        }
    }
}
