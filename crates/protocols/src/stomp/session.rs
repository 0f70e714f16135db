//! One STOMP connection's state machine over the bus, without sockets or clocks: bytes go in
//! through [`Session::receive`], bus deliveries through [`Session::deliver`], and frames to write
//! come out of [`Session::take_output`]. A [`Flow::Close`] answer means "write what is queued,
//! then close". Timers (heart-beats, login timeout) belong to the listener, which reads the
//! negotiated [`HeartBeatPlan`] from [`Session::heart_beat`].
//!
//! Every failure is answered with ERROR and a close (reference §2.6); the receipt of the
//! culprit frame goes on the ERROR. Frames that follow DISCONNECT or an error are ignored.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use core_bus::config::GroupPolicy;
use core_bus::names::{self, pattern_from_name, WildcardSyntax};
use core_bus::{
    AckHandle, Backpressure, Bus, Closed, Credit, Delivery, Mailbox, Origin, Pattern,
    SubscribeError, SubscriptionId, Topic,
};

use super::ack::{ack_id, AckMode, AckTable};
use super::bridge::{self, Delivered};
use super::config::UnknownDestination;
use super::destination::Destination;
use super::durable::{self, Request};
use super::error::StompError;
use super::forwarder::{Durables, FeedError, SOURCE_TOPIC};
use super::frame::{header, Command, Frame, Version};
use super::limits::Limits;
use super::negotiate::{connected_frame, negotiate, HeartBeatPlan, HeartBeatPolicy};
use super::parser::{Decoded, Decoder};
use super::transaction::{Transactions, TxLimits};
use crate::auth::{Authenticator, Credentials, Identity};

/// What the session needs from the listener's configuration.
pub struct Settings {
    pub limits: Limits,
    pub transactions: TxLimits,
    pub heart_beat: HeartBeatPolicy,
    pub unknown_destination: UnknownDestination,
    pub default_prefetch: u32,
    pub max_subscriptions: usize,
    pub auth: Arc<Authenticator>,
    /// No tokens, no JWT and credentials not required: `login`/`passcode` are ignored and every
    /// client gets the anonymous identity (clients such as stomp.py always send guest/guest).
    pub ignore_credentials: bool,
    /// The CONNECTED `server` header.
    pub server: String,
    /// Durable subscription queues, shared by every STOMP listener.
    pub durables: Durables,
    /// Durable queues gatewayd keeps at most (all listeners together).
    pub max_durable_subscriptions: usize,
}

/// What the listener does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write the queued frames, then close the connection.
    Close,
}

/// How a subscription names the destination of its MESSAGE frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/topic/<concrete topic>`.
    Topic,
    /// `/queue/<topic>`.
    Queue,
    /// The destination exactly as subscribed (temp queues).
    AsSubscribed,
    /// The bare topic name (unknown prefixes treated as topics).
    Bare,
    /// `/topic/<original topic>` of a message forwarded into a durable queue.
    Durable,
}

struct Subscription {
    /// The `destination` header of SUBSCRIBE.
    destination: String,
    kind: Kind,
    bus: SubscriptionId,
    ack: AckMode,
}

struct Connected {
    settings: Arc<Settings>,
    bus: Bus,
    mailbox: Mailbox,
    version: Version,
    heart_beat: HeartBeatPlan,
    identity: Identity,
    /// CONNECT `client-id` (names ActiveMQ-style durable subscriptions).
    client_id: Option<String>,
    subscriptions: HashMap<String, Subscription>,
    by_bus: HashMap<SubscriptionId, String>,
    acks: AckTable<AckHandle>,
    transactions: Transactions,
}

enum Phase {
    AwaitingConnect,
    Connected(Box<Connected>),
    Closed,
}

/// The result of one frame.
enum Step {
    Continue,
    Disconnect,
}

pub struct Session {
    settings: Arc<Settings>,
    bus: Bus,
    origin: Origin,
    decoder: Decoder,
    phase: Phase,
    out: Vec<Frame>,
    backpressure: Option<Backpressure>,
}

impl Session {
    pub fn new(settings: Arc<Settings>, bus: Bus, origin: Origin) -> Session {
        Session {
            decoder: Decoder::new(settings.limits),
            settings,
            bus,
            origin,
            phase: Phase::AwaitingConnect,
            out: Vec::new(),
            backpressure: None,
        }
    }

    /// Decodes and processes every complete frame at the front of `buf`. Stops early, leaving
    /// the rest in `buf`, when a publish asks for backpressure: wait on
    /// [`Session::take_backpressure`], then call again before reading more.
    pub fn receive(&mut self, buf: &mut BytesMut) -> Flow {
        loop {
            if matches!(self.phase, Phase::Closed) {
                return Flow::Close;
            }
            if self.backpressure.is_some() {
                return Flow::Continue;
            }
            match self.decoder.decode(buf) {
                Ok(None) => return Flow::Continue,
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(Some(Decoded::Frame(frame))) => {
                    if self.frame(frame) == Flow::Close {
                        return Flow::Close;
                    }
                }
                Err(error) => return self.fail(error.into(), None),
            }
        }
    }

    /// Processes one decoded frame.
    pub fn frame(&mut self, frame: Frame) -> Flow {
        let receipt = match frame.command {
            Command::Connect | Command::Stomp => None,
            _ => frame.receipt_request().cloned(),
        };
        let result = match &mut self.phase {
            Phase::Closed => return Flow::Close,
            Phase::AwaitingConnect => self.connect(&frame).map(|()| Step::Continue),
            Phase::Connected(connected) => connected.command(frame, &mut self.backpressure),
        };
        match result {
            Ok(step) => {
                if let Some(id) = receipt {
                    self.out.push(Frame::receipt(id));
                }
                match step {
                    Step::Continue => Flow::Continue,
                    Step::Disconnect => {
                        self.phase = Phase::Closed;
                        Flow::Close
                    }
                }
            }
            Err(error) => self.fail(error, receipt),
        }
    }

