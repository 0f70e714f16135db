//! Metric names and the counters the bus updates. Handles are resolved once, so the publish path does no lookups.
//!
//! Exported names (Prometheus): `gatewayd_messages_in_total{protocol}`, `gatewayd_messages_out_total{protocol}`,
//! `gatewayd_message_bytes_in_total{protocol}`, `gatewayd_message_bytes_out_total{protocol}` (payload bytes),
//! histograms `gatewayd_message_size_bytes{protocol}` (payloads published) and
//! `gatewayd_delivery_latency_seconds{publisher,subscriber}` (from entering gatewayd to leaving a subscriber's
//! queue), `gatewayd_drops_total{reason,protocol}`, `gatewayd_publisher_stalls_total{protocol}` (publishes that
//! stopped their connection's reading because a subscriber was over its bound),
//! `gatewayd_publisher_stall_seconds_total{protocol}` (the time they waited: a monotonic gauge, since the
//! exporter's counters are integers), and gauges `gatewayd_subscriptions`, `gatewayd_groups`,
//! `gatewayd_retained_messages`, `gatewayd_queue_depth` refreshed by [`crate::Bus::refresh_gauges`]. Every label
//! is a protocol name or a drop reason, so each name has at most 6 × 6 series.

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics::{counter, gauge, Counter, Gauge};
use serde::Serialize;

use crate::buckets::{Buckets, Family};
use crate::envelope::{now_ms, Envelope, Protocol};
use crate::topic::{Pattern, Topic};

pub const MESSAGES_IN: &str = "gatewayd_messages_in_total";
pub const MESSAGES_OUT: &str = "gatewayd_messages_out_total";
pub const BYTES_IN: &str = "gatewayd_message_bytes_in_total";
pub const BYTES_OUT: &str = "gatewayd_message_bytes_out_total";
pub const MESSAGE_SIZE: &str = "gatewayd_message_size_bytes";
pub const DELIVERY_LATENCY: &str = "gatewayd_delivery_latency_seconds";
pub const DROPS: &str = "gatewayd_drops_total";
pub const PUBLISHER_STALLS: &str = "gatewayd_publisher_stalls_total";
pub const PUBLISHER_STALL_SECONDS: &str = "gatewayd_publisher_stall_seconds_total";
pub const TOPIC_MESSAGES_IN: &str = "gatewayd_topic_messages_in_total";
pub const TOPIC_MESSAGES_OUT: &str = "gatewayd_topic_messages_out_total";
pub const SUBSCRIBER_QUEUES: &str = "gatewayd_subscriber_queues";
pub const QUEUE_DEPTH_MAX: &str = "gatewayd_subscriber_queue_depth_max";
/// Upper bounds of the `depth_le` buckets of [`SUBSCRIBER_QUEUES`] (cumulative; `+Inf` follows).
const DEPTH_BUCKETS: [usize; 6] = [0, 8, 64, 512, 4096, 32768];
pub const SUBSCRIPTIONS: &str = "gatewayd_subscriptions";
pub const GROUPS: &str = "gatewayd_groups";
pub const RETAINED: &str = "gatewayd_retained_messages";
pub const QUEUE_DEPTH: &str = "gatewayd_queue_depth";
/// Bucket bounds of [`DELIVERY_LATENCY`], in microseconds (exported in seconds: 0.5 ms … 10 s).
const LATENCY_MICROS: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];
/// Bucket bounds of [`MESSAGE_SIZE`], in bytes (16 B … 16 MiB, ×4).
const SIZE_BYTES: [u64; 11] = [
    16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
];

/// Why a message was not delivered to someone. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A fanout subscriber's queue was full and its policy disconnected it.
    SlowConsumerDisconnect,
    /// A fanout subscriber's queue was full; the oldest queued message was dropped.
    QueueFullDropOldest,
    /// A fanout subscriber's queue was full; the new message was dropped.
    QueueFullDropNewest,
    /// An anycast group's retention buffer was full; the oldest retained message was dropped.
    GroupFullDropOldest,
    /// An anycast group's retention buffer was full; the new message was dropped.
    GroupFullDropNewest,
    /// A consumer rejected a group message without requeue (STOMP NACK on a settled-once message).
    Rejected,
    /// An anycast group with the `discard` policy had no member to take the message.
    NoGroupMember,
    /// The message exceeds a limit of the receiving protocol.
    TooLarge,
    /// The identity's ACL refused the operation (protocols with no error frame).
    AclDenied,
    /// The protocol cannot carry the message (for example no handler or a name it cannot express).
    Unroutable,
    /// A frame was malformed and the protocol has no error frame to answer with.
    Malformed,
    /// Forwarding to the cluster failed.
    ClusterForward,
    /// The message waited in a queue or a group past its expiry (STOMP `expires` / `expiration`, a group's
    /// `ttl_ms`).
    Expired,
}

impl DropReason {
    const COUNT: usize = 13;

