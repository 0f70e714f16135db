//! A subscriber: one bounded queue that receives deliveries for all of a connection's subscriptions and group
//! memberships. A fanout delivery that finds it at its bound stalls its publisher (see `flow`); the slow-consumer
//! policy applies once it has stayed over its bound for the stall bound, or reached twice its bound.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::anycast::{AckHandle, Credit, Group, GroupKey, MemberId};
use crate::bus::BusInner;
use crate::config::{QueueLimits, SlowConsumerPolicy};
use crate::envelope::{now_ms, Envelope, Origin};
use crate::events::Interested;
use crate::flow::{below_low_water, Admit, Level};
use crate::metrics::{record_drop, DropReason};
use crate::topic::{Pattern, Segment, Topic};

/// Identifies one subscription or group membership, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl SubscriptionId {
    pub(crate) fn next() -> SubscriptionId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriptionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Hashes subscription ids (unique counters) with one multiplication; receive checks every delivery's id.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One message handed to a subscriber.
#[derive(Debug)]
pub struct Delivery {
    pub envelope: Arc<Envelope>,
    pub subscription: SubscriptionId,
    /// Present for group deliveries that must be settled (acked or nacked).
    pub ack: Option<AckHandle>,
    /// The message was delivered before and requeued (nack, member leave or disconnect).
    pub redelivered: bool,
    /// When the message expires in this queue: its own expiry, or a group's `ttl_ms` when earlier.
    pub(crate) expires_at_ms: Option<u64>,
}

/// Why a mailbox stopped receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("slow consumer: the subscriber queue was full")]
    SlowConsumer,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("inbox {0} belongs to another connection")]
    NotInboxOwner(Topic),
    #[error("internal topics can only be subscribed by exact name")]
    InternalWildcard,
    #[error("anycast groups need an exact topic")]
    GroupPattern,
}

/// Options of one mailbox; [`MailboxOptions::from`] a bus config gives the defaults.
#[derive(Debug, Clone, Copy)]
pub struct MailboxOptions {
    pub limits: QueueLimits,
    pub policy: SlowConsumerPolicy,
    /// Whether a publisher waits for this queue when it is over its bound (flow control), or the slow-consumer
    /// policy applies at once: an observer (`gatewayctl tap`) must never slow publishers down.
    pub stall_publishers: bool,
}

/// A queued delivery; only fanout deliveries count against the queue limits.
struct Queued {
    delivery: Delivery,
    /// Bytes charged to the queue limits; zero for group deliveries.
    fanout_bytes: usize,
    fanout: bool,
}

struct QueueState {
    items: VecDeque<Queued>,
    fanout_bytes: usize,
    fanout_len: usize,
    closed: Option<Closed>,
    level: Level,
}

/// The part of a mailbox the bus holds in its index.
pub(crate) struct MailboxShared {
    pub(crate) owner: Origin,
    options: MailboxOptions,
    queue: Mutex<QueueState>,
    waker: AtomicWaker,
    /// Publishers stalled on this queue wait here for it to drain to its low-water mark or close.
    room: Notify,
}

/// What one push did.
pub(crate) enum Pushed {
    Queued,
    /// Queued over the bound: the publisher should stall on this queue.
    Stall,
    Dropped(DropReason),
    Closed,
}

