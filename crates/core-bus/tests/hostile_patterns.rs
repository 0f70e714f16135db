//! Patterns a hostile client would send, through the subscription index: the deepest pattern parsing allows and
//! several `#` each match a long topic in one pass (no recursion, no backtracking), and unsubscribing them
//! leaves the index as it was.

mod common;

use common::*;
use core_bus::{Topic, MAX_TOPIC_SEGMENTS};

#[test]
fn deepest_pattern_and_many_hashes_match_and_unsubscribe() {
    let bus = bus();
    let mut deep = bus.mailbox(origin());
    let mut hashes = bus.mailbox(origin());
    let deep_text = vec!["*"; MAX_TOPIC_SEGMENTS].join(".");
    let deep_id = deep.subscribe(pattern(&deep_text)).unwrap();
    let hashes_id = hashes
        .subscribe(pattern("#.a.#.a.#.a.#.a.#.a.#.b"))
        .unwrap();

    let long = Topic::parse(&vec!["a"; MAX_TOPIC_SEGMENTS].join(".")).unwrap();
    bus.publish(core_bus::Envelope::new(long.clone(), "x", origin()));
    assert_eq!(drain(&mut deep).len(), 1);
    assert_eq!(drain(&mut hashes).len(), 0);

    let ends_in_b = Topic::parse(&format!("{}.b", vec!["a"; 100].join("."))).unwrap();
    bus.publish(core_bus::Envelope::new(ends_in_b, "y", origin()));
    assert_eq!(drain(&mut deep).len(), 0);
    assert_eq!(drain(&mut hashes).len(), 1);

    assert!(deep.unsubscribe(deep_id));
    assert!(hashes.unsubscribe(hashes_id));
    bus.publish(core_bus::Envelope::new(long, "z", origin()));
    assert_eq!(drain(&mut deep).len(), 0);
    assert_eq!(drain(&mut hashes).len(), 0);
}
