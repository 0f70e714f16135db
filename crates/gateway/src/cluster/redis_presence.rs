//! Cluster-wide presence on Redis (`cluster.presence = "kv"` with `backend = "redis"`). Every node keeps the members
//! that joined on it in the hash `<prefix>presence:<node>` (field `<hex topic>.<hex member>`, value the adapter's
//! data) and announces each join and leave on the channel `<prefix>presence`, which every node reports to its bus
//! ([`core_bus::Bus::presence_from_cluster`]). Each node rewrites its hash (expiring after [`STALE`]), adds itself
//! to the set `<prefix>presence-nodes` and reads the other listed nodes' hashes every [`REFRESH`] and after every
//! reconnect (a listed node whose hash is gone is removed from the set); a member not seen for [`STALE`] is dropped, so the
//! members of a node that died disappear within [`STALE`], without leave events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use core_bus::presence::PresenceChange;
use core_bus::Topic;
use metrics::counter;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use super::redis::Link;
use super::shared::{hex, unhex, FAILED};

const REFRESH: Duration = Duration::from_secs(10);
const STALE: Duration = Duration::from_secs(35);
/// Announcements received and not yet applied; more are dropped (the next refresh repairs them).
const INCOMING: usize = 4_096;

/// The two ends the backend holds: this node's changes in, other nodes' announcements in.
pub(super) struct PresenceLink {
    pub(super) changes: mpsc::UnboundedSender<PresenceChange>,
    pub(super) incoming: mpsc::Sender<Bytes>,
}

pub(super) type PresenceTask = (
    mpsc::UnboundedReceiver<PresenceChange>,
    mpsc::Receiver<Bytes>,
);

pub(super) fn channels() -> (PresenceLink, PresenceTask) {
    let (changes, changes_rx) = mpsc::unbounded_channel();
    let (incoming, incoming_rx) = mpsc::channel(INCOMING);
    (
        PresenceLink { changes, incoming },
        (changes_rx, incoming_rx),
    )
}

/// Shares this node's members and applies the others', forever.
pub(super) async fn run(link: Arc<Link>, (mut changes, mut incoming): PresenceTask) {
    let mut local: HashMap<String, Bytes> = HashMap::new();
    // Other nodes' members: (node, field) → when last seen.
    let mut remote: HashMap<(u64, String), Instant> = HashMap::new();
    let mut synced: Option<(u64, Instant)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else { return };
                let field = field(&change.topic, &change.member);
                match &change.data {
                    Some(data) => local.insert(field.clone(), data.clone()),
                    None => local.remove(&field),
                };
                let connection = link.commands.lock().clone();
                if let Some(mut connection) = connection {
                    announce(&link, &mut connection, &field, change.data.as_ref()).await;
                }
            }
            announcement = incoming.recv() => {
                let Some(announcement) = announcement else { return };
                if let Some((node, field, data)) = parse_announcement(&announcement) {
                    if node != link.node {
                        apply(&link, &mut remote, node, &field, data);
                    }
                }
            }
            _ = tick.tick() => {
                let generation = link.generation.load(Ordering::Acquire);
                let due = synced.is_none_or(|(g, at)| g != generation || at.elapsed() >= REFRESH);
                let connection = link.commands.lock().clone();
                if due {
                    if let Some(mut connection) = connection {
                        match sync(&link, &mut connection, &local, &mut remote).await {
                            Ok(()) => synced = Some((generation, Instant::now())),
                            Err(error) => {
                                counter!(FAILED, "reason" => "presence").increment(1);
                                tracing::debug!(%error, "cluster: Redis presence refresh failed");
                            }
                        }
                    }
                }
                prune(&link, &mut remote);
            }
        }
    }
}

/// Writes one change to this node's hash and announces it.
async fn announce(
    link: &Link,
    connection: &mut MultiplexedConnection,
    field: &str,
    data: Option<&Bytes>,
) {
    let hash = link.keys.presence_hash(link.node);
    let mut pipe = redis::pipe();
    match data {
        Some(data) => pipe.hset(&hash, field, data.as_ref()).ignore(),
        None => pipe.hdel(&hash, field).ignore(),
    };
    pipe.pexpire(&hash, STALE.as_millis() as i64)
        .ignore()
        .publish(
            link.keys.presence_channel(),
            announcement(link.node, field, data),
        )
        .ignore();
    if let Err(error) = pipe.query_async::<()>(connection).await {
        counter!(FAILED, "reason" => "presence").increment(1);
        tracing::debug!(%error, "cluster: Redis presence write failed");
    }
}

