//! The bus: publish routes an envelope to every matching fanout subscriber and one member of the topic's anycast
//! group, and returns a [`Backpressure`] when that filled a subscriber queue or a `block` group past its bound.
//! Publishers read the subscription index through `arc-swap` without locks; updates are serialised and swap in a
//! new index.

use std::sync::{Arc, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::anycast::{Group, GroupKey, GroupStats, Offered};
use crate::cluster::{ClusterBackend, ClusterState, Sequencing};
use crate::config::{BusConfig, GroupPolicy};
use crate::durable::{Bind, DurableError, DurableOwner, Durables, NotOwner, Unbound};
use crate::envelope::{ConnectionId, Envelope, Origin, Position, Protocol};
use crate::events::{BusEvent, Interested};
use crate::flow::{Backpressure, Flow, FlowStatus, Holder};
use crate::history::{HistoryState, Recovery, Since, TopicHistory};
use crate::index::{FanoutTarget, Index, Receiver};
use crate::mailbox::Mailbox;
use crate::metrics::BusMetrics;
use crate::names::check_subscribe;
use crate::presence::{PresenceChange, RemotePresence};
use crate::queue::{MailboxOptions, Pushed, Queue, SubscriptionId};
use crate::shared::SharedGroups;
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
enum Scope<'a> {
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
enum Record {
    /// The bus assigns the next position (topics with history).
    Sequence,
    /// The cluster's log could not number it: deliver without recording.
    Skip,
    /// The envelope carries a position from the cluster's log; `floor` as in [`Bus::publish_sequenced`].
    Preset { floor: u64 },
}

/// Which part of a remote node's publish this node performs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClusterDelivery {
    /// Deliver to this node's fanout subscribers (and record history).
    Fanout,
    /// Deliver to one member of this node's anycast group on the topic.
    Group,
    /// Deliver to one member of this node's group `name` on `pattern` (an MQTT shared subscription), if the
    /// pattern matches the topic.
    Shared { name: Arc<str>, pattern: Pattern },
}

/// Per-topic numbers for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct TopicStats {
    pub topic: String,
    pub fanout_subscribers: usize,
    pub group: Option<GroupStats>,
}

pub(crate) struct BusInner {
    index: ArcSwap<Index>,
    writer: Mutex<()>,
    config: BusConfig,
    pub(crate) metrics: BusMetrics,
    pub(crate) flow: Flow,
    histories: DashMap<Topic, Option<Arc<TopicHistory>>>,
    events: broadcast::Sender<BusEvent>,
    /// Set once anybody asked for events; until then publishes skip the new-topic bookkeeping.
    events_wanted: std::sync::atomic::AtomicBool,
    known_topics: DashMap<Topic, ()>,
    mailboxes: DashMap<u64, Weak<Queue>>,
    next_mailbox: std::sync::atomic::AtomicU64,
    cluster: ArcSwapOption<Box<dyn ClusterBackend>>,
    remote_presence: RemotePresence,
    /// The named groups on patterns (MQTT shared subscriptions); changed under `writer` only.
    pub(crate) shared_groups: SharedGroups,
    /// The durable bindings; changed under `writer` only.
    durables: Durables,
    /// Set at most once, before traffic (`Bus::set_trace_hook`).
    pub(crate) trace: std::sync::OnceLock<Arc<dyn TraceHook>>,
}

/// A handle on the bus; clones share it.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

