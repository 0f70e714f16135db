//! Flow control: a subscriber queue past its bound stalls its publishers until it drains to half its bound, for at
//! most `max_publisher_stall`; a subscriber still over its bound after that gets its slow-consumer policy; other
//! topics' publishers never wait.

mod common;

use std::time::Duration;

use common::*;
use core_bus::config::SlowConsumerPolicy;
use core_bus::config::{BusConfig, GroupOverflow, GroupPolicy, NoMemberPolicy, QueueLimits};
use core_bus::{Bus, Closed, ClusterDelivery, Credit, Mailbox, MailboxOptions};

/// Far longer than any test takes: a stall ends only because the queue drained.
const FOREVER: Duration = Duration::from_secs(3600);
/// Bounds how long a test waits for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);

fn stalling_bus(max_stall: Duration) -> Bus {
    Bus::new(BusConfig {
        max_publisher_stall: max_stall,
        ..Default::default()
    })
}

fn bounded(bus: &Bus, max_messages: usize, topic: &str) -> Mailbox {
    let mut mailbox = bus.mailbox_with(
        origin(),
        MailboxOptions {
            limits: QueueLimits {
                max_messages,
                max_bytes: 1 << 20,
            },
            policy: SlowConsumerPolicy::Disconnect,
            stall_publishers: true,
        },
    );
    mailbox.subscribe(pattern(topic)).unwrap();
    mailbox
}

fn take(mailbox: &mut Mailbox, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    mailbox.try_recv_batch(&mut out, n).expect("mailbox open");
    payloads(&out)
}

/// Waits at most [`PATIENCE`] for `task` and returns its output.
async fn joined<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap()
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn stalls_at_the_high_water_mark_and_resumes_at_the_low_water_mark() {
    let bus = stalling_bus(FOREVER);
    let mut sub = bounded(&bus, 4, "t");
    for p in ["1", "2", "3", "4"] {
        assert!(bus.publish(envelope("t", p)).backpressure.is_none(), "{p}");
    }
    let outcome = bus.publish(envelope("t", "5"));
    assert_eq!((outcome.delivered, outcome.dropped), (1, 0));
    let stall = tokio::spawn(outcome.backpressure.expect("over the bound").ready());
    settle().await;
    assert!(!stall.is_finished());
    // Five queued, bound four: three left is still above the low-water mark of two.
    assert_eq!(take(&mut sub, 2), ["1", "2"]);
    settle().await;
    assert!(!stall.is_finished(), "resumed above the low-water mark");
    assert_eq!(take(&mut sub, 1), ["3"]);
    joined(stall).await;
    assert_eq!(take(&mut sub, 10), ["4", "5"]);
    assert!(bus.publish(envelope("t", "6")).backpressure.is_none());
}

#[tokio::test]
async fn a_stall_ends_after_the_bound_and_the_stuck_subscriber_is_cut_on_the_next_publish() {
    let bus = stalling_bus(Duration::from_millis(50));
    let mut stuck = bounded(&bus, 2, "t");
    bus.publish(envelope("t", "1"));
    bus.publish(envelope("t", "2"));
    let stall = bus.publish(envelope("t", "3")).backpressure.expect("stall");
    tokio::time::timeout(PATIENCE, stall.ready())
        .await
        .expect("the stall is bounded");
    let outcome = bus.publish(envelope("t", "4"));
    assert!(outcome.backpressure.is_none());
    assert_eq!(outcome.dropped, 1);
    let mut out = Vec::new();
    assert_eq!(
        stuck.try_recv_batch(&mut out, 10),
        Err(Closed::SlowConsumer)
    );
    // With nobody over its bound the publisher runs free.
    for p in 0..100 {
        assert!(bus
            .publish(envelope("t", &p.to_string()))
            .backpressure
            .is_none());
    }
}

#[tokio::test]
async fn a_stuck_subscriber_is_cut_while_the_others_get_every_message_in_order() {
    let bus = stalling_bus(Duration::from_millis(50));
    let mut stuck = bounded(&bus, 4, "t");
    let mut reader = bounded(&bus, 4, "t");
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 0..200 {
                if let Some(stall) = bus.publish(envelope("t", &n.to_string())).backpressure {
                    stall.ready().await;
                }
            }
        })
    };
    let mut got = Vec::new();
    while got.len() < 200 {
        let delivery = tokio::time::timeout(PATIENCE, reader.recv())
            .await
            .expect("the publisher goes on")
            .expect("the reader is never cut");
        got.push(String::from_utf8_lossy(&delivery.envelope.payload).into_owned());
    }
    joined(publisher).await;
    let expected: Vec<String> = (0..200).map(|n| n.to_string()).collect();
    assert_eq!(got, expected);
    let mut out = Vec::new();
    assert_eq!(
        stuck.try_recv_batch(&mut out, 10),
        Err(Closed::SlowConsumer)
    );
}

