//! One chanserv connection as a state machine over an AstraNet [`Link`]: bytes and `Instant`s in, bytes to write
//! and the next wake-up out, as the link itself. On top of the link it runs the chanserv server
//! (docs/protocols/chanserv.md, "Requests and sources") mapped onto the bus ("What comes back"):
//!
//! - a DIAL to the service opens a *master* stream; its first frame is the request ([`selector::parse`]);
//! - `PUB <topic>\n<payload>` publishes with the connection's identity and is answered by one source whose
//!   header is `ok offset=<n>` / `ok` / `err <reason>`, whose channel closes at once; then the master closes;
//! - a subscribe request gets a [`Subscription`]: one source (header `topic=<name>\n` + address) per exact
//!   selector at once and per concrete topic a wildcard selector delivers from, while the master stays open; a
//!   request of wildcards only first gets a `status=subscribed` source with an empty channel, because the Go
//!   client's `LookupAndPost` waits for the first master frame;
//! - a source's frame channel carries one bus message per chanserv frame; its 64 KiB window is the
//!   back-pressure: past [`super::subscription::HIGH_WATER`] queued bytes the request's mailbox is not read (see
//!   [`Session::poll_deliveries`]), so deliveries wait in the bus under its queue bound and slow-consumer policy;
//! - the client closing the master ends the request (every source closes); closing a frame channel ends that
//!   source only; an empty request closes the master without sources; a request over the frame limit is refused
//!   with a length prefix the Go client rejects ("wrong frame size"); any other bad request gets an `err` source;
//! - the server timeouts of [`super::timeouts`] end masters, requests and sources (checked in
//!   [`Session::handle_timeout`]).
//!
//! The bus is the only thing it touches besides the link; the driver feeds it socket bytes and timers.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Backpressure, Bus, Delivery, Origin, Protocol, Topic};

use super::astranet::{Event, Link, LinkConfig, Recv, StreamId, SERVICE_PORT};
use super::bridge::{self, topic_header};
use super::channel::{Outbox, RequestReader};
use super::codec::credentials;
use super::codec::frame::{Compression, FrameDecoder};
use super::codec::selector::{self, Publish, PublishReply, Request, RequestError, Selector};
use super::subscription::{
    cap_header, subscribed_header, Routed, SelectorError, SourceState, Subscription,
};
use super::timeouts::{Expired, StreamDeadlines, Timeouts};
use crate::auth::{AuthError, Authenticator, Credentials, Identity};

/// Most deliveries taken from one request's mailbox per poll.
const BATCH: usize = 64;

