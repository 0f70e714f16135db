//! One virtual stream as the listening side sees it: the open handshake (SYN sent → ACK received → writable), the
//! 64 KiB send credit returned by the peer's REWINDs, the receive buffer with the REWIND credit owed for bytes the
//! owner has read, and FIN2 in both directions (reference §2.4, §2.5).
//!
//! The receive side enforces the window the Go sender honours: more than [`WINDOW`] bytes received and not yet
//! credited back is a protocol violation, and [`Stream::on_data`] reports it instead of buffering without bound.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::addr::Addr;

/// Per-stream flow-control window, both directions (`socket.WND_SIZE`).
pub const WINDOW: u32 = 65_536;

/// Opaque handle of a stream on one link. Never reused within a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub(super) u64);

/// What [`super::Link::recv`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recv {
    /// Bytes in arrival order (one DATA op's worth); their REWIND credit is now owed to the peer.
    Data(Bytes),
    /// Nothing buffered and the peer has not closed: wait for [`super::Event::Readable`].
    Pending,
    /// The peer sent FIN2 and every byte before it has been read.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// SYN sent, the peer's ACK not yet seen: nothing may be written.
    AwaitingAck,
    /// Writable; `credit` bytes may be sent before the peer's next REWIND.
    Open { credit: u32 },
    /// FIN2 queued; nothing more may be written.
    Finished,
}

#[derive(Debug)]
pub(super) struct Stream {
    /// The peer's end.
    pub remote: Addr,
    /// Our port.
    pub local_port: u32,
    send: SendState,
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    buffered: u32,
    /// Bytes read by the owner whose REWIND has not been transmitted yet.
    rewind_due: u32,
    fin_received: bool,
    aborted: bool,
    /// When the stream leaves the table: set once FIN2 has been queued (`None` also if the linger overflows `Instant`).
    forget_at: Option<Instant>,
}

/// The peer sent more than its window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WindowExceeded;

