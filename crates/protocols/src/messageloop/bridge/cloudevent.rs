//! CloudEvents (G0 payloads) ↔ generation-neutral data, in the style of the CloudEvents binary content
//! mode: the event data becomes the payload, `datacontenttype` its content type, and every other context
//! attribute an ordered `ce-<name>` header whose value is the attribute's canonical string form
//! (booleans `true`/`false`, integers in decimal, bytes in base64, timestamps in RFC 3339).
//!
//! Also holds the re-wrap the G0 reference server applies when it delivers a publication
//! ([`delivery_event`]).

use std::collections::HashMap;

use base64::Engine as _;
use bytes::Bytes;

use crate::messageloop::message::{Headers, Message, Payload, PayloadData};
use crate::messageloop::pb::io::cloudevents::v1::cloud_event::{
    cloud_event_attribute_value::Attr, CloudEventAttributeValue, Data,
};
pub use crate::messageloop::pb::io::cloudevents::v1::CloudEvent;

/// Header name prefix of binary-mode context attributes.
pub const HEADER_PREFIX: &str = "ce-";
/// The attribute carried as the payload's content type instead of a header.
pub const DATA_CONTENT_TYPE: &str = "datacontenttype";
/// CloudEvents spec version written when none is known.
pub const SPEC_VERSION: &str = "1.0";

/// Context used for required attributes that the headers do not carry.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub event_type: &'a str,
}

