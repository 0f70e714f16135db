//! Named groups on patterns (MQTT shared subscriptions): one group per name and pattern, wildcards allowed,
//! independent of a topic's own group, gone with their last member.

mod common;

use std::collections::HashMap;

use common::*;
use core_bus::config::GroupPolicy;
use core_bus::{Bus, Credit, Mailbox, SubscribeError};

fn shared(bus: &Bus, name: &str, filter: &str) -> Mailbox {
    let mut mailbox = bus.mailbox(origin());
    mailbox
        .join_shared(name, &pattern(filter), Credit::AutoAck, GroupPolicy::QUEUE)
        .expect("joined");
    mailbox
}

/// How many times each payload arrived over `members`.
fn counts(members: &mut [Mailbox]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for member in members {
        for payload in payloads(&drain(member)) {
            *counts.entry(payload).or_default() += 1;
        }
    }
    counts
}

#[test]
fn each_share_name_is_its_own_group() {
    let bus = bus();
    let mut a = [shared(&bus, "a", "t"), shared(&bus, "a", "t")];
    let mut b = [shared(&bus, "b", "t")];
    for n in 0..10 {
        assert_eq!(bus.publish(envelope("t", &n.to_string())).delivered, 2);
    }
    let per_member: Vec<Vec<String>> = a.iter_mut().map(|m| payloads(&drain(m))).collect();
    // Round-robin within group a: each member got half, no message twice.
    assert_eq!(per_member.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5]);
    let mut in_a: Vec<String> = per_member.concat();
    in_a.sort_by_key(|p| p.parse::<u32>().unwrap_or(u32::MAX));
    let all: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    assert_eq!(in_a, all);
    let in_b = counts(&mut b);
    assert_eq!(in_b.len(), 10);
    assert!(in_b.values().all(|&n| n == 1));
}

#[test]
fn a_group_on_a_wildcard_pattern_takes_every_matching_topic() {
    let bus = bus();
    let mut members = [shared(&bus, "g", "s.*"), shared(&bus, "g", "s.*")];
    let mut deep = [shared(&bus, "g", "s.#")];
    for t in ["s.x", "s.y", "s.z"] {
        assert_eq!(bus.publish(envelope(t, t)).delivered, 2, "{t}");
    }
    assert_eq!(bus.publish(envelope("s.x.y", "s.x.y")).delivered, 1);
    assert_eq!(bus.publish(envelope("other", "other")).delivered, 0);
    let got = counts(&mut members);
    assert_eq!(got.len(), 3);
    assert!(got.values().all(|&n| n == 1));
    let got = counts(&mut deep);
    assert_eq!(got.len(), 4);
    assert!(got.values().all(|&n| n == 1));
}

#[test]
fn the_topics_own_group_and_fanout_are_separate_from_named_groups() {
    let bus = bus();
    let mut queue = bus.mailbox(origin());
    queue
        .join_group(&topic("t"), Credit::AutoAck, GroupPolicy::QUEUE)
        .expect("joined");
    let mut fanout = bus.mailbox(origin());
    fanout.subscribe(pattern("t")).expect("subscribed");
    let mut named = shared(&bus, "g", "t");
    assert_eq!(bus.publish(envelope("t", "1")).delivered, 3);
    for mailbox in [&mut queue, &mut fanout, &mut named] {
        assert_eq!(payloads(&drain(mailbox)), ["1"]);
    }
    // The topic's group has no member left: it retains (queue policy); the named group does not take its messages.
    drop(queue);
    let outcome = bus.publish(envelope("t", "2"));
    assert_eq!((outcome.delivered, outcome.retained), (2, 1));
    assert_eq!(payloads(&drain(&mut named)), ["2"]);
    assert_eq!(bus.topics()[0].fanout_subscribers, 1);
}

#[test]
fn a_group_ends_with_its_last_member_and_starts_anew() {
    let bus = bus();
    let first = shared(&bus, "g", "t.#");
    let mut second = shared(&bus, "g", "t.#");
    drop(first);
    assert_eq!(bus.publish(envelope("t.a", "1")).delivered, 1);
    assert_eq!(payloads(&drain(&mut second)), ["1"]);
    drop(second);
    let outcome = bus.publish(envelope("t.a", "2"));
    assert_eq!((outcome.delivered, outcome.retained), (0, 0));
    assert_eq!(bus.wildcard_subscriptions(), 0);
    let mut again = shared(&bus, "g", "t.#");
    assert_eq!(bus.publish(envelope("t.a", "3")).delivered, 1);
    assert_eq!(payloads(&drain(&mut again)), ["3"]);
}

#[test]
fn an_unsubscribed_member_gets_nothing_more() {
    let bus = bus();
    let mut leaving = bus.mailbox(origin());
    let id = leaving
        .join_shared("g", &pattern("t"), Credit::AutoAck, GroupPolicy::QUEUE)
        .expect("joined");
    let mut staying = shared(&bus, "g", "t");
    assert!(leaving.unsubscribe(id));
    for n in 0..4 {
        bus.publish(envelope("t", &n.to_string()));
    }
    assert!(drain(&mut leaving).is_empty());
    assert_eq!(payloads(&drain(&mut staying)), ["0", "1", "2", "3"]);
}

#[test]
fn internal_topics_stay_out_of_wildcard_groups() {
    let bus = bus();
    let mut everything = shared(&bus, "g", "#");
    let mut mailbox = bus.mailbox(origin());
    assert!(matches!(
        mailbox.join_shared("g", &pattern("$sys.*"), Credit::AutoAck, GroupPolicy::QUEUE),
        Err(SubscribeError::InternalWildcard)
    ));
    let mut exact = shared(&bus, "g", "$sys.x");
    assert_eq!(bus.publish(envelope("$sys.x", "internal")).delivered, 1);
    assert!(drain(&mut everything).is_empty());
    assert_eq!(payloads(&drain(&mut exact)), ["internal"]);
}
