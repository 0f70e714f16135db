//! Routing: the state the bus's handles share ([`BusInner`]) and what publish does with it. A routing delivers an
//! envelope to every matching fanout subscriber, named group and durable binding and to one member of the topic's
//! anycast group, and returns a [`Backpressure`] when that filled a subscriber queue or a `block` group past its
//! bound. Publishers read the subscription index through `arc-swap` without locks; updates (subscriptions, groups,
//! named groups, durable bindings) are serialised under one writer lock and swap in a new index.

use std::sync::{Arc, OnceLock, Weak};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::anycast::{Credit, Group, GroupKey, Offered};
use crate::cluster::{ClusterBackend, Sequencing};
use crate::config::{BusConfig, GroupPolicy};
use crate::durable::{Bind, DurableError, DurableOwner, Durables, NotOwner, Unbound};
use crate::envelope::{Envelope, Position};
use crate::events::{BusEvent, Interested};
use crate::flow::{Backpressure, Flow, Holder};
use crate::history::{HistoryState, Recovery, Since, TopicHistory};
use crate::index::{FanoutTarget, Index, Receiver};
use crate::metrics::BusMetrics;
use crate::names::check_subscribe;
use crate::presence::RemotePresence;
use crate::queue::{Pushed, Queue, SubscriptionId};
use crate::shared::{Joined, SharedGroups};
use crate::topic::{Pattern, Topic};
use crate::trace::TraceHook;

/// What one publish did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Fanout deliveries plus group dispatches.
    pub delivered: usize,
    /// Groups that kept the message for later.
    pub retained: usize,
    /// Deliveries dropped (each counted in `gatewayd_drops_total`).
    pub dropped: usize,
    /// Set when a subscriber queue, or a group under the `block` policy, is over its bound: the publishing
    /// connection waits on it before reading more from its client. Messages from the cluster backend cannot be
    /// held back this way; their receivers ignore it.
    pub backpressure: Option<Backpressure>,
    /// The message's position when the topic keeps history.
    pub position: Option<Position>,
}

/// Which deliveries one routing performs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    /// Fanout subscriptions, named groups and the topic's group.
    All,
    /// Fanout subscriptions only.
    Fanout,
    /// Named groups and the topic's group.
    Groups,
    /// The topic's group only.
    Group,
    /// The named group `name` on `pattern` only.
    Shared { name: &'a str, pattern: &'a Pattern },
}

impl Scope<'_> {
    fn mailboxes(self) -> bool {
        matches!(self, Scope::All | Scope::Fanout)
    }

    fn topic_group(self) -> bool {
        matches!(self, Scope::All | Scope::Groups | Scope::Group)
    }

    fn named(self, group: &Group) -> bool {
        match (self, group.key()) {
            (Scope::All | Scope::Groups, _) => true,
            (
                Scope::Shared { name, pattern },
                GroupKey::Shared {
                    name: key_name,
                    pattern: key_pattern,
                },
            ) => **key_name == *name && key_pattern == pattern,
            _ => false,
        }
    }
}

/// How one routing treats the history of the envelope's topic.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record {
    /// The bus assigns the next position (topics with history).
    Sequence,
    /// The cluster's log could not number it: deliver without recording.
    Skip,
    /// The envelope carries a position from the cluster's log; `floor` as in [`crate::Bus::publish_sequenced`].
    Preset { floor: u64 },
}

