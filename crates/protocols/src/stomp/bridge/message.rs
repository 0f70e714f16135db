//! MESSAGE frames written straight from a bus delivery into the session's output buffer: no
//! [`Frame`](crate::stomp::codec::frame::Frame), no header list and no string per message. The command line
//! and `subscription` header of a subscription are encoded once ([`head`]); numbers are written
//! in place.
//!
//! Headers, in order (docs/protocols/stomp.md, "What a STOMP message looks like elsewhere"):
//! `subscription`, `destination`, `message-id`, `ack` (1.2 client acks), `redelivered`,
//! `content-type`, `content-length`, `JMSXGroupID`, `reply-to`, `correlation-id`, `traceparent`,
//! `tracestate`, then the user headers. A user header value that is not UTF-8 is written as
//! [`BASE64_MARKER`] followed by its standard base64.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use core_bus::{Envelope, SOURCE_TOPIC_HEADER};

use super::{
    named, reply_queue_of, BASE64_MARKER, CORRELATION_ID, GROUP_ID, TRACEPARENT, TRACESTATE,
};
use crate::stomp::codec::escape::Escaping;
use crate::stomp::codec::frame::{header, Command, Version};
use crate::stomp::codec::writer::{put_decimal, put_header, Written};

const TOPIC: &str = "/topic/";

/// The server-owned headers of one MESSAGE.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    /// The subscription's [`head`].
    pub head: &'a [u8],
    pub destination: &'a [u8],
    /// `message-id` is `id_prefix` followed by `id_seq` in decimal.
    pub id_prefix: &'a str,
    pub id_seq: u64,
    /// Write `ack:<message-id>` (1.2 client and client-individual subscriptions).
    pub ack: bool,
    pub redelivered: bool,
}

/// `MESSAGE` and the `subscription` header for subscription `id`, escaped for `version`.
pub fn head(id: &str, version: Version) -> Bytes {
    let escaping = Escaping::for_frame(Command::Message, version);
    let mut dst = BytesMut::with_capacity(32 + id.len());
    dst.put_slice(b"MESSAGE\n");
    // An id the version cannot carry (a CR in 1.1) is left out, as `encode` would.
    let _ = put_header(
        escaping,
        header::SUBSCRIPTION.as_bytes(),
        id.as_bytes(),
        &mut dst,
    );
    dst.freeze()
}

/// Appends the MESSAGE frame for `envelope` to `dst`.
pub fn from_envelope(
    delivered: &Delivered<'_>,
    envelope: &Envelope,
    version: Version,
    dst: &mut BytesMut,
) -> Written {
    let escaping = Escaping::for_frame(Command::Message, version);
    let mut written = Written::default();
    let mut header = |name: &str, value: &[u8], dst: &mut BytesMut| {
        if !put_header(escaping, name.as_bytes(), value, dst) {
            written.dropped_headers += 1;
        }
    };
    let body = &envelope.payload;
    dst.reserve(delivered.head.len() + delivered.destination.len() + body.len() + 96);
    dst.put_slice(delivered.head);
    header(header::DESTINATION, delivered.destination, dst);
    put_id(header::MESSAGE_ID, delivered, dst);
    if delivered.ack {
        put_id(header::ACK, delivered, dst);
    }
    if delivered.redelivered {
        header(header::REDELIVERED, b"true", dst);
    }
    if let Some(content_type) = &envelope.content_type {
        header(header::CONTENT_TYPE, content_type.as_bytes(), dst);
    }
    dst.put_slice(header::CONTENT_LENGTH.as_bytes());
    dst.put_u8(b':');
    put_decimal(body.len() as u64, dst);
    dst.put_u8(b'\n');
    if let Some(key) = &envelope.key {
        header(GROUP_ID, key, dst);
    }
    if let Some(reply_to) = &envelope.reply_to {
        let address = match reply_queue_of(reply_to) {
            Some(reply_queue) => Bytes::from(reply_queue),
            None => named(TOPIC, reply_to),
        };
        header(header::REPLY_TO, &address, dst);
    }
    if let Some(correlation_id) = &envelope.correlation_id {
        header(CORRELATION_ID, correlation_id.as_bytes(), dst);
    }
    if let Some(traceparent) = &envelope.traceparent {
        header(TRACEPARENT, traceparent.as_bytes(), dst);
    }
    if let Some(tracestate) = &envelope.tracestate {
        header(TRACESTATE, tracestate.as_bytes(), dst);
    }
    for (name, value) in envelope.headers.iter() {
        if name == SOURCE_TOPIC_HEADER {
            continue;
        }
        if core_bus::text::utf8(value).is_some() {
            header(name, value, dst);
        } else {
            let encoded = base64::engine::general_purpose::STANDARD.encode(value);
            header(name, format!("{BASE64_MARKER}{encoded}").as_bytes(), dst);
        }
    }
    dst.put_u8(b'\n');
    dst.put_slice(body);
    dst.put_slice(b"\0\n");
    written
}

