//! One virtual stream as either end sees it: the open handshake (accepted: SYN sent → the peer's ACK → writable;
//! dialed: DIAL sent → the peer's SYN → writable), the 64 KiB send credit returned by the peer's REWINDs, the
//! receive buffer with the REWIND credit owed for bytes the owner has read, and FIN2 in both directions
//! (docs/protocols/chanserv.md, "Streams", "Flow control").
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
    /// SYN (or DIAL) sent, the peer's ACK (or SYN) not yet seen: nothing may be written. `finish`: the owner already
    /// closed, so FIN2 follows our answer (SYN_ACK, or ACK).
    Opening { finish: bool },
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
    /// We sent the DIAL: the peer's SYN opens it, not its ACK.
    dialed: bool,
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

/// What the peer's ACK (or, on a dialed stream, its SYN) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opened {
    /// Nothing: not awaited (repeated ACK or SYN, the other side's op, aborted stream).
    No,
    /// Our answer (SYN_ACK, or ACK) is due and the stream is writable.
    Writable,
    /// Our answer is due, then the FIN2 the owner asked for before the stream opened.
    Finished,
}

/// The peer sent more than its window allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WindowExceeded;

impl Stream {
    /// A stream the peer dialed and we accepted (SYN queued).
    pub fn new(remote: Addr, local_port: u32) -> Stream {
        Stream {
            remote,
            local_port,
            dialed: false,
            send: SendState::Opening { finish: false },
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

    /// A stream we dialed (DIAL queued).
    pub fn dialed(remote: Addr, local_port: u32) -> Stream {
        Stream {
            dialed: true,
            ..Stream::new(remote, local_port)
        }
    }

    /// The peer's ACK on a stream we accepted: what is now due.
    pub fn on_ack(&mut self) -> Opened {
        if self.dialed {
            return Opened::No;
        }
        self.open()
    }

    /// The peer's SYN on a stream we dialed: what is now due.
    pub fn on_syn(&mut self) -> Opened {
        if !self.dialed {
            return Opened::No;
        }
        self.open()
    }

    fn open(&mut self) -> Opened {
        match self.send {
            SendState::Opening { .. } if self.aborted => Opened::No,
            SendState::Opening { finish: false } => {
                self.send = SendState::Open { credit: WINDOW };
                Opened::Writable
            }
            SendState::Opening { finish: true } => {
                self.send = SendState::Finished;
                Opened::Finished
            }
            SendState::Open { .. } | SendState::Finished => Opened::No,
        }
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
        if self.is_finished() {
            // We closed: nobody will read this. Credit it straight back so the peer is not stalled.
            self.rewind_due += len;
            return Ok(false);
        }
        let was_empty = self.chunks.is_empty();
        self.buffered += len;
        self.chunks.push_back(data);
        Ok(was_empty)
    }

    /// The peer's FIN2: returns true if the owner should be told. It need not be when data is still buffered: the
    /// owner was told about that and reads the end after it.
    pub fn on_fin(&mut self) -> bool {
        if self.fin_received || self.aborted {
            return false;
        }
        self.fin_received = true;
        self.chunks.is_empty()
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

    /// Drops everything and stops both directions after a flow-control violation. Returns true if FIN2 is now due
    /// (always, unless it was already sent).
    pub fn abort(&mut self, forget_at: Option<Instant>) -> bool {
        self.aborted = true;
        self.chunks.clear();
        self.buffered = 0;
        self.rewind_due = 0;
        let fin_due = self.send != SendState::Finished;
        self.send = SendState::Finished;
        self.forget_at = forget_at;
        fin_due
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
            SendState::Opening { .. } | SendState::Finished => 0,
        }
    }

    /// Whether the owner has closed our side.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.send,
            SendState::Finished | SendState::Opening { finish: true }
        )
    }

    /// Takes `n` (≤ [`Stream::send_capacity`]) bytes of credit for a DATA op.
    pub fn consume_credit(&mut self, n: u32) {
        if let SendState::Open { credit } = &mut self.send {
            *credit = credit.saturating_sub(n);
        }
    }

    /// Closes our side. Returns true if FIN2 is due now; false if it was already sent, or if the stream is not open
    /// yet (FIN2 then follows our SYN_ACK or ACK, see [`Stream::on_ack`], [`Stream::on_syn`]).
    pub fn finish(&mut self, forget_at: Option<Instant>) -> bool {
        let fin_now = match self.send {
            SendState::Finished | SendState::Opening { finish: true } => return false,
            SendState::Opening { finish: false } => {
                self.send = SendState::Opening { finish: true };
                false
            }
            SendState::Open { .. } => {
                self.send = SendState::Finished;
                true
            }
        };
        self.forget_at = forget_at;
        // Whatever is still buffered will not be read: credit it back.
        self.rewind_due = self.rewind_due.saturating_add(self.buffered);
        self.chunks.clear();
        self.buffered = 0;
        fin_now
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
        assert_eq!(s.on_ack(), Opened::Writable);
        assert_eq!(s.send_capacity(), WINDOW);
        assert_eq!(s.on_ack(), Opened::No);
    }

    #[test]
    fn a_dialed_stream_opens_on_syn_not_on_ack() {
        let mut s = Stream::dialed(Addr::new(HostId(1), 2), 3);
        assert_eq!(s.on_ack(), Opened::No);
        assert_eq!(s.on_syn(), Opened::Writable);
        assert_eq!(s.send_capacity(), WINDOW);
        assert_eq!(s.on_syn(), Opened::No);
        assert_eq!(
            stream().on_syn(),
            Opened::No,
            "an accepted stream opens on ACK"
        );
    }

    #[test]
    fn finish_before_ack_is_deferred_to_the_ack() {
        let mut s = stream();
        assert!(!s.finish(None), "no FIN2 before SYN_ACK");
        assert!(s.is_finished());
        assert!(!s.finish(None));
        assert_eq!(s.on_ack(), Opened::Finished);
        assert_eq!(s.send_capacity(), 0);
        assert_eq!(s.on_ack(), Opened::No);
        let mut s = stream();
        assert!(s.abort(None), "an abort sends FIN2 even before the ACK");
        assert_eq!(s.on_ack(), Opened::No);
    }

    #[test]
    fn send_credit_comes_back_with_rewind_capped_at_one_window() {
        let mut s = stream();
        assert_eq!(s.on_ack(), Opened::Writable);
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
        assert!(
            !s.on_fin(),
            "the owner already knows there is something to read"
        );
        assert!(!s.on_fin());
        assert_eq!(s.on_data(Bytes::from_static(b"late")), Ok(false));
        assert_eq!(s.recv(), Recv::Data(Bytes::from_static(b"ab")));
        assert_eq!(s.recv(), Recv::Finished);
        let mut s = stream();
        assert!(s.on_fin(), "nothing buffered: the end itself is news");
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
