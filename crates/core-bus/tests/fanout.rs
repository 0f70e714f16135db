//! Fanout delivery, wildcard matching through the index, internal topics and overflow policies (on a bus without
//! publisher stalls; `flow.rs` tests the stalls).

mod common;

use common::*;
use core_bus::config::{QueueLimits, SlowConsumerPolicy};
use core_bus::{Closed, MailboxOptions, Pattern, SubscribeError};
use proptest::prelude::*;

#[test]
fn every_matching_subscriber_gets_a_copy() {
    let bus = bus();
    let mut exact = subscriber(&bus, "orders.eu");
    let mut wild = subscriber(&bus, "orders.*");
    let mut other = subscriber(&bus, "invoices.#");
    let outcome = bus.publish(envelope("orders.eu", "o1"));
    assert_eq!(outcome.delivered, 2);
    assert_eq!(payloads(&drain(&mut exact)), ["o1"]);
    assert_eq!(payloads(&drain(&mut wild)), ["o1"]);
    assert!(drain(&mut other).is_empty());
}

#[test]
fn fanout_protocols_name_each_matching_subscription() {
    let bus = bus();
    let stomp = core_bus::Origin {
        protocol: core_bus::Protocol::Stomp,
        connection: core_bus::ConnectionId::next(),
    };
    let mut exact = bus.mailbox(stomp);
    exact.subscribe(pattern("orders.eu")).unwrap();
    let _wild = subscriber(&bus, "orders.>");
    let _other = subscriber(&bus, "invoices");
    let topic = core_bus::Topic::parse("orders.eu").unwrap();
    let mut protocols = bus.fanout_protocols(&topic);
    protocols.sort_by_key(|p| p.as_str());
    assert_eq!(
        protocols,
        [core_bus::Protocol::Internal, core_bus::Protocol::Stomp]
    );
    assert!(bus
        .fanout_protocols(&core_bus::Topic::parse("nobody").unwrap())
        .is_empty());
}

#[test]
fn payload_is_shared_not_copied() {
    let bus = bus();
    let mut a = subscriber(&bus, "t");
    let mut b = subscriber(&bus, "t");
    bus.publish(envelope("t", "shared"));
    let (da, db) = (drain(&mut a), drain(&mut b));
    assert_eq!(
        da[0].envelope.payload.as_ptr(),
        db[0].envelope.payload.as_ptr()
    );
}

