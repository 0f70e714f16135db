//! The Redis cluster backend (`backend = "redis"`). Every local publish goes once, with `PUBLISH`, to the channel
//! of its topic (`redis_keys.rs`). A node subscribes (one Pub/Sub connection) to the channels and globs of its
//! local fanout and anycast patterns, so nothing else reaches it. Fanout: every interested node delivers the
//! message to its fanout subscribers. Anycast: every node with a matching local group tries to claim the message
//! with `SET <prefix>claim:<id> <node> NX PX 30000`; Redis lets exactly one succeed, and only that node delivers
//! it to its group. Envelopes travel in the versioned binary encoding of `docs/envelope.md`, after the publishing
//! node's 8-byte id. The connection is supervised: on loss the node reports `disconnected`, delivers groups
//! locally, reconnects with back-off (100 ms doubling to 5 s) and subscribes again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use core_bus::cluster::{ClusterBackend, ClusterState};
use core_bus::events::BusEvent;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Bus, ClusterDelivery, Envelope, Pattern};
use futures::StreamExt;
use metrics::{counter, gauge};
use parking_lot::Mutex;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};
use tokio::sync::mpsc;

use super::nats::{Recent, CONNECTED, FAILED, FORWARDED, RECEIVED};
use super::redis_keys::{Channel, Keys};
use super::ClusterConfig;

/// Every `reason` label of [`FAILED`] this backend counts.
const FAILURE_REASONS: [&str; 6] = [
    "connect",
    "queue_full",
    "publish",
    "subscribe",
    "decode",
    "claim",
];
/// How long a claim key lives: far longer than any node takes to see a message.
const CLAIM_MS: u64 = 30_000;
/// Connect and response timeout of every Redis command.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often a connected node pings Redis, to notice a server that stopped answering.
const PING: Duration = Duration::from_secs(2);

/// Local interest in one subscription.
#[derive(Default)]
struct Interest {
    fanout: usize,
    /// The local anycast patterns behind this subscription (a glob is wider than its patterns).
    groups: Vec<Pattern>,
}

impl Interest {
    fn is_empty(&self) -> bool {
        self.fanout == 0 && self.groups.is_empty()
    }
}

struct Link {
    bus: Bus,
    node: u64,
    keys: Keys,
    servers: Vec<ConnectionInfo>,
    /// The command connection while connected.
    commands: Mutex<Option<MultiplexedConnection>>,
    connected: AtomicBool,
    detail: Mutex<String>,
}

impl Link {
    fn set_state(&self, connected: bool, detail: String) {
        self.connected.store(connected, Ordering::Release);
        gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
        *self.detail.lock() = detail;
    }
}

pub struct RedisCluster {
    link: Arc<Link>,
    forward: mpsc::Sender<Arc<Envelope>>,
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
                let mut settings = info.redis_settings().clone();
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
        let link = Arc::new(Link {
            bus,
            node: rand::random::<u64>(),
            keys: Keys::new(&config.key_prefix),
            servers,
            commands: Mutex::new(None),
            connected: AtomicBool::new(false),
            detail: Mutex::new("connecting".into()),
        });
        let (forward, forward_rx) = mpsc::channel(config.forward_queue.max(1));
        let (interest, interest_rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_loop(link.clone(), forward_rx));
        tokio::spawn(supervise(link.clone(), interest_rx));
        tracing::info!(node = %format!("{:016x}", link.node), urls = ?config.urls, "cluster: Redis backend started");
        Ok(RedisCluster {
            link,
            forward,
            interest,
        })
    }
}

