//! The bus: publish routes an envelope to every matching fanout subscriber and one member of the topic's anycast
//! group. Publishers read the subscription index through `arc-swap` without locks; updates are serialised and
//! swap in a new index.

use std::sync::{Arc, Weak};

use arc_swap::{ArcSwap, ArcSwapOption};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::anycast::{Backpressure, Group, GroupStats, Offered};
use crate::cluster::{ClusterBackend, ClusterState};
use crate::config::{BusConfig, GroupPolicy};
use crate::envelope::{Envelope, Origin, Position};
use crate::events::BusEvent;
use crate::history::{Recovery, Since, TopicHistory};
use crate::index::{FanoutTarget, Index};
use crate::mailbox::{Mailbox, MailboxOptions, MailboxShared, Pushed, SubscriptionId};
use crate::metrics::{record_drop, BusMetrics};
use crate::topic::{Pattern, Topic};

/// What one publish did.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// Fanout deliveries plus group dispatches.
    pub delivered: usize,
    /// Groups that kept the message for later.
    pub retained: usize,
    /// Deliveries dropped (each counted in `gatewayd_drops_total`).
    pub dropped: usize,
    /// Set when a group is over its bound under the `block` policy: wait on it before reading more from the
    /// producer.
    pub backpressure: Option<Backpressure>,
    /// The message's position when the topic keeps history.
    pub position: Option<Position>,
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
    histories: DashMap<Topic, Option<Arc<TopicHistory>>>,
    events: broadcast::Sender<BusEvent>,
    /// Set once anybody asked for events; until then publishes skip the new-topic bookkeeping.
    events_wanted: std::sync::atomic::AtomicBool,
    known_topics: DashMap<Topic, ()>,
    mailboxes: DashMap<u64, Weak<MailboxShared>>,
    next_mailbox: std::sync::atomic::AtomicU64,
    cluster: ArcSwapOption<Box<dyn ClusterBackend>>,
}

/// A handle on the bus; clones share it.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

impl Bus {
    pub fn new(config: BusConfig) -> Bus {
        let (events, _) = broadcast::channel(1024);
        Bus {
            inner: Arc::new(BusInner {
                index: ArcSwap::from_pointee(Index::default()),
                writer: Mutex::new(()),
                config,
                metrics: BusMetrics::new(),
                histories: DashMap::new(),
                events,
                events_wanted: std::sync::atomic::AtomicBool::new(false),
                known_topics: DashMap::new(),
                mailboxes: DashMap::new(),
                next_mailbox: std::sync::atomic::AtomicU64::new(1),
                cluster: ArcSwapOption::empty(),
            }),
        }
    }