    fn connect(&mut self, frame: &Frame) -> Result<(), StompError> {
        let connect = negotiate(frame, &self.settings.heart_beat)?;
        let auth = &self.settings.auth;
        let identity = if self.settings.ignore_credentials {
            auth.anonymous().clone()
        } else {
            auth.authenticate(Credentials {
                login: connect.login.as_deref(),
                secret: connect.passcode.as_deref(),
            })
            .map_err(|_| StompError::AccessRefused {
                login: connect.login.clone().unwrap_or_default(),
            })?
        };
        self.decoder.set_version(connect.version);
        let session_id = format!("gatewayd-{}", self.origin.connection);
        self.out.push(connected_frame(
            connect.version,
            &session_id,
            &self.settings.server,
            connect.heart_beat.server,
        ));
        self.phase = Phase::Connected(Box::new(Connected {
            settings: self.settings.clone(),
            bus: self.bus.clone(),
            mailbox: self.bus.mailbox(self.origin),
            version: connect.version,
            heart_beat: connect.heart_beat,
            identity,
            client_id: frame
                .header(durable::CLIENT_ID)
                .and_then(|v| std::str::from_utf8(v).ok())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            subscriptions: HashMap::new(),
            by_bus: HashMap::new(),
            acks: AckTable::new(format!("{}-", self.origin.connection)),
            transactions: Transactions::new(self.settings.transactions),
        }));
        Ok(())
    }

    fn fail(&mut self, error: StompError, receipt: Option<Bytes>) -> Flow {
        tracing::debug!(connection = %self.origin.connection, %error, "stomp: closing after error");
        if let Some(frame) = error.to_frame(receipt) {
            self.out.push(frame);
        }
        self.phase = Phase::Closed;
        Flow::Close
    }

    /// Turns one bus delivery into a MESSAGE frame.
    pub fn deliver(&mut self, delivery: Delivery) {
        match &mut self.phase {
            Phase::Connected(connected) => {
                if let Some(frame) = connected.message(delivery) {
                    self.out.push(frame);
                }
            }
            // The mailbox is gone with the phase; a stray group delivery goes back to its group.
            Phase::AwaitingConnect | Phase::Closed => {
                if let Some(ack) = delivery.ack {
                    ack.nack(true);
                }
            }
        }
    }

    /// The bus closed the mailbox (the client does not read fast enough).
    pub fn mailbox_closed(&mut self, closed: Closed) -> Flow {
        match closed {
            Closed::SlowConsumer => self.fail(StompError::SlowConsumer, None),
        }
    }

    /// The daemon is shutting down: ERROR "server shutting down", then close.
    pub fn shutdown(&mut self) -> Flow {
        self.fail(StompError::ShuttingDown, None)
    }

    /// Frames to write, in order.
    pub fn take_output(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.out)
    }

    /// Set after a publish into a full group under the `block` policy.
    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take()
    }

    pub fn mailbox_mut(&mut self) -> Option<&mut Mailbox> {
        match &mut self.phase {
            Phase::Connected(connected) => Some(&mut connected.mailbox),
            Phase::AwaitingConnect | Phase::Closed => None,
        }
    }

    fn connected(&self) -> Option<&Connected> {
        match &self.phase {
            Phase::Connected(connected) => Some(connected),
            Phase::AwaitingConnect | Phase::Closed => None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected().is_some()
    }

    /// The negotiated version; frames before CONNECTED are written as 1.0.
    pub fn version(&self) -> Version {
        self.connected().map_or(Version::V1_0, |c| c.version)
    }

    pub fn heart_beat(&self) -> HeartBeatPlan {
        self.connected()
            .map_or(HeartBeatPlan::NONE, |c| c.heart_beat)
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.connected().map(|c| &c.identity)
    }

    pub fn subscription_count(&self) -> usize {
        self.connected().map_or(0, |c| c.subscriptions.len())
    }
}

fn invalid(destination: &str, reason: &'static str) -> StompError {
    StompError::InvalidDestination {
        destination: destination.to_owned(),
        reason,
    }
}

fn forbidden(operation: &'static str, destination: &str) -> StompError {
    StompError::Forbidden {
        operation,
        destination: destination.to_owned(),
    }
}

fn refused(destination: &str, error: SubscribeError) -> StompError {
    let reason = match error {
        SubscribeError::NotInboxOwner(_) => "the inbox belongs to another connection",
        SubscribeError::InternalWildcard => "internal topics cannot be subscribed by pattern",
        SubscribeError::GroupPattern => "a queue needs an exact name",
    };
    invalid(destination, reason)
}

/// The SUBSCRIBE prefetch window, if one of the known headers gives it.
fn prefetch(frame: &Frame) -> Result<Option<u32>, StompError> {
    for name in bridge::PREFETCH_HEADERS {
        if let Some(value) = frame.header(name) {
            let parsed = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or(StompError::InvalidHeader {
                    command: Command::Subscribe,
                    header: name,
                    reason: "not an integer",
                })?;
            // ActiveMQ uses -1 (and RabbitMQ 0) for "unlimited".
            return Ok(Some(u32::try_from(parsed).unwrap_or(0)));
        }
    }
    Ok(None)
}

