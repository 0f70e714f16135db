//! How the bus hands envelopes to a cluster backend and takes them back.

mod common;

use std::sync::Arc;

use common::*;

use core_bus::cluster::{ClusterBackend, ClusterState, Groups, Sequencing};
use core_bus::config::GroupPolicy;
use core_bus::events::{BusEvent, Interested};
use core_bus::history::Since;
use core_bus::{Bus, ClusterDelivery, Credit, Envelope, Pattern, Position};
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder {
    forwarded: Mutex<Vec<Arc<Envelope>>>,
    /// Who serves the anycast groups of each forwarded envelope.
    groups: Mutex<Vec<Groups>>,
    interest: Mutex<Vec<BusEvent>>,
    owns_groups: bool,
    /// `None`: the bus numbers history topics itself.
    sequencing: Mutex<Option<Sequencing>>,
}

struct Shared(Arc<Recorder>);

impl ClusterBackend for Shared {
    fn forward(&self, envelope: &Arc<Envelope>, groups: Groups) {
        self.0.forwarded.lock().push(envelope.clone());
        self.0.groups.lock().push(groups);
    }
    fn interest(&self, event: &BusEvent) {
        self.0.interest.lock().push(event.clone());
    }
    fn owns_groups(&self) -> bool {
        self.0.owns_groups
    }
    fn state(&self) -> ClusterState {
        ClusterState::Connected {
            detail: "test".into(),
        }
    }
    fn sequencing(&self, _topic: &core_bus::Topic) -> Sequencing {
        self.0.sequencing.lock().unwrap_or(Sequencing::Local)
    }
}

#[test]
fn local_publishes_and_interest_reach_the_backend_and_remote_ones_are_not_forwarded_back() {
    let bus = bus();
    let recorder = Arc::new(Recorder::default());
    bus.set_cluster(Box::new(Shared(recorder.clone())));
    let mut m = subscriber(&bus, "t.*");
    assert_eq!(recorder.interest.lock().len(), 1);
    bus.publish(envelope("t.local", "l"));
    bus.publish_from_cluster(envelope("t.remote", "r"), &ClusterDelivery::Fanout);
    assert_eq!(payloads(&drain(&mut m)), ["l", "r"]);
    let forwarded = recorder.forwarded.lock();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].topic.as_str(), "t.local");
    assert_eq!(
        *recorder.groups.lock(),
        [Groups::Served],
        "a backend that does not own groups leaves them to the publishing node"
    );
}

#[test]
fn a_bus_keeps_the_first_backend_attached() {
    let bus = bus();
    let first = Arc::new(Recorder::default());
    let second = Arc::new(Recorder::default());
    bus.set_cluster(Box::new(Shared(first.clone())));
    bus.set_cluster(Box::new(Shared(second.clone())));
    bus.publish(envelope("t.local", "l"));
    assert_eq!(first.forwarded.lock().len(), 1);
    assert!(second.forwarded.lock().is_empty());
}

#[test]
fn a_backend_that_owns_groups_takes_group_delivery_away_from_the_publishing_node() {
    let bus = bus();
    let recorder = Arc::new(Recorder {
        owns_groups: true,
        ..Recorder::default()
    });
    bus.set_cluster(Box::new(Shared(recorder.clone())));
    let mut member = bus.mailbox(origin());
    member
        .join_group(&topic("q"), Credit::AutoAck, GroupPolicy::QUEUE)
        .unwrap();
    let mut fan = subscriber(&bus, "q");
    bus.publish(envelope("q", "1"));
    assert!(
        drain(&mut member).is_empty(),
        "group delivery is the backend's job"
    );
    assert_eq!(*recorder.groups.lock(), [Groups::Cluster]);
    assert_eq!(payloads(&drain(&mut fan)), ["1"]);
    bus.publish_from_cluster(envelope("q", "2"), &ClusterDelivery::Group);
    assert_eq!(payloads(&drain(&mut member)), ["2"]);
    assert!(
        drain(&mut fan).is_empty(),
        "a group delivery from the cluster is not fanned out again"
    );
    assert_eq!(
        bus.cluster_state(),
        ClusterState::Connected {
            detail: "test".into()
        }
    );
}

