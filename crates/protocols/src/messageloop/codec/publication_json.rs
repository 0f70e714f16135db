//! The JSON of a G1 or G2 envelope's `publication` member, written straight from the delivered [`Message`]s into
//! one `String`, and of a G2 `publish_ack` member ([`Direct`]: the member alone for a publication shared by its
//! subscribers, or the whole envelope around it): the bytes [`super::json`]'s protojson rendering gives (proto
//! names, defaults left out, set oneof members and `optional` fields kept, 64-bit integers as strings, bytes as
//! padded base64, a `Struct`'s numbers as doubles written without a fraction when whole, every object's keys in
//! order), without building the protobuf message, its dynamic copy and a `serde_json::Value` of the whole envelope
//! for each delivery. A client reads these envelopes back with [`super::publication_read`].

use std::borrow::Cow;

use serde_json::Value;

use super::generation::Generation;
use super::wire::headers_to_entries;
use crate::messageloop::message::{
    Message, Outbound, OutboundBody, Payload, PayloadData, Position,
};

/// Largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// An envelope member written directly: a G1 or G2 `publication` (G0's messages carry CloudEvents and are
/// rendered the general way) or a G2 `publish_ack` (G0's and G1's are rendered the general way).
pub enum Direct<'a> {
    Publication(Generation, &'a [Message]),
    /// The ack of the publish `id` (the envelope's id).
    PublishAck {
        id: &'a str,
        position: &'a Position,
    },
}

