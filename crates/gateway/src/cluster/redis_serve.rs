//! One live Redis connection of the Redis backend (RESP3: commands and Pub/Sub on one socket): keeps the
//! subscriptions equal to local interest, delivers what arrives (fanout at once; to the topic's group and to each
//! matching named group after a won `SET NX` claim of that group's own key, in arrival order, at most
//! [`CLAIMS_IN_FLIGHT`] claims pipelined; ml2-layout messages through `ml2_read.rs`) and pings the server. Returns
//! when the connection fails.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use core_bus::events::{BusEvent, Interested};
use core_bus::{ClusterDelivery, Envelope, MessageId, Pattern};
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use metrics::counter;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, RedisResult};
use tokio::sync::mpsc;

use super::ml2_read;
use super::redis::Link;
use super::redis_keys::{Channel, Keys};
use super::shared::{delivery, share_tag, Recent, FAILED, RECEIVED};

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
    /// The local anycast groups behind this subscription: the topic's group once per member, a named group once.
    groups: Vec<GroupInterest>,
}

/// A local anycast group that a subscription serves.
#[derive(Clone, PartialEq)]
struct GroupInterest {
    /// What the group takes (a glob is wider than its patterns).
    pattern: Pattern,
    delivery: ClusterDelivery,
    /// A named group's `shared::share_tag`, the suffix of its claim keys.
    tag: Option<String>,
}

impl GroupInterest {
    fn new(pattern: Pattern, delivery: ClusterDelivery) -> GroupInterest {
        let tag = match &delivery {
            ClusterDelivery::Shared { name, pattern } => Some(share_tag(name, pattern)),
            ClusterDelivery::Fanout | ClusterDelivery::Group => None,
        };
        GroupInterest {
            pattern,
            delivery,
            tag,
        }
    }

    /// The key this group's claim of a message sets: `<prefix>claim:<id>` for the topic's group,
    /// `<prefix>claim:<id>:<tag>` for a named group.
    fn claim_key(&self, keys: &Keys, id: MessageId) -> String {
        match &self.tag {
            Some(tag) => keys.shared_claim(id, tag),
            None => keys.claim(id),
        }
    }
}

