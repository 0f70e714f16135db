//! Notifications about interest and topics: subscribe/unsubscribe and the first publish on a new topic. The
//! cluster backend forwards interest from them.

use std::sync::Arc;

use crate::topic::{Pattern, Topic};

/// Who holds an interest in a pattern on this node, which decides how the cluster delivers to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Interested {
    /// A fanout subscription: every node with one gets every message.
    Fanout,
    /// A member of the anycast group of the exact topic: one node's group gets each message.
    Group,
    /// The named group `name` on the pattern (an MQTT shared subscription), created or removed: one node's group
    /// of that name and pattern gets each message.
    Shared { name: Arc<str> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    /// A subscription, group membership or named group on `pattern` was added.
    Subscribed { pattern: Pattern, by: Interested },
    /// A subscription, group membership or named group on `pattern` was removed.
    Unsubscribed { pattern: Pattern, by: Interested },
    /// The first message since start was published on `topic`.
    NewTopic(Topic),
}