    fn index(self) -> usize {
        match self {
            DropReason::SlowConsumerDisconnect => 0,
            DropReason::QueueFullDropOldest => 1,
            DropReason::QueueFullDropNewest => 2,
            DropReason::GroupFullDropOldest => 3,
            DropReason::GroupFullDropNewest => 4,
            DropReason::Rejected => 5,
            DropReason::NoGroupMember => 6,
            DropReason::TooLarge => 7,
            DropReason::AclDenied => 8,
            DropReason::Unroutable => 9,
            DropReason::Malformed => 10,
            DropReason::ClusterForward => 11,
            DropReason::Expired => 12,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::SlowConsumerDisconnect => "slow_consumer_disconnect",
            DropReason::QueueFullDropOldest => "queue_full_drop_oldest",
            DropReason::QueueFullDropNewest => "queue_full_drop_newest",
            DropReason::GroupFullDropOldest => "group_full_drop_oldest",
            DropReason::GroupFullDropNewest => "group_full_drop_newest",
            DropReason::Rejected => "rejected",
            DropReason::NoGroupMember => "no_group_member",
            DropReason::TooLarge => "too_large",
            DropReason::AclDenied => "acl_denied",
            DropReason::Unroutable => "unroutable",
            DropReason::Malformed => "malformed",
            DropReason::ClusterForward => "cluster_forward",
            DropReason::Expired => "expired",
        }
    }
}

/// Counts one drop. Adapters call this for drops they decide themselves (ACL, size, malformed input).
pub fn record_drop(reason: DropReason, protocol: Protocol) {
    counter!(DROPS, "reason" => reason.as_str(), "protocol" => protocol.as_str()).increment(1);
}

/// Pre-resolved per-protocol counters; drop counters are resolved on first use, so that only
/// reasons that happened are exported.
pub(crate) struct BusMetrics {
    messages_out: Vec<Counter>,
    bytes_out: Vec<Counter>,
    /// Also [`MESSAGES_IN`] (their counts) and [`BYTES_IN`] (their sums): a publish is two atomic additions.
    sizes: Vec<Buckets>,
    /// By publisher protocol, then subscriber protocol.
    latency: Vec<Buckets>,
    /// By reason, then protocol.
    drops: Vec<OnceLock<Counter>>,
    stalls: Vec<Counter>,
    stall_seconds: Vec<Gauge>,
    /// `bus.metered_topics`, each with its in and out counters.
    topics: Vec<(Pattern, Counter, Counter)>,
}

impl BusMetrics {
    pub(crate) fn new(metered_topics: &[Pattern]) -> BusMetrics {
        BusMetrics {
            topics: metered_topics
                .iter()
                .map(|pattern| {
                    let label = pattern.as_str().to_owned();
                    (
                        pattern.clone(),
                        counter!(TOPIC_MESSAGES_IN, "topic" => label.clone()),
                        counter!(TOPIC_MESSAGES_OUT, "topic" => label),
                    )
                })
                .collect(),
            messages_out: Protocol::ALL
                .iter()
                .map(|p| counter!(MESSAGES_OUT, "protocol" => p.as_str()))
                .collect(),
            bytes_out: Protocol::ALL
                .iter()
                .map(|p| counter!(BYTES_OUT, "protocol" => p.as_str()))
                .collect(),
            sizes: Protocol::ALL
                .iter()
                .map(|_| Buckets::new(&SIZE_BYTES))
                .collect(),
            latency: (0..Protocol::ALL.len() * Protocol::ALL.len())
                .map(|_| Buckets::new(&LATENCY_MICROS))
                .collect(),
            drops: (0..DropReason::COUNT * Protocol::ALL.len())
                .map(|_| OnceLock::new())
                .collect(),
            stalls: Protocol::ALL
                .iter()
                .map(|p| counter!(PUBLISHER_STALLS, "protocol" => p.as_str()))
                .collect(),
            stall_seconds: Protocol::ALL
                .iter()
                .map(|p| gauge!(PUBLISHER_STALL_SECONDS, "protocol" => p.as_str()))
                .collect(),
        }
    }

    /// [`record_drop`] without the lookup.
    pub(crate) fn dropped(&self, reason: DropReason, protocol: Protocol) {
        self.drops[reason.index() * Protocol::ALL.len() + protocol.index()]
            .get_or_init(
                || counter!(DROPS, "reason" => reason.as_str(), "protocol" => protocol.as_str()),
            )
            .increment(1);
    }

    /// One publisher stall of `protocol` ended after `waited`.
    pub(crate) fn stalled(&self, protocol: Protocol, waited: std::time::Duration) {
        self.stalls[protocol.index()].increment(1);
        self.stall_seconds[protocol.index()].increment(waited.as_secs_f64());
    }

    pub(crate) fn message_in(&self, protocol: Protocol, topic: &Topic, payload_bytes: usize) {
        for (pattern, messages_in, _) in &self.topics {
            if pattern.matches(topic) {
                messages_in.increment(1);
            }
        }
        self.sizes[protocol.index()].record(payload_bytes as u64);
    }

