//! The names of gatewayd's internal topics: private inboxes and RPC request topics (`docs/topics.md`). Each
//! protocol's own name syntax is translated by the protocol adapters (`protocols::names`).

use crate::envelope::ConnectionId;
use crate::topic::Topic;

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
