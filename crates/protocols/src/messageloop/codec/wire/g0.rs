//! G0 (`messageloop.v1`, upstream v0.1.1) envelopes ↔ neutral messages. Publish, RPC and survey bodies
//! are CloudEvents: inbound they become payload + `ce-*` headers (see [`crate::messageloop::bridge::cloudevent`]);
//! the envelope's `channel`/`method` win over the event's `source`/`type`, and the envelope's metadata
//! entries follow the `ce-*` headers. Deliveries are re-wrapped as the G0 server does. G0 has no presence,
//! recovery, server ping, or survey result envelopes; its PublishAck offset is always 0, as upstream.

use std::collections::HashMap;

use crate::messageloop::bridge::cloudevent::{self, CloudEvent, EventContext};
use crate::messageloop::codes::ErrorCode;
use crate::messageloop::generation::Generation;
use crate::messageloop::message::{
    Connect, Error, Headers, Inbound, InboundBody, Outbound, OutboundBody, Payload, Publish,
    RpcRequest, Subscription, SurveyReply, SurveyRequest,
};
use crate::messageloop::pb::messageloop::v1 as pb;

use super::{
    entries_to_headers, object_to_struct, struct_to_object, DecodeError, Unrepresentable, Wire,
};

/// `source` of events gatewayd makes up for RPC replies that carry no `ce-source`.
pub const REPLY_SOURCE: &str = "/gatewayd";
/// `type` of events gatewayd makes up for RPC replies that carry no `ce-type`.
pub const REPLY_TYPE: &str = "messageloop.rpc.reply";

/// The G0 wire: `/messageloop.v1.MessagingService/MessageLoop`, WebSocket Connect at field 11.
#[derive(Debug, Clone, Copy)]
pub struct G0Wire;

impl Wire for G0Wire {
    const GENERATION: Generation = Generation::G0;
    type Inbound = pb::InboundMessage;
    type Outbound = pb::OutboundMessage;

