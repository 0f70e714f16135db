//! A G2 client's JSON publish command read directly: the plain shape SDKs send
//! (`{"id":…,"publish":{"channel":…,"payload":{"content_type":…,"binary"|"text":…}}}`, snake_case keys, strings
//! without escapes, padded base64) is read by [`super::plain_json`] into the neutral [`Inbound`], without a
//! `serde_json::Value` and the dynamic protojson mapping ([`super::json`]). Anything else (another key or spelling,
//! an escape, a null where a string goes, a duplicate key, unpadded base64, an array where an object goes, …) gives
//! `None` and takes the general path, which stays the reference: what is read here is what it reads. For clients
//! (gatewayctl), [`write()`] writes a binary publish command directly, as the protojson rendering would.

use bytes::Bytes;

use super::plain_json::{self, optional, PlainData, PlainPayload, Reader};
use super::publication_json::push_string;
use crate::messageloop::message::{Inbound, InboundBody, Payload, PayloadData, Publish};

/// The publish command in `frame`, or `None` when it is not one in the plain shape. Text, not bytes: its strings
/// are not checked for UTF-8 again.
pub fn publish(frame: &str) -> Option<Inbound> {
    let mut reader = Reader::new(frame);
    let mut id = "";
    let mut command = None;
    reader.object(&["id", "publish"], |reader, key| {
        match key {
            0 => id = reader.string()?,
            _ => command = Some(read_command(reader)?),
        }
        Some(())
    })?;
    reader.end()?;
    let (channel, payload) = command?;
    Some(Inbound {
        id: id.to_owned(),
        body: InboundBody::Publish(Publish {
            channel: channel.to_owned(),
            payload,
            ..Publish::default()
        }),
    })
}

/// `{"channel":…,"payload":…}`.
fn read_command<'a>(reader: &mut Reader<'a>) -> Option<(&'a str, Payload)> {
    let mut channel = "";
    let mut payload = Payload::default();
    reader.object(&["channel", "payload"], |reader, key| {
        match key {
            0 => channel = reader.string()?,
            _ => {
                payload =
                    optional(reader, plain_json::payload)?.map_or_else(Payload::default, neutral)
            }
        }
        Some(())
    })?;
    Some((channel, payload))
}

/// The neutral payload of a plain one.
fn neutral(payload: PlainPayload<'_>) -> Payload {
    Payload {
        content_type: payload.content_type.to_owned(),
        data: payload.data.map(|data| match data {
            PlainData::Binary(bytes) => PayloadData::Binary(Bytes::from(bytes)),
            PlainData::Text(text) => PayloadData::Text(text.to_owned()),
        }),
    }
}