#[test]
fn one_mailbox_keeps_each_subscription_apart_through_unsubscribes() {
    let bus = bus();
    let mut mailbox = bus.mailbox(origin());
    let first = mailbox.subscribe(pattern("a")).unwrap();
    let wild = mailbox.subscribe(pattern("a.*")).unwrap();
    let exact = mailbox.subscribe(pattern("a.b")).unwrap();
    let last = mailbox.subscribe(pattern("c.>")).unwrap();
    assert_eq!(mailbox.subscription_count(), 4);
    // Queued for a subscription that then ends: discarded on receive.
    bus.publish(envelope("a.b", "queued"));
    assert!(mailbox.unsubscribe(exact));
    assert!(!mailbox.unsubscribe(exact));
    bus.publish(envelope("a.b", "after"));
    bus.publish(envelope("a", "first"));
    bus.publish(envelope("c.d.e", "last"));
    let deliveries = drain(&mut mailbox);
    let got: Vec<_> = deliveries
        .iter()
        .map(|d| {
            (
                d.subscription,
                String::from_utf8_lossy(&d.envelope.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (wild, "queued".to_owned()),
            (wild, "after".to_owned()),
            (first, "first".to_owned()),
            (last, "last".to_owned()),
        ]
    );
    assert!(mailbox.unsubscribe(first));
    assert!(mailbox.unsubscribe(last));
    assert!(mailbox.unsubscribe(wild));
    assert_eq!(mailbox.subscription_count(), 0);
    assert_eq!(bus.publish(envelope("a.b", "nobody")).delivered, 0);
}

#[test]
fn a_mailbox_of_many_subscriptions_keeps_the_ones_left_after_ending_every_other_one() {
    let bus = bus();
    let mut mailbox = bus.mailbox(origin());
    let ids: Vec<_> = (0..100)
        .map(|n| mailbox.subscribe(pattern(&format!("t.{n}"))).unwrap())
        .collect();
    for id in ids.iter().step_by(2) {
        assert!(mailbox.unsubscribe(*id));
    }
    assert_eq!(mailbox.subscription_count(), 50);
    for n in 0..100 {
        bus.publish(envelope(&format!("t.{n}"), &n.to_string()));
    }
    let got: Vec<_> = drain(&mut mailbox).iter().map(|d| d.subscription).collect();
    let left: Vec<_> = ids.iter().copied().skip(1).step_by(2).collect();
    assert_eq!(got, left);
}

#[test]
fn wildcards_never_match_internal_topics() {
    let bus = bus();
    let mut all = bus.mailbox(origin());
    all.subscribe(pattern("#")).unwrap();
    all.subscribe(pattern(">")).unwrap();
    bus.publish(envelope("$rpc.messageloop.chat.echo", "req"));
    bus.publish(envelope("normal", "n"));
    assert_eq!(payloads(&drain(&mut all)), ["n", "n"]);
}

#[test]
fn internal_topics_by_exact_name_and_inboxes_by_owner_only() {
    let bus = bus();
    let mut owner = bus.mailbox(origin());
    let mut stranger = bus.mailbox(origin());
    let inbox = owner.inbox(b"reply");
    assert!(matches!(
        stranger.subscribe(Pattern::exact(&inbox)),
        Err(SubscribeError::NotInboxOwner(_))
    ));
    assert_eq!(
        stranger.subscribe(pattern("$rpc.*")),
        Err(SubscribeError::InternalWildcard)
    );
    stranger.subscribe(pattern("$rpc.goomerang.kind")).unwrap();
    owner.subscribe(Pattern::exact(&inbox)).unwrap();
    bus.publish(core_bus::Envelope::new(inbox, "r", origin()));
    assert_eq!(payloads(&drain(&mut owner)), ["r"]);
}

fn small(policy: SlowConsumerPolicy) -> MailboxOptions {
    MailboxOptions {
        limits: QueueLimits {
            max_messages: 2,
            max_bytes: 1 << 20,
        },
        policy,
        stall_publishers: true,
    }
}

#[test]
fn drop_newest_keeps_the_first_messages() {
    let bus = unstalled_bus();
    let mut slow = bus.mailbox_with(origin(), small(SlowConsumerPolicy::DropNewest));
    slow.subscribe(pattern("t")).unwrap();
    let dropped: usize = ["1", "2", "3", "4"]
        .iter()
        .map(|p| bus.publish(envelope("t", p)).dropped)
        .sum();
    assert_eq!(dropped, 2);
    assert_eq!(payloads(&drain(&mut slow)), ["1", "2"]);
}

#[test]
fn drop_oldest_keeps_the_last_messages() {
    let bus = unstalled_bus();
    let mut slow = bus.mailbox_with(origin(), small(SlowConsumerPolicy::DropOldest));
    slow.subscribe(pattern("t")).unwrap();
    for p in ["1", "2", "3", "4"] {
        bus.publish(envelope("t", p));
    }
    assert_eq!(payloads(&drain(&mut slow)), ["3", "4"]);
}

#[test]
fn disconnect_closes_only_the_slow_subscriber() {
    let bus = unstalled_bus();
    let mut slow = bus.mailbox_with(origin(), small(SlowConsumerPolicy::Disconnect));
    slow.subscribe(pattern("t")).unwrap();
    let mut fast = subscriber(&bus, "t");
    let dropped: usize = ["1", "2", "3"]
        .iter()
        .map(|p| bus.publish(envelope("t", p)).dropped)
        .sum();
    assert_eq!(dropped, 1);
    let mut out = Vec::new();
    assert_eq!(slow.try_recv_batch(&mut out, 10), Err(Closed::SlowConsumer));
    assert_eq!(payloads(&drain(&mut fast)), ["1", "2", "3"]);
}

#[test]
fn drops_are_counted_by_reason() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let bus = unstalled_bus();
        let mut slow = bus.mailbox_with(origin(), small(SlowConsumerPolicy::DropNewest));
        slow.subscribe(pattern("t")).unwrap();
        for p in ["1", "2", "3"] {
            bus.publish(envelope("t", p));
        }
    });
    let drops: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| {
            key.key().name() == "gatewayd_drops_total"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "reason" && l.value() == "queue_full_drop_newest")
        })
        .map(|(.., value)| match value {
            metrics_util::debugging::DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum();
    assert_eq!(drops, 1);
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("c".to_owned()),
        Just("$x".to_owned())
    ]
}

fn pattern_token() -> impl Strategy<Value = String> {
    prop_oneof![token(), Just("*".to_owned()), Just("#".to_owned())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// The index (exact map + trie) agrees with the naive reference matcher.
    #[test]
    fn index_agrees_with_reference_matcher(
        patterns in proptest::collection::vec((proptest::collection::vec(pattern_token(), 1..5), any::<bool>()), 1..8),
        topics in proptest::collection::vec(proptest::collection::vec(token(), 1..6), 1..8),
    ) {
        let bus = bus();
        let mut subscribers = Vec::new();
        for (tokens, gt) in patterns {
            let mut text = tokens.join(".");
            if gt { text.push_str(".>"); }
            let pattern = pattern(&text);
            let mut mailbox = bus.mailbox(origin());
            if mailbox.subscribe(pattern.clone()).is_ok() {
                subscribers.push((pattern, mailbox));
            }
        }
        for tokens in topics {
            let topic = topic(&tokens.join("."));
            bus.publish(core_bus::Envelope::new(topic.clone(), "x", origin()));
            for (pattern, mailbox) in subscribers.iter_mut() {
                let got = drain(mailbox).len();
                prop_assert_eq!(got, usize::from(pattern.matches(&topic)), "pattern {} topic {}", pattern, topic);
            }
        }
    }
}
