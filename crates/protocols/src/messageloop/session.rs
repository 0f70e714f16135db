//! The generation-neutral MessageLoop session (reference §3): Connect first, authentication, subscriptions
//! on the bus, publish and delivery, history recovery, presence, RPC over the bus, heartbeat and idle
//! disconnect. It is driven by the listener with decoded [`Inbound`] messages, bus [`Delivery`]s and timer
//! ticks, each stamped with a [`Now`]; it reads no clock and does no IO. What it wants written is collected
//! in an outbox the listener drains; a set [`Session::disconnect`] code ends the connection after that.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_bus::history::Since;
use core_bus::{
    names, Backpressure, Bus, ConnectionId, Delivery, Envelope, Mailbox, MessageId, Origin,
    Pattern, Protocol, SubscriptionId, Topic,
};

use super::channel;
use super::cloudevent::is_json_content_type;
use super::codes::{DisconnectCode, ErrorCode};
use super::generation::{check_g2_version, Generation};
use super::message::{
    Connect, Connected, Error, GapReason, Inbound, InboundBody, Message, Outbound, OutboundBody,
    Payload, PayloadData, Position, PresenceAction, PresenceInfo, Publish, PublishAck,
    RecoverComplete, RecoverState, RpcReply, RpcRequest, SubscribeAck, Subscription,
};
use super::presence::{self, PresenceTable};
use crate::auth::{AuthError, Authenticator, Credentials, Identity};

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
}

/// What a bus subscription of this session is for.
#[derive(Debug, Clone)]
enum Route {
    /// A client subscription.
    Channel,
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
    Connected {
        identity: Identity,
        info: PresenceInfo,
    },
}

/// One MessageLoop connection's state.
pub struct Session {
    context: SessionContext,
    mailbox: Mailbox,
    session_id: String,
    generation: Option<Generation>,
    state: State,
    subscriptions: BTreeMap<String, ChannelSubscription>,
    routes: HashMap<SubscriptionId, Route>,
    inbox: Option<Topic>,
    rpcs: HashMap<String, PendingRpc>,
    next_rpc: u64,
    last_activity: Instant,
    last_delivery: Option<MessageId>,
    outbox: Vec<Outbound>,
    disconnect: Option<DisconnectCode>,
    backpressure: Option<Backpressure>,
}