/// The state every handle on the bus shares: what [`crate::Bus`], each mailbox and the routing read.
pub(crate) struct BusInner {
    pub(crate) index: ArcSwap<Index>,
    writer: Mutex<()>,
    pub(crate) config: BusConfig,
    pub(crate) metrics: Arc<BusMetrics>,
    pub(crate) flow: Arc<Flow>,
    histories: DashMap<Topic, Option<Arc<TopicHistory>>>,
    pub(crate) events: broadcast::Sender<BusEvent>,
    /// Set once anybody asked for events; until then publishes skip the new-topic bookkeeping.
    pub(crate) events_wanted: std::sync::atomic::AtomicBool,
    known_topics: DashMap<Topic, ()>,
    pub(crate) mailboxes: DashMap<u64, Weak<Queue>>,
    pub(crate) next_mailbox: std::sync::atomic::AtomicU64,
    pub(crate) cluster: OnceLock<Box<dyn ClusterBackend>>,
    pub(crate) remote_presence: RemotePresence,
    /// The named groups on patterns (MQTT shared subscriptions); changed under `writer` only.
    pub(crate) shared_groups: SharedGroups,
    /// The durable bindings; changed under `writer` only.
    pub(crate) durables: Durables,
    /// Set at most once, before traffic (`Bus::set_trace_hook`).
    pub(crate) trace: std::sync::OnceLock<Arc<dyn TraceHook>>,
}

