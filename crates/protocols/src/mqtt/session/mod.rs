//! One MQTT connection's state machine over the bus, sans-IO: bytes in ([`Session::handle_input`]), bus deliveries in
//! ([`Session::handle_deliveries`]), bytes out ([`Session::poll_transmit`]). Before CONNECT only CONNECT is accepted; CONNECT
//! authenticates and answers CONNACK ([`connect`]); then PUBLISH and its acknowledgements in both directions
//! ([`publish`], [`outgoing`]), SUBSCRIBE/UNSUBSCRIBE ([`subscribe`]), PINGREQ and DISCONNECT. A protocol
//! violation earns a 5.0 DISCONNECT with its reason code (a plain close for 3.1.1) and [`Flow::Close`].

mod aliases_out;
mod connect;
pub(crate) mod outgoing;
mod publish;
pub(crate) mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{
    Backpressure, Bus, Closed, ConnectionId, Delivery, Mailbox, Origin, Protocol, Topic,
};
use mqttbytes::QoS;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Ack, DecodeError, Inbound, Outbound, Version};
use super::reason::{self, ReasonString};
use super::retained::Retained;
use super::store::{SavedSession, SessionStore};
use crate::auth::{Authenticator, Identity};

use aliases_out::OutboundAliases;
use connect::Accepted;
pub use connect::Will;
use outgoing::Outgoing;
use subscribe::Subscriptions;

/// What a connection runs with, from its listener's current config.
#[derive(Clone)]
pub struct Settings {
    pub auth: Arc<Authenticator>,
    pub max_packet_size: usize,
    pub receive_maximum: u16,
    pub topic_alias_maximum: u16,
    pub max_keep_alive_secs: u16,
    pub max_session_expiry_secs: u32,
    pub max_subscriptions: usize,
}

/// What the connection loop does after handing the session some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write what is queued, then close the connection.
    Close,
}

/// What every session of the process shares.
#[derive(Clone)]
pub struct Shared {
    pub bus: Bus,
    pub retained: Retained,
    pub sessions: SessionStore,
}

/// The state of a connection once CONNECT was accepted.
pub(crate) struct Connected {
    pub(crate) identity: Identity,
    pub(crate) client_id: String,
    pub(crate) mailbox: Mailbox,
    pub(crate) keep_alive: Option<Duration>,
    /// Boxed: most connections have none, and an envelope is large.
    pub(crate) will: Option<Box<Will>>,
    pub(crate) subscriptions: Subscriptions,
    /// Inbound topic aliases (5.0). B-trees, as `awaiting_release`: empty on most connections, and smaller than an
    /// empty hash map with its hasher's keys.
    pub(crate) aliases: BTreeMap<u16, Topic>,
    /// Topic aliases gatewayd sends (5.0).
    pub(crate) outbound_aliases: OutboundAliases,
    /// QoS 2 packet ids received and answered with PUBREC, waiting for PUBREL.
    pub(crate) awaiting_release: BTreeSet<u16>,
    pub(crate) outgoing: Outgoing,
    /// 5.0 Request Problem Information (1 unless the client's CONNECT says 0): when false, reason strings go only
    /// on CONNACK, PUBLISH and DISCONNECT (§3.1.2.11.7).
    pub(crate) request_problem_information: bool,
    /// Seconds the session outlives the connection (0: it ends with it).
    pub(crate) session_expiry: u32,
    /// The connections that held this session before, whose messages may still be queued for it.
    pub(crate) earlier_connections: EarlierConnections,
}

/// The connections that held a session before the current one (the latest [`EarlierConnections::MAX`]), so that
/// 5.0 No Local also recognises messages they published that were still queued when the session resumed.
#[derive(Debug, Default)]
pub(crate) struct EarlierConnections(VecDeque<ConnectionId>);

impl EarlierConnections {
    const MAX: usize = 64;

    /// `connection` held the session and has ended.
    pub(crate) fn push(&mut self, connection: ConnectionId) {
        if self.0.len() >= Self::MAX {
            self.0.pop_front();
        }
        self.0.push_back(connection);
    }

