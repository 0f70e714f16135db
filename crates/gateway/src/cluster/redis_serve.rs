//! One live Redis connection of the Redis backend (RESP3: commands and Pub/Sub on one socket): keeps the
//! subscriptions equal to local interest, delivers what arrives (fanout at once; anycast after a won `SET NX` claim, in arrival order, at most
//! [`CLAIMS_IN_FLIGHT`] claims pipelined; ml2-layout messages through `ml2_read.rs`) and pings the server. Returns
//! when the connection fails.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use core_bus::events::BusEvent;
use core_bus::{ClusterDelivery, Envelope, Pattern};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use metrics::counter;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, RedisResult};
use tokio::sync::mpsc;

use super::ml2_read;
use super::redis::Link;
use super::redis_keys::{Channel, Keys};
use super::shared::{Recent, FAILED, RECEIVED};

/// How long a claim key lives: far longer than any node takes to see a message.
const CLAIM_MS: u64 = 30_000;
/// Claims awaiting Redis's answer; beyond this the node stops reading Pub/Sub until answers come back.
const CLAIMS_IN_FLIGHT: usize = 1_024;
/// How often a connected node pings Redis, to notice a server that stopped answering.
const PING: Duration = Duration::from_secs(2);

/// Local interest in one subscription.
#[derive(Default)]
pub(super) struct Interest {
    fanout: usize,
    /// The local anycast patterns behind this subscription (a glob is wider than its patterns).
    groups: Vec<Pattern>,
}

impl Interest {
    /// Interest that no local subscriber holds (history the node records anyway).
    pub(super) fn pin(&mut self) {
        self.fanout += 1;
    }

    fn is_empty(&self) -> bool {
        self.fanout == 0 && self.groups.is_empty()
    }
}

/// Every subscription the node's local subscribers and groups need.
pub(super) type Wanted = HashMap<Channel, Interest>;