/// Rewrites this node's hash and reads every other node's.
async fn sync(
    link: &Link,
    connection: &mut MultiplexedConnection,
    local: &HashMap<String, Bytes>,
    remote: &mut HashMap<(u64, String), Instant>,
) -> redis::RedisResult<()> {
    let own = link.keys.presence_hash(link.node);
    let mut pipe = redis::pipe();
    pipe.del(&own).ignore();
    for (field, data) in local {
        pipe.hset(&own, field, data.as_ref()).ignore();
    }
    pipe.pexpire(&own, STALE.as_millis() as i64).ignore();
    let nodes = link.keys.presence_nodes();
    pipe.sadd(&nodes, format!("{:016x}", link.node)).ignore();
    pipe.query_async::<()>(connection).await?;
    let others: Vec<String> = connection.smembers(&nodes).await?;
    for other in others {
        let Some(node) = u64::from_str_radix(&other, 16)
            .ok()
            .filter(|&n| n != link.node)
        else {
            continue;
        };
        let members: HashMap<String, Vec<u8>> =
            connection.hgetall(link.keys.presence_hash(node)).await?;
        if members.is_empty() {
            // Expired (the node is gone) or without members: it adds itself again on its next refresh.
            connection.srem::<_, _, ()>(&nodes, &other).await?;
        }
        for (field, data) in members {
            apply(link, remote, node, &field, Some(Bytes::from(data)));
        }
    }
    Ok(())
}

fn apply(
    link: &Link,
    remote: &mut HashMap<(u64, String), Instant>,
    node: u64,
    field: &str,
    data: Option<Bytes>,
) {
    let Some((topic, member)) = parse_field(field) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return;
    };
    match data {
        Some(_) => remote.insert((node, field.to_owned()), Instant::now()),
        None => remote.remove(&(node, field.to_owned())),
    };
    link.bus.presence_from_cluster(PresenceChange {
        topic,
        member,
        data,
    });
}

/// Drops other nodes' members not seen for [`STALE`].
fn prune(link: &Link, remote: &mut HashMap<(u64, String), Instant>) {
    let stale: Vec<(u64, String)> = remote
        .iter()
        .filter(|(_, seen)| seen.elapsed() > STALE)
        .map(|(key, _)| key.clone())
        .collect();
    for (node, field) in stale {
        apply(link, remote, node, &field, None);
    }
}

/// `<hex topic>.<hex member>`: unambiguous whatever the topic and member hold.
fn field(topic: &Topic, member: &str) -> String {
    format!(
        "{}.{}",
        hex(topic.to_string().as_bytes()),
        hex(member.as_bytes())
    )
}

fn parse_field(field: &str) -> Option<(Topic, String)> {
    let (topic, member) = field.split_once('.')?;
    let topic = Topic::parse(&String::from_utf8(unhex(topic)?).ok()?).ok()?;
    Some((topic, String::from_utf8(unhex(member)?).ok()?))
}

/// `<node: 8 bytes> <1: join, 0: leave> <field length: 2 bytes> <field> <data>`.
fn announcement(node: u64, field: &str, data: Option<&Bytes>) -> Vec<u8> {
    let mut out = Vec::with_capacity(11 + field.len() + data.map_or(0, Bytes::len));
    out.extend_from_slice(&node.to_be_bytes());
    out.push(u8::from(data.is_some()));
    out.extend_from_slice(&u16::try_from(field.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(field.as_bytes());
    if let Some(data) = data {
        out.extend_from_slice(data);
    }
    out
}

fn parse_announcement(bytes: &Bytes) -> Option<(u64, String, Option<Bytes>)> {
    let node = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let join = *bytes.get(8)? == 1;
    let len = usize::from(u16::from_be_bytes(bytes.get(9..11)?.try_into().ok()?));
    let field = std::str::from_utf8(bytes.get(11..11 + len)?)
        .ok()?
        .to_owned();
    let data = join.then(|| bytes.slice(11 + len..));
    Some((node, field, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_announcements_round_trip() {
        let topic = Topic::from_tokens([b"$messageloop".as_slice(), b"presence", b"a room.1"]);
        let field = field(&topic, "3f1c.uuid");
        assert_eq!(parse_field(&field), Some((topic, "3f1c.uuid".to_owned())));
        let data = Bytes::from_static(b"{\"user\":1}");
        let join = Bytes::from(announcement(7, &field, Some(&data)));
        assert_eq!(
            parse_announcement(&join),
            Some((7, field.clone(), Some(data)))
        );
        let leave = Bytes::from(announcement(7, &field, None));
        assert_eq!(parse_announcement(&leave), Some((7, field, None)));
        for bad in ["", "zz.00", "6.00", "ff.61"] {
            assert_eq!(parse_field(bad), None, "{bad}");
        }
        assert_eq!(parse_announcement(&Bytes::from_static(b"short")), None);
    }
}
