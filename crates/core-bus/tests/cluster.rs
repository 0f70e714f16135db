//! How the bus hands envelopes to a cluster backend and takes them back.

mod common;

use std::sync::Arc;

use common::*;
use core_bus::cluster::{ClusterBackend, ClusterState};
use core_bus::config::GroupPolicy;
use core_bus::events::BusEvent;
use core_bus::{ClusterDelivery, Credit, Envelope, Pattern};
use parking_lot::Mutex;

#[derive(Default)]
struct Recorder {
    forwarded: Mutex<Vec<Arc<Envelope>>>,
    interest: Mutex<Vec<BusEvent>>,
    owns_groups: bool,
}

struct Shared(Arc<Recorder>);

impl ClusterBackend for Shared {
    fn forward(&self, envelope: &Arc<Envelope>) {
        self.0.forwarded.lock().push(envelope.clone());
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
}

#[test]
fn local_publishes_and_interest_reach_the_backend_and_remote_ones_are_not_forwarded_back() {
    let bus = bus();
    let recorder = Arc::new(Recorder::default());
    bus.set_cluster(Box::new(Shared(recorder.clone())));
    let mut m = bus.mailbox(origin());
    m.subscribe(Pattern::parse("t.*").unwrap()).unwrap();
    assert_eq!(recorder.interest.lock().len(), 1);
    bus.publish(envelope("t.local", "l"));
    bus.publish_from_cluster(envelope("t.remote", "r"), ClusterDelivery::Fanout);
    assert_eq!(payloads(&drain(&mut m)), ["l", "r"]);
    let forwarded = recorder.forwarded.lock();
    assert_eq!(forwarded.len(), 1);
    assert_eq!(forwarded[0].topic.as_str(), "t.local");
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
    let mut fan = bus.mailbox(origin());
    fan.subscribe(Pattern::parse("q").unwrap()).unwrap();
    bus.publish(envelope("q", "1"));
    assert!(
        drain(&mut member).is_empty(),
        "group delivery is the backend's job"
    );
    assert_eq!(payloads(&drain(&mut fan)), ["1"]);
    bus.publish_from_cluster(envelope("q", "2"), ClusterDelivery::Group);
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