impl Bus {
    pub fn new(config: BusConfig) -> Bus {
        let (events, _) = broadcast::channel(1024);
        let flow = Flow::new(config.max_publisher_stall);
        let metrics = BusMetrics::new(&config.metered_topics);
        Bus {
            inner: Arc::new(BusInner {
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
                cluster: ArcSwapOption::empty(),
                remote_presence: RemotePresence::default(),
                shared_groups: SharedGroups::default(),
                durables: Durables::default(),
                trace: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Records spans of every message through `hook` from now on; a second hook is ignored.
    pub fn set_trace_hook(&self, hook: Arc<dyn TraceHook>) {
        let _ = self.inner.trace.set(hook);
    }

    /// Attaches a cluster backend; from now on local publishes and interest changes go to it.
    pub fn set_cluster(&self, backend: Box<dyn ClusterBackend>) {
        self.inner.cluster.store(Some(Arc::new(backend)));
    }

    pub fn cluster_state(&self) -> ClusterState {
        self.inner
            .cluster
            .load()
            .as_ref()
            .map_or(ClusterState::Standalone, |c| c.state())
    }

    /// A new subscriber endpoint for a connection, with the bus's default queue bound and policy.
    pub fn mailbox(&self, owner: Origin) -> Mailbox {
        let config = &self.inner.config;
        self.mailbox_with(
            owner,
            MailboxOptions {
                limits: config.subscriber_queue,
                policy: config.slow_consumer,
                stall_publishers: true,
            },
        )
    }

    pub fn mailbox_with(&self, owner: Origin, options: MailboxOptions) -> Mailbox {
        let id = self
            .inner
            .next_mailbox
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Mailbox::new(self.inner.clone(), owner, options, id)
    }

    /// Makes sure the anycast group on `topic` exists (STOMP SEND to `/queue/N` before any consumer), so that
    /// messages are retained for future members.
    pub fn declare_group(&self, topic: &Topic, default_policy: GroupPolicy) {
        self.inner.group(topic, default_policy);
    }

    /// Binds `pattern` to the anycast group on `queue` for `owner`, a binding that outlives every connection: from
    /// now on each message this node's fanout subscribers get that `pattern` matches is copied into the group
    /// ([`crate::SOURCE_TOPIC_HEADER`] names its topic), where it is kept for members to come (created with
    /// [`GroupPolicy::QUEUE`] unless a configured rule for `queue` applies). Binding the same pattern again changes
    /// nothing; another owner's binding is refused; a binding of another pattern is replaced, and what its group
    /// kept is dropped. No new binding is made once there are `max`.
    pub fn bind_durable(
        &self,
        queue: &Topic,
        pattern: &Pattern,
        owner: &DurableOwner,
        max: usize,
    ) -> Result<(), DurableError> {
        self.inner.bind_durable(queue, pattern, owner, max)
    }

    /// Removes `owner`'s binding of `queue` and drops what its group kept (members stay members). A queue
    /// without binding is left alone; another owner's is refused.
    pub fn unbind_durable(&self, queue: &Topic, owner: &DurableOwner) -> Result<(), NotOwner> {
        self.inner.unbind_durable(queue, owner)
    }

    /// Number of durable bindings.
    pub fn durable_bindings(&self) -> usize {
        self.inner.durables.len()
    }

    /// Publishes a locally received envelope. With a cluster backend that owns anycast groups, delivery to the
    /// topic's group and to named groups happens on whichever node the backend picks, so only fanout is done here.
    /// On a topic the backend sequences, nothing is delivered here: the message comes back through
    /// [`Bus::publish_sequenced`], and the outcome has no position yet.
    pub fn publish(&self, mut envelope: Envelope) -> PublishOutcome {
        if let Some(hook) = self.inner.trace.get() {
            hook.published(&mut envelope);
        }
        self.inner.metrics.message_in(
            envelope.origin.protocol,
            &envelope.topic,
            envelope.payload.len(),
        );
        let cluster = self.inner.cluster.load();
        let Some(cluster) = cluster.as_ref() else {
            return self.inner.route(envelope, Scope::All, Record::Sequence).0;
        };
        let owns_groups = cluster.owns_groups();
        let scope = if owns_groups {
            Scope::Fanout
        } else {
            Scope::All
        };
        let record = match self.inner.history(&envelope.topic) {
            None => Record::Sequence,
            Some(history) => match cluster.sequencing(&envelope.topic) {
                Sequencing::Local => Record::Sequence,
                Sequencing::Unavailable => Record::Skip,
                Sequencing::Cluster { epoch } => {
                    // Acks and recoveries on this node name the log's epoch before its first message is back.
                    history.lock().enter_epoch(epoch);
                    let envelope = Arc::new(envelope);
                    self.inner.trace_forwarded(&envelope);
                    cluster.forward(&envelope);
                    if owns_groups {
                        return PublishOutcome::default();
                    }
                    return self.inner.dispatch(&envelope, Scope::Groups);
                }
            },
        };
        let (outcome, envelope) = self.inner.route(envelope, scope, record);
        self.inner.trace_forwarded(&envelope);
        cluster.forward(&envelope);
        outcome
    }

    /// Delivers an envelope whose position (`envelope.position`, required) the cluster's log assigned, to this
    /// node's fanout subscribers, and records it in the topic's history. A position already recorded is not
    /// delivered again; a new epoch restarts the history. `floor`: messages of the topic at or below this offset
    /// that this node never received may have existed and are gone (the log's first offset minus one when this
    /// node started reading it). Without a position or history for the topic this is a plain remote fanout.
    pub fn publish_sequenced(&self, envelope: Envelope, floor: u64) -> PublishOutcome {
        if let Some(hook) = self.inner.trace.get() {
            hook.arrived(&envelope);
        }
        self.inner
            .route(envelope, Scope::Fanout, Record::Preset { floor })
            .0
    }

    /// Delivers an envelope that another node published, to this node's fanout subscribers, its anycast group on
    /// the topic or one of its named groups; it is not forwarded again.
    pub fn publish_from_cluster(
        &self,
        envelope: Envelope,
        delivery: &ClusterDelivery,
    ) -> PublishOutcome {
        if let Some(hook) = self.inner.trace.get() {
            hook.arrived(&envelope);
        }
        let scope = match delivery {
            ClusterDelivery::Fanout => Scope::Fanout,
            ClusterDelivery::Group => Scope::Group,
            ClusterDelivery::Shared { name, pattern } => Scope::Shared { name, pattern },
        };
        self.inner.route(envelope, scope, Record::Sequence).0
    }

    /// Reports a presence change of this node to the cluster backend (nothing happens on a single node).
    pub fn share_presence(&self, change: PresenceChange) {
        if let Some(cluster) = self.inner.cluster.load().as_ref() {
            cluster.presence(&change);
        }
    }

    /// A presence change another node reported (the backend calls this; a leave for an unknown member is a no-op).
    pub fn presence_from_cluster(&self, change: PresenceChange) {
        self.inner.remote_presence.apply(change);
    }

    /// Members of `topic` on other nodes, by member id, with the data their node shared.
    pub fn remote_presence(&self, topic: &Topic) -> Vec<(String, bytes::Bytes)> {
        self.inner.remote_presence.members(topic)
    }

    /// Interest and topic notifications.
    pub fn events(&self) -> broadcast::Receiver<BusEvent> {
        self.inner
            .events_wanted
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.inner.events.subscribe()
    }

    /// The current position of a topic with history.
    pub fn history_top(&self, topic: &Topic) -> Option<Position> {
        self.inner.history(topic).map(|h| {
            let mut state = h.lock();
            self.inner.follow_cluster_epoch(topic, &mut state);
            state.top()
        })
    }

    /// An epoch as clients see it: the cluster log's name for it, else its decimal number.
    pub fn epoch_text(&self, epoch: u64) -> String {
        self.inner
            .cluster
            .load()
            .as_ref()
            .and_then(|cluster| cluster.epoch_name(epoch))
            .unwrap_or_else(|| epoch.to_string())
    }

    /// The epoch behind a client's [`Bus::epoch_text`].
    pub fn epoch_from_text(&self, text: &str) -> Option<u64> {
        text.parse::<u64>().ok().or_else(|| {
            self.inner
                .cluster
                .load()
                .as_ref()
                .and_then(|cluster| cluster.epoch_named(text))
        })
    }

    /// Topics with subscribers or groups, for the admin API.
    pub fn topics(&self) -> Vec<TopicStats> {
        let index = self.inner.index.load();
        let mut topics: Vec<TopicStats> = index
            .exact
            .iter()
            .map(|(topic, route)| TopicStats {
                topic: topic.to_string(),
                fanout_subscribers: route.subscribers(),
                group: route.group.as_ref().map(|g| g.stats()),
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
    }

    /// Connections taking part in flow control now: publishers stalled, subscribers over their bound.
    pub fn flow_status(&self) -> std::collections::HashMap<ConnectionId, FlowStatus> {
        let mut status = std::collections::HashMap::<ConnectionId, FlowStatus>::new();
        for mailbox in self
            .inner
            .mailboxes
            .iter()
            .filter_map(|m| m.value().upgrade())
        {
            if let Some(since) = mailbox.over_since() {
                status
                    .entry(mailbox.owner.connection)
                    .or_default()
                    .stalling_ms = Some(since.elapsed().as_millis() as u64);
            }
        }
        for (connection, stalled) in self.inner.flow.stalled() {
            status.entry(connection).or_default().stalled_ms = Some(stalled.as_millis() as u64);
        }
        status
    }

    /// The protocol of each fanout subscription on this node that matches `topic` (exact and wildcard), one entry
    /// per subscription, and of each named group (MQTT shared subscription) by its first member: whom a message
    /// that cannot go onto the bus (a Loom message streamed straight to one consumer) does not reach, so that the
    /// adapter can count those drops.
    pub fn fanout_protocols(&self, topic: &Topic) -> Vec<Protocol> {
        let index = self.inner.index.load();
        let mut protocols = Vec::new();
        index.for_each_fanout(topic, index.exact.get(topic), |target| {
            let protocol = match &target.receiver {
                Receiver::Mailbox(mailbox) => Some(mailbox.owner.protocol),
                Receiver::Shared(group) => group.member_protocol(),
                Receiver::Durable(binding) => Some(binding.protocol()),
            };
            protocols.extend(protocol);
        });
        protocols
    }

    /// Number of wildcard subscriptions.
    pub fn wildcard_subscriptions(&self) -> usize {
        self.inner.index.load().wildcard_count
    }

    /// Updates the subscription, group, retained and queue-depth gauges (call before rendering metrics).
    pub fn refresh_gauges(&self) {
        let index = self.inner.index.load();
        let mut subscriptions = index.wildcard_count;
        let mut groups = 0;
        let mut retained = 0;
        for (_, route) in index.exact.iter() {
            subscriptions += route.fanout.len();
            if let Some(group) = &route.group {
                let stats = group.stats();
                groups += 1;
                subscriptions += stats.members;
                retained += stats.retained;
            }
        }
        for group in self.inner.shared_groups.groups() {
            // A named group is one entry of the index, counted above; its members are the subscriptions.
            let stats = group.stats();
            groups += 1;
            subscriptions = (subscriptions + stats.members).saturating_sub(1);
            retained += stats.retained;
        }
        let depths: Vec<usize> = self
            .inner
            .mailboxes
            .iter()
            .filter_map(|m| m.value().upgrade())
            .map(|m| m.depth())
            .collect();
        crate::metrics::set_gauges(subscriptions, groups, retained, &depths);
    }
}

impl BusInner {
    fn trace_forwarded(&self, envelope: &Envelope) {
        if let Some(hook) = self.trace.get() {
            hook.forwarded(envelope);
        }
    }

    fn route(
        self: &Arc<Self>,
        mut envelope: Envelope,
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
                state.sequence(&mut envelope);
                let envelope = Arc::new(envelope);
                state.append(envelope.clone());
                (self.dispatch(&envelope, scope), envelope)
            }
            (Some(history), Record::Preset { floor }, Some(position)) => {
                let mut state = history.lock();
                let envelope = Arc::new(envelope);
                if !state.adopt(position, floor) {
                    return (PublishOutcome::default(), envelope);
                }
                state.append(envelope.clone());
                (self.dispatch(&envelope, scope), envelope)
            }
            _ => {
                let envelope = Arc::new(envelope);
                (self.dispatch(&envelope, scope), envelope)
            }
        }
    }

    fn dispatch(self: &Arc<Self>, envelope: &Arc<Envelope>, scope: Scope<'_>) -> PublishOutcome {
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
            outcome.backpressure = Some(Backpressure::new(holders, envelope.origin, self.clone()));
        }
        outcome
    }

    fn history(&self, topic: &Topic) -> Option<Arc<TopicHistory>> {
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
    fn follow_cluster_epoch(&self, topic: &Topic, state: &mut HistoryState) {
        if let Some(cluster) = self.cluster.load().as_ref() {
            if let Sequencing::Cluster { epoch } = cluster.sequencing(topic) {
                state.enter_epoch(epoch);
            }
        }
    }

    fn update(&self, change: impl FnOnce(&Index) -> Index) {
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
    fn group_in(
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
        if let Some(cluster) = self.cluster.load().as_ref() {
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