impl MailboxShared {
    /// Queues a fanout delivery; a queue at its bound takes it and asks for a stall until it has been over its
    /// bound for `max_stall` (or reaches twice its bound), then applies the slow-consumer policy.
    pub(crate) fn push_fanout(
        &self,
        envelope: &Arc<Envelope>,
        size: usize,
        subscription: SubscriptionId,
        max_stall: Duration,
    ) -> Pushed {
        let limits = self.options.limits;
        let max_stall = if self.options.stall_publishers {
            max_stall
        } else {
            Duration::ZERO
        };
        let mut queue = self.queue.lock();
        if queue.closed.is_some() {
            return Pushed::Closed;
        }
        let mut stall = false;
        if queue.fanout_len >= limits.max_messages || queue.fanout_bytes + size > limits.max_bytes {
            let hard = queue.fanout_len >= limits.max_messages.saturating_mul(2)
                || queue.fanout_bytes + size > limits.max_bytes.saturating_mul(2);
            match (queue.level.admit(hard, max_stall), self.options.policy) {
                (Admit::Stall, _) => stall = true,
                (_, SlowConsumerPolicy::Disconnect) => {
                    queue.closed = Some(Closed::SlowConsumer);
                    queue.items.clear();
                    drop(queue);
                    self.waker.wake();
                    self.room.notify_waiters();
                    return Pushed::Dropped(DropReason::SlowConsumerDisconnect);
                }
                (_, SlowConsumerPolicy::DropNewest) => {
                    return Pushed::Dropped(DropReason::QueueFullDropNewest)
                }
                (_, SlowConsumerPolicy::DropOldest) => {
                    while queue.fanout_len > 0
                        && (queue.fanout_len >= limits.max_messages
                            || queue.fanout_bytes + size > limits.max_bytes)
                    {
                        let Some(oldest) = queue.items.iter().position(|q| q.fanout) else {
                            break;
                        };
                        if let Some(evicted) = queue.items.remove(oldest) {
                            queue.fanout_len -= 1;
                            queue.fanout_bytes -= evicted.fanout_bytes;
                            crate::metrics::record_drop(
                                DropReason::QueueFullDropOldest,
                                self.owner.protocol,
                            );
                        }
                    }
                }
            }
        }
        let was_empty = queue.items.is_empty();
        queue.fanout_len += 1;
        queue.fanout_bytes += size;
        let delivery = Delivery {
            envelope: envelope.clone(),
            subscription,
            ack: None,
            redelivered: false,
            expires_at_ms: envelope.expires_at_ms,
        };
        queue.items.push_back(Queued {
            delivery,
            fanout_bytes: size,
            fanout: true,
        });
        drop(queue);
        if was_empty {
            self.waker.wake();
        }
        if stall {
            Pushed::Stall
        } else {
            Pushed::Queued
        }
    }

