//! Per-topic sequencer and bounded history for topics configured with history, so a reconnecting client can
//! recover what it missed. The bus numbers a topic itself (dense offsets 1, 2, 3, … within a random epoch), or a
//! cluster backend's log numbers it (offsets increasing but not dense per topic, within the log's epoch); either
//! way completeness is judged by the offset of the newest message that is gone, never by assuming density.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use crate::config::HistoryPolicy;
use crate::envelope::{now_ms, Envelope, Position};

/// Where a recovering subscriber wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Everything still retained.
    Beginning,
    /// Everything after this position.
    After(Position),
}

/// Retained messages handed to a subscriber together with its subscription.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub messages: Vec<Arc<Envelope>>,
    /// Position of the newest message published on the topic (offset 0 before the first).
    pub top: Position,
    /// False when some of the requested messages are gone (other epoch, or evicted by size/count/TTL).
    pub complete: bool,
}

pub(crate) struct HistoryState {
    epoch: u64,
    next_offset: u64,
    /// Offset of the newest message of this topic that is no longer retained (0: nothing lost).
    lost_through: u64,
    entries: VecDeque<Arc<Envelope>>,
    bytes: usize,
    policy: HistoryPolicy,
}

/// The history of one topic.
pub(crate) struct TopicHistory {
    state: Mutex<HistoryState>,
}

impl TopicHistory {
    pub(crate) fn new(policy: HistoryPolicy) -> TopicHistory {
        TopicHistory {
            state: Mutex::new(HistoryState {
                epoch: rand::random::<u64>() >> 1,
                next_offset: 1,
                lost_through: 0,
                entries: VecDeque::new(),
                bytes: 0,
                policy,
            }),
        }
    }

    /// Publishers hold this lock while they assign an offset and deliver, so subscribers see offsets in order.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HistoryState> {
        self.state.lock()
    }
}

impl HistoryState {
    /// Assigns the next position to `envelope`.
    pub(crate) fn sequence(&mut self, envelope: &mut Envelope) {
        envelope.position = Some(Position {
            epoch: self.epoch,
            offset: self.next_offset,
        });
        self.next_offset += 1;
    }

    /// Takes a position a cluster log assigned. Returns false for a message already recorded (same epoch, offset
    /// not above the newest one): it must not be delivered again. A new epoch (the log was recreated) starts an
    /// empty history. `floor`: offsets up to it that this node never saw may exist and are gone.
    pub(crate) fn adopt(&mut self, position: Position, floor: u64) -> bool {
        if position.epoch != self.epoch {
            self.enter_epoch(position.epoch);
        } else if position.offset < self.next_offset {
            return false;
        }
        self.lost_through = self
            .lost_through
            .max(floor.min(position.offset.saturating_sub(1)));
        self.next_offset = position.offset + 1;
        true
    }

    /// Switches to the cluster log's epoch (known before its first message reaches this node), starting empty.
    pub(crate) fn enter_epoch(&mut self, epoch: u64) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.next_offset = 1;
            self.entries.clear();
            self.bytes = 0;
            self.lost_through = 0;
        }
    }

    pub(crate) fn append(&mut self, envelope: Arc<Envelope>) {
        self.bytes += envelope.size();
        self.entries.push_back(envelope);
        self.evict(now_ms());
    }

    fn evict(&mut self, now: u64) {
        let ttl = u64::try_from(self.policy.ttl.as_millis()).unwrap_or(u64::MAX);
        while let Some(oldest) = self.entries.front() {
            let expired =
                self.policy.ttl != Duration::ZERO && now.saturating_sub(oldest.timestamp_ms) > ttl;
            if !expired
                && self.entries.len() <= self.policy.max_messages
                && self.bytes <= self.policy.max_bytes
            {
                break;
            }
            self.bytes -= oldest.size();
            if let Some(position) = oldest.position {
                self.lost_through = position.offset;
            }
            self.entries.pop_front();
        }
    }

    pub(crate) fn top(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.next_offset - 1,
        }
    }

    pub(crate) fn recover(&mut self, since: Since) -> Recovery {
        self.evict(now_ms());
        let top = self.top();
        let (first_wanted, complete) = match since {
            Since::Beginning => (1, self.lost_through == 0),
            Since::After(p) if p.epoch != self.epoch => (1, false),
            Since::After(p) => (p.offset + 1, self.lost_through <= p.offset),
        };
        let messages = self
            .entries
            .iter()
            .filter(|e| e.position.is_some_and(|p| p.offset >= first_wanted))
            .cloned()
            .collect();
        Recovery {
            messages,
            top,
            complete,
        }
    }
}
