//! Anycast groups: each message goes to exactly one member that has credit, round-robin or by a stable
//! (rendezvous) hash of the envelope key; unacked messages are requeued on nack or leave; a bounded retention buffer
//! holds messages no member can take yet. Under the `block` overflow policy a buffer over its bound stalls its
//! publishers like a full subscriber queue does (see `flow`). A group is a topic's own (STOMP `/queue/`, Loom
//! rooms: [`GroupKey::Topic`]) or a named group on a pattern (MQTT `$share/<name>/<filter>`: [`GroupKey::Shared`]),
//! which is fed every message its pattern matches and ends with its last member.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ack::{AckHandle, MemberId, Settle};
use crate::config::{GroupOverflow, GroupPolicy, NoMemberPolicy};
use crate::envelope::{now_ms, Envelope, Protocol};
use crate::level::{below_low_water, Admit, Level};
use crate::metrics::{record_drop, DropReason};
use crate::queue::{Delivery, Queue, SubscriptionId};
use crate::topic::{Pattern, Topic};

/// How many unacked messages a member can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    /// No limit, and messages are settled as soon as they are handed over (STOMP `ack:auto`).
    AutoAck,
    /// At most this many unacked messages (STOMP prefetch, Loom stop-and-wait = 1). Zero pauses the member.
    Window(u32),
}

/// What a group did with an offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offered {
    Dispatched,
    /// Kept for later; `evicted` older messages were dropped to make room, and `stall` says the buffer is past its
    /// bound under the `block` policy, so the publisher should stall on the group.
    Retained {
        evicted: usize,
        stall: bool,
    },
    Dropped(DropReason),
}

#[derive(Clone)]
struct Pending {
    envelope: Arc<Envelope>,
    redelivered: bool,
    /// The earlier of the message's own expiry and the group's `ttl_ms` from when it was offered.
    expires_at_ms: Option<u64>,
}

impl Pending {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms > at)
    }
}

struct Member {
    id: MemberId,
    mailbox: Arc<Queue>,
    subscription: SubscriptionId,
    credit: Credit,
    unacked: HashMap<u64, Pending>,
    closed: bool,
}

impl Member {
    fn has_credit(&self) -> bool {
        !self.closed
            && match self.credit {
                Credit::AutoAck => true,
                Credit::Window(n) => self.unacked.len() < n as usize,
            }
    }
}

#[derive(Default)]
struct GroupState {
    members: Vec<Member>,
    round_robin: usize,
    backlog: VecDeque<Pending>,
    backlog_bytes: usize,
    next_tag: u64,
    level: Level,
}

/// What a group is the group of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey {
    /// The one group of an exact topic.
    Topic(Topic),
    /// A group named `name` on `pattern`; groups of other names on the same pattern are separate.
    Shared { name: Arc<str>, pattern: Pattern },
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupKey::Topic(topic) => write!(f, "{topic}"),
            GroupKey::Shared { name, pattern } => write!(f, "{name}@{pattern}"),
        }
    }
}

/// One anycast group.
pub struct Group {
    key: GroupKey,
    policy: GroupPolicy,
    state: Mutex<GroupState>,
    room: Notify,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("key", &self.key).finish()
    }
}

impl Settle for Group {
    fn settle(self: Arc<Self>, member: MemberId, tag: u64, nack: Option<bool>) {
        let mut state = self.state.lock();
        let Some(m) = state.members.iter_mut().find(|m| m.id == member) else {
            return;
        };
        let Some(mut pending) = m.unacked.remove(&tag) else {
            return;
        };
        match nack {
            Some(true) => {
                pending.redelivered = true;
                state.backlog_bytes += pending.envelope.size();
                state.backlog.push_front(pending);
            }
            Some(false) => record_drop(DropReason::Rejected, pending.envelope.origin.protocol),
            None => {}
        }
        self.drain(&mut state);
    }
}

/// Per-group numbers for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupStats {
    pub members: usize,
    pub ready_members: usize,
    pub retained: usize,
    pub unacked: usize,
}

fn rendezvous_weight(key: &[u8], member: MemberId) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    member.0.hash(&mut hasher);
    hasher.finish()
}

impl Group {
    pub(crate) fn new(key: GroupKey, policy: GroupPolicy) -> Group {
        Group {
            key,
            policy,
            state: Mutex::new(GroupState::default()),
            room: Notify::new(),
        }
    }

    pub fn key(&self) -> &GroupKey {
        &self.key
    }

    /// The protocol of the group's first member, if it has one: whom a message the group never saw would have
    /// reached, as far as drop counters go.
    pub(crate) fn member_protocol(&self) -> Option<Protocol> {
        let state = self.state.lock();
        state.members.first().map(|m| m.mailbox.owner.protocol)
    }