impl Stream {
    pub fn new(remote: Addr, local_port: u32) -> Stream {
        Stream {
            remote,
            local_port,
            send: SendState::AwaitingAck,
            chunks: VecDeque::new(),
            buffered: 0,
            rewind_due: 0,
            fin_received: false,
            aborted: false,
            forget_at: None,
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    pub fn forget_at(&self) -> Option<Instant> {
        self.forget_at
    }

    /// The peer's ACK: returns true if it opened the stream (SYN_ACK is then due).
    pub fn on_ack(&mut self) -> bool {
        if self.send != SendState::AwaitingAck || self.aborted {
            return false;
        }
        self.send = SendState::Open { credit: WINDOW };
        true
    }

    /// A non-empty DATA payload. `Ok(true)` if the stream went from nothing to read to something to read.
    pub fn on_data(&mut self, data: Bytes) -> Result<bool, WindowExceeded> {
        if self.fin_received || self.aborted {
            return Ok(false);
        }
        let len = u32::try_from(data.len()).map_err(|_| WindowExceeded)?;
        let outstanding = self
            .buffered
            .saturating_add(self.rewind_due)
            .saturating_add(len);
        if outstanding > WINDOW {
            return Err(WindowExceeded);
        }
        if self.send == SendState::Finished {
            // We closed: nobody will read this. Credit it straight back so the peer is not stalled.
            self.rewind_due += len;
            return Ok(false);
        }
        let was_empty = self.chunks.is_empty();
        self.buffered += len;
        self.chunks.push_back(data);
        Ok(was_empty)
    }

    /// The peer's FIN2: returns true if the owner should be told (it may now read the end of the stream).
    pub fn on_fin(&mut self) -> bool {
        if self.fin_received || self.aborted {
            return false;
        }
        self.fin_received = true;
        true
    }

    /// The peer's REWIND(n): returns true if the stream went from no credit to some.
    pub fn on_rewind(&mut self, n: u32) -> bool {
        match &mut self.send {
            SendState::Open { credit } if !self.aborted => {
                let was_blocked = *credit == 0;
                // A peer crediting more than was sent gets no more than one window.
                *credit = credit.saturating_add(n).min(WINDOW);
                was_blocked && *credit > 0
            }
            _ => false,
        }
    }

    /// Drops everything and stops both directions after a flow-control violation. Returns true if FIN2 is now due.
    pub fn abort(&mut self, forget_at: Option<Instant>) -> bool {
        self.aborted = true;
        self.chunks.clear();
        self.buffered = 0;
        self.rewind_due = 0;
        self.finish(forget_at)
    }

    pub fn recv(&mut self) -> Recv {
        match self.chunks.pop_front() {
            Some(chunk) => {
                let len = chunk.len() as u32;
                self.buffered -= len;
                self.rewind_due += len;
                Recv::Data(chunk)
            }
            None if self.fin_received => Recv::Finished,
            None => Recv::Pending,
        }
    }

    /// REWIND credit owed to the peer, cleared by taking it.
    pub fn take_rewind(&mut self) -> Option<u32> {
        let due = std::mem::take(&mut self.rewind_due);
        (due > 0).then_some(due)
    }

    /// Bytes that may be sent now.
    pub fn send_capacity(&self) -> u32 {
        match self.send {
            SendState::Open { credit } => credit,
            SendState::AwaitingAck | SendState::Finished => 0,
        }
    }

    pub fn is_finished(&self) -> bool {
        self.send == SendState::Finished
    }

    /// Takes `n` (≤ [`Stream::send_capacity`]) bytes of credit for a DATA op.
    pub fn consume_credit(&mut self, n: u32) {
        if let SendState::Open { credit } = &mut self.send {
            *credit = credit.saturating_sub(n);
        }
    }

    /// Closes our side. Returns true if FIN2 is now due (false if it was already sent).
    pub fn finish(&mut self, forget_at: Option<Instant>) -> bool {
        if self.send == SendState::Finished {
            return false;
        }
        self.send = SendState::Finished;
        self.forget_at = forget_at;
        // Whatever is still buffered will not be read: credit it back.
        self.rewind_due = self.rewind_due.saturating_add(self.buffered);
        self.chunks.clear();
        self.buffered = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chanserv::astranet::addr::HostId;

    fn stream() -> Stream {
        Stream::new(Addr::new(HostId(1), 2), 3)
    }

    #[test]
    fn opens_on_ack_only_once() {
        let mut s = stream();
        assert_eq!(s.send_capacity(), 0);
        assert!(s.on_ack());
        assert_eq!(s.send_capacity(), WINDOW);
        assert!(!s.on_ack());
    }

    #[test]
    fn send_credit_comes_back_with_rewind_capped_at_one_window() {
        let mut s = stream();
        s.on_ack();
        s.consume_credit(WINDOW);
        assert_eq!(s.send_capacity(), 0);
        assert!(s.on_rewind(10));
        assert_eq!(s.send_capacity(), 10);
        assert!(!s.on_rewind(u32::MAX));
        assert_eq!(s.send_capacity(), WINDOW);
    }

    #[test]
    fn receive_window_counts_unread_and_uncredited_bytes() {
        let mut s = stream();
        assert_eq!(s.on_data(Bytes::from(vec![0; 60_000])), Ok(true));
        assert_eq!(s.on_data(Bytes::from(vec![0; 5_536])), Ok(false));
        assert_eq!(s.on_data(Bytes::from_static(b"x")), Err(WindowExceeded));
        assert!(matches!(s.recv(), Recv::Data(d) if d.len() == 60_000));
        // Read but not yet credited: still counts.
        assert_eq!(s.on_data(Bytes::from_static(b"x")), Err(WindowExceeded));
        assert_eq!(s.take_rewind(), Some(60_000));
        assert_eq!(s.take_rewind(), None);
        assert_eq!(s.on_data(Bytes::from(vec![0; 60_000])), Ok(false));
    }

    #[test]
    fn fin_is_seen_after_buffered_data() {
        let mut s = stream();
        s.on_data(Bytes::from_static(b"ab")).unwrap();
        assert!(s.on_fin());
        assert!(!s.on_fin());
        assert_eq!(s.on_data(Bytes::from_static(b"late")), Ok(false));
        assert_eq!(s.recv(), Recv::Data(Bytes::from_static(b"ab")));
        assert_eq!(s.recv(), Recv::Finished);
    }

    #[test]
    fn finishing_credits_back_unread_bytes_and_later_data() {
        let now = Some(Instant::now());
        let mut s = stream();
        s.on_ack();
        s.on_data(Bytes::from_static(b"abc")).unwrap();
        assert!(s.finish(now));
        assert!(!s.finish(now));
        assert_eq!(s.send_capacity(), 0);
        assert_eq!(s.on_data(Bytes::from_static(b"de")), Ok(false));
        assert_eq!(s.take_rewind(), Some(5));
        assert_eq!(s.recv(), Recv::Pending);
    }
}
