//! One AstraNet link (one TCP connection): a sans-IO state machine in the style of quinn-proto, for either end.
//! gatewayd's chanserv sessions run it as the *server* ([`Link::new`]), the clients crate as the *client*
//! ([`Link::client`]). It owns no socket and no clock: bytes and `Instant`s go in through [`Link::handle_input`],
//! [`Link::handle_eof`] and [`Link::handle_timeout`]; bytes to write come out of [`Link::poll_transmit`], things the
//! owner must act on out of [`Link::poll_event`], and the next wake-up time out of [`Link::poll_timeout`].
//!
//! What it does (docs/protocols/chanserv.md, "Wire format"):
//! - sends HANDSHAKE at once and expects the peer's within `handshake_timeout`; ops before it are dropped; a
//!   HANDSHAKE that is not JSON closes the link;
//! - server: after the peer's HANDSHAKE, advertises the service (SERVICE, own id, service port); never sends FOLLOW;
//!   accepts DIALs to bound ports (SYN → peer's ACK → SYN_ACK); a DIAL to any other port is dropped, as upstream
//!   does;
//! - client: advertises nothing and reports the server's SERVICE ([`Event::Service`]); [`Link::dial`] sends DIAL from
//!   a fresh port, answers the server's SYN with ACK and the stream is open (the server's SYN_ACK changes nothing:
//!   a Go server may write before it arrives);
//! - keeps the stream table keyed by (peer address, own port), with 64 KiB windows both ways and REWIND credit for
//!   what the owner has read; FIN2 both ways; closed streams are forgotten after `linger`;
//! - answers PING with PONG, sends PING when nothing was sent for `keepalive`, closes after `idle_timeout` without
//!   an inbound op or when an op stays incomplete for `stall_timeout`.
//!
//! Bad input never panics. A fault confined to one stream (a peer overrunning its window) aborts only that stream;
//! only a fault in the op framing itself (oversized length, truncated op, bad handshake) ends the link.
//! This file owns the link's state and its owner's calls; `inbound` what the peer's ops do to it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::addr::{Addr, HostId};
use super::handshake;
use super::op::{self, Op, OpError, Opcode, MAX_PAYLOAD};
use super::ports::{PortCounter, SERVICE_PORT};
use super::stream::{Recv, Stream, StreamId};

/// The advertised service name (`chanserv` by default; include any `WithEnv` suffix the clients use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName(String);

/// A service name that cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a service name must be 1..={MAX_PAYLOAD} bytes, got {0}")]
pub struct InvalidServiceName(pub usize);

impl ServiceName {
    pub fn new(name: impl Into<String>) -> Result<ServiceName, InvalidServiceName> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_PAYLOAD as usize {
            return Err(InvalidServiceName(name.len()));
        }
        Ok(ServiceName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ServiceName {
    fn default() -> Self {
        ServiceName("chanserv".to_owned())
    }
}

/// Per-link settings. [`LinkConfig::new`] gives upstream's timings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Our node id: sent in HANDSHAKE and used as the host of every address we announce or dial from. Pick a random
    /// non-zero value below 2^63, as AstraNet does, and keep it for the process.
    pub host: HostId,
    /// Name a server link advertises with SERVICE (on [`SERVICE_PORT`]); a client link ignores it.
    pub service: ServiceName,
    /// The node's port counter (ports bound or dialed from): give every link a clone of the same one.
    pub ports: PortCounter,
    /// Wait for the peer's HANDSHAKE (upstream: 10 s).
    pub handshake_timeout: Duration,
    /// Close when no op has arrived for this long (upstream: 100 s).
    pub idle_timeout: Duration,
    /// Send PING when nothing has been sent for this long (upstream: 5 s).
    pub keepalive: Duration,
    /// Close when a partly received op has not completed for this long (upstream's "FREEZE": 10 s).
    pub stall_timeout: Duration,
    /// How long a stream stays in the table after our FIN2 (upstream `TCP_CLOSE_WND`: 10 s).
    pub linger: Duration,
    /// Most streams one link may hold; DIALs beyond it are dropped (or, from a client, refused).
    pub max_streams: usize,
}

impl LinkConfig {
    pub fn new(host: HostId) -> LinkConfig {
        LinkConfig {
            host,
            service: ServiceName::default(),
            ports: PortCounter::new(),
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(100),
            keepalive: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(10),
            max_streams: 4096,
        }
    }
}

/// Something the link's owner must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's HANDSHAKE arrived (a server link has queued SERVICE). `raddr` is our address as the peer sees it.
    Connected { peer: HostId, raddr: String },
    /// Client links only: the server advertises a service at `addr` (its SERVICE op); [`Link::dial`] it.
    Service { addr: Addr },
    /// A DIAL reached a bound `port` and SYN has been queued. The stream turns writable on the peer's ACK.
    Accepted { stream: StreamId, port: u32 },
    /// The stream has bytes or its end to [`Link::recv`]. Edge-triggered: call `recv` until it answers
    /// [`Recv::Pending`] or [`Recv::Finished`]; the next `Readable` comes only for input after that.
    Readable { stream: StreamId },
    /// The stream has send credit again (it just opened on the peer's ACK, or SYN if we dialed it, or a REWIND ended
    /// a stall).
    Writable { stream: StreamId },
    /// The peer sent more than its window on this stream: its data was dropped and FIN2 queued; the stream only
    /// answers [`StreamError::Aborted`] from now on. Other streams are unaffected.
    Aborted { stream: StreamId },
    /// A [`Link::bind_once`] port was not dialed before its deadline and is gone.
    BindExpired { port: u32 },
    /// The link is over: drop the connection. Nothing more comes out of the link.
    Closed(CloseReason),
}

