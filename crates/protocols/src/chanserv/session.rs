//! One chanserv connection as a state machine over an AstraNet [`Link`]: bytes and `Instant`s in, bytes to write
//! and the next wake-up out, as the link itself. On top of the link it runs the chanserv server
//! (docs/protocols/chanserv.md, "Requests and sources") mapped onto the bus ("What comes back"):
//!
//! - a DIAL to the service opens a *master* stream; its first frame is the request
//!   ([`parse`](super::codec::selector::parse));
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
//! The bus is the only thing it touches besides the link; the driver feeds it socket bytes and timers. This file
//! owns the state and the link's events; `request` what a request does, `answer` what goes back on the streams.

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
use super::channel::{Outbox, RequestReader};
use super::codec::frame::{Compression, FrameDecoder};
use super::subscription::{SourceState, Subscription};
use super::timeouts::{Expired, StreamDeadlines, Timeouts};
use crate::auth::{Authenticator, Identity};

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
    /// Checks the `AUTH` token of a request ([`credentials`](super::codec::credentials)); a request without
    /// one acts as the session's identity unless credentials are required.
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

mod answer;
mod request;

#[cfg(test)]
mod tests;
