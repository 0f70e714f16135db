//! Reading upstream MessageLoop's Redis layout (`messageloop_layout = "ml2"`) into the bus. Live: a message on
//! `ml2:pubsub:<channel>` goes to this node's fanout subscribers; with `off` it carries its history position
//! (`(ms << 20) | seq` of the stream entry, in the shared epoch) and is recorded in the topic's history, which
//! drops what it already has. Every node subscribes to the channels of its `[[bus.history]]` rules whether or not
//! a local client listens, so its history stays whole. At every (re)connect, before serving the Pub/Sub messages
//! that arrived meanwhile, each stream of a history rule's channels (`SCAN … TYPE stream`) is read from where the
//! node's history stops, so messages published while it was away or before it started are recovered too.

use std::collections::HashSet;

use core_bus::{Pattern, Position, Topic};
use metrics::counter;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;
use redis::Value;

use super::ml2_keys::{self, PUBSUB, STREAM};
use super::ml2_message::Data;
use super::redis::Link;
use super::redis_history::offset;
use super::redis_serve::Wanted;
use super::shared::{Recent, FAILED, RECEIVED};

/// Entries read per `XRANGE`.
const PAGE: usize = 512;

/// True for Pub/Sub messages of the ml2 layout.
pub(super) fn is_ml2(channel: &str) -> bool {
    channel.starts_with(PUBSUB)
}

/// Keeps every history rule's channels subscribed.
pub(super) fn pin_history(link: &Link, wanted: &mut Wanted) {
    for rule in &link.bus.config().history {
        for channel in ml2_keys::subscriptions(&rule.topics) {
            wanted.entry(channel).or_default().pin();
        }
    }
}

/// Delivers one live ml2 Pub/Sub message to this node's fanout subscribers.
pub(super) fn deliver_live(link: &Link, channel: &str, raw: &[u8], recent: &mut Recent) {
    let Some(ml2) = &link.ml2 else { return };
    let Some(topic) = channel.strip_prefix(PUBSUB).and_then(ml2_keys::topic) else {
        return;
    };
    // Occupancy and anything else that is not a publication is not gatewayd's business.
    let Some(data) = Data::parse(raw) else { return };
    let from_self = data
        .gatewayd_id()
        .is_some_and(|(node, _)| node == link.node);
    let off = data.off;
    // This node already delivered its own messages without a position.
    if from_self && off == 0 {
        return;
    }
    let Some(mut envelope) = data.into_envelope(topic, raw) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return;
    };
    if !recent.first_time(envelope.id) {
        return;
    }
    if off > 0 {
        let Some((epoch, _)) = ml2.epoch() else {
            return;
        };
        envelope.position = Some(Position { epoch, offset: off });
    }
    counter!(RECEIVED).increment(1);
    link.bus.publish_sequenced(envelope, 0);
}

/// Reads every history rule's streams into the bus, from where this node's history of each channel stops.
pub(super) async fn backfill(
    link: &Link,
    connection: &mut MultiplexedConnection,
    epoch: u64,
) -> anyhow::Result<()> {
    let mut done = HashSet::new();
    for rule in &link.bus.config().history {
        for key in streams(connection, &rule.topics).await? {
            let Some(topic) = key.strip_prefix(STREAM).and_then(ml2_keys::topic) else {
                continue;
            };
            if done.insert(key.clone()) && link.bus.history_top(&topic).is_some() {
                read_stream(link, connection, &key, topic, epoch).await?;
            }
        }
    }
    Ok(())
}

/// The stream keys of the channels `pattern` can match.
async fn streams(
    connection: &mut MultiplexedConnection,
    pattern: &Pattern,
) -> redis::RedisResult<Vec<String>> {
    let Some(glob) = ml2_keys::stream_glob(pattern) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&glob)
            .arg("COUNT")
            .arg(1_000)
            .arg("TYPE")
            .arg("stream")
            .query_async(connection)
            .await?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn read_stream(
    link: &Link,
    connection: &mut MultiplexedConnection,
    key: &str,
    topic: Topic,
    epoch: u64,
) -> redis::RedisResult<()> {
    let top = link
        .bus
        .history_top(&topic)
        .filter(|top| top.epoch == epoch && top.offset > 0);
    let mut start = match top {
        Some(top) => format!("({}-{}", top.offset >> 20, top.offset & 0xF_FFFF),
        None => "-".to_owned(),
    };
    let mut floor = None;
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(connection)
            .await?;
        let full = page.ids.len() == PAGE;
        for entry in page.ids {
            start = format!("({}", entry.id);
            let Some(offset) = offset(&entry.id) else {
                continue;
            };
            // Read from the start: what the stream trimmed before its first entry (dense seq above 1) is gone.
            let floor = *floor.get_or_insert_with(|| match (top, seq(entry.map.get("s"))) {
                (None, Some(seq)) if seq > 1 => offset - 1,
                _ => 0,
            });
            let Some(Value::BulkString(raw)) = entry.map.get("data") else {
                continue;
            };
            let envelope = Data::parse(raw).and_then(|data| data.into_envelope(topic.clone(), raw));
            let Some(mut envelope) = envelope else {
                counter!(FAILED, "reason" => "decode").increment(1);
                continue;
            };
            envelope.position = Some(Position { epoch, offset });
            counter!(RECEIVED).increment(1);
            link.bus.publish_sequenced(envelope, floor);
        }
        if !full {
            return Ok(());
        }
    }
}

fn seq(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}