/// Why a link ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("no HANDSHAKE from the peer in time")]
    HandshakeTimeout,
    #[error("HANDSHAKE payload is not the expected JSON: {0}")]
    BadHandshake(String),
    #[error("no op received for the idle timeout")]
    IdleTimeout,
    #[error("an op stayed incomplete for the stall timeout")]
    Stalled,
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the peer closed the connection")]
    PeerClosed,
}

/// Why a stream call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("no such stream on this link")]
    UnknownStream,
    #[error("the stream was finished by us")]
    Finished,
    #[error("the stream was aborted: the peer overran its window")]
    Aborted,
    #[error("the link is closed")]
    LinkClosed,
}

/// Why [`Link::bind_once`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("the node's port counter is exhausted")]
    PortsExhausted,
    #[error("the link is closed")]
    LinkClosed,
}

/// Why [`Link::dial`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("only a client link dials")]
    NotClient,
    #[error("the node's port counter is exhausted")]
    PortsExhausted,
    #[error("the link holds its most streams, all live")]
    TooManyStreams,
    #[error("the link is closed")]
    LinkClosed,
}

/// Counters of input the link dropped, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Ops that arrived before the peer's HANDSHAKE.
    pub before_handshake: u64,
    /// Ops with an opcode AstraNet does not register.
    pub unknown_opcodes: u64,
    /// DIALs to a port nothing is bound on.
    pub unknown_port_dials: u64,
    /// DIALs dropped because the link holds `max_streams` streams.
    pub refused_dials: u64,
    /// Stream ops for no stream of ours (not addressed to us, unknown 4-tuple, repeated DIAL, REWIND without a u32).
    pub stray_ops: u64,
    /// Control ops the link does not act on (FOLLOW, DISCOVER, RESET, WND_SIZE, a second HANDSHAKE; SERVICE, SYN
    /// and SYN_ACK sent to a server, …).
    pub ignored_ops: u64,
    /// Streams aborted for overrunning their window.
    pub aborted_streams: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Connected,
    Closed,
}

/// Which end of the link we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Advertises `config.service` after the peer's HANDSHAKE and accepts DIALs to it (gatewayd).
    Server,
    /// Advertises nothing, reports the server's SERVICE ops and dials (the clients crate).
    Client,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bind {
    /// The advertised service: accepts any number of DIALs.
    Service,
    /// Accepts one DIAL, until the deadline.
    Once { deadline: Instant },
}

