//! Reads server → client messages the way the SDKs' decoders do, to prove gatewayd sends a client nothing its
//! generation does not know: JSON as Go's protojson reads it (unknown keys are errors unless the SDK discards
//! them, every value must have its field's type) and binary protobuf with the fields the descriptor does not
//! know collected as errors. The conformance tests run every message they receive through it.

use prost_reflect::{DeserializeOptions, DynamicMessage, ReflectMessage, Value as Field};
use serde_json::Value;

use super::generation::Generation;
use super::json::{descriptor, JsonError};

/// What a client does with a key its schema does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownKeys {
    /// protojson's default, used by the G0 Go SDK: the message is rejected.
    Reject,
    /// `DiscardUnknown`, used by the G1 and G2 Go SDKs: the key is dropped, known keys are still type-checked.
    Discard,
}

/// The full name of a generation's server → client envelope.
pub fn outbound_name(generation: Generation) -> &'static str {
    match generation {
        Generation::G0 => "messageloop.v1.OutboundMessage",
        Generation::G1 => "messageloop.client.v1.OutboundMessage",
        Generation::G2 => "messageloop.client.v2.OutboundMessage",
    }
}

/// The full name of a generation's client → server envelope.
pub fn inbound_name(generation: Generation) -> &'static str {
    match generation {
        Generation::G0 => "messageloop.v1.InboundMessage",
        Generation::G1 => "messageloop.client.v1.InboundMessage",
        Generation::G2 => "messageloop.client.v2.InboundMessage",
    }
}

/// Reads a JSON message as `full_name` with `unknown` handling.
pub fn check_json(
    full_name: &'static str,
    value: &Value,
    unknown: UnknownKeys,
) -> Result<(), JsonError> {
    let options = DeserializeOptions::new().deny_unknown_fields(unknown == UnknownKeys::Reject);
    DynamicMessage::deserialize_with_options(descriptor(full_name)?, value, &options)
        .map(drop)
        .map_err(|err| JsonError::Shape {
            message: full_name,
            reason: err.to_string(),
        })
}

/// Reads a binary protobuf message as `full_name`: it must decode (field wire types match) and carry no field
/// number the descriptor lacks, at any depth.
pub fn check_protobuf(full_name: &'static str, bytes: &[u8]) -> Result<(), JsonError> {
    let message = DynamicMessage::decode(descriptor(full_name)?, bytes)?;
    // An explicit stack: nesting depth comes from the input.
    let mut stack = vec![&message];
    while let Some(message) = stack.pop() {
        if let Some(field) = message.unknown_fields().next() {
            return Err(JsonError::Shape {
                message: full_name,
                reason: format!(
                    "unknown field {} in {}",
                    field.number(),
                    message.descriptor().full_name()
                ),
            });
        }
        let mut values: Vec<&Field> = message.fields().map(|(_, value)| value).collect();
        while let Some(value) = values.pop() {
            match value {
                Field::Message(inner) => stack.push(inner),
                Field::List(items) => values.extend(items),
                Field::Map(entries) => values.extend(entries.values()),
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn g0_rejects_g1_fields_and_wrong_types() {
        let g0 = outbound_name(Generation::G0);
        let connected = json!({"id":"1","time":"5","connected":{"session_id":"s"}});
        assert!(check_json(g0, &connected, UnknownKeys::Reject).is_ok());
        let with_epoch = json!({"id":"1","connected":{"session_id":"s","epoch":"e"}});
        assert!(check_json(g0, &with_epoch, UnknownKeys::Reject).is_err());
        assert!(check_json(g0, &with_epoch, UnknownKeys::Discard).is_ok());
        let wrong_type = json!({"id":"1","time":"soon"});
        assert!(check_json(g0, &wrong_type, UnknownKeys::Discard).is_err());
    }

    #[test]
    fn protobuf_unknown_fields_are_found_at_depth() {
        let g0 = outbound_name(Generation::G0);
        // connected (12) { session_id (1) "s" }
        assert!(check_protobuf(g0, &[0x62, 0x03, 0x0a, 0x01, b's']).is_ok());
        // connected (12) { field 5 "e" }: G1's epoch number, unknown to G0.
        let err = check_protobuf(g0, &[0x62, 0x03, 0x2a, 0x01, b'e']).unwrap_err();
        assert!(err.to_string().contains("unknown field 5"), "{err}");
        // A string field (1) sent as a varint.
        assert!(check_protobuf(g0, &[0x08, 0x01]).is_err());
    }
}