impl BusInner {
    pub(crate) fn new(config: BusConfig) -> BusInner {
        let (events, _) = broadcast::channel(1024);
        let metrics = Arc::new(BusMetrics::new(&config.metered_topics));
        let flow = Arc::new(Flow::new(config.max_publisher_stall, metrics.clone()));
        BusInner {
            flow,
            index: ArcSwap::from_pointee(Index::default()),
            writer: Mutex::new(()),
            config,
            metrics,
            histories: DashMap::new(),
            events,
            events_wanted: std::sync::atomic::AtomicBool::new(false),
            known_topics: DashMap::new(),
            mailboxes: DashMap::new(),
            next_mailbox: std::sync::atomic::AtomicU64::new(1),
            cluster: OnceLock::new(),
            remote_presence: RemotePresence::default(),
            shared_groups: SharedGroups::default(),
            durables: Durables::default(),
            trace: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn trace_forwarded(&self, envelope: &Envelope) {
        if let Some(hook) = self.trace.get() {
            hook.forwarded(envelope);
        }
    }

    pub(crate) fn route(
        self: &Arc<Self>,
        mut envelope: Arc<Envelope>,
        scope: Scope<'_>,
        record: Record,
    ) -> (PublishOutcome, Arc<Envelope>) {
        if self
            .events_wanted
            .load(std::sync::atomic::Ordering::Relaxed)
            && !self.known_topics.contains_key(&envelope.topic)
        {
            self.known_topics.insert(envelope.topic.clone(), ());
            let _ = self.events.send(BusEvent::NewTopic(envelope.topic.clone()));
        }
        let history = match (scope, record) {
            (Scope::Groups | Scope::Group | Scope::Shared { .. }, _) | (_, Record::Skip) => None,
            (Scope::All | Scope::Fanout, _) => self.history(&envelope.topic),
        };
        match (history, record, envelope.position) {
            (Some(history), Record::Sequence, _) => {
                let mut state = history.lock();
                // Not shared yet, so this is not a copy.
                state.sequence(Arc::make_mut(&mut envelope));
                state.append(envelope.clone());
                (self.dispatch(&envelope, scope), envelope)
            }
            (Some(history), Record::Preset { floor }, Some(position)) => {
                let mut state = history.lock();
                if !state.adopt(position, floor) {
                    return (PublishOutcome::default(), envelope);
                }
                state.append(envelope.clone());
                (self.dispatch(&envelope, scope), envelope)
            }
            _ => (self.dispatch(&envelope, scope), envelope),
        }
    }

    pub(crate) fn dispatch(
        self: &Arc<Self>,
        envelope: &Arc<Envelope>,
        scope: Scope<'_>,
    ) -> PublishOutcome {
        let mut outcome = PublishOutcome {
            position: envelope.position,
            ..PublishOutcome::default()
        };
        let index = self.index.load();
        let route = index.exact.get(&envelope.topic);
        let size = envelope.size();
        let pattern_entries = !matches!(scope, Scope::Group);
        let group = if scope.topic_group() {
            route.and_then(|r| r.group.as_ref())
        } else {
            None
        };
        let max_stall = self.flow.max_stall;
        let mut holders = Vec::new();
        if pattern_entries {
            index.for_each_fanout(&envelope.topic, route, |target| {
                let mailbox = match &target.receiver {
                    Receiver::Mailbox(mailbox) if scope.mailboxes() => mailbox,
                    Receiver::Shared(group) if scope.named(group) => {
                        let offered = group.offer(envelope.clone(), max_stall);
                        count(group, offered, &mut outcome, &mut holders);
                        return;
                    }
                    // A durable binding takes what this node's fanout takes.
                    Receiver::Durable(binding) if scope.mailboxes() => {
                        if let Some(offered) = binding.offer(envelope, max_stall) {
                            count(binding.group(), offered, &mut outcome, &mut holders);
                        }
                        return;
                    }
                    Receiver::Mailbox(_) | Receiver::Shared(_) | Receiver::Durable(_) => return,
                };
                match mailbox.push_fanout(envelope, size, target.subscription, max_stall) {
                    Pushed::Queued => outcome.delivered += 1,
                    Pushed::Stall => {
                        outcome.delivered += 1;
                        holders.push(Holder::Subscriber(mailbox.clone()));
                    }
                    Pushed::Dropped(reason) => {
                        outcome.dropped += 1;
                        self.metrics.dropped(reason, mailbox.owner.protocol);
                    }
                    Pushed::Closed => {}
                }
            });
        }
        if let Some(group) = group {
            let offered = group.offer(envelope.clone(), max_stall);
            count(group, offered, &mut outcome, &mut holders);
        }
        if !holders.is_empty() {
            outcome.backpressure = Some(Backpressure::new(
                holders,
                envelope.origin,
                self.flow.clone(),
            ));
        }
        outcome
    }

    pub(crate) fn history(&self, topic: &Topic) -> Option<Arc<TopicHistory>> {
        if self.config.history.is_empty() {
            return None;
        }
        if let Some(known) = self.histories.get(topic) {
            return known.clone();
        }
        let rule = self
            .config
            .history
            .iter()
            .find(|rule| rule.topics.matches(topic));
        let history = rule.map(|rule| Arc::new(TopicHistory::new(rule.policy)));
        self.histories
            .entry(topic.clone())
            .or_insert(history)
            .clone()
    }

    /// A topic the cluster's log numbers takes the log's epoch even before its first message reaches this node.
    pub(crate) fn follow_cluster_epoch(&self, topic: &Topic, state: &mut HistoryState) {
        if let Some(cluster) = self.cluster.get() {
            if let Sequencing::Cluster { epoch } = cluster.sequencing(topic) {
                state.enter_epoch(epoch);
            }
        }
    }

    pub(crate) fn update(&self, change: impl FnOnce(&Index) -> Index) {
        let _writer = self.writer.lock();
        let next = change(&self.index.load());
        self.index.store(Arc::new(next));
    }

    pub(crate) fn add_fanout(
        &self,
        pattern: &Pattern,
        mailbox: Arc<Queue>,
        subscription: SubscriptionId,
    ) {
        self.update(|index| {
            index.with_fanout(
                pattern,
                FanoutTarget {
                    receiver: Receiver::Mailbox(mailbox),
                    subscription,
                },
            )
        });
        self.emit_interest(pattern, Interested::Fanout, true);
    }

    pub(crate) fn add_fanout_with_history(
        &self,
        topic: &Topic,
        mailbox: Arc<Queue>,
        subscription: SubscriptionId,
        since: Since,
    ) -> Option<Recovery> {
        let pattern = Pattern::exact(topic);
        let target = FanoutTarget {
            receiver: Receiver::Mailbox(mailbox),
            subscription,
        };
        // With history, its lock is held across the index update so no publish falls between the two.
        let history = self.history(topic);
        let mut state = history.as_ref().map(|history| history.lock());
        if let Some(state) = state.as_mut() {
            self.follow_cluster_epoch(topic, state);
        }
        self.update(|index| index.with_fanout(&pattern, target));
        let recovery = state.map(|mut state| state.recover(since));
        self.emit_interest(&pattern, Interested::Fanout, true);
        recovery
    }

    pub(crate) fn remove_fanout(&self, pattern: &Pattern, subscription: SubscriptionId) {
        self.update(|index| index.without_fanout(pattern, subscription));
        self.emit_interest(pattern, Interested::Fanout, false);
    }

    /// The group on `topic`, created with the configured policy (or `default_policy`) when missing.
    pub(crate) fn group(&self, topic: &Topic, default_policy: GroupPolicy) -> Arc<Group> {
        if let Some(group) = self
            .index
            .load()
            .exact
            .get(topic)
            .and_then(|r| r.group.clone())
        {
            return group;
        }
        self.with_writer(|index| self.group_in(index, topic, default_policy))
    }

    /// The group on `topic` in `index`, and the index with it when it had to be created.
    pub(crate) fn group_in(
        &self,
        index: &Index,
        topic: &Topic,
        default_policy: GroupPolicy,
    ) -> (Option<Index>, Arc<Group>) {
        if let Some(group) = index.exact.get(topic).and_then(|r| r.group.clone()) {
            return (None, group);
        }
        let policy = self
            .config
            .groups
            .iter()
            .find(|rule| rule.topics.matches(topic))
            .map_or(default_policy, |r| r.policy);
        let group = Arc::new(Group::new(GroupKey::Topic(topic.clone()), policy));
        (Some(index.with_group(topic, Some(group.clone()))), group)
    }

    pub(crate) fn bind_durable(
        &self,
        queue: &Topic,
        pattern: &Pattern,
        owner: &DurableOwner,
        max: usize,
    ) -> Result<(), DurableError> {
        check_subscribe(pattern, None)?;
        let changed = self.with_writer(|index| {
            let (with_group, group) = self.group_in(index, queue, GroupPolicy::QUEUE);
            let (id, binding, replaced) =
                match self.durables.bind(queue, pattern, owner, max, || group) {
                    Ok(Bind::New {
                        id,
                        binding,
                        replaced,
                    }) => (id, binding, replaced),
                    Ok(Bind::Kept) => return (None, Ok(None)),
                    Err(error) => return (None, Err(error)),
                };
            let mut next = with_group.unwrap_or_else(|| index.clone());
            if let Some(old) = &replaced {
                next = next.without_fanout(&old.pattern, old.id);
                old.purge();
            }
            let target = FanoutTarget {
                receiver: Receiver::Durable(binding),
                subscription: id,
            };
            (Some(next.with_fanout(pattern, target)), Ok(Some(replaced)))
        })?;
        if let Some(replaced) = changed {
            if let Some(old) = replaced {
                self.emit_interest(&old.pattern, Interested::Fanout, false);
            }
            self.emit_interest(pattern, Interested::Fanout, true);
        }
        Ok(())
    }

    pub(crate) fn unbind_durable(
        &self,
        queue: &Topic,
        owner: &DurableOwner,
    ) -> Result<(), NotOwner> {
        let unbound = self.with_writer(|index| match self.durables.unbind(queue, owner) {
            Ok(Some(unbound)) => {
                let next = self.without_durable(index, queue, &unbound);
                (Some(next), Ok(Some(unbound)))
            }
            other => (None, other),
        })?;
        if let Some(unbound) = unbound {
            self.emit_interest(&unbound.pattern, Interested::Fanout, false);
        }
        Ok(())
    }

    /// `index` without `unbound`, whose group is purged, and without that group if it is idle now.
    fn without_durable(&self, index: &Index, queue: &Topic, unbound: &Unbound) -> Index {
        let next = index.without_fanout(&unbound.pattern, unbound.id);
        unbound.purge();
        let group = unbound.binding.group();
        let current = next.exact.get(queue).and_then(|r| r.group.as_ref());
        if current.is_some_and(|g| Arc::ptr_eq(g, group)) && group.is_idle() {
            next.with_group(queue, None)
        } else {
            next
        }
    }

    /// Removes a group that has become idle.
    pub(crate) fn collect_group(&self, group: &Arc<Group>) {
        let topic = match group.key() {
            GroupKey::Topic(topic) => topic,
            GroupKey::Shared { .. } => return self.collect_shared(group),
        };
        let _writer = self.writer.lock();
        let index = self.index.load();
        let current = index.exact.get(topic).and_then(|r| r.group.as_ref());
        let bound = self.durables.feeds(topic);
        if current.is_some_and(|g| Arc::ptr_eq(g, group)) && group.is_idle() && !bound {
            self.index.store(Arc::new(index.with_group(topic, None)));
        }
    }

    /// Runs `change` on the current index with index updates held off, and stores the index it returns, if any.
    pub(crate) fn with_writer<R>(&self, change: impl FnOnce(&Index) -> (Option<Index>, R)) -> R {
        let _writer = self.writer.lock();
        let (next, result) = change(&self.index.load());
        if let Some(next) = next {
            self.index.store(Arc::new(next));
        }
        result
    }

    pub(crate) fn emit_interest(&self, pattern: &Pattern, by: Interested, added: bool) {
        let pattern = pattern.clone();
        let event = if added {
            BusEvent::Subscribed { pattern, by }
        } else {
            BusEvent::Unsubscribed { pattern, by }
        };
        if let Some(cluster) = self.cluster.get() {
            cluster.interest(&event);
        }
        if self
            .events_wanted
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let _ = self.events.send(event);
        }
    }

    pub(crate) fn register_mailbox(&self, id: u64, mailbox: &Arc<Queue>) {
        self.mailboxes.insert(id, Arc::downgrade(mailbox));
    }

    pub(crate) fn unregister_mailbox(&self, id: u64) {
        self.mailboxes.remove(&id);
    }
}

impl BusInner {
    /// Adds `mailbox`'s `subscription` to the group `name` on `pattern` with `credit`, creating the group with
    /// `policy` when it does not exist.
    pub(crate) fn join_shared(
        &self,
        name: &str,
        pattern: &Pattern,
        policy: GroupPolicy,
        mailbox: Arc<Queue>,
        subscription: SubscriptionId,
        credit: Credit,
    ) -> Joined {
        let (joined, created) = self.with_writer(|index| {
            let (next, group) = self.shared_groups.group(index, name, pattern, policy);
            let member = group.join(mailbox, subscription, credit);
            let created = next.is_some();
            (next, (Joined { group, member }, created))
        });
        if created {
            // The backend makes the group one of the cluster's.
            let by = Interested::Shared { name: name.into() };
            self.emit_interest(pattern, by, true);
        }
        joined
    }

    /// Removes a named group that has no member left.
    pub(crate) fn collect_shared(&self, group: &Arc<Group>) {
        let GroupKey::Shared { name, pattern } = group.key() else {
            return;
        };
        let removed = self.with_writer(|index| {
            let next = self.shared_groups.remove_idle(index, group);
            let removed = next.is_some();
            (next, removed)
        });
        if removed {
            let by = Interested::Shared { name: name.clone() };
            self.emit_interest(pattern, by, false);
        }
    }
}

/// Counts in `outcome` what `group` did with an offered message.
fn count(
    group: &Arc<Group>,
    offered: Offered,
    outcome: &mut PublishOutcome,
    holders: &mut Vec<Holder>,
) {
    match offered {
        Offered::Dispatched => outcome.delivered += 1,
        Offered::Retained { evicted, stall } => {
            outcome.retained += 1;
            outcome.dropped += evicted;
            if stall {
                holders.push(Holder::Group(group.clone()));
            }
        }
        Offered::Dropped(_) => outcome.dropped += 1,
    }
}
