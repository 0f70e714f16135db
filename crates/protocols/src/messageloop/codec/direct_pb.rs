//! The G2 protobuf envelopes of the publish hot path, a `publication` and a `publish_ack`, written straight from
//! the neutral messages: the bytes prost gives for the generated `OutboundMessage` (fields in number order, proto3
//! defaults left out, a set oneof member and a set `optional` field kept even when default), without building the
//! protobuf messages (a copy of every string) for each one. Metadata entries are written in header order (prost
//! writes its map in hash order, so only the decoded messages compare equal). A message with a JSON payload, or with
//! more than [`DIRECT_HEADERS`] headers, is left to the general path. For clients (gatewayctl), [`publish`] writes
//! the `InboundMessage` of a plain binary publish the same way. [`around`] writes the `id` and `time` of each
//! subscriber's envelope before a shared publication's body, in every generation.

use bytes::Bytes;
use prost::encoding::{encoded_len_varint, key_len, WireType};
use smallvec::SmallVec;

use crate::messageloop::message::{Message, Payload, PayloadData, Position};
use crate::protobuf::{put_key, put_varint};

/// `OutboundMessage` fields (`id` and `time` are also `InboundMessage`'s).
const ID: u32 = 1;
const TIME: u32 = 2;
const PUBLISH_ACK: u32 = 7;
const PUBLICATION: u32 = 8;
/// `InboundMessage`'s publish.
const PUBLISH: u32 = 6;
/// Headers a message may have to be written here. Finding each name's first UTF-8 value compares every header with
/// the ones before it, which is bounded only while their number is.
const DIRECT_HEADERS: usize = 8;

/// The envelope `id` publishing `binary` data of `content_type` to `channel`, without metadata: what prost gives
/// for the `InboundMessage` a client builds (time 0, a `Payload` whose `binary` member is set).
pub fn publish(id: &str, channel: &str, content_type: &str, binary: &[u8]) -> Vec<u8> {
    let payload = string_len(content_type) + nested_len(binary.len());
    let body = string_len(channel) + nested_len(payload);
    let mut out = Vec::with_capacity(envelope_len(id, TIME, 0) + nested_len(body));
    envelope_start(id, TIME, 0, &mut out);
    put_key(PUBLISH, WireType::LengthDelimited, &mut out);
    put_varint(body as u64, &mut out);
    string(1, channel, &mut out);
    put_key(2, WireType::LengthDelimited, &mut out);
    put_varint(payload as u64, &mut out);
    string(1, content_type, &mut out);
    field(3, binary, &mut out);
    out
}

/// The envelope `id`/`time_ms` carrying `messages` as its publication; `None` when one of them has a JSON payload
/// or more than [`DIRECT_HEADERS`] headers.
pub fn publication(id: &str, time_ms: u64, messages: &[Message]) -> Option<Vec<u8>> {
    let simple = |message: &Message| {
        message.headers.len() <= DIRECT_HEADERS
            && !matches!(message.payload.data, Some(PayloadData::Json(_)))
    };
    if !messages.iter().all(simple) {
        return None;
    }
    // Each message's metadata is found (its values checked for UTF-8) once, for its length and its bytes.
    let messages: SmallVec<[_; 1]> = messages
        .iter()
        .map(|message| (message, Metadata::of(&message.headers)))
        .collect();
    let body: usize = messages
        .iter()
        .map(|(message, metadata)| nested_len(message_len(message, metadata.len)))
        .sum();
    let mut out = Vec::with_capacity(envelope_len(id, TIME, time_ms) + nested_len(body));
    envelope_start(id, TIME, time_ms, &mut out);
    put_key(PUBLICATION, WireType::LengthDelimited, &mut out);
    put_varint(body as u64, &mut out);
    for (message, metadata) in &messages {
        put_key(1, WireType::LengthDelimited, &mut out);
        put_varint(message_len(message, metadata.len) as u64, &mut out);
        write_message(message, metadata, &mut out);
    }
    Some(out)
}