/// A fresh random UUIDv4 string.
pub fn uuid4() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
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
            routes: HashMap::new(),
            inbox: None,
            rpcs: HashMap::new(),
            next_rpc: 1,
            last_activity: now.at,
            last_delivery: None,
            outbox: Vec::new(),
            disconnect: None,
            backpressure: None,
        }
    }

    /// The bus endpoint; the listener waits on it for deliveries.
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
            State::Connecting => None,
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

    /// Takes what should be written, in order.
    pub fn take_outbox(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.outbox)
    }

    /// Backpressure from the last publish: wait on it before reading more from this client.
    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take()
    }

    /// When [`Session::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self
            .context
            .settings
            .idle_timeout
            .map(|timeout| self.last_activity + timeout);
        let rpc = self.rpcs.values().map(|rpc| rpc.deadline).min();
        match (idle, rpc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires due timers: idle disconnect (3511) and RPC timeouts.
    pub fn tick(&mut self, now: Now) {
        if self.disconnect.is_some() {
            return;
        }
        if let Some(timeout) = self.context.settings.idle_timeout {
            if now.at >= self.last_activity + timeout {
                self.close(DisconnectCode::IdleTimeout);
                return;
            }
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
                self.reply(rpc.request_id, now, OutboundBody::Error(error));
            }
        }
    }

    /// A frame that could not be decoded: BAD_REQUEST under a fresh id; the connection stays. It still
    /// counts as activity.
    pub fn on_undecodable(&mut self, now: Now) {
        self.last_activity = now.at;
        if self.disconnect.is_none() {
            self.reply(uuid4(), now, OutboundBody::Error(Error::undecodable()));
        }
    }

    /// A well-formed envelope with no known message in it: 3500 before Connect, 3501 after.
    pub fn on_empty(&mut self, now: Now) {
        self.last_activity = now.at;
        match self.state {
            State::Connecting => self.close(DisconnectCode::InvalidToken),
            State::Connected { .. } => self.close(DisconnectCode::BadRequest),
        }
    }

    /// Handles one decoded client message.
    pub fn on_inbound(&mut self, inbound: Inbound, now: Now) {
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
        match body {
            InboundBody::Connect(_) => self.close(DisconnectCode::BadRequest),
            InboundBody::Subscribe(entries) => self.subscribe(&id, entries, now),
            InboundBody::Unsubscribe(entries) => self.unsubscribe(id, entries, now),
            InboundBody::Publish(publish) => self.publish(id, publish, now),
            InboundBody::Rpc(request) => self.rpc(id, request, now),
            InboundBody::SubRefresh(_) => self.reply(id, now, OutboundBody::SubRefreshAck),
            InboundBody::SurveyRequest(_) => {
                let error = Error::new(ErrorCode::SurveyDisabled, "survey is not available");
                self.reply(id, now, OutboundBody::Error(error));
            }
            InboundBody::SurveyReply(_) | InboundBody::Pong => {}
            InboundBody::Ping => self.reply(id, now, OutboundBody::Pong),
            InboundBody::PresenceQuery { channel } => self.presence_query(id, &channel, now),
        }
    }

    /// Handles deliveries from the mailbox, in order.
    pub fn on_deliveries(&mut self, deliveries: impl IntoIterator<Item = Delivery>, now: Now) {
        for delivery in deliveries {
            if let Some(ack) = delivery.ack {
                ack.ack();
            }
            if self.disconnect.is_some() {
                continue;
            }
            match self.routes.get(&delivery.subscription).cloned() {
                Some(Route::Channel) => {
                    if self.last_delivery == Some(delivery.envelope.id) {
                        continue;
                    }
                    self.last_delivery = Some(delivery.envelope.id);
                    let message = self.message_from(&delivery.envelope, false);
                    self.reply(uuid4(), now, OutboundBody::Publication(vec![message]));
                }
                Some(Route::Presence(channel)) => {
                    if delivery.envelope.origin.connection == self.mailbox.owner().connection {
                        continue;
                    }
                    if let Some(event) =
                        presence::event_from_headers(&channel, &delivery.envelope.headers)
                    {
                        self.reply(uuid4(), now, OutboundBody::PresenceEvent(event));
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

    fn connect(&mut self, id: String, connect: Connect, now: Now) {
        if self.generation == Some(Generation::G2) && !check_g2_version(&connect.version) {
            let error = Error::new(
                ErrorCode::VersionUnsupported,
                format!("unsupported protocol version {:?}", connect.version),
            );
            self.reply(id, now, OutboundBody::Error(error));
            self.close(DisconnectCode::UnsupportedVersion);
            return;
        }
        let credentials = Credentials {
            login: Some(connect.client_id.as_str()),
            secret: Some(connect.token.as_str()),
        };
        let identity = match self.context.authenticator.authenticate(credentials) {
            Ok(identity) => identity,
            Err(error) => {
                let (code, message) = match error {
                    AuthError::Missing => (
                        ErrorCode::AuthRequired,
                        "authentication required".to_owned(),
                    ),
                    other => (ErrorCode::AuthError, other.to_string()),
                };
                self.reply(id, now, OutboundBody::Error(Error::new(code, message)));
                self.close(DisconnectCode::InvalidToken);
                return;
            }
        };
        let info = PresenceInfo {
            session_id: self.session_id.clone(),
            user_id: identity.name.clone(),
            client_id: connect.client_id.clone(),
            connected_at_ms: i64::try_from(now.unix_ms).unwrap_or(i64::MAX),
        };
        self.state = State::Connected { identity, info };
        let mut after = Vec::new();
        let mut snapshots = Vec::new();
        if !connect.subscriptions.is_empty() {
            let ack = self.subscribe_entries(&id, connect.subscriptions, now, &mut after);
            match ack.map(|ack| ack.body) {
                Some(OutboundBody::SubscribeAck(ack)) => snapshots = ack.presence,
                _ => return,
            }
        }
        let connected = Connected {
            session_id: self.session_id.clone(),
            subscriptions: self.subscriptions.keys().cloned().collect(),
            resumed: false,
            stream_epoch: self.context.settings.epoch.clone(),
            accepted_caps: connect.caps,
        };
        self.reply(id.clone(), now, OutboundBody::Connected(connected));
        for snapshot in snapshots {
            self.reply(id.clone(), now, OutboundBody::Presence(snapshot));
        }
        self.outbox.extend(after);
    }

    /// Subscribe: per-entry errors, then the ack, then recovery. G2 streams the recovery after the ack;
    /// the older generations get it inside the ack.
    fn subscribe(&mut self, id: &str, entries: Vec<Subscription>, now: Now) {
        let mut after = Vec::new();
        let Some(mut ack) = self.subscribe_entries(id, entries, now, &mut after) else {
            return;
        };
        if self.generation != Some(Generation::G2) {
            if let OutboundBody::SubscribeAck(body) = &mut ack.body {
                for outbound in after.drain(..) {
                    match outbound.body {
                        OutboundBody::Publication(messages) => body.replayed.extend(messages),
                        OutboundBody::RecoverComplete(result) => body.recover_results.push(result),
                        _ => {}
                    }
                }
            }
        }
        self.outbox.push(ack);
        self.outbox.extend(after);
    }

    /// Subscribes each entry; errors go straight to the outbox, what follows the ack (replays,
    /// RecoverComplete) into `after`. Returns the ack (`None` after a disconnect) for the caller to place.
    fn subscribe_entries(
        &mut self,
        id: &str,
        entries: Vec<Subscription>,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Option<Outbound> {
        let mut accepted = Vec::new();
        let mut presence = Vec::new();
        let mut recovering = false;
        let mut stream_epoch = self.context.settings.epoch.clone();
        for entry in entries {
            match self.subscribe_one(id, &entry, now, after) {
                Ok(outcome) => {
                    if let Some(snapshot) = outcome.presence {
                        presence.push(snapshot);
                    }
                    if let Some(epoch) = outcome.epoch {
                        stream_epoch = epoch;
                    }
                    recovering |= entry.recover;
                    accepted.push(entry);
                }
                Err(SubscribeFailure::Refused(error)) => {
                    self.reply(id.to_owned(), now, OutboundBody::Error(error));
                }
                Err(SubscribeFailure::Limit) => {
                    self.close(DisconnectCode::ChannelLimit);
                    return None;
                }
            }
        }
        let ack = SubscribeAck {
            subscriptions: accepted,
            recover: if recovering {
                RecoverState::Pending
            } else {
                RecoverState::None
            },
            stream_epoch,
            presence,
            error: None,
            replayed: Vec::new(),
            recover_results: Vec::new(),
        };
        let ack = Outbound {
            id: id.to_owned(),
            time_ms: now.unix_ms,
            body: OutboundBody::SubscribeAck(ack),
        };
        Some(ack)
    }

    fn subscribe_one(
        &mut self,
        id: &str,
        entry: &Subscription,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Result<Subscribed, SubscribeFailure> {
        let pattern = channel::subscribe_pattern(&entry.channel, self.generation)
            .map_err(SubscribeFailure::Refused)?;
        let State::Connected { identity, info } = &self.state else {
            return Err(SubscribeFailure::Refused(Error::new(
                ErrorCode::BadRequest,
                "not connected",
            )));
        };
        if !identity.may_subscribe(&pattern) {
            return Err(SubscribeFailure::Refused(Error::new(
                ErrorCode::PermissionDenied,
                format!("subscribe to {:?} denied", entry.channel),
            )));
        }
        let info = info.clone();
        let existing = self.subscriptions.contains_key(&entry.channel);
        if !existing && self.subscriptions.len() >= self.context.settings.max_subscriptions {
            return Err(SubscribeFailure::Limit);
        }
        let exact = pattern.as_topic();
        let mut outcome = Subscribed {
            presence: None,
            epoch: None,
        };
        if existing && !entry.recover {
            if let Some(topic) = &exact {
                outcome.epoch = self.history_epoch(topic);
            }
            if self
                .subscriptions
                .get(&entry.channel)
                .is_some_and(|s| s.presence.is_some())
            {
                outcome.presence = Some(self.context.presence.snapshot(&entry.channel));
            }
            return Ok(outcome);
        }
        // Re-subscribing to recover keeps a tracked member present: no leave/join pair for the others.
        let was_tracked = self
            .subscriptions
            .get(&entry.channel)
            .is_some_and(|s| s.presence.is_some());
        let stays_tracked = was_tracked && exact.is_some() && !entry.ephemeral;
        if existing {
            self.drop_subscription(&entry.channel, !stays_tracked);
        }
        let id_on_bus = match (&exact, entry.recover) {
            (Some(topic), true) => {
                let (bus_id, recovered) = self.recover(id, entry, topic, now, after)?;
                outcome.epoch = recovered;
                bus_id
            }
            (None, true) => {
                let bus_id = self.bus_subscribe(pattern)?;
                let error = Error::new(
                    ErrorCode::RecoverSkipped,
                    "wildcard subscriptions do not recover",
                );
                after.push(self.recover_complete(
                    id,
                    &entry.channel,
                    Position::default(),
                    GapReason::None,
                    Some(error),
                    now,
                ));
                bus_id
            }
            (Some(topic), false) => {
                outcome.epoch = self.history_epoch(topic);
                self.bus_subscribe(pattern)?
            }
            (None, false) => self.bus_subscribe(pattern)?,
        };
        self.routes.insert(id_on_bus, Route::Channel);
        let mut tracked = None;
        if exact.is_some() && !entry.ephemeral {
            let presence_topic = channel::presence_topic(&entry.channel);
            let presence_id = match self.bus_subscribe(Pattern::exact(&presence_topic)) {
                Ok(presence_id) => presence_id,
                Err(failure) => {
                    self.mailbox.unsubscribe(id_on_bus);
                    self.routes.remove(&id_on_bus);
                    return Err(failure);
                }
            };
            self.routes
                .insert(presence_id, Route::Presence(entry.channel.clone()));
            tracked = Some(presence_id);
            if self.context.presence.join(&entry.channel, info.clone()) && !stays_tracked {
                self.announce(&entry.channel, PresenceAction::Join, &info);
            }
            outcome.presence = Some(self.context.presence.snapshot(&entry.channel));
        }
        self.subscriptions.insert(
            entry.channel.clone(),
            ChannelSubscription {
                id: id_on_bus,
                presence: tracked,
            },
        );
        Ok(outcome)
    }

    fn bus_subscribe(&mut self, pattern: Pattern) -> Result<SubscriptionId, SubscribeFailure> {
        self.mailbox.subscribe(pattern).map_err(|error| {
            SubscribeFailure::Refused(Error::new(ErrorCode::PermissionDenied, error.to_string()))
        })
    }

    fn history_epoch(&self, topic: &Topic) -> Option<String> {
        self.context
            .bus
            .history_top(topic)
            .map(|top| top.epoch.to_string())
    }

    /// Subscribes with history and queues the replay and its RecoverComplete into `after`. Returns the
    /// subscription and the topic's epoch when it keeps history.
    fn recover(
        &mut self,
        id: &str,
        entry: &Subscription,
        topic: &Topic,
        now: Now,
        after: &mut Vec<Outbound>,
    ) -> Result<(SubscriptionId, Option<String>), SubscribeFailure> {
        let cursor = entry.cursor.as_ref().and_then(|cursor| {
            let offset = cursor.offset?;
            let epoch = cursor.stream_epoch.parse::<u64>().ok()?;
            Some(core_bus::Position { epoch, offset })
        });
        let since = match (entry.fresh, cursor) {
            (true, _) => Some(Since::Beginning),
            (false, Some(position)) => Some(Since::After(position)),
            (false, None) => None,
        };
        let Some(since) = since else {
            let bus_id = self.bus_subscribe(Pattern::exact(topic))?;
            let error = Error::new(ErrorCode::RecoverSkipped, "no cursor to recover from");
            let epoch = self.history_epoch(topic);
            let position = Position {
                stream_epoch: epoch.clone().unwrap_or_default(),
                offset: None,
            };
            after.push(self.recover_complete(
                id,
                &entry.channel,
                position,
                GapReason::None,
                Some(error),
                now,
            ));
            return Ok((bus_id, epoch));
        };
        let (bus_id, recovery) =
            self.mailbox
                .subscribe_with_history(topic, since)
                .map_err(|error| {
                    SubscribeFailure::Refused(Error::new(
                        ErrorCode::PermissionDenied,
                        error.to_string(),
                    ))
                })?;
        let Some(recovery) = recovery else {
            let error = Error::new(ErrorCode::RecoverSkipped, "channel keeps no history");
            after.push(self.recover_complete(
                id,
                &entry.channel,
                Position::default(),
                GapReason::None,
                Some(error),
                now,
            ));
            return Ok((bus_id, None));
        };
        let epoch = recovery.top.epoch.to_string();
        let skip = recovery.messages.len().saturating_sub(MAX_RECOVER);
        let truncated = !recovery.complete || skip > 0;
        for envelope in recovery.messages.iter().skip(skip) {
            let message = self.message_from(envelope, true);
            after.push(Outbound {
                id: id.to_owned(),
                time_ms: now.unix_ms,
                body: OutboundBody::Publication(vec![message]),
            });
        }
        let position = Position {
            stream_epoch: epoch.clone(),
            offset: Some(recovery.top.offset),
        };
        let reason = if truncated {
            GapReason::HeadTrimmed
        } else {
            GapReason::None
        };
        let mut complete = self.recover_complete(id, &entry.channel, position, reason, None, now);
        if let OutboundBody::RecoverComplete(body) = &mut complete.body {
            body.truncated = truncated;
            body.gap = truncated;
        }
        after.push(complete);
        Ok((bus_id, Some(epoch)))
    }

    fn recover_complete(
        &self,
        id: &str,
        channel: &str,
        position: Position,
        gap_reason: GapReason,
        error: Option<Error>,
        now: Now,
    ) -> Outbound {
        Outbound {
            id: id.to_owned(),
            time_ms: now.unix_ms,
            body: OutboundBody::RecoverComplete(RecoverComplete {
                channel: channel.to_owned(),
                position,
                truncated: false,
                gap: false,
                gap_reason,
                error,
            }),
        }
    }

    fn announce(&self, channel: &str, action: PresenceAction, info: &PresenceInfo) {
        let mut envelope = Envelope::new(
            channel::presence_topic(channel),
            Bytes::new(),
            self.mailbox.owner(),
        );
        envelope.headers = presence::event_headers(action, info);
        self.context.bus.publish(envelope);
    }

    /// Ends one client subscription; `announce` sends the presence leave.
    fn drop_subscription(&mut self, channel: &str, announce: bool) -> bool {
        let Some(subscription) = self.subscriptions.remove(channel) else {
            return false;
        };
        self.mailbox.unsubscribe(subscription.id);
        self.routes.remove(&subscription.id);
        if let Some(presence_id) = subscription.presence {
            self.mailbox.unsubscribe(presence_id);
            self.routes.remove(&presence_id);
            if let Some(info) = self.context.presence.leave(channel, &self.session_id) {
                if announce {
                    self.announce(channel, PresenceAction::Leave, &info);
                }
            }
        }
        true
    }

    fn unsubscribe(&mut self, id: String, entries: Vec<Subscription>, now: Now) {
        for entry in &entries {
            self.drop_subscription(&entry.channel, true);
        }
        self.reply(id, now, OutboundBody::UnsubscribeAck(entries));
    }

    fn identity_allows_publish(&self, topic: &Topic) -> bool {
        self.identity()
            .is_some_and(|identity| identity.may_publish(topic))
    }

    fn publish(&mut self, id: String, publish: Publish, now: Now) {
        let topic = match channel::publish_topic(&publish.channel) {
            Ok(topic) => topic,
            Err(error) => return self.reply(id, now, OutboundBody::Error(error)),
        };
        if !self.identity_allows_publish(&topic) {
            let error = Error::new(
                ErrorCode::PermissionDenied,
                format!("publish to {:?} denied", publish.channel),
            );
            return self.reply(id, now, OutboundBody::Error(error));
        }
        let mut envelope = self.envelope(topic.clone(), &publish.payload, &publish.headers);
        envelope.timestamp_ms = now.unix_ms;
        let outcome = self.context.bus.publish(envelope);
        if let Some(backpressure) = outcome.backpressure {
            self.backpressure = Some(backpressure);
        }
        let position = match outcome.position {
            Some(position) => Position {
                stream_epoch: position.epoch.to_string(),
                offset: (!publish.transient).then_some(position.offset),
            },
            None => Position {
                stream_epoch: self.context.settings.epoch.clone(),
                offset: None,
            },
        };
        let ack = PublishAck {
            id: id.clone(),
            position,
        };
        self.reply(id, now, OutboundBody::PublishAck(ack));
    }

    /// A bus envelope for client data: payload bytes with a content type (a default by variant when the
    /// client gave none: `application/json`, `text/plain`; binary stays untyped) and metadata as headers.
    fn envelope(&self, topic: Topic, payload: &Payload, headers: &[(String, Bytes)]) -> Envelope {
        let mut envelope = Envelope::new(topic, payload.to_bytes(), self.mailbox.owner());
        envelope.content_type = match (&payload.data, payload.content_type.is_empty()) {
            (_, false) => Some(payload.content_type.clone()),
            (Some(PayloadData::Json(_)), true) => Some("application/json".to_owned()),
            (Some(PayloadData::Text(_)), true) => Some("text/plain".to_owned()),
            (Some(PayloadData::Binary(_)) | None, true) => None,
        };
        for (name, value) in headers {
            envelope.headers.push(name.clone(), value.clone());
        }
        envelope
    }

    /// One delivered message: the bus position (offset 0 and the listener epoch when the topic keeps no
    /// history), payload variant from the content type, headers as metadata.
    fn message_from(&self, envelope: &Envelope, replay: bool) -> Message {
        let channel = envelope.topic.to_dotted().unwrap_or_else(|| {
            String::from_utf8_lossy(&envelope.topic.to_dotted_bytes()).into_owned()
        });
        let position = match envelope.position {
            Some(position) => Position {
                stream_epoch: position.epoch.to_string(),
                offset: Some(position.offset),
            },
            None => Position {
                stream_epoch: self.context.settings.epoch.clone(),
                offset: Some(0),
            },
        };
        let id = match position.offset {
            Some(offset) if offset > 0 => format!("{channel}-{offset}"),
            _ => uuid4(),
        };
        Message {
            id,
            channel,
            position,
            payload: payload_from(envelope.content_type.as_deref(), &envelope.payload),
            headers: envelope
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.clone()))
                .collect(),
            replay,
        }
    }

    fn rpc(&mut self, id: String, request: RpcRequest, now: Now) {
        if request.channel.is_empty() {
            let error = Error::new(ErrorCode::BadRequest, "channel is required");
            return self.reply(id, now, OutboundBody::Error(error));
        }
        if self.rpcs.len() >= MAX_PENDING_RPCS {
            let error = Error::new(ErrorCode::RateLimited, "too many RPCs waiting for a reply");
            return self.reply(id, now, OutboundBody::Error(error));
        }
        let inbox = match &self.inbox {
            Some(inbox) => inbox.clone(),
            None => {
                let inbox = self.mailbox.inbox(b"rpc");
                match self.mailbox.subscribe(Pattern::exact(&inbox)) {
                    Ok(bus_id) => {
                        self.routes.insert(bus_id, Route::Inbox);
                        self.inbox = Some(inbox.clone());
                        inbox
                    }
                    Err(error) => {
                        let error = Error::new(ErrorCode::InternalError, error.to_string());
                        return self.reply(id, now, OutboundBody::Error(error));
                    }
                }
            }
        };
        let topic = names::rpc_topic(
            RPC_PROTOCOL,
            [request.channel.as_bytes(), request.method.as_bytes()],
        );
        let correlation = format!("{}-{}", self.session_id, self.next_rpc);
        self.next_rpc += 1;
        let mut envelope = self.envelope(topic, &request.payload, &request.headers);
        envelope.timestamp_ms = now.unix_ms;
        envelope.reply_to = Some(inbox);
        envelope.correlation_id = Some(correlation.clone());
        let outcome = self.context.bus.publish(envelope);
        if outcome.delivered == 0 {
            let error = Error::new(
                ErrorCode::NoProxy,
                format!(
                    "no handler for rpc {:?} on {:?}",
                    request.method, request.channel
                ),
            );
            return self.reply(id, now, OutboundBody::Error(error));
        }
        self.rpcs.insert(
            correlation,
            PendingRpc {
                request_id: id,
                deadline: now.at + self.context.settings.rpc_timeout,
            },
        );
    }

    fn rpc_reply(&mut self, envelope: &Envelope, now: Now) {
        let Some(rpc) = envelope
            .correlation_id
            .as_ref()
            .and_then(|correlation| self.rpcs.remove(correlation))
        else {
            return;
        };
        let reply = RpcReply {
            request_id: rpc.request_id.clone(),
            payload: payload_from(envelope.content_type.as_deref(), &envelope.payload),
            headers: envelope
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.clone()))
                .collect(),
            error: None,
        };
        self.reply(rpc.request_id, now, OutboundBody::RpcReply(reply));
    }

    fn presence_query(&mut self, id: String, channel: &str, now: Now) {
        let pattern = match channel::subscribe_pattern(channel, self.generation) {
            Ok(pattern) if pattern.is_exact() => pattern,
            Ok(_) => {
                let error = Error::new(ErrorCode::BadRequest, "presence needs an exact channel");
                return self.reply(id, now, OutboundBody::Error(error));
            }
            Err(error) => return self.reply(id, now, OutboundBody::Error(error)),
        };
        if !self
            .identity()
            .is_some_and(|identity| identity.may_subscribe(&pattern))
        {
            let error = Error::new(ErrorCode::PermissionDenied, "presence denied");
            return self.reply(id, now, OutboundBody::Error(error));
        }
        let snapshot = self.context.presence.snapshot(channel);
        self.reply(id, now, OutboundBody::Presence(snapshot));
    }
}

impl Drop for Session {
    /// Leaves every presence channel (with leave events) when the connection ends.
    fn drop(&mut self) {
        let channels: Vec<String> = self.subscriptions.keys().cloned().collect();
        for channel in channels {
            self.drop_subscription(&channel, true);
        }
    }
}

struct Subscribed {
    presence: Option<super::message::PresenceSnapshot>,
    epoch: Option<String>,
}

enum SubscribeFailure {
    Refused(Error),
    Limit,
}

/// Payload from bus data: a JSON object under a JSON content type becomes `json`, UTF-8 under `text/*`
/// becomes `text`, everything else `binary`.
pub fn payload_from(content_type: Option<&str>, data: &Bytes) -> Payload {
    let content_type = content_type.unwrap_or("");
    if is_json_content_type(content_type) {
        if let Ok(serde_json::Value::Object(object)) =
            serde_json::from_slice::<serde_json::Value>(data)
        {
            return Payload::json(content_type, object);
        }
    }
    let essence = content_type.trim().to_ascii_lowercase();
    if essence.starts_with("text/") {
        if let Ok(text) = std::str::from_utf8(data) {
            return Payload::text(content_type, text);
        }
    }
    Payload::binary(content_type, data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_variants_follow_the_content_type() {
        let json = payload_from(Some("application/json"), &Bytes::from_static(br#"{"a":1}"#));
        assert!(matches!(json.data, Some(PayloadData::Json(_))));
        let array = payload_from(Some("application/json"), &Bytes::from_static(b"[1]"));
        assert!(matches!(array.data, Some(PayloadData::Binary(_))));
        let text = payload_from(
            Some("text/plain; charset=utf-8"),
            &Bytes::from_static(b"hi"),
        );
        assert_eq!(text.data, Some(PayloadData::Text("hi".into())));
        let binary = payload_from(None, &Bytes::from_static(b"\xff"));
        assert_eq!(binary.content_type, "");
        assert!(matches!(binary.data, Some(PayloadData::Binary(_))));
    }

    #[test]
    fn uuids_look_like_v4() {
        let id = uuid4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, uuid4());
    }
}
