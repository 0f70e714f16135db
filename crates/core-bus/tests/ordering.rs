//! Subscribe/unsubscribe ordering under concurrent publishers, and dense offsets for history topics.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use core_bus::history::Since;
use core_bus::Bus;

type Published = Arc<parking_lot::Mutex<HashSet<u64>>>;

/// Two publishers numbering their messages; `published` holds the numbers whose publish call has returned. They
/// take numbers only below `limit`, so the test decides how many messages each phase produces and a subscriber
/// queue never fills up however the threads are scheduled.
fn spawn_publishers(
    bus: &Bus,
    stop: &Arc<AtomicBool>,
    counter: &Arc<AtomicU64>,
    limit: &Arc<AtomicU64>,
    published: &Published,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let (bus, stop, counter, limit, published) = (
                bus.clone(),
                stop.clone(),
                counter.clone(),
                limit.clone(),
                published.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if counter.load(Ordering::SeqCst) >= limit.load(Ordering::SeqCst) {
                        std::thread::yield_now();
                        continue;
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    bus.publish(envelope("t", &n.to_string()));
                    published.lock().insert(n);
                }
            })
        })
        .collect()
}

#[test]
fn subscribe_and_unsubscribe_take_effect_when_they_return() {
    let bus = bus();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(AtomicU64::new(0));
    let published = Published::default();
    let publishers = spawn_publishers(&bus, &stop, &counter, &limit, &published);
    // Lets the publishers take `n` more numbers and waits until they have.
    let publish_more = |n: u64| {
        let target = counter.load(Ordering::SeqCst) + n;
        limit.store(target, Ordering::SeqCst);
        while counter.load(Ordering::SeqCst) < target {
            std::thread::yield_now();
        }
    };
    // Publishers keep going while (un)subscribe runs, with a bounded number of messages in flight.
    let run_during = || limit.store(counter.load(Ordering::SeqCst) + 100, Ordering::SeqCst);
    for _ in 0..50 {
        run_during();
        let mut m = bus.mailbox(origin());
        let id = m.subscribe(pattern("t")).unwrap();
        // Numbers taken after subscribe returned are published after it returned: all must arrive.
        let subscribed_at = counter.load(Ordering::SeqCst);
        publish_more(200);
        let done: Vec<u64> = published
            .lock()
            .iter()
            .copied()
            .filter(|&n| n >= subscribed_at)
            .collect();
        let received: HashSet<u64> = payloads(&drain(&mut m))
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let missing = done.iter().filter(|n| !received.contains(n)).count();
        assert_eq!(
            missing, 0,
            "messages published after subscribe returned were lost"
        );
        run_during();
        m.unsubscribe(id);
        let unsubscribed_at = counter.load(Ordering::SeqCst);
        publish_more(200);
        let late: Vec<u64> = payloads(&drain(&mut m))
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        assert!(
            late.iter().all(|&n| n < unsubscribed_at),
            "a message published after unsubscribe arrived"
        );
    }
    stop.store(true, Ordering::Relaxed);
    publishers.into_iter().for_each(|p| p.join().unwrap());
}

#[test]
fn history_offsets_are_dense_and_ordered_under_concurrent_publishers() {
    let bus = history_bus(100_000, 1 << 30);
    let mut m = subscriber(&bus, "h.x");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    bus.publish(envelope("h.x", &i.to_string()));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let offsets: Vec<u64> = drain(&mut m)
        .iter()
        .map(|d| d.envelope.position.unwrap().offset)
        .collect();
    assert_eq!(offsets, (1..=2000).collect::<Vec<_>>());
    assert_eq!(bus.history_top(&topic("h.x")).unwrap().offset, 2000);
}

#[test]
fn recovery_returns_what_was_missed_without_gaps() {
    let bus = history_bus(3, 1 << 20);
    let first = bus.publish(envelope("h.x", "1")).position.unwrap();
    bus.publish(envelope("h.x", "2"));
    bus.publish(envelope("h.x", "3"));
    let mut m = bus.mailbox(origin());
    let (_, recovery) = m
        .subscribe_with_history(&topic("h.x"), Since::After(first))
        .unwrap();
    let recovery = recovery.unwrap();
    assert!(recovery.complete);
    assert_eq!(recovery.messages.len(), 2);
    bus.publish(envelope("h.x", "4"));
    bus.publish(envelope("h.x", "5"));
    let mut late = bus.mailbox(origin());
    let (_, gone) = late
        .subscribe_with_history(&topic("h.x"), Since::After(first))
        .unwrap();
    let gone = gone.unwrap();
    assert!(!gone.complete, "offset 2 was evicted by the bound of 3");
    assert_eq!(gone.messages.len(), 3);
    assert_eq!(payloads(&drain(&mut m)), ["4", "5"]);
}