    pub(crate) fn contains(&self, connection: ConnectionId) -> bool {
        self.0.contains(&connection)
    }
}

/// One connection's MQTT session.
pub struct Session {
    settings: Arc<Settings>,
    shared: Shared,
    origin: Origin,
    version: Option<Version>,
    /// Boxed, as is `handover`: the connection's futures hold the session by value and stay small when its large
    /// parts are on the heap (a connected session pays for `Connected` once, a connecting one not at all).
    connected: Option<Box<Connected>>,
    out: BytesMut,
    backpressure: Option<Backpressure>,
    closed: bool,
    /// Cancelled when another connection takes this client id over.
    kick: CancellationToken,
    /// Cancelled when this session has ended (see [`SessionStore::claim`]).
    released: CancellationToken,
    /// A CONNECT waiting for the previous holder of its client id to end, and the token that says it has.
    handover: Option<Box<(Accepted, CancellationToken)>>,
    /// The names of the client certificate the TLS handshake verified (listeners with `tls.client_ca_file`).
    certificate: Option<Vec<String>>,
    /// The client's 5.0 Maximum Packet Size, from its CONNECT on: no packet gatewayd sends may be larger.
    client_max_packet: Option<usize>,
}

impl Session {
    /// `kick` is cancelled when a later connection claims this session's client id.
    pub fn new(
        settings: Arc<Settings>,
        shared: Shared,
        origin: Origin,
        kick: CancellationToken,
    ) -> Session {
        Session {
            kick,
            released: CancellationToken::new(),
            handover: None,
            settings,
            shared,
            origin,
            version: None,
            connected: None,
            out: BytesMut::new(),
            backpressure: None,
            closed: false,
            certificate: None,
            client_max_packet: None,
        }
    }

    /// Sets the names of the client's verified TLS certificate: CONNECT then acts as the identity a
    /// `[[mqtt.auth.certificates]]` entry gives them (user name and password are not checked), or is refused
    /// with Not authorized.
    pub fn set_certificate(&mut self, names: Vec<String>) {
        self.certificate = Some(names);
    }

