//! The generation-neutral MessageLoop session (docs/protocols/messageloop.md, "Session behaviour"): Connect first,
//! authentication, subscriptions on the bus, publish and delivery, history recovery, presence, RPC over a backend
//! proxy or the bus, heartbeat and idle disconnect. The driver feeds it decoded [`Inbound`] messages
//! ([`Session::handle_input`]), bus [`Delivery`]s ([`Session::handle_deliveries`]), backend [`ProxyAnswer`]s and
//! its timeouts ([`Session::handle_timeout`], due at [`Session::poll_timeout`]), each stamped with a [`Now`]; it
//! reads no clock and does no IO. Backend calls it wants made are queued for the driver
//! ([`Session::take_proxy_calls`]); hooks go to the context's [`Hooks`], which never answers. What it wants written
//! is collected in an outbox the driver drains ([`Session::poll_transmit`]); a set [`Session::disconnect`] code
//! ends the connection after that.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_bus::history::Since;
use core_bus::{
    names, Backpressure, Bus, ConnectionId, Delivery, Envelope, Mailbox, MessageId, Origin,
    Pattern, Protocol, SubscriptionId, Topic,
};

use super::bridge::deliveries::Deliveries;
use super::bridge::{self, payload_from};
use super::channel;
use super::codes::{DisconnectCode, ErrorCode};
use super::generation::{check_g2_version, Generation};
use super::message::{
    Connect, Connected, Error, GapReason, Inbound, InboundBody, Outbound, OutboundBody, Position,
    PresenceAction, PresenceInfo, PresenceSnapshot, Publish, RecoverComplete, RecoverState,
    RpcReply, RpcRequest, SubscribeAck, Subscription,
};
use super::presence::{self, PresenceTable};
use super::proxy::{Hooks, ProxyAnswer, ProxyCall, Router, RpcFallback};
use crate::auth::{AuthError, Authenticator, Credentials, Identity};

mod acl;
mod connect;
mod hooks;
mod presence_ops;
mod proxy;
mod publish;
mod rpc;
mod subscribe;

/// The protocol name in RPC topics: `$rpc.messageloop.<channel>.<method>`.
pub const RPC_PROTOCOL: &str = "messageloop";
/// Most messages replayed for one recovering subscription (upstream cap).
pub const MAX_RECOVER: usize = 1000;
/// Most RPCs of one connection waiting for their reply; more get RATE_LIMITED.
pub const MAX_PENDING_RPCS: usize = 1000;

/// The time of one event, read by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    /// Unix milliseconds, for `OutboundMessage.time` and presence `connected_at`.
    pub unix_ms: u64,
}