/// The JSON of the G2 envelope `id` publishing `binary` (typed `content_type`, empty for none) to `channel`,
/// without metadata: the bytes the protojson rendering of that `InboundMessage` gives.
pub fn write(id: &str, channel: &str, content_type: &str, binary: &[u8]) -> String {
    let mut out = String::with_capacity(64 + id.len() + channel.len() + binary.len() * 4 / 3);
    out.push('{');
    if !id.is_empty() {
        out.push_str("\"id\":");
        push_string(&mut out, id);
        out.push(',');
    }
    out.push_str("\"publish\":{");
    if !channel.is_empty() {
        out.push_str("\"channel\":");
        push_string(&mut out, channel);
        out.push(',');
    }
    out.push_str("\"payload\":{\"binary\":\"");
    base64_simd::STANDARD.encode_append(binary, &mut out);
    out.push('"');
    if !content_type.is_empty() {
        out.push_str(",\"content_type\":");
        push_string(&mut out, content_type);
    }
    out.push_str("}}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messageloop::codec::generation::{Encoding, Generation, GenerationSetting};
    use crate::messageloop::codec::json;
    use crate::messageloop::codec::wire::{G2Wire, Wire};
    use crate::messageloop::codec::ws::WsCodec;
    use crate::messageloop::pb::messageloop::client::v2 as pb;

    /// What the general path (the protojson mapping) reads.
    fn general(frame: &str) -> Option<Inbound> {
        let message = json::from_slice::<pb::InboundMessage>(frame.as_bytes()).ok()?;
        G2Wire::inbound(message).ok()
    }

    /// Plain publish commands are read directly, exactly as the general path reads them.
    #[test]
    fn plain_publishes_read_as_the_general_path_reads_them() {
        let plain = [
            r#"{"id":"1","publish":{"channel":"chat.room","payload":{"binary":"AP9oaQ=="}}}"#,
            r#"{"publish":{"channel":"a","payload":{"binary":""}},"id":"77"}"#,
            r#"{"id":"2","publish":{"channel":"a.b","payload":{"content_type":"text/plain","text":"hi"}}}"#,
            r#"{"id":"3","publish":{"channel":"a","payload":{"text":""}}}"#,
            r#"{"id":"4","publish":{"channel":"a","payload":{"content_type":"x/y"}}}"#,
            r#"{"id":"5","publish":{"channel":"a","payload":{}}}"#,
            r#"{"id":"6","publish":{"channel":"a"}}"#,
            r#"{"id":"7","publish":{"channel":"a","payload":null}}"#,
            r#"{"id":"8","publish":{"channel":"a","payload":{"binary":null,"text":"t"}}}"#,
            r#"{"id":"9","publish":{"channel":"a","payload":{"binary":"YWJj","text":null}}}"#,
            r#"{"id":"10","publish":{}}"#,
            r#"{"publish":{"channel":"é","payload":{"text":"ünïcode ✓"}}}"#,
            " {\n\"id\" : \"11\" ,\t\"publish\":{\"channel\":\"a\"} } ",
        ];
        for frame in plain {
            let direct = publish(frame);
            assert!(direct.is_some(), "{frame}");
            assert_eq!(direct, general(frame), "{frame}");
        }
    }

    /// Every other shape is left to the general path (whatever it makes of it).
    #[test]
    fn other_shapes_take_the_general_path() {
        let other = [
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YQ","text":"x"}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YQ=="}},"time":"5"}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YQ"}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"_-8="}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YR=="}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YQ\u003d="}}}"#,
            "{\"id\":\"1\",\"publish\":{\"channel\":\"a\",\"payload\":{\"binary\":\"YQ\u{1}=\"}}}",
            "{\"id\":\"1\",\"publish\":{\"channel\":\"a\",\"payload\":{\"binary\":\"\u{1}\"}}}",
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":[89,81,61,61]}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"binary":"YQ==","text":"x"}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"contentType":"x","text":"x"}}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"text":"say \"hi\"\n"}}}"#,
            r#"{"id":"1","publish":{"channel":"a\u002eb"}}"#,
            r#"{"id":"1","publish":{"channel":"a","metadata":{"entries":{"k":"v"}}}}"#,
            r#"{"id":"1","publish":{"channel":"a","transient":true}}"#,
            r#"{"id":"1","publish":{"channel":"a","idempotency_key":"k","token":"t"}}"#,
            r#"{"id":"1","publish":{"channel":"a","payload":{"json":{"a":1}}}}"#,
            r#"{"id":null,"publish":{"channel":"a"}}"#,
            r#"{"id":"1","publish":{"channel":null}}"#,
            r#"{"id":"1","publish":null}"#,
            r#"{"id":1,"publish":{"channel":"a"}}"#,
            r#"{"id":"1","id":"2","publish":{"channel":"a"}}"#,
            r#"{"id":"1","publish":{"channel":"a","channel":"b"}}"#,
            r#"{"id":"1","ping":{}}"#,
            r#"{"id":"1","publish":{"channel":"a"},"ping":{}}"#,
            r#"{"id":"1"}"#,
            r#"[]"#,
            r#"{"id":"1","publish":{"channel":"a"}} x"#,
            r#"["1",{"channel":"a"}]"#,
            r#"{"id":"1","publish":["a"]}"#,
            r#"{"id":"1","publish":{"channel":"a""#,
            "",
        ];
        for frame in other {
            assert_eq!(publish(frame), None, "{frame}");
        }
    }

    /// The directly written command is the protojson rendering of the same `InboundMessage`, and reads back.
    #[test]
    fn written_commands_are_the_protojson_rendering() {
        for id in ["", "12", "q\"\u{1}"] {
            for channel in ["", "chat.room", "é\\"] {
                for content_type in ["", "application/octet-stream", "a\"b"] {
                    for binary in [&b""[..], b"\0\xffhi", &[7u8; 1024]] {
                        let message =
                            super::super::binary_publish(id, channel, content_type, binary);
                        let direct = write(id, channel, content_type, binary);
                        assert_eq!(direct, json::to_string(&message).unwrap());
                        assert_eq!(
                            json::from_slice::<pb::InboundMessage>(direct.as_bytes()).unwrap(),
                            message
                        );
                    }
                }
            }
        }
    }

    /// A G2 JSON connection reads publishes through it, with the result the general path gives.
    #[test]
    fn the_codec_reads_plain_publishes_directly() {
        let mut codec = WsCodec::new(Encoding::Json, GenerationSetting::Fixed(Generation::G2));
        let frame = r#"{"id":"3","publish":{"channel":"demo","payload":{"binary":"aGk="}}}"#;
        let inbound = codec.decode_text(frame).unwrap();
        assert_eq!(Some(inbound), general(frame));
        assert_eq!(codec.generation(), Some(Generation::G2));
    }
}
