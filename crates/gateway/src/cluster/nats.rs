//! The NATS cluster backend. Every local publish goes to the subject of its topic once. A node subscribes plainly to
//! the subjects of its local fanout patterns (interest-based: nothing else reaches it), in the queue group
//! `<prefix>-groups` to the exact subjects of its local anycast groups, and, for each local named group (MQTT shared
//! subscription), in the queue group `<prefix>-groups-<tag>` (`shared::share_tag` of its name and pattern) to the
//! subjects of its pattern. So NATS delivers each message to every interested node's fanout subscribers, to exactly one
//! node's group of the topic and to exactly one node's group of each name and pattern. Envelopes travel in the
//! versioned binary encoding of `docs/envelope.md`. With `history = "jetstream"`, history topics go through JetStream
//! instead (`jetstream.rs`): plain subscriptions ignore them, the stream's consumer delivers them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr};
use core_bus::cluster::{ClusterBackend, ClusterState, Groups, Sequencing};
use core_bus::events::BusEvent;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::presence::PresenceChange;
use core_bus::{Bus, ClusterDelivery, Envelope, Topic};
use futures::StreamExt;
use metrics::{counter, gauge};
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::jetstream::{follow, HistoryStreams};
use super::shared::{delivery, share_tag, Recent, CONNECTED, FAILED, FORWARDED, RECEIVED};
use super::subjects::{pattern_subjects, topic_subject};
use super::{ClusterConfig, HistoryMode, PresenceMode};

const NODE_HEADER: &str = "Gatewayd-Node";
/// Present on an envelope whose publishing node delivered it to its own anycast groups (`Groups::Served`, while
/// it was disconnected): the queue subscriptions of other nodes skip it.
const SERVED_HEADER: &str = "Gatewayd-Groups-Served";
/// Every `reason` label of [`FAILED`].
const FAILURE_REASONS: [&str; 8] = [
    "presence",
    "queue_full",
    "too_large",
    "history_unavailable",
    "publish",
    "jetstream",
    "subscribe",
    "decode",
];

/// One NATS subscription shared by every local subscription that needs it.
struct Shared {
    count: usize,
    reader: JoinHandle<()>,
}

pub(super) struct Link {
    client: Client,
    /// Counts (re)connections to NATS: JetStream consumers are recreated after each.
    pub(super) connections: watch::Receiver<u64>,
    pub(super) jetstream: async_nats::jetstream::Context,
    /// Set with `history = "jetstream"`.
    history: Option<Arc<HistoryStreams>>,
    pub(super) bus: Bus,
    pub(super) node: String,
    pub(super) prefix: String,
    queue_group: String,
    recent: Mutex<Recent>,
}

impl Link {
    /// True for topics whose messages travel through a JetStream history stream.
    fn sequenced(&self, topic: &Topic) -> bool {
        self.history
            .as_ref()
            .is_some_and(|h| h.stream(topic).is_some())
    }
}

pub struct NatsCluster {
    node: String,
    history: Option<Arc<HistoryStreams>>,
    /// Set with `presence = "kv"`.
    presence: Option<mpsc::UnboundedSender<PresenceChange>>,
    forward: mpsc::Sender<(Arc<Envelope>, Groups)>,
    interest: mpsc::UnboundedSender<BusEvent>,
    connected: Arc<AtomicBool>,
    detail: Arc<Mutex<String>>,
}

