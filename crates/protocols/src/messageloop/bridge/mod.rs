//! How a MessageLoop message looks on the bus and back (docs/protocols/messageloop.md): client data → bus
//! [`Envelope`] ([`to_envelope`], for publishes and RPC requests), [`Envelope`] → delivered [`Message`]
//! ([`from_envelope`], for deliveries and recovery), the payload variant a content type gives
//! ([`payload_from`]), the CloudEvents mapping of G0 payloads ([`cloudevent`]), and the delivered messages shared
//! by all subscribers of a message ([`deliveries`]).

pub mod cloudevent;
pub mod deliveries;

use std::borrow::Cow;

use bytes::Bytes;
use core_bus::{Bus, Envelope, Origin, Topic};

use super::message::{Message, Payload, PayloadData, Position};
use super::session::frame_uuid;
use cloudevent::is_json_content_type;

/// A bus envelope for client data: payload bytes with a content type (a default by variant when the
/// client gave none: `application/json`, `text/plain`; binary stays untyped) and metadata as headers, stamped
/// `timestamp_ms` (the session's clock, read once per input).
pub fn to_envelope(
    topic: Topic,
    payload: Payload,
    headers: &[(String, Bytes)],
    origin: Origin,
    timestamp_ms: u64,
) -> Envelope {
    let content_type = content_type(&payload);
    let mut envelope = Envelope::at(topic, payload.into_bytes(), origin, timestamp_ms);
    envelope.content_type = content_type;
    for (name, value) in headers {
        envelope.headers.push(name.clone(), value.clone());
    }
    envelope.adopt_trace_headers();
    envelope
}

/// The envelope content type of `payload`: its own, or a default by variant when the client gave none
/// (`application/json`, `text/plain`; binary stays untyped). The defaults are not copied.
pub fn content_type(payload: &Payload) -> Option<Cow<'static, str>> {
    match (&payload.data, payload.content_type.is_empty()) {
        (_, false) => Some(Cow::Owned(payload.content_type.clone())),
        (Some(PayloadData::Json(_)), true) => Some(Cow::Borrowed("application/json")),
        (Some(PayloadData::Text(_)), true) => Some(Cow::Borrowed("text/plain")),
        (Some(PayloadData::Binary(_)) | None, true) => None,
    }
}

/// One delivered message: the bus position (offset 0 and the listener's `epoch` when the topic keeps no
/// history), payload variant from the content type, headers as metadata.
pub fn from_envelope(envelope: &Envelope, replay: bool, bus: &Bus, epoch: &str) -> Message {
    let channel = envelope
        .topic
        .to_dotted()
        .unwrap_or_else(|| String::from_utf8_lossy(&envelope.topic.to_dotted_bytes()).into_owned());
    let position = match envelope.position {
        Some(position) => Position {
            stream_epoch: bus.epoch_text(position.epoch),
            offset: Some(position.offset),
        },
        None => Position {
            stream_epoch: epoch.to_owned(),
            offset: Some(0),
        },
    };
    let id = match position.offset {
        Some(offset) if offset > 0 => {
            [channel.as_str(), "-", itoa::Buffer::new().format(offset)].concat()
        }
        _ => frame_uuid(),
    };
    Message {
        id,
        channel,
        position,
        payload: payload_from(envelope.content_type.as_deref(), &envelope.payload),
        headers: envelope
            .headers_with_trace()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        replay,
    }
}

/// Payload from bus data: a JSON object under a JSON content type becomes `json`, UTF-8 under `text/*`
/// becomes `text`, everything else `binary`.
pub fn payload_from(content_type: Option<&str>, data: &Bytes) -> Payload {
    let content_type = content_type.unwrap_or("");
    if is_json_content_type(content_type) {
        if let Ok(serde_json::Value::Object(object)) =
            serde_json::from_slice::<serde_json::Value>(data)
        {
            return Payload::json(content_type, object);
        }
    }
    let essence = content_type.trim().as_bytes();
    if essence.len() >= 5 && essence[..5].eq_ignore_ascii_case(b"text/") {
        if let Ok(text) = std::str::from_utf8(data) {
            return Payload::text(content_type, text);
        }
    }
    Payload::binary(content_type, data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_variants_follow_the_content_type() {
        let json = payload_from(Some("application/json"), &Bytes::from_static(br#"{"a":1}"#));
        assert!(matches!(json.data, Some(PayloadData::Json(_))));
        let array = payload_from(Some("application/json"), &Bytes::from_static(b"[1]"));
        assert!(matches!(array.data, Some(PayloadData::Binary(_))));
        let text = payload_from(
            Some("text/plain; charset=utf-8"),
            &Bytes::from_static(b"hi"),
        );
        assert_eq!(text.data, Some(PayloadData::Text("hi".into())));
        let binary = payload_from(None, &Bytes::from_static(b"\xff"));
        assert_eq!(binary.content_type, "");
        assert!(matches!(binary.data, Some(PayloadData::Binary(_))));
    }
}
