//! The names of gatewayd's internal topics: private inboxes and RPC request topics (`docs/topics.md`), and who may
//! subscribe to internal topics. Each protocol's own name syntax is translated by the protocol adapters
//! (`protocols::names`).

use crate::envelope::ConnectionId;
use crate::matching::Segment;
use crate::topic::{Pattern, Topic};

/// First token of private inboxes: `$inbox.<connection>.<name>`.
pub const INBOX_TOKEN: &str = "$inbox";
/// First token of RPC request topics: `$rpc.<protocol>.<name tokens…>`.
pub const RPC_TOKEN: &str = "$rpc";

/// The private inbox `$inbox.<connection>.<name>` of a connection.
pub fn inbox(connection: ConnectionId, name: &[u8]) -> Topic {
    Topic::from_tokens([
        INBOX_TOKEN.as_bytes(),
        connection.0.to_string().as_bytes(),
        name,
    ])
}

/// An RPC request topic: `$rpc.<protocol>.<parts…>`, each part one token (dots inside a part are escaped).
pub fn rpc_topic<T: AsRef<[u8]>>(protocol: &str, parts: impl IntoIterator<Item = T>) -> Topic {
    Topic::from_tokens([RPC_TOKEN.as_bytes(), protocol.as_bytes()]).child(parts)
}

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("inbox {0} belongs to another connection")]
    NotInboxOwner(Topic),
    #[error("internal topics can only be subscribed by exact name")]
    InternalWildcard,
    #[error("anycast groups need an exact topic")]
    GroupPattern,
}

/// Whether `pattern` may be subscribed by `connection` (`None`: by no connection, as a durable binding): an internal
/// topic only by its exact name, and an inbox only by its own connection.
pub(crate) fn check_subscribe(
    pattern: &Pattern,
    connection: Option<ConnectionId>,
) -> Result<(), SubscribeError> {
    let Some(Segment::Literal(first)) = pattern.segments().first() else {
        return Ok(());
    };
    if !first.starts_with('$') {
        return Ok(());
    }
    let Some(topic) = pattern.as_topic() else {
        return Err(SubscribeError::InternalWildcard);
    };
    if &**first == INBOX_TOKEN {
        let owner = topic.tokens().nth(1);
        if connection.is_none_or(|c| owner != Some(c.0.to_string().as_str())) {
            return Err(SubscribeError::NotInboxOwner(topic));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_names() {
        assert_eq!(inbox(ConnectionId(5), b"r.1").as_str(), "$inbox.5.r%2E1");
        assert_eq!(
            rpc_topic("messageloop", ["chat.room", "echo"]).as_str(),
            "$rpc.messageloop.chat%2Eroom.echo"
        );
    }
}
