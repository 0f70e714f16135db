//! BEGIN/COMMIT/ABORT for one connection (docs/protocols/stomp.md, "Subscribing and
//! acknowledging"): SEND, ACK and NACK frames that carry a `transaction` header are held until
//! COMMIT hands them back in order, or ABORT drops them (held ACKs were never applied, so their
//! deliveries simply stay unsettled).
//!
//! Caps follow RabbitMQ (16 open transactions, 1024 frames each) plus a byte budget for all
//! held frames of the connection, which RabbitMQ does not have: without it 16 × 1024
//! frames of 4 MiB could be held per connection.

use std::collections::BTreeMap;
use std::fmt;

use super::codec::frame::{header, Command, Frame};
use super::error::StompError;

/// Which transaction cap was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxLimit {
    /// Open transactions per connection.
    Transactions,
    /// Frames held by one transaction.
    Frames,
    /// Bytes held by all transactions of the connection.
    Bytes,
}

impl fmt::Display for TxLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TxLimit::Transactions => "Too many open transactions",
            TxLimit::Frames => "Too many frames in one transaction",
            TxLimit::Bytes => "Too many bytes held in transactions",
        })
    }
}

/// The `[stomp.transactions]` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TxLimits {
    pub max_transactions: usize,
    pub max_frames: usize,
    /// Sum of [`held_size`] over every held frame of the connection.
    pub max_bytes: usize,
}

