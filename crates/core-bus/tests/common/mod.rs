//! Helpers shared by the bus integration tests.
#![allow(dead_code)]

use core_bus::config::{BusConfig, HistoryPolicy, HistoryRule};
use core_bus::{Bus, ConnectionId, Delivery, Envelope, Mailbox, Origin, Pattern, Protocol, Topic};

pub fn origin() -> Origin {
    Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId::next(),
    }
}

pub fn topic(text: &str) -> Topic {
    Topic::parse(text).expect("valid topic")
}

pub fn envelope(topic_text: &str, payload: &str) -> Envelope {
    Envelope::new(topic(topic_text), payload.to_owned(), origin())
}

pub fn keyed(topic_text: &str, payload: &str, key: &str) -> Envelope {
    let mut env = envelope(topic_text, payload);
    env.key = Some(key.to_owned().into());
    env
}

/// Everything ready in the mailbox right now.
pub fn drain(mailbox: &mut Mailbox) -> Vec<Delivery> {
    let mut out = Vec::new();
    while mailbox
        .try_recv_batch(&mut out, 1024)
        .expect("mailbox open")
        > 0
    {}
    out
}

pub fn payloads(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| String::from_utf8_lossy(&d.envelope.payload).into_owned())
        .collect()
}

pub fn bus() -> Bus {
    Bus::new(Default::default())
}

/// A bus whose publishers never stall: a full queue gets its slow-consumer policy at once.
pub fn unstalled_bus() -> Bus {
    Bus::new(core_bus::config::BusConfig {
        max_publisher_stall: std::time::Duration::ZERO,
        ..Default::default()
    })
}

pub fn pattern(text: &str) -> Pattern {
    Pattern::parse(text).expect("valid pattern")
}

/// A mailbox on `bus` subscribed to `filter`.
pub fn subscriber(bus: &Bus, filter: &str) -> Mailbox {
    let mut mailbox = bus.mailbox(origin());
    mailbox.subscribe(pattern(filter)).expect("subscribed");
    mailbox
}

/// A bus that keeps the history of `h.#`, up to `max_messages` and `max_bytes` a topic.
pub fn history_bus(max_messages: usize, max_bytes: usize) -> Bus {
    Bus::new(BusConfig {
        history: vec![HistoryRule {
            topics: pattern("h.#"),
            policy: HistoryPolicy {
                max_messages,
                max_bytes,
                ttl: std::time::Duration::ZERO,
            },
        }],
        ..BusConfig::default()
    })
}