impl NatsCluster {
    /// Starts connecting (in the background, with back-off, forever) and returns at once: a node without NATS
    /// keeps serving local traffic.
    pub async fn connect(config: &ClusterConfig, bus: Bus) -> anyhow::Result<NatsCluster> {
        let node = format!("{:016x}", rand::random::<u64>());
        let connected = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(watch::Sender::new(0_u64));
        let detail = Arc::new(Mutex::new("connecting".to_owned()));
        let urls: Vec<ServerAddr> = config
            .urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()?;
        let mut options = ConnectOptions::new()
            .name(format!("gatewayd-{node}"))
            .retry_on_initial_connect()
            .require_tls(config.require_tls)
            .event_callback({
                let (connected, detail) = (connected.clone(), detail.clone());
                let connections = connections.clone();
                move |event| {
                    let (connected, detail) = (connected.clone(), detail.clone());
                    let connections = connections.clone();
                    async move { on_event(event, &connected, &detail, &connections) }
                }
            });
        if let Some(path) = &config.credentials_file {
            options = options.credentials_file(path).await?;
        }
        let client = options.connect(urls).await?;
        gauge!(CONNECTED).set(0.0);
        // Exported from the start, so that rates and alerts see 0 rather than nothing.
        counter!(FORWARDED).absolute(0);
        counter!(RECEIVED).absolute(0);
        for reason in FAILURE_REASONS {
            counter!(FAILED, "reason" => reason).absolute(0);
        }
        let history = match config.history {
            // Validation refuses "streams" with NATS.
            HistoryMode::Local | HistoryMode::Streams => None,
            HistoryMode::Jetstream => Some(Arc::new(HistoryStreams::new(
                &config.subject_prefix,
                &bus.config().history,
            ))),
        };
        let link = Arc::new(Link {
            connections: connections.subscribe(),
            jetstream: async_nats::jetstream::new(client.clone()),
            history: history.clone(),
            client,
            bus,
            node: node.clone(),
            prefix: config.subject_prefix.clone(),
            queue_group: format!("{}-groups", config.subject_prefix),
            recent: Mutex::new(Recent::default()),
        });
        let (forward, forward_rx) = mpsc::channel(config.forward_queue.max(1));
        let (interest, interest_rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_loop(link.clone(), forward_rx));
        if let Some(streams) = &history {
            for index in 0..streams.len() {
                tokio::spawn(follow(link.clone(), streams.clone(), index));
            }
        }
        let presence = match config.presence {
            PresenceMode::Local => None,
            PresenceMode::Kv => Some(super::presence::start(link.clone())),
        };
        tokio::spawn(interest_loop(link, interest_rx));
        tracing::info!(%node, urls = ?config.urls, "cluster: NATS backend started");
        Ok(NatsCluster {
            node,
            history,
            presence,
            forward,
            interest,
            connected,
            detail,
        })
    }
}

fn on_event(
    event: Event,
    connected: &AtomicBool,
    detail: &Mutex<String>,
    connections: &watch::Sender<u64>,
) {
    match event {
        Event::Connected => {
            connections.send_modify(|n| *n += 1);
            connected.store(true, Ordering::Release);
            gauge!(CONNECTED).set(1.0);
            *detail.lock() = "connected".into();
            tracing::info!("cluster: connected to NATS");
        }
        Event::Disconnected => {
            connected.store(false, Ordering::Release);
            gauge!(CONNECTED).set(0.0);
            *detail.lock() = "disconnected; reconnecting".into();
            tracing::warn!("cluster: lost NATS; serving local traffic, reconnecting");
        }
        Event::SlowConsumer(sid) => {
            // The client's buffer for one subscription was full: one message from another node is lost here.
            counter!(FAILED, "reason" => "slow_consumer").increment(1);
            tracing::warn!(
                sid,
                "cluster: NATS subscription buffer full, a remote message was dropped"
            );
        }
        other => tracing::info!(event = %other, "cluster: NATS event"),
    }
}

impl ClusterBackend for NatsCluster {
    fn forward(&self, envelope: &Arc<Envelope>, groups: Groups) {
        if self.forward.try_send((envelope.clone(), groups)).is_err() {
            counter!(FAILED, "reason" => "queue_full").increment(1);
            record_drop(DropReason::ClusterForward, envelope.origin.protocol);
        }
    }

    fn interest(&self, event: &BusEvent) {
        if !matches!(event, BusEvent::NewTopic(_)) {
            let _ = self.interest.send(event.clone());
        }
    }

