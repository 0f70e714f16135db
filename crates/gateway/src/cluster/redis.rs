//! The Redis cluster backend (`backend = "redis"`). Every local publish goes once, with `PUBLISH`, to the channel of
//! its topic (`redis_keys.rs`). A node subscribes (on its one RESP3 connection) to the channels and globs of its local
//! fanout and anycast patterns, so nothing else reaches it. Fanout: every interested node delivers the message to its
//! fanout subscribers. Anycast: every node with a matching local group tries to claim the message with
//! `SET <prefix>claim:<id> <node> NX PX 30000` (a named group, MQTT shared subscription: on its own key
//! `<prefix>claim:<id>:<tag>`); Redis lets exactly one succeed per key, and only that node delivers it to its group.
//! Envelopes travel in the versioned binary encoding of `docs/envelope.md`, after the publishing node's 8-byte id. The
//! connection is supervised: on loss the node reports `disconnected`, delivers groups locally, reconnects with back-off
//! (100 ms doubling to 5 s) and subscribes again. `redis_serve.rs` serves one live connection; with
//! `history = "streams"`, history topics' fanout goes through Redis Streams instead (`redis_history.rs`); with
//! `messageloop_layout = "ml2"`, the fanout of MessageLoop channels goes through upstream MessageLoop's layout instead
//! (`ml2_write.rs`, `ml2_read.rs`), and their history topics are numbered by its per-channel streams.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use core_bus::cluster::{ClusterBackend, ClusterState, Groups, Sequencing};
use core_bus::events::BusEvent;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::presence::PresenceChange;
use core_bus::{Bus, Envelope, Topic};
use metrics::{counter, gauge};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo};
use tokio::sync::mpsc;

use super::ml2_keys;
use super::ml2_read;
use super::ml2_write::Ml2;
use super::redis_history::{follow, RedisHistory};
use super::redis_keys::{Channel, Keys};
use super::redis_presence::{self, PresenceLink};
use super::redis_serve::{serve, subscribe, track, Wanted};
use super::shared::{CONNECTED, FAILED, FORWARDED, RECEIVED};
use super::{ClusterConfig, HistoryMode, MessageLoopLayout, PresenceMode};

/// Every `reason` label of [`FAILED`] this backend counts.
const FAILURE_REASONS: [&str; 10] = [
    "connect",
    "presence",
    "history",
    "history_unavailable",
    "slow_consumer",
    "queue_full",
    "publish",
    "subscribe",
    "decode",
    "claim",
];
/// Connect and response timeout of every Redis command.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The first reconnect delay, doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Pub/Sub messages received and not yet handed to the bus; more are dropped (`reason="slow_consumer"`).
const PUSH_QUEUE: usize = 65_536;

/// What the backend and its connection tasks share.
pub(super) struct Link {
    pub(super) bus: Bus,
    /// This node's random id, ahead of every envelope it publishes.
    pub(super) node: u64,
    pub(super) keys: Keys,
    /// Set with `history = "streams"`.
    history: Option<Arc<RedisHistory>>,
    /// Set with `presence = "kv"`.
    pub(super) presence: Option<PresenceLink>,
    /// Set with `messageloop_layout = "ml2"`.
    pub(super) ml2: Option<Ml2>,
    /// Counts connections made, so that tasks notice a reconnect.
    pub(super) generation: AtomicU64,
    servers: Vec<ConnectionInfo>,
    /// The command connection while connected.
    pub(super) commands: Mutex<Option<MultiplexedConnection>>,
    connected: AtomicBool,
    detail: Mutex<String>,
}

impl Link {
    /// True for topics whose fanout travels through a history stream or the ml2 layout (their groups still use
    /// gatewayd's Pub/Sub channels).
    pub(super) fn fanout_elsewhere(&self, topic: &Topic) -> bool {
        self.ml2_channel(topic).is_some()
            || self
                .history
                .as_ref()
                .is_some_and(|h| h.stream(topic).is_some())
    }

    /// The MessageLoop channel of `topic` when it travels in the ml2 layout.
    pub(super) fn ml2_channel(&self, topic: &Topic) -> Option<String> {
        self.ml2.as_ref().and(ml2_keys::channel(topic))
    }