/// A message to claim for one local group: the group's delivery and its claim key.
pub(super) struct Claim {
    envelope: Envelope,
    delivery: ClusterDelivery,
    key: String,
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
    let mut recent_claims = Recent::default();
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
                let wanted = receive(link, interest, &message, &mut recent_fanout, &mut recent_claims);
                for wanted in wanted {
                    claims.push_back(claim(commands.clone(), link.node, wanted));
                }
            }
            Some((wanted, claimed)) = claims.next(), if !claims.is_empty() => {
                deliver(link, wanted, claimed);
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
    let (pattern, by, added) = match event {
        BusEvent::Subscribed { pattern, by } => (pattern, by, true),
        BusEvent::Unsubscribed { pattern, by } => (pattern, by, false),
        BusEvent::NewTopic(_) => return Vec::new(),
    };
    let mut changes = Vec::new();
    let fanout = by == Interested::Fanout;
    let channels = if fanout {
        keys.fanout(&pattern)
    } else {
        keys.pattern(&pattern)
    };
    let group = GroupInterest::new(pattern.clone(), delivery(&pattern, by));
    for channel in channels {
        let entry = interest.entry(channel.clone()).or_default();
        let was_empty = entry.is_empty();
        match (fanout, added) {
            (true, true) => entry.fanout += 1,
            (true, false) => entry.fanout = entry.fanout.saturating_sub(1),
            (false, true) => entry.groups.push(group.clone()),
            (false, false) => {
                if let Some(at) = entry.groups.iter().position(|g| *g == group) {
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

/// Delivers one Pub/Sub message to local fanout subscribers; returns a claim for each local group that wants it,
/// once per message and group even when overlapping subscriptions bring it more than once.
fn receive(
    link: &Link,
    interest: &Wanted,
    message: &redis::Msg,
    recent_fanout: &mut Recent,
    recent_claims: &mut Recent<String>,
) -> Vec<Claim> {
    let none = Vec::new();
    let channel = if message.from_pattern() {
        match message.get_pattern::<String>() {
            Ok(glob) => Channel::Glob(glob),
            Err(_) => return none,
        }
    } else {
        Channel::Exact(message.get_channel_name().to_owned())
    };
    let Some(wanted) = interest.get(&channel) else {
        return none;
    };
    let payload = message.get_payload_bytes();
    if ml2_read::is_ml2(message.get_channel_name()) {
        if wanted.fanout > 0 {
            ml2_read::deliver_live(link, message.get_channel_name(), payload, recent_fanout);
        }
        return none;
    }
    let (Some(node), Some(encoded)) = (payload.get(..8), payload.get(8..)) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return none;
    };
    let from_self = node == link.node.to_be_bytes();
    // This node already did its own fanout; its group deliveries do come back through Redis.
    if wanted.groups.is_empty() && from_self {
        return none;
    }
    let envelope = match core_bus::encoding::decode(Bytes::copy_from_slice(encoded)) {
        Ok(envelope) => envelope,
        Err(error) => {
            counter!(FAILED, "reason" => "decode").increment(1);
            tracing::warn!(%error, "cluster: undecodable envelope");
            return none;
        }
    };
    let mut claims: Vec<Claim> = Vec::new();
    for group in &wanted.groups {
        if !group.pattern.matches(&envelope.topic) {
            continue;
        }
        let key = group.claim_key(&link.keys, envelope.id);
        if recent_claims.first_time(key.clone()) {
            claims.push(Claim {
                envelope: envelope.clone(),
                delivery: group.delivery.clone(),
                key,
            });
        }
    }
    // History topics reach this node's fanout subscribers through their stream, with positions; MessageLoop
    // channels under the ml2 layout through its Pub/Sub channels.
    let fanout = wanted.fanout > 0 && !from_self && !link.fanout_elsewhere(&envelope.topic);
    if fanout && recent_fanout.first_time(envelope.id) {
        counter!(RECEIVED).increment(1);
        link.bus
            .publish_from_cluster(envelope, &ClusterDelivery::Fanout);
    }
    claims
}

/// `SET <claim key> <node> NX PX 30000`: Redis runs commands one at a time, so exactly one node's claim of a
/// message for a group succeeds.
fn claim(
    mut commands: MultiplexedConnection,
    node: u64,
    wanted: Claim,
) -> impl Future<Output = (Claim, RedisResult<Option<String>>)> {
    let mut command = redis::cmd("SET");
    command
        .arg(&wanted.key)
        .arg(node)
        .arg("NX")
        .arg("PX")
        .arg(CLAIM_MS);
    async move {
        let claimed = command.query_async(&mut commands).await;
        (wanted, claimed)
    }
}

/// Hands a message whose claim this node won to one member of the local group it was claimed for.
fn deliver(link: &Link, wanted: Claim, claimed: RedisResult<Option<String>>) {
    match claimed {
        Ok(Some(_)) => {
            counter!(RECEIVED).increment(1);
            link.bus
                .publish_from_cluster(wanted.envelope, &wanted.delivery);
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
        let by = if group {
            Interested::Group
        } else {
            Interested::Fanout
        };
        if added {
            BusEvent::Subscribed { pattern, by }
        } else {
            BusEvent::Unsubscribed { pattern, by }
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

    #[test]
    fn named_groups_on_one_pattern_are_tracked_apart() {
        let keys = Keys::new("gw:");
        let mut wanted = Wanted::new();
        let pattern = Pattern::parse("a.*").expect("pattern");
        let shared = |name: &str, added| {
            let by = Interested::Shared { name: name.into() };
            let pattern = pattern.clone();
            if added {
                BusEvent::Subscribed { pattern, by }
            } else {
                BusEvent::Unsubscribed { pattern, by }
            }
        };
        let glob = Channel::Glob("gw:topic:a.*".to_owned());
        assert_eq!(
            track(&keys, &mut wanted, shared("g", true)),
            [(glob.clone(), true)]
        );
        assert_eq!(track(&keys, &mut wanted, shared("h", true)), []);
        assert_eq!(track(&keys, &mut wanted, shared("g", false)), []);
        let left: Vec<_> = wanted[&glob]
            .groups
            .iter()
            .map(|g| g.delivery.clone())
            .collect();
        assert_eq!(
            left,
            [ClusterDelivery::Shared {
                name: "h".into(),
                pattern: pattern.clone()
            }]
        );
        assert_eq!(
            track(&keys, &mut wanted, shared("h", false)),
            [(glob, false)]
        );
    }
}