impl ClusterBackend for RedisCluster {
    fn forward(&self, envelope: &Arc<Envelope>) {
        if self.forward.try_send(envelope.clone()).is_err() {
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

    fn state(&self) -> ClusterState {
        let detail = format!(
            "node {:016x}: redis {}",
            self.link.node,
            self.link.detail.lock()
        );
        if self.link.connected.load(Ordering::Acquire) {
            ClusterState::Connected { detail }
        } else {
            ClusterState::Disconnected { detail }
        }
    }
}

async fn forward_loop(link: Arc<Link>, mut queue: mpsc::Receiver<Arc<Envelope>>) {
    while let Some(envelope) = queue.recv().await {
        let encoded = core_bus::encoding::encode(&envelope);
        let mut payload = Vec::with_capacity(8 + encoded.len());
        payload.extend_from_slice(&link.node.to_be_bytes());
        payload.extend_from_slice(&encoded);
        let connection = link.commands.lock().clone();
        let published = match connection {
            Some(mut connection) => redis::cmd("PUBLISH")
                .arg(link.keys.topic(&envelope.topic))
                .arg(payload)
                .query_async::<i64>(&mut connection)
                .await
                .map_err(|e| e.to_string()),
            None => Err("not connected".into()),
        };
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
    let mut interest: HashMap<Channel, Interest> = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match connect(&link).await {
            Ok((commands, pubsub)) => {
                backoff = Duration::from_millis(100);
                warned = false;
                let (mut sink, stream) = pubsub.split();
                let mut resubscribed = Ok(());
                for channel in interest.keys() {
                    resubscribed = subscribe(&mut sink, channel, true).await;
                    if resubscribed.is_err() {
                        break;
                    }
                }
                if resubscribed.is_ok() {
                    *link.commands.lock() = Some(commands.clone());
                    link.set_state(true, "connected".into());
                    tracing::info!("cluster: connected to Redis");
                    serve(&link, &mut events, &mut interest, sink, stream, commands).await;
                    *link.commands.lock() = None;
                    link.set_state(false, "disconnected; reconnecting".into());
                    tracing::warn!("cluster: lost Redis; serving local traffic, reconnecting");
                }
            }
            Err(error) => {
                counter!(FAILED, "reason" => "connect").increment(1);
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
                        track(&link, &mut interest, event);
                    }
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(link: &Link) -> anyhow::Result<(MultiplexedConnection, redis::aio::PubSub)> {
    let mut last = anyhow::anyhow!("no Redis URL");
    for server in &link.servers {
        let attempt = async {
            let client = redis::Client::open(server.clone())?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(TIMEOUT))
                .set_response_timeout(Some(TIMEOUT));
            let commands = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let pubsub = tokio::time::timeout(TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| anyhow::anyhow!("Pub/Sub connection timed out"))??;
            anyhow::Ok((commands, pubsub))
        };
        match attempt.await {
            Ok(connections) => return Ok(connections),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// Serves one connection until it fails.
async fn serve(
    link: &Arc<Link>,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    interest: &mut HashMap<Channel, Interest>,
    mut sink: PubSubSink,
    mut stream: redis::aio::PubSubStream,
    commands: MultiplexedConnection,
) {
    let mut recent_fanout = Recent::default();
    let mut recent_groups = Recent::default();
    let mut ping = tokio::time::interval(PING);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else { return };
                receive(link, interest, &message, &commands, &mut recent_fanout, &mut recent_groups);
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                for (channel, added) in track(link, interest, event) {
                    if subscribe(&mut sink, &channel, added).await.is_err() {
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                let mut commands = commands.clone();
                if redis::cmd("PING").query_async::<String>(&mut commands).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies an interest change; returns the subscriptions to add (`true`) or remove (`false`).
fn track(
    link: &Link,
    interest: &mut HashMap<Channel, Interest>,
    event: BusEvent,
) -> Vec<(Channel, bool)> {
    let (pattern, group, added) = match event {
        BusEvent::Subscribed { pattern, group } => (pattern, group, true),
        BusEvent::Unsubscribed { pattern, group } => (pattern, group, false),
        BusEvent::NewTopic(_) => return Vec::new(),
    };
    let mut changes = Vec::new();
    for channel in link.keys.pattern(&pattern) {
        let entry = interest.entry(channel.clone()).or_default();
        let was_empty = entry.is_empty();
        match (group, added) {
            (false, true) => entry.fanout += 1,
            (false, false) => entry.fanout = entry.fanout.saturating_sub(1),
            (true, true) => entry.groups.push(pattern.clone()),
            (true, false) => {
                if let Some(at) = entry.groups.iter().position(|p| *p == pattern) {
                    entry.groups.swap_remove(at);
                }
            }
        }
        if entry.is_empty() {
            interest.remove(&channel);
            if !was_empty {
                changes.push((channel, false));
            }
        } else if was_empty {
            changes.push((channel, true));
        }
    }
    changes
}

async fn subscribe(sink: &mut PubSubSink, channel: &Channel, add: bool) -> redis::RedisResult<()> {
    let result = match (channel, add) {
        (Channel::Exact(name), true) => sink.subscribe(name).await,
        (Channel::Exact(name), false) => sink.unsubscribe(name).await,
        (Channel::Glob(glob), true) => sink.psubscribe(glob).await,
        (Channel::Glob(glob), false) => sink.punsubscribe(glob).await,
    };
    if let Err(error) = &result {
        counter!(FAILED, "reason" => "subscribe").increment(1);
        tracing::warn!(?channel, %error, "cluster: Redis subscribe failed");
    }
    result
}

/// Delivers one Pub/Sub message to local fanout subscribers and, after a won claim, to a local group.
fn receive(
    link: &Arc<Link>,
    interest: &HashMap<Channel, Interest>,
    message: &redis::Msg,
    commands: &MultiplexedConnection,
    recent_fanout: &mut Recent,
    recent_groups: &mut Recent,
) {
    let channel = if message.from_pattern() {
        match message.get_pattern::<String>() {
            Ok(glob) => Channel::Glob(glob),
            Err(_) => return,
        }
    } else {
        Channel::Exact(message.get_channel_name().to_owned())
    };
    let Some(wanted) = interest.get(&channel) else {
        return;
    };
    let payload = message.get_payload_bytes();
    let (Some(node), Some(encoded)) = (payload.get(..8), payload.get(8..)) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return;
    };
    let from_self = node == link.node.to_be_bytes();
    // This node already did its own fanout; its group deliveries do come back through Redis.
    if wanted.groups.is_empty() && from_self {
        return;
    }
    let envelope = match core_bus::encoding::decode(Bytes::copy_from_slice(encoded)) {
        Ok(envelope) => envelope,
        Err(error) => {
            counter!(FAILED, "reason" => "decode").increment(1);
            tracing::warn!(%error, "cluster: undecodable envelope");
            return;
        }
    };
    let group = wanted.groups.iter().any(|p| p.matches(&envelope.topic))
        && recent_groups.first_time(envelope.id);
    let fanout = wanted.fanout > 0 && !from_self && recent_fanout.first_time(envelope.id);
    if fanout {
        counter!(RECEIVED).increment(1);
        link.bus
            .publish_from_cluster(envelope.clone(), ClusterDelivery::Fanout);
    }
    if group {
        let (link, mut commands) = (link.clone(), commands.clone());
        tokio::spawn(async move {
            let claimed = redis::cmd("SET")
                .arg(link.keys.claim(envelope.id))
                .arg(link.node)
                .arg("NX")
                .arg("PX")
                .arg(CLAIM_MS)
                .query_async::<Option<String>>(&mut commands)
                .await;
            match claimed {
                Ok(Some(_)) => {
                    counter!(RECEIVED).increment(1);
                    link.bus
                        .publish_from_cluster(envelope, ClusterDelivery::Group);
                }
                Ok(None) => {}
                Err(error) => {
                    counter!(FAILED, "reason" => "claim").increment(1);
                    tracing::debug!(%error, "cluster: Redis claim failed");
                }
            }
        });
    }
}
