use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use core_bus::config::BusConfig;
use core_bus::{Bus, Closed, ConnectionId, Delivery, Origin, Protocol};
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

/// A session of `connection` that sent a CONNECT of protocol `level` for client `id`, its answer taken.
fn connected(shared: &Shared, connection: u64, level: u8, id: &str) -> Session {
    let mut session = session(shared, connection);
    feed(&mut session, connect(level, id));
    session
}

/// Takes what the session's mailbox holds, 10 deliveries at most: what `try_recv_batch` said, and the batch.
fn take_deliveries(session: &mut Session) -> (Result<usize, Closed>, Vec<Delivery>) {
    let mut batch = Vec::new();
    let taken = session
        .mailbox_mut()
        .unwrap()
        .try_recv_batch(&mut batch, 10);
    (taken, batch)
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
    let flow = session.handle_input(&mut buf);
    let out = session.poll_transmit().split().to_vec();
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
    let mut subscriber = connected(&shared, 1, 4, "sub");
    let (_, suback) = feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x03a/+\x00"));
    assert_eq!(suback, vec![0x90, 3, 0, 5, 0]);

    let mut publisher = connected(&shared, 2, 4, "pub");
    let (_, puback) = feed(&mut publisher, packet(0x32, b"\x00\x03a/b\x00\x07hi"));
    assert_eq!(puback, vec![0x40, 2, 0, 7]);

    let (taken, batch) = take_deliveries(&mut subscriber);
    assert_eq!(taken, Ok(1));
    for delivery in batch {
        subscriber.handle_deliveries([delivery]);
    }
    // QoS 0 (first byte 0x30, no packet id): topic a/b, payload hi.
    assert_eq!(&subscriber.poll_transmit()[..], b"\x30\x07\x00\x03a/bhi");
}

#[test]
fn a_qos_2_resend_before_pubrel_is_not_published_twice() {
    let shared = shared();
    let mut subscriber = connected(&shared, 1, 4, "sub");
    feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x01q\x02"));
    let mut publisher = connected(&shared, 2, 4, "pub");
    let publish = packet(0x34, b"\x00\x01q\x00\x09x");
    let (_, pubrec) = feed(&mut publisher, publish.clone());
    assert_eq!(pubrec, vec![0x50, 2, 0, 9]);
    let (_, pubrec) = feed(&mut publisher, publish);
    assert_eq!(pubrec, vec![0x50, 2, 0, 9]);
    let (_, pubcomp) = feed(&mut publisher, packet(0x62, b"\x00\x09"));
    assert_eq!(pubcomp, vec![0x70, 2, 0, 9]);
    let (taken, _) = take_deliveries(&mut subscriber);
    assert_eq!(taken, Ok(1));
}

#[test]
fn the_in_flight_window_bounds_what_is_sent() {
    let shared = shared();
    let mut subscriber = connected(&shared, 1, 4, "sub");
    feed(&mut subscriber, packet(0x82, b"\x00\x05\x00\x01w\x01"));
    let mut publisher = connected(&shared, 2, 4, "pub");
    for pkid in 1..=3u8 {
        feed(&mut publisher, packet(0x32, &[0, 1, b'w', 0, pkid, b'x']));
    }
    let (taken, batch) = take_deliveries(&mut subscriber);
    assert_eq!(taken, Ok(3));
    for delivery in batch {
        subscriber.handle_deliveries([delivery]);
    }
    // receive_maximum = 2: two publishes sent, the third waits.
    let out = subscriber.poll_transmit().split();
    assert_eq!(out.iter().filter(|&&b| b == 0x32).count(), 2);
    assert!(!subscriber.wants_deliveries());
    let (_, out) = feed(&mut subscriber, packet(0x40, b"\x00\x01"));
    assert_eq!(&out[..2], &[0x32, 6]);
}

/// A 5.0 CONNECT with `properties` (encoded, under 128 bytes).
fn connect_with(id: &str, properties: &[u8]) -> BytesMut {
    let mut body = b"\x00\x04MQTT\x05\x02\x00\x1e".to_vec();
    body.push(properties.len() as u8);
    body.extend_from_slice(properties);
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    packet(0x10, &body)
}

/// Request Problem Information (0x17) 0.
const NO_PROBLEM_INFORMATION: &[u8] = b"\x17\x00";

fn read_v5(out: &[u8]) -> mqttbytes::v5::Packet {
    mqttbytes::v5::read(&mut BytesMut::from(out), 1 << 20).expect("mqttbytes reads it")
}

