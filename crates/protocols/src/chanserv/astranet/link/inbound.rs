//! What the peer's ops do to the link: the handshake, DIALs to bound ports, the stream table's opening and
//! lookups (with room made by forgetting closed streams), DATA within the window, REWIND credit and FIN2.

use std::time::Instant;

use bytes::Bytes;

use super::{Bind, CloseReason, Event, Link, Role, State};
use crate::chanserv::astranet::addr::Addr;
use crate::chanserv::astranet::handshake;
use crate::chanserv::astranet::op::{Op, Opcode};
use crate::chanserv::astranet::stream::{Opened, Stream, StreamId, WindowExceeded};

impl Link {
    pub(super) fn on_op(&mut self, op: Op, now: Instant) {
        match self.state {
            State::Handshaking if op.opcode == Opcode::Handshake => self.on_handshake(op),
            State::Handshaking => {
                self.stats.before_handshake += 1;
                tracing::debug!(opcode = ?op.opcode, "astranet: dropping op received before the handshake");
            }
            State::Connected => self.on_connected_op(op, now),
            State::Closed => {}
        }
    }

    fn on_handshake(&mut self, op: Op) {
        let raddr = match handshake::decode(op.payload()) {
            Ok(raddr) => raddr,
            Err(e) => return self.close(CloseReason::BadHandshake(e.to_string())),
        };
        let peer = op.src.host;
        self.state = State::Connected;
        self.peer = Some(peer);
        if self.role == Role::Server {
            let name = Bytes::copy_from_slice(self.config.service.as_str().as_bytes());
            let service = Op::new(Opcode::Service, Addr::default(), self.service_addr(), name);
            self.queue(service);
        }
        self.events.push_back(Event::Connected { peer, raddr });
    }

    fn on_connected_op(&mut self, op: Op, now: Instant) {
        match op.opcode {
            Opcode::Ping => self.queue_empty(Opcode::Pong, Addr::default(), Addr::default()),
            Opcode::Dial => self.on_dial(op),
            Opcode::Ack => {
                if let Some(stream) = self.lookup(&op) {
                    self.on_open(stream, Opcode::Ack);
                }
            }
            Opcode::Syn if self.role == Role::Client => {
                if let Some(stream) = self.lookup(&op) {
                    self.on_open(stream, Opcode::Syn);
                }
            }
            // The stream opened on the SYN already.
            Opcode::SynAck if self.role == Role::Client => {}
            Opcode::Service if self.role == Role::Client => {
                self.events.push_back(Event::Service { addr: op.src });
            }
            Opcode::Data => {
                if let Some(stream) = self.lookup(&op) {
                    self.on_data(stream, op.into_payload(), now);
                }
            }
            Opcode::Rewind => {
                if let Some(stream) = self.lookup(&op) {
                    self.on_rewind(stream, op.payload_u32());
                }
            }
            Opcode::Fin2 => {
                if let Some(stream) = self.lookup(&op) {
                    self.on_fin(stream);
                }
            }
            Opcode::Pong => {}
            Opcode::Handshake
            | Opcode::Syn
            | Opcode::SynAck
            | Opcode::Fin1
            | Opcode::Err
            | Opcode::ForceClosed
            | Opcode::WndSize
            | Opcode::Service
            | Opcode::NoService
            | Opcode::Follow
            | Opcode::Discover
            | Opcode::Reset => {
                self.stats.ignored_ops += 1;
                tracing::trace!(opcode = ?op.opcode, "astranet: ignoring control op");
            }
        }
    }

    fn on_dial(&mut self, op: Op) {
        let port = op.dst.port;
        if op.dst.host != self.config.host || self.by_key.contains_key(&(op.src, port)) {
            self.stats.stray_ops += 1;
            return;
        }
        if self.binds.contains_key(&port) && !self.make_room() {
            self.stats.refused_dials += 1;
            tracing::debug!(port, from = %op.src, "astranet: dropping DIAL, stream table full");
            return;
        }
        match self.binds.get(&port) {
            None => {
                self.stats.unknown_port_dials += 1;
                tracing::debug!(port, from = %op.src, "astranet: dropping DIAL to an unbound port");
                return;
            }
            Some(Bind::Service) => {}
            Some(Bind::Once { .. }) => {
                self.binds.remove(&port);
            }
        }
        let stream = self.insert(Stream::new(op.src, port));
        self.queue_empty(Opcode::Syn, op.src, Addr::new(self.config.host, port));
        self.events.push_back(Event::Accepted { stream, port });
    }

