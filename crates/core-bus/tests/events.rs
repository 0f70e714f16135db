//! Interest and topic notifications.

mod common;

use common::*;
use core_bus::config::GroupPolicy;
use core_bus::events::{BusEvent, Interested};
use core_bus::{Credit, Pattern};

#[test]
fn subscribe_unsubscribe_join_and_new_topic_are_announced() {
    let bus = bus();
    let mut events = bus.events();
    let mut m = bus.mailbox(origin());
    let pattern = Pattern::parse("orders.*").unwrap();
    let id = m.subscribe(pattern.clone()).unwrap();
    m.join_group(&topic("jobs"), Credit::AutoAck, GroupPolicy::QUEUE)
        .unwrap();
    bus.publish(envelope("orders.eu", "1"));
    bus.publish(envelope("orders.eu", "2"));
    m.unsubscribe(id);
    let seen: Vec<BusEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert_eq!(
        seen,
        vec![
            BusEvent::Subscribed {
                pattern: pattern.clone(),
                by: Interested::Fanout
            },
            BusEvent::Subscribed {
                pattern: Pattern::parse("jobs").unwrap(),
                by: Interested::Group
            },
            BusEvent::NewTopic(topic("orders.eu")),
            BusEvent::Unsubscribed {
                pattern,
                by: Interested::Fanout
            },
        ]
    );
}