/// One AstraNet link, server or client. See the module doc.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    role: Role,
    state: State,
    peer: Option<HostId>,
    next_stream: u64,
    handshake_deadline: Option<Instant>,
    last_rx: Instant,
    last_tx: Instant,
    /// Since when `rx` has held an incomplete op.
    partial_since: Option<Instant>,
    rx: BytesMut,
    tx: BytesMut,
    streams: HashMap<StreamId, Stream>,
    by_key: HashMap<(Addr, u32), StreamId>,
    binds: HashMap<u32, Bind>,
    /// Streams that may owe the peer a REWIND.
    rewinds: BTreeSet<StreamId>,
    events: VecDeque<Event>,
    stats: LinkStats,
}

impl Link {
    /// A server link for a new connection; queues gatewayd's HANDSHAKE. `peer_addr` is the peer's TCP address,
    /// reported back to it in the handshake.
    pub fn new(config: LinkConfig, peer_addr: Option<SocketAddr>, now: Instant) -> Link {
        Link::with_role(Role::Server, config, peer_addr, now)
    }

    /// A client link for a new connection; queues our HANDSHAKE. `server_addr` is the server's TCP address,
    /// reported back to it in the handshake.
    pub fn client(config: LinkConfig, server_addr: Option<SocketAddr>, now: Instant) -> Link {
        Link::with_role(Role::Client, config, server_addr, now)
    }

    fn with_role(
        role: Role,
        config: LinkConfig,
        peer_addr: Option<SocketAddr>,
        now: Instant,
    ) -> Link {
        let binds = match role {
            Role::Server => HashMap::from([(SERVICE_PORT, Bind::Service)]),
            Role::Client => HashMap::new(),
        };
        let mut link = Link {
            handshake_deadline: now.checked_add(config.handshake_timeout),
            config,
            role,
            state: State::Handshaking,
            peer: None,
            next_stream: 0,
            last_rx: now,
            last_tx: now,
            partial_since: None,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            streams: HashMap::new(),
            by_key: HashMap::new(),
            binds,
            rewinds: BTreeSet::new(),
            events: VecDeque::new(),
            stats: LinkStats::default(),
        };
        let raddr = peer_addr.map(|a| a.to_string()).unwrap_or_default();
        let hello = Op::new(
            Opcode::Handshake,
            Addr::default(),
            Addr::new(link.config.host, 0),
            handshake::encode(&raddr),
        );
        link.queue(hello);
        link
    }

    /// Our node id on this link.
    pub fn host(&self) -> HostId {
        self.config.host
    }

    /// The address a server link advertises its service on.
    pub fn service_addr(&self) -> Addr {
        Addr::new(self.config.host, SERVICE_PORT)
    }

