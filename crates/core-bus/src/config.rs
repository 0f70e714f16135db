//! Bus settings: queue bounds, publisher stall bound, slow-consumer policy, anycast group policies and history, by
//! topic prefix.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::topic::Pattern;

/// Bounds of one subscriber queue or group buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

/// What happens to a fanout subscriber that stays over its queue bound for longer than the publisher stall bound
/// (or reaches twice its bound); until then its publishers are stalled instead (see `flow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Close the subscriber (its connection gets the protocol's error); the default: a subscriber that reaches
    /// the policy has held its publishers for the whole stall bound without draining, so it is stuck, and cutting
    /// it frees its queue and tells its client, where a drop policy would lose messages silently for as long as
    /// it stays attached.
    #[default]
    Disconnect,
    DropOldest,
    DropNewest,
}

/// What an anycast group does with a message when it has no member at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoMemberPolicy {
    /// Keep it in the retention buffer (STOMP `/queue/` default).
    Retain,
    /// Count and drop it (Loom room default).
    Discard,
}

/// What happens when a group's retention buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupOverflow {
    DropOldest,
    DropNewest,
    /// Keep the message and stall the publisher until the buffer drains to half its bound, for at most the
    /// publisher stall bound; past twice the bound new messages are dropped (`group_full_drop_newest`).
    Block,
}

/// Policy of one anycast group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPolicy {
    pub no_member: NoMemberPolicy,
    pub overflow: GroupOverflow,
    pub max_messages: usize,
    pub max_bytes: usize,
    /// How long a message may wait in the group (retained or in a member's queue) before it is dropped as
    /// `expired`; none by default. A message's own expiry applies when it is earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

impl GroupPolicy {
    /// Default for groups made by STOMP `/queue/`: keep messages while nobody consumes, drop the oldest when full.
    pub const QUEUE: GroupPolicy = GroupPolicy {
        no_member: NoMemberPolicy::Retain,
        overflow: GroupOverflow::DropOldest,
        max_messages: 10_000,
        max_bytes: 64 << 20,
        ttl_ms: None,
    };

    /// Default for Loom rooms: discard when no consumer, back-pressure producers when consumers are busy.
    pub const ROOM: GroupPolicy = GroupPolicy {
        no_member: NoMemberPolicy::Discard,
        overflow: GroupOverflow::Block,
        max_messages: 1_024,
        max_bytes: 64 << 20,
        ttl_ms: None,
    };
}

/// A group policy that applies to every group whose topic matches `topics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    pub topics: Pattern,
    #[serde(flatten)]
    pub policy: GroupPolicy,
}

/// Bounds of one topic's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPolicy {
    pub max_messages: usize,
    pub max_bytes: usize,
    #[serde(with = "seconds")]
    pub ttl: Duration,
}

/// Topics matching `topics` keep history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    pub topics: Pattern,
    #[serde(flatten)]
    pub policy: HistoryPolicy,
}

/// Everything the bus needs to know at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Default bound of every fanout subscriber's queue.
    pub subscriber_queue: QueueLimits,
    /// Longest time one publish may stall its publisher while a subscriber queue (or a `block` group) is over its
    /// bound; a subscriber still over its bound after it gets `slow_consumer`. Zero turns stalls off: a full queue
    /// gets `slow_consumer` at once.
    #[serde(rename = "max_publisher_stall_ms", with = "millis")]
    pub max_publisher_stall: Duration,
    /// Policy for a subscriber over its bound for longer than `max_publisher_stall` (or at twice its bound).
    pub slow_consumer: SlowConsumerPolicy,
    /// Group policies by topic; the first matching rule wins, otherwise the creating protocol's default.
    pub groups: Vec<GroupRule>,
    /// Topics with history; the first matching rule wins.
    pub history: Vec<HistoryRule>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            subscriber_queue: QueueLimits {
                max_messages: 8_192,
                max_bytes: 32 << 20,
            },
            max_publisher_stall: Duration::from_secs(2),
            slow_consumer: SlowConsumerPolicy::Disconnect,
            groups: Vec::new(),
            history: Vec::new(),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
