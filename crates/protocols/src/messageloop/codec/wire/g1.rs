//! G1 (`messageloop.client.v1`, upstream v0.2.0) envelopes ↔ neutral messages. Differences from G2:
//! offsets are bare numbers (a subscription's `offset` + `epoch` is the neutral cursor), the epoch field is
//! `epoch`, there are no capabilities, and recovery results / gap notices have no streamed form.

use crate::messageloop::generation::Generation;
use crate::messageloop::message::{
    Inbound, Message, Outbound, OutboundBody, Position, RecoverComplete, Subscription,
};
use crate::messageloop::pb::messageloop::client::v1 as pb;
use crate::messageloop::pb::messageloop::shared::v1 as shared;

use super::{DecodeError, Unrepresentable, Wire};

super::shared_conversions!(|_: &mut pb::Connect| Vec::new());

/// The G1 wire: `/messageloop.client.v1.MessageLoopService/MessageLoop`, WebSocket Connect version 1.x.
#[derive(Debug, Clone, Copy)]
pub struct G1Wire;

impl Wire for G1Wire {
    const GENERATION: Generation = Generation::G1;
    type Inbound = pb::InboundMessage;
    type Outbound = pb::OutboundMessage;

    fn inbound(message: pb::InboundMessage) -> Result<Inbound, DecodeError> {
        inbound_in(message)
    }

    fn outbound(message: &Outbound) -> Result<pb::OutboundMessage, Unrepresentable> {
        use pb::outbound_message::Envelope;
        let missing = |what| Unrepresentable {
            generation: Generation::G1,
            message: what,
        };
        let envelope = match &message.body {
            OutboundBody::Error(error) => Envelope::Error(error_out(error)),
            OutboundBody::Connected(connected) => Envelope::Connected(pb::Connected {
                session_id: connected.session_id.clone(),
                subscriptions: connected
                    .subscriptions
                    .iter()
                    .map(|channel| pb::Subscription {
                        channel: channel.clone(),
                        ..pb::Subscription::default()
                    })
                    .collect(),
                resumed: connected.resumed,
                epoch: connected.stream_epoch.clone(),
                ..pb::Connected::default()
            }),
            OutboundBody::SubscribeAck(ack) => Envelope::SubscribeAck(pb::SubscribeAck {
                subscriptions: subscriptions_out(&ack.subscriptions),
                publications: ack
                    .replayed
                    .iter()
                    .map(|message| pb::Publication {
                        messages: vec![message_out(message)],
                    })
                    .collect(),
                recover_results: ack.recover_results.iter().map(recover_result_out).collect(),
                epoch: ack.stream_epoch.clone(),
                presence: ack.presence.iter().map(snapshot_out).collect(),
            }),
            OutboundBody::UnsubscribeAck(subscriptions) => {
                Envelope::UnsubscribeAck(pb::UnsubscribeAck {
                    subscriptions: subscriptions_out(subscriptions),
                })
            }
            OutboundBody::PublishAck(position) => Envelope::PublishAck(pb::PublishAck {
                id: message.id.clone(),
                offset: position.offset.unwrap_or(0),
            }),
            OutboundBody::Publication(messages) => Envelope::Publication(pb::Publication {
                messages: messages.iter().map(message_out).collect(),
            }),
            OutboundBody::Delivered(shared) => Envelope::Publication(pb::Publication {
                messages: vec![message_out(shared.message())],
            }),
            OutboundBody::RecoverComplete(_) => return Err(missing("recover_complete")),
            OutboundBody::GapNotice(_) => return Err(missing("gap_notice")),
            OutboundBody::RpcReply(reply) => Envelope::RpcReply(rpc_reply_out(reply)),
            OutboundBody::SubRefreshAck => Envelope::SubRefreshAck(pb::SubRefreshAck {}),
            OutboundBody::SurveyRequest(survey) => {
                Envelope::SurveyRequest(survey_request_out(survey))
            }
            OutboundBody::SurveyResult(result) => Envelope::SurveyResult(survey_result_out(result)),
            OutboundBody::Presence(snapshot) => Envelope::Presence(snapshot_out(snapshot)),
            OutboundBody::PresenceEvent(event) => Envelope::PresenceEvent(pb::PresenceEvent {
                channel: event.channel.clone(),
                action: event.action.as_str().to_owned(),
                info: Some(info_out(&event.info)),
            }),
            OutboundBody::Ping => Envelope::Ping(pb::Ping {}),
            OutboundBody::Pong => Envelope::Pong(pb::Pong {}),
        };
        Ok(pb::OutboundMessage {
            id: message.id.clone(),
            time: message.time_ms,
            envelope: Some(envelope),
        })
    }
}

fn subscriptions_in(subscriptions: Vec<pb::Subscription>) -> Vec<Subscription> {
    subscriptions
        .into_iter()
        .map(|subscription| {
            let has_cursor = subscription.offset != 0 || !subscription.epoch.is_empty();
            Subscription {
                channel: subscription.channel,
                ephemeral: subscription.ephemeral,
                token: subscription.token,
                recover: subscription.recover,
                cursor: has_cursor.then_some(Position {
                    stream_epoch: subscription.epoch,
                    offset: Some(subscription.offset),
                }),
                fresh: false,
            }
        })
        .collect()
}

fn subscriptions_out(subscriptions: &[Subscription]) -> Vec<pb::Subscription> {
    subscriptions
        .iter()
        .map(|subscription| {
            let cursor = subscription.cursor.clone().unwrap_or_default();
            pb::Subscription {
                channel: subscription.channel.clone(),
                ephemeral: subscription.ephemeral,
                token: subscription.token.clone(),
                offset: cursor.offset.unwrap_or(0),
                recover: subscription.recover,
                epoch: cursor.stream_epoch,
            }
        })
        .collect()
}

fn message_out(message: &Message) -> pb::Message {
    pb::Message {
        id: message.id.clone(),
        channel: message.channel.clone(),
        offset: message.position.offset.unwrap_or(0),
        payload: payload_out(&message.payload),
        metadata: metadata_out(&message.headers),
    }
}

/// G1's result of one recovering subscription: `recovered` only when nothing is missing.
fn recover_result_out(result: &RecoverComplete) -> pb::RecoverResult {
    pb::RecoverResult {
        channel: result.channel.clone(),
        recovered: !result.truncated && !result.gap && result.error.is_none(),
        truncated: result.truncated,
        offset: result.position.offset.unwrap_or(0),
        epoch: result.position.stream_epoch.clone(),
        error: result.error.as_ref().map(error_out),
    }
}