    fn set_state(&self, connected: bool, detail: String) {
        self.connected.store(connected, Ordering::Release);
        gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
        *self.detail.lock() = detail;
    }
}

pub struct RedisCluster {
    link: Arc<Link>,
    forward: mpsc::Sender<(Arc<Envelope>, Groups)>,
    interest: mpsc::UnboundedSender<BusEvent>,
}

impl RedisCluster {
    /// Starts connecting (in the background, with back-off, forever) and returns at once: a node without Redis
    /// keeps serving local traffic.
    pub fn connect(config: &ClusterConfig, bus: Bus) -> anyhow::Result<RedisCluster> {
        let password = match &config.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cluster.password_file: {}: {e}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            None => None,
        };
        let servers = config
            .urls
            .iter()
            .map(|url| {
                let mut info = url.as_str().into_connection_info()?;
                // RESP3 (Redis 6+): Pub/Sub and commands share one connection.
                let mut settings = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                if let Some(username) = &config.username {
                    settings = settings.set_username(username);
                }
                if let Some(password) = &password {
                    settings = settings.set_password(password);
                }
                info = info.set_redis_settings(settings);
                Ok(info)
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        gauge!(CONNECTED).set(0.0);
        // Exported from the start, so that rates and alerts see 0 rather than nothing.
        counter!(FORWARDED).absolute(0);
        counter!(RECEIVED).absolute(0);
        for reason in FAILURE_REASONS {
            counter!(FAILED, "reason" => reason).absolute(0);
        }
        let history = match config.history {
            HistoryMode::Streams => Some(Arc::new(RedisHistory::new(
                &config.key_prefix,
                &bus.config().history,
            ))),
            HistoryMode::Local | HistoryMode::Jetstream => None,
        };
        let (presence, presence_task) = match config.presence {
            PresenceMode::Kv => {
                let (presence, task) = redis_presence::channels();
                (Some(presence), Some(task))
            }
            PresenceMode::Local => (None, None),
        };
        let node = rand::random::<u64>();
        let (keys, ml2) = match config.messageloop_layout {
            MessageLoopLayout::Gatewayd => (Keys::new(&config.key_prefix), None),
            MessageLoopLayout::Ml2 => (
                Keys::new(&config.key_prefix).with_ml2(),
                Some(Ml2::new(node)),
            ),
        };
        let link = Arc::new(Link {
            bus,
            node,
            keys,
            history: history.clone(),
            presence,
            ml2,
            generation: AtomicU64::new(0),
            servers,
            commands: Mutex::new(None),
            connected: AtomicBool::new(false),
            detail: Mutex::new("connecting".into()),
        });
        let (forward, forward_rx) = mpsc::channel(config.forward_queue.max(1));
        let (interest, interest_rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_loop(link.clone(), forward_rx));
        tokio::spawn(supervise(link.clone(), interest_rx));
        if let Some(history) = history {
            tokio::spawn(follow(link.clone(), history));
        }
        if let Some(task) = presence_task {
            tokio::spawn(redis_presence::run(link.clone(), task));
        }
        tracing::info!(node = %format!("{:016x}", link.node), urls = ?config.urls, "cluster: Redis backend started");
        Ok(RedisCluster {
            link,
            forward,
            interest,
        })
    }
}

impl ClusterBackend for RedisCluster {
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
        self.link.connected.load(Ordering::Acquire)
    }

    fn presence(&self, change: &PresenceChange) {
        if let Some(presence) = &self.link.presence {
            let _ = presence.changes.send(change.clone());
        }
    }

    fn sequencing(&self, topic: &Topic) -> Sequencing {
        if let Some(ml2) = self
            .link
            .ml2
            .as_ref()
            .filter(|_| self.link.ml2_channel(topic).is_some())
        {
            return match ml2.epoch() {
                Some((epoch, _)) if self.link.connected.load(Ordering::Acquire) => {
                    Sequencing::Cluster { epoch }
                }
                _ => Sequencing::Unavailable,
            };
        }
        let Some(stream) = self.link.history.as_ref().and_then(|h| h.stream(topic)) else {
            return Sequencing::Local;
        };
        match stream.epoch() {
            Some(epoch) if self.link.connected.load(Ordering::Acquire) => {
                Sequencing::Cluster { epoch }
            }
            _ => Sequencing::Unavailable,
        }
    }

