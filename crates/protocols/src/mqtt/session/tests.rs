use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use core_bus::config::BusConfig;
use core_bus::{Bus, ConnectionId, Origin, Protocol};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::Authenticator;
use crate::mqtt::retained::Retained;
use crate::mqtt::store::SessionStore;

fn shared() -> Shared {
    Shared {
        bus: Bus::new(BusConfig::default()),
        retained: Retained::new(100, 1 << 20),
        sessions: SessionStore::new(100),
    }
}

fn session(shared: &Shared, connection: u64) -> Session {
    let settings = Settings {
        auth: Authenticator::open(),
        max_packet_size: 1024,
        receive_maximum: 2,
        topic_alias_maximum: 4,
        max_keep_alive_secs: 60,
        max_session_expiry_secs: 60,
        max_subscriptions: 8,
    };
    let origin = Origin {
        protocol: Protocol::Mqtt,
        connection: ConnectionId(connection),
    };
    Session::new(
        Arc::new(settings),
        shared.clone(),
        origin,
        CancellationToken::new(),
    )
}

fn packet(first: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(first);
    out.put_u8(body.len() as u8);
    out.put_slice(body);
    out
}

fn connect(level: u8, id: &str) -> BytesMut {
    let mut body = b"\x00\x04MQTT".to_vec();
    body.extend_from_slice(&[level, 0x02, 0, 30]);
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    packet(0x10, &body)
}

/// Feeds `bytes` and returns the flow and what the session wrote.
fn feed(session: &mut Session, bytes: BytesMut) -> (Flow, Vec<u8>) {
    let mut buf = bytes;
    let flow = session.receive(&mut buf);
    let out = session.output().split().to_vec();
    (flow, out)
}

#[test]
fn only_connect_opens_a_session() {
    let shared = shared();
    let mut s = session(&shared, 1);
    let (flow, out) = feed(&mut s, packet(0x30, b"\x00\x01a"));
    assert_eq!(flow, Flow::Close);
    assert!(out.is_empty());
    assert!(!s.is_connected());
}

#[test]
fn connack_in_each_level_and_a_second_connect_is_refused() {
    let shared = shared();
    let mut v4 = session(&shared, 1);
    let (flow, out) = feed(&mut v4, connect(4, "a"));
    assert_eq!((flow, out), (Flow::Continue, vec![0x20, 2, 0, 0]));
    let (flow, out) = feed(&mut v4, connect(4, "a"));
    // 3.1.1: closed without a DISCONNECT.
    assert_eq!((flow, out), (Flow::Close, vec![]));

    let mut v5 = session(&shared, 2);
    let (flow, out) = feed(&mut v5, connect(5, "b"));
    assert_eq!(flow, Flow::Continue);
    assert_eq!(&out[..1], &[0x20]);
    assert_eq!(out[3], 0, "success");
    let (flow, out) = feed(&mut v5, connect(5, "b"));
    assert_eq!(flow, Flow::Close);
    assert_eq!(&out[..3], &[0xE0, out[1], reason::PROTOCOL_ERROR]);
}

#[test]
fn qos_1_publish_reaches_a_qos_0_subscriber_at_qos_0_and_is_acknowledged() {
    let shared = shared();
    let mut subscriber = session(&shared, 1);
    feed(&mut subscriber, connect(4, "sub"));
    let (_, suback) = feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x03a/+\x00"));
    assert_eq!(suback, vec![0x90, 3, 0, 5, 0]);

    let mut publisher = session(&shared, 2);
    feed(&mut publisher, connect(4, "pub"));
    let (_, puback) = feed(&mut publisher, packet(0x32, b"\x00\x03a/b\x00\x07hi"));
    assert_eq!(puback, vec![0x40, 2, 0, 7]);

    let mut batch = Vec::new();
    let taken = subscriber
        .mailbox_mut()
        .unwrap()
        .try_recv_batch(&mut batch, 10);
    assert_eq!(taken, Ok(1));
    for delivery in batch {
        subscriber.deliver([delivery]);
    }
    // QoS 0 (first byte 0x30, no packet id): topic a/b, payload hi.
    assert_eq!(&subscriber.output()[..], b"\x30\x07\x00\x03a/bhi");
}

#[test]
fn a_qos_2_resend_before_pubrel_is_not_published_twice() {
    let shared = shared();
    let mut subscriber = session(&shared, 1);
    feed(&mut subscriber, connect(4, "sub"));
    feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x01q\x02"));
    let mut publisher = session(&shared, 2);
    feed(&mut publisher, connect(4, "pub"));
    let publish = packet(0x34, b"\x00\x01q\x00\x09x");
    let (_, pubrec) = feed(&mut publisher, publish.clone());
    assert_eq!(pubrec, vec![0x50, 2, 0, 9]);
    let (_, pubrec) = feed(&mut publisher, publish);
    assert_eq!(pubrec, vec![0x50, 2, 0, 9]);
    let (_, pubcomp) = feed(&mut publisher, packet(0x62, b"\x00\x09"));
    assert_eq!(pubcomp, vec![0x70, 2, 0, 9]);
    let mut batch = Vec::new();
    let taken = subscriber
        .mailbox_mut()
        .unwrap()
        .try_recv_batch(&mut batch, 10);
    assert_eq!(taken, Ok(1));
}

#[test]
fn the_in_flight_window_bounds_what_is_sent() {
    let shared = shared();
    let mut subscriber = session(&shared, 1);
    feed(&mut subscriber, connect(4, "sub"));
    feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x01w\x01"));
    let mut publisher = session(&shared, 2);
    feed(&mut publisher, connect(4, "pub"));
    for pkid in 1..=3u8 {
        feed(&mut publisher, packet(0x32, &[0, 1, b'w', 0, pkid, b'x']));
    }
    let mut batch = Vec::new();
    let taken = subscriber
        .mailbox_mut()
        .unwrap()
        .try_recv_batch(&mut batch, 10);
    assert_eq!(taken, Ok(3));
    for delivery in batch {
        subscriber.deliver([delivery]);
    }
    // receive_maximum = 2: two publishes sent, the third waits.
    let out = subscriber.output().split();
    assert_eq!(out.iter().filter(|&&b| b == 0x32).count(), 2);
    assert!(!subscriber.wants_deliveries());
    let (_, out) = feed(&mut subscriber, packet(0x40, b"\x00\x01"));
    assert_eq!(&out[..2], &[0x32, 6]);
}

#[test]
fn a_pubrel_for_nothing_is_answered_packet_identifier_not_found_in_5_0() {
    let shared = shared();
    let mut s = session(&shared, 1);
    feed(&mut s, connect(5, "c"));
    let (flow, out) = feed(&mut s, packet(0x62, b"\x00\x07"));
    assert_eq!(flow, Flow::Continue);
    assert_eq!(
        out,
        vec![0x70, 3, 0, 7, reason::PACKET_IDENTIFIER_NOT_FOUND]
    );
}