/// `name:<prefix><seq>`; the prefix is the connection number and a dash, nothing to escape.
fn put_id(name: &str, delivered: &Delivered<'_>, dst: &mut BytesMut) {
    dst.put_slice(name.as_bytes());
    dst.put_u8(b':');
    dst.put_slice(delivered.id_prefix.as_bytes());
    put_decimal(delivered.id_seq, dst);
    dst.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::codec::frame::Frame;
    use crate::stomp::codec::parser::{Decoded, Decoder};
    use crate::stomp::limits::Limits;
    use core_bus::{ConnectionId, Origin, Protocol, Topic};

    fn decode(wire: &[u8], version: Version) -> Frame {
        let mut decoder = Decoder::new(Limits::DEFAULT);
        decoder.set_version(version);
        match decoder.decode(&mut BytesMut::from(wire)) {
            Ok(Some(Decoded::Frame(frame))) => frame,
            other => panic!("{other:?}"),
        }
    }

    fn envelope() -> Envelope {
        let origin = Origin {
            protocol: Protocol::Stomp,
            connection: ConnectionId(7),
        };
        let mut e = Envelope::new(Topic::from_dotted(b"a.b"), &b"bo\0dy"[..], origin);
        e.content_type = Some("application/json".into());
        e.key = Some(Bytes::from_static(b"k"));
        e.reply_to = Some(core_bus::names::inbox(ConnectionId(3), b"x"));
        e.correlation_id = Some("c".into());
        e.headers.push("plain", &b"v:1"[..]);
        e.headers.push("raw", &b"\xff\x00"[..]);
        e.headers.push(SOURCE_TOPIC_HEADER, &b"t"[..]);
        e
    }

    #[test]
    fn message_carries_everything_in_order() {
        let e = envelope();
        let head = head("s:1", Version::V1_2);
        let delivered = Delivered {
            head: &head,
            destination: b"/topic/a.b",
            id_prefix: "9-",
            id_seq: 12,
            ack: true,
            redelivered: true,
        };
        let mut wire = BytesMut::new();
        let written = from_envelope(&delivered, &e, Version::V1_2, &mut wire);
        assert_eq!(written.dropped_headers, 0);
        let frame = decode(&wire, Version::V1_2);
        assert_eq!(frame.command, Command::Message);
        let headers: Vec<(String, String)> = frame
            .headers
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name).into_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let expected = [
            ("subscription", "s:1"),
            ("destination", "/topic/a.b"),
            ("message-id", "9-12"),
            ("ack", "9-12"),
            ("redelivered", "true"),
            ("content-type", "application/json"),
            ("content-length", "5"),
            ("JMSXGroupID", "k"),
            ("reply-to", "/reply-queue/3.x"),
            ("correlation-id", "c"),
            ("plain", "v:1"),
            ("raw", "base64:/wA="),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(headers, expected);
        assert_eq!(&frame.body[..], b"bo\0dy");
        assert!(wire.ends_with(b"bo\0dy\0\n"));
    }

    #[test]
    fn version_1_0_leaves_out_what_it_cannot_carry() {
        let mut e = envelope();
        e.headers.push("multi", &b"line\none"[..]);
        let head = head("s", Version::V1_0);
        let delivered = Delivered {
            head: &head,
            destination: b"/queue/q",
            id_prefix: "1-",
            id_seq: 0,
            ack: false,
            redelivered: false,
        };
        let mut wire = BytesMut::new();
        let written = from_envelope(&delivered, &e, Version::V1_0, &mut wire);
        assert_eq!(written.dropped_headers, 1);
        let frame = decode(&wire, Version::V1_0);
        assert_eq!(frame.header("message-id"), Some(&b"1-0"[..]));
        assert_eq!(frame.header("ack"), None);
        assert_eq!(frame.header("multi"), None);
        assert_eq!(frame.header("plain"), Some(&b"v:1"[..]));
    }
}