/// Serves one connection until it fails.
pub(super) async fn serve(
    link: &Arc<Link>,
    events: &mut mpsc::UnboundedReceiver<BusEvent>,
    interest: &mut Wanted,
    mut commands: MultiplexedConnection,
    mut pushes: mpsc::Receiver<PushInfo>,
) {
    let mut recent_fanout = Recent::default();
    let mut recent_groups = Recent::default();
    let mut claims = FuturesOrdered::new();
    let mut ping = tokio::time::interval(PING);
    loop {
        tokio::select! {
            push = pushes.recv(), if claims.len() < CLAIMS_IN_FLIGHT => {
                let Some(push) = push else { return };
                if push.kind == PushKind::Disconnection {
                    return;
                }
                let Some(message) = redis::Msg::from_push_info(push) else { continue };
                if let Some(presence) = &link.presence {
                    if message.get_channel_name() == link.keys.presence_channel() {
                        let announcement = Bytes::copy_from_slice(message.get_payload_bytes());
                        if presence.incoming.try_send(announcement).is_err() {
                            counter!(FAILED, "reason" => "presence").increment(1);
                        }
                        continue;
                    }
                }
                let wanted = receive(link, interest, &message, &mut recent_fanout, &mut recent_groups);
                if let Some(envelope) = wanted {
                    claims.push_back(claim(link, commands.clone(), envelope));
                }
            }
            Some((envelope, claimed)) = claims.next(), if !claims.is_empty() => {
                deliver(link, envelope, claimed);
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                for (channel, added) in track(&link.keys, interest, event) {
                    if subscribe(&mut commands, &channel, added).await.is_err() {
                        return;
                    }
                }
            }
            _ = ping.tick() => {
                if redis::cmd("PING").query_async::<String>(&mut commands).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Applies an interest change; returns the subscriptions to add (`true`) or remove (`false`).
pub(super) fn track(keys: &Keys, interest: &mut Wanted, event: BusEvent) -> Vec<(Channel, bool)> {
    let (pattern, group, added) = match event {
        BusEvent::Subscribed { pattern, group } => (pattern, group, true),
        BusEvent::Unsubscribed { pattern, group } => (pattern, group, false),
        BusEvent::NewTopic(_) => return Vec::new(),
    };
    let mut changes = Vec::new();
    let channels = if group {
        keys.pattern(&pattern)
    } else {
        keys.fanout(&pattern)
    };
    for channel in channels {
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

/// `(P)SUBSCRIBE` or `(P)UNSUBSCRIBE` one channel or glob.
pub(super) async fn subscribe(
    connection: &mut MultiplexedConnection,
    channel: &Channel,
    add: bool,
) -> RedisResult<()> {
    let result = match (channel, add) {
        (Channel::Exact(name), true) => connection.subscribe(name).await,
        (Channel::Exact(name), false) => connection.unsubscribe(name).await,
        (Channel::Glob(glob), true) => connection.psubscribe(glob).await,
        (Channel::Glob(glob), false) => connection.punsubscribe(glob).await,
    };
    if let Err(error) = &result {
        counter!(FAILED, "reason" => "subscribe").increment(1);
        tracing::warn!(?channel, %error, "cluster: Redis subscribe failed");
    }
    result
}

/// Delivers one Pub/Sub message to local fanout subscribers; returns it when a local group wants it (to claim).
fn receive(
    link: &Link,
    interest: &Wanted,
    message: &redis::Msg,
    recent_fanout: &mut Recent,
    recent_groups: &mut Recent,
) -> Option<Envelope> {
    let channel = if message.from_pattern() {
        Channel::Glob(message.get_pattern::<String>().ok()?)
    } else {
        Channel::Exact(message.get_channel_name().to_owned())
    };
    let wanted = interest.get(&channel)?;
    let payload = message.get_payload_bytes();
    if ml2_read::is_ml2(message.get_channel_name()) {
        if wanted.fanout > 0 {
            ml2_read::deliver_live(link, message.get_channel_name(), payload, recent_fanout);
        }
        return None;
    }
    let (Some(node), Some(encoded)) = (payload.get(..8), payload.get(8..)) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return None;
    };
    let from_self = node == link.node.to_be_bytes();
    // This node already did its own fanout; its group deliveries do come back through Redis.
    if wanted.groups.is_empty() && from_self {
        return None;
    }
    let envelope = match core_bus::encoding::decode(Bytes::copy_from_slice(encoded)) {
        Ok(envelope) => envelope,
        Err(error) => {
            counter!(FAILED, "reason" => "decode").increment(1);
            tracing::warn!(%error, "cluster: undecodable envelope");
            return None;
        }
    };
    let group = wanted.groups.iter().any(|p| p.matches(&envelope.topic))
        && recent_groups.first_time(envelope.id);
    // History topics reach this node's fanout subscribers through their stream, with positions; MessageLoop
    // channels under the ml2 layout through its Pub/Sub channels.
    let fanout = wanted.fanout > 0 && !from_self && !link.fanout_elsewhere(&envelope.topic);
    if fanout && recent_fanout.first_time(envelope.id) {
        counter!(RECEIVED).increment(1);
        link.bus
            .publish_from_cluster(envelope.clone(), ClusterDelivery::Fanout);
    }
    group.then_some(envelope)
}

/// `SET <prefix>claim:<id> <node> NX PX 30000`: Redis runs commands one at a time, so exactly one node's claim
/// of a message succeeds.
fn claim(
    link: &Link,
    mut commands: MultiplexedConnection,
    envelope: Envelope,
) -> impl Future<Output = (Envelope, RedisResult<Option<String>>)> {
    let mut command = redis::cmd("SET");
    command
        .arg(link.keys.claim(envelope.id))
        .arg(link.node)
        .arg("NX")
        .arg("PX")
        .arg(CLAIM_MS);
    async move {
        let claimed = command.query_async(&mut commands).await;
        (envelope, claimed)
    }
}

/// Hands a message whose claim this node won to one member of its local group.
fn deliver(link: &Link, envelope: Envelope, claimed: RedisResult<Option<String>>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pattern: &str, group: bool, added: bool) -> BusEvent {
        let pattern = Pattern::parse(pattern).expect("pattern");
        if added {
            BusEvent::Subscribed { pattern, group }
        } else {
            BusEvent::Unsubscribed { pattern, group }
        }
    }

    #[test]
    fn a_channel_is_subscribed_while_any_local_interest_needs_it() {
        let keys = Keys::new("gw:");
        let mut wanted = Wanted::new();
        let mut apply =
            |pattern, group, added| track(&keys, &mut wanted, event(pattern, group, added));
        let exact = |s: &str| Channel::Exact(s.to_owned());
        let glob = |s: &str| Channel::Glob(s.to_owned());
        assert_eq!(apply("a.b", false, true), [(exact("gw:topic:a.b"), true)]);
        assert_eq!(apply("a.b", false, true), []);
        assert_eq!(apply("a.b", true, true), []);
        assert_eq!(apply("a.b", false, false), []);
        assert_eq!(apply("a.b", false, false), []);
        assert_eq!(apply("a.b", true, false), [(exact("gw:topic:a.b"), false)]);
        assert_eq!(
            apply("a.#", true, true),
            [(exact("gw:topic:a"), true), (glob("gw:topic:a.*"), true)]
        );
        assert_eq!(apply("a.*", false, true), []);
        assert_eq!(apply("a.#", true, false), [(exact("gw:topic:a"), false)]);
        assert_eq!(apply("a.*", false, false), [(glob("gw:topic:a.*"), false)]);
        // Unsubscribing what was never subscribed changes nothing.
        assert_eq!(apply("x", true, false), []);
        assert!(wanted.is_empty());
    }
}