#[tokio::test]
async fn a_stuck_subscriber_never_stalls_publishers_of_other_topics() {
    let bus = stalling_bus(FOREVER);
    let _stuck = bounded(&bus, 2, "a");
    let mut other = bounded(&bus, 2, "b");
    for p in ["1", "2"] {
        bus.publish(envelope("a", p));
    }
    let stall = bus
        .publish(envelope("a", "3"))
        .backpressure
        .expect("a is over");
    let stalled = tokio::spawn(stall.ready());
    for n in 0..100 {
        let outcome = bus.publish(envelope("b", &n.to_string()));
        assert!(
            outcome.backpressure.is_none(),
            "b stalled on a's subscriber"
        );
        assert_eq!(take(&mut other, 1), [n.to_string()]);
    }
    settle().await;
    assert!(!stalled.is_finished());
    stalled.abort();
}

#[tokio::test]
async fn the_admin_view_names_the_stalled_publisher_and_the_stalling_subscriber() {
    let bus = stalling_bus(FOREVER);
    let mut sub = bounded(&bus, 1, "t");
    bus.publish(envelope("t", "1"));
    let publisher = origin();
    let stall = bus
        .publish(core_bus::Envelope::new(topic("t"), "2", publisher))
        .backpressure
        .expect("stall");
    let stalled = tokio::spawn(stall.ready());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !bus.flow_status().contains_key(&publisher.connection) {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    let status = bus.flow_status();
    assert!(status[&publisher.connection].stalled_ms.is_some());
    assert!(status[&sub.owner().connection].stalling_ms.is_some());
    take(&mut sub, 10);
    joined(stalled).await;
    assert!(bus.flow_status().is_empty());
}

#[tokio::test]
async fn stalls_are_counted_by_protocol() {
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let bus = metrics::with_local_recorder(&recorder, || stalling_bus(Duration::from_millis(10)));
    let _stuck = bounded(&bus, 1, "t");
    bus.publish(envelope("t", "1"));
    bus.publish(envelope("t", "2"))
        .backpressure
        .expect("stall")
        .ready()
        .await;
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "protocol" && l.value() == "internal")
            })
            .map(|(.., value)| value)
    };
    assert!(matches!(
        value("gatewayd_publisher_stalls_total"),
        Some(metrics_util::debugging::DebugValue::Counter(1))
    ));
    match value("gatewayd_publisher_stall_seconds_total") {
        Some(metrics_util::debugging::DebugValue::Gauge(seconds)) => {
            assert!(seconds.into_inner() > 0.0)
        }
        other => panic!("stall seconds: {other:?}"),
    }
}

#[test]
fn messages_from_the_cluster_fill_to_twice_the_bound_then_get_the_policy() {
    // Nothing stalls a remote publisher: its messages are queued past the bound, to twice it.
    let bus = stalling_bus(FOREVER);
    let mut sub = bounded(&bus, 2, "t");
    let dropped: usize = (0..6)
        .map(|n| {
            bus.publish_from_cluster(envelope("t", &n.to_string()), &ClusterDelivery::Fanout)
                .dropped
        })
        .sum();
    assert_eq!(dropped, 1);
    let mut out = Vec::new();
    assert_eq!(sub.try_recv_batch(&mut out, 10), Err(Closed::SlowConsumer));
}

#[tokio::test]
async fn a_block_group_stalls_until_it_drains_to_half_its_bound() {
    let bus = stalling_bus(FOREVER);
    let policy = GroupPolicy {
        no_member: NoMemberPolicy::Retain,
        overflow: GroupOverflow::Block,
        max_messages: 4,
        max_bytes: 1 << 20,
        ttl_ms: None,
    };
    bus.declare_group(&topic("q"), policy);
    let mut stall = None;
    for n in 0..5 {
        stall = bus
            .publish(envelope("q", &n.to_string()))
            .backpressure
            .or(stall);
    }
    let stalled = tokio::spawn(stall.expect("group over its bound").ready());
    let mut member = bus.mailbox(origin());
    member
        .join_group(&topic("q"), Credit::Window(3), policy)
        .unwrap();
    // Three taken by the member, two retained: at the low-water mark.
    joined(stalled).await;
    assert_eq!(payloads(&drain(&mut member)), ["0", "1", "2"]);
}

#[tokio::test]
async fn a_block_group_stall_is_bounded_and_the_buffer_stops_at_twice_its_bound() {
    let bus = stalling_bus(Duration::from_millis(20));
    let policy = GroupPolicy {
        no_member: NoMemberPolicy::Retain,
        overflow: GroupOverflow::Block,
        max_messages: 2,
        max_bytes: 1 << 20,
        ttl_ms: None,
    };
    bus.declare_group(&topic("q"), policy);
    let mut dropped = 0;
    for n in 0..10 {
        let outcome = bus.publish(envelope("q", &n.to_string()));
        dropped += outcome.dropped;
        if let Some(stall) = outcome.backpressure {
            tokio::time::timeout(PATIENCE, stall.ready()).await.unwrap();
        }
    }
    assert_eq!(dropped, 6);
    let mut member = bus.mailbox(origin());
    member
        .join_group(&topic("q"), Credit::AutoAck, policy)
        .unwrap();
    assert_eq!(payloads(&drain(&mut member)), ["0", "1", "2", "3"]);
}