    pub(super) fn insert(&mut self, s: Stream) -> StreamId {
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        self.by_key.insert((s.remote, s.local_port), stream);
        self.streams.insert(stream, s);
        stream
    }

    /// Room for one more stream: under `max_streams`, or after forgetting the closed stream nearest its end of
    /// linger (closed streams only linger to recognise the peer's late ops, so a client that opens streams faster
    /// than they linger — a publisher doing one request per message — is never refused for them, nor is a client
    /// dialing that fast). False when every stream in the table is live.
    pub(super) fn make_room(&mut self) -> bool {
        if self.streams.len() < self.config.max_streams {
            return true;
        }
        let oldest = self
            .streams
            .iter()
            .filter_map(|(&id, s)| s.forget_at().map(|at| (at, id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(s) = self.streams.remove(&id) {
            self.by_key.remove(&(s.remote, s.local_port));
            self.rewinds.remove(&id);
        }
        true
    }

    /// The stream a stream op (ACK, SYN, DATA, REWIND, FIN2) belongs to: addressed to us, from a known 4-tuple.
    fn lookup(&mut self, op: &Op) -> Option<StreamId> {
        let found = match self.by_key.get(&(op.src, op.dst.port)) {
            Some(&stream) if op.dst.host == self.config.host => Some(stream),
            _ => None,
        };
        if found.is_none() {
            self.stats.stray_ops += 1;
        }
        found
    }

    /// The peer's ACK on a stream we accepted (answered with SYN_ACK) or its SYN on one we dialed (answered with ACK).
    fn on_open(&mut self, stream: StreamId, by: Opcode) {
        let host = self.config.host;
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let (dst, src) = (s.remote, Addr::new(host, s.local_port));
        let (opened, answer) = match by {
            Opcode::Syn => (s.on_syn(), Opcode::Ack),
            _ => (s.on_ack(), Opcode::SynAck),
        };
        match opened {
            Opened::No => {}
            Opened::Writable => {
                self.queue_empty(answer, dst, src);
                self.events.push_back(Event::Writable { stream });
            }
            Opened::Finished => {
                self.queue_empty(answer, dst, src);
                self.queue_empty(Opcode::Fin2, dst, src);
            }
        }
    }

    fn on_data(&mut self, stream: StreamId, data: Bytes, now: Instant) {
        let host = self.config.host;
        let forget_at = now.checked_add(self.config.linger);
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        if data.is_empty() {
            return;
        }
        match s.on_data(data) {
            Ok(true) => self.events.push_back(Event::Readable { stream }),
            // Data after our FIN2 is credited straight back.
            Ok(false) => {
                self.rewinds.insert(stream);
            }
            Err(WindowExceeded) => {
                let (dst, src) = (s.remote, Addr::new(host, s.local_port));
                let fin_due = s.abort(forget_at);
                self.stats.aborted_streams += 1;
                tracing::debug!(peer = %dst, port = src.port, "astranet: peer overran its window, aborting stream");
                if fin_due {
                    self.queue_empty(Opcode::Fin2, dst, src);
                }
                self.events.push_back(Event::Aborted { stream });
            }
        }
    }

    fn on_rewind(&mut self, stream: StreamId, credit: Option<u32>) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(n) = credit else {
            self.stats.stray_ops += 1;
            return;
        };
        if s.on_rewind(n) {
            self.events.push_back(Event::Writable { stream });
        }
    }

    fn on_fin(&mut self, stream: StreamId) {
        if self.streams.get_mut(&stream).is_some_and(Stream::on_fin) {
            self.events.push_back(Event::Readable { stream });
        }
    }
}