#[test]
fn a_backend_that_owns_groups_delivers_each_named_group_on_its_own() {
    let bus = bus();
    let recorder = Arc::new(Recorder {
        owns_groups: true,
        ..Recorder::default()
    });
    bus.set_cluster(Box::new(Shared(recorder.clone())));
    let wild = pattern("q.*");
    let join = |name: &str, pattern: &Pattern| {
        let mut member = bus.mailbox(origin());
        member
            .join_shared(name, pattern, Credit::AutoAck, GroupPolicy::QUEUE)
            .unwrap();
        member
    };
    let (mut g, mut h) = (join("g", &wild), join("h", &wild));
    let mut fan = bus.mailbox(origin());
    fan.subscribe(wild.clone()).unwrap();
    assert_eq!(
        recorder.interest.lock()[..2],
        [
            BusEvent::Subscribed {
                pattern: wild.clone(),
                by: Interested::Shared { name: "g".into() }
            },
            BusEvent::Subscribed {
                pattern: wild.clone(),
                by: Interested::Shared { name: "h".into() }
            },
        ],
        "each named group is announced with its name"
    );
    bus.publish(envelope("q.a", "1"));
    assert!(drain(&mut g).is_empty() && drain(&mut h).is_empty());
    assert_eq!(payloads(&drain(&mut fan)), ["1"]);
    let to_g = ClusterDelivery::Shared {
        name: "g".into(),
        pattern: wild.clone(),
    };
    bus.publish_from_cluster(envelope("q.a", "2"), &to_g);
    bus.publish_from_cluster(envelope("elsewhere", "3"), &to_g);
    bus.publish_from_cluster(envelope("q.b", "4"), &ClusterDelivery::Fanout);
    assert_eq!(payloads(&drain(&mut g)), ["2"]);
    assert!(drain(&mut h).is_empty(), "another name is another group");
    assert_eq!(payloads(&drain(&mut fan)), ["4"]);
    drop(g);
    assert_eq!(
        recorder.interest.lock().last(),
        Some(&BusEvent::Unsubscribed {
            pattern: wild,
            by: Interested::Shared { name: "g".into() }
        }),
        "the group's end is announced"
    );
}

fn sequencing_backend(bus: &Bus, sequencing: Sequencing) -> Arc<Recorder> {
    let recorder = Arc::new(Recorder {
        owns_groups: true,
        sequencing: Mutex::new(Some(sequencing)),
        ..Recorder::default()
    });
    bus.set_cluster(Box::new(Shared(recorder.clone())));
    recorder
}

fn at(epoch: u64, offset: u64, payload: &str) -> Envelope {
    let mut env = envelope("h.x", payload);
    env.position = Some(Position { epoch, offset });
    env
}

fn offsets(deliveries: &[core_bus::Delivery]) -> Vec<u64> {
    deliveries
        .iter()
        .map(|d| d.envelope.position.unwrap().offset)
        .collect()
}

#[test]
fn a_sequencing_backend_numbers_history_topics_and_the_bus_delivers_what_comes_back() {
    let bus = history_bus(100, 1 << 20);
    let recorder = sequencing_backend(&bus, Sequencing::Cluster { epoch: 9 });
    let mut m = bus.mailbox(origin());
    m.subscribe(pattern("h.x")).unwrap();
    m.subscribe(pattern("plain")).unwrap();

    let outcome = bus.publish(envelope("h.x", "a"));
    assert_eq!(outcome.position, None, "the log has not numbered it yet");
    assert!(drain(&mut m).is_empty(), "delivered only once sequenced");
    assert_eq!(
        bus.history_top(&topic("h.x")),
        Some(Position {
            epoch: 9,
            offset: 0
        }),
        "the log's epoch is known before its first message is back"
    );
    assert_eq!(recorder.forwarded.lock().len(), 1);
    bus.publish(envelope("plain", "p"));
    assert_eq!(
        payloads(&drain(&mut m)),
        ["p"],
        "topics without history are untouched"
    );

    // Offsets from the log: increasing, not dense for this topic; a repeat is not delivered twice.
    for (offset, payload) in [(3, "a"), (7, "b"), (7, "b-again"), (5, "old"), (12, "c")] {
        bus.publish_sequenced(at(9, offset, payload), 0);
    }
    let got = drain(&mut m);
    assert_eq!(payloads(&got), ["a", "b", "c"]);
    assert_eq!(offsets(&got), [3, 7, 12]);
    assert_eq!(
        bus.history_top(&topic("h.x")),
        Some(Position {
            epoch: 9,
            offset: 12
        })
    );

    let mut late = bus.mailbox(origin());
    let (_, recovery) = late
        .subscribe_with_history(
            &topic("h.x"),
            Since::After(Position {
                epoch: 9,
                offset: 3,
            }),
        )
        .unwrap();
    let recovery = recovery.unwrap();
    assert!(recovery.complete);
    assert_eq!(
        recovery
            .messages
            .iter()
            .map(|e| e.position.unwrap().offset)
            .collect::<Vec<_>>(),
        [7, 12]
    );
    let (_, from_start) = late
        .subscribe_with_history(&topic("h.y"), Since::Beginning)
        .unwrap();
    assert!(from_start.unwrap().complete);
}