/// Per-connection chanserv settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub compression: Compression,
    /// Cap on a request body.
    pub frame_limit: u64,
    pub max_sources_per_request: usize,
    /// Bus subscriptions the connection may hold over all its requests (one per selector).
    pub max_subscriptions: usize,
    /// The server timeouts: serving, sourcing, accept (how long an announced source waits to be dialed),
    /// master read and write, frame write.
    pub timeouts: Timeouts,
    /// Checks the `AUTH` token of a request ([`credentials`]); a request without one acts as the
    /// session's identity unless credentials are required.
    pub auth: Arc<Authenticator>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            compression: Compression::Off,
            frame_limit: super::codec::frame::DEFAULT_FRAME_LIMIT,
            max_sources_per_request: 256,
            max_subscriptions: 1024,
            timeouts: Timeouts::default(),
            auth: Authenticator::open(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RequestId(u64);

/// What a port announced on a master is for.
#[derive(Debug, Clone)]
enum Bound {
    /// A subscription's topic.
    Source { request: RequestId, topic: Topic },
    /// An answer whose header says it all (publish ack, `err`, the cap): the channel closes once dialed.
    Empty,
}

/// What a stream of ours is.
#[derive(Debug)]
enum Role {
    Master(Master),
    Source { request: RequestId, topic: Topic },
}

#[derive(Debug)]
struct Master {
    state: MasterState,
    /// Source announcements waiting for credit.
    outbox: Outbox,
    /// Finish the master once the outbox is flushed.
    close_when_flushed: bool,
}

#[derive(Debug)]
enum MasterState {
    Reading(RequestReader),
    Serving(RequestId),
    Answered,
}

/// One chanserv connection. See the module doc.
pub struct Session {
    link: Link,
    bus: Bus,
    origin: Origin,
    identity: Identity,
    config: SessionConfig,
    roles: HashMap<StreamId, Role>,
    binds: HashMap<u32, Bound>,
    requests: BTreeMap<RequestId, Subscription>,
    next_request: u64,
    subscriptions: usize,
    backpressure: Option<Backpressure>,
    /// Per-stream deadlines of `config.timeouts`; empty when none is set.
    deadlines: HashMap<StreamId, StreamDeadlines>,
}

impl Session {
    /// A session for a new connection from `peer`; gatewayd's HANDSHAKE is queued at once.
    pub fn new(
        link: LinkConfig,
        config: SessionConfig,
        bus: Bus,
        origin: Origin,
        identity: Identity,
        peer: Option<SocketAddr>,
        now: Instant,
    ) -> Session {
        Session {
            link: Link::new(link, peer, now),
            bus,
            origin,
            identity,
            config,
            roles: HashMap::new(),
            binds: HashMap::new(),
            requests: BTreeMap::new(),
            next_request: 0,
            subscriptions: 0,
            backpressure: None,
            deadlines: HashMap::new(),
        }
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Bus subscriptions held by the connection's live requests.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        self.link.handle_input(data, now);
        self.process_events(now);
    }

    /// The connection's read side ended.
    pub fn handle_eof(&mut self, now: Instant) {
        self.link.handle_eof();
        self.process_events(now);
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process_events(now);
        self.expire_streams(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let streams = self.deadlines.values().filter_map(StreamDeadlines::next);
        self.link.poll_timeout().into_iter().chain(streams).min()
    }

    /// Everything to write now, coalesced; `None` when there is nothing.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        self.link.poll_transmit(now)
    }

    /// Set after a publish hit a `block` group over its bound: read nothing more from the connection until it
    /// is ready.
    pub fn take_backpressure(&mut self) -> Option<Backpressure> {
        self.backpressure.take()
    }

    /// Takes deliveries from the mailbox of every request whose sources have room; `Ready` once some were
    /// handled (transmit afterwards), `Pending` with the task's waker registered on those mailboxes otherwise.
    /// A request whose sources are full takes nothing: its deliveries stay in the bus until a REWIND makes room
    /// (a slow-consumer disconnect by the bus ends the request).
    pub fn poll_deliveries(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let mut progressed = false;
        let mut batch: Vec<Delivery> = Vec::new();
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            let Some(request) = self.requests.get_mut(&id) else {
                continue;
            };
            // A request whose sources are full takes nothing, but still learns that the bus closed its mailbox.
            let max = if request.wants_deliveries() { BATCH } else { 0 };
            let received = pin!(request.mailbox().recv_batch(&mut batch, max)).poll(cx);
            match received {
                Poll::Pending => {}
                Poll::Ready(Ok(_)) => {
                    progressed = true;
                    for delivery in batch.drain(..) {
                        self.on_delivery(id, &delivery, now);
                    }
                }
                Poll::Ready(Err(closed)) => {
                    progressed = true;
                    tracing::debug!(%closed, "chanserv: subscription mailbox closed");
                    self.end_request(id, now);
                }
            }
        }
        if progressed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Graceful goodbye: closes every stream (FIN2 after what is already queued); chanserv has no other farewell.
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.end_request(id, now);
        }
        let streams: Vec<StreamId> = self.roles.keys().copied().collect();
        for stream in streams {
            self.finish(stream, now);
        }
    }

    fn process_events(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            match event {
                Event::Connected { peer, raddr } => {
                    tracing::debug!(%peer, %raddr, "chanserv: AstraNet handshake done")
                }
                // Only a client link reports the peer's services.
                Event::Service { .. } => {}
                Event::Accepted { stream, port } => self.on_accepted(stream, port, now),
                Event::Readable { stream } => self.on_readable(stream, now),
                Event::Writable { stream } => self.flush(stream, now),
                Event::Aborted { stream } => self.on_gone(stream, now),
                Event::BindExpired { port } => self.on_bind_expired(port, now),
                Event::Closed(reason) => {
                    tracing::debug!(%reason, "chanserv: link closed");
                    self.requests.clear();
                    self.roles.clear();
                    self.binds.clear();
                    self.deadlines.clear();
                    self.subscriptions = 0;
                }
            }
        }
    }

    fn on_accepted(&mut self, stream: StreamId, port: u32, now: Instant) {
        if port == SERVICE_PORT {
            let reader = RequestReader::new(FrameDecoder::new(self.config.frame_limit));
            let master = Master {
                state: MasterState::Reading(reader),
                outbox: Outbox::new(),
                close_when_flushed: false,
            };
            self.roles.insert(stream, Role::Master(master));
            self.track(stream, StreamDeadlines::master(&self.config.timeouts, now));
            return;
        }
        match self.binds.remove(&port) {
            Some(Bound::Source { request, topic }) => {
                let source = self
                    .requests
                    .get_mut(&request)
                    .and_then(|r| r.source_mut(&topic));
                match source {
                    Some(source) if source.state == (SourceState::Announced { port }) => {
                        source.state = SourceState::Open(stream);
                        self.roles.insert(stream, Role::Source { request, topic });
                        self.track(stream, StreamDeadlines::channel(&self.config.timeouts, now));
                    }
                    _ => self.finish(stream, now),
                }
            }
            // An answer's channel carries nothing: FIN2 right after the open.
            Some(Bound::Empty) | None => self.finish(stream, now),
        }
    }

    fn on_readable(&mut self, stream: StreamId, now: Instant) {
        loop {
            let chunk = match self.link.recv(stream) {
                Ok(Recv::Data(chunk)) => chunk,
                Ok(Recv::Finished) => return self.on_peer_fin(stream, now),
                Ok(Recv::Pending) | Err(_) => return,
            };
            // Frame channels and answered masters carry nothing more from the client: reading only returns the
            // credit.
            let pushed = match self.roles.get_mut(&stream) {
                Some(Role::Master(Master {
                    state: MasterState::Reading(reader),
                    ..
                })) => reader.push(&chunk),
                _ => continue,
            };
            match pushed {
                Ok(None) => {}
                Ok(Some(body)) => {
                    if let Some(deadlines) = self.deadlines.get_mut(&stream) {
                        deadlines.request_read();
                    }
                    self.set_master_state(stream, MasterState::Answered);
                    self.on_request(stream, body, now);
                }
                Err(e) => {
                    record_drop(DropReason::TooLarge, Protocol::Chanserv);
                    tracing::debug!(error = %e, "chanserv: request too large, refused");
                    self.refuse(stream, now);
                }
            }
        }
    }

    /// The client closed its side of a stream.
    fn on_peer_fin(&mut self, stream: StreamId, now: Instant) {
        let truncated = match self.roles.get_mut(&stream) {
            Some(Role::Master(Master {
                state: MasterState::Reading(reader),
                ..
            })) => reader.eof().err(),
            _ => return self.on_gone(stream, now),
        };
        if let Some(e) = truncated {
            record_drop(DropReason::Malformed, Protocol::Chanserv);
            tracing::debug!(error = %e, "chanserv: master closed inside the request");
        }
        self.finish(stream, now);
    }

    fn set_master_state(&mut self, stream: StreamId, state: MasterState) {
        if let Some(Role::Master(master)) = self.roles.get_mut(&stream) {
            master.state = state;
        }
    }

    /// A stream is over from the client's side (closed or aborted): a master ends its request, a frame channel
    /// its source.
    fn on_gone(&mut self, stream: StreamId, now: Instant) {
        match self.roles.get(&stream) {
            Some(Role::Master(Master {
                state: MasterState::Serving(request),
                ..
            })) => {
                let request = *request;
                self.end_request(request, now);
            }
            Some(Role::Source { request, topic }) => {
                if let Some(source) = self
                    .requests
                    .get_mut(request)
                    .and_then(|r| r.source_mut(topic))
                {
                    source.state = SourceState::Gone;
                    source.outbox = Outbox::new();
                }
                let request = *request;
                self.finish(stream, now);
                self.end_if_orphaned(request, now);
            }
            // An answered master, or a stream already finished.
            _ => self.finish(stream, now),
        }
    }

    fn on_bind_expired(&mut self, port: u32, now: Instant) {
        if let Some(Bound::Source { request, topic }) = self.binds.remove(&port) {
            tracing::debug!(%topic, port, "chanserv: announced source never dialed");
            if let Some(source) = self
                .requests
                .get_mut(&request)
                .and_then(|r| r.source_mut(&topic))
            {
                source.state = SourceState::Gone;
                source.outbox = Outbox::new();
            }
            self.end_if_orphaned(request, now);
        }
    }

    /// Ends a request whose master no longer announces (closed by the sourcing timeout) once none of its sources
    /// is announced or open any more.
    fn end_if_orphaned(&mut self, id: RequestId, now: Instant) {
        let Some(request) = self.requests.get(&id) else {
            return;
        };
        let orphaned = !self.roles.contains_key(&request.master)
            && request
                .sources()
                .all(|(_, state)| state == SourceState::Gone);
        if orphaned {
            self.end_request(id, now);
        }
    }

    /// Starts tracking a stream's deadlines, if any timeout is set.
    fn track(&mut self, stream: StreamId, deadlines: StreamDeadlines) {
        if self.config.timeouts.any() {
            self.deadlines.insert(stream, deadlines);
        }
    }

    /// Ends what the passed deadlines of `now` end (see [`super::timeouts`]).
    fn expire_streams(&mut self, now: Instant) {
        if self.deadlines.is_empty() {
            return;
        }
        let expired: Vec<(StreamId, Expired)> = self
            .deadlines
            .iter()
            .filter_map(|(stream, d)| d.expired(now).map(|e| (*stream, e)))
            .collect();
        for (stream, expired) in expired {
            tracing::debug!(timeout = expired.as_str(), "chanserv: stream timed out");
            match self.roles.get(&stream) {
                Some(Role::Master(Master {
                    state: MasterState::Serving(request),
                    ..
                })) => {
                    let request = *request;
                    if expired == Expired::Sourcing {
                        // No more sources: the master closes, the open sources go on.
                        self.finish(stream, now);
                        self.end_if_orphaned(request, now);
                    } else {
                        self.end_request(request, now);
                    }
                }
                Some(Role::Source { request, topic }) => {
                    let request = *request;
                    if let Some(source) = self
                        .requests
                        .get_mut(&request)
                        .and_then(|r| r.source_mut(topic))
                    {
                        source.state = SourceState::Gone;
                        source.outbox = Outbox::new();
                    }
                    self.finish(stream, now);
                    self.end_if_orphaned(request, now);
                }
                _ => self.finish(stream, now),
            }
            self.deadlines.remove(&stream);
        }
    }

    /// The identity a request acts as: its `AUTH` token's, else the session's unless credentials are required.
    fn request_identity(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let auth = &self.config.auth;
        match token {
            None if !auth.required() => Ok(self.identity.clone()),
            secret => auth.authenticate(Credentials {
                login: None,
                secret: secret.or(Some("")),
            }),
        }
    }

    fn on_request(&mut self, master: StreamId, body: Bytes, now: Instant) {
        let (token, body) = credentials::split_token(body);
        let identity = match self.request_identity(token.as_deref()) {
            Ok(identity) => identity,
            Err(error) => {
                record_drop(DropReason::AclDenied, Protocol::Chanserv);
                return self.answer_err(master, &error.to_string(), now);
            }
        };
        match selector::parse(body) {
            Ok(Request::Publish(publish)) => {
                let reply = self.publish(publish, &identity);
                self.answer(master, &reply.encode(), now);
            }
            Ok(Request::Subscribe(selectors)) => self.subscribe(master, &selectors, &identity, now),
            Err(RequestError::Empty) => self.finish(master, now),
            Err(e) => {
                record_drop(DropReason::Malformed, Protocol::Chanserv);
                self.answer_err(master, &e.to_string(), now);
            }
        }
    }

    fn publish(&mut self, publish: Publish, identity: &Identity) -> PublishReply {
        let topic = match bridge::publish_topic(&publish) {
            Ok(topic) => topic,
            Err(e) => {
                record_drop(DropReason::Malformed, Protocol::Chanserv);
                return PublishReply::Err {
                    reason: format!("invalid topic: {e}"),
                };
            }
        };
        if !identity.may_publish(&topic) {
            record_drop(DropReason::AclDenied, Protocol::Chanserv);
            return PublishReply::Err {
                reason: format!("not allowed to publish to {}", publish.topic),
            };
        }
        let outcome = self
            .bus
            .publish(bridge::to_envelope(topic, publish, self.origin));
        if outcome.backpressure.is_some() {
            // Kept until the driver takes it: a later publish in the same input does not clear it.
            self.backpressure = outcome.backpressure;
        }
        PublishReply::Ok {
            offset: outcome.position.map(|p| p.offset),
        }
    }

    fn subscribe(
        &mut self,
        master: StreamId,
        selectors: &[Selector],
        identity: &Identity,
        now: Instant,
    ) {
        let limit = self.config.max_subscriptions;
        if self.subscriptions.saturating_add(selectors.len()) > limit {
            return self.answer_err(
                master,
                &format!("subscription limit of {limit} per connection reached"),
                now,
            );
        }
        let bus = &self.bus;
        let subscription = Subscription::new(
            master,
            self.bus.mailbox(self.origin),
            selectors,
            |pattern| identity.may_subscribe(pattern),
            |topic| bus.history_top(topic),
            self.config.max_sources_per_request,
            self.config.compression,
        );
        let subscription = match subscription {
            Ok(subscription) => subscription,
            Err(e) => {
                if matches!(e, SelectorError::Denied(_)) {
                    record_drop(DropReason::AclDenied, Protocol::Chanserv);
                }
                return self.answer_err(master, &e.to_string(), now);
            }
        };
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.subscriptions += subscription.subscription_count();
        let exact = subscription.exact_topics();
        self.requests.insert(id, subscription);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.state = MasterState::Serving(id);
        }
        if let Some(deadlines) = self.deadlines.get_mut(&master) {
            deadlines.sourced(&self.config.timeouts, now);
        }
        if exact.is_empty() {
            // Wildcards only: nothing to announce yet, but the Go client waits for a first frame.
            self.announce_empty(master, &subscribed_header(), now);
        }
        for topic in exact {
            self.announce(id, topic, now);
        }
    }

    /// Announces a source for `topic` on the request's master (or reports the cap once).
    fn announce(&mut self, id: RequestId, topic: Topic, now: Instant) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        if request.has_source(&topic) {
            return;
        }
        let master = request.master;
        if !self.roles.contains_key(&master) {
            // The sourcing timeout closed the master: no new sources.
            return;
        }
        if !request.may_announce() {
            if request.cap_reached() {
                let header = cap_header(request.max_sources());
                self.announce_empty(master, &header, now);
            }
            return;
        }
        let bound = Bound::Source {
            request: id,
            topic: topic.clone(),
        };
        let Some(port) = self.bind(bound, now) else {
            return;
        };
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let complete = request.add_source(topic.clone(), port);
        if let Some(deadlines) = self.deadlines.get_mut(&master) {
            deadlines.sourced(&self.config.timeouts, now);
        }
        self.push_announcement(master, &topic_header(&topic, complete), port, now);
    }

    fn on_delivery(&mut self, id: RequestId, delivery: &Delivery, now: Instant) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let routed = match request.deliver(delivery) {
            Routed::NewTopic(topic) => {
                self.announce(id, topic, now);
                match self.requests.get_mut(&id) {
                    Some(request) => request.deliver(delivery),
                    None => return,
                }
            }
            routed => routed,
        };
        match routed {
            Routed::Queued(topic) => {
                let open = self
                    .requests
                    .get_mut(&id)
                    .and_then(|r| r.source_mut(&topic))
                    .map(|s| s.state);
                if let Some(SourceState::Open(stream)) = open {
                    self.flush(stream, now);
                }
            }
            Routed::Duplicate => {}
            Routed::NewTopic(_) | Routed::Dropped => {
                record_drop(DropReason::Unroutable, Protocol::Chanserv)
            }
            Routed::TooLarge(e) => {
                record_drop(DropReason::TooLarge, Protocol::Chanserv);
                tracing::debug!(
                    error = %e,
                    topic = %delivery.envelope.topic,
                    from = %delivery.envelope.origin.protocol,
                    "chanserv: message too large for a frame, not delivered"
                );
            }
        }
    }

    /// Ends a subscribe request: its bus subscriptions, every source, and the master.
    fn end_request(&mut self, id: RequestId, now: Instant) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        self.subscriptions = self
            .subscriptions
            .saturating_sub(request.subscription_count());
        for (_, state) in request.sources() {
            match state {
                SourceState::Announced { port } => {
                    self.binds.remove(&port);
                    self.link.unbind(port);
                }
                SourceState::Open(stream) => self.finish(stream, now),
                SourceState::Gone => {}
            }
        }
        if let Some(Role::Master(master)) = self.roles.get_mut(&request.master) {
            master.state = MasterState::Answered;
        }
        self.finish(request.master, now);
    }

    fn bind(&mut self, bound: Bound, now: Instant) -> Option<u32> {
        let deadline = now.checked_add(self.config.timeouts.accept).unwrap_or(now);
        match self.link.bind_once(deadline) {
            Ok(addr) => {
                self.binds.insert(addr.port, bound);
                Some(addr.port)
            }
            Err(e) => {
                tracing::warn!(error = %e, "chanserv: cannot bind a source port");
                None
            }
        }
    }

    /// Answers a request with one source carrying `header`, then closes the master.
    fn answer(&mut self, master: StreamId, header: &[u8], now: Instant) {
        self.announce_empty(master, header, now);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.close_when_flushed = true;
        }
        self.flush(master, now);
    }

    /// Refuses a request in the one way the Go client reports: a first master frame whose length it rejects
    /// ("wrong frame size"), then the master closes. The rest of the request is still read and credited, so the
    /// client's write finishes and it gets to read the refusal.
    fn refuse(&mut self, master: StreamId, now: Instant) {
        self.set_master_state(master, MasterState::Answered);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.outbox.push_refusal();
            m.close_when_flushed = true;
        }
        self.flush(master, now);
    }

    fn answer_err(&mut self, master: StreamId, reason: &str, now: Instant) {
        let reply = PublishReply::Err {
            reason: reason.to_owned(),
        };
        self.answer(master, &reply.encode(), now);
    }

    fn announce_empty(&mut self, master: StreamId, header: &[u8], now: Instant) {
        if let Some(port) = self.bind(Bound::Empty, now) {
            self.push_announcement(master, header, port, now);
        }
    }

    fn push_announcement(&mut self, master: StreamId, header: &[u8], port: u32, now: Instant) {
        let addr = super::astranet::Addr::new(self.link.host(), port);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            if let Err(e) = m.outbox.push_source(header, addr) {
                tracing::debug!(error = %e, "chanserv: source header not sent");
            }
        }
        self.flush(master, now);
    }

    /// Hands a stream's pending frames to the link as far as its credit goes.
    fn flush(&mut self, stream: StreamId, now: Instant) {
        let (done, pending, sent) = match self.roles.get_mut(&stream) {
            Some(Role::Master(master)) => {
                let sent = master.outbox.flush(&mut self.link, stream).unwrap_or(0);
                let pending = !master.outbox.is_empty();
                (master.close_when_flushed && !pending, pending, sent)
            }
            Some(Role::Source { request, topic }) => {
                match self
                    .requests
                    .get_mut(request)
                    .and_then(|r| r.source_mut(topic))
                {
                    Some(source) => {
                        let sent = source.outbox.flush(&mut self.link, stream).unwrap_or(0);
                        (false, !source.outbox.is_empty(), sent)
                    }
                    None => (false, false, 0),
                }
            }
            None => (false, false, 0),
        };
        if let Some(deadlines) = self.deadlines.get_mut(&stream) {
            deadlines.flushed(pending, sent > 0, now);
        }
        if done {
            self.finish(stream, now);
        }
    }

    /// Closes our side of a stream, forgetting its role.
    fn finish(&mut self, stream: StreamId, now: Instant) {
        self.roles.remove(&stream);
        self.deadlines.remove(&stream);
        let _ = self.link.finish(stream, now);
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("link", &self.link)
            .field("requests", &self.requests.len())
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

#[cfg(test)]
mod tests;
