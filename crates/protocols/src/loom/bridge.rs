//! Loom message ↔ bus envelope, all of it (`docs/protocols/loom.md`, "How Loom messages look to other protocols"):
//! the room's topic, the envelope a producer's whole message becomes, and the Loom message a consumer gets for a
//! bus delivery.
//!
//! On the bus: topic = the room (`.` separates tokens) under the optional prefix, payload = the body, `key` = the
//! Loom key, no content type, no headers. The producer's `name`, declared size and msg id are not carried. Other
//! protocols see the key as their affinity key (STOMP `JMSXGroupID`).

use core_bus::{Envelope, Origin, Topic};

use super::codec::{Delivery, Hello, ProducedMessage};
use super::key::ConsumerKey;

/// The bus topic of a room: the routing room (empty → `default`) split on `.`, under `prefix` when set.
pub fn room_topic(hello: &Hello, prefix: Option<&Topic>) -> Topic {
    let tokens = hello.routing_room().split(|&b| b == b'.');
    match prefix {
        Some(prefix) => prefix.child(tokens),
        None => Topic::from_tokens(tokens),
    }
}

/// The envelope of a producer's whole message on the room's `topic`.
pub fn to_envelope(topic: Topic, message: ProducedMessage, origin: Origin) -> Envelope {
    let mut envelope = Envelope::new(topic, message.body, origin);
    envelope.key = Some(message.key);
    envelope
}

/// The Loom message a consumer gets for `envelope` under the room's `msg_id`. Keys of messages from other
/// protocols are derived (empty → the msg id in decimal, over 256 bytes → SHA-256 hex); the declared size is the
/// body's length.
pub fn from_envelope(envelope: &Envelope, msg_id: u64) -> Delivery {
    let key = envelope.key.clone().unwrap_or_default();
    Delivery {
        key: ConsumerKey::derive(&key, msg_id),
        declared_size: envelope.payload.len() as u64,
        msg_id,
        body: envelope.payload.clone(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::loom::codec::Role;
    use bytes::Bytes;

    /// A hello of `role` for `room` with `token` (the session's tests use it too).
    pub(in crate::loom) fn hello(role: Role, room: &str, token: &str) -> Hello {
        Hello {
            role,
            name: Bytes::from_static(b"n"),
            room: Bytes::copy_from_slice(room.as_bytes()),
            token: Bytes::copy_from_slice(token.as_bytes()),
        }
    }

    #[test]
    fn room_topics() {
        let prefix = Topic::parse("loom").unwrap();
        let h = hello(Role::Producer, "orders.eu", "");
        assert_eq!(room_topic(&h, None).as_str(), "orders.eu");
        assert_eq!(room_topic(&h, Some(&prefix)).as_str(), "loom.orders.eu");
        assert_eq!(
            room_topic(&hello(Role::Producer, "", ""), None).as_str(),
            "default"
        );
        let odd = Hello {
            room: Bytes::from_static(b"a b\xff"),
            ..h
        };
        assert_eq!(room_topic(&odd, None).as_str(), "a%20b%FF");
    }
}