impl Now {
    /// The current time.
    pub fn current() -> Now {
        Now {
            at: Instant::now(),
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Per-listener session settings.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// More subscriptions than this disconnect with 3505.
    pub max_subscriptions: usize,
    /// No inbound frame for this long disconnects with 3511; `None` = off.
    pub idle_timeout: Option<Duration>,
    /// How long an RPC waits for its first reply.
    pub rpc_timeout: Duration,
    /// What an RPC no proxy route matches does.
    pub rpc_fallback: RpcFallback,
    /// `stream_epoch` for channels without history (one per listener start).
    pub epoch: String,
}

/// What a session shares with the rest of the process.
#[derive(Clone)]
pub struct SessionContext {
    pub bus: Bus,
    pub authenticator: Arc<Authenticator>,
    pub presence: PresenceTable,
    pub settings: Arc<SessionSettings>,
    /// Which backend proxy serves an RPC, checks a Connect token or an ACL, or hears a hook.
    pub router: Arc<Router>,
    /// Where the lifecycle hooks go.
    pub hooks: Arc<Hooks>,
    /// Each message's delivered publication, built once for all subscribers.
    pub deliveries: Deliveries,
}

/// What a bus subscription of this session is for.
#[derive(Debug, Clone)]
enum Route {
    /// A client subscription. `seen_through`: a recovery cursor ahead of this node's history (the client read
    /// further on another node whose copy of the cluster's history was ahead): deliveries of that epoch at or
    /// below it are not sent again.
    Channel {
        seen_through: Option<core_bus::Position>,
    },
    /// Presence events of an exact channel.
    Presence(String),
    /// RPC replies.
    Inbox,
}

#[derive(Debug)]
struct ChannelSubscription {
    id: SubscriptionId,
    /// Presence-tracked (exact, not ephemeral): the id of the presence-event subscription.
    presence: Option<SubscriptionId>,
}

#[derive(Debug)]
struct PendingRpc {
    request_id: String,
    deadline: Instant,
}

enum State {
    /// Waiting for Connect.
    Connecting,
    /// Connect received; its token is with the `$authenticate` backend. Boxed: the session is held by value in
    /// its connection's future, and this state is seldom and short.
    Authenticating(Box<Authenticating>),
    Connected {
        identity: Identity,
        info: PresenceInfo,
    },
}

/// A Connect whose token is with the `$authenticate` backend (call `call`).
struct Authenticating {
    id: String,
    connect: Connect,
    call: String,
    deadline: Instant,
}

/// One MessageLoop connection's state.
pub struct Session {
    context: SessionContext,
    mailbox: Mailbox,
    session_id: String,
    generation: Option<Generation>,
    state: State,
    subscriptions: BTreeMap<String, ChannelSubscription>,
    routes: BTreeMap<SubscriptionId, Route>,
    inbox: Option<Topic>,
    rpcs: BTreeMap<String, PendingRpc>,
    next_rpc: u64,
    proxy_calls: Vec<ProxyCall>,
    /// Boxed: a backend ACL check is seldom out, and the session is held by value in its connection's future.
    pending_acl: Option<Box<acl::PendingAcl>>,
    /// The channel last published to and its topic: a client publishing to one channel has it parsed once.
    /// Boxed: an idle or subscribe-only connection keeps one word for it.
    last_publish: Option<Box<(String, Topic)>>,
    last_activity: Instant,
    last_delivery: Option<MessageId>,
    outbox: Vec<Outbound>,
    disconnect: Option<DisconnectCode>,
    /// Boxed: a stalled publish is seldom, and the session is held by value in its connection's future.
    backpressure: Option<Box<Backpressure>>,
}

/// A fresh random UUIDv4 string, lowercase and hyphenated, from the thread's cryptographic generator: for ids a
/// client must not be able to guess (a session's).
pub fn uuid4() -> String {
    uuid_text(rand::random::<u128>().to_le_bytes())
}

thread_local! {
    /// The ids [`frame_uuid`] hands out on this thread.
    static FRAME_IDS: RefCell<FrameIds> = RefCell::new(FrameIds::fresh());
}

/// A fresh UUIDv4-shaped string for a frame or a message, whose id only has to be unique: every delivery takes
/// one (its envelope id; a message without an offset takes one more, shared by its subscribers), so this is on
/// the fan-out hot path. A random UUID per id (its draw, its 32 digits) was 4 % of gatewayd at MessageLoop JSON
/// 16 B; the ids of one thread are one random UUID counted up in its last eight digits.
pub fn frame_uuid() -> String {
    FRAME_IDS.with(|ids| ids.borrow_mut().take())
}

/// One thread's [`frame_uuid`]s: the text of a random UUIDv4 whose last eight hex digits (random bits of the
/// format, not its version or variant) count up from zero; a new UUID is drawn when the count runs out.
struct FrameIds {
    text: [u8; 36],
    next: u32,
}

impl FrameIds {
    fn fresh() -> FrameIds {
        FrameIds {
            text: uuid_digits(rand::random::<u128>().to_le_bytes()),
            next: 0,
        }
    }

    fn take(&mut self) -> String {
        if self.next == u32::MAX {
            *self = FrameIds::fresh();
        }
        self.text[28..].copy_from_slice(&hex8(self.next));
        self.next += 1;
        uuid_string(&self.text)
    }
}

/// The eight lowercase hex digits of `n`, most significant first, computed in one 64-bit word (one store).
fn hex8(n: u32) -> [u8; 8] {
    // One nibble per byte, the most significant nibble in the most significant byte.
    let x = u64::from(n);
    let x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
    let x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
    let x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
    // A byte above 9 carries into its bit 4 when 6 is added; it is a letter, 39 past where '0' + n would be.
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 39).to_be_bytes()
}

/// `bytes` with the UUIDv4 version and variant bits set, as 36 characters built in one allocation.
fn uuid_text(bytes: [u8; 16]) -> String {
    uuid_string(&uuid_digits(bytes))
}

/// The UUID `digits` ([`uuid_digits`]) as a `String`.
fn uuid_string(digits: &[u8; 36]) -> String {
    // Hex digits and dashes only, so this always holds (and is checked as ASCII, a word at a time).
    core_bus::text::utf8(digits)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The 36 characters of the UUIDv4 made of `bytes` (its version and variant bits set).
fn uuid_digits(mut bytes: [u8; 16]) -> [u8; 36] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    // Where each byte's two digits go, between the dashes at 8, 13, 18 and 23.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut text = [b'-'; 36];
    for (byte, at) in bytes.into_iter().zip(AT) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0x0f)];
    }
    text
}