    pub fn config(&self) -> &BusConfig {
        &self.inner.config
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

    /// Publishes a locally received envelope.
    pub fn publish(&self, envelope: Envelope) -> PublishOutcome {
        self.inner.metrics.message_in(envelope.origin.protocol);
        let (outcome, envelope) = self.inner.route(envelope);
        if let Some(cluster) = self.inner.cluster.load().as_ref() {
            cluster.forward(&envelope);
        }
        outcome
    }

    /// Delivers an envelope that another node published; it is not forwarded again.
    pub fn publish_from_cluster(&self, envelope: Envelope) -> PublishOutcome {
        self.inner.route(envelope).0
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
        self.inner.history(topic).map(|h| h.lock().top())
    }

    /// Topics with subscribers or groups, for the admin API.
    pub fn topics(&self) -> Vec<TopicStats> {
        let index = self.inner.index.load();
        let mut topics: Vec<TopicStats> = index
            .exact
            .iter()
            .map(|(topic, route)| TopicStats {
                topic: topic.to_string(),
                fanout_subscribers: route.fanout.len(),
                group: route.group.as_ref().map(|g| g.stats()),
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
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
        let depth = self
            .inner
            .mailboxes
            .iter()
            .filter_map(|m| m.value().upgrade())
            .map(|m| m.depth())
            .sum();
        crate::metrics::set_gauges(subscriptions, groups, retained, depth);
    }
}

impl BusInner {
    fn route(&self, mut envelope: Envelope) -> (PublishOutcome, Arc<Envelope>) {
        if self
            .events_wanted
            .load(std::sync::atomic::Ordering::Relaxed)
            && !self.known_topics.contains_key(&envelope.topic)
        {
            self.known_topics.insert(envelope.topic.clone(), ());
            let _ = self.events.send(BusEvent::NewTopic(envelope.topic.clone()));
        }
        match self.history(&envelope.topic) {
            Some(history) => {
                let mut state = history.lock();
                state.sequence(&mut envelope);
                let envelope = Arc::new(envelope);
                state.append(envelope.clone());
                (self.dispatch(&envelope), envelope)
            }
            None => {
                let envelope = Arc::new(envelope);
                (self.dispatch(&envelope), envelope)
            }
        }
    }

    fn dispatch(&self, envelope: &Arc<Envelope>) -> PublishOutcome {
        let mut outcome = PublishOutcome {
            position: envelope.position,
            ..PublishOutcome::default()
        };
        let index = self.index.load();
        let route = index.exact.get(&envelope.topic);
        let size = envelope.size();
        index.for_each_fanout(&envelope.topic, route, |target| {
            match target
                .mailbox
                .push_fanout(envelope, size, target.subscription)
            {
                Pushed::Queued => outcome.delivered += 1,
                Pushed::Dropped(reason) => {
                    outcome.dropped += 1;
                    record_drop(reason, target.mailbox.owner.protocol);
                }
                Pushed::Closed => {}
            }
        });
        if let Some(group) = route.and_then(|r| r.group.as_ref()) {
            match group.offer(envelope.clone()) {
                Offered::Dispatched => outcome.delivered += 1,
                Offered::Retained { evicted, full } => {
                    outcome.retained += 1;
                    outcome.dropped += evicted;
                    if full {
                        outcome.backpressure = Some(group.backpressure());
                    }
                }
                Offered::Dropped(_) => outcome.dropped += 1,
            }
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

    fn update(&self, change: impl FnOnce(&Index) -> Index) {
        let _writer = self.writer.lock();
        let next = change(&self.index.load());
        self.index.store(Arc::new(next));
    }

    pub(crate) fn add_fanout(
        &self,
        pattern: &Pattern,
        mailbox: Arc<MailboxShared>,
        subscription: SubscriptionId,
    ) {
        self.update(|index| {
            index.with_fanout(
                pattern,
                FanoutTarget {
                    mailbox,
                    subscription,
                },
            )
        });
        self.emit_interest(pattern, false, true);
    }

    pub(crate) fn add_fanout_with_history(
        &self,
        topic: &Topic,
        mailbox: Arc<MailboxShared>,
        subscription: SubscriptionId,
        since: Since,
    ) -> Option<Recovery> {
        let pattern = Pattern::exact(topic);
        let recovery = match self.history(topic) {
            Some(history) => {
                let mut state = history.lock();
                self.update(|index| {
                    index.with_fanout(
                        &pattern,
                        FanoutTarget {
                            mailbox,
                            subscription,
                        },
                    )
                });
                Some(state.recover(since))
            }
            None => {
                self.update(|index| {
                    index.with_fanout(
                        &pattern,
                        FanoutTarget {
                            mailbox,
                            subscription,
                        },
                    )
                });
                None
            }
        };
        self.emit_interest(&pattern, false, true);
        recovery
    }

    pub(crate) fn remove_fanout(&self, pattern: &Pattern, subscription: SubscriptionId) {
        self.update(|index| index.without_fanout(pattern, subscription));
        self.emit_interest(pattern, false, false);
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
        let _writer = self.writer.lock();
        let index = self.index.load();
        if let Some(group) = index.exact.get(topic).and_then(|r| r.group.clone()) {
            return group;
        }
        let policy = self
            .config
            .groups
            .iter()
            .find(|rule| rule.topics.matches(topic))
            .map_or(default_policy, |r| r.policy);
        let group = Arc::new(Group::new(topic.clone(), policy));
        self.index
            .store(Arc::new(index.with_group(topic, Some(group.clone()))));
        group
    }

    /// Removes a group that has become idle.
    pub(crate) fn collect_group(&self, group: &Arc<Group>) {
        let _writer = self.writer.lock();
        let index = self.index.load();
        let current = index
            .exact
            .get(group.topic())
            .and_then(|r| r.group.as_ref());
        if current.is_some_and(|g| Arc::ptr_eq(g, group)) && group.is_idle() {
            self.index
                .store(Arc::new(index.with_group(group.topic(), None)));
        }
    }

    pub(crate) fn emit_interest(&self, pattern: &Pattern, group: bool, added: bool) {
        let event = if added {
            BusEvent::Subscribed {
                pattern: pattern.clone(),
                group,
            }
        } else {
            BusEvent::Unsubscribed {
                pattern: pattern.clone(),
                group,
            }
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

    pub(crate) fn register_mailbox(&self, id: u64, mailbox: &Arc<MailboxShared>) {
        self.mailboxes.insert(id, Arc::downgrade(mailbox));
    }

    pub(crate) fn unregister_mailbox(&self, id: u64) {
        self.mailboxes.remove(&id);
    }
}
