//! Writing to the client through the link: a source port bound and announced on the master, the answer of one
//! source that ends a request, the refusal the Go client reads, and each stream's frames flushed as far as its
//! credit goes.

use std::time::Instant;

use super::{Bound, MasterState, Role, Session};
use crate::chanserv::astranet::{Addr, StreamId};
use crate::chanserv::codec::selector::PublishReply;

impl Session {
    pub(super) fn bind(&mut self, bound: Bound, now: Instant) -> Option<u32> {
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
    pub(super) fn answer(&mut self, master: StreamId, header: &[u8], now: Instant) {
        self.announce_empty(master, header, now);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.close_when_flushed = true;
        }
        self.flush(master, now);
    }

    /// Refuses a request in the one way the Go client reports: a first master frame whose length it rejects
    /// ("wrong frame size"), then the master closes. The rest of the request is still read and credited, so the
    /// client's write finishes and it gets to read the refusal.
    pub(super) fn refuse(&mut self, master: StreamId, now: Instant) {
        self.set_master_state(master, MasterState::Answered);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.outbox.push_refusal();
            m.close_when_flushed = true;
        }
        self.flush(master, now);
    }

    pub(super) fn answer_err(&mut self, master: StreamId, reason: &str, now: Instant) {
        let reply = PublishReply::Err {
            reason: reason.to_owned(),
        };
        self.answer(master, &reply.encode(), now);
    }

    pub(super) fn announce_empty(&mut self, master: StreamId, header: &[u8], now: Instant) {
        if let Some(port) = self.bind(Bound::Empty, now) {
            self.push_announcement(master, header, port, now);
        }
    }

    pub(super) fn push_announcement(
        &mut self,
        master: StreamId,
        header: &[u8],
        port: u32,
        now: Instant,
    ) {
        let addr = Addr::new(self.link.host(), port);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            if let Err(e) = m.outbox.push_source(header, addr) {
                tracing::debug!(error = %e, "chanserv: source header not sent");
            }
        }
        self.flush(master, now);
    }

    /// Hands a stream's pending frames to the link as far as its credit goes.
    pub(super) fn flush(&mut self, stream: StreamId, now: Instant) {
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
    pub(super) fn finish(&mut self, stream: StreamId, now: Instant) {
        self.roles.remove(&stream);
        self.deadlines.remove(&stream);
        let _ = self.link.finish(stream, now);
    }
}