    fn owns_groups(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn presence(&self, change: &PresenceChange) {
        if let Some(presence) = &self.presence {
            let _ = presence.send(change.clone());
        }
    }

    fn sequencing(&self, topic: &Topic) -> Sequencing {
        let Some(history) = &self.history else {
            return Sequencing::Local;
        };
        match history.stream(topic) {
            None => Sequencing::Local,
            Some(stream) if self.connected.load(Ordering::Acquire) => match stream.epoch() {
                Some(epoch) => Sequencing::Cluster { epoch },
                None => Sequencing::Unavailable,
            },
            Some(_) => Sequencing::Unavailable,
        }
    }

    fn state(&self) -> ClusterState {
        let mut detail = format!("node {}: {}", self.node, self.detail.lock());
        if let Some(history) = &self.history {
            detail.push_str("; ");
            detail.push_str(&history.summary());
        }
        if self.connected.load(Ordering::Acquire) {
            ClusterState::Connected { detail }
        } else {
            ClusterState::Disconnected { detail }
        }
    }
}

async fn forward_loop(link: Arc<Link>, mut queue: mpsc::Receiver<(Arc<Envelope>, Groups)>) {
    while let Some((envelope, groups)) = queue.recv().await {
        let bytes = core_bus::encoding::encode(&envelope);
        let max = link.client.server_info().max_payload;
        if max > 0 && bytes.len() > max {
            tracing::warn!(
                topic = %envelope.topic,
                size = bytes.len(),
                max_payload = max,
                "cluster: envelope larger than the NATS server's max_payload is not forwarded (raise max_payload in nats-server.conf)"
            );
            counter!(FAILED, "reason" => "too_large").increment(1);
            record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            continue;
        }
        let mut headers = HeaderMap::new();
        headers.insert(NODE_HEADER, link.node.as_str());
        // async-nats keeps what is published while disconnected and sends it after reconnecting.
        if groups == Groups::Served {
            headers.insert(SERVED_HEADER, "1");
        }
        let subject = topic_subject(&link.prefix, &envelope.topic);
        if let Some(history) = &link.history {
            if let Some(stream) = history.stream(&envelope.topic) {
                if stream.is_ready() {
                    publish_to_stream(&link, subject, headers, bytes, &envelope).await;
                } else {
                    // Delivered on this node only (`Sequencing::Unavailable`).
                    counter!(FAILED, "reason" => "history_unavailable").increment(1);
                    record_drop(DropReason::ClusterForward, envelope.origin.protocol);
                }
                continue;
            }
        }
        match link
            .client
            .publish_with_headers(subject, headers, bytes)
            .await
        {
            Ok(()) => counter!(FORWARDED).increment(1),
            Err(error) => {
                tracing::debug!(%error, "cluster: publish failed");
                counter!(FAILED, "reason" => "publish").increment(1);
                record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            }
        }
    }
}

/// Writes a history-topic message to its stream. The publish is sent in order here; its ack (the stream sequence)
/// is awaited on the side so that publishes pipeline. Delivery, on every node, comes from the stream's consumer.
async fn publish_to_stream(
    link: &Link,
    subject: String,
    headers: HeaderMap,
    bytes: bytes::Bytes,
    envelope: &Envelope,
) {
    let protocol = envelope.origin.protocol;
    match link
        .jetstream
        .publish_with_headers(subject, headers, bytes)
        .await
    {
        Ok(ack) => {
            tokio::spawn(async move {
                match ack.await {
                    Ok(_) => counter!(FORWARDED).increment(1),
                    Err(error) => {
                        tracing::debug!(%error, "cluster: JetStream did not store a history message");
                        counter!(FAILED, "reason" => "jetstream").increment(1);
                        record_drop(DropReason::ClusterForward, protocol);
                    }
                }
            });
        }
        Err(error) => {
            tracing::debug!(%error, "cluster: JetStream publish failed");
            counter!(FAILED, "reason" => "jetstream").increment(1);
            record_drop(DropReason::ClusterForward, protocol);
        }
    }
}

async fn interest_loop(link: Arc<Link>, mut events: mpsc::UnboundedReceiver<BusEvent>) {
    let mut subscriptions: HashMap<(String, ClusterDelivery), Shared> = HashMap::new();
    while let Some(event) = events.recv().await {
        let (pattern, by, added) = match event {
            BusEvent::Subscribed { pattern, by } => (pattern, by, true),
            BusEvent::Unsubscribed { pattern, by } => (pattern, by, false),
            BusEvent::NewTopic(_) => continue,
        };
        let delivery = delivery(&pattern, by);
        for subject in pattern_subjects(&link.prefix, &pattern) {
            let key = (subject.clone(), delivery.clone());
            if added {
                if let Some(shared) = subscriptions.get_mut(&key) {
                    shared.count += 1;
                    continue;
                }
                match subscribe(&link, &subject, delivery.clone()).await {
                    Ok(reader) => {
                        subscriptions.insert(key, Shared { count: 1, reader });
                    }
                    Err(error) => {
                        counter!(FAILED, "reason" => "subscribe").increment(1);
                        tracing::warn!(%subject, %error, "cluster: NATS subscribe failed");
                    }
                }
            } else if let Some(shared) = subscriptions.get_mut(&key) {
                shared.count -= 1;
                if shared.count == 0 {
                    if let Some(shared) = subscriptions.remove(&key) {
                        shared.reader.abort();
                    }
                }
            }
        }
    }
}

/// The queue group of a subscription: none for fanout, `<prefix>-groups` for the topics' groups and
/// `<prefix>-groups-<tag>` for a named group.
fn queue(link: &Link, delivery: &ClusterDelivery) -> Option<String> {
    match delivery {
        ClusterDelivery::Fanout => None,
        ClusterDelivery::Group => Some(link.queue_group.clone()),
        ClusterDelivery::Shared { name, pattern } => {
            Some(format!("{}-{}", link.queue_group, share_tag(name, pattern)))
        }
    }
}

async fn subscribe(
    link: &Arc<Link>,
    subject: &str,
    delivery: ClusterDelivery,
) -> anyhow::Result<JoinHandle<()>> {
    let mut subscriber = match queue(link, &delivery) {
        Some(queue) => {
            link.client
                .queue_subscribe(subject.to_owned(), queue)
                .await?
        }
        None => link.client.subscribe(subject.to_owned()).await?,
    };
    let group = delivery != ClusterDelivery::Fanout;
    let link = link.clone();
    Ok(tokio::spawn(async move {
        while let Some(message) = subscriber.next().await {
            let headers = message.headers.as_ref();
            let from_self = headers
                .and_then(|h| h.get(NODE_HEADER))
                .is_some_and(|node| node.as_str() == link.node);
            // This node already did its own fanout; its group deliveries do come back through NATS (a named group
            // checks that its pattern, wider as subjects, matches the topic) unless the publisher served them.
            let served = headers.is_some_and(|h| h.get(SERVED_HEADER).is_some());
            if (from_self && !group) || (served && group) {
                continue;
            }
            let envelope = match core_bus::encoding::decode(message.payload) {
                Ok(envelope) => envelope,
                Err(error) => {
                    counter!(FAILED, "reason" => "decode").increment(1);
                    tracing::warn!(%error, "cluster: undecodable envelope");
                    continue;
                }
            };
            // History topics reach this node through their stream's consumer, with positions.
            if !group && link.sequenced(&envelope.topic) {
                continue;
            }
            if !group && !link.recent.lock().first_time(envelope.id) {
                continue;
            }
            counter!(RECEIVED).increment(1);
            link.bus.publish_from_cluster(envelope, &delivery);
        }
    }))
}
