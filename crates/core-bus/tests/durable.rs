//! Durable bindings: a pattern bound to a topic's group keeps copies of its messages there while nobody consumes,
//! for one owner, up to a maximum, and unbinding drops what was kept.

mod common;

use common::*;
use core_bus::config::GroupPolicy;
use core_bus::{
    Bus, Credit, DurableError, DurableOwner, NotOwner, Protocol, Topic, SOURCE_TOPIC_HEADER,
};

fn owner(identity: &str) -> DurableOwner {
    DurableOwner {
        protocol: Protocol::Stomp,
        identity: identity.to_owned(),
    }
}

fn queue(owner: &str, name: &str) -> Topic {
    Topic::from_tokens(["$durable", owner, name])
}

fn publish(bus: &Bus, topic: &str, body: &'static str) {
    let mut envelope = envelope(topic, body);
    envelope.headers.push(SOURCE_TOPIC_HEADER, "forged");
    envelope.headers.push("kept", "yes");
    bus.publish(envelope);
}

/// Whether the group on `queue` keeps `want` messages.
fn retained(bus: &Bus, queue: &Topic, want: usize) -> bool {
    let stats = bus.topics();
    let kept = stats
        .iter()
        .find(|t| t.topic == queue.as_str())
        .and_then(|t| t.group.as_ref())
        .map_or(0, |g| g.retained);
    kept == want
}

#[tokio::test]
async fn messages_are_kept_while_nobody_consumes_and_deleted_with_the_queue() {
    let bus = bus();
    let queue = queue("c1", "news");
    let source = pattern("news.#");
    bus.bind_durable(&queue, &source, &owner("a"), 1).unwrap();
    bus.bind_durable(&queue, &source, &owner("a"), 1).unwrap();
    assert_eq!(bus.durable_bindings(), 1, "binding twice keeps one binding");
    assert_eq!(
        bus.bind_durable(&queue, &source, &owner("b"), 1),
        Err(DurableError::NotOwner(NotOwner))
    );
    let other = self::queue("c1", "more");
    assert_eq!(
        bus.bind_durable(&other, &source, &owner("a"), 1),
        Err(DurableError::Full { max: 1 })
    );
    publish(&bus, "news.a", "1");
    publish(&bus, "other", "x");
    publish(&bus, "news.b.c", "2");
    assert!(retained(&bus, &queue, 2));

    let mut consumer = bus.mailbox(origin());
    consumer
        .join_group(&queue, Credit::AutoAck, GroupPolicy::QUEUE)
        .unwrap();
    let first = consumer.recv().await.unwrap();
    assert_eq!(&first.envelope.payload[..], b"1");
    assert_eq!(first.envelope.topic, queue);
    assert_eq!(
        first.envelope.headers.get_str(SOURCE_TOPIC_HEADER),
        Some(Topic::from_dotted(b"news.a").as_str())
    );
    assert_eq!(
        first.envelope.headers.len(),
        2,
        "a forged source is left out"
    );
    assert_eq!(first.envelope.headers.get_str("kept"), Some("yes"));
    drop(consumer);

    assert_eq!(bus.unbind_durable(&queue, &owner("b")), Err(NotOwner));
    assert_eq!(bus.durable_bindings(), 1, "another owner deletes nothing");
    bus.unbind_durable(&queue, &owner("a")).unwrap();
    assert_eq!(bus.durable_bindings(), 0);
    assert!(retained(&bus, &queue, 0));
    publish(&bus, "news.a", "3");
    assert!(retained(&bus, &queue, 0), "no copies after unbinding");
}

#[test]
fn a_new_source_replaces_the_queue() {
    let bus = bus();
    let queue = queue("c1", "sub");
    bus.bind_durable(&queue, &pattern("a"), &owner("o"), 1)
        .unwrap();
    publish(&bus, "a", "1");
    assert!(retained(&bus, &queue, 1));
    bus.bind_durable(&queue, &pattern("b"), &owner("o"), 1)
        .unwrap();
    assert!(retained(&bus, &queue, 0));
    publish(&bus, "a", "2");
    publish(&bus, "b", "3");
    assert!(retained(&bus, &queue, 1));
}

#[test]
fn remote_publishes_reach_the_binding_like_fanout() {
    let bus = bus();
    let queue = queue("c1", "remote");
    bus.bind_durable(&queue, &pattern("r.*"), &owner("o"), 1)
        .unwrap();
    let fanout = core_bus::ClusterDelivery::Fanout;
    let outcome = bus.publish_from_cluster(envelope("r.x", "1"), &fanout);
    assert_eq!(outcome.retained, 1);
    let group = core_bus::ClusterDelivery::Group;
    bus.publish_from_cluster(envelope("r.x", "2"), &group);
    assert!(retained(&bus, &queue, 1), "only what fanout gets is copied");
}

#[test]
fn bindings_follow_the_subscription_rules() {
    let bus = bus();
    let queue = queue("c1", "internal");
    assert!(matches!(
        bus.bind_durable(&queue, &pattern("$inbox.1.x"), &owner("o"), 1),
        Err(DurableError::Subscribe(_))
    ));
    assert_eq!(bus.durable_bindings(), 0);
}