impl Session {
    /// A session for `connection`, in the state "waiting for Connect"; the idle timer starts at `now`.
    pub fn new(context: SessionContext, connection: ConnectionId, now: Now) -> Session {
        let mailbox = context.bus.mailbox(Origin {
            protocol: Protocol::MessageLoop,
            connection,
        });
        Session {
            context,
            mailbox,
            session_id: uuid4(),
            generation: None,
            state: State::Connecting,
            subscriptions: BTreeMap::new(),
            routes: BTreeMap::new(),
            inbox: None,
            rpcs: BTreeMap::new(),
            next_rpc: 1,
            proxy_calls: Vec::new(),
            pending_acl: None,
            last_publish: None,
            last_activity: now.at,
            last_delivery: None,
            outbox: Vec::new(),
            disconnect: None,
            backpressure: None,
        }
    }

    /// The bus endpoint; the driver waits on it for deliveries.
    pub fn mailbox(&mut self) -> &mut Mailbox {
        &mut self.mailbox
    }

    /// Sets the client's wire generation as far as known (`None`: a JSON client that is G0 or G1). G2 gates
    /// Connect on the version and requires routable wildcards; G0 has no wildcards.
    pub fn set_generation(&mut self, generation: Option<Generation>) {
        self.generation = generation;
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The authenticated identity once connected.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.state {
            State::Connected { identity, .. } => Some(identity),
            State::Connecting | State::Authenticating(_) => None,
        }
    }

    /// Number of client subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// Set once the connection must end: write the outbox, then close with this code.
    pub fn disconnect(&self) -> Option<DisconnectCode> {
        self.disconnect
    }

    /// Takes what should be written, in order. After a turn of several, the outbox starts again with room for as
    /// many (a busy connection's turns are alike), so it is not grown anew, step by step, every turn; after a turn
    /// of one or none it keeps none, so a connection that goes quiet after a reply holds no room for the next.
    pub fn poll_transmit(&mut self) -> Vec<Outbound> {
        let taken = self.outbox.len();
        let room = Vec::with_capacity(if taken > 1 { taken } else { 0 });
        std::mem::replace(&mut self.outbox, room)
    }

    /// Whether a publish stalled: nothing more may be read from this client until its backpressure is waited on.
    pub fn is_stalled(&self) -> bool {
        self.backpressure.is_some()
    }

