//! Conversions between each generation's protobuf envelopes and the generation-neutral messages of
//! [`crate::messageloop::message`], so a session is written once. [`Wire`] ties a generation to its envelope types;
//! the gRPC listener can be generic over it (one tonic service per generation).

use std::collections::HashMap;

use bytes::Bytes;
use prost_types::value::Kind;
use serde_json::Value;

use super::generation::Generation;
use super::json::ProtoJson;
use crate::messageloop::message::{Headers, Inbound, JsonObject, Outbound};

pub mod g0;
pub mod g1;
pub mod g2;
pub mod proxy;

pub use g0::G0Wire;
pub use g1::G1Wire;
pub use g2::G2Wire;

/// A wire generation's envelope types and their conversions.
pub trait Wire {
    const GENERATION: Generation;
    /// Client → server envelope (`InboundMessage`).
    type Inbound: ProtoJson + Clone + PartialEq + std::fmt::Debug + Send + 'static;
    /// Server → client envelope (`OutboundMessage`).
    type Outbound: ProtoJson + Clone + PartialEq + std::fmt::Debug + Send + 'static;

    /// Reads a decoded envelope.
    fn inbound(message: Self::Inbound) -> Result<Inbound, DecodeError>;

    /// Builds the envelope for a neutral message, if the generation has one for it.
    fn outbound(message: &Outbound) -> Result<Self::Outbound, Unrepresentable>;
}

/// Why an inbound frame yields no message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a valid envelope. The reference server answers with `Error::undecodable()` under a fresh id
    /// and keeps the connection.
    #[error("undecodable frame: {0}")]
    Malformed(String),
    /// A valid envelope without a known message in its oneof: disconnect 3501 (3500 before Connect).
    #[error("envelope {id:?} carries no known message")]
    Empty { id: String },
}

/// The generation has no envelope for this message (for example presence or recovery in G0); the session
/// leaves it out for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{generation} has no {message} message")]
pub struct Unrepresentable {
    pub generation: Generation,
    pub message: &'static str,
}

/// G1/G2 `Metadata.entries` as headers, sorted by name.
fn entries_to_headers(entries: HashMap<String, String>) -> Headers {
    let mut headers: Headers = entries
        .into_iter()
        .map(|(name, value)| (name, Bytes::from(value.into_bytes())))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    headers
}

/// Headers as metadata entries: values that are not UTF-8 are left out, the first of equal names wins.
pub(crate) fn headers_to_entries(headers: &[(String, Bytes)]) -> HashMap<String, String> {
    let mut entries = HashMap::new();
    for (name, value) in headers {
        if let Some(text) = core_bus::text::utf8(value) {
            entries
                .entry(name.clone())
                .or_insert_with(|| text.to_owned());
        }
    }
    entries
}

fn struct_to_object(object: prost_types::Struct) -> JsonObject {
    object
        .fields
        .into_iter()
        .map(|(name, value)| (name, value_to_json(value)))
        .collect()
}

fn value_to_json(value: prost_types::Value) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(number)) => number_to_json(number),
        Some(Kind::StringValue(text)) => Value::String(text),
        Some(Kind::BoolValue(flag)) => Value::Bool(flag),
        Some(Kind::StructValue(object)) => Value::Object(struct_to_object(object)),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
    }
}

/// Largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

fn number_to_json(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() <= MAX_EXACT {
        // Exact: a whole number of magnitude at most 2^53.
        Value::from(number as i64)
    } else {
        serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
    }
}

