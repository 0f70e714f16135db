//! Cluster-wide presence (`cluster.presence = "kv"`). Every node writes the members that joined on it to the NATS KV
//! bucket `<prefix>-presence`, key `<node>.<hex topic>.<hex member>`, value the adapter's data, and watches the whole
//! bucket, reporting other nodes' members to its bus ([`core_bus::Bus::presence_from_cluster`]). A leave deletes the
//! key at once. Each node rewrites its keys every [`REFRESH`]; a member whose key was not rewritten for [`STALE`] is
//! dropped by the others, so the members of a node that died disappear within [`STALE`] (without leave events), and
//! the bucket's `max_age` removes their keys from the server. After a NATS reconnect the bucket is opened again, this
//! node's keys rewritten and the watch restarted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{kv, stream};
use bytes::Bytes;
use core_bus::presence::PresenceChange;
use core_bus::Topic;
use futures::StreamExt;
use metrics::counter;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::nats::Link;
use super::shared::{hex, unhex, FAILED};

const REFRESH: Duration = Duration::from_secs(10);
const STALE: Duration = Duration::from_secs(35);
const MAX_AGE: Duration = Duration::from_secs(60);

/// Other nodes' members: key → when it was last written.
type Remote = Arc<Mutex<HashMap<String, Instant>>>;

/// Starts sharing; the returned sender takes this node's presence changes.
pub(super) fn start(link: Arc<Link>) -> mpsc::UnboundedSender<PresenceChange> {
    let (changes, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(link, rx));
    changes
}

async fn run(link: Arc<Link>, mut changes: mpsc::UnboundedReceiver<PresenceChange>) {
    let bucket = format!("{}-presence", link.prefix);
    let remote: Remote = Arc::default();
    let mut local: HashMap<String, Bytes> = HashMap::new();
    let mut store: Option<kv::Store> = None;
    let mut watcher: Option<JoinHandle<()>> = None;
    let mut refreshed = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut connections = link.connections.clone();
    loop {
        tokio::select! {
            // After a reconnect the server may have lost the bucket and has lost the watch's consumer: open the
            // bucket again (rewriting this node's keys) and restart the watch.
            Ok(()) = connections.changed() => {
                store = None;
                if let Some(watcher) = watcher.take() {
                    watcher.abort();
                }
            }
            change = changes.recv() => {
                let Some(change) = change else { return };
                let key = key(&link.node, &change.topic, &change.member);
                match change.data {
                    Some(data) => {
                        local.insert(key.clone(), data.clone());
                        if let Some(store) = &store {
                            put(store, key, data).await;
                        }
                    }
                    None => {
                        local.remove(&key);
                        if let Some(store) = &store {
                            if let Err(error) = store.delete(&key).await {
                                counter!(FAILED, "reason" => "presence").increment(1);
                                tracing::debug!(%error, "cluster: presence delete failed");
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                if store.is_none() {
                    store = open(&link, &bucket).await;
                    if let Some(store) = &store {
                        for (key, data) in &local {
                            put(store, key.clone(), data.clone()).await;
                        }
                        refreshed = Instant::now();
                    }
                }
                let Some(open_store) = &store else { continue };
                if watcher.as_ref().is_none_or(JoinHandle::is_finished) {
                    watcher = Some(tokio::spawn(watch(link.clone(), open_store.clone(), remote.clone())));
                }
                if refreshed.elapsed() >= REFRESH {
                    for (key, data) in &local {
                        put(open_store, key.clone(), data.clone()).await;
                    }
                    refreshed = Instant::now();
                }
                prune(&link, &remote);
            }
        }
    }
}

/// Creates the bucket's stream with the KV conventions (`KV_<bucket>` on `$KV.<bucket>.>`) and opens it. The
/// stream is made directly because async-nats's bucket creation first asks for account info, whose reply from
/// nats-server 2.9 (Debian) it cannot parse.
async fn open(link: &Link, bucket: &str) -> Option<kv::Store> {
    let config = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: MAX_AGE,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..stream::Config::default()
    };
    let opened = match link.jetstream.create_or_update_stream(config).await {
        Ok(_) => link
            .jetstream
            .get_key_value(bucket)
            .await
            .map_err(anyhow::Error::from),
        Err(error) => Err(error.into()),
    };
    match opened {
        Ok(store) => {
            tracing::info!(bucket, "cluster: presence bucket ready");
            Some(store)
        }
        Err(error) => {
            tracing::debug!(%error, "cluster: presence bucket not available yet");
            None
        }
    }
}

async fn put(store: &kv::Store, key: String, data: Bytes) {
    if let Err(error) = store.put(&key, data).await {
        counter!(FAILED, "reason" => "presence").increment(1);
        tracing::debug!(%error, %key, "cluster: presence put failed");
    }
}

/// Reports other nodes' keys to the bus until the watch fails (the caller restarts it).
async fn watch(link: Arc<Link>, store: kv::Store, remote: Remote) {
    let mut entries = match store.watch_all().await {
        Ok(entries) => entries,
        Err(error) => {
            tracing::debug!(%error, "cluster: presence watch failed");
            return;
        }
    };
    while let Some(Ok(entry)) = entries.next().await {
        let Some((node, topic, member)) = parse_key(&entry.key) else {
            continue;
        };
        if node == link.node {
            continue;
        }
        let data = match entry.operation {
            kv::Operation::Put => {
                remote.lock().insert(entry.key.clone(), Instant::now());
                Some(entry.value)
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                remote.lock().remove(&entry.key);
                None
            }
        };
        link.bus.presence_from_cluster(PresenceChange {
            topic,
            member,
            data,
        });
    }
}

/// Drops other nodes' members whose keys were not rewritten for [`STALE`].
fn prune(link: &Link, remote: &Remote) {
    let stale: Vec<String> = {
        let mut remote = remote.lock();
        let stale: Vec<String> = remote
            .iter()
            .filter(|(_, seen)| seen.elapsed() > STALE)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &stale {
            remote.remove(key);
        }
        stale
    };
    for key in stale {
        if let Some((_, topic, member)) = parse_key(&key) {
            link.bus.presence_from_cluster(PresenceChange {
                topic,
                member,
                data: None,
            });
        }
    }
}

/// KV keys allow only `[-/_=.a-zA-Z0-9]`: the topic's canonical text and the member id go in hex.
fn key(node: &str, topic: &Topic, member: &str) -> String {
    format!(
        "{node}.{}.{}",
        hex(topic.to_string().as_bytes()),
        hex(member.as_bytes())
    )
}

fn parse_key(key: &str) -> Option<(String, Topic, String)> {
    let mut parts = key.split('.');
    let (node, topic, member) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let topic = Topic::parse(&String::from_utf8(unhex(topic)?).ok()?).ok()?;
    let member = String::from_utf8(unhex(member)?).ok()?;
    Some((node.to_owned(), topic, member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_garbage_is_ignored() {
        let topic = Topic::from_tokens([b"$messageloop".as_slice(), b"presence", b"a room.1"]);
        let key = key("00ff", &topic, "3f1c-uuid");
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.'));
        assert_eq!(
            parse_key(&key),
            Some(("00ff".to_owned(), topic, "3f1c-uuid".to_owned()))
        );
        for bad in ["", "a.b", "a.zz.00", "a.6.00", "a.61.62.63", "a.ff.61"] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
