//! Settling one group delivery: the [`AckHandle`] a consumer acks or nacks with, and what the group that handed the
//! delivery over does then ([`Settle`]), so that a queue carries handles without knowing groups.

use std::sync::Arc;

/// Identifies a member within its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberId(pub(crate) u64);

/// What settles a delivery: the group that handed it to a member.
pub(crate) trait Settle: Send + Sync + std::fmt::Debug {
    /// `nack`: `None` acks; `Some(requeue)` nacks, requeueing the message (marked redelivered) or dropping it.
    fn settle(self: Arc<Self>, member: MemberId, tag: u64, nack: Option<bool>);
}

/// Settles one group delivery. Dropping it without settling leaves the message unacked until the member leaves.
#[derive(Debug)]
pub struct AckHandle {
    group: Arc<dyn Settle>,
    member: MemberId,
    tag: u64,
}

impl AckHandle {
    pub(crate) fn new(group: Arc<dyn Settle>, member: MemberId, tag: u64) -> AckHandle {
        AckHandle { group, member, tag }
    }

    /// The message was processed.
    pub fn ack(self) {
        self.group.settle(self.member, self.tag, None);
    }

    /// The message was not processed: requeue it (marked redelivered) or drop it.
    pub fn nack(self, requeue: bool) {
        self.group.settle(self.member, self.tag, Some(requeue));
    }
}