fn object_to_struct(object: &JsonObject) -> prost_types::Struct {
    prost_types::Struct {
        fields: object
            .iter()
            .map(|(name, value)| (name.clone(), json_to_value(value)))
            .collect(),
    }
}

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or(0.0)),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(object_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

/// Generates the payload, metadata and error conversions for the `messageloop.shared.vN` package imported
/// as `shared` where it is invoked, and those of the client messages of the `messageloop.client.vN` package
/// imported as `pb` that G1 and G2 share field for field (publish, RPC, survey, presence).
/// `$caps` takes a Connect's capabilities out of it (G1 has none).
macro_rules! shared_conversions {
    ($caps:expr) => {
        use shared::payload::Data;
        use $crate::messageloop::codes::ErrorCode;
        use $crate::messageloop::message::{
            Error, Headers, Payload, PayloadData, PresenceInfo, PresenceSnapshot, Publish,
            RpcReply, RpcRequest, SurveyReply, SurveyRequest, SurveyResult,
        };

        pub(super) fn payload_in(payload: Option<shared::Payload>) -> Payload {
            let Some(payload) = payload else {
                return Payload::default();
            };
            Payload {
                content_type: payload.content_type,
                data: payload.data.map(|data| match data {
                    Data::Json(object) => PayloadData::Json(super::struct_to_object(object)),
                    Data::Binary(bytes) => PayloadData::Binary(bytes),
                    Data::Text(text) => PayloadData::Text(text),
                }),
            }
        }

        pub(super) fn payload_out(payload: &Payload) -> Option<shared::Payload> {
            if *payload == Payload::default() {
                return None;
            }
            Some(shared::Payload {
                content_type: payload.content_type.clone(),
                data: payload.data.as_ref().map(|data| match data {
                    PayloadData::Json(object) => Data::Json(super::object_to_struct(object)),
                    PayloadData::Binary(bytes) => Data::Binary(bytes.clone()),
                    PayloadData::Text(text) => Data::Text(text.clone()),
                }),
            })
        }

        pub(super) fn metadata_in(metadata: Option<shared::Metadata>) -> Headers {
            metadata.map_or_else(Headers::new, |metadata| {
                super::entries_to_headers(metadata.entries)
            })
        }

        pub(super) fn metadata_out(headers: &[(String, bytes::Bytes)]) -> Option<shared::Metadata> {
            let entries = super::headers_to_entries(headers);
            (!entries.is_empty()).then_some(shared::Metadata { entries })
        }

        pub(super) fn error_in(error: shared::Error) -> Error {
            Error {
                code: ErrorCode::parse(&error.code),
                error_type: error.r#type,
                message: error.message,
                metadata: error
                    .metadata
                    .map(super::struct_to_object)
                    .unwrap_or_default(),
            }
        }

        pub(super) fn error_out(error: &Error) -> shared::Error {
            shared::Error {
                code: error.code.as_str().to_owned(),
                r#type: error.error_type.clone(),
                message: error.message.clone(),
                metadata: (!error.metadata.is_empty())
                    .then(|| super::object_to_struct(&error.metadata)),
            }
        }

        fn publish_in(publish: pb::Publish) -> Publish {
            Publish {
                channel: publish.channel,
                payload: payload_in(publish.payload),
                headers: metadata_in(publish.metadata),
                token: publish.token,
                transient: publish.transient,
                idempotency_key: publish.idempotency_key,
            }
        }

        fn rpc_in(rpc: pb::RpcRequest) -> RpcRequest {
            RpcRequest {
                channel: rpc.channel,
                method: rpc.method,
                payload: payload_in(rpc.payload),
                headers: metadata_in(rpc.metadata),
            }
        }

        fn survey_request_in(survey: pb::SurveyRequest) -> SurveyRequest {
            SurveyRequest {
                request_id: survey.request_id,
                channel: survey.channel,
                payload: payload_in(survey.payload),
                headers: metadata_in(survey.metadata),
                timeout_ms: survey.timeout_ms,
            }
        }

        fn survey_reply_in(reply: pb::SurveyReply) -> SurveyReply {
            SurveyReply {
                request_id: reply.request_id,
                payload: payload_in(reply.payload),
                headers: metadata_in(reply.metadata),
                error: reply.error.map(error_in),
            }
        }

        fn rpc_reply_out(reply: &RpcReply) -> pb::RpcReply {
            pb::RpcReply {
                request_id: reply.request_id.clone(),
                payload: payload_out(&reply.payload),
                metadata: metadata_out(&reply.headers),
                error: reply.error.as_ref().map(error_out),
            }
        }

        fn survey_request_out(survey: &SurveyRequest) -> pb::SurveyRequest {
            pb::SurveyRequest {
                request_id: survey.request_id.clone(),
                payload: payload_out(&survey.payload),
                metadata: metadata_out(&survey.headers),
                channel: survey.channel.clone(),
                timeout_ms: survey.timeout_ms,
            }
        }

        fn survey_result_out(result: &SurveyResult) -> pb::SurveyResult {
            pb::SurveyResult {
                request_id: result.request_id.clone(),
                channel: result.channel.clone(),
                answers: result
                    .answers
                    .iter()
                    .map(|answer| pb::SurveyAnswer {
                        session_id: answer.session_id.clone(),
                        payload: payload_out(&answer.payload),
                        metadata: metadata_out(&answer.headers),
                        error: answer.error.as_ref().map(error_out),
                    })
                    .collect(),
                error: result.error.as_ref().map(error_out),
            }
        }

        fn info_out(info: &PresenceInfo) -> pb::PresenceInfo {
            pb::PresenceInfo {
                session_id: info.session_id.clone(),
                user_id: info.user_id.clone(),
                client_id: info.client_id.clone(),
                connected_at: info.connected_at_ms,
            }
        }

        fn inbound_in(
            message: pb::InboundMessage,
        ) -> Result<$crate::messageloop::message::Inbound, super::DecodeError> {
            use pb::inbound_message::Envelope;
            use $crate::messageloop::message::{Connect, Inbound, InboundBody};
            let Some(envelope) = message.envelope else {
                return Err(super::DecodeError::Empty { id: message.id });
            };
            let body = match envelope {
                Envelope::Connect(mut connect) => InboundBody::Connect(Connect {
                    caps: ($caps)(&mut connect),
                    client_id: connect.client_id,
                    client_type: connect.client_type,
                    token: connect.token,
                    version: connect.version,
                    subscriptions: subscriptions_in(connect.subscriptions),
                    session_id: connect.session_id,
                }),
                Envelope::Subscribe(subscribe) => {
                    InboundBody::Subscribe(subscriptions_in(subscribe.subscriptions))
                }
                Envelope::Unsubscribe(unsubscribe) => {
                    InboundBody::Unsubscribe(subscriptions_in(unsubscribe.subscriptions))
                }
                Envelope::Publish(publish) => InboundBody::Publish(publish_in(publish)),
                Envelope::RpcRequest(rpc) => InboundBody::Rpc(rpc_in(rpc)),
                Envelope::SubRefresh(refresh) => InboundBody::SubRefresh(refresh.channels),
                Envelope::SurveyRequest(survey) => {
                    InboundBody::SurveyRequest(survey_request_in(survey))
                }
                Envelope::SurveyReply(reply) => InboundBody::SurveyReply(survey_reply_in(reply)),
                Envelope::Ping(_) => InboundBody::Ping,
                Envelope::Pong(_) => InboundBody::Pong,
                Envelope::PresenceQuery(query) => InboundBody::PresenceQuery {
                    channel: query.channel,
                },
            };
            Ok(Inbound {
                id: message.id,
                body,
            })
        }

        fn snapshot_out(snapshot: &PresenceSnapshot) -> pb::PresenceSnapshot {
            pb::PresenceSnapshot {
                channel: snapshot.channel.clone(),
                clients: snapshot.clients.iter().map(info_out).collect(),
                truncated: snapshot.truncated,
                occupancy: snapshot.occupancy,
            }
        }
    };
}

pub(crate) use shared_conversions;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn struct_round_trip_keeps_whole_numbers_whole() {
        let object = json!({"a":1,"b":-2.5,"c":[true,null,"s",{"d":9007199254740992u64}],"e":{}});
        let Value::Object(object) = object else {
            unreachable!()
        };
        assert_eq!(struct_to_object(object_to_struct(&object)), object);
    }

    #[test]
    fn non_finite_struct_numbers_become_null() {
        assert_eq!(number_to_json(f64::NAN), Value::Null);
        assert_eq!(number_to_json(f64::INFINITY), Value::Null);
        assert_eq!(number_to_json(1e300), json!(1e300));
    }

    #[test]
    fn headers_and_entries() {
        let entries = HashMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "1".to_owned()),
        ]);
        let headers = entries_to_headers(entries.clone());
        assert_eq!(headers[0].0, "a");
        assert_eq!(headers_to_entries(&headers), entries);
        let odd = vec![
            ("x".to_owned(), Bytes::from_static(b"\xff")),
            ("y".to_owned(), Bytes::from_static(b"first")),
            ("y".to_owned(), Bytes::from_static(b"second")),
        ];
        assert_eq!(
            headers_to_entries(&odd),
            HashMap::from([("y".to_owned(), "first".to_owned())])
        );
    }
}