    fn epoch_name(&self, epoch: u64) -> Option<String> {
        let (known, name) = self.link.ml2.as_ref()?.epoch()?;
        (known == epoch).then_some(name)
    }

    fn epoch_named(&self, name: &str) -> Option<u64> {
        self.link.ml2.as_ref().map(|_| ml2_keys::epoch_number(name))
    }

    fn state(&self) -> ClusterState {
        let mut detail = format!(
            "node {:016x}: redis {}",
            self.link.node,
            self.link.detail.lock()
        );
        if let Some(history) = &self.link.history {
            detail.push_str("; ");
            detail.push_str(&history.summary());
        }
        if self.link.connected.load(Ordering::Acquire) {
            ClusterState::Connected { detail }
        } else {
            ClusterState::Disconnected { detail }
        }
    }
}

async fn forward_loop(link: Arc<Link>, mut queue: mpsc::Receiver<(Arc<Envelope>, Groups)>) {
    while let Some((envelope, groups)) = queue.recv().await {
        let connection = link.commands.lock().clone();
        // Published while disconnected (this node served its groups): it stays on this node, also when the
        // connection came back before it left the queue, so that no other node's group takes it a second time.
        let Some(mut connection) = connection.filter(|_| groups == Groups::Cluster) else {
            counter!(FAILED, "reason" => "publish").increment(1);
            record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            continue;
        };
        let encoded = core_bus::encoding::encode(&envelope);
        let mut payload = Vec::with_capacity(8 + encoded.len());
        payload.extend_from_slice(&link.node.to_be_bytes());
        payload.extend_from_slice(&encoded);
        if let (Some(ml2), Some(channel)) = (&link.ml2, link.ml2_channel(&envelope.topic)) {
            let history = link
                .bus
                .config()
                .history
                .iter()
                .find(|rule| rule.topics.matches(&envelope.topic))
                .map(|rule| &rule.policy);
            // Fanout reaches every node (gatewayd's and upstream's) from the ml2 channel; the copy below serves
            // anycast groups.
            if let Err(error) = ml2
                .publish(&mut connection, &envelope, &channel, history)
                .await
            {
                tracing::debug!(%error, "cluster: Redis did not take an ml2 message");
                let reason = if history.is_some() {
                    "history_unavailable"
                } else {
                    "publish"
                };
                counter!(FAILED, "reason" => reason).increment(1);
                record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            }
        } else if let Some(stream) = link
            .history
            .as_ref()
            .and_then(|h| h.stream(&envelope.topic))
        {
            // Fanout reaches every node from the stream; the Pub/Sub copy below serves anycast groups.
            let stored = match stream.epoch() {
                Some(_) => stream
                    .append(&mut connection, encoded)
                    .await
                    .map_err(|error| {
                        tracing::debug!(%error, "cluster: Redis did not store a history message");
                    }),
                // Delivered on this node only (`Sequencing::Unavailable`).
                None => Err(()),
            };
            if stored.is_err() {
                counter!(FAILED, "reason" => "history_unavailable").increment(1);
                record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            }
        }
        let published = redis::cmd("PUBLISH")
            .arg(link.keys.topic(&envelope.topic))
            .arg(payload)
            .query_async::<i64>(&mut connection)
            .await;
        match published {
            Ok(_) => counter!(FORWARDED).increment(1),
            Err(error) => {
                tracing::debug!(%error, "cluster: Redis publish failed");
                counter!(FAILED, "reason" => "publish").increment(1);
                record_drop(DropReason::ClusterForward, envelope.origin.protocol);
            }
        }
    }
}

