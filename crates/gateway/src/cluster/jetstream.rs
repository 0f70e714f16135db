//! JetStream-backed history (`cluster.history = "jetstream"`): one stream per `[[bus.history]]` rule, so every
//! node numbers a history topic's messages the same way. A local publish on such a topic is only written to the
//! stream; every node (the publishing one included) reads the stream with an ordered consumer and delivers each
//! message to its local subscribers with the position (stream epoch, stream sequence), recording it in the bus's
//! history. Recovery on any node therefore reads the same sequence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::stream;
use core_bus::config::{HistoryPolicy, HistoryRule};
use core_bus::{Pattern, Position, Topic};
use futures::StreamExt;
use metrics::counter;

use super::nats::Link;
use super::shared::{FAILED, RECEIVED};
use super::subjects::pattern_subjects;

/// The stream of one history rule.
pub(super) struct HistoryStream {
    topics: Pattern,
    name: String,
    subjects: Vec<String>,
    policy: HistoryPolicy,
    /// The stream's epoch once it exists on the server (0: not yet).
    epoch: AtomicU64,
}

impl HistoryStream {
    pub(super) fn is_ready(&self) -> bool {
        self.epoch().is_some()
    }

    /// The stream's epoch once the stream exists.
    pub(super) fn epoch(&self) -> Option<u64> {
        Some(self.epoch.load(Ordering::Acquire)).filter(|&e| e != 0)
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            max_messages_per_subject: i64::try_from(self.policy.max_messages).unwrap_or(i64::MAX),
            max_bytes: i64::try_from(self.policy.max_bytes).unwrap_or(i64::MAX),
            max_age: self.policy.ttl,
            ..stream::Config::default()
        }
    }
}

/// The streams of all history rules, in rule order (the bus applies the first matching rule).
pub(super) struct HistoryStreams {
    streams: Vec<HistoryStream>,
}

impl HistoryStreams {
    pub(super) fn new(prefix: &str, rules: &[HistoryRule]) -> HistoryStreams {
        let streams = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| HistoryStream {
                topics: rule.topics.clone(),
                name: format!("{prefix}-history-{index}"),
                subjects: pattern_subjects(prefix, &rule.topics),
                policy: rule.policy,
                epoch: AtomicU64::new(0),
            })
            .collect();
        HistoryStreams { streams }
    }

    /// The stream of the rule the bus applies to `topic`.
    pub(super) fn stream(&self, topic: &Topic) -> Option<&HistoryStream> {
        self.streams.iter().find(|s| s.topics.matches(topic))
    }

    pub(super) fn summary(&self) -> String {
        let ready = self.streams.iter().filter(|s| s.is_ready()).count();
        format!(
            "jetstream history: {ready}/{} streams ready",
            self.streams.len()
        )
    }

    pub(super) fn len(&self) -> usize {
        self.streams.len()
    }
}

/// The epoch every node derives from the stream's name and creation time: equal on all nodes, new when the stream
/// is recreated. FNV-1a, so it does not depend on the Rust version; never 0, and kept below 2^63 like the bus's
/// own epochs.
pub(super) fn stream_epoch(name: &str, created: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes().chain([0]).chain(created.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash >> 1).max(1)
}