impl<'a> Direct<'a> {
    /// The member `outbound`'s body is in `generation` when it is written directly.
    pub fn of(generation: Generation, outbound: &'a Outbound) -> Option<Direct<'a>> {
        match (generation, &outbound.body) {
            (Generation::G2, OutboundBody::PublishAck(position)) => Some(Direct::PublishAck {
                id: &outbound.id,
                position,
            }),
            (Generation::G0, _) => None,
            (_, body) => body
                .messages()
                .map(|messages| Direct::Publication(generation, messages)),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Direct::Publication(..) => "publication",
            Direct::PublishAck { .. } => "publish_ack",
        }
    }

    /// The member alone, `"key":{…}`: what is shared by the envelopes that carry it.
    pub fn member(&self) -> (Cow<'static, str>, String) {
        let mut out = String::with_capacity(self.size_hint());
        self.write(&mut out);
        (Cow::Borrowed(self.key()), out)
    }

    /// The whole envelope `{"id":…,"key":{…},"time":…}` in one buffer: the bytes `shared::json_frame` gives
    /// around [`Direct::member`] (`id` and `time`, left out when empty or zero, sort before and after both keys).
    pub fn frame(&self, id: &str, time_ms: u64) -> String {
        let mut out = String::with_capacity(self.size_hint() + id.len() + 48);
        out.push('{');
        if !id.is_empty() {
            push_id(&mut out, id);
            out.push(',');
        }
        self.write(&mut out);
        if time_ms != 0 {
            out.push(',');
            push_time(&mut out, time_ms);
        }
        out.push('}');
        out
    }

    fn size_hint(&self) -> usize {
        match self {
            Direct::Publication(_, messages) => messages.iter().map(size_hint).sum::<usize>() + 32,
            Direct::PublishAck { id, position } => 96 + id.len() + position.stream_epoch.len(),
        }
    }

    /// `"key":{…}`, appended to `out`.
    fn write(&self, out: &mut String) {
        out.push('"');
        out.push_str(self.key());
        out.push_str("\":");
        let mut object = Object::start(out);
        match self {
            Direct::Publication(generation, messages) => {
                if !messages.is_empty() {
                    object.key("messages");
                    object.out.push('[');
                    for (index, message) in messages.iter().enumerate() {
                        if index > 0 {
                            object.out.push(',');
                        }
                        write_message(object.out, *generation, message);
                    }
                    object.out.push(']');
                }
            }
            Direct::PublishAck { id, position } => {
                object.string("id", id);
                object.key("position");
                let mut member = Object::start(object.out);
                if let Some(offset) = position.offset {
                    member.uint64("offset", offset);
                }
                member.string("stream_epoch", &position.stream_epoch);
                member.end();
            }
        }
        object.end();
    }
}

/// An envelope's `"id":"…"` member.
pub(super) fn push_id(out: &mut String, id: &str) {
    out.push_str("\"id\":");
    push_string(out, id);
}

/// An envelope's `"time":"…"` member (a 64-bit integer, so a decimal string).
pub(super) fn push_time(out: &mut String, time_ms: u64) {
    out.push_str("\"time\":\"");
    out.push_str(itoa::Buffer::new().format(time_ms));
    out.push('"');
}

/// `text` as a JSON string, escaped as serde_json escapes it (only `"`, `\\` and control characters).
pub(super) fn push_string(out: &mut String, text: &str) {
    // Every byte is looked at (no early exit), which the compiler turns into a vector loop.
    let escape = text.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if escape {
        // A `&str` always serializes.
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(text);
        out.push('"');
    }
}

fn size_hint(message: &Message) -> usize {
    let data = match &message.payload.data {
        Some(PayloadData::Binary(bytes)) => bytes.len() * 4 / 3,
        Some(PayloadData::Text(text)) => text.len(),
        Some(PayloadData::Json(_)) | None => 64,
    };
    128 + message.id.len() + message.channel.len() + data
}

/// A JSON object being written: members in the order given (the caller gives them in key order).
struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    fn start(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    /// A key that may need escaping (a metadata entry's or a `Struct` field's name).
    fn key_escaped(&mut self, key: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_string(self.out, key);
        self.out.push(':');
    }

    /// A string member, left out when empty.
    fn string(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        self.key(key);
        push_string(self.out, value);
    }

    /// A 64-bit integer member (a decimal string).
    fn uint64(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.push('"');
        self.out.push_str(itoa::Buffer::new().format(value));
        self.out.push('"');
    }

    fn end(self) {
        self.out.push('}');
    }
}

fn write_message(out: &mut String, generation: Generation, message: &Message) {
    let mut object = Object::start(out);
    object.string("channel", &message.channel);
    object.string("id", &message.id);
    let mut entries: Vec<(String, String)> =
        headers_to_entries(&message.headers).into_iter().collect();
    if !entries.is_empty() {
        entries.sort_unstable();
        object.key("metadata");
        let mut metadata = Object::start(object.out);
        metadata.key("entries");
        let mut map = Object::start(metadata.out);
        for (name, value) in &entries {
            map.key_escaped(name);
            push_string(map.out, value);
        }
        map.end();
        metadata.end();
    }
    let offset = message.position.offset;
    if generation == Generation::G1 && offset.unwrap_or(0) != 0 {
        object.uint64("offset", offset.unwrap_or(0));
    }
    if message.payload != Payload::default() {
        object.key("payload");
        write_payload(object.out, &message.payload);
    }
    if generation == Generation::G2 {
        object.key("position");
        let mut position = Object::start(object.out);
        if let Some(offset) = offset {
            position.uint64("offset", offset);
        }
        position.string("stream_epoch", &message.position.stream_epoch);
        position.end();
        if message.replay {
            object.key("replay");
            object.out.push_str("true");
        }
    }
    object.end();
}

/// `{"binary"|"content_type"|"json"|"text"}` in key order: a set data member is written even when empty.
fn write_payload(out: &mut String, payload: &Payload) {
    let mut object = Object::start(out);
    if let Some(PayloadData::Binary(bytes)) = &payload.data {
        object.key("binary");
        object.out.push('"');
        base64_simd::STANDARD.encode_append(bytes, object.out);
        object.out.push('"');
    }
    object.string("content_type", &payload.content_type);
    match &payload.data {
        Some(PayloadData::Json(fields)) => {
            object.key("json");
            write_struct(object.out, fields);
        }
        Some(PayloadData::Text(text)) => {
            object.key("text");
            push_string(object.out, text);
        }
        Some(PayloadData::Binary(_)) | None => {}
    }
    object.end();
}

/// A `google.protobuf.Struct` made from a JSON object, as protojson writes it.
fn write_struct(out: &mut String, fields: &serde_json::Map<String, Value>) {
    let mut object = Object::start(out);
    for (name, value) in fields {
        object.key_escaped(name);
        write_value(object.out, value);
    }
    object.end();
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => {
            // A Struct holds doubles; whole ones are written as integers, as Go does.
            let float = number.as_f64().unwrap_or(0.0);
            if float.fract() == 0.0 && float.abs() <= MAX_EXACT {
                // Exact: |float| is at most 2^53 and has no fraction.
                out.push_str(itoa::Buffer::new().format(float as i64));
            } else {
                out.push_str(&Value::from(float).to_string());
            }
        }
        Value::String(text) => push_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(fields) => write_struct(out, fields),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::messageloop::codec::generation::{Encoding, GenerationSetting};
    use crate::messageloop::codec::json;
    use crate::messageloop::codec::publication_read::{read, PlainOutbound};
    use crate::messageloop::codec::ws::{Frame, WsCodec};
    use crate::messageloop::pb::messageloop::client::v2 as pb;
    use crate::messageloop::wire::{G1Wire, G2Wire, Wire};

    fn message(payload: Payload, offset: Option<u64>, replay: bool) -> Message {
        Message {
            id: "chat.room-7".into(),
            channel: "chat.room".into(),
            position: Position {
                stream_epoch: "epoch\u{1}\"".into(),
                offset,
            },
            payload,
            headers: vec![
                ("b".into(), Bytes::from_static(b"2")),
                ("a\"\n".into(), Bytes::from_static("é".as_bytes())),
                ("b".into(), Bytes::from_static(b"dup")),
                ("bad".into(), Bytes::from_static(b"\xff")),
            ],
            replay,
        }
    }

    fn object() -> serde_json::Map<String, Value> {
        let value: Value = serde_json::from_str(
            r#"{"n":1,"neg":-3,"zero":-0.0,"f":1.5,"tiny":1e-7,"big":1e300,"huge":12345678901234567890,
                "exact":9007199254740993,"s":"é\"\u0001\\","t":true,"nil":null,"list":[2,{"m":[]},"x"],
                "o":{},"k\"ey":{"z":1,"a":2}}"#,
        )
        .unwrap();
        let Value::Object(object) = value else {
            unreachable!()
        };
        object
    }