    /// Counts the `envelopes` of deliveries just taken from a queue of a `subscriber` connection.
    pub(crate) fn delivered<'a>(
        &self,
        subscriber: Protocol,
        envelopes: impl IntoIterator<Item = &'a Envelope>,
    ) {
        let now = now_ms();
        let mut bytes = 0;
        let mut count = 0;
        // Consecutive envelopes of one publisher protocol and millisecond (most of a busy batch) are one sample
        // counted `n` times: (series, waited microseconds, n).
        let mut run: Option<(usize, u64, u64)> = None;
        for envelope in envelopes {
            count += 1;
            for (pattern, _, messages_out) in &self.topics {
                if pattern.matches(&envelope.topic) {
                    messages_out.increment(1);
                }
            }
            bytes += envelope.payload.len() as u64;
            let series =
                envelope.origin.protocol.index() * Protocol::ALL.len() + subscriber.index();
            let waited_micros = now
                .saturating_sub(envelope.timestamp_ms)
                .saturating_mul(1_000);
            match &mut run {
                Some((s, w, n)) if *s == series && *w == waited_micros => *n += 1,
                _ => {
                    if let Some((s, w, n)) = run.replace((series, waited_micros, 1)) {
                        self.latency[s].record_n(w, n);
                    }
                }
            }
        }
        if let Some((series, waited_micros, n)) = run {
            self.latency[series].record_n(waited_micros, n);
        }
        self.messages_out[subscriber.index()].increment(count);
        self.bytes_out[subscriber.index()].increment(bytes);
    }

    /// Appends [`MESSAGES_IN`], [`BYTES_IN`], [`MESSAGE_SIZE`] and [`DELIVERY_LATENCY`] in the Prometheus text
    /// format (every series, as the exporter writes the metrics it holds).
    pub(crate) fn render(&self, out: &mut String) {
        for (name, value) in [
            (MESSAGES_IN, Buckets::count as fn(&Buckets) -> u64),
            (BYTES_IN, Buckets::sum),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter");
            for (protocol, sizes) in Protocol::ALL.iter().zip(&self.sizes) {
                let protocol = protocol.as_str();
                let _ = writeln!(out, "{name}{{protocol=\"{protocol}\"}} {}", value(sizes));
            }
            out.push('\n');
        }
        let sizes = Family {
            name: MESSAGE_SIZE,
            per_unit: 1.0,
        };
        sizes.render(
            out,
            Protocol::ALL
                .iter()
                .zip(&self.sizes)
                .map(|(protocol, buckets)| {
                    (format!("protocol=\"{}\"", protocol.as_str()), buckets)
                }),
        );
        let latency = Family {
            name: DELIVERY_LATENCY,
            per_unit: 1_000_000.0,
        };
        let pairs = Protocol::ALL.iter().flat_map(|publisher| {
            Protocol::ALL
                .iter()
                .map(move |subscriber| (publisher, subscriber))
        });
        latency.render(
            out,
            pairs
                .zip(&self.latency)
                .map(|((publisher, subscriber), buckets)| {
                    let labels = format!(
                        "publisher=\"{}\",subscriber=\"{}\"",
                        publisher.as_str(),
                        subscriber.as_str()
                    );
                    (labels, buckets)
                }),
        );
    }
}

pub(crate) fn set_gauges(subscriptions: usize, groups: usize, retained: usize, depths: &[usize]) {
    gauge!(SUBSCRIPTIONS).set(subscriptions as f64);
    gauge!(GROUPS).set(groups as f64);
    gauge!(RETAINED).set(retained as f64);
    gauge!(QUEUE_DEPTH).set(depths.iter().sum::<usize>() as f64);
    gauge!(QUEUE_DEPTH_MAX).set(depths.iter().copied().max().unwrap_or(0) as f64);
    for bound in DEPTH_BUCKETS {
        let within = depths.iter().filter(|&&depth| depth <= bound).count();
        gauge!(SUBSCRIBER_QUEUES, "depth_le" => bound.to_string()).set(within as f64);
    }
    gauge!(SUBSCRIBER_QUEUES, "depth_le" => "+Inf").set(depths.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_counters_are_the_size_histograms_counts_and_sums() {
        let metrics = BusMetrics::new(&[]);
        let topic = Topic::parse("a.b").expect("topic");
        metrics.message_in(Protocol::Stomp, &topic, 3);
        metrics.message_in(Protocol::Stomp, &topic, 100);
        metrics.message_in(Protocol::Mqtt, &topic, 0);
        let mut out = String::new();
        metrics.render(&mut out);
        for line in [
            "gatewayd_messages_in_total{protocol=\"stomp\"} 2\n",
            "gatewayd_messages_in_total{protocol=\"mqtt\"} 1\n",
            "gatewayd_messages_in_total{protocol=\"loom\"} 0\n",
            "gatewayd_message_bytes_in_total{protocol=\"stomp\"} 103\n",
            "gatewayd_message_bytes_in_total{protocol=\"mqtt\"} 0\n",
            "gatewayd_message_size_bytes_count{protocol=\"stomp\"} 2\n",
        ] {
            assert!(out.contains(line), "{line:?} missing from:\n{out}");
        }
        assert_eq!(
            out.matches("# TYPE gatewayd_messages_in_total counter\n")
                .count(),
            1
        );
    }
}
