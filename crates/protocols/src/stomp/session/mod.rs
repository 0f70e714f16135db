//! One STOMP connection's state machine over the bus, without sockets or clocks: bytes go in
//! through [`Session::handle_input`], bus deliveries through [`Session::handle_deliveries`], and
//! frames to write are encoded into the [`Outbox`] that [`Session::poll_transmit`] hands out. A
//! [`Flow::Close`] answer means "write what is queued, then close". Timers (heart-beats, login
//! timeout) belong to the driver, which reads the negotiated [`HeartBeatPlan`] from
//! [`Session::heart_beat`].
//!
//! Every failure is answered with ERROR and a close (docs/protocols/stomp.md, "Errors"); the receipt of the
//! culprit frame goes on the ERROR. Frames that follow DISCONNECT or an error are ignored.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::names::{self, pattern_from_name, WildcardSyntax};
use bytes::{Bytes, BytesMut};
use core_bus::config::GroupPolicy;
use core_bus::{
    AckHandle, Backpressure, Bus, Closed, Credit, Delivery, DurableError, DurableOwner, Envelope,
    Mailbox, Origin, Pattern, Protocol, SubscribeError, SubscriptionId, Topic, SOURCE_TOPIC_HEADER,
};

use super::ack::{ack_id, AckMode, AckTable};
use super::bridge;
use super::bridge::message::{self, Delivered};
use super::codec::frame::{header, Command, Frame, Version};
use super::codec::parser::{Decoded, Decoder};
use super::config::UnknownDestination;
use super::destination::Destination;
use super::durable::{self, Request};
use super::error::StompError;
use super::limits::Limits;
use super::negotiate::{connected_frame, negotiate, HeartBeatPlan, HeartBeatPolicy};
use super::outbox::Outbox;
use super::transaction::{Transactions, TxLimits};
use crate::auth::{Authenticator, Credentials, Identity};

mod deliver;
mod frames;
mod send;
mod subscribe;
#[cfg(test)]
mod tests;

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
    /// Durable queues gatewayd keeps at most (all listeners together; the bus keeps them).
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
    /// The start of its MESSAGE frames ([`message::head`]).
    head: Bytes,
    /// The topic of the last delivery and the `destination` it was given.
    last: Option<(Topic, Bytes)>,
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
    /// B-trees: 24 bytes each where a hash map is 48, in a box every connected client keeps; a client has few.
    subscriptions: BTreeMap<String, Subscription>,
    by_bus: BTreeMap<SubscriptionId, String>,
    /// `/temp-queue/` names and the inboxes they stand for.
    temp_queues: BTreeMap<String, Topic>,
    acks: AckTable<AckHandle>,
    transactions: Transactions,
    /// The `destination` of the last SEND to a `/topic/` and its topic. Boxed: a connection that never sends keeps
    /// one word for it.
    last_topic: Option<Box<(Bytes, Topic)>>,
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
    /// The version frames are written in: 1.0 until CONNECTED, then the negotiated one, kept
    /// after the session closes.
    wire: Version,
    outbox: Outbox,
    backpressure: Option<Backpressure>,
    /// The session closed after an error it answered (an ERROR frame), not a DISCONNECT.
    failed: bool,
    /// The names of the client certificate the TLS handshake verified (listeners with `tls.client_ca_file`).
    certificate: Option<Vec<String>>,
}

impl Session {
    pub fn new(settings: Arc<Settings>, bus: Bus, origin: Origin) -> Session {
        Session {
            decoder: Decoder::new(settings.limits),
            settings,
            bus,
            origin,
            phase: Phase::AwaitingConnect,
            wire: Version::V1_0,
            outbox: Outbox::default(),
            backpressure: None,
            failed: false,
            certificate: None,
        }
    }