/// The envelope `id`/`time_ms` acking the publish `id` at `position`.
pub fn publish_ack(id: &str, time_ms: u64, position: &Position) -> Vec<u8> {
    let position_len = position_len(position);
    let body = string_len(id) + nested_len(position_len);
    let mut out = Vec::with_capacity(envelope_len(id, TIME, time_ms) + nested_len(body));
    envelope_start(id, TIME, time_ms, &mut out);
    put_key(PUBLISH_ACK, WireType::LengthDelimited, &mut out);
    put_varint(body as u64, &mut out);
    string(1, id, &mut out);
    put_key(2, WireType::LengthDelimited, &mut out);
    put_varint(position_len as u64, &mut out);
    write_position(position, &mut out);
    out
}

/// The envelope `id`/`time_ms` followed by `body`, the rest of an envelope already encoded: the frame each
/// subscriber of a shared publication gets, in any generation (`time_field` is 2, or 3 in G0, which has `metadata`
/// before it). Allocated at its exact length, so the `Bytes` made of it needs no second allocation to count its
/// references.
pub(super) fn around(body: &[u8], time_field: u32, id: &str, time_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope_len(id, time_field, time_ms) + body.len());
    envelope_start(id, time_field, time_ms, &mut out);
    out.extend_from_slice(body);
    debug_assert_eq!(out.len(), out.capacity());
    out
}

/// `id` and `time` (field `time_field`), each left out when empty or zero, as proto3 does.
fn envelope_len(id: &str, time_field: u32, time_ms: u64) -> usize {
    string_len(id)
        + if time_ms == 0 {
            0
        } else {
            key_len(time_field) + encoded_len_varint(time_ms)
        }
}

fn envelope_start(id: &str, time_field: u32, time_ms: u64, out: &mut Vec<u8>) {
    string(ID, id, out);
    if time_ms != 0 {
        put_key(time_field, WireType::Varint, out);
        put_varint(time_ms, out);
    }
}

/// Bytes of a `Message` without its own key and length; `metadata` is the length of its [`Metadata`].
fn message_len(message: &Message, metadata: usize) -> usize {
    string_len(&message.id)
        + string_len(&message.channel)
        + nested_len(position_len(&message.position))
        + if message.payload == Payload::default() {
            0
        } else {
            nested_len(payload_len(&message.payload))
        }
        + match metadata {
            0 => 0,
            len => nested_len(len),
        }
        + if message.replay { 2 } else { 0 }
}

/// A map entry's bytes without its own key and length (an empty name or value is left out, as prost does).
fn entry_len(name: &str, value: &str) -> usize {
    string_len(name) + string_len(value)
}

/// A message's metadata entries (at most [`DIRECT_HEADERS`]) and the length of `Metadata` without its key and
/// length: 0 when there are no entries, and then the field is left out.
struct Metadata<'a> {
    entries: SmallVec<[(&'a str, &'a str); DIRECT_HEADERS]>,
    len: usize,
}