    /// Backpressure from the last publish: wait on it before reading more from this client.
    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take().map(|backpressure| *backpressure)
    }

    /// When [`Session::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self
            .context
            .settings
            .idle_timeout
            .map(|timeout| self.last_activity + timeout);
        let auth = match &self.state {
            State::Authenticating(authenticating) => Some(authenticating.deadline),
            _ => None,
        };
        [idle, auth, self.acl_deadline()]
            .into_iter()
            .flatten()
            .chain(self.rpcs.values().map(|rpc| rpc.deadline))
            .min()
    }

    /// Fires due timers: idle disconnect (3511), the authentication and ACL deadlines and RPC timeouts.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.disconnect.is_some() {
            return;
        }
        if let Some(timeout) = self.context.settings.idle_timeout {
            if now.at >= self.last_activity + timeout {
                self.close(DisconnectCode::IdleTimeout);
                return;
            }
        }
        if matches!(&self.state, State::Authenticating(authenticating) if authenticating.deadline <= now.at)
        {
            return self.authentication_timed_out(now);
        }
        if self
            .acl_deadline()
            .is_some_and(|deadline| deadline <= now.at)
        {
            self.acl_timed_out(now);
        }
        let expired: Vec<String> = self
            .rpcs
            .iter()
            .filter(|(_, rpc)| rpc.deadline <= now.at)
            .map(|(correlation, _)| correlation.clone())
            .collect();
        for correlation in expired {
            if let Some(rpc) = self.rpcs.remove(&correlation) {
                let error = Error::new(ErrorCode::RpcTimeout, "rpc timeout");
                self.reply(rpc.request_id, now, OutboundBody::Error(Box::new(error)));
            }
        }
    }

    /// A frame that could not be decoded: BAD_REQUEST under a fresh id; the connection stays. It still
    /// counts as activity.
    pub fn on_undecodable(&mut self, now: Now) {
        self.last_activity = now.at;
        if self.disconnect.is_none() {
            self.reply(
                uuid4(),
                now,
                OutboundBody::Error(Box::new(Error::undecodable())),
            );
        }
    }

    /// A well-formed envelope with no known message in it: 3500 before Connect, 3501 after.
    pub fn on_empty(&mut self, now: Now) {
        self.last_activity = now.at;
        match self.state {
            State::Connecting => self.close(DisconnectCode::InvalidToken),
            State::Authenticating(_) | State::Connected { .. } => {
                self.close(DisconnectCode::BadRequest)
            }
        }
    }

    /// Handles one decoded client message.
    pub fn handle_input(&mut self, inbound: Inbound, now: Now) {
        if self.disconnect.is_some() {
            return;
        }
        self.last_activity = now.at;
        let Inbound { id, body } = inbound;
        if matches!(self.state, State::Connecting) {
            match body {
                InboundBody::Connect(connect) => self.connect(id, connect, now),
                _ => self.close(DisconnectCode::InvalidToken),
            }
            return;
        }
        // The driver reads nothing while a Connect token or an ACL is being checked.
        if self.waiting_for_backend() {
            return self.close(DisconnectCode::BadRequest);
        }
        match body {
            InboundBody::Connect(_) => self.close(DisconnectCode::BadRequest),
            InboundBody::Subscribe(entries) => self.subscribe(&id, entries, now),
            InboundBody::Unsubscribe(entries) => self.unsubscribe(id, entries, now),
            InboundBody::Publish(publish) => self.publish(id, publish, now),
            InboundBody::Rpc(request) => self.rpc(id, request, now),
            InboundBody::SubRefresh(channels) => self.sub_refresh(id, channels, now),
            InboundBody::SurveyRequest(_) => {
                let error = Error::new(ErrorCode::SurveyDisabled, "survey is not available");
                self.reply(id, now, OutboundBody::Error(Box::new(error)));
            }
            InboundBody::SurveyReply(_) | InboundBody::Pong => {}
            InboundBody::Ping => self.reply(id, now, OutboundBody::Pong),
            InboundBody::PresenceQuery { channel } => self.presence_query(id, &channel, now),
        }
    }

    /// Handles deliveries from the mailbox, in order.
    pub fn handle_deliveries(&mut self, deliveries: impl IntoIterator<Item = Delivery>, now: Now) {
        for delivery in deliveries {
            if let Some(ack) = delivery.ack {
                ack.ack();
            }
            if self.disconnect.is_some() {
                continue;
            }
            match self.routes.get(&delivery.subscription).cloned() {
                Some(Route::Channel { seen_through }) => {
                    if self.last_delivery == Some(delivery.envelope.id) {
                        continue;
                    }
                    let seen = match (seen_through, delivery.envelope.position) {
                        (Some(cursor), Some(position)) => {
                            cursor.epoch == position.epoch && position.offset <= cursor.offset
                        }
                        _ => false,
                    };
                    if seen {
                        continue;
                    }
                    self.last_delivery = Some(delivery.envelope.id);
                    let context = &self.context;
                    let build = || {
                        bridge::from_envelope(
                            &delivery.envelope,
                            false,
                            &context.bus,
                            &context.settings.epoch,
                        )
                    };
                    let body = context.deliveries.body(&delivery.envelope, build);
                    self.reply(frame_uuid(), now, body);
                }
                Some(Route::Presence(channel)) => {
                    if delivery.envelope.origin.connection == self.mailbox.owner().connection {
                        continue;
                    }
                    if let Some(event) =
                        presence::event_from_headers(&channel, &delivery.envelope.headers)
                    {
                        self.reply(
                            frame_uuid(),
                            now,
                            OutboundBody::PresenceEvent(Box::new(event)),
                        );
                    }
                }
                Some(Route::Inbox) => self.rpc_reply(&delivery.envelope, now),
                None => {}
            }
        }
    }

    fn reply(&mut self, id: String, now: Now, body: OutboundBody) {
        self.outbox.push(Outbound {
            id,
            time_ms: now.unix_ms,
            body,
        });
    }

    /// Ends the session from outside (server shutdown, slow consumer).
    pub fn close_with(&mut self, code: DisconnectCode) {
        self.close(code);
    }

    fn close(&mut self, code: DisconnectCode) {
        if self.disconnect.is_none() {
            self.disconnect = Some(code);
        }
    }
}