/// Keeps the stream of rule `index` created and delivers its messages to the local bus, forever, with back-off
/// while NATS or JetStream is unavailable.
pub(super) async fn follow(link: Arc<Link>, streams: Arc<HistoryStreams>, index: usize) {
    let mut resume = None;
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        match follow_once(&link, &streams, index, &mut resume).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(error) => {
                counter!(FAILED, "reason" => "jetstream").increment(1);
                if warned {
                    tracing::debug!(%error, "cluster: JetStream history stream");
                } else {
                    tracing::warn!(%error, "cluster: JetStream history stream; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Creates or updates the stream, then reads it from `resume` (the next sequence wanted; from the start when
/// `None` or when the stream is new) until the consumer fails or the NATS connection is made again (a restarted
/// server has forgotten the consumer, and the ordered consumer would notice only after missed heartbeats).
async fn follow_once(
    link: &Link,
    streams: &HistoryStreams,
    index: usize,
    resume: &mut Option<u64>,
) -> anyhow::Result<()> {
    let Some(stream) = streams.streams.get(index) else {
        return Ok(());
    };
    let mut connections = link.connections.clone();
    connections.mark_unchanged();
    let info = link
        .jetstream
        .create_or_update_stream(stream.config())
        .await?;
    let epoch = stream_epoch(&stream.name, &info.created.to_string());
    if stream.epoch.swap(epoch, Ordering::AcqRel) != epoch {
        *resume = None;
        tracing::info!(stream = %stream.name, epoch, "cluster: JetStream history stream ready");
    }
    // Reading from the start: what the stream dropped before this node read it is gone for this node.
    let mut floor = match resume {
        Some(_) => 0,
        None => info.state.first_sequence.saturating_sub(1),
    };
    let deliver_policy = match *resume {
        Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        None => DeliverPolicy::All,
    };
    let consumer = link
        .jetstream
        .create_consumer_on_stream(
            OrderedConfig {
                deliver_policy,
                ..OrderedConfig::default()
            },
            &stream.name,
        )
        .await?;
    let mut messages = consumer.messages().await?;
    let mut first = true;
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            changed = connections.changed() => match changed {
                Ok(()) => return Ok(()),
                Err(_) => None,
            },
        };
        let Some(message) = message else {
            return Ok(());
        };
        let message = message?;
        let sequence = message
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        // Resuming after a failure: a jump means the stream dropped messages this node never read.
        if first && resume.is_some_and(|wanted| sequence > wanted) {
            floor = sequence - 1;
        }
        first = false;
        *resume = Some(sequence + 1);
        let mut envelope = match core_bus::encoding::decode(message.message.payload.clone()) {
            Ok(envelope) => envelope,
            Err(error) => {
                counter!(FAILED, "reason" => "decode").increment(1);
                tracing::warn!(%error, "cluster: undecodable envelope in a history stream");
                continue;
            }
        };
        // Subjects widened for `#` can bring topics of no rule, or of another rule.
        if !streams
            .stream(&envelope.topic)
            .is_some_and(|s| std::ptr::eq(s, stream))
        {
            continue;
        }
        envelope.position = Some(Position {
            epoch,
            offset: sequence,
        });
        counter!(RECEIVED).increment(1);
        link.bus.publish_sequenced(envelope, floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_stable_distinct_and_nonzero() {
        let a = stream_epoch("gw-history-0", "2026-11-22 20:00:00.1 +00:00:00");
        assert_eq!(
            a,
            stream_epoch("gw-history-0", "2026-11-22 20:00:00.1 +00:00:00")
        );
        assert_ne!(
            a,
            stream_epoch("gw-history-0", "2026-11-22 20:00:00.2 +00:00:00")
        );
        assert_ne!(
            a,
            stream_epoch("gw-history-1", "2026-11-22 20:00:00.1 +00:00:00")
        );
        assert!(a > 0 && a < 1 << 63);
    }

    #[test]
    fn one_stream_per_rule_and_the_first_matching_rule_wins() {
        let rule = |topics: &str, max_messages| HistoryRule {
            topics: Pattern::parse(topics).unwrap(),
            policy: HistoryPolicy {
                max_messages,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(60),
            },
        };
        let streams = HistoryStreams::new("gw", &[rule("chat.vip", 5), rule("chat.#", 10)]);
        let vip = streams.stream(&Topic::parse("chat.vip").unwrap()).unwrap();
        assert_eq!(vip.name, "gw-history-0");
        let other = streams.stream(&Topic::parse("chat.eu").unwrap()).unwrap();
        assert_eq!(other.subjects, ["gw.chat", "gw.chat.>"]);
        let config = other.config();
        assert_eq!(config.max_messages_per_subject, 10);
        assert_eq!(config.max_age, Duration::from_secs(60));
        assert!(streams.stream(&Topic::parse("news").unwrap()).is_none());
        assert_eq!(streams.summary(), "jetstream history: 0/2 streams ready");
    }
}
