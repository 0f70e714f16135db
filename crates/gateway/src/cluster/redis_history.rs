//! Redis Streams history (`cluster.history = "streams"` with `backend = "redis"`): one stream per `[[bus.history]]`
//! rule, `<prefix>history:<rule index>`, so every node numbers a history topic's messages the same way. A local
//! publish on such a topic is appended with `XADD ... MAXLEN ~ <max_messages>`; every node, the publishing one
//! included, reads every stream (`XREAD BLOCK`, on a connection of its own) and delivers each entry with its
//! position, recording it in the bus's history. The offset is the entry id `<ms>-<seq>` as `(ms << 20) | seq`
//! (upstream MessageLoop's layout); the epoch is a random number kept beside the stream in
//! `<prefix>history:<rule index>:epoch` (created with `SET NX`, so all nodes agree), new when Redis lost it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use core_bus::config::HistoryRule;
use core_bus::{Pattern, Position, Topic};
use metrics::counter;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::Value;

use super::redis::{open, Link};
use super::shared::{FAILED, RECEIVED};

/// How long one `XREAD` waits for entries.
const BLOCK_MS: usize = 1_000;
/// Entries one `XREAD` returns at most per stream.
const BATCH: usize = 512;
/// The entry field holding the envelope (`docs/envelope.md`).
const FIELD: &str = "e";

/// The stream of one history rule.
pub(super) struct HistoryStream {
    topics: Pattern,
    key: String,
    epoch_key: String,
    max_messages: usize,
    /// The epoch once read from Redis (0: not yet).
    epoch: AtomicU64,
}

impl HistoryStream {
    /// The epoch once the stream's epoch key was read.
    pub(super) fn epoch(&self) -> Option<u64> {
        Some(self.epoch.load(Ordering::Acquire)).filter(|&e| e != 0)
    }

    /// Appends an envelope (pipelined on the node's command connection).
    pub(super) async fn append(
        &self,
        commands: &mut MultiplexedConnection,
        encoded: Bytes,
    ) -> redis::RedisResult<()> {
        redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_messages.max(1))
            .arg("*")
            .arg(FIELD)
            .arg(encoded.as_ref())
            .query_async::<Value>(commands)
            .await
            .map(drop)
    }
}

/// The streams of all history rules, in rule order (the bus applies the first matching rule).
pub(super) struct RedisHistory {
    streams: Vec<HistoryStream>,
}

impl RedisHistory {
    pub(super) fn new(prefix: &str, rules: &[HistoryRule]) -> RedisHistory {
        let streams = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| HistoryStream {
                topics: rule.topics.clone(),
                key: format!("{prefix}history:{index}"),
                epoch_key: format!("{prefix}history:{index}:epoch"),
                max_messages: rule.policy.max_messages,
                epoch: AtomicU64::new(0),
            })
            .collect();
        RedisHistory { streams }
    }

    /// The stream of the rule the bus applies to `topic`.
    pub(super) fn stream(&self, topic: &Topic) -> Option<&HistoryStream> {
        self.streams.iter().find(|s| s.topics.matches(topic))
    }

    pub(super) fn summary(&self) -> String {
        let ready = self.streams.iter().filter(|s| s.epoch().is_some()).count();
        format!(
            "redis streams history: {ready}/{} streams ready",
            self.streams.len()
        )
    }
}

/// An entry id `<ms>-<seq>` as an offset, `(ms << 20) | seq`.
pub(super) fn offset(id: &str) -> Option<u64> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?);
    (ms < 1 << 43 && seq < 1 << 20).then_some(ms << 20 | seq)
}

/// How far this node read one stream.
#[derive(Clone)]
struct Cursor {
    epoch: u64,
    /// The last entry id read (`0-0`: none yet).
    last: String,
    /// Passed to the bus with every entry (`Bus::publish_sequenced`).
    floor: u64,
}