/// Splits an event into its data (payload + content type) and `ce-*` headers, in this order: `ce-id`,
/// `ce-source`, `ce-specversion`, `ce-type` (each only when non-empty), then the other attributes sorted by
/// name. Data that is a JSON object under a JSON content type becomes [`PayloadData::Json`]; other
/// `text_data` becomes text and `binary_data` binary. `proto_data` becomes binary (`Any.value`), with
/// content type `application/protobuf` and the type URL as `ce-dataschema` unless the event sets them.
pub fn to_binary(event: &CloudEvent) -> (Payload, Headers) {
    let mut headers = Headers::new();
    for (name, value) in [
        ("id", &event.id),
        ("source", &event.source),
        ("specversion", &event.spec_version),
        ("type", &event.r#type),
    ] {
        if !value.is_empty() {
            headers.push((header_name(name), Bytes::from(value.clone().into_bytes())));
        }
    }
    let mut attributes: Vec<(&String, &CloudEventAttributeValue)> =
        event.attributes.iter().collect();
    attributes.sort_by(|a, b| a.0.cmp(b.0));
    let mut content_type = String::new();
    for (name, value) in attributes {
        let Some(attr) = &value.attr else { continue };
        if name == DATA_CONTENT_TYPE {
            content_type = String::from_utf8_lossy(&canonical(attr)).into_owned();
        } else {
            headers.push((header_name(name), canonical(attr)));
        }
    }
    let data = match &event.data {
        None => None,
        Some(Data::BinaryData(bytes)) => Some(
            json_object(&content_type, bytes)
                .map_or_else(|| PayloadData::Binary(bytes.clone()), PayloadData::Json),
        ),
        Some(Data::TextData(text)) => Some(
            json_object(&content_type, text.as_bytes())
                .map_or_else(|| PayloadData::Text(text.clone()), PayloadData::Json),
        ),
        Some(Data::ProtoData(any)) => {
            if content_type.is_empty() {
                content_type = "application/protobuf".to_owned();
            }
            if !event.attributes.contains_key("dataschema") && !any.type_url.is_empty() {
                headers.push((
                    header_name("dataschema"),
                    Bytes::from(any.type_url.clone().into_bytes()),
                ));
            }
            Some(PayloadData::Binary(Bytes::from(any.value.clone())))
        }
    };
    (Payload { content_type, data }, headers)
}

/// Builds an event from data and headers (the reverse of [`to_binary`]). Header names are matched
/// case-insensitively and the first occurrence wins; headers without the `ce-` prefix are ignored.
/// `ce-time` becomes a timestamp and `ce-dataschema` a URI when they parse, every other attribute a
/// string (bytes when not UTF-8). Missing `id`, `source` and `type` come from `context`, a missing spec
/// version is [`SPEC_VERSION`]. Binary data goes to `binary_data`, text and JSON to `text_data`.
pub fn from_binary(
    payload: &Payload,
    headers: &[(String, Bytes)],
    context: EventContext<'_>,
) -> CloudEvent {
    let mut event = CloudEvent::default();
    let mut attributes: HashMap<String, CloudEventAttributeValue> = HashMap::new();
    let (mut id, mut source, mut spec_version, mut event_type) = (None, None, None, None);
    for (name, value) in headers {
        let Some(attribute) = attribute_name(name) else {
            continue;
        };
        let text = std::str::from_utf8(value).ok();
        let slot = match attribute.as_str() {
            "id" => &mut id,
            "source" => &mut source,
            "specversion" => &mut spec_version,
            "type" => &mut event_type,
            _ => {
                let attr = typed_attribute(&attribute, text, value);
                attributes
                    .entry(attribute)
                    .or_insert(CloudEventAttributeValue { attr: Some(attr) });
                continue;
            }
        };
        if slot.is_none() {
            *slot = Some(text.map_or_else(
                || String::from_utf8_lossy(value).into_owned(),
                str::to_owned,
            ));
        }
    }
    event.id = id.unwrap_or_else(|| context.id.to_owned());
    event.source = source.unwrap_or_else(|| context.source.to_owned());
    event.spec_version = spec_version.unwrap_or_else(|| SPEC_VERSION.to_owned());
    event.r#type = event_type.unwrap_or_else(|| context.event_type.to_owned());
    if !payload.content_type.is_empty() {
        attributes.insert(
            DATA_CONTENT_TYPE.to_owned(),
            CloudEventAttributeValue {
                attr: Some(Attr::CeString(payload.content_type.clone())),
            },
        );
    }
    event.attributes = attributes;
    event.data = match &payload.data {
        None => None,
        Some(PayloadData::Binary(bytes)) => Some(Data::BinaryData(bytes.clone())),
        Some(PayloadData::Text(text)) => Some(Data::TextData(text.clone())),
        Some(PayloadData::Json(object)) => Some(Data::TextData(
            serde_json::Value::Object(object.clone()).to_string(),
        )),
    };
    event
}

/// The event the G0 reference server hands a subscriber for a publication: a fresh event (id = the
/// message id) with `source` = channel, `type` = `<channel>.message`, the data always in `binary_data`,
/// and `datacontenttype` `application/octet-stream` for binary data, `text/plain` for text and JSON.
/// The publisher's own context attributes are not passed on, as upstream.
pub fn delivery_event(message: &Message) -> CloudEvent {
    let content_type = match message.payload.data {
        Some(PayloadData::Binary(_)) | None => "application/octet-stream",
        Some(PayloadData::Text(_)) | Some(PayloadData::Json(_)) => "text/plain",
    };
    let mut attributes = HashMap::new();
    attributes.insert(
        DATA_CONTENT_TYPE.to_owned(),
        CloudEventAttributeValue {
            attr: Some(Attr::CeString(content_type.to_owned())),
        },
    );
    CloudEvent {
        id: message.id.clone(),
        source: message.channel.clone(),
        spec_version: SPEC_VERSION.to_owned(),
        r#type: format!("{}.message", message.channel),
        attributes,
        data: Some(Data::BinaryData(message.payload.to_bytes())),
    }
}

/// Whether a content type names JSON (`application/json`, `text/json`, `…+json`; parameters ignored).
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|start| essence.get(start..));
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || suffix.is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
}