    pub(crate) fn join(
        self: &Arc<Self>,
        mailbox: Arc<Queue>,
        subscription: SubscriptionId,
        credit: Credit,
    ) -> MemberId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = MemberId(NEXT.fetch_add(1, Ordering::Relaxed));
        let mut state = self.state.lock();
        state.members.push(Member {
            id,
            mailbox,
            subscription,
            credit,
            unacked: HashMap::new(),
            closed: false,
        });
        self.drain(&mut state);
        id
    }

    pub(crate) fn leave(self: &Arc<Self>, member: MemberId) {
        let mut state = self.state.lock();
        let Some(index) = state.members.iter().position(|m| m.id == member) else {
            return;
        };
        let gone = state.members.remove(index);
        let mut unacked: Vec<(u64, Pending)> = gone.unacked.into_iter().collect();
        unacked.sort_by_key(|(tag, _)| *tag);
        for (_, mut pending) in unacked.into_iter().rev() {
            pending.redelivered = true;
            state.backlog_bytes += pending.envelope.size();
            state.backlog.push_front(pending);
        }
        self.drain(&mut state);
    }

    pub(crate) fn set_credit(self: &Arc<Self>, member: MemberId, credit: Credit) {
        let mut state = self.state.lock();
        if let Some(m) = state.members.iter_mut().find(|m| m.id == member) {
            m.credit = credit;
        }
        self.drain(&mut state);
    }

    /// Offers a new message to the group; `max_stall` bounds how long a `block` buffer over its bound stalls
    /// publishers before it just retains, up to twice its bound.
    pub(crate) fn offer(self: &Arc<Self>, envelope: Arc<Envelope>, max_stall: Duration) -> Offered {
        let mut state = self.state.lock();
        self.offer_locked(&mut state, envelope, max_stall)
    }

    /// Offers like [`Group::offer`] while `open` is set, checked under the group's lock (a durable binding's flag,
    /// see [`Group::close_and_purge`]).
    pub(crate) fn offer_while(
        self: &Arc<Self>,
        open: &AtomicBool,
        envelope: Arc<Envelope>,
        max_stall: Duration,
    ) -> Option<Offered> {
        let mut state = self.state.lock();
        open.load(Ordering::Acquire)
            .then(|| self.offer_locked(&mut state, envelope, max_stall))
    }

    /// Clears `open` and drops every retained message (not counted as drops: they are deleted on purpose), under
    /// the group's lock: no [`Group::offer_while`] of that flag adds anything afterwards.
    pub(crate) fn close_and_purge(&self, open: &AtomicBool) {
        let mut state = self.state.lock();
        open.store(false, Ordering::Release);
        state.backlog.clear();
        state.backlog_bytes = 0;
        if state.level.drained() {
            self.room.notify_waiters();
        }
    }

    fn offer_locked(
        self: &Arc<Self>,
        state: &mut GroupState,
        envelope: Arc<Envelope>,
        max_stall: Duration,
    ) -> Offered {
        if state.members.is_empty() && self.policy.no_member == NoMemberPolicy::Discard {
            record_drop(DropReason::NoGroupMember, envelope.origin.protocol);
            return Offered::Dropped(DropReason::NoGroupMember);
        }
        let ttl_expiry = self
            .policy
            .ttl_ms
            .map(|ttl| envelope.timestamp_ms.saturating_add(ttl));
        let expires_at_ms = match (envelope.expires_at_ms, ttl_expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut pending = Pending {
            envelope,
            redelivered: false,
            expires_at_ms,
        };
        while let Some(target) = Self::target(state, &pending.envelope) {
            match self.deliver(state, target, pending) {
                Ok(()) => return Offered::Dispatched,
                Err(returned) => pending = returned,
            }
        }
        self.retain(state, pending, max_stall)
    }

    fn retain(&self, state: &mut GroupState, pending: Pending, max_stall: Duration) -> Offered {
        let size = pending.envelope.size();
        let full = |s: &GroupState| {
            s.backlog.len() >= self.policy.max_messages
                || s.backlog_bytes + size > self.policy.max_bytes
        };
        if full(state) {
            match self.policy.overflow {
                GroupOverflow::DropNewest => {
                    record_drop(
                        DropReason::GroupFullDropNewest,
                        pending.envelope.origin.protocol,
                    );
                    return Offered::Dropped(DropReason::GroupFullDropNewest);
                }
                GroupOverflow::DropOldest => {
                    let mut evicted = 0;
                    while full(state) {
                        let Some(oldest) = state.backlog.pop_front() else {
                            break;
                        };
                        state.backlog_bytes -= oldest.envelope.size();
                        record_drop(
                            DropReason::GroupFullDropOldest,
                            oldest.envelope.origin.protocol,
                        );
                        evicted += 1;
                    }
                    state.backlog_bytes += size;
                    state.backlog.push_back(pending);
                    return Offered::Retained {
                        evicted,
                        stall: false,
                    };
                }
                GroupOverflow::Block => {
                    let hard = state.backlog.len() >= self.policy.max_messages.saturating_mul(2)
                        || state.backlog_bytes + size > self.policy.max_bytes.saturating_mul(2);
                    let stall = match state.level.admit(hard, max_stall) {
                        Admit::Hard => {
                            record_drop(
                                DropReason::GroupFullDropNewest,
                                pending.envelope.origin.protocol,
                            );
                            return Offered::Dropped(DropReason::GroupFullDropNewest);
                        }
                        Admit::Stall => true,
                        Admit::Expired => false,
                    };
                    state.backlog_bytes += size;
                    state.backlog.push_back(pending);
                    return Offered::Retained { evicted: 0, stall };
                }
            }
        }
        state.backlog_bytes += size;
        state.backlog.push_back(pending);
        Offered::Retained {
            evicted: 0,
            stall: false,
        }
    }

    /// The member that should get `envelope` now, if any: the key's rendezvous member when it has credit, or the
    /// next member with credit round-robin for messages without key.
    fn target(state: &mut GroupState, envelope: &Envelope) -> Option<usize> {
        match &envelope.key {
            Some(key) => {
                let live = state.members.iter().enumerate().filter(|(_, m)| !m.closed);
                let (index, member) = live.max_by_key(|(_, m)| rendezvous_weight(key, m.id))?;
                member.has_credit().then_some(index)
            }
            None => {
                let n = state.members.len();
                let start = state.round_robin;
                let index = (0..n)
                    .map(|i| (start + i) % n)
                    .find(|&i| state.members[i].has_credit())?;
                state.round_robin = (index + 1) % n.max(1);
                Some(index)
            }
        }
    }

    fn deliver(
        self: &Arc<Self>,
        state: &mut GroupState,
        index: usize,
        pending: Pending,
    ) -> Result<(), Pending> {
        let tag = state.next_tag;
        state.next_tag += 1;
        let member = &mut state.members[index];
        let ack = match member.credit {
            Credit::AutoAck => None,
            Credit::Window(_) => Some(AckHandle::new(self.clone(), member.id, tag)),
        };
        let delivery = Delivery {
            envelope: pending.envelope.clone(),
            subscription: member.subscription,
            ack,
            redelivered: pending.redelivered,
            expires_at_ms: pending.expires_at_ms,
        };
        match member.mailbox.push_group(delivery) {
            Ok(()) => {
                if matches!(member.credit, Credit::Window(_)) {
                    member.unacked.insert(tag, pending);
                }
                Ok(())
            }
            Err(_) => {
                member.closed = true;
                Err(pending)
            }
        }
    }

    /// Hands retained messages to members that have credit, in order, then wakes stalled publishers once the
    /// buffer is at its low-water mark.
    fn drain(self: &Arc<Self>, state: &mut GroupState) {
        let mut i = 0;
        let now = now_ms();
        while i < state.backlog.len() && state.members.iter().any(Member::has_credit) {
            if state.backlog[i].is_expired(now) {
                if let Some(expired) = state.backlog.remove(i) {
                    state.backlog_bytes -= expired.envelope.size();
                    record_drop(DropReason::Expired, expired.envelope.origin.protocol);
                }
                continue;
            }
            let envelope = state.backlog[i].envelope.clone();
            match Self::target(state, &envelope) {
                Some(target) => {
                    let Some(pending) = state.backlog.remove(i) else {
                        break;
                    };
                    state.backlog_bytes -= pending.envelope.size();
                    if let Err(pending) = self.deliver(state, target, pending) {
                        state.backlog_bytes += pending.envelope.size();
                        state.backlog.insert(i, pending);
                    }
                }
                None => i += 1,
            }
        }
        if state.level.is_over()
            && below_low_water(
                state.backlog.len(),
                state.backlog_bytes,
                self.policy.max_messages,
                self.policy.max_bytes,
            )
            && state.level.drained()
        {
            self.room.notify_waiters();
        }
    }

    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    /// Over its bound under `block`: publishers that stalled on it keep waiting.
    pub(crate) fn is_over(&self) -> bool {
        self.state.lock().level.is_over()
    }

    /// A topic's group with no member, nothing retained and the discard policy can be forgotten; a named group
    /// once it has no member (what it retained goes with it).
    pub(crate) fn is_idle(&self) -> bool {
        let state = self.state.lock();
        let shared = matches!(self.key, GroupKey::Shared { .. });
        state.members.is_empty()
            && (shared
                || (state.backlog.is_empty() && self.policy.no_member == NoMemberPolicy::Discard))
    }

    pub fn stats(&self) -> GroupStats {
        let state = self.state.lock();
        GroupStats {
            members: state.members.len(),
            ready_members: state.members.iter().filter(|m| m.has_credit()).count(),
            retained: state.backlog.len(),
            unacked: state.members.iter().map(|m| m.unacked.len()).sum(),
        }
    }
}