/// Reads every stream and delivers its entries to the local bus, forever, with back-off while Redis is away. The
/// streams are not ready (history topics local-only) from a failure until their epochs were read again.
pub(super) async fn follow(link: Arc<Link>, history: Arc<RedisHistory>) {
    let mut read: Vec<Option<Cursor>> = vec![None; history.streams.len()];
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match follow_once(&link, &history, &mut read).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                for stream in &history.streams {
                    stream.epoch.store(0, Ordering::Release);
                }
                counter!(FAILED, "reason" => "history").increment(1);
                if warned {
                    tracing::debug!(%error, "cluster: Redis history streams");
                } else {
                    tracing::warn!(%error, "cluster: Redis history streams; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(
    link: &Link,
    history: &RedisHistory,
    read: &mut [Option<Cursor>],
) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(BLOCK_MS as u64) + Duration::from_secs(2);
    let mut connection = open(link, timeout).await?;
    for (stream, read) in history.streams.iter().zip(read.iter_mut()) {
        let epoch = epoch(&mut connection, stream).await?;
        let cursor = read.take().filter(|c| c.epoch == epoch);
        if cursor.is_none() {
            tracing::info!(stream = %stream.key, epoch, "cluster: Redis history stream ready");
        }
        *read = Some(start(&mut connection, stream, epoch, cursor).await?);
        stream.epoch.store(epoch, Ordering::Release);
    }
    let keys: Vec<&str> = history.streams.iter().map(|s| s.key.as_str()).collect();
    let options = StreamReadOptions::default().block(BLOCK_MS).count(BATCH);
    loop {
        let ids: Vec<&str> = read
            .iter()
            .map(|r| r.as_ref().map_or("0-0", |c| c.last.as_str()))
            .collect();
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg(&options)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids)
            .query_async(&mut connection)
            .await?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(index) = keys.iter().position(|k| *k == key.key) else {
                continue;
            };
            let (Some(stream), Some(Some(cursor))) =
                (history.streams.get(index), read.get_mut(index))
            else {
                continue;
            };
            for entry in key.ids {
                deliver(
                    link,
                    history,
                    stream,
                    cursor,
                    &entry.id,
                    entry.map.get(FIELD),
                );
                cursor.last = entry.id;
            }
        }
    }
}

/// The stream's epoch, created by the first node that asks.
async fn epoch(
    connection: &mut MultiplexedConnection,
    stream: &HistoryStream,
) -> anyhow::Result<u64> {
    let fresh = (rand::random::<u64>() >> 1).max(1);
    redis::cmd("SET")
        .arg(&stream.epoch_key)
        .arg(fresh)
        .arg("NX")
        .query_async::<Value>(connection)
        .await?;
    let epoch: u64 = redis::cmd("GET")
        .arg(&stream.epoch_key)
        .query_async(connection)
        .await?;
    anyhow::ensure!(epoch != 0, "{}: epoch 0", stream.epoch_key);
    Ok(epoch)
}

/// Where to read from and the floor: from the start without a cursor of this epoch (what the stream dropped before
/// is gone for this node); else after the last entry read, with the floor raised when the stream dropped entries
/// since.
async fn start(
    connection: &mut MultiplexedConnection,
    stream: &HistoryStream,
    epoch: u64,
    cursor: Option<Cursor>,
) -> anyhow::Result<Cursor> {
    let first: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream.key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(connection)
        .await?;
    let first = first.ids.first().and_then(|e| offset(&e.id));
    let floor_before_first = first.map_or(0, |f| f.saturating_sub(1));
    Ok(match cursor {
        None => Cursor {
            epoch,
            last: "0-0".to_owned(),
            floor: floor_before_first,
        },
        Some(cursor) => {
            let trimmed = first
                .zip(offset(&cursor.last))
                .is_some_and(|(f, l)| f > l + 1);
            Cursor {
                floor: if trimmed {
                    floor_before_first
                } else {
                    cursor.floor
                },
                ..cursor
            }
        }
    })
}

fn deliver(
    link: &Link,
    history: &RedisHistory,
    stream: &HistoryStream,
    cursor: &Cursor,
    id: &str,
    field: Option<&Value>,
) {
    let (Some(offset), Some(Value::BulkString(bytes))) = (offset(id), field) else {
        counter!(FAILED, "reason" => "decode").increment(1);
        return;
    };
    let mut envelope = match core_bus::encoding::decode(Bytes::copy_from_slice(bytes)) {
        Ok(envelope) => envelope,
        Err(error) => {
            counter!(FAILED, "reason" => "decode").increment(1);
            tracing::warn!(%error, "cluster: undecodable envelope in a history stream");
            return;
        }
    };
    // Another rule may have come first for this topic after a config change.
    if !history
        .stream(&envelope.topic)
        .is_some_and(|s| std::ptr::eq(s, stream))
    {
        return;
    }
    envelope.position = Some(Position {
        epoch: cursor.epoch,
        offset,
    });
    counter!(RECEIVED).increment(1);
    link.bus.publish_sequenced(envelope, cursor.floor);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_become_increasing_offsets() {
        assert_eq!(offset("0-1"), Some(1));
        assert_eq!(offset("1-0"), Some(1 << 20));
        assert!(offset("1764633600000-5") < offset("1764633600001-0"));
        assert_eq!(offset("1-1048576"), None);
        assert_eq!(offset("garbage"), None);
        assert_eq!(offset("1-x"), None);
    }
}
