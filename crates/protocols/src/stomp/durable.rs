//! Durable topic subscriptions (docs/protocols/stomp.md, "Durable topic subscriptions"): which
//! SUBSCRIBE and UNSUBSCRIBE headers ask for one, and the name of the backing queue.
//!
//! | form | SUBSCRIBE | backing queue |
//! |---|---|---|
//! | RabbitMQ | `durable:true` (or `persistent:true`), `auto-delete` not `true`, `id` required | `$durable.<id>.<topic name>` |
//! | ActiveMQ Classic / Artemis | `client-id` on CONNECT, `activemq.subscriptionName` (or `durable-subscription-name`, `durable-subscriber-name`) | `$durable.<client-id>.<subscription name>` |
//!
//! The queue is an anycast group (`GroupPolicy::QUEUE` unless a bus rule for `$durable.#` says
//! otherwise) that a durable binding of the bus ([`core_bus::Bus::bind_durable`]) feeds from the
//! topic pattern while the subscriber is away. An UNSUBSCRIBE that repeats the durable headers
//! deletes it.
//!
//! A queue belongs to the identity (login) that made it: another identity that names the same
//! `id` + topic or `client-id` + name is refused, and no destination reaches a backing queue
//! directly ([`is_backing_queue`]).

use core_bus::{Pattern, Segment, Topic};

use super::codec::frame::Frame;

/// First token of every backing queue.
pub const DURABLE_TOKEN: &str = "$durable";
/// RabbitMQ's SUBSCRIBE headers asking for a durable queue (either is enough).
pub const DURABLE_HEADERS: [&str; 2] = ["durable", "persistent"];
pub const AUTO_DELETE: &str = "auto-delete";
/// ActiveMQ Classic (`activemq.subscriptionName`) and Artemis names of the durable subscription.
pub const SUBSCRIPTION_NAME_HEADERS: [&str; 3] = [
    "activemq.subscriptionName",
    "durable-subscription-name",
    "durable-subscriber-name",
];
/// The CONNECT header naming the client in the ActiveMQ form.
pub const CLIENT_ID: &str = "client-id";

/// What a frame's headers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// The RabbitMQ form: the queue is keyed by the subscription `id` and the topic.
    ById,
    /// The ActiveMQ form: the queue is keyed by the connection's `client-id` and this name.
    Named(&'a str),
}

fn is_true(value: Option<&[u8]>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case(b"true"))
}

/// The durable subscription `frame` (SUBSCRIBE or UNSUBSCRIBE) names, if any. A subscription name
/// that is not UTF-8 or empty counts as absent.
pub fn request(frame: &Frame) -> Option<Request<'_>> {
    let named = SUBSCRIPTION_NAME_HEADERS
        .iter()
        .find_map(|name| frame.header(name))
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty());
    if let Some(name) = named {
        return Some(Request::Named(name));
    }
    let durable = DURABLE_HEADERS.iter().any(|h| is_true(frame.header(h)));
    (durable && !is_true(frame.header(AUTO_DELETE))).then_some(Request::ById)
}

/// The backing queue `$durable.<owner>.<name>`; each part is one token (dots are escaped).
pub fn queue(owner: &str, name: &str) -> Topic {
    Topic::from_tokens([DURABLE_TOKEN, owner, name])
}

/// Whether `pattern` names a backing queue (or could match one): its first token is [`DURABLE_TOKEN`].
pub fn is_backing_queue(pattern: &Pattern) -> bool {
    matches!(pattern.segments().first(), Some(Segment::Literal(first)) if &**first == DURABLE_TOKEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::codec::frame::Command;

    fn subscribe(headers: &[(&str, &str)]) -> Frame {
        headers
            .iter()
            .fold(Frame::new(Command::Subscribe), |f, (n, v)| {
                f.with_header(n.to_string(), v.to_string())
            })
    }

    #[test]
    fn rabbitmq_form_needs_durable_or_persistent_and_no_auto_delete() {
        let ask = |h: &[(&str, &str)]| request(&subscribe(h)).map(|r| r == Request::ById);
        assert_eq!(
            ask(&[("durable", "true"), ("auto-delete", "false")]),
            Some(true)
        );
        assert_eq!(ask(&[("persistent", "TRUE")]), Some(true));
        assert_eq!(ask(&[("durable", "true"), ("auto-delete", "true")]), None);
        assert_eq!(ask(&[("durable", "false")]), None);
        assert_eq!(ask(&[("id", "1")]), None);
    }

    #[test]
    fn activemq_form_names_the_subscription() {
        let frame = subscribe(&[("activemq.subscriptionName", "audit"), ("durable", "true")]);
        assert_eq!(request(&frame), Some(Request::Named("audit")));
        let frame = subscribe(&[("durable-subscription-name", "a2")]);
        assert_eq!(request(&frame), Some(Request::Named("a2")));
        assert_eq!(
            request(&subscribe(&[("activemq.subscriptionName", "")])),
            None
        );
    }

    #[test]
    fn queue_names_are_three_tokens_whatever_the_parts_hold() {
        let q = queue("app.1", "news.#");
        assert_eq!(q.tokens().count(), 3);
        assert!(q.is_internal());
        assert_ne!(queue("a", "b.c"), queue("a.b", "c"));
        assert!(is_backing_queue(&Pattern::exact(&q)));
        assert!(!is_backing_queue(&Pattern::parse("news.#").unwrap()));
    }
}