impl<'a> Metadata<'a> {
    /// The entries of `headers` as the general path makes them: each name's first UTF-8 value, each value checked
    /// once.
    fn of(headers: &'a [(String, Bytes)]) -> Metadata<'a> {
        let mut entries: SmallVec<[(&str, &str); DIRECT_HEADERS]> = SmallVec::new();
        for (name, value) in headers {
            let Some(value) = core_bus::text::utf8(value) else {
                continue;
            };
            if entries.iter().all(|(kept, _)| kept != name) {
                entries.push((name, value));
            }
        }
        let len = entries
            .iter()
            .map(|(name, value)| nested_len(entry_len(name, value)))
            .sum();
        Metadata { entries, len }
    }
}

/// `metadata` is the message's [`Metadata`].
fn write_message(message: &Message, metadata: &Metadata<'_>, out: &mut Vec<u8>) {
    string(1, &message.id, out);
    string(2, &message.channel, out);
    put_key(3, WireType::LengthDelimited, out);
    put_varint(position_len(&message.position) as u64, out);
    write_position(&message.position, out);
    if message.payload != Payload::default() {
        put_key(4, WireType::LengthDelimited, out);
        put_varint(payload_len(&message.payload) as u64, out);
        string(1, &message.payload.content_type, out);
        match &message.payload.data {
            Some(PayloadData::Binary(bytes)) => field(3, bytes, out),
            Some(PayloadData::Text(text)) => field(4, text.as_bytes(), out),
            Some(PayloadData::Json(_)) | None => {}
        }
    }
    if metadata.len != 0 {
        put_key(5, WireType::LengthDelimited, out);
        put_varint(metadata.len as u64, out);
        for &(name, value) in &metadata.entries {
            put_key(1, WireType::LengthDelimited, out);
            put_varint(entry_len(name, value) as u64, out);
            string(1, name, out);
            string(2, value, out);
        }
    }
    if message.replay {
        put_key(6, WireType::Varint, out);
        put_varint(1, out);
    }
}

fn position_len(position: &Position) -> usize {
    string_len(&position.stream_epoch) + position.offset.map_or(0, |o| 1 + encoded_len_varint(o))
}

fn write_position(position: &Position, out: &mut Vec<u8>) {
    string(1, &position.stream_epoch, out);
    if let Some(offset) = position.offset {
        put_key(2, WireType::Varint, out);
        put_varint(offset, out);
    }
}

/// `Payload` without its key and length: a set oneof member is written even when empty.
fn payload_len(payload: &Payload) -> usize {
    string_len(&payload.content_type)
        + match &payload.data {
            Some(PayloadData::Binary(bytes)) => nested_len(bytes.len()),
            Some(PayloadData::Text(text)) => nested_len(text.len()),
            Some(PayloadData::Json(_)) | None => 0,
        }
}

/// A length-delimited field of `len` bytes, with its (one-byte) key and its length.
fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// A proto3 string: nothing when empty.
fn string_len(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        nested_len(text.len())
    }
}

fn string(tag: u32, text: &str, out: &mut Vec<u8>) {
    if !text.is_empty() {
        field(tag, text.as_bytes(), out);
    }
}

fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(tag, WireType::LengthDelimited, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::messageloop::codec::pb::messageloop::client::v2 as pb;
    use crate::messageloop::codec::wire::{G2Wire, Wire};
    use crate::messageloop::message::{Outbound, OutboundBody};

    fn prost_bytes(message: &Outbound) -> Vec<u8> {
        G2Wire::outbound(message).unwrap().encode_to_vec()
    }

    fn message(payload: Payload, offset: Option<u64>, replay: bool) -> Message {
        Message {
            id: "chat.room-7".into(),
            channel: "chat.room".into(),
            position: Position {
                stream_epoch: "ep".into(),
                offset,
            },
            payload,
            headers: Vec::new(),
            replay,
        }
    }

    /// Every shape the direct writer takes gives prost's bytes, byte for byte.
    #[test]
    fn publications_are_prosts_bytes() {
        let long = "x".repeat(300);
        let payloads = [
            Payload::default(),
            Payload::binary("", Bytes::new()),
            Payload::binary("", Bytes::from_static(b"\0\x01\xff")),
            Payload::binary("application/octet-stream", Bytes::from(vec![7u8; 1024])),
            Payload::text("text/plain", ""),
            Payload::text("", long.clone()),
            Payload {
                content_type: "text/plain".into(),
                data: None,
            },
        ];
        let ids = ["", "4b0c6a53-2d4e-4a44-9a53-0d41e2b5f2a1", long.as_str()];
        for payload in &payloads {
            for offset in [None, Some(0), Some(1), Some(u64::MAX)] {
                for replay in [false, true] {
                    for id in ids {
                        for time_ms in [0, 1, 1_764_000_000_000] {
                            let mut second = message(payload.clone(), offset, replay);
                            second.id.clear();
                            second.channel.clear();
                            second.position.stream_epoch.clear();
                            for messages in [
                                Vec::new(),
                                vec![message(payload.clone(), offset, replay)],
                                vec![message(payload.clone(), offset, replay), second],
                            ] {
                                let direct = publication(id, time_ms, &messages).unwrap();
                                let outbound = Outbound {
                                    id: id.into(),
                                    time_ms,
                                    body: OutboundBody::Publication(messages),
                                };
                                assert_eq!(direct, prost_bytes(&outbound), "{outbound:?}");
                            }
                        }
                    }
                }
            }
        }
    }

    fn with_headers(headers: &[(&str, &[u8])]) -> Message {
        let mut message = message(Payload::text("text/plain", "hi"), Some(1), false);
        message.headers = headers
            .iter()
            .map(|(name, value)| (name.to_string(), Bytes::copy_from_slice(value)))
            .collect();
        message
    }

    fn decoded(bytes: &[u8]) -> pb::OutboundMessage {
        pb::OutboundMessage::decode(bytes).unwrap()
    }

    /// Metadata of at most one entry gives prost's bytes; the first UTF-8 value of a name wins, values that are not
    /// UTF-8 are left out, and an empty name or value is written as prost writes it.
    #[test]
    fn metadata_of_one_entry_is_prosts_bytes() {
        let cases: [&[(&str, &[u8])]; 7] = [
            &[("goomerang-kind", b"bench.Payload")],
            &[("k", b"v"), ("k", b"w")],
            &[("k", b"\xff"), ("k", b"w")],
            &[("k", b"\xff")],
            &[("", b"")],
            &[("k", b"")],
            &[("", b"v")],
        ];
        for headers in cases {
            let messages = vec![with_headers(headers)];
            let direct = publication("id", 1, &messages).unwrap();
            let outbound = Outbound {
                id: "id".into(),
                time_ms: 1,
                body: OutboundBody::Publication(messages),
            };
            assert_eq!(direct, prost_bytes(&outbound), "{headers:?}");
        }
    }

    /// Several entries are written in header order, prost's in hash order: the messages decode equal.
    #[test]
    fn metadata_of_several_entries_decodes_as_prosts() {
        let headers: &[(&str, &[u8])] = &[
            ("a", b"1"),
            ("b", b"2"),
            ("a", b"3"),
            ("c", b"\xfe"),
            ("d", b""),
        ];
        let messages = vec![with_headers(headers), with_headers(&headers[1..])];
        let direct = publication("id", 1, &messages).unwrap();
        let outbound = Outbound {
            id: "id".into(),
            time_ms: 1,
            body: OutboundBody::Publication(messages),
        };
        assert_eq!(decoded(&direct), decoded(&prost_bytes(&outbound)));
    }

    #[test]
    fn many_headers_and_json_payloads_take_the_general_path() {
        let names: Vec<String> = (0..=DIRECT_HEADERS).map(|n| n.to_string()).collect();
        let many: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
        assert_eq!(publication("", 0, &[with_headers(&many)]), None);
        assert!(publication("", 0, &[with_headers(&many[1..])]).is_some());
        let json = message(
            Payload::json("application/json", Default::default()),
            None,
            false,
        );
        assert_eq!(publication("", 0, &[json]), None);
    }

    #[test]
    fn client_publishes_are_prosts_bytes() {
        let long = "x".repeat(300);
        for id in ["", "17", long.as_str()] {
            for channel in ["", "bench.1", long.as_str()] {
                for content_type in ["", "application/octet-stream"] {
                    for binary in [&b""[..], b"\0\x01\xff", long.as_bytes()] {
                        let envelope =
                            super::super::binary_publish(id, channel, content_type, binary);
                        assert_eq!(
                            publish(id, channel, content_type, binary),
                            envelope.encode_to_vec(),
                            "{id:?} {channel:?} {content_type:?} {binary:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn publish_acks_are_prosts_bytes() {
        for ack_id in ["", "17", "x".repeat(200).as_str()] {
            for epoch in ["", "epoch-1"] {
                for offset in [None, Some(0), Some(300)] {
                    for time_ms in [0, 1_764_000_000_000] {
                        let position = Position {
                            stream_epoch: epoch.into(),
                            offset,
                        };
                        let direct = publish_ack(ack_id, time_ms, &position);
                        let outbound = Outbound {
                            id: ack_id.into(),
                            time_ms,
                            body: OutboundBody::PublishAck(position),
                        };
                        assert_eq!(direct, prost_bytes(&outbound), "{outbound:?}");
                    }
                }
            }
        }
    }
}
