//! One Goomerang connection's state over the bus: its topic subscriptions, the implicit broadcast
//! subscription, the inbox that receives sync replies, and the sync requests still waiting for one.
//!
//! The session does no IO and reads no clock: the driver hands it each binary WebSocket message
//! ([`Session::handle_input`]) and each bus delivery, one at a time ([`Session::handle_delivery`], with the
//! time to stamp on the frame), and writes what comes back. It keeps no timers: the idle timeout and the close
//! handshake are the driver's. Goomerang has no error frame and no ack (docs/protocols/goomerang.md, "Commands"),
//! so every refused or undeliverable message is dropped, logged and counted in `gatewayd_drops_total`.
//!
//! A plain `Send` goes to the topic [`SendRoutes`] derives from its kind, with the sender's identity in the
//! `goomerang-sender` header; a `SendSync` to `$rpc.goomerang.<kind>`, with reply-to and correlation id as well.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use bytes::Bytes;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{
    Backpressure, Bus, Delivery, Mailbox, Origin, Pattern, Protocol, SubscribeError,
    SubscriptionId, Topic,
};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::bridge::routing::{ForeignKinds, SendRoutes};
use super::bridge::{
    broadcast_topic, from_envelope, rpc_topic, to_envelope, to_send_envelope, topic, user_headers,
    WrapperKind,
};
use super::close::CloseReason;
use super::codec::headers::FrameHeaders;
use super::codec::limits::Limits;
use super::codec::{decode, encode_delivery, encode_sync_reply, Command, DecodeError};
use crate::auth::Identity;

/// Most sync requests one connection may have waiting for a reply; past it the oldest is forgotten
/// (its client-side `SendSync` has long timed out in any realistic setup).
pub const MAX_PENDING_SYNC: usize = 1024;

/// What every session of one listener shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// Limits of client frames, and of the frames delivered to the client.
    pub limits: Limits,
    /// The kind foreign messages are delivered as.
    pub wrapper_kind: WrapperKind,
    /// Most topic subscriptions per connection (the implicit broadcast one not counted).
    pub max_subscriptions: usize,
    /// The topic each plain `Send` is published on.
    pub send_routes: SendRoutes,
    /// The kinds foreign messages on some topics are delivered as, instead of wrapped.
    pub foreign_kinds: ForeignKinds,
}

/// What the driver does after a client message.
#[derive(Debug)]
pub enum Inbound {
    /// Keep reading.
    Continue,
    /// The publish went to a group over its bound: wait on it before reading more.
    Wait(Backpressure),
    /// Close the connection (always with code 1000) for this reason.
    Close(CloseReason),
}

/// One connection's bus state.
pub struct Session {
    bus: Bus,
    mailbox: Mailbox,
    identity: Identity,
    settings: SessionSettings,
    topics: HashMap<Topic, SubscriptionId>,
    inbox: Topic,
    inbox_subscription: SubscriptionId,
    pending: PendingSync,
    /// The topic name last published to and its topic: a publisher usually keeps to one, and building a topic
    /// allocates.
    last_published: Option<(String, Topic)>,
}

impl Session {
    /// A session for the connection `origin`, subscribed to the broadcast topic and to its reply inbox.
    pub fn new(
        bus: &Bus,
        origin: Origin,
        identity: Identity,
        settings: SessionSettings,
    ) -> Result<Session, SubscribeError> {
        let mut mailbox = bus.mailbox(origin);
        mailbox.subscribe(Pattern::exact(&broadcast_topic()))?;
        // Sync replies come back to `$inbox.<connection>.<128 random bits>`: nobody can answer into it unasked.
        let inbox = mailbox.inbox(crate::auth::unguessable_name().as_bytes());
        let inbox_subscription = mailbox.subscribe(Pattern::exact(&inbox))?;
        Ok(Session {
            bus: bus.clone(),
            mailbox,
            identity,
            settings,
            topics: HashMap::new(),
            inbox,
            inbox_subscription,
            pending: PendingSync::default(),
            last_published: None,
        })
    }

    /// The inbox sync replies come back to.
    pub fn reply_inbox(&self) -> &Topic {
        &self.inbox
    }