    /// Decodes and handles every whole packet in `buf`, leaving a partial one there. Stops early when a
    /// publish asks for back-pressure (wait on [`Session::take_backpressure`], then call again) or the
    /// connection must close.
    pub fn handle_input(&mut self, buf: &mut BytesMut) -> Flow {
        while !self.closed && self.backpressure.is_none() && self.handover.is_none() {
            match codec::decode(buf, self.version, self.settings.max_packet_size) {
                Ok(Some(packet)) => {
                    if self.handle(packet) == Flow::Close {
                        self.closed = true;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "mqtt: bad input");
                    record_drop(DropReason::Malformed, Protocol::Mqtt);
                    self.refuse(&error);
                    self.closed = true;
                }
            }
        }
        if self.closed {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn handle(&mut self, packet: Inbound) -> Flow {
        let Some(connected) = self.connected.as_mut() else {
            return match packet {
                Inbound::Connect(connect) => self.connect(*connect),
                // `decode` only hands out CONNECT before the session has a version.
                _ => Flow::Close,
            };
        };
        match packet {
            Inbound::Publish(publish) => self.publish(publish),
            Inbound::PubAck(pkid) => self.acknowledged(pkid, QoS::AtLeastOnce),
            Inbound::PubRec(pkid) => self.received(pkid),
            Inbound::PubRel(pkid) => {
                let ack = if connected.awaiting_release.remove(&pkid) {
                    Ack::success(pkid)
                } else {
                    Ack::failure(
                        pkid,
                        reason::PACKET_IDENTIFIER_NOT_FOUND,
                        format!("no QoS 2 publish with packet identifier {pkid} awaits release"),
                    )
                };
                self.send(Outbound::PubComp(ack));
                Flow::Continue
            }
            Inbound::PubComp(pkid) => self.acknowledged(pkid, QoS::ExactlyOnce),
            Inbound::Subscribe(subscribe) => self.subscribe(subscribe),
            Inbound::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe),
            Inbound::PingReq => {
                self.send(Outbound::PingResp);
                Flow::Continue
            }
            Inbound::Disconnect {
                reason,
                session_expiry,
            } => {
                // 0x04: disconnect with will message.
                if reason != 0x04 {
                    connected.will = None;
                }
                if let Some(expiry) = session_expiry {
                    // §3.14.2.2.2: a session that was to end with the connection cannot be extended.
                    if connected.session_expiry == 0 && expiry > 0 {
                        return self.disconnect(reason::PROTOCOL_ERROR, "session expiry was 0");
                    }
                    connected.session_expiry = expiry.min(self.settings.max_session_expiry_secs);
                }
                Flow::Close
            }
            Inbound::Connect(_) => self.disconnect(reason::PROTOCOL_ERROR, "second CONNECT"),
            Inbound::Auth => self.disconnect(
                reason::PROTOCOL_ERROR,
                "AUTH without an authentication method",
            ),
            Inbound::ServerOnly => {
                self.disconnect(reason::PROTOCOL_ERROR, "a packet only a server sends")
            }
        }
    }

    /// Answers a decode error: CONNACK before CONNECT was accepted (when the client said enough to be
    /// answered in its level), DISCONNECT after it (5.0).
    fn refuse(&mut self, error: &DecodeError) {
        match (self.version, error) {
            (None, DecodeError::ProtocolLevel(_)) => {
                // Answered in 3.1.1 form: return code 1, unacceptable protocol level.
                self.version = Some(Version::V311);
                self.connack_refusal(
                    mqttbytes::v5::ConnectReturnCode::UnsupportedProtocolVersion,
                    &error.to_string(),
                );
            }
            (Some(_), _) if self.connected.is_some() => {
                self.disconnect(error.reason(), &error.to_string());
            }
            _ => {}
        }
    }

    /// Queues a DISCONNECT with `reason` (5.0 only) and closes.
    pub(crate) fn disconnect(&mut self, reason: u8, why: &str) -> Flow {
        tracing::debug!(reason, why, "mqtt: disconnecting the client");
        self.send(Outbound::Disconnect {
            reason,
            reason_string: ReasonString::new(why),
        });
        Flow::Close
    }

    /// Encodes `packet` into the output, with its reason string only where the client allows one: not on
    /// acknowledgements after Request Problem Information 0, and on nothing it would make larger than the client's
    /// Maximum Packet Size.
    pub(crate) fn send(&mut self, mut packet: Outbound) {
        let version = self.version.unwrap_or(Version::V311);
        let problems_refused = self
            .connected
            .as_ref()
            .is_some_and(|c| !c.request_problem_information);
        if problems_refused && !packet.problem_information_always_allowed() {
            packet.strip_reason_string();
        }
        let limit = self.client_max_packet.unwrap_or(usize::MAX);
        if let Err(error) = codec::encode_within(packet, version, limit, &mut self.out) {
            tracing::warn!(?error, "mqtt: packet not encodable");
        }
    }

    /// Writes deliveries from the bus (or queues them while the client's in-flight window is full). Consecutive
    /// deliveries of one message to several of this client's subscriptions (overlapping filters) become one
    /// PUBLISH (§3.3.4): at the highest QoS they grant, with every matching Subscription Identifier.
    pub fn handle_deliveries(&mut self, deliveries: impl IntoIterator<Item = Delivery>) {
        let mut deliveries = deliveries.into_iter().peekable();
        while let Some(first) = deliveries.next() {
            let mut overlapping = Vec::new();
            if first.ack.is_none() {
                while let Some(next) = deliveries.next_if(|next| {
                    next.ack.is_none() && Arc::ptr_eq(&next.envelope, &first.envelope)
                }) {
                    overlapping.push(next.subscription);
                }
            }
            self.outgoing_delivery(first, &overlapping);
        }
    }

    /// Whether the connection should take more deliveries from its mailbox now: not while the client's
    /// in-flight window is full.
    pub fn wants_deliveries(&self) -> bool {
        self.connected
            .as_ref()
            .is_some_and(|c| c.outgoing.has_room())
    }

    /// The mailbox closed (slow consumer): DISCONNECT 0x97 and close. The session is not kept: its queue lost
    /// messages, and a closed mailbox would close the client's next connection too.
    pub fn mailbox_closed(&mut self, closed: Closed) -> Flow {
        if let Some(connected) = self.connected.as_mut() {
            connected.session_expiry = 0;
        }
        self.disconnect(reason::QUOTA_EXCEEDED, &closed.to_string())
    }

    /// The daemon shuts down: DISCONNECT 0x8B.
    pub fn shutdown(&mut self) -> Flow {
        if self.connected.is_some() {
            self.disconnect(reason::SERVER_SHUTTING_DOWN, "server shutting down")
        } else {
            Flow::Close
        }
    }

    /// Another connection took this client id over: DISCONNECT 0x8E.
    pub fn taken_over(&mut self) -> Flow {
        self.disconnect(reason::SESSION_TAKEN_OVER, "session taken over")
    }

    /// The keep-alive's grace: 1.5 times the negotiated keep-alive, `None` when there is none.
    pub fn keep_alive(&self) -> Option<Duration> {
        self.connected
            .as_ref()
            .and_then(|c| c.keep_alive)
            .map(|k| k * 3 / 2)
    }

    /// The client fell silent past its keep-alive: DISCONNECT 0x8D.
    pub fn handle_timeout(&mut self) -> Flow {
        self.disconnect(reason::KEEP_ALIVE_TIMEOUT, "keep alive timeout")
    }

    /// Bytes to write; the connection loop clears them once written.
    pub fn poll_transmit(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take()
    }

    /// While a CONNECT waits for the previous connection of its client id to end: the token cancelled when it
    /// has. Then call [`Session::handed_over`] (also after a deadline: the session left behind is then not
    /// resumed), and [`Session::handle_input`] again.
    pub fn handover(&self) -> Option<CancellationToken> {
        self.handover.as_ref().map(|handover| handover.1.clone())
    }

    /// Answers the CONNECT that waited for [`Session::handover`].
    pub fn handed_over(&mut self) -> Flow {
        match self.handover.take() {
            Some(handover) => self.establish(handover.0),
            None => Flow::Continue,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.is_some()
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.connected.as_ref().map(|c| &c.identity)
    }

    pub fn subscription_count(&self) -> usize {
        self.connected.as_ref().map_or(0, |c| c.subscriptions.len())
    }

    pub fn mailbox_mut(&mut self) -> Option<&mut Mailbox> {
        self.connected.as_mut().map(|c| &mut c.mailbox)
    }

    /// The connection is over: keeps the session for the client's return when it has an expiry, and returns the
    /// will to publish (after its delay) unless the client disconnected normally.
    pub fn finish(mut self) -> Option<Will> {
        // Whatever happens below, a connection waiting to take this client id over may go on afterwards.
        let _released = self.released.clone().drop_guard();
        let mut connected = self.connected.take()?;
        connected.earlier_connections.push(self.origin.connection);
        self.shared
            .sessions
            .release(&connected.client_id, self.origin.connection);
        // A normal DISCONNECT cleared the will already. The will goes when its delay has passed or the session
        // ends, whichever is first (5.0 §3.1.3.2.2).
        let mut expiry = Duration::from_secs(u64::from(connected.session_expiry));
        let mut will = connected.will.as_deref().cloned();
        if !expiry.is_zero() {
            let kept = self.shared.sessions.save(
                connected.client_id.clone(),
                SavedSession::from_connected(*connected),
                expiry,
            );
            if !kept {
                expiry = Duration::ZERO;
            }
        }
        if let Some(will) = will.as_mut() {
            will.delay = will.delay.min(expiry);
        }
        will
    }
}