    /// Decodes and processes every complete frame at the front of `buf`. Stops early, leaving
    /// the rest in `buf`, when a publish asks for backpressure: wait on
    /// [`Session::take_backpressure`], then call again before reading more.
    pub fn handle_input(&mut self, buf: &mut BytesMut, now_ms: u64) -> Flow {
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
                    if self.frame(frame, now_ms) == Flow::Close {
                        return Flow::Close;
                    }
                }
                Err(error) => return self.fail(error.into(), None),
            }
        }
    }

    /// Processes one decoded frame; a message it publishes is stamped `now_ms` (Unix milliseconds).
    pub fn frame(&mut self, frame: Frame, now_ms: u64) -> Flow {
        let receipt = match frame.command {
            Command::Connect | Command::Stomp => None,
            _ => frame.receipt_request(),
        };
        let result = match &mut self.phase {
            Phase::Closed => return Flow::Close,
            Phase::AwaitingConnect => self.connect(&frame).map(|()| Step::Continue),
            Phase::Connected(connected) => connected.command(frame, &mut self.backpressure, now_ms),
        };
        match result {
            Ok(step) => {
                if let Some(id) = receipt {
                    self.outbox.push(&Frame::receipt(id), self.wire);
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
        let identity = if let Some(names) = &self.certificate {
            auth.authenticate_certificate(names)
                .map_err(|_| StompError::AccessRefused {
                    login: connect.login.clone().unwrap_or_default(),
                })?
        } else if self.settings.ignore_credentials {
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
        self.wire = connect.version;
        let session_id = format!("gatewayd-{}", self.origin.connection);
        let connected = connected_frame(
            connect.version,
            &session_id,
            &self.settings.server,
            connect.heart_beat.server,
        );
        self.outbox.push(&connected, self.wire);
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
            subscriptions: BTreeMap::new(),
            by_bus: BTreeMap::new(),
            temp_queues: BTreeMap::new(),
            acks: AckTable::new(format!("{}-", self.origin.connection)),
            transactions: Transactions::new(self.settings.transactions),
            last_topic: None,
        }));
        Ok(())
    }

    fn fail(&mut self, error: StompError, receipt: Option<Bytes>) -> Flow {
        tracing::debug!(connection = %self.origin.connection, %error, "stomp: closing after error");
        if let Some(frame) = error.to_frame(receipt) {
            self.outbox.push(&frame, self.wire);
        }
        self.phase = Phase::Closed;
        self.failed = true;
        Flow::Close
    }

    /// Sets the names of the client's verified TLS certificate: CONNECT then acts as the identity a
    /// `[[stomp.auth.certificates]]` entry gives them (whatever login and passcode say), or is refused.
    pub fn set_certificate(&mut self, names: Vec<String>) {
        self.certificate = Some(names);
    }

    /// Whether the session closed after answering an error, rather than on a DISCONNECT.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Turns each bus delivery, in order, into a MESSAGE frame.
    pub fn handle_deliveries(&mut self, deliveries: impl IntoIterator<Item = Delivery>) {
        for delivery in deliveries {
            match &mut self.phase {
                Phase::Connected(connected) => connected.message(delivery, &mut self.outbox),
                // The mailbox is gone with the phase; a stray group delivery goes back to its group.
                Phase::AwaitingConnect | Phase::Closed => {
                    if let Some(ack) = delivery.ack {
                        ack.nack(true);
                    }
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

    /// The frames to write now, in order, or `None` when nothing is queued; clear the outbox once
    /// they are written.
    pub fn poll_transmit(&mut self) -> Option<&mut Outbox> {
        if self.outbox.is_empty() {
            None
        } else {
            Some(&mut self.outbox)
        }
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

/// Why a `$durable.…` destination is refused when named directly.
const DURABLE_ONLY: &str = "durable queues are only reached through durable subscriptions";

/// A durable SUBSCRIBE the bus refused; another login's durable subscription is `Access refused`.
fn durable_refused(destination: &str, error: DurableError) -> StompError {
    match error {
        DurableError::Subscribe(e) => refused(destination, e),
        DurableError::Full { max } => StompError::TooManyDurableSubscriptions { max },
        DurableError::NotOwner(_) => forbidden("SUBSCRIBE", destination),
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
