//! A connection's handle on the bus: its subscriptions and group memberships, and the receive side of its one
//! bounded [`Queue`] (`queue`: the bound, the stalls and the slow-consumer policy).

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::ack::MemberId;
use crate::anycast::{Credit, Group, GroupKey};
use crate::envelope::Origin;
use crate::events::Interested;
use crate::names::{check_subscribe, SubscribeError};
use crate::queue::{Closed, Delivery, MailboxOptions, Queue, SubscriptionId};
use crate::router::BusInner;
use crate::topic::{Pattern, Topic};

enum Membership {
    /// A fanout subscription to one topic, kept as the topic: an exact pattern's segments would be a copy of it
    /// held for the subscription's whole life.
    Topic(Topic),
    /// A fanout subscription to a wildcard pattern.
    Pattern(Pattern),
    Member {
        group: Arc<Group>,
        member: MemberId,
    },
}

impl Membership {
    fn fanout(pattern: Pattern) -> Membership {
        match pattern.as_topic() {
            Some(topic) => Membership::Topic(topic),
            None => Membership::Pattern(pattern),
        }
    }
}

/// A mailbox's subscriptions and memberships, in the order of their ids (ids only grow, so each new one goes at
/// the end): receive looks every delivery's id up by binary search, and most connections have one or two, which
/// a vector holds in a fraction of an empty hash map's first allocation. An ended one leaves a hole, and the holes
/// are swept out once they are half the vector, so ending each of n costs O(1) amortized, not O(n).
#[derive(Default)]
struct Memberships {
    entries: Vec<(SubscriptionId, Option<Membership>)>,
    live: usize,
}

impl Memberships {
    fn insert(&mut self, id: SubscriptionId, membership: Membership) {
        debug_assert!(self.entries.last().is_none_or(|(last, _)| *last < id));
        if self.entries.len() == self.entries.capacity() {
            // Doubling from one, where `Vec` starts at four.
            self.entries.reserve_exact(self.entries.len().max(1));
        }
        self.entries.push((id, Some(membership)));
        self.live += 1;
    }

    /// Where `id`'s entry is, live or ended.
    fn position(&self, id: SubscriptionId) -> Option<usize> {
        self.entries.binary_search_by_key(&id, |(id, _)| *id).ok()
    }

    fn get(&self, id: SubscriptionId) -> Option<&Membership> {
        self.entries[self.position(id)?].1.as_ref()
    }

    fn contains(&self, id: SubscriptionId) -> bool {
        self.get(id).is_some()
    }

    fn remove(&mut self, id: SubscriptionId) -> Option<Membership> {
        let at = self.position(id)?;
        let membership = self.entries[at].1.take()?;
        self.live -= 1;
        if self.live * 2 < self.entries.len() {
            self.entries.retain(|(_, membership)| membership.is_some());
        }
        Some(membership)
    }

    fn len(&self) -> usize {
        self.live
    }

    fn take_all(&mut self) -> impl Iterator<Item = (SubscriptionId, Membership)> {
        self.live = 0;
        std::mem::take(&mut self.entries)
            .into_iter()
            .filter_map(|(id, membership)| Some((id, membership?)))
    }
}

/// A connection's handle on the bus: subscribe, join groups, receive deliveries. Dropping it removes every
/// subscription and leaves every group (unacked group messages are requeued as redelivered).
pub struct Mailbox {
    queue: Arc<Queue>,
    bus: Arc<BusInner>,
    memberships: Memberships,
    id: u64,
}

impl Mailbox {
    pub(crate) fn new(
        bus: Arc<BusInner>,
        owner: Origin,
        options: MailboxOptions,
        id: u64,
    ) -> Mailbox {
        let queue = Arc::new(Queue::new(owner, options));
        bus.register_mailbox(id, &queue);
        Mailbox {
            queue,
            bus,
            memberships: Memberships::default(),
            id,
        }
    }

    pub fn owner(&self) -> Origin {
        self.queue.owner
    }

    /// This connection's private inbox topic `$inbox.<connection>.<name>`; only this mailbox may subscribe to it.
    pub fn inbox(&self, name: &[u8]) -> Topic {
        crate::names::inbox(self.queue.owner.connection, name)
    }

    /// Subscribes to a pattern (fanout). Messages published after this returns are delivered.
    pub fn subscribe(&mut self, pattern: Pattern) -> Result<SubscriptionId, SubscribeError> {
        self.check_internal(&pattern)?;
        let id = SubscriptionId::next();
        self.bus.add_fanout(&pattern, self.queue.clone(), id);
        self.memberships.insert(id, Membership::fanout(pattern));
        Ok(id)
    }

    /// Subscribes to a topic with history and returns, atomically with the subscription, the retained messages
    /// after `after` (no gap and no duplicate between the two). `None` means the topic keeps no history.
    pub fn subscribe_with_history(
        &mut self,
        topic: &Topic,
        after: crate::history::Since,
    ) -> Result<(SubscriptionId, Option<crate::history::Recovery>), SubscribeError> {
        self.check_internal(&Pattern::exact(topic))?;
        let id = SubscriptionId::next();
        let recovery = self
            .bus
            .add_fanout_with_history(topic, self.queue.clone(), id, after);
        self.memberships
            .insert(id, Membership::Topic(topic.clone()));
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
        let member = group.join(self.queue.clone(), id, credit);
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
            .join_shared(name, pattern, policy, self.queue.clone(), id, credit);
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
        if let Some(Membership::Member { group, member }) = self.memberships.get(id) {
            group.set_credit(*member, credit);
        }
    }

    /// Ends a subscription or membership. No message published after this returns is delivered for it, and
    /// deliveries still queued for it are discarded on receive (group messages are requeued by the group).
    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        match self.memberships.remove(id) {
            Some(membership) => {
                self.end(id, membership);
                true
            }
            None => false,
        }
    }

    fn end(&self, id: SubscriptionId, membership: Membership) {
        match membership {
            Membership::Topic(topic) => self.bus.remove_fanout(&Pattern::exact(&topic), id),
            Membership::Pattern(pattern) => self.bus.remove_fanout(&pattern, id),
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
        check_subscribe(pattern, Some(self.queue.owner.connection))
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
        let added = self
            .queue
            .pop_batch(out, max, |id| self.memberships.contains(id))?;
        if added > 0 {
            let taken = &out[out.len() - added..];
            let protocol = self.queue.owner.protocol;
            let envelopes = taken.iter().map(|d| &*d.envelope);
            self.bus.metrics.delivered(protocol, envelopes);
            if let Some(hook) = self.bus.trace.get() {
                for delivery in taken {
                    hook.delivered(protocol, &delivery.envelope);
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
        self.queue.register(cx.waker());
        match self.try_recv_batch(out, max) {
            Ok(0) => Poll::Pending,
            other => Poll::Ready(other),
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        for (id, membership) in self.memberships.take_all() {
            self.end(id, membership);
        }
        self.bus.unregister_mailbox(self.id);
        self.queue.release();
    }
}
