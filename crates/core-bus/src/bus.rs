//! The [`Bus`] handle adapters hold: publish (locally, from the cluster backend, sequenced by the cluster's log),
//! mailboxes, groups, durable bindings, events, presence, history and the admin API's numbers. Routing and the
//! shared state behind it are `router`'s.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::anycast::GroupStats;
use crate::cluster::{ClusterBackend, ClusterState, Groups, Sequencing};
use crate::config::{BusConfig, GroupPolicy};
use crate::durable::{DurableError, DurableOwner, NotOwner};
use crate::envelope::{ConnectionId, Envelope, Origin, Position, Protocol};
use crate::events::BusEvent;
use crate::flow::FlowStatus;
use crate::index::Receiver;
use crate::mailbox::Mailbox;
use crate::presence::PresenceChange;
use crate::queue::MailboxOptions;
use crate::router::{BusInner, PublishOutcome, Record, Scope};
use crate::topic::{Pattern, Topic};
use crate::trace::TraceHook;

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

/// A handle on the bus; clones share it.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

impl Bus {
    pub fn new(config: BusConfig) -> Bus {
        Bus {
            inner: Arc::new(BusInner::new(config)),
        }
    }

    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Records spans of every message through `hook` from now on; a second hook is ignored.
    pub fn set_trace_hook(&self, hook: Arc<dyn TraceHook>) {
        let _ = self.inner.trace.set(hook);
    }

    /// Attaches a cluster backend; from now on local publishes and interest changes go to it. A bus has one for
    /// its life (a second is ignored), so a publish finds it with one load.
    pub fn set_cluster(&self, backend: Box<dyn ClusterBackend>) {
        let _ = self.inner.cluster.set(backend);
    }

    pub fn cluster_state(&self) -> ClusterState {
        self.inner
            .cluster
            .get()
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
        // On the heap from here: the bus passes it on by pointer.
        let envelope = Arc::new(envelope);
        let Some(cluster) = self.inner.cluster.get() else {
            return self.inner.route(envelope, Scope::All, Record::Sequence).0;
        };
        let owns_groups = cluster.owns_groups();
        let (scope, groups) = if owns_groups {
            (Scope::Fanout, Groups::Cluster)
        } else {
            (Scope::All, Groups::Served)
        };
        let record = match self.inner.history(&envelope.topic) {
            None => Record::Sequence,
            Some(history) => match cluster.sequencing(&envelope.topic) {
                Sequencing::Local => Record::Sequence,
                Sequencing::Unavailable => Record::Skip,
                Sequencing::Cluster { epoch } => {
                    // Acks and recoveries on this node name the log's epoch before its first message is back.
                    history.lock().enter_epoch(epoch);
                    self.inner.trace_forwarded(&envelope);
                    cluster.forward(&envelope, groups);
                    if owns_groups {
                        return PublishOutcome::default();
                    }
                    return self.inner.dispatch(&envelope, Scope::Groups);
                }
            },
        };
        let (outcome, envelope) = self.inner.route(envelope, scope, record);
        self.inner.trace_forwarded(&envelope);
        cluster.forward(&envelope, groups);
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
            .route(Arc::new(envelope), Scope::Fanout, Record::Preset { floor })
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
        self.inner
            .route(Arc::new(envelope), scope, Record::Sequence)
            .0
    }

    /// Reports a presence change of this node to the cluster backend (nothing happens on a single node).
    pub fn share_presence(&self, change: PresenceChange) {
        if let Some(cluster) = self.inner.cluster.get() {
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
            .get()
            .and_then(|cluster| cluster.epoch_name(epoch))
            .unwrap_or_else(|| epoch.to_string())
    }

    /// The epoch behind a client's [`Bus::epoch_text`].
    pub fn epoch_from_text(&self, text: &str) -> Option<u64> {
        text.parse::<u64>().ok().or_else(|| {
            self.inner
                .cluster
                .get()
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

    /// Appends the metrics the bus keeps itself (`gatewayd_messages_in_total`, `gatewayd_message_bytes_in_total`,
    /// `gatewayd_message_size_bytes`, `gatewayd_delivery_latency_seconds`) to `out`, in the Prometheus text
    /// format: /metrics is the exporter's rendering followed by this.
    pub fn render_metrics(&self, out: &mut String) {
        self.inner.metrics.render(out);
    }
}
