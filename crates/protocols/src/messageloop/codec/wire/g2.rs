//! G2 (`messageloop.client.v2`, upstream HEAD) envelopes ↔ neutral messages. G2 is the neutral model's
//! reference, so every message has an envelope here.

use crate::messageloop::generation::Generation;
use crate::messageloop::message::{
    Connected, GapReason, Inbound, Message, Outbound, OutboundBody, Position, RecoverState,
    Subscription,
};
use crate::messageloop::pb::messageloop::client::v2 as pb;
use crate::messageloop::pb::messageloop::shared::v2 as shared;

use super::{DecodeError, Unrepresentable, Wire};

super::shared_conversions!(|connect: &mut pb::Connect| std::mem::take(&mut connect.caps));

/// The G2 wire: `/messageloop.client.v2.MessageLoopService/MessageLoop`, WebSocket Connect version 2.x.
#[derive(Debug, Clone, Copy)]
pub struct G2Wire;

impl Wire for G2Wire {
    const GENERATION: Generation = Generation::G2;
    type Inbound = pb::InboundMessage;
    type Outbound = pb::OutboundMessage;

    fn inbound(message: pb::InboundMessage) -> Result<Inbound, DecodeError> {
        inbound_in(message)
    }

    fn outbound(message: &Outbound) -> Result<pb::OutboundMessage, Unrepresentable> {
        use pb::outbound_message::Envelope;
        let envelope = match &message.body {
            OutboundBody::Error(error) => Envelope::Error(error_out(error)),
            OutboundBody::Connected(connected) => Envelope::Connected(connected_out(connected)),
            OutboundBody::SubscribeAck(ack) => Envelope::SubscribeAck(pb::SubscribeAck {
                subscriptions: subscriptions_out(&ack.subscriptions),
                recover: recover_state(ack.recover) as i32,
                stream_epoch: ack.stream_epoch.clone(),
                presence: ack.presence.iter().map(snapshot_out).collect(),
                error: ack.error.as_ref().map(error_out),
            }),
            OutboundBody::UnsubscribeAck(subscriptions) => {
                Envelope::UnsubscribeAck(pb::UnsubscribeAck {
                    subscriptions: subscriptions_out(subscriptions),
                })
            }
            OutboundBody::PublishAck(position) => Envelope::PublishAck(pb::PublishAck {
                id: message.id.clone(),
                position: Some(position_out(position)),
            }),
            OutboundBody::Publication(messages) => Envelope::Publication(pb::Publication {
                messages: messages.iter().map(message_out).collect(),
            }),
            OutboundBody::Delivered(shared) => Envelope::Publication(pb::Publication {
                messages: vec![message_out(shared.message())],
            }),
            OutboundBody::RecoverComplete(complete) => {
                Envelope::RecoverComplete(pb::RecoverComplete {
                    channel: complete.channel.clone(),
                    position: Some(position_out(&complete.position)),
                    truncated: complete.truncated,
                    gap: complete.gap,
                    gap_reason: gap_reason(complete.gap_reason) as i32,
                    error: complete.error.as_ref().map(error_out),
                })
            }
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
                gen: event.generation,
            }),
            OutboundBody::Ping => Envelope::Ping(pb::Ping {}),
            OutboundBody::Pong => Envelope::Pong(pb::Pong {}),
            OutboundBody::GapNotice(notice) => Envelope::GapNotice(pb::GapNotice {
                channel: notice.channel.clone(),
                position: Some(position_out(&notice.position)),
                gap_reason: gap_reason(notice.gap_reason) as i32,
            }),
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
        .map(|subscription| Subscription {
            channel: subscription.channel,
            ephemeral: subscription.ephemeral,
            token: subscription.token,
            recover: subscription.recover,
            cursor: subscription.cursor.map(|cursor| Position {
                stream_epoch: cursor.stream_epoch,
                offset: cursor.offset,
            }),
            fresh: subscription.fresh,
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
            recover: subscription.recover,
            cursor: subscription.cursor.as_ref().map(position_out),
            fresh: subscription.fresh,
        })
        .collect()
}

fn connected_out(connected: &Connected) -> pb::Connected {
    pb::Connected {
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
        stream_epoch: connected.stream_epoch.clone(),
        accepted_caps: connected.accepted_caps.clone(),
    }
}

fn position_out(position: &Position) -> shared::Position {
    shared::Position {
        stream_epoch: position.stream_epoch.clone(),
        offset: position.offset,
    }
}

fn message_out(message: &Message) -> pb::Message {
    pb::Message {
        id: message.id.clone(),
        channel: message.channel.clone(),
        position: Some(position_out(&message.position)),
        payload: payload_out(&message.payload),
        metadata: metadata_out(&message.headers),
        replay: message.replay,
    }
}

fn recover_state(state: RecoverState) -> pb::RecoverState {
    match state {
        RecoverState::None => pb::RecoverState::None,
        RecoverState::Pending => pb::RecoverState::Pending,
        RecoverState::Skipped => pb::RecoverState::Skipped,
        RecoverState::Failed => pb::RecoverState::Failed,
    }
}

fn gap_reason(reason: GapReason) -> pb::GapReason {
    match reason {
        GapReason::None => pb::GapReason::None,
        GapReason::HeadTrimmed => pb::GapReason::HeadTrimmed,
        GapReason::EmptyExpired => pb::GapReason::EmptyExpired,
        GapReason::EpochReset => pb::GapReason::EpochReset,
        GapReason::Middle => pb::GapReason::Middle,
        GapReason::ReplayTruncated => pb::GapReason::ReplayTruncated,
    }
}