impl Connected {
    fn command(
        &mut self,
        frame: Frame,
        backpressure: &mut Option<Backpressure>,
    ) -> Result<Step, StompError> {
        match frame.command {
            Command::Connect | Command::Stomp => Err(StompError::AlreadyConnected {
                command: frame.command,
            }),
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                Err(StompError::BadCommand(frame.command))
            }
            Command::Disconnect => Ok(Step::Disconnect),
            Command::Subscribe => self.subscribe(&frame).map(|()| Step::Continue),
            Command::Unsubscribe => self.unsubscribe(&frame).map(|()| Step::Continue),
            Command::Begin => {
                let id = frame.require_header(header::TRANSACTION)?;
                self.transactions.begin(id).map(|()| Step::Continue)
            }
            Command::Abort => {
                let id = frame.require_header(header::TRANSACTION)?;
                self.transactions.abort(id).map(|()| Step::Continue)
            }
            Command::Commit => {
                let id = frame.require_header(header::TRANSACTION)?;
                for held in self.transactions.commit(id)? {
                    self.apply(held, backpressure)?;
                }
                Ok(Step::Continue)
            }
            Command::Send | Command::Ack | Command::Nack => {
                if matches!(frame.command, Command::Ack | Command::Nack)
                    && frame.header(header::TRANSACTION).is_some()
                {
                    self.acks.check(ack_id(&frame, self.version)?)?;
                }
                if let Some(now) = self.transactions.hold(frame)? {
                    self.apply(now, backpressure)?;
                }
                Ok(Step::Continue)
            }
        }
    }

    /// SEND, ACK or NACK, now (outside a transaction, or at COMMIT).
    fn apply(
        &mut self,
        frame: Frame,
        backpressure: &mut Option<Backpressure>,
    ) -> Result<(), StompError> {
        match frame.command {
            Command::Send => {
                if let Some(wait) = self.send(&frame)? {
                    *backpressure = Some(wait);
                }
                Ok(())
            }
            Command::Ack => self.settle(&frame, false),
            _ => self.settle(&frame, true),
        }
    }

    fn send(&mut self, frame: &Frame) -> Result<Option<Backpressure>, StompError> {
        let name = frame.require_header(header::DESTINATION)?;
        let topic = match Destination::parse(name)? {
            Destination::Topic(n) => {
                self.publishable(name, names::topic_from_name(n.as_bytes()))?
            }
            Destination::Queue(n) => {
                let topic = self.publishable(name, names::topic_from_name(n.as_bytes()))?;
                self.bus.declare_group(&topic, GroupPolicy::QUEUE);
                topic
            }
            Destination::TempQueue(n) => self.mailbox.inbox(n.as_bytes()),
            Destination::ReplyQueue(opaque) => bridge::inbox_of_reply_queue(&opaque)
                .ok_or_else(|| invalid(name, "not a reply address gatewayd issued"))?,
            Destination::Unknown(raw) => match self.settings.unknown_destination {
                UnknownDestination::Error => {
                    return Err(StompError::UnknownDestination { destination: raw })
                }
                UnknownDestination::Topic => {
                    self.publishable(name, names::topic_from_name(raw.as_bytes()))?
                }
            },
        };
        let reply_to = match frame.header_str(header::REPLY_TO)? {
            None => None,
            Some(address) => self.reply_to(address)?,
        };
        let envelope = bridge::envelope_from_send(frame, topic, reply_to, self.mailbox.owner());
        Ok(self.bus.publish(envelope).backpressure)
    }

    fn publishable(&self, name: &str, topic: Topic) -> Result<Topic, StompError> {
        if self.identity.may_publish(&topic) {
            Ok(topic)
        } else {
            Err(forbidden("SEND", name))
        }
    }

    /// Resolves a SEND `reply-to`. `/temp-queue/X` creates and subscribes the private inbox;
    /// an address gatewayd cannot resolve stays a plain header (`None`).
    fn reply_to(&mut self, address: &str) -> Result<Option<Topic>, StompError> {
        Ok(match Destination::parse(address) {
            Ok(Destination::TempQueue(name)) => {
                let inbox = self.mailbox.inbox(name.as_bytes());
                if !self.subscriptions.contains_key(address) {
                    self.check_capacity()?;
                    let id = self
                        .mailbox
                        .subscribe(Pattern::exact(&inbox))
                        .map_err(|e| refused(address, e))?;
                    self.add(address, address, Kind::AsSubscribed, id, AckMode::Auto);
                }
                Some(inbox)
            }
            Ok(Destination::Topic(name) | Destination::Queue(name)) => {
                Some(names::topic_from_name(name.as_bytes()))
            }
            Ok(Destination::ReplyQueue(opaque)) => bridge::inbox_of_reply_queue(&opaque),
            Ok(Destination::Unknown(_)) | Err(_) => None,
        })
    }

    fn check_capacity(&self) -> Result<(), StompError> {
        let max = self.settings.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(StompError::TooManySubscriptions { max });
        }
        Ok(())
    }

    fn add(&mut self, id: &str, destination: &str, kind: Kind, bus: SubscriptionId, ack: AckMode) {
        self.by_bus.insert(bus, id.to_owned());
        self.subscriptions.insert(
            id.to_owned(),
            Subscription {
                destination: destination.to_owned(),
                kind,
                bus,
                ack,
            },
        );
    }

    /// The backing queue a durable SUBSCRIBE or UNSUBSCRIBE names: the RabbitMQ form needs the
    /// subscription `id` and the topic name, the ActiveMQ form the CONNECT `client-id`.
    fn durable_queue(
        &self,
        request: Request<'_>,
        id: Option<&str>,
        topic: &str,
    ) -> Result<Topic, StompError> {
        match request {
            Request::ById => {
                id.map(|id| durable::queue(id, topic))
                    .ok_or(StompError::MissingHeader {
                        command: Command::Subscribe,
                        header: header::ID,
                    })
            }
            Request::Named(name) => match &self.client_id {
                Some(client) => Ok(durable::queue(client, name)),
                None => Err(StompError::InvalidHeader {
                    command: Command::Subscribe,
                    header: durable::SUBSCRIPTION_NAME_HEADERS[0],
                    reason: "a durable subscription name needs client-id on CONNECT",
                }),
            },
        }
    }

    fn subscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let name = frame.require_header(header::DESTINATION)?;
        if frame.header(header::SELECTOR).is_some() {
            return Err(StompError::SelectorNotSupported);
        }
        let explicit_id = frame.header_str(header::ID)?;
        let id = match (explicit_id, self.version) {
            (Some(id), _) => id,
            // 1.0 allows SUBSCRIBE without id; the destination names the subscription.
            (None, Version::V1_0) => name,
            (None, _) => {
                return Err(StompError::MissingHeader {
                    command: Command::Subscribe,
                    header: header::ID,
                })
            }
        };
        if self.subscriptions.contains_key(id) {
            return Err(StompError::DuplicateSubscription { id: id.to_owned() });
        }
        self.check_capacity()?;
        let ack = AckMode::from_header(frame.header_str(header::ACK)?)?;
        let prefetch = prefetch(frame)?;
        let may = |pattern: &Pattern| {
            if self.identity.may_subscribe(pattern) {
                Ok(())
            } else {
                Err(forbidden("SUBSCRIBE", name))
            }
        };
        let credit = match (ack.client_ack(), prefetch) {
            (None, None | Some(0)) => Credit::AutoAck,
            (Some(_), Some(0)) => Credit::Window(u32::MAX),
            (_, Some(window)) => Credit::Window(window),
            (Some(_), None) => Credit::Window(self.settings.default_prefetch),
        };
        let (kind, bus) = match Destination::parse(name)? {
            Destination::Topic(n) => {
                let pattern = pattern_from_name(&n, WildcardSyntax::Amqp)
                    .map_err(|_| invalid(name, "not a valid topic pattern"))?;
                may(&pattern)?;
                match durable::request(frame) {
                    Some(request) => {
                        let queue = self.durable_queue(request, explicit_id, &n)?;
                        let max = self.settings.max_durable_subscriptions;
                        self.settings
                            .durables
                            .feed(&self.bus, &queue, pattern, max)
                            .map_err(|e| match e {
                                FeedError::Subscribe(e) => refused(name, e),
                                FeedError::Full { max } => {
                                    StompError::TooManyDurableSubscriptions { max }
                                }
                            })?;
                        let id = self
                            .mailbox
                            .join_group(&queue, credit, GroupPolicy::QUEUE)
                            .map_err(|e| refused(name, e))?;
                        (Kind::Durable, id)
                    }
                    None => {
                        let id = self
                            .mailbox
                            .subscribe(pattern)
                            .map_err(|e| refused(name, e))?;
                        (Kind::Topic, id)
                    }
                }
            }
            Destination::Queue(n) => {
                let topic = names::topic_from_name(n.as_bytes());
                may(&Pattern::exact(&topic))?;
                let id = self
                    .mailbox
                    .join_group(&topic, credit, GroupPolicy::QUEUE)
                    .map_err(|e| refused(name, e))?;
                (Kind::Queue, id)
            }
            Destination::TempQueue(n) => {
                let inbox = self.mailbox.inbox(n.as_bytes());
                let id = self
                    .mailbox
                    .subscribe(Pattern::exact(&inbox))
                    .map_err(|e| refused(name, e))?;
                (Kind::AsSubscribed, id)
            }
            Destination::ReplyQueue(_) => {
                return Err(invalid(name, "reply addresses can only be sent to"))
            }
            Destination::Unknown(raw) => match self.settings.unknown_destination {
                UnknownDestination::Error => {
                    return Err(StompError::UnknownDestination { destination: raw })
                }
                UnknownDestination::Topic => {
                    let pattern = Pattern::exact(&names::topic_from_name(raw.as_bytes()));
                    may(&pattern)?;
                    let id = self
                        .mailbox
                        .subscribe(pattern)
                        .map_err(|e| refused(name, e))?;
                    (Kind::Bare, id)
                }
            },
        };
        let id = id.to_owned();
        self.add(&id, name, kind, bus, ack);
        Ok(())
    }

    /// UNSUBSCRIBE by `id`, or by `destination` (1.0; accepted in every version). An unknown
    /// subscription is ignored: teardown paths repeat UNSUBSCRIBE. Repeating the durable
    /// headers of SUBSCRIBE also deletes the durable queue, whether or not the subscription is
    /// active on this connection.
    fn unsubscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let explicit_id = frame.header_str(header::ID)?;
        let ids: Vec<String> = match explicit_id {
            Some(id) => vec![id.to_owned()],
            None => {
                let Some(destination) = frame.header_str(header::DESTINATION)? else {
                    return Err(StompError::MissingHeader {
                        command: Command::Unsubscribe,
                        header: header::ID,
                    });
                };
                self.subscriptions
                    .iter()
                    .filter(|(_, s)| s.destination == destination)
                    .map(|(id, _)| id.clone())
                    .collect()
            }
        };
        let mut destination = frame.header_str(header::DESTINATION)?.map(str::to_owned);
        for id in ids {
            if let Some(subscription) = self.subscriptions.remove(&id) {
                self.by_bus.remove(&subscription.bus);
                // Dropped handles stay unacked until the membership ends, which requeues them.
                drop(self.acks.remove_subscription(&id));
                self.mailbox.unsubscribe(subscription.bus);
                destination.get_or_insert(subscription.destination);
            }
        }
        if let Some(request) = durable::request(frame) {
            let topic = match destination.as_deref().map(Destination::parse) {
                Some(Ok(Destination::Topic(n))) => Some(n),
                _ => None,
            };
            // A queue the frame does not fully name is left alone.
            let queue = match request {
                Request::ById => explicit_id
                    .zip(topic.as_deref())
                    .map(|(id, topic)| durable::queue(id, topic)),
                Request::Named(name) => self
                    .client_id
                    .as_deref()
                    .map(|client| durable::queue(client, name)),
            };
            if let Some(queue) = queue {
                self.settings.durables.delete(&self.bus, &queue);
            }
        }
        Ok(())
    }

    fn settle(&mut self, frame: &Frame, nack: bool) -> Result<(), StompError> {
        let id = ack_id(frame, self.version)?;
        let requeue = frame.header(bridge::REQUEUE).map(|v| &v[..]) != Some(b"false");
        if let Some(settled) = self.acks.settle(id)? {
            for handle in settled.tags {
                if nack {
                    handle.nack(requeue);
                } else {
                    handle.ack();
                }
            }
        }
        Ok(())
    }

    fn message(&mut self, delivery: Delivery) -> Option<Frame> {
        let Some((id, subscription)) = self
            .by_bus
            .get(&delivery.subscription)
            .and_then(|id| self.subscriptions.get_key_value(id))
        else {
            if let Some(ack) = delivery.ack {
                ack.nack(true);
            }
            return None;
        };
        let client_ack = subscription.ack.client_ack();
        let message_id = match (client_ack, delivery.ack) {
            (Some(mode), Some(handle)) => self.acks.track(id, mode, handle),
            (None, Some(handle)) => {
                // auto with a prefetch window: consumed once handed to the writer.
                handle.ack();
                self.acks.auto_id()
            }
            (_, None) => self.acks.auto_id(),
        };
        let topic = &delivery.envelope.topic;
        let destination = match subscription.kind {
            Kind::Topic => bridge::named("/topic/", topic),
            Kind::Queue => bridge::named("/queue/", topic),
            Kind::AsSubscribed => Bytes::from(subscription.destination.clone()),
            Kind::Bare => Bytes::from(names::topic_to_name(topic)),
            Kind::Durable => match delivery
                .envelope
                .headers
                .get_str(SOURCE_TOPIC)
                .and_then(|source| Topic::parse(source).ok())
            {
                Some(source) => bridge::named("/topic/", &source),
                None => Bytes::from(subscription.destination.clone()),
            },
        };
        Some(bridge::message_frame(
            Delivered {
                subscription: id,
                destination,
                message_id: &message_id,
                ack: client_ack.is_some() && self.version == Version::V1_2,
                redelivered: delivery.redelivered,
            },
            &delivery.envelope,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Allowed, AuthConfig, StaticToken};
    use core_bus::config::BusConfig;
    use core_bus::{ConnectionId, Protocol};

    fn settings(change: impl FnOnce(&mut Settings)) -> Arc<Settings> {
        let mut settings = Settings {
            limits: Limits::DEFAULT,
            transactions: TxLimits::default(),
            heart_beat: HeartBeatPolicy::default(),
            unknown_destination: UnknownDestination::Error,
            default_prefetch: 100,
            max_subscriptions: 8,
            auth: Authenticator::open(),
            ignore_credentials: true,
            server: "gatewayd/test".into(),
            durables: Durables::new(tokio_util::sync::CancellationToken::new()),
            max_durable_subscriptions: 4,
        };
        change(&mut settings);
        Arc::new(settings)
    }

    fn session(bus: &Bus, settings: &Arc<Settings>) -> Session {
        let origin = Origin {
            protocol: Protocol::Stomp,
            connection: ConnectionId::next(),
        };
        Session::new(settings.clone(), bus.clone(), origin)
    }

    fn feed(session: &mut Session, bytes: &[u8]) -> Flow {
        session.receive(&mut BytesMut::from(bytes))
    }

    fn connected(bus: &Bus, settings: &Arc<Settings>, version: &str) -> Session {
        let mut s = session(bus, settings);
        let connect = format!("CONNECT\naccept-version:{version}\nhost:h\n\n\0");
        assert_eq!(feed(&mut s, connect.as_bytes()), Flow::Continue);
        let out = s.take_output();
        assert_eq!(out[0].command, Command::Connected);
        s
    }

    /// Moves every ready delivery of the session's mailbox into MESSAGE frames.
    fn pump(session: &mut Session) -> Vec<Frame> {
        let mut deliveries = Vec::new();
        if let Some(mailbox) = session.mailbox_mut() {
            mailbox.try_recv_batch(&mut deliveries, 1000).unwrap();
        }
        for delivery in deliveries {
            session.deliver(delivery);
        }
        session.take_output()
    }

    fn value<'a>(frame: &'a Frame, name: &str) -> Option<&'a str> {
        frame.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    fn error_message(frames: &[Frame]) -> Option<&str> {
        frames
            .iter()
            .find(|f| f.command == Command::Error)
            .and_then(|f| value(f, "message"))
    }

    #[test]
    fn pipelined_connect_subscribe_send_is_processed_in_order() {
        let bus = Bus::new(BusConfig::default());
        let mut s = session(&bus, &settings(|_| {}));
        let input = b"CONNECT\naccept-version:1.1,1.2\nhost:h\n\n\0\
                      SUBSCRIBE\nid:1\ndestination:/topic/a.*\nreceipt:r\n\n\0\
                      SEND\ndestination:/topic/a.b\n\nhi\0";
        assert_eq!(feed(&mut s, input), Flow::Continue);
        let out = s.take_output();
        assert_eq!(out.len(), 2);
        assert_eq!(value(&out[0], "version"), Some("1.2"));
        assert_eq!(out[1], Frame::receipt(Bytes::from_static(b"r")));
        let messages = pump(&mut s);
        assert_eq!(messages.len(), 1);
        assert_eq!(value(&messages[0], "destination"), Some("/topic/a.b"));
        assert_eq!(value(&messages[0], "subscription"), Some("1"));
        assert_eq!(&messages[0].body[..], b"hi");
    }

    #[test]
    fn client_ack_is_cumulative_and_nack_redelivers() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut consumer = connected(&bus, &settings, "1.2");
        feed(
            &mut consumer,
            b"SUBSCRIBE\nid:q\ndestination:/queue/jobs\nack:client\n\n\0",
        );
        let mut producer = connected(&bus, &settings, "1.2");
        for body in ["a", "b", "c"] {
            let send = format!("SEND\ndestination:/queue/jobs\n\n{body}\0");
            feed(&mut producer, send.as_bytes());
        }
        let messages = pump(&mut consumer);
        assert_eq!(messages.len(), 3);
        let ack_of = |i: usize| value(&messages[i], "ack").unwrap().to_owned();
        feed(
            &mut consumer,
            format!("NACK\nid:{}\n\n\0", ack_of(2)).as_bytes(),
        );
        let again = pump(&mut consumer);
        assert_eq!(
            again.len(),
            3,
            "NACK in client mode covers every earlier message"
        );
        assert!(again
            .iter()
            .all(|m| value(m, "redelivered") == Some("true")));
        let last = value(&again[2], "ack").unwrap().to_owned();
        feed(&mut consumer, format!("ACK\nid:{last}\n\n\0").as_bytes());
        let topic = Topic::from_dotted(b"jobs");
        let stats = bus.topics();
        let group = stats.iter().find(|t| t.topic == topic.as_str()).unwrap();
        assert_eq!(group.group.as_ref().unwrap().unacked, 0);
        feed(&mut consumer, format!("ACK\nid:{last}\n\n\0").as_bytes());
        assert!(consumer.is_connected(), "an already settled id is ignored");
    }

    #[test]
    fn transactions_hold_sends_until_commit() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut s = connected(&bus, &settings, "1.2");
        feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/topic/t\n\n\0");
        feed(
            &mut s,
            b"BEGIN\ntransaction:x\n\n\0SEND\ndestination:/topic/t\ntransaction:x\nreceipt:held\n\nm\0",
        );
        let out = pump(&mut s);
        assert_eq!(out, vec![Frame::receipt(Bytes::from_static(b"held"))]);
        feed(&mut s, b"COMMIT\ntransaction:x\n\n\0");
        assert_eq!(pump(&mut s).len(), 1);
        feed(
            &mut s,
            b"BEGIN\ntransaction:y\n\n\0SEND\ndestination:/topic/t\ntransaction:y\n\nm\0ABORT\ntransaction:y\n\n\0",
        );
        assert!(pump(&mut s).is_empty());
        assert_eq!(feed(&mut s, b"COMMIT\ntransaction:y\n\n\0"), Flow::Close);
        assert_eq!(error_message(&s.take_output()), Some("Bad transaction"));
    }

    #[test]
    fn temp_queue_reply_to_is_rewritten_and_answerable() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut responder = connected(&bus, &settings, "1.2");
        feed(
            &mut responder,
            b"SUBSCRIBE\nid:s\ndestination:/queue/rpc\n\n\0",
        );
        let mut requester = connected(&bus, &settings, "1.0");
        feed(
            &mut requester,
            b"SEND\ndestination:/queue/rpc\nreply-to:/temp-queue/r\ncorrelation-id:7\n\nq\0",
        );
        assert_eq!(requester.subscription_count(), 1);
        let request = pump(&mut responder).remove(0);
        let reply_to = value(&request, "reply-to").unwrap().to_owned();
        assert!(reply_to.starts_with("/reply-queue/"), "{reply_to}");
        let reply = format!("SEND\ndestination:{reply_to}\ncorrelation-id:7\n\nanswer\0");
        feed(&mut responder, reply.as_bytes());
        let answer = pump(&mut requester).remove(0);
        assert_eq!(value(&answer, "subscription"), Some("/temp-queue/r"));
        assert_eq!(value(&answer, "destination"), Some("/temp-queue/r"));
        assert_eq!(value(&answer, "correlation-id"), Some("7"));
        assert_eq!(&answer.body[..], b"answer");
    }

    #[test]
    fn one_zero_subscribe_without_id_and_unsubscribe_by_destination() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut s = connected(&bus, &settings, "1.0");
        feed(&mut s, b"SUBSCRIBE\ndestination:/topic/x\n\n\0");
        feed(&mut s, b"SEND\ndestination:/topic/x\n\n1\0");
        let first = pump(&mut s);
        assert_eq!(value(&first[0], "subscription"), Some("/topic/x"));
        feed(&mut s, b"UNSUBSCRIBE\ndestination:/topic/x\n\n\0");
        feed(&mut s, b"SEND\ndestination:/topic/x\n\n2\0");
        assert!(pump(&mut s).is_empty());
        assert_eq!(s.subscription_count(), 0);
    }

    #[test]
    fn subscription_cap_and_acl_refusals() {
        let bus = Bus::new(BusConfig::default());
        let capped = settings(|s| s.max_subscriptions = 1);
        let mut s = connected(&bus, &capped, "1.2");
        feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0");
        let flow = feed(
            &mut s,
            b"SUBSCRIBE\nid:2\ndestination:/topic/b\nreceipt:r9\n\n\0",
        );
        assert_eq!(flow, Flow::Close);
        let out = s.take_output();
        assert_eq!(error_message(&out), Some("Too many subscriptions"));
        assert_eq!(value(&out[0], "receipt-id"), Some("r9"));

        let auth = Authenticator::new(AuthConfig {
            tokens: vec![StaticToken {
                login: Some("bob".into()),
                token: "pw".into(),
                identity: Identity {
                    name: "bob".into(),
                    publish: Allowed::Everything,
                    subscribe: Allowed::Patterns(vec![Pattern::parse("public.#").unwrap()]),
                },
            }],
            ..AuthConfig::default()
        })
        .unwrap();
        let strict = settings(|s| {
            s.auth = Arc::new(auth);
            s.ignore_credentials = false;
        });
        let mut refused = session(&bus, &strict);
        feed(&mut refused, b"CONNECT\nlogin:bob\npasscode:nope\n\n\0");
        assert_eq!(error_message(&refused.take_output()), Some("Bad CONNECT"));
        let mut bob = session(&bus, &strict);
        feed(&mut bob, b"CONNECT\nlogin:bob\npasscode:pw\n\n\0");
        assert_eq!(bob.identity().map(|i| i.name.as_str()), Some("bob"));
        bob.take_output();
        assert_eq!(
            feed(
                &mut bob,
                b"SUBSCRIBE\nid:1\ndestination:/topic/public.#\n\n\0"
            ),
            Flow::Continue
        );
        assert_eq!(
            feed(&mut bob, b"SUBSCRIBE\nid:2\ndestination:/topic/#\n\n\0"),
            Flow::Close
        );
        assert_eq!(error_message(&bob.take_output()), Some("Access refused"));
    }

    #[test]
    fn unknown_destinations_follow_the_policy() {
        let bus = Bus::new(BusConfig::default());
        let strict = settings(|_| {});
        let mut s = connected(&bus, &strict, "1.2");
        assert_eq!(
            feed(&mut s, b"SEND\ndestination:/odd/x\n\nm\0"),
            Flow::Close
        );
        assert_eq!(error_message(&s.take_output()), Some("Unknown destination"));

        let lenient = settings(|s| s.unknown_destination = UnknownDestination::Topic);
        let mut s = connected(&bus, &lenient, "1.2");
        feed(&mut s, b"SUBSCRIBE\nid:1\ndestination:/odd/x\n\n\0");
        feed(&mut s, b"SEND\ndestination:/odd/x\n\nm\0");
        let out = pump(&mut s);
        assert_eq!(value(&out[0], "destination"), Some("/odd/x"));
    }

    #[test]
    fn frames_after_disconnect_are_ignored_and_shutdown_says_so() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut s = connected(&bus, &settings, "1.2");
        let flow = feed(
            &mut s,
            b"DISCONNECT\nreceipt:bye\n\n\0SEND\ndestination:/topic/t\n\nx\0",
        );
        assert_eq!(flow, Flow::Close);
        assert_eq!(
            s.take_output(),
            vec![Frame::receipt(Bytes::from_static(b"bye"))]
        );
        assert!(!s.is_connected());

        let mut live = connected(&bus, &settings, "1.2");
        assert_eq!(live.shutdown(), Flow::Close);
        assert_eq!(
            error_message(&live.take_output()),
            Some("server shutting down")
        );
    }

    #[test]
    fn sending_into_a_full_blocking_group_pauses_decoding() {
        let mut config = BusConfig::default();
        config.groups.push(core_bus::config::GroupRule {
            topics: Pattern::parse("slow").unwrap(),
            policy: GroupPolicy {
                overflow: core_bus::config::GroupOverflow::Block,
                max_messages: 1,
                ..GroupPolicy::QUEUE
            },
        });
        let bus = Bus::new(config);
        let settings = settings(|_| {});
        let mut s = connected(&bus, &settings, "1.2");
        let mut buf = BytesMut::from(
            &b"SEND\ndestination:/queue/slow\n\n1\0SEND\ndestination:/queue/slow\n\n2\0\
               SEND\ndestination:/queue/slow\n\n3\0"[..],
        );
        assert_eq!(s.receive(&mut buf), Flow::Continue);
        assert!(s.take_backpressure().is_some());
        assert!(!buf.is_empty(), "frames after the blocked SEND wait");
    }

    #[test]
    fn messages_from_other_protocols_get_stomp_headers() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut s = connected(&bus, &settings, "1.1");
        feed(
            &mut s,
            b"SUBSCRIBE\nid:1\ndestination:/topic/metrics.#\n\n\0",
        );
        let origin = Origin {
            protocol: Protocol::Loom,
            connection: ConnectionId::next(),
        };
        let mut envelope =
            core_bus::Envelope::new(Topic::from_dotted(b"metrics.cpu"), &b"42"[..], origin);
        envelope.content_type = Some("text/plain".into());
        envelope.key = Some(Bytes::from_static(b"host-1"));
        envelope.reply_to = Some(Topic::from_dotted(b"answers"));
        bus.publish(envelope);
        let message = pump(&mut s).remove(0);
        assert_eq!(value(&message, "destination"), Some("/topic/metrics.cpu"));
        assert_eq!(value(&message, "content-type"), Some("text/plain"));
        assert_eq!(value(&message, "JMSXGroupID"), Some("host-1"));
        assert_eq!(value(&message, "reply-to"), Some("/topic/answers"));
        assert_eq!(value(&message, "ack"), None);
    }

    /// Pumps until `want` frames came out (the durable forwarder is a task).
    async fn pump_until(session: &mut Session, want: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        for _ in 0..400 {
            out.extend(pump(session));
            if out.len() >= want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        out
    }

    #[tokio::test]
    async fn rabbitmq_durable_subscription_keeps_messages_while_away() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let subscribe =
            b"SUBSCRIBE\nid:d1\ndestination:/topic/news.*\ndurable:true\nauto-delete:false\n\n\0";
        let mut away = connected(&bus, &settings, "1.2");
        feed(&mut away, subscribe);
        drop(away);
        assert_eq!(settings.durables.len(), 1);
        let mut producer = connected(&bus, &settings, "1.2");
        feed(
            &mut producer,
            b"SEND\ndestination:/topic/news.a\nx-k:v\n\nkept\0",
        );
        let mut back = connected(&bus, &settings, "1.2");
        feed(&mut back, subscribe);
        let got = pump_until(&mut back, 1).await;
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0].body[..], b"kept");
        assert_eq!(value(&got[0], "destination"), Some("/topic/news.a"));
        assert_eq!(value(&got[0], "subscription"), Some("d1"));
        assert_eq!(value(&got[0], "x-k"), Some("v"));
        assert_eq!(value(&got[0], SOURCE_TOPIC), None);

        feed(&mut back, b"UNSUBSCRIBE\nid:d1\n\n\0");
        assert_eq!(
            settings.durables.len(),
            1,
            "a plain UNSUBSCRIBE keeps the queue"
        );
        feed(
            &mut back,
            b"UNSUBSCRIBE\nid:d1\ndestination:/topic/news.*\ndurable:true\n\n\0",
        );
        assert!(settings.durables.is_empty());
    }

    #[tokio::test]
    async fn activemq_durable_subscription_needs_client_id() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|_| {});
        let mut anonymous = connected(&bus, &settings, "1.1");
        let flow = feed(
            &mut anonymous,
            b"SUBSCRIBE\nid:1\ndestination:/topic/t\nactivemq.subscriptionName:s\n\n\0",
        );
        assert_eq!(flow, Flow::Close);
        assert_eq!(
            error_message(&anonymous.take_output()),
            Some("Invalid header")
        );

        let mut s = session(&bus, &settings);
        feed(&mut s, b"CONNECT\naccept-version:1.1\nclient-id:app\n\n\0");
        s.take_output();
        feed(
            &mut s,
            b"SUBSCRIBE\nid:1\ndestination:/topic/t\nactivemq.subscriptionName:s\n\n\0",
        );
        feed(&mut s, b"SEND\ndestination:/topic/t\n\nm\0");
        let got = pump_until(&mut s, 1).await;
        assert_eq!(value(&got[0], "destination"), Some("/topic/t"));
        let queue = durable::queue("app", "s");
        assert!(bus.topics().iter().any(|t| t.topic == queue.as_str()));
        feed(
            &mut s,
            b"UNSUBSCRIBE\nid:1\ndurable-subscription-name:s\n\n\0",
        );
        assert!(settings.durables.is_empty());
    }

    #[tokio::test]
    async fn durable_subscriptions_are_capped_over_all_connections() {
        let bus = Bus::new(BusConfig::default());
        let settings = settings(|s| s.max_durable_subscriptions = 1);
        let mut a = connected(&bus, &settings, "1.2");
        let flow = feed(
            &mut a,
            b"SUBSCRIBE\nid:d\ndestination:/topic/a\npersistent:true\n\n\0",
        );
        assert_eq!(flow, Flow::Continue);
        let mut b = connected(&bus, &settings, "1.2");
        let flow = feed(
            &mut b,
            b"SUBSCRIBE\nid:d\ndestination:/topic/b\ndurable:true\n\n\0",
        );
        assert_eq!(flow, Flow::Close);
        assert_eq!(
            error_message(&b.take_output()),
            Some("Too many durable subscriptions")
        );
        let mut again = connected(&bus, &settings, "1.2");
        let flow = feed(
            &mut again,
            b"SUBSCRIBE\nid:d\ndestination:/topic/a\npersistent:true\n\n\0",
        );
        assert_eq!(
            flow,
            Flow::Continue,
            "the existing queue can still be joined"
        );
    }

    fn arbitrary_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let command = prop::sample::select(vec![
            "CONNECT",
            "STOMP",
            "SEND",
            "SUBSCRIBE",
            "UNSUBSCRIBE",
            "ACK",
            "NACK",
            "BEGIN",
            "COMMIT",
            "ABORT",
            "DISCONNECT",
            "MESSAGE",
        ]);
        let name = prop::sample::select(vec![
            "destination",
            "id",
            "ack",
            "transaction",
            "receipt",
            "reply-to",
            "message-id",
            "prefetch-count",
            "selector",
            "accept-version",
            "heart-beat",
            "JMSXGroupID",
        ]);
        let value = prop::sample::select(vec![
            "/topic/a",
            "/topic/a.#",
            "/queue/q",
            "/temp-queue/t",
            "/reply-queue/1.x",
            "/reply-queue/%",
            "/bogus",
            "client",
            "client-individual",
            "auto",
            "1",
            "2",
            "1-0",
            "1-1",
            "tx",
            "-1",
            "1.0,1.2",
            "10,10",
            "",
            "$inbox.1.x",
        ]);
        let headers = prop::collection::vec((name, value), 0..5);
        let body = prop::collection::vec(any::<u8>(), 0..8);
        (command, headers, body).prop_map(|(command, headers, body)| {
            let mut out = format!("{command}\n").into_bytes();
            for (n, v) in headers {
                out.extend_from_slice(format!("{n}:{v}\n").as_bytes());
            }
            out.extend_from_slice(format!("content-length:{}\n\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
            out.push(0);
            out
        })
    }

    proptest::proptest! {
        /// Any sequence of frames, valid or not, from two connections sharing a bus never panics
        /// the sessions, and a closed session stays closed.
        #[test]
        fn random_frame_sequences_never_panic(
            frames in proptest::collection::vec((proptest::bool::ANY, arbitrary_frame()), 1..24),
        ) {
            let bus = Bus::new(BusConfig::default());
            let settings = settings(|s| s.max_subscriptions = 3);
            let mut sessions = [connected(&bus, &settings, "1.2"), connected(&bus, &settings, "1.0")];
            let mut closed = [false, false];
            for (which, frame) in frames {
                let i = usize::from(which);
                let flow = feed(&mut sessions[i], &frame);
                if closed[i] {
                    proptest::prop_assert_eq!(flow, Flow::Close);
                }
                closed[i] |= flow == Flow::Close;
                for session in &mut sessions {
                    pump(session);
                }
            }
        }
    }
}