impl Default for TxLimits {
    fn default() -> Self {
        TxLimits {
            max_transactions: 16,
            max_frames: 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a held frame counts against [`TxLimits::max_bytes`]: body plus header bytes.
pub fn held_size(frame: &Frame) -> usize {
    frame.headers.iter().fold(frame.body.len(), |n, h| {
        n.saturating_add(h.name.len()).saturating_add(h.value.len())
    })
}

/// The open transactions of one connection.
#[derive(Debug, Default)]
pub struct Transactions {
    limits: TxLimits,
    open: BTreeMap<String, Vec<Frame>>,
    held_bytes: usize,
}

impl Transactions {
    pub fn new(limits: TxLimits) -> Self {
        Transactions {
            limits,
            open: BTreeMap::new(),
            held_bytes: 0,
        }
    }

    /// BEGIN `id`.
    pub fn begin(&mut self, id: &str) -> Result<(), StompError> {
        if self.open.contains_key(id) {
            return Err(StompError::DuplicateTransaction { id: id.to_owned() });
        }
        if self.open.len() >= self.limits.max_transactions {
            return Err(StompError::TransactionLimit {
                limit: TxLimit::Transactions,
                max: self.limits.max_transactions,
            });
        }
        self.open.insert(id.to_owned(), Vec::new());
        Ok(())
    }

    /// Hold `frame` if it is a SEND, ACK or NACK with a `transaction` header (`Ok(None)`);
    /// give any other frame back for processing now (`Ok(Some(frame))`).
    pub fn hold(&mut self, frame: Frame) -> Result<Option<Frame>, StompError> {
        if !matches!(frame.command, Command::Send | Command::Ack | Command::Nack) {
            return Ok(Some(frame));
        }
        let Some(id) = frame.header_str(header::TRANSACTION)? else {
            return Ok(Some(frame));
        };
        let size = held_size(&frame);
        let Some(held) = self.open.get_mut(id) else {
            return Err(StompError::UnknownTransaction { id: id.to_owned() });
        };
        if held.len() >= self.limits.max_frames {
            return Err(StompError::TransactionLimit {
                limit: TxLimit::Frames,
                max: self.limits.max_frames,
            });
        }
        match self.held_bytes.checked_add(size) {
            Some(total) if total <= self.limits.max_bytes => self.held_bytes = total,
            _ => {
                return Err(StompError::TransactionLimit {
                    limit: TxLimit::Bytes,
                    max: self.limits.max_bytes,
                })
            }
        }
        held.push(frame);
        Ok(None)
    }

    /// COMMIT `id`: its frames, in the order they arrived, to process now.
    pub fn commit(&mut self, id: &str) -> Result<Vec<Frame>, StompError> {
        let frames = self
            .open
            .remove(id)
            .ok_or_else(|| StompError::UnknownTransaction { id: id.to_owned() })?;
        self.release(&frames);
        Ok(frames)
    }

    /// ABORT `id`: its frames are dropped.
    pub fn abort(&mut self, id: &str) -> Result<(), StompError> {
        let frames = self
            .open
            .remove(id)
            .ok_or_else(|| StompError::UnknownTransaction { id: id.to_owned() })?;
        self.release(&frames);
        Ok(())
    }

    /// Abort every open transaction (DISCONNECT or connection lost).
    pub fn abort_all(&mut self) {
        self.open.clear();
        self.held_bytes = 0;
    }

    pub fn is_open(&self, id: &str) -> bool {
        self.open.contains_key(id)
    }

    /// Open transactions.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn release(&mut self, frames: &[Frame]) {
        let size = frames
            .iter()
            .fold(0usize, |n, f| n.saturating_add(held_size(f)));
        self.held_bytes = self.held_bytes.saturating_sub(size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(tx: &str, body: &'static str) -> Frame {
        Frame::new(Command::Send)
            .with_header("destination", "/queue/a")
            .with_header("transaction", tx.to_owned())
            .with_body(body)
    }

    #[test]
    fn commit_returns_held_frames_in_order() {
        let mut t = Transactions::default();
        t.begin("tx1").unwrap();
        assert_eq!(t.hold(send("tx1", "a")), Ok(None));
        let ack = Frame::new(Command::Ack)
            .with_header("id", "1")
            .with_header("transaction", "tx1");
        assert_eq!(t.hold(ack.clone()), Ok(None));
        assert_eq!(t.hold(send("tx1", "b")), Ok(None));
        let frames = t.commit("tx1").unwrap();
        assert_eq!(frames, [send("tx1", "a"), ack, send("tx1", "b")]);
        assert!(!t.is_open("tx1"));
        assert_eq!(t.held_bytes, 0);
    }

    #[test]
    fn abort_drops_held_frames() {
        let mut t = Transactions::default();
        t.begin("tx").unwrap();
        assert_eq!(t.hold(send("tx", "a")), Ok(None));
        assert_eq!(t.abort("tx"), Ok(()));
        assert_eq!(
            t.commit("tx"),
            Err(StompError::UnknownTransaction { id: "tx".into() })
        );
        // The id can be used again.
        t.begin("tx").unwrap();
        assert_eq!(t.commit("tx"), Ok(vec![]));
    }

    #[test]
    fn frames_outside_transactions_pass_through() {
        let mut t = Transactions::default();
        let plain = Frame::new(Command::Send).with_header("destination", "/queue/a");
        assert_eq!(t.hold(plain.clone()), Ok(Some(plain)));
        // Only SEND/ACK/NACK are held; others keep their `transaction` header unread.
        let sub = Frame::new(Command::Subscribe).with_header("transaction", "nope");
        assert_eq!(t.hold(sub.clone()), Ok(Some(sub)));
    }

    #[test]
    fn transaction_errors() {
        let mut t = Transactions::default();
        t.begin("a").unwrap();
        assert_eq!(
            t.begin("a"),
            Err(StompError::DuplicateTransaction { id: "a".into() })
        );
        assert_eq!(
            t.hold(send("zz", "x")),
            Err(StompError::UnknownTransaction { id: "zz".into() })
        );
        assert_eq!(
            t.abort("zz"),
            Err(StompError::UnknownTransaction { id: "zz".into() })
        );
        t.abort_all();
        assert!(t.is_empty());
    }

    #[test]
    fn caps() {
        let mut t = Transactions::new(TxLimits {
            max_transactions: 2,
            max_frames: 2,
            max_bytes: 1000,
        });
        t.begin("a").unwrap();
        t.begin("b").unwrap();
        assert_eq!(
            t.begin("c"),
            Err(StompError::TransactionLimit {
                limit: TxLimit::Transactions,
                max: 2
            })
        );
        t.hold(send("a", "1")).unwrap();
        t.hold(send("a", "2")).unwrap();
        assert_eq!(
            t.hold(send("a", "3")),
            Err(StompError::TransactionLimit {
                limit: TxLimit::Frames,
                max: 2
            })
        );
        let big = Frame::new(Command::Send)
            .with_header("transaction", "b")
            .with_body(vec![0u8; 990]);
        assert_eq!(
            t.hold(big),
            Err(StompError::TransactionLimit {
                limit: TxLimit::Bytes,
                max: 1000
            })
        );
        // Committing releases the budget.
        t.commit("a").unwrap();
        let fits = Frame::new(Command::Send)
            .with_header("transaction", "b")
            .with_body(vec![0u8; 980]);
        assert_eq!(t.hold(fits), Ok(None));
    }
}