    fn inbound(message: pb::InboundMessage) -> Result<Inbound, DecodeError> {
        use pb::inbound_message::Envelope;
        let Some(envelope) = message.envelope else {
            return Err(DecodeError::Empty { id: message.id });
        };
        let or = |envelope: String, event: &str| {
            if envelope.is_empty() {
                event.to_owned()
            } else {
                envelope
            }
        };
        let body = match envelope {
            Envelope::Connect(connect) => InboundBody::Connect(Connect {
                client_id: connect.client_id,
                client_type: connect.client_type,
                token: connect.token,
                version: connect.version,
                subscriptions: subscriptions_in(connect.subscriptions),
                ..Connect::default()
            }),
            Envelope::Subscribe(subscribe) => {
                InboundBody::Subscribe(subscriptions_in(subscribe.subscriptions))
            }
            Envelope::Unsubscribe(unsubscribe) => {
                InboundBody::Unsubscribe(subscriptions_in(unsubscribe.subscriptions))
            }
            Envelope::Publish(event) => {
                let (payload, headers) = event_in(&event, message.metadata);
                InboundBody::Publish(Publish {
                    channel: or(message.channel, &event.source),
                    payload,
                    headers,
                    ..Publish::default()
                })
            }
            Envelope::RpcRequest(event) => {
                let (payload, headers) = event_in(&event, message.metadata);
                InboundBody::Rpc(RpcRequest {
                    channel: or(message.channel, &event.source),
                    method: or(message.method, &event.r#type),
                    payload,
                    headers,
                })
            }
            Envelope::Ping(_) => InboundBody::Ping,
            Envelope::SubRefresh(refresh) => InboundBody::SubRefresh(refresh.channels),
            Envelope::SurveyRequest(survey) => {
                let (payload, headers) =
                    optional_event_in(survey.payload.as_ref(), message.metadata);
                InboundBody::SurveyRequest(SurveyRequest {
                    request_id: survey.request_id,
                    channel: message.channel,
                    payload,
                    headers,
                    timeout_ms: 0,
                })
            }
            Envelope::SurveyResponse(response) => {
                let (payload, headers) =
                    optional_event_in(response.payload.as_ref(), message.metadata);
                InboundBody::SurveyReply(SurveyReply {
                    request_id: response.request_id,
                    payload,
                    headers,
                    error: response.error.map(error_in),
                })
            }
        };
        Ok(Inbound {
            id: message.id,
            body,
        })
    }

    fn outbound(message: &Outbound) -> Result<pb::OutboundMessage, Unrepresentable> {
        use pb::outbound_message::Envelope;
        let missing = |what| Unrepresentable {
            generation: Generation::G0,
            message: what,
        };
        let envelope = match &message.body {
            OutboundBody::Error(error) => Envelope::Error(error_out(error)),
            OutboundBody::Connected(connected) => Envelope::Connected(pb::Connected {
                session_id: connected.session_id.clone(),
                ..pb::Connected::default()
            }),
            OutboundBody::SubscribeAck(ack) => Envelope::SubscribeAck(pb::SubscribeAck {
                subscriptions: subscriptions_out(&ack.subscriptions),
            }),
            OutboundBody::UnsubscribeAck(subscriptions) => {
                Envelope::UnsubscribeAck(pb::UnsubscribeAck {
                    subscriptions: subscriptions_out(subscriptions),
                })
            }
            OutboundBody::PublishAck(_) => Envelope::PublishAck(pb::PublishAck { offset: 0 }),
            OutboundBody::Publication(_) | OutboundBody::Delivered(_) => {
                Envelope::Publication(pb::Publication {
                    messages: message
                        .body
                        .messages()
                        .unwrap_or_default()
                        .iter()
                        .map(|delivered| pb::Message {
                            id: delivered.id.clone(),
                            channel: delivered.channel.clone(),
                            offset: delivered.position.offset.unwrap_or(0),
                            payload: Some(cloudevent::delivery_event(delivered)),
                        })
                        .collect(),
                })
            }
            OutboundBody::RpcReply(reply) => match &reply.error {
                Some(error) => Envelope::Error(error_out(error)),
                None => Envelope::RpcReply(cloudevent::from_binary(
                    &reply.payload,
                    &reply.headers,
                    EventContext {
                        id: &reply.request_id,
                        source: REPLY_SOURCE,
                        event_type: REPLY_TYPE,
                    },
                )),
            },
            OutboundBody::SubRefreshAck => Envelope::SubRefreshAck(pb::SubRefreshAck {}),
            OutboundBody::SurveyRequest(survey) => Envelope::SurveyRequest(pb::SurveyRequest {
                request_id: survey.request_id.clone(),
                payload: Some(cloudevent::from_binary(
                    &survey.payload,
                    &survey.headers,
                    EventContext {
                        id: &survey.request_id,
                        source: &survey.channel,
                        event_type: "messageloop.survey",
                    },
                )),
            }),
            OutboundBody::Pong => Envelope::Pong(pb::Pong {}),
            OutboundBody::SurveyResult(_) => return Err(missing("survey_result")),
            OutboundBody::Presence(_) => return Err(missing("presence")),
            OutboundBody::PresenceEvent(_) => return Err(missing("presence_event")),
            OutboundBody::Ping => return Err(missing("ping")),
            OutboundBody::RecoverComplete(_) => return Err(missing("recover_complete")),
            OutboundBody::GapNotice(_) => return Err(missing("gap_notice")),
        };
        Ok(pb::OutboundMessage {
            id: message.id.clone(),
            metadata: HashMap::new(),
            time: message.time_ms,
            envelope: Some(envelope),
        })
    }
}

fn event_in(event: &CloudEvent, metadata: HashMap<String, String>) -> (Payload, Headers) {
    let (payload, mut headers) = cloudevent::to_binary(event);
    headers.extend(entries_to_headers(metadata));
    (payload, headers)
}

fn optional_event_in(
    event: Option<&CloudEvent>,
    metadata: HashMap<String, String>,
) -> (Payload, Headers) {
    match event {
        Some(event) => event_in(event, metadata),
        None => (Payload::default(), entries_to_headers(metadata)),
    }
}

fn subscriptions_in(subscriptions: Vec<pb::Subscription>) -> Vec<Subscription> {
    subscriptions
        .into_iter()
        .map(|subscription| Subscription {
            channel: subscription.channel,
            ephemeral: subscription.ephemeral,
            token: subscription.token,
            ..Subscription::default()
        })
        .collect()
}

fn subscriptions_out(subscriptions: &[Subscription]) -> Vec<pb::Subscription> {
    subscriptions
        .iter()
        .map(|subscription| pb::Subscription {
            channel: subscription.channel.clone(),
            ephemeral: subscription.ephemeral,
            token: subscription.token.clone(),
        })
        .collect()
}

fn error_in(error: pb::Error) -> Error {
    Error {
        code: ErrorCode::parse(&error.code),
        error_type: error.r#type,
        message: error.message,
        metadata: error.metadata.map(struct_to_object).unwrap_or_default(),
    }
}

fn error_out(error: &Error) -> pb::Error {
    pb::Error {
        code: error.code.as_str().to_owned(),
        r#type: error.error_type.clone(),
        message: error.message.clone(),
        metadata: (!error.metadata.is_empty()).then(|| object_to_struct(&error.metadata)),
    }
}
