//! chanserv message ↔ bus envelope, all of it (`docs/protocols/chanserv.md`, "Request body" and "What comes back"):
//! the envelope a `PUB` becomes, the selector → canonical pattern mapping, and what a subscriber gets for a bus
//! delivery: one frame on its topic's source, announced with a `topic=` header.
//!
//! On the bus: topic = the `PUB` topic as a dotted name, payload = the bytes after the first `\n`, no key, no
//! headers, no content type. Back to chanserv: one frame per message, its payload exactly as published; the
//! topic is in the source header, not in the frame.
//!
//! Selector syntax (gatewayd's choice): a selector is a dotted name, `.` separates tokens and every other
//! character is literal, as in every gatewayd protocol. Whole-token wildcards: `*` one token, `#` zero or more
//! tokens anywhere, a final `>` one or more tokens. A selector written `topic/glob` elsewhere is spelled with
//! `.` here (`orders/*` is `orders.*`); a `/` is an ordinary character of a token, so `a/b` is the one-token
//! topic `a/b`, the same topic a STOMP or Goomerang client names `a/b`.

use crate::names::{pattern_from_name, WildcardSyntax};
use bytes::Bytes;
use core_bus::{Envelope, Origin, Pattern, Topic, TopicError};

use super::channel::Outbox;
use super::codec::frame::{Compression, FrameError};
use super::codec::selector::Publish;

/// The bus topic a `PUB` names: its topic read as a dotted name.
pub fn publish_topic(publish: &Publish) -> Result<Topic, TopicError> {
    Topic::try_from_dotted(publish.topic.as_bytes())
}

/// The envelope of a `PUB` on its bus `topic` ([`publish_topic`]): the payload as is.
pub fn to_envelope(topic: Topic, publish: Publish, origin: Origin) -> Envelope {
    Envelope::new(topic, publish.payload, origin)
}

/// Translates a selector into a canonical pattern (see the module doc for the syntax).
pub fn selector_pattern(selector: &str) -> Result<Pattern, TopicError> {
    let syntax = if selector.split('.').any(|token| token == "#") {
        WildcardSyntax::Amqp
    } else {
        WildcardSyntax::Nats
    };
    pattern_from_name(selector, syntax)
}

/// The source header of a topic: a `key=value` line per field.
pub fn topic_header(topic: &Topic, complete: bool) -> Bytes {
    let mut header = format!("topic={}\n", topic.as_str());
    if !complete {
        header.push_str("complete=false\n");
    }
    Bytes::from(header)
}

/// Queues the frame of `envelope` on its topic's source: the payload exactly as published, one frame.
pub fn from_envelope(
    envelope: &Envelope,
    compression: Compression,
    outbox: &mut Outbox,
) -> Result<(), FrameError> {
    outbox.push_item(&envelope.payload, compression)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_syntax() {
        let exact = selector_pattern("orders.eu").unwrap();
        assert_eq!(exact.as_topic(), Some(Topic::from_dotted(b"orders.eu")));
        assert_eq!(selector_pattern("orders.*").unwrap().as_str(), "orders.*");
        assert_eq!(selector_pattern("orders.>").unwrap().as_str(), "orders.>");
        assert_eq!(selector_pattern("a.#.z").unwrap().as_str(), "a.#.z");
        // `>` only counts last; `/` is literal.
        assert!(selector_pattern("a.>.b").unwrap().is_exact());
        let slash = selector_pattern("topic/glob").unwrap();
        assert_eq!(slash.as_topic(), Some(Topic::from_dotted(b"topic/glob")));
        assert_eq!(slash.segments().len(), 1);
    }

    #[test]
    fn topic_headers_are_key_value_lines() {
        let topic = Topic::from_dotted(b"orders.eu");
        assert_eq!(&topic_header(&topic, true)[..], b"topic=orders.eu\n");
        assert_eq!(
            &topic_header(&Topic::from_dotted(b"a b"), false)[..],
            b"topic=a%20b\ncomplete=false\n"
        );
    }
}