#[test]
fn a_pubrel_for_nothing_is_answered_packet_identifier_not_found_in_5_0() {
    let shared = shared();
    let mut s = connected(&shared, 1, 5, "c");
    let (flow, out) = feed(&mut s, packet(0x62, b"\x00\x07"));
    assert_eq!(flow, Flow::Continue);
    match read_v5(&out) {
        mqttbytes::v5::Packet::PubComp(comp) => {
            assert_eq!((comp.pkid, comp.reason as u8), (7, 0x92));
            assert_eq!(
                comp.properties.and_then(|p| p.reason_string).as_deref(),
                Some("no QoS 2 publish with packet identifier 7 awaits release")
            );
        }
        other => panic!("{other:?}"),
    }
    // 3.1.1: PUBCOMP has no reason code.
    let mut v4 = connected(&shared, 2, 4, "d");
    let (_, out) = feed(&mut v4, packet(0x62, b"\x00\x07"));
    assert_eq!(out, vec![0x70, 2, 0, 7]);
}

#[test]
fn request_problem_information_0_keeps_reason_strings_to_connack_and_disconnect() {
    let shared = shared();
    let mut s = session(&shared, 1);
    let (_, connack) = feed(&mut s, connect_with("rpi", NO_PROBLEM_INFORMATION));
    assert_eq!(connack[3], 0, "accepted");
    let (_, pubcomp) = feed(&mut s, packet(0x62, b"\x00\x07"));
    assert_eq!(
        pubcomp,
        vec![0x70, 3, 0, 7, reason::PACKET_IDENTIFIER_NOT_FOUND]
    );
    // An invalid filter: SUBACK 0x8F, without its reason string.
    let (_, suback) = feed(&mut s, packet(0x82, b"\x00\x05\x00\x00\x05a/#/b\x00"));
    assert_eq!(suback, vec![0x90, 4, 0, 5, 0, reason::TOPIC_FILTER_INVALID]);
    // DISCONNECT keeps it (§3.1.2.11.7).
    let (_, disconnect) = feed(&mut s, connect(5, "rpi"));
    match read_v5(&disconnect) {
        mqttbytes::v5::Packet::Disconnect(disconnect) => assert_eq!(
            disconnect
                .properties
                .and_then(|p| p.reason_string)
                .as_deref(),
            Some("second CONNECT")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_filter_is_named_in_the_subacks_reason_string() {
    let shared = shared();
    let mut s = connected(&shared, 1, 5, "sub");
    let (_, suback) = feed(
        &mut s,
        packet(0x82, b"\x00\x05\x00\x00\x03a/b\x01\x00\x05a/#/b\x00"),
    );
    match read_v5(&suback) {
        mqttbytes::v5::Packet::SubAck(ack) => {
            assert_eq!(ack.return_codes.len(), 2);
            assert_eq!(
                ack.properties.and_then(|p| p.reason_string).as_deref(),
                Some("topic filter invalid: a/#/b")
            );
        }
        other => panic!("{other:?}"),
    }
    // Every filter granted: the SUBACK has no reason string.
    let (_, suback) = feed(&mut s, packet(0x82, b"\x00\x06\x00\x00\x01c\x00"));
    assert_eq!(suback, vec![0x90, 4, 0, 6, 0, 0]);
}

#[test]
fn reason_strings_stay_within_the_clients_maximum_packet_size() {
    let shared = shared();
    // Maximum Packet Size (0x27) 6: a PUBCOMP with a reason string or a DISCONNECT with one would be larger.
    let small = b"\x27\x00\x00\x00\x06";
    let mut s = session(&shared, 1);
    feed(&mut s, connect_with("small", small));
    let (_, pubcomp) = feed(&mut s, packet(0x62, b"\x00\x07"));
    assert_eq!(
        pubcomp,
        vec![0x70, 3, 0, 7, reason::PACKET_IDENTIFIER_NOT_FOUND]
    );
    let (flow, disconnect) = feed(&mut s, connect(5, "small"));
    assert_eq!(flow, Flow::Close);
    assert_eq!(disconnect, vec![0xE0, 2, reason::PROTOCOL_ERROR, 0]);
    // A CONNACK refusal too: Receive Maximum 0 is a Protocol Error, and the CONNACK is bounded by the CONNECT's
    // own Maximum Packet Size.
    let mut refused = session(&shared, 2);
    let (flow, connack) = feed(
        &mut refused,
        connect_with("r", b"\x21\x00\x00\x27\x00\x00\x00\x06"),
    );
    assert_eq!(flow, Flow::Close);
    assert_eq!(connack, vec![0x20, 3, 0, reason::PROTOCOL_ERROR, 0]);
    let mut told = session(&shared, 3);
    let (_, connack) = feed(&mut told, connect_with("r", b"\x21\x00\x00"));
    match read_v5(&connack) {
        mqttbytes::v5::Packet::ConnAck(connack) => assert_eq!(
            connack.properties.and_then(|p| p.reason_string).as_deref(),
            Some("receive maximum 0")
        ),
        other => panic!("{other:?}"),
    }
}