impl Drop for Session {
    /// Leaves every presence channel (with leave events) when the connection ends, and fires
    /// OnDisconnected.
    fn drop(&mut self) {
        self.fire_disconnected();
        let channels: Vec<String> = self.subscriptions.keys().cloned().collect();
        for channel in channels {
            self.drop_subscription(&channel, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_places_every_byte() {
        let bytes: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(uuid_text(bytes), "00112233-4455-4677-8899-aabbccddeeff");
    }

    #[test]
    fn hex8_writes_every_digit_in_order() {
        assert_eq!(&hex8(0x0123_4567), b"01234567");
        assert_eq!(&hex8(0x89ab_cdef), b"89abcdef");
        assert_eq!(&hex8(0), b"00000000");
        assert_eq!(&hex8(u32::MAX), b"ffffffff");
        for n in [1u32, 9, 10, 15, 16, 0x0a0a_0a0a, 0x9f9f_9f9f, 0x7fff_fffe] {
            assert_eq!(hex8(n), *format!("{n:08x}").as_bytes(), "{n:#x}");
        }
    }

    #[test]
    fn frame_ids_count_up_and_draw_again_when_the_count_runs_out() {
        let mut ids = FrameIds::fresh();
        let first = ids.take();
        let second = ids.take();
        assert_eq!(first[..28], second[..28]);
        assert_eq!((&first[28..], &second[28..]), ("00000000", "00000001"));
        ids.next = u32::MAX - 1;
        let last = ids.take();
        assert_eq!((&last[..28], &last[28..]), (&first[..28], "fffffffe"));
        let drawn = ids.take();
        assert_ne!(drawn[..28], first[..28]);
        assert_eq!(&drawn[28..], "00000000");
    }

    #[test]
    fn uuids_look_like_v4() {
        for make in [uuid4, frame_uuid] {
            let id = make();
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "4");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            for (index, c) in id.char_indices() {
                match index {
                    8 | 13 | 18 | 23 => assert_eq!(c, '-', "{id}"),
                    _ => assert!(matches!(c, '0'..='9' | 'a'..='f'), "{id}"),
                }
            }
            assert_ne!(id, make());
        }
    }
}
