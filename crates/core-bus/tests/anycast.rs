//! Anycast groups: credit, round-robin, key affinity, ack/nack/requeue, retain vs discard, overflow policies.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use core_bus::config::{GroupOverflow, GroupPolicy, NoMemberPolicy};
use core_bus::{Credit, Mailbox};

const QUEUE: GroupPolicy = GroupPolicy::QUEUE;

fn member(bus: &core_bus::Bus, credit: Credit) -> Mailbox {
    let mut mailbox = bus.mailbox(origin());
    mailbox.join_group(&topic("q"), credit, QUEUE).unwrap();
    mailbox
}

#[test]
fn each_message_goes_to_exactly_one_member_round_robin() {
    let bus = bus();
    let mut members: Vec<Mailbox> = (0..3).map(|_| member(&bus, Credit::AutoAck)).collect();
    for i in 0..30 {
        assert_eq!(bus.publish(envelope("q", &i.to_string())).delivered, 1);
    }
    let mut seen = HashSet::new();
    for m in members.iter_mut() {
        let got = payloads(&drain(m));
        assert_eq!(got.len(), 10);
        for p in got {
            assert!(seen.insert(p), "delivered twice");
        }
    }
    assert_eq!(seen.len(), 30);
}

#[test]
fn credit_gates_delivery_and_ack_frees_it() {
    let bus = bus();
    let mut m = member(&bus, Credit::Window(1));
    bus.publish(envelope("q", "1"));
    let outcome = bus.publish(envelope("q", "2"));
    assert_eq!(outcome.retained, 1);
    let first = drain(&mut m);
    assert_eq!(payloads(&first), ["1"]);
    assert!(drain(&mut m).is_empty());
    first.into_iter().next().unwrap().ack.unwrap().ack();
    assert_eq!(payloads(&drain(&mut m)), ["2"]);
}

#[test]
fn nack_requeues_as_redelivered() {
    let bus = bus();
    let mut m = member(&bus, Credit::Window(10));
    bus.publish(envelope("q", "1"));
    let d = drain(&mut m).pop().unwrap();
    assert!(!d.redelivered);
    d.ack.unwrap().nack(true);
    let again = drain(&mut m).pop().unwrap();
    assert_eq!(payloads(std::slice::from_ref(&again)), ["1"]);
    assert!(again.redelivered);
}

#[test]
fn leaving_requeues_unacked_to_other_members() {
    let bus = bus();
    let mut a = member(&bus, Credit::Window(10));
    bus.publish(envelope("q", "1"));
    bus.publish(envelope("q", "2"));
    assert_eq!(drain(&mut a).len(), 2);
    let mut b = member(&bus, Credit::Window(10));
    drop(a);
    let got = drain(&mut b);
    assert_eq!(payloads(&got), ["1", "2"]);
    assert!(got.iter().all(|d| d.redelivered));
}

#[test]
fn retain_keeps_messages_until_a_member_joins() {
    let bus = bus();
    bus.declare_group(&topic("q"), QUEUE);
    assert_eq!(bus.publish(envelope("q", "early")).retained, 1);
    let mut m = member(&bus, Credit::AutoAck);
    assert_eq!(payloads(&drain(&mut m)), ["early"]);
}

#[test]
fn discard_drops_when_no_member() {
    let bus = bus();
    bus.declare_group(&topic("q"), GroupPolicy::ROOM);
    assert_eq!(bus.publish(envelope("q", "lost")).dropped, 1);
}

fn bounded(overflow: GroupOverflow) -> GroupPolicy {
    GroupPolicy {
        no_member: NoMemberPolicy::Retain,
        overflow,
        max_messages: 2,
        max_bytes: 1 << 20,
        ttl_ms: None,
    }
}

#[test]
fn group_overflow_policies() {
    for (overflow, expected) in [
        (GroupOverflow::DropOldest, vec!["3", "4"]),
        (GroupOverflow::DropNewest, vec!["1", "2"]),
        (GroupOverflow::Block, vec!["1", "2", "3", "4"]),
    ] {
        let bus = bus();
        bus.declare_group(&topic("q"), bounded(overflow));
        let outcomes: Vec<_> = ["1", "2", "3", "4"]
            .iter()
            .map(|p| bus.publish(envelope("q", p)))
            .collect();
        let blocked = outcomes.iter().filter(|o| o.backpressure.is_some()).count();
        let dropped: usize = outcomes.iter().map(|o| o.dropped).sum();
        match overflow {
            GroupOverflow::Block => assert_eq!((blocked, dropped), (2, 0)),
            _ => assert_eq!((blocked, dropped), (0, 2)),
        }
        let mut m = bus.mailbox(origin());
        m.join_group(&topic("q"), Credit::AutoAck, QUEUE).unwrap();
        assert_eq!(payloads(&drain(&mut m)), expected, "{overflow:?}");
    }
}