fn json_object(content_type: &str, data: &[u8]) -> Option<crate::messageloop::message::JsonObject> {
    if !is_json_content_type(content_type) {
        return None;
    }
    match serde_json::from_slice(data) {
        Ok(serde_json::Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn header_name(attribute: &str) -> String {
    format!("{HEADER_PREFIX}{attribute}")
}

fn attribute_name(header: &str) -> Option<String> {
    let prefix = header.get(..HEADER_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(HEADER_PREFIX) {
        return None;
    }
    let name = header.get(HEADER_PREFIX.len()..)?.to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

fn typed_attribute(name: &str, text: Option<&str>, raw: &Bytes) -> Attr {
    match (name, text) {
        ("time", Some(text)) => text
            .parse::<prost_types::Timestamp>()
            .map_or_else(|_| Attr::CeString(text.to_owned()), Attr::CeTimestamp),
        ("dataschema", Some(text)) => Attr::CeUri(text.to_owned()),
        (_, Some(text)) => Attr::CeString(text.to_owned()),
        (_, None) => Attr::CeBytes(raw.clone()),
    }
}

fn canonical(attr: &Attr) -> Bytes {
    let text = match attr {
        Attr::CeBoolean(value) => value.to_string(),
        Attr::CeInteger(value) => value.to_string(),
        Attr::CeString(value) | Attr::CeUri(value) | Attr::CeUriRef(value) => value.clone(),
        Attr::CeBytes(value) => base64::engine::general_purpose::STANDARD.encode(value),
        Attr::CeTimestamp(value) => value.to_string(),
    };
    Bytes::from(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(attr: Attr) -> CloudEventAttributeValue {
        CloudEventAttributeValue { attr: Some(attr) }
    }

    fn header(name: &str, value: &str) -> (String, Bytes) {
        (name.to_owned(), Bytes::from(value.to_owned()))
    }

    #[test]
    fn fixture_event_maps_to_binary_mode() {
        let event = CloudEvent {
            id: "e776".into(),
            source: "/interop".into(),
            spec_version: "1.0".into(),
            r#type: "interop.message".into(),
            attributes: HashMap::from([
                (
                    "datacontenttype".to_owned(),
                    attr(Attr::CeString("text/plain".into())),
                ),
                ("subject".to_owned(), attr(Attr::CeString("s".into()))),
                ("count".to_owned(), attr(Attr::CeInteger(-3))),
                ("flag".to_owned(), attr(Attr::CeBoolean(true))),
                (
                    "blob".to_owned(),
                    attr(Attr::CeBytes(Bytes::from_static(b"\x00\xff"))),
                ),
                (
                    "time".to_owned(),
                    attr(Attr::CeTimestamp(prost_types::Timestamp {
                        seconds: 0,
                        nanos: 0,
                    })),
                ),
            ]),
            data: Some(Data::BinaryData(Bytes::from_static(b"hello-g0-json"))),
        };
        let (payload, headers) = to_binary(&event);
        assert_eq!(
            payload,
            Payload::binary("text/plain", &b"hello-g0-json"[..])
        );
        assert_eq!(
            headers,
            vec![
                header("ce-id", "e776"),
                header("ce-source", "/interop"),
                header("ce-specversion", "1.0"),
                header("ce-type", "interop.message"),
                header("ce-blob", "AP8="),
                header("ce-count", "-3"),
                header("ce-flag", "true"),
                header("ce-subject", "s"),
                header("ce-time", "1970-01-01T00:00:00Z"),
            ]
        );
        let back = from_binary(
            &payload,
            &headers,
            EventContext {
                id: "x",
                source: "x",
                event_type: "x",
            },
        );
        assert_eq!(back.id, "e776");
        assert_eq!(back.source, "/interop");
        assert_eq!(back.r#type, "interop.message");
        assert_eq!(
            back.attributes["datacontenttype"],
            attr(Attr::CeString("text/plain".into()))
        );
        assert_eq!(back.attributes["subject"], attr(Attr::CeString("s".into())));
        assert_eq!(
            back.attributes["time"],
            attr(Attr::CeTimestamp(prost_types::Timestamp {
                seconds: 0,
                nanos: 0
            }))
        );
        assert_eq!(back.data, event.data);
    }

    #[test]
    fn json_data_becomes_a_json_payload_only_under_a_json_content_type() {
        let mut event = CloudEvent {
            attributes: HashMap::from([(
                "datacontenttype".to_owned(),
                attr(Attr::CeString("application/json; charset=utf-8".into())),
            )]),
            data: Some(Data::BinaryData(Bytes::from_static(br#"{"text":"hi"}"#))),
            ..CloudEvent::default()
        };
        let (payload, headers) = to_binary(&event);
        assert!(headers.is_empty());
        let mut object = crate::messageloop::message::JsonObject::new();
        object.insert("text".into(), "hi".into());
        assert_eq!(payload.data, Some(PayloadData::Json(object)));
        event.attributes.clear();
        assert!(matches!(
            to_binary(&event).0.data,
            Some(PayloadData::Binary(_))
        ));
        event.data = Some(Data::TextData("plain".into()));
        assert_eq!(to_binary(&event).0, Payload::text("", "plain"));
    }

    #[test]
    fn proto_data_keeps_its_type_url() {
        let event = CloudEvent {
            data: Some(Data::ProtoData(prost_types::Any {
                type_url: "type.googleapis.com/x.Y".into(),
                value: vec![1, 2],
            })),
            ..CloudEvent::default()
        };
        let (payload, headers) = to_binary(&event);
        assert_eq!(
            payload,
            Payload::binary("application/protobuf", vec![1u8, 2])
        );
        assert_eq!(
            headers,
            vec![header("ce-dataschema", "type.googleapis.com/x.Y")]
        );
    }

    #[test]
    fn from_binary_fills_missing_context_and_ignores_other_headers() {
        let headers = vec![
            header("content-type", "ignored"),
            header("CE-Type", "first"),
            header("ce-type", "second"),
            header("ce-", "empty name"),
            ("ce-raw".to_owned(), Bytes::from_static(b"\xff")),
            header("ce-time", "not a time"),
        ];
        let event = from_binary(
            &Payload::default(),
            &headers,
            EventContext {
                id: "id-1",
                source: "chan",
                event_type: "fallback",
            },
        );
        assert_eq!(event.id, "id-1");
        assert_eq!(event.source, "chan");
        assert_eq!(event.spec_version, SPEC_VERSION);
        assert_eq!(event.r#type, "first");
        assert_eq!(event.attributes.len(), 2);
        assert_eq!(
            event.attributes["raw"],
            attr(Attr::CeBytes(Bytes::from_static(b"\xff")))
        );
        assert_eq!(
            event.attributes["time"],
            attr(Attr::CeString("not a time".into()))
        );
        assert_eq!(event.data, None);
    }

    #[test]
    fn delivery_rewraps_like_the_g0_server() {
        let message = Message {
            id: "demo-1".into(),
            channel: "demo".into(),
            position: Default::default(),
            payload: Payload::binary("text/plain", &b"hello"[..]),
            headers: vec![header("ce-source", "/interop")],
            replay: false,
        };
        let event = delivery_event(&message);
        assert_eq!(event.source, "demo");
        assert_eq!(event.r#type, "demo.message");
        assert_eq!(event.id, "demo-1");
        assert_eq!(
            event.attributes["datacontenttype"],
            attr(Attr::CeString("application/octet-stream".into()))
        );
        assert_eq!(
            event.data,
            Some(Data::BinaryData(Bytes::from_static(b"hello")))
        );
        let text = Message {
            payload: Payload::text("text/plain", "hi"),
            ..message
        };
        assert_eq!(
            delivery_event(&text).attributes["datacontenttype"],
            attr(Attr::CeString("text/plain".into()))
        );
    }
}