    fn messages() -> Vec<Vec<Message>> {
        let mut bare = message(Payload::default(), None, false);
        bare.id.clear();
        bare.channel.clear();
        bare.headers.clear();
        bare.position.stream_epoch.clear();
        vec![
            vec![message(
                Payload::json("application/json", object()),
                Some(7),
                false,
            )],
            vec![message(
                Payload::text("text/plain", "hi \u{2028}"),
                Some(0),
                true,
            )],
            vec![message(Payload::text("", ""), None, false)],
            vec![message(
                Payload::binary("application/octet-stream", &b"\x00\xffab"[..]),
                Some(1),
                false,
            )],
            vec![message(Payload::binary("", Bytes::new()), Some(2), false)],
            vec![message(
                Payload {
                    content_type: "text/plain".into(),
                    data: None,
                },
                None,
                false,
            )],
            vec![
                bare.clone(),
                message(Payload::text("text/plain", "x"), Some(3), false),
            ],
            vec![],
        ]
    }

    /// The directly written JSON is byte for byte what the protojson rendering of the whole envelope gives.
    #[test]
    fn direct_json_is_the_protojson_rendering() {
        for generation in [Generation::G1, Generation::G2] {
            let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(generation));
            for messages in messages() {
                for (id, time_ms) in [("u-1", 1_763_800_000_000), ("", 0)] {
                    let outbound = Outbound {
                        id: id.into(),
                        time_ms,
                        body: OutboundBody::Publication(messages.clone()),
                    };
                    let rendered = match generation {
                        Generation::G1 => json::to_value(&G1Wire::outbound(&outbound).unwrap()),
                        _ => json::to_value(&G2Wire::outbound(&outbound).unwrap()),
                    };
                    let Ok(Frame::Text(direct)) = codec.encode(&outbound) else {
                        panic!("{generation} {messages:?}")
                    };
                    assert_eq!(
                        direct,
                        rendered.unwrap().to_string(),
                        "{generation} {messages:?}"
                    );
                }
            }
        }
        let outbound = Outbound {
            id: "o".into(),
            time_ms: 0,
            body: OutboundBody::Publication(messages()[0].clone()),
        };
        assert!(Direct::of(Generation::G0, &outbound).is_none());
    }

    /// Strings are escaped exactly as serde_json escapes them, with or without anything to escape.
    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let texts = [
            "",
            "plain",
            "é ✓ 𝄞",
            "a/b",
            "\u{7f}",
            "\"",
            "\\",
            "\n\t\r",
            "\u{0}\u{1f}",
            "x\"y\\z\u{8}",
        ];
        for text in texts {
            let mut out = String::from("[");
            push_string(&mut out, text);
            assert_eq!(
                out,
                format!("[{}", serde_json::to_string(text).unwrap()),
                "{text:?}"
            );
        }
    }

    /// A plain G2 publication reads as the general reading reads it; other shapes are left to that reading.
    #[test]
    fn plain_publications_read_as_the_general_reading_reads_them() {
        let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
        let mut plain = 0;
        for mut messages in messages() {
            for message in &mut messages {
                message.headers.clear();
                if !message.position.stream_epoch.is_empty() {
                    message.position.stream_epoch = "epoch-1".into();
                }
            }
            for (id, time_ms) in [("u-1", 1_763_800_000_000), ("", 0)] {
                let outbound = Outbound {
                    id: id.into(),
                    time_ms,
                    body: OutboundBody::Publication(messages.clone()),
                };
                let Ok(Frame::Text(text)) = codec.encode(&outbound) else {
                    panic!("{messages:?}")
                };
                let general = json::from_slice::<pb::OutboundMessage>(text.as_bytes()).unwrap();
                if let Some(direct) = read(&text) {
                    plain += 1;
                    assert_eq!(direct.generated(), general, "{text}");
                }
            }
        }
        assert!(plain >= 12, "{plain}");
        let other = [
            r#"{"id":"1","publication":{"messages":[{"channel":"a","metadata":{"entries":{"k":"v"}}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"payload":{"json":{}}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"payload":{"binary":"YQ","text":"x"}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"payload":{"binary":"YQ"}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"payload":{"binary":"YQ\u003d="}}]}}"#,
            "{\"id\":\"1\",\"publication\":{\"messages\":[{\"payload\":{\"binary\":\"YQ\u{1}=\"}}]}}",
            r#"{"id":"1","publication":{"messages":[{"payload":{"binary":[89,81,61,61]}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"position":{"offset":"01"}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"position":{"offset":1}}]}}"#,
            r#"{"id":"1","publication":{"messages":[{"channel":"a\u002e"}]}}"#,
            r#"{"id":"1","publication":{},"time":"-1"}"#,
            r#"{"id":"1","publication":{},"time":5}"#,
            r#"{"id":"1","publication":{},"error":{}}"#,
            r#"{"id":"1","publication":{},"publish_ack":{}}"#,
            r#"{"id":"1"}"#,
            r#"{"id":"1","publish_ack":{"position":{"offset":"01"}}}"#,
            r#"{"id":"1","publish_ack":{"id":"a\"b"}}"#,
            r#"{"id":"1","publication":{"messages":[]}"#,
            r#"{"id":"1","publication":{"messages":[["a"]]}}"#,
            r#"{"id":"1","publication":[[]]}"#,
            r#"["1",{"messages":[]}]"#,
            r#"{"id":"1","publication":{"messages":[{"replay":"true"}]}}"#,
        ];
        for frame in other {
            assert_eq!(read(frame), None, "{frame}");
        }
        for odd in [
            r#"{"publication":{"messages":[{"payload":null,"position":{"offset":null},"replay":null}]},"time":"0"}"#,
            r#"{"id":"1","publish_ack":{}}"#,
            r#"{"publish_ack":{"position":null}}"#,
        ] {
            assert_eq!(
                read(odd).map(PlainOutbound::generated),
                Some(json::from_slice::<pb::OutboundMessage>(odd.as_bytes()).unwrap()),
                "{odd}"
            );
        }
    }

    /// The directly written G2 publish ack is byte for byte the protojson rendering of the whole envelope.
    #[test]
    fn direct_publish_ack_is_the_protojson_rendering() {
        let codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
        // Acks without escapes in their strings are also read back directly, as the general reading reads them.
        let mut plain = 0;
        for ack_id in ["", "17", "a\"\u{1}é"] {
            for epoch in ["", "epoch-1", "e\u{2028}\""] {
                for offset in [None, Some(0), Some(u64::MAX)] {
                    for time_ms in [0, 1_763_800_000_000] {
                        let outbound = Outbound {
                            id: ack_id.into(),
                            time_ms,
                            body: OutboundBody::PublishAck(Position {
                                stream_epoch: epoch.into(),
                                offset,
                            }),
                        };
                        let rendered = json::to_value(&G2Wire::outbound(&outbound).unwrap());
                        let Ok(Frame::Text(direct)) = codec.encode(&outbound) else {
                            panic!("{outbound:?}")
                        };
                        assert_eq!(direct, rendered.unwrap().to_string(), "{outbound:?}");
                        assert!(Direct::of(Generation::G1, &outbound).is_none());
                        let general = json::from_slice::<pb::OutboundMessage>(direct.as_bytes());
                        if let Some(read) = read(&direct) {
                            plain += 1;
                            assert_eq!(read.generated(), general.unwrap(), "{direct}");
                        }
                    }
                }
            }
        }
        assert!(plain >= 12, "{plain}");
    }
}
