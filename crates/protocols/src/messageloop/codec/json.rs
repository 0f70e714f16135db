//! The JSON encoding of every MessageLoop generation (docs/protocols/messageloop.md, "JSON encoding"): the proto3
//! JSON mapping as Go's `protojson` applies it upstream. Out: snake_case (proto) field names, default values left
//! out, 64-bit integers as decimal strings, bytes as padded base64, enums by name, `google.protobuf.Struct` as a
//! plain object, whole numbers in a Struct without a fraction. In: both snake_case and lowerCamelCase names, 64-bit
//! integers as strings or numbers, unknown keys ignored.
//!
//! The mapping itself is prost-reflect's; the descriptors it needs are compiled once, at first use, from
//! the same `.proto` sources `build.rs` compiles into the prost types.

use std::sync::LazyLock;

use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value;

use super::pb;

/// A generated message type with its protobuf full name, so the JSON mapping can find its descriptor.
pub trait ProtoJson: prost::Message + Default {
    const FULL_NAME: &'static str;
}

macro_rules! proto_json {
    ($($ty:ty => $name:literal,)*) => {
        $(impl ProtoJson for $ty {
            const FULL_NAME: &'static str = $name;
        })*
    };
}

proto_json! {
    pb::messageloop::client::v2::InboundMessage => "messageloop.client.v2.InboundMessage",
    pb::messageloop::client::v2::OutboundMessage => "messageloop.client.v2.OutboundMessage",
    pb::messageloop::client::v1::InboundMessage => "messageloop.client.v1.InboundMessage",
    pb::messageloop::client::v1::OutboundMessage => "messageloop.client.v1.OutboundMessage",
    pb::messageloop::v1::InboundMessage => "messageloop.v1.InboundMessage",
    pb::messageloop::v1::OutboundMessage => "messageloop.v1.OutboundMessage",
    pb::io::cloudevents::v1::CloudEvent => "io.cloudevents.v1.CloudEvent",
    pb::messageloop::proxy::v2::RpcRequest => "messageloop.proxy.v2.RPCRequest",
    pb::messageloop::proxy::v2::RpcResponse => "messageloop.proxy.v2.RPCResponse",
    pb::messageloop::proxy::v2::AuthenticateRequest => "messageloop.proxy.v2.AuthenticateRequest",
    pb::messageloop::proxy::v2::AuthenticateResponse => "messageloop.proxy.v2.AuthenticateResponse",
    pb::messageloop::proxy::v2::SubscribeAclRequest => "messageloop.proxy.v2.SubscribeAclRequest",
    pb::messageloop::proxy::v2::SubscribeAclResponse => "messageloop.proxy.v2.SubscribeAclResponse",
    pb::messageloop::proxy::v2::PublishAclRequest => "messageloop.proxy.v2.PublishAclRequest",
    pb::messageloop::proxy::v2::PublishAclResponse => "messageloop.proxy.v2.PublishAclResponse",
    pb::messageloop::proxy::v2::OnConnectedRequest => "messageloop.proxy.v2.OnConnectedRequest",
    pb::messageloop::proxy::v2::OnSubscribedRequest => "messageloop.proxy.v2.OnSubscribedRequest",
    pb::messageloop::proxy::v2::OnUnsubscribedRequest => "messageloop.proxy.v2.OnUnsubscribedRequest",
    pb::messageloop::proxy::v2::OnDisconnectedRequest => "messageloop.proxy.v2.OnDisconnectedRequest",
}

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("not JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("JSON does not match {message}: {reason}")]
    Shape {
        message: &'static str,
        reason: String,
    },
    #[error("message cannot be represented: {0}")]
    Transcode(#[from] prost::DecodeError),
    #[error("MessageLoop descriptors unavailable: {0}")]
    Descriptors(String),
}

/// Parses one JSON message.
pub fn from_slice<M: ProtoJson>(json: &[u8]) -> Result<M, JsonError> {
    from_value(serde_json::from_slice(json)?)
}

/// Converts an already parsed JSON value.
pub fn from_value<M: ProtoJson>(value: Value) -> Result<M, JsonError> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic =
        DynamicMessage::deserialize_with_options(descriptor(M::FULL_NAME)?, value, &options)
            .map_err(|err| JsonError::Shape {
                message: M::FULL_NAME,
                reason: err.to_string(),
            })?;
    Ok(dynamic.transcode_to::<M>()?)
}

/// Renders a message as a JSON value with snake_case names.
pub fn to_value<M: ProtoJson>(message: &M) -> Result<Value, JsonError> {
    render(message, true)
}

/// Renders a message as JSON text with snake_case names.
pub fn to_string<M: ProtoJson>(message: &M) -> Result<String, JsonError> {
    Ok(to_value(message)?.to_string())
}

/// Renders a message with protojson's lowerCamelCase names (what upstream's HTTP proxy calls use, and
/// what some clients send).
pub fn to_camel_value<M: ProtoJson>(message: &M) -> Result<Value, JsonError> {
    render(message, false)
}

