//! Notifications about interest and topics: subscribe/unsubscribe and the first publish on a new topic. The
//! cluster backend forwards interest from them.

use crate::topic::{Pattern, Topic};

#[derive(Debug, Clone, PartialEq)]
pub enum BusEvent {
    /// A subscription (or group membership when `group`) on `pattern` was added.
    Subscribed { pattern: Pattern, group: bool },
    /// A subscription (or group membership when `group`) on `pattern` was removed.
    Unsubscribed { pattern: Pattern, group: bool },
    /// The first message since start was published on `topic`.
    NewTopic(Topic),
}