    /// The mailbox to receive deliveries from; hand each one to [`Session::handle_delivery`].
    pub fn mailbox(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    /// Number of topic subscriptions (the implicit broadcast one not counted).
    pub fn subscription_count(&self) -> usize {
        self.topics.len()
    }

    /// Handles one binary WebSocket message from the client.
    pub fn handle_input(&mut self, message: Bytes, now_ms: u64) -> Inbound {
        match decode(message, &self.settings.limits) {
            Ok(command) => self.on_command(command, now_ms),
            Err(error) => {
                if let Some(reason) = error.close_reason() {
                    tracing::debug!(%error, "goomerang: closing the connection");
                    return Inbound::Close(reason);
                }
                let reason = match &error {
                    DecodeError::Limit(_) => DropReason::TooLarge,
                    DecodeError::ReservedTopic { .. } => DropReason::AclDenied,
                    _ => DropReason::Malformed,
                };
                drop_frame(reason, &error);
                Inbound::Continue
            }
        }
    }

    fn on_command(&mut self, command: Command, now_ms: u64) -> Inbound {
        match command {
            Command::Subscribe { topic: name } => self.subscribe(&name),
            Command::Unsubscribe { topic: name } => self.unsubscribe(&name),
            Command::Publish {
                topic: name,
                kind,
                message,
                headers,
            } => {
                let target = self.published_topic(&name);
                return self.publish(
                    target,
                    kind,
                    message,
                    &user_headers(&headers),
                    Outgoing::Publish,
                    now_ms,
                );
            }
            Command::Broadcast {
                kind,
                message,
                headers,
            } => {
                return self.publish(
                    broadcast_topic(),
                    kind,
                    message,
                    &user_headers(&headers),
                    Outgoing::Publish,
                    now_ms,
                );
            }
            Command::Send {
                kind,
                payload,
                headers,
            } => {
                let target = self.settings.send_routes.topic(&kind);
                return self.publish(
                    target,
                    kind.into(),
                    payload,
                    &headers,
                    Outgoing::Direct,
                    now_ms,
                );
            }
            Command::SendSync {
                uuid,
                kind,
                payload,
                headers,
            } => return self.send_sync(uuid, kind, payload, &headers, now_ms),
        }
        Inbound::Continue
    }

    /// The topic of `name`, a topic name published to (copied when it is not the last one's: a frame's buffer is
    /// not kept for it).
    fn published_topic(&mut self, name: &str) -> Topic {
        match &self.last_published {
            Some((last, target)) if last == name => target.clone(),
            _ => {
                let target = topic(name);
                self.last_published = Some((name.to_owned(), target.clone()));
                target
            }
        }
    }

    fn subscribe(&mut self, name: &str) {
        let target = topic(name);
        if self.topics.contains_key(&target) {
            return;
        }
        let pattern = Pattern::exact(&target);
        if !self.identity.may_subscribe(&pattern) {
            return drop_frame(
                DropReason::AclDenied,
                &format_args!("{} may not subscribe to {name:?}", self.identity.name),
            );
        }
        if self.topics.len() >= self.settings.max_subscriptions {
            return drop_frame(
                DropReason::AclDenied,
                &format_args!(
                    "subscription to {name:?} over the limit of {}",
                    self.settings.max_subscriptions
                ),
            );
        }
        match self.mailbox.subscribe(pattern) {
            Ok(id) => {
                self.topics.insert(target, id);
            }
            Err(error) => drop_frame(DropReason::AclDenied, &error),
        }
    }

    fn unsubscribe(&mut self, name: &str) {
        if let Some(id) = self.topics.remove(&topic(name)) {
            self.mailbox.unsubscribe(id);
        }
    }

    /// Publishes `kind` (moved into the envelope of a plain publish, which needs no copy of it).
    fn publish(
        &mut self,
        target: Topic,
        kind: Utf8Bytes,
        body: Bytes,
        headers: &FrameHeaders,
        outgoing: Outgoing,
        now_ms: u64,
    ) -> Inbound {
        if !self.identity.may_publish(&target) {
            drop_frame(
                DropReason::AclDenied,
                &format_args!("{} may not publish to {target}", self.identity.name),
            );
            return Inbound::Continue;
        }
        let origin = self.mailbox.owner();
        // The envelope goes straight to the bus from where it is built (not through a tuple beside the kind).
        let (outcome, kind) = match &outgoing {
            Outgoing::Publish => (
                self.bus
                    .publish(to_envelope(target, kind, body, headers, origin, now_ms)),
                None,
            ),
            Outgoing::Direct | Outgoing::Sync(_) => {
                let mut envelope = to_send_envelope(
                    target,
                    &kind,
                    body,
                    headers,
                    origin,
                    now_ms,
                    &self.identity.name,
                );
                if let Outgoing::Sync(uuid) = &outgoing {
                    envelope.reply_to = Some(self.inbox.clone());
                    envelope.correlation_id = Some(uuid.clone());
                }
                (self.bus.publish(envelope), Some(kind))
            }
        };
        let unrouted = outcome.delivered == 0 && outcome.retained == 0;
        match outgoing {
            Outgoing::Sync(uuid) if unrouted => drop_frame(
                DropReason::Unroutable,
                &format_args!(
                    "sync request {uuid} of {}: no responder",
                    kind.unwrap_or_default()
                ),
            ),
            Outgoing::Sync(uuid) => self.pending.insert(uuid),
            Outgoing::Direct if unrouted => drop_frame(
                DropReason::Unroutable,
                &format_args!(
                    "direct send of {}: nobody subscribes to its topic",
                    kind.unwrap_or_default()
                ),
            ),
            Outgoing::Direct | Outgoing::Publish => {}
        }
        match outcome.backpressure {
            Some(backpressure) => Inbound::Wait(backpressure),
            None => Inbound::Continue,
        }
    }

    fn send_sync(
        &mut self,
        uuid: String,
        kind: String,
        payload: Bytes,
        headers: &FrameHeaders,
        now_ms: u64,
    ) -> Inbound {
        if self.pending.contains(&uuid) {
            drop_frame(
                DropReason::Malformed,
                &format_args!("sync request {uuid} is already waiting for its reply"),
            );
            return Inbound::Continue;
        }
        self.publish(
            rpc_topic(&kind),
            kind.into(),
            payload,
            headers,
            Outgoing::Sync(uuid),
            now_ms,
        )
    }

    /// The frame to send to the client for `delivery`, stamped with `now`; `None` if it is not sent
    /// (a reply nobody waits for, or too large for the client: both counted).
    pub fn handle_delivery(&mut self, delivery: Delivery, now: SystemTime) -> Option<Bytes> {
        if let Some(ack) = delivery.ack {
            ack.ack();
        }
        let envelope = &delivery.envelope;
        let limit = self.settings.limits.max_message_size;
        if envelope.payload.len() > limit {
            drop_frame(
                DropReason::TooLarge,
                &format_args!(
                    "delivery of {} bytes on {} from {} over the limit of {limit}",
                    envelope.payload.len(),
                    envelope.topic,
                    envelope.origin.protocol
                ),
            );
            return None;
        }
        let message = from_envelope(
            envelope,
            &self.settings.wrapper_kind,
            &self.settings.foreign_kinds,
        );
        let frame = if delivery.subscription == self.inbox_subscription {
            let uuid = envelope
                .correlation_id
                .as_deref()
                .filter(|uuid| self.pending.remove(uuid));
            let Some(uuid) = uuid else {
                drop_frame(
                    DropReason::Unroutable,
                    &format_args!(
                        "reply {:?} matches no waiting sync request",
                        envelope.correlation_id
                    ),
                );
                return None;
            };
            encode_sync_reply(uuid, &message, now)
        } else {
            encode_delivery(&message, now)
        };
        if frame.len() > limit {
            drop_frame(
                DropReason::TooLarge,
                &format_args!(
                    "delivery frame of {} bytes on {} from {} over the limit of {limit}",
                    frame.len(),
                    envelope.topic,
                    envelope.origin.protocol
                ),
            );
            return None;
        }
        Some(frame)
    }
}

/// What a message published for the client is.
enum Outgoing {
    /// `Publish` and `Broadcast`: to a topic the client named (or the broadcast topic).
    Publish,
    /// A plain `Send(msg)` for the handler of its kind, carrying the sender's identity.
    Direct,
    /// A `SendSync` with this uuid: like `Direct`, with reply-to and correlation id, waiting for one reply.
    Sync(String),
}

fn drop_frame(reason: DropReason, why: &dyn std::fmt::Display) {
    tracing::debug!(reason = reason.as_str(), "goomerang: dropped: {why}");
    record_drop(reason, Protocol::Goomerang);
}

/// The uuids of sync requests still waiting for their one reply, oldest first.
#[derive(Debug, Default)]
struct PendingSync {
    order: VecDeque<String>,
    waiting: HashSet<String>,
}

impl PendingSync {
    fn contains(&self, uuid: &str) -> bool {
        self.waiting.contains(uuid)
    }

    fn insert(&mut self, uuid: String) {
        while self.waiting.len() >= MAX_PENDING_SYNC {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.waiting.remove(&oldest);
        }
        self.waiting.insert(uuid.clone());
        self.order.push_back(uuid);
    }

    /// Removes `uuid`; `true` if it was waiting.
    fn remove(&mut self, uuid: &str) -> bool {
        if !self.waiting.remove(uuid) {
            return false;
        }
        self.order.retain(|waiting| waiting != uuid);
        true
    }
}