fn render<M: ProtoJson>(message: &M, proto_names: bool) -> Result<Value, JsonError> {
    let mut dynamic = DynamicMessage::new(descriptor(M::FULL_NAME)?);
    dynamic.transcode_from(message)?;
    let options = SerializeOptions::new()
        .use_proto_field_name(proto_names)
        .skip_default_fields(true);
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|err| JsonError::Shape {
            message: M::FULL_NAME,
            reason: err.to_string(),
        })?;
    whole_numbers(&mut value);
    Ok(value)
}

/// Largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// Writes Struct numbers without a fraction as integers (`1`, not `1.0`), as Go does.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64() {
                if float.fract() == 0.0 && float.abs() <= MAX_EXACT {
                    // Exact: |float| is at most 2^53 and has no fraction.
                    *number = serde_json::Number::from(float as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(fields) => fields.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

pub(crate) fn descriptor(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    let pool = POOL
        .as_ref()
        .map_err(|err| JsonError::Descriptors(err.clone()))?;
    pool.get_message_by_name(full_name)
        .ok_or_else(|| JsonError::Descriptors(format!("{full_name} missing")))
}

/// The `.proto` sources under `proto/`, by the names they import each other with.
const SOURCES: [(&str, &str); 7] = [
    (
        "messageloop/g2/shared.proto",
        include_str!("../../../proto/messageloop/g2/shared.proto"),
    ),
    (
        "messageloop/g2/client.proto",
        include_str!("../../../proto/messageloop/g2/client.proto"),
    ),
    (
        "messageloop/g1/shared.proto",
        include_str!("../../../proto/messageloop/g1/shared.proto"),
    ),
    (
        "messageloop/g1/client.proto",
        include_str!("../../../proto/messageloop/g1/client.proto"),
    ),
    (
        "messageloop/g0/cloudevents.proto",
        include_str!("../../../proto/messageloop/g0/cloudevents.proto"),
    ),
    (
        "messageloop/g0/client.proto",
        include_str!("../../../proto/messageloop/g0/client.proto"),
    ),
    (
        "messageloop/proxy/proxy.proto",
        include_str!("../../../proto/messageloop/proxy/proxy.proto"),
    ),
];

struct Embedded;

impl FileResolver for Embedded {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match SOURCES.iter().find(|(known, _)| *known == name) {
            Some((name, source)) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    let mut resolver = ChainFileResolver::new();
    resolver.add(Embedded);
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_files(SOURCES.iter().map(|(name, _)| name))
        .map_err(|err| err.to_string())?;
    Ok(compiler.descriptor_pool())
});

#[cfg(test)]
mod tests {
    use super::*;
    use pb::messageloop::client::v2 as g2;
    use pb::messageloop::shared::v2 as shared;

    fn publish_ack(offset: Option<u64>) -> g2::OutboundMessage {
        g2::OutboundMessage {
            id: "p-1".into(),
            time: 1_763_800_000_000,
            envelope: Some(g2::outbound_message::Envelope::PublishAck(g2::PublishAck {
                id: "p-1".into(),
                position: Some(shared::Position {
                    stream_epoch: "e".into(),
                    offset,
                }),
            })),
        }
    }

    #[test]
    fn renders_like_protojson_with_proto_names() {
        let value = to_value(&publish_ack(Some(0))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"id":"p-1","time":"1763800000000",
                "publish_ack":{"id":"p-1","position":{"stream_epoch":"e","offset":"0"}}})
        );
        let unset = to_value(&publish_ack(None)).unwrap();
        assert_eq!(
            unset["publish_ack"]["position"],
            serde_json::json!({"stream_epoch":"e"})
        );
    }

    #[test]
    fn parses_both_spellings_numbers_and_ignores_unknown_keys() {
        let snake = br#"{"id":"p-1","time":"1763800000000","publish_ack":{"id":"p-1","position":{"stream_epoch":"e","offset":"0"}}}"#;
        let camel = br#"{"id":"p-1","time":1763800000000,"publishAck":{"id":"p-1","position":{"streamEpoch":"e","offset":0}},"extra":{"x":[1]}}"#;
        let expected = publish_ack(Some(0));
        assert_eq!(from_slice::<g2::OutboundMessage>(snake).unwrap(), expected);
        assert_eq!(from_slice::<g2::OutboundMessage>(camel).unwrap(), expected);
    }

    #[test]
    fn struct_numbers_render_without_fraction() {
        let payload = br#"{"id":"1","publish":{"channel":"c","payload":{"content_type":"application/json","json":{"n":1,"f":1.5,"big":1e300,"list":[2,{"m":-3}]}}}}"#;
        let inbound: g2::InboundMessage = from_slice(payload).unwrap();
        let rendered = to_value(&inbound).unwrap();
        assert_eq!(
            rendered["publish"]["payload"]["json"],
            serde_json::json!({"n":1,"f":1.5,"big":1e300,"list":[2,{"m":-3}]})
        );
    }

    #[test]
    fn rejects_two_members_of_one_oneof_and_wrong_types() {
        assert!(from_slice::<g2::InboundMessage>(br#"{"ping":{},"pong":{}}"#).is_err());
        assert!(from_slice::<g2::InboundMessage>(br#"{"time":"abc"}"#).is_err());
        assert!(from_slice::<g2::InboundMessage>(br#"[1]"#).is_err());
        assert!(from_slice::<g2::InboundMessage>(b"{").is_err());
    }
}