    /// Group deliveries are bounded by the member's credit, not by the queue limits.
    pub(crate) fn push_group(&self, delivery: Delivery) -> Result<(), Delivery> {
        let mut queue = self.queue.lock();
        if queue.closed.is_some() {
            return Err(delivery);
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(Queued {
            delivery,
            fanout_bytes: 0,
            fanout: false,
        });
        drop(queue);
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    pub(crate) fn depth(&self) -> usize {
        self.queue.lock().items.len()
    }

    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    /// Open and over its bound: publishers that stalled on it keep waiting.
    pub(crate) fn is_over(&self) -> bool {
        let queue = self.queue.lock();
        queue.closed.is_none() && queue.level.is_over()
    }

    /// Since when this open queue has been over its bound, stalling its publishers.
    pub(crate) fn over_since(&self) -> Option<Instant> {
        let queue = self.queue.lock();
        queue
            .closed
            .is_none()
            .then(|| queue.level.over_since())
            .flatten()
    }

    /// Wakes stalled publishers for good: the mailbox is gone.
    fn release(&self) {
        self.queue.lock().level.drained();
        self.room.notify_waiters();
    }
}

enum Membership {
    Fanout(Pattern),
    Member { group: Arc<Group>, member: MemberId },
}

/// A connection's handle on the bus: subscribe, join groups, receive deliveries. Dropping it removes every
/// subscription and leaves every group (unacked group messages are requeued as redelivered).
pub struct Mailbox {
    shared: Arc<MailboxShared>,
    bus: Arc<BusInner>,
    memberships: HashMap<SubscriptionId, Membership, BuildHasherDefault<IdHasher>>,
    id: u64,
}

impl Mailbox {
    pub(crate) fn new(
        bus: Arc<BusInner>,
        owner: Origin,
        options: MailboxOptions,
        id: u64,
    ) -> Mailbox {
        let shared = Arc::new(MailboxShared {
            owner,
            options,
            queue: Mutex::new(QueueState {
                items: VecDeque::new(),
                fanout_bytes: 0,
                fanout_len: 0,
                closed: None,
                level: Level::default(),
            }),
            waker: AtomicWaker::new(),
            room: Notify::new(),
        });
        bus.register_mailbox(id, &shared);
        Mailbox {
            shared,
            bus,
            memberships: HashMap::default(),
            id,
        }
    }

    pub fn owner(&self) -> Origin {
        self.shared.owner
    }

    /// This connection's private inbox topic `$inbox.<connection>.<name>`; only this mailbox may subscribe to it.
    pub fn inbox(&self, name: &[u8]) -> Topic {
        crate::names::inbox(self.shared.owner.connection, name)
    }

    /// Subscribes to a pattern (fanout). Messages published after this returns are delivered.
    pub fn subscribe(&mut self, pattern: Pattern) -> Result<SubscriptionId, SubscribeError> {
        self.check_internal(&pattern)?;
        let id = SubscriptionId::next();
        self.bus.add_fanout(&pattern, self.shared.clone(), id);
        self.memberships.insert(id, Membership::Fanout(pattern));
        Ok(id)
    }

    /// Subscribes to a topic with history and returns, atomically with the subscription, the retained messages
    /// after `after` (no gap and no duplicate between the two). `None` means the topic keeps no history.
    pub fn subscribe_with_history(
        &mut self,
        topic: &Topic,
        after: crate::history::Since,
    ) -> Result<(SubscriptionId, Option<crate::history::Recovery>), SubscribeError> {
        let pattern = Pattern::exact(topic);
        self.check_internal(&pattern)?;
        let id = SubscriptionId::next();
        let recovery = self
            .bus
            .add_fanout_with_history(topic, self.shared.clone(), id, after);
        self.memberships.insert(id, Membership::Fanout(pattern));
        Ok((id, recovery))
    }

    /// Joins the anycast group on `topic` with `credit`; the group is created with `default_policy` unless a
    /// configured rule for the topic applies.
    pub fn join_group(
        &mut self,
        topic: &Topic,
        credit: Credit,
        default_policy: crate::config::GroupPolicy,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.check_internal(&Pattern::exact(topic))?;
        let id = SubscriptionId::next();
        let group = self.bus.group(topic, default_policy);
        let member = group.join(self.shared.clone(), id, credit);
        self.bus
            .emit_interest(&Pattern::exact(topic), Interested::Group, true);
        self.memberships
            .insert(id, Membership::Member { group, member });
        Ok(id)
    }

    /// Joins the group `name` on `pattern` (an MQTT shared subscription) with `credit`: the group gets every
    /// message the pattern matches and hands each to one member; groups of other names on the pattern are
    /// separate, and a topic's own group (`join_group`) is not one of them. Created with `policy` when missing.
    pub fn join_shared(
        &mut self,
        name: &str,
        pattern: &Pattern,
        credit: Credit,
        policy: crate::config::GroupPolicy,
    ) -> Result<SubscriptionId, SubscribeError> {
        self.check_internal(pattern)?;
        let id = SubscriptionId::next();
        let joined = self
            .bus
            .join_shared(name, pattern, policy, self.shared.clone(), id, credit);
        self.memberships.insert(
            id,
            Membership::Member {
                group: joined.group,
                member: joined.member,
            },
        );
        Ok(id)
    }

    /// Changes the credit of a group membership (for example a new STOMP prefetch window).
    pub fn set_credit(&self, id: SubscriptionId, credit: Credit) {
        if let Some(Membership::Member { group, member }) = self.memberships.get(&id) {
            group.set_credit(*member, credit);
        }
    }

    /// Ends a subscription or membership. No message published after this returns is delivered for it, and
    /// deliveries still queued for it are discarded on receive (group messages are requeued by the group).
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        match self.memberships.remove(&id) {
            Some(membership) => {
                self.end(id, membership);
                true
            }
            None => false,
        }
    }

    fn end(&self, id: SubscriptionId, membership: Membership) {
        match membership {
            Membership::Fanout(pattern) => self.bus.remove_fanout(&pattern, id),
            Membership::Member { group, member } => {
                group.leave(member);
                if let GroupKey::Topic(topic) = group.key() {
                    self.bus
                        .emit_interest(&Pattern::exact(topic), Interested::Group, false);
                }
                self.bus.collect_group(&group);
            }
        }
    }

    pub fn subscription_count(&self) -> usize {
        self.memberships.len()
    }

    fn check_internal(&self, pattern: &Pattern) -> Result<(), SubscribeError> {
        let Some(first) = pattern.segments().first() else {
            return Ok(());
        };
        let Segment::Literal(first) = first else {
            return Ok(());
        };
        if !first.starts_with('$') {
            return Ok(());
        }
        let Some(topic) = pattern.as_topic() else {
            return Err(SubscribeError::InternalWildcard);
        };
        if &**first == crate::names::INBOX_TOKEN {
            let owner = self.shared.owner.connection.0.to_string();
            if topic.tokens().nth(1) != Some(owner.as_str()) {
                return Err(SubscribeError::NotInboxOwner(topic));
            }
        }
        Ok(())
    }

    /// Waits for at least one delivery and moves up to `max` of them into `out`. Returns how many were added.
    pub async fn recv_batch(
        &mut self,
        out: &mut Vec<Delivery>,
        max: usize,
    ) -> Result<usize, Closed> {
        poll_fn(|cx| self.poll_batch(cx, out, max)).await
    }

    /// Waits for one delivery.
    pub async fn recv(&mut self) -> Result<Delivery, Closed> {
        let mut one = Vec::with_capacity(1);
        loop {
            self.recv_batch(&mut one, 1).await?;
            if let Some(delivery) = one.pop() {
                return Ok(delivery);
            }
        }
    }

    /// Moves up to `max` ready deliveries into `out` without waiting.
    pub fn try_recv_batch(&mut self, out: &mut Vec<Delivery>, max: usize) -> Result<usize, Closed> {
        let mut queue = self.shared.queue.lock();
        if let Some(closed) = queue.closed {
            return Err(closed);
        }
        let mut added = 0;
        let now = now_ms();
        // Expired group deliveries are settled once the queue's lock is released (settling may hand the next
        // message to this very mailbox).
        let mut expired = Vec::new();
        while added < max {
            let Some(Queued {
                delivery,
                fanout_bytes,
                fanout,
            }) = queue.items.pop_front()
            else {
                break;
            };
            if fanout {
                queue.fanout_len -= 1;
                queue.fanout_bytes -= fanout_bytes;
            }
            if !self.memberships.contains_key(&delivery.subscription) {
                continue;
            }
            if delivery.expires_at_ms.is_some_and(|at| now > at) {
                record_drop(DropReason::Expired, self.shared.owner.protocol);
                expired.extend(delivery.ack);
                continue;
            }
            out.push(delivery);
            added += 1;
        }
        let limits = self.shared.options.limits;
        let resume = queue.level.is_over()
            && below_low_water(
                queue.fanout_len,
                queue.fanout_bytes,
                limits.max_messages,
                limits.max_bytes,
            )
            && queue.level.drained();
        drop(queue);
        // Settled, so a group member's window gets its place back.
        for ack in expired {
            ack.ack();
        }
        if resume {
            self.shared.room.notify_waiters();
        }
        if added > 0 {
            let taken = &out[out.len() - added..];
            self.bus
                .metrics
                .delivered(self.shared.owner.protocol, taken);
            if let Some(hook) = self.bus.trace.get() {
                for delivery in taken {
                    hook.delivered(self.shared.owner.protocol, &delivery.envelope);
                }
            }
        }
        Ok(added)
    }

    fn poll_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<Delivery>,
        max: usize,
    ) -> Poll<Result<usize, Closed>> {
        self.shared.waker.register(cx.waker());
        match self.try_recv_batch(out, max) {
            Ok(0) => Poll::Pending,
            other => Poll::Ready(other),
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        for (id, membership) in std::mem::take(&mut self.memberships) {
            self.end(id, membership);
        }
        self.bus.unregister_mailbox(self.id);
        self.shared.release();
    }
}