/// Keeps the node connected to the first Redis server that answers, forever; tracks local interest meanwhile.
async fn supervise(link: Arc<Link>, mut events: mpsc::UnboundedReceiver<BusEvent>) {
    let mut interest = Wanted::new();
    if link.ml2.is_some() {
        ml2_read::pin_history(&link, &mut interest);
    }
    let mut backoff = MIN_BACKOFF;
    let mut warned = false;
    loop {
        match connect(&link).await {
            Ok((mut commands, pushes)) => {
                warned = false;
                let mut resubscribed = match &link.ml2 {
                    Some(ml2) => ml2.read_epoch(&mut commands).await.map(drop),
                    None => Ok(()),
                };
                let presence = Channel::Exact(link.keys.presence_channel());
                let presence = link.presence.as_ref().map(|_| &presence);
                for channel in interest.keys().chain(presence) {
                    if resubscribed.is_err() {
                        break;
                    }
                    resubscribed = subscribe(&mut commands, channel, true).await;
                }
                if let (Ok(()), Some((epoch, _))) =
                    (&resubscribed, link.ml2.as_ref().and_then(Ml2::epoch))
                {
                    // Pub/Sub messages arriving meanwhile wait in `pushes`; the history drops what it already has.
                    if let Err(error) = ml2_read::backfill(&link, &mut commands, epoch).await {
                        counter!(FAILED, "reason" => "history").increment(1);
                        tracing::warn!(%error, "cluster: could not read the ml2 history streams");
                    }
                }
                if resubscribed.is_ok() {
                    *link.commands.lock() = Some(commands.clone());
                    link.generation.fetch_add(1, Ordering::AcqRel);
                    link.set_state(true, "connected".into());
                    tracing::info!("cluster: connected to Redis");
                    let since = Instant::now();
                    serve(&link, &mut events, &mut interest, commands, pushes).await;
                    // A server that accepts and drops connections at once keeps the back-off growing.
                    if since.elapsed() >= MAX_BACKOFF {
                        backoff = MIN_BACKOFF;
                    }
                    *link.commands.lock() = None;
                    link.set_state(false, "disconnected; reconnecting".into());
                    tracing::warn!("cluster: lost Redis; serving local traffic, reconnecting");
                }
            }
            Err(error) => {
                counter!(FAILED, "reason" => "connect").increment(1);
                link.set_state(false, format!("disconnected: {error}; retrying"));
                if warned {
                    tracing::debug!(%error, "cluster: Redis connect failed");
                } else {
                    tracing::warn!(%error, "cluster: Redis connect failed; retrying");
                    warned = true;
                }
            }
        }
        // Interest keeps changing while disconnected.
        let wake = tokio::time::sleep(backoff);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                event = events.recv() => match event {
                    Some(event) => {
                        track(&link.keys, &mut interest, event);
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A plain connection (no Pub/Sub) to the first server that answers, with `response_timeout` per command.
pub(super) async fn open(
    link: &Link,
    response_timeout: Duration,
) -> anyhow::Result<MultiplexedConnection> {
    let mut last = anyhow::anyhow!("no Redis URL");
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    for server in &link.servers {
        let attempt = async {
            redis::Client::open(server.clone())?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match attempt.await {
            Ok(connection) => return Ok(connection),
            Err(error) => last = error.into(),
        }
    }
    Err(last)
}

/// One RESP3 connection to the first server that answers, for commands and Pub/Sub alike; its Pub/Sub messages
/// arrive on a queue of [`PUSH_QUEUE`] that drops (and counts) what does not fit.
async fn connect(link: &Link) -> anyhow::Result<(MultiplexedConnection, mpsc::Receiver<PushInfo>)> {
    let mut last = anyhow::anyhow!("no Redis URL");
    for server in &link.servers {
        let (pushes, received) = mpsc::channel(PUSH_QUEUE);
        let push = move |info: PushInfo| {
            pushes.try_send(info).inspect_err(|_| {
                counter!(FAILED, "reason" => "slow_consumer").increment(1);
            })
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_push_sender(push);
        let attempt = async {
            redis::Client::open(server.clone())?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        match attempt.await {
            Ok(connection) => return Ok((connection, received)),
            Err(error) => last = error.into(),
        }
    }
    Err(last)
}