#[tokio::test]
async fn backpressure_resolves_when_the_group_drains() {
    let bus = bus();
    bus.declare_group(&topic("q"), bounded(GroupOverflow::Block));
    let mut m = bus.mailbox(origin());
    m.join_group(&topic("q"), Credit::Window(1), QUEUE).unwrap();
    let mut waiter = None;
    for p in ["1", "2", "3", "4"] {
        waiter = bus.publish(envelope("q", p)).backpressure.or(waiter);
    }
    let waiter = waiter.expect("group over its bound");
    let wait = tokio::spawn(waiter.ready());
    // Four messages and a bound of two: one ack leaves the backlog at its bound, the second makes room.
    m.recv().await.unwrap().ack.unwrap().ack();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !wait.is_finished(),
        "room reported while the backlog is still at its bound"
    );
    m.recv().await.unwrap().ack.unwrap().ack();
    tokio::time::timeout(std::time::Duration::from_secs(5), wait)
        .await
        .unwrap()
        .unwrap();
}

fn owners(bus: &core_bus::Bus, members: &mut [Mailbox], keys: &[String]) -> HashMap<String, usize> {
    for k in keys {
        bus.publish(keyed("q", k, k));
    }
    let mut owner = HashMap::new();
    for (i, m) in members.iter_mut().enumerate() {
        for d in drain(m) {
            owner.insert(String::from_utf8_lossy(&d.envelope.payload).into_owned(), i);
        }
    }
    owner
}

#[test]
fn key_affinity_is_stable_and_moves_minimally() {
    let bus = bus();
    let mut members: Vec<Mailbox> = (0..4).map(|_| member(&bus, Credit::AutoAck)).collect();
    let keys: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
    let first = owners(&bus, &mut members, &keys);
    let second = owners(&bus, &mut members, &keys);
    assert_eq!(
        first, second,
        "same key, same member while membership is stable"
    );
    assert!(
        (0..4).all(|i| first.values().any(|&o| o == i)),
        "keys spread over members"
    );
    let gone = members.remove(3);
    drop(gone);
    let after = owners(&bus, &mut members, &keys);
    for k in &keys {
        if first[k] != 3 {
            assert_eq!(
                after[k], first[k],
                "key {k} moved although its member stayed"
            );
        }
    }
}

fn expiring(name: &str, payload: &str, expires_at_ms: u64) -> core_bus::Envelope {
    let mut envelope = envelope(name, payload);
    envelope.expires_at_ms = Some(expires_at_ms);
    envelope
}

#[test]
fn an_expired_message_is_dropped_from_queues_and_a_live_one_delivered() {
    let bus = bus();
    let mut subscriber = subscriber(&bus, "t");
    let now = core_bus::now_ms();
    bus.publish(expiring("t", "stale", now - 1));
    bus.publish(expiring("t", "live", now + 60_000));
    bus.publish(envelope("t", "forever"));
    assert_eq!(payloads(&drain(&mut subscriber)), ["live", "forever"]);
}

#[test]
fn an_expired_group_message_gives_its_window_place_back() {
    let bus = bus();
    let mut m = member(&bus, Credit::Window(1));
    bus.publish(expiring("q", "stale", core_bus::now_ms() - 1));
    bus.publish(envelope("q", "next"));
    // The stale message took the only place of the window; expiring settles it, so the next one follows.
    let mut got = payloads(&drain(&mut m));
    got.extend(payloads(&drain(&mut m)));
    assert_eq!(got, ["next"]);
}

#[test]
fn a_group_ttl_expires_retained_messages() {
    let bus = bus();
    let policy = GroupPolicy {
        ttl_ms: Some(0),
        ..QUEUE
    };
    // A paused member: the message is retained, with an expiry of its publish time.
    let mut m = bus.mailbox(origin());
    let id = m
        .join_group(&topic("q"), Credit::Window(0), policy)
        .unwrap();
    bus.publish(envelope("q", "old"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    m.set_credit(id, Credit::Window(1));
    assert!(drain(&mut m).is_empty());
    bus.publish(envelope("q", "new"));
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert!(
        drain(&mut m).is_empty(),
        "a message kept past the group's ttl"
    );
}