#[test]
fn sparse_offsets_judge_completeness_by_what_was_evicted_and_by_the_floor() {
    let bus = history_bus(2, 1 << 20);
    sequencing_backend(&bus, Sequencing::Cluster { epoch: 1 });
    // The node started reading the log at offset 5: anything of this topic up to 4 may be gone.
    for offset in [6, 10, 15] {
        bus.publish_sequenced(at(1, offset, &offset.to_string()), 4);
    }
    let mut m = bus.mailbox(origin());
    let recover = |m: &mut core_bus::Mailbox, offset| {
        m.subscribe_with_history(&topic("h.x"), Since::After(Position { epoch: 1, offset }))
            .unwrap()
            .1
            .unwrap()
    };
    // 6 was evicted by the count bound (2 kept).
    let gone = recover(&mut m, 4);
    assert!(!gone.complete);
    let after_evicted = recover(&mut m, 6);
    assert!(after_evicted.complete);
    assert_eq!(payloads_of(&after_evicted.messages), ["10", "15"]);
    assert!(
        !m.subscribe_with_history(&topic("h.x"), Since::Beginning)
            .unwrap()
            .1
            .unwrap()
            .complete
    );

    let fresh = history_bus(10, 1 << 20);
    let log = sequencing_backend(&fresh, Sequencing::Cluster { epoch: 1 });
    fresh.publish_sequenced(at(1, 20, "x"), 4);
    let mut n = fresh.mailbox(origin());
    assert!(!recover(&mut n, 3).complete, "below the floor");
    assert!(recover(&mut n, 4).complete);

    // The log was recreated: a new epoch starts an empty history.
    *log.sequencing.lock() = Some(Sequencing::Cluster { epoch: 2 });
    fresh.publish_sequenced(at(2, 1, "new"), 0);
    let renewed = n
        .subscribe_with_history(&topic("h.x"), Since::Beginning)
        .unwrap()
        .1
        .unwrap();
    assert!(renewed.complete);
    assert_eq!(payloads_of(&renewed.messages), ["new"]);
}

fn payloads_of(envelopes: &[Arc<Envelope>]) -> Vec<String> {
    envelopes
        .iter()
        .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
        .collect()
}

#[test]
fn while_the_log_is_unavailable_history_topics_are_delivered_locally_without_positions() {
    let bus = history_bus(10, 1 << 20);
    let recorder = sequencing_backend(&bus, Sequencing::Unavailable);
    let mut m = subscriber(&bus, "h.x");
    let outcome = bus.publish(envelope("h.x", "local"));
    assert_eq!(outcome.position, None);
    let got = drain(&mut m);
    assert_eq!(payloads(&got), ["local"]);
    assert_eq!(got[0].envelope.position, None);
    let (_, recovery) = m
        .subscribe_with_history(&topic("h.x"), Since::Beginning)
        .unwrap();
    assert!(recovery.unwrap().messages.is_empty(), "not recorded");
    assert_eq!(recorder.forwarded.lock().len(), 1);
}