    /// The peer's node id, once its HANDSHAKE has arrived.
    pub fn peer(&self) -> Option<HostId> {
        self.peer
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Bytes read from the connection.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.is_closed() {
            return;
        }
        self.rx.extend_from_slice(data);
        let mut progressed = false;
        loop {
            match op::decode(&mut self.rx) {
                Ok(Some(op)) => {
                    progressed = true;
                    self.last_rx = now;
                    self.on_op(op, now);
                    if self.is_closed() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(OpError::UnknownOpcode { cmd, len }) => {
                    progressed = true;
                    self.last_rx = now;
                    self.stats.unknown_opcodes += 1;
                    tracing::debug!(cmd, len, "astranet: dropping op with unknown opcode");
                }
                Err(e) => return self.close(CloseReason::Op(e)),
            }
        }
        self.partial_since = match (self.rx.is_empty(), progressed, self.partial_since) {
            (true, _, _) => None,
            (false, false, Some(since)) => Some(since),
            (false, _, _) => Some(now),
        };
    }

    /// The connection's read side ended.
    pub fn handle_eof(&mut self) {
        if self.is_closed() {
            return;
        }
        let reason = match op::decode_eof(&mut self.rx) {
            Err(e) if e.is_fatal() => CloseReason::Op(e),
            _ => CloseReason::PeerClosed,
        };
        self.close(reason);
    }

    /// Runs the timers that are due at `now` (call at or after [`Link::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.state == State::Handshaking && due(self.handshake_deadline, now) {
            return self.close(CloseReason::HandshakeTimeout);
        }
        if due(self.last_rx.checked_add(self.config.idle_timeout), now) {
            return self.close(CloseReason::IdleTimeout);
        }
        if due(self.stall_deadline(), now) {
            return self.close(CloseReason::Stalled);
        }
        if self.state == State::Connected && due(self.keepalive_deadline(), now) {
            self.queue_empty(Opcode::Ping, Addr::default(), Addr::default());
            self.last_tx = now;
        }
        let forgotten: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| due(s.forget_at(), now))
            .map(|(&id, _)| id)
            .collect();
        for id in forgotten {
            if let Some(s) = self.streams.remove(&id) {
                self.by_key.remove(&(s.remote, s.local_port));
                self.rewinds.remove(&id);
            }
        }
        let mut expired: Vec<u32> = self
            .binds
            .iter()
            .filter(|(_, b)| matches!(b, Bind::Once { deadline } if *deadline <= now))
            .map(|(&port, _)| port)
            .collect();
        expired.sort_unstable();
        for port in expired {
            self.binds.remove(&port);
            self.events.push_back(Event::BindExpired { port });
        }
    }

    /// When [`Link::handle_timeout`] must next run; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let handshake = match self.state {
            State::Handshaking => self.handshake_deadline,
            State::Connected | State::Closed => None,
        };
        let keepalive = match self.state {
            State::Connected => self.keepalive_deadline(),
            State::Handshaking | State::Closed => None,
        };
        let forget = self.streams.values().filter_map(Stream::forget_at);
        let binds = self.binds.values().filter_map(|b| match b {
            Bind::Once { deadline } => Some(*deadline),
            Bind::Service => None,
        });
        [
            handshake,
            self.last_rx.checked_add(self.config.idle_timeout),
            self.stall_deadline(),
            keepalive,
        ]
        .into_iter()
        .flatten()
        .chain(forget)
        .chain(binds)
        .min()
    }

    /// Bytes to write to the connection, in order; `None` when there is nothing to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.is_closed() {
            return None;
        }
        for id in std::mem::take(&mut self.rewinds) {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            if let Some(n) = s.take_rewind() {
                let local = Addr::new(self.config.host, s.local_port);
                Op::with_u32(Opcode::Rewind, s.remote, local, n).encode(&mut self.tx);
            }
        }
        if self.tx.is_empty() {
            return None;
        }
        self.last_tx = now;
        Some(self.tx.split().freeze())
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Binds a fresh port that accepts exactly one DIAL until `accept_deadline` (a chanserv source's frame channel,
    /// docs/protocols/chanserv.md, "Requests and sources"). Returns the address to announce; [`Event::Accepted`] or
    /// [`Event::BindExpired`] follows.
    pub fn bind_once(&mut self, accept_deadline: Instant) -> Result<Addr, BindError> {
        if self.is_closed() {
            return Err(BindError::LinkClosed);
        }
        let port = self.config.ports.next().ok_or(BindError::PortsExhausted)?;
        self.binds.insert(
            port,
            Bind::Once {
                deadline: accept_deadline,
            },
        );
        Ok(Addr::new(self.config.host, port))
    }

    /// Drops a [`Link::bind_once`] port that has not been dialed yet. Returns whether it was bound.
    pub fn unbind(&mut self, port: u32) -> bool {
        if port == SERVICE_PORT {
            return false;
        }
        self.binds.remove(&port).is_some()
    }

    /// Client links: opens a stream to `remote` (the advertised service, or a source a server announced) from a
    /// fresh port: DIAL is queued; the server's SYN is answered with ACK and brings [`Event::Writable`]. Finishing
    /// the stream before then sends FIN2 right after the ACK.
    pub fn dial(&mut self, remote: Addr) -> Result<StreamId, DialError> {
        if self.is_closed() {
            return Err(DialError::LinkClosed);
        }
        if self.role != Role::Client {
            return Err(DialError::NotClient);
        }
        if !self.make_room() {
            return Err(DialError::TooManyStreams);
        }
        let port = self.config.ports.next().ok_or(DialError::PortsExhausted)?;
        let stream = self.insert(Stream::dialed(remote, port));
        self.queue_empty(Opcode::Dial, remote, Addr::new(self.config.host, port));
        Ok(stream)
    }

    /// Takes the next received chunk of a stream. Bytes returned here are credited back to the peer (REWIND) with
    /// the next transmit.
    pub fn recv(&mut self, stream: StreamId) -> Result<Recv, StreamError> {
        let s = self.stream_mut(stream)?;
        let recv = s.recv();
        if matches!(recv, Recv::Data(_)) {
            self.rewinds.insert(stream);
        }
        Ok(recv)
    }

    /// How many bytes [`Link::send`] would take now.
    pub fn send_capacity(&self, stream: StreamId) -> Result<usize, StreamError> {
        if self.is_closed() {
            return Err(StreamError::LinkClosed);
        }
        let s = self
            .streams
            .get(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.is_aborted() {
            return Err(StreamError::Aborted);
        }
        Ok(s.send_capacity() as usize)
    }

    /// Queues as much of `data` as the stream's credit allows, as one DATA op, and returns how many bytes that was
    /// (0 before the stream opened or while the window is used up: wait for [`Event::Writable`]).
    pub fn send(&mut self, stream: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let host = self.config.host;
        let s = self.stream_mut(stream)?;
        if s.is_finished() {
            return Err(StreamError::Finished);
        }
        // Credit never exceeds one window, so `n` always fits a DATA op.
        let n = data.len().min(s.send_capacity() as usize);
        if n == 0 {
            return Ok(0);
        }
        s.consume_credit(n as u32);
        let (dst, src) = (s.remote, Addr::new(host, s.local_port));
        let payload = Bytes::copy_from_slice(data.get(..n).unwrap_or_default());
        self.queue(Op::new(Opcode::Data, dst, src, payload));
        Ok(n)
    }

    /// Closes our side of the stream: FIN2 is queued after the data already sent (or, if the stream has not opened
    /// yet, right after our SYN_ACK or ACK), and the stream is forgotten `linger` later. Unread received bytes are
    /// credited back. Finishing twice is a no-op.
    pub fn finish(&mut self, stream: StreamId, now: Instant) -> Result<(), StreamError> {
        if self.is_closed() {
            return Err(StreamError::LinkClosed);
        }
        let host = self.config.host;
        let forget_at = now.checked_add(self.config.linger);
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.finish(forget_at) {
            let (dst, src) = (s.remote, Addr::new(host, s.local_port));
            self.rewinds.insert(stream);
            self.queue_empty(Opcode::Fin2, dst, src);
        }
        Ok(())
    }

    fn stream_mut(&mut self, stream: StreamId) -> Result<&mut Stream, StreamError> {
        if self.is_closed() {
            return Err(StreamError::LinkClosed);
        }
        let s = self
            .streams
            .get_mut(&stream)
            .ok_or(StreamError::UnknownStream)?;
        if s.is_aborted() {
            return Err(StreamError::Aborted);
        }
        Ok(s)
    }

    fn queue(&mut self, op: Result<Op, OpError>) {
        match op {
            Ok(op) => op.encode(&mut self.tx),
            // Only payloads the link sized itself get here (handshake JSON, service name, DATA within the window).
            Err(e) => {
                tracing::error!(error = %e, "astranet: internal op over the size limit not sent")
            }
        }
    }

    fn queue_empty(&mut self, opcode: Opcode, dst: Addr, src: Addr) {
        Op::empty(opcode, dst, src).encode(&mut self.tx);
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        self.last_tx.checked_add(self.config.keepalive)
    }

    fn stall_deadline(&self) -> Option<Instant> {
        self.partial_since
            .and_then(|since| since.checked_add(self.config.stall_timeout))
    }

    fn close(&mut self, reason: CloseReason) {
        tracing::debug!(%reason, "astranet: link closed");
        self.state = State::Closed;
        self.rx = BytesMut::new();
        self.tx = BytesMut::new();
        self.streams.clear();
        self.by_key.clear();
        self.binds.clear();
        self.rewinds.clear();
        self.events.push_back(Event::Closed(reason));
    }
}

/// Whether an optional deadline has passed (`None` never does).
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

mod inbound;

#[cfg(test)]
mod tests;
