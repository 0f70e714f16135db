use bytes::{BufMut, BytesMut};
use mqttbytes::v5::{self, ConnAck, ConnectReturnCode, Publish};
use mqttbytes::QoS;
use proptest::prelude::*;

use super::*;

fn varint(value: usize, out: &mut BytesMut) {
    write_varint(out, value);
}

fn packet(first: u8, body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(first);
    varint(body.len(), &mut out);
    out.put_slice(body);
    out
}

fn connect(level: u8) -> BytesMut {
    let mut body = BytesMut::new();
    body.put_slice(b"\x00\x04MQTT");
    body.put_u8(level);
    body.put_u8(0x02);
    body.put_u16(30);
    if level == 5 {
        body.put_u8(0);
    }
    body.put_slice(b"\x00\x02id");
    packet(0x10, &body)
}

/// Decodes the packet of first byte `first` and `body` at `version`, 1024 bytes at most.
fn decode_one(first: u8, body: &[u8], version: Version) -> Result<Option<Inbound>, DecodeError> {
    decode(&mut packet(first, body), Some(version), 1024)
}

#[test]
fn connect_at_both_levels_and_partial_input() {
    for (level, protocol) in [(4, mqttbytes::Protocol::V4), (5, mqttbytes::Protocol::V5)] {
        let whole = connect(level);
        // Every prefix is "not yet".
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut partial, None, 1024), Ok(None), "cut {cut}");
            assert_eq!(partial.len(), cut);
        }
        let mut buf = whole.clone();
        buf.put_slice(&[0xC0]);
        match decode(&mut buf, None, 1024) {
            Ok(Some(Inbound::Connect(connect))) => {
                assert_eq!(connect.protocol, protocol);
                assert_eq!(connect.client_id, "id");
                assert_eq!(connect.keep_alive, 30);
            }
            other => panic!("{other:?}"),
        }
        // The next packet's first byte stays.
        assert_eq!(&buf[..], &[0xC0]);
    }
}

#[test]
fn refusals_carry_their_reason() {
    let mut early = packet(0x30, b"\x00\x01a");
    assert_eq!(
        decode(&mut early, None, 1024).map_err(|e| e.reason()),
        Err(reason::PROTOCOL_ERROR)
    );
    let mut big = BytesMut::new();
    big.put_u8(0x30);
    varint(5000, &mut big);
    assert_eq!(
        decode(&mut big, Some(Version::V5), 1024).map_err(|e| e.reason()),
        Err(reason::PACKET_TOO_LARGE)
    );
    let mut bad_length = BytesMut::from(&[0x30u8, 0xff, 0xff, 0xff, 0xff, 0x01][..]);
    assert_eq!(
        decode(&mut bad_length, Some(Version::V311), 1024).map_err(|e| e.reason()),
        Err(reason::MALFORMED_PACKET)
    );
    assert!(decode_one(0x36, b"\x00\x01a\x00\x01", Version::V311).is_err());
    assert!(decode_one(0x80, b"\x00\x01\x00\x01a\x00", Version::V311).is_err());
    let mut level3 = packet(0x10, b"\x00\x06MQIsdp\x03\x02\x00\x1e\x00\x01x");
    assert_eq!(
        decode(&mut level3, None, 1024),
        Err(DecodeError::ProtocolLevel(3))
    );
}

#[test]
fn short_disconnects_and_auth_in_5_0() {
    assert_eq!(
        decode_one(0xE0, b"", Version::V5),
        Ok(Some(Inbound::Disconnect {
            reason: 0,
            session_expiry: None
        }))
    );
    assert_eq!(
        decode_one(0xE0, b"\x04", Version::V5),
        Ok(Some(Inbound::Disconnect {
            reason: 4,
            session_expiry: None
        }))
    );
    assert_eq!(
        decode_one(0xF0, b"\x00\x00", Version::V5),
        Ok(Some(Inbound::Auth))
    );
    assert!(matches!(
        decode_one(0xE0, b"", Version::V311),
        Ok(Some(Inbound::Disconnect { reason: 0, .. }))
    ));
}

#[test]
fn publishes_round_trip_at_both_levels() {
    for version in [Version::V311, Version::V5] {
        let mut publish = Publish::new("a/b", QoS::ExactlyOnce, b"payload".to_vec());
        publish.pkid = 9;
        let mut out = BytesMut::new();
        encode(&Outbound::Publish(publish.clone()), version, &mut out).unwrap();
        match decode(&mut out, Some(version), 1024) {
            Ok(Some(Inbound::Publish(back))) => {
                assert_eq!(back.topic, "a/b");
                assert_eq!(back.pkid, 9);
                assert_eq!(back.qos, QoS::ExactlyOnce);
                assert_eq!(&back.payload[..], b"payload");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// What gatewayd writes for `packet` at `version`.
fn encoded(packet: &Outbound, version: Version) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    out.to_vec()
}

#[test]
fn acks_and_refusals_in_each_level() {
    let suback = Outbound::SubAck {
        pkid: 1,
        reasons: vec![1, reason::NOT_AUTHORIZED],
        reason_string: None,
    };
    assert_eq!(encoded(&suback, Version::V311), [0x90, 4, 0, 1, 1, 0x80]);
    assert_eq!(encoded(&suback, Version::V5), [0x90, 5, 0, 1, 0, 1, 0x87]);
    let refusal = ConnAck::new(ConnectReturnCode::BadUserNamePassword, false);
    let refusal = Outbound::ConnAck(Box::new(refusal));
    assert_eq!(encoded(&refusal, Version::V311), [0x20, 2, 0, 4]);
    let too_large = Outbound::Disconnect {
        reason: reason::PACKET_TOO_LARGE,
        reason_string: None,
    };
    let disconnect = encoded(&too_large, Version::V311);
    assert!(disconnect.is_empty(), "3.1.1 has no server DISCONNECT");
    let refused = Ack {
        reason_string: None,
        ..Ack::failure(3, reason::NOT_AUTHORIZED, "")
    };
    let refused = encoded(&Outbound::PubAck(refused), Version::V5);
    assert_eq!(refused, [0x40, 3, 0, 3, 0x87]);
}

/// Reads back what gatewayd wrote with mqttbytes' own 5.0 reader.
fn read_v5(packet: &Outbound, limit: usize) -> (usize, v5::Packet) {
    let mut out = BytesMut::new();
    encode_within(packet.clone(), Version::V5, limit, &mut out).unwrap();
    let len = out.len();
    let read = v5::read(&mut out, 1 << 20).expect("mqttbytes reads it");
    assert!(out.is_empty(), "one whole packet");
    (len, read)
}

#[test]
fn failure_acks_carry_a_reason_string_mqttbytes_reads() {
    let refused = Outbound::PubAck(Ack::failure(
        3,
        reason::NOT_AUTHORIZED,
        "not authorized to publish to a/b",
    ));
    match read_v5(&refused, usize::MAX) {
        (_, v5::Packet::PubAck(ack)) => {
            assert_eq!((ack.pkid, ack.reason as u8), (3, 0x87));
            let properties = ack.properties.expect("properties");
            assert_eq!(
                properties.reason_string.as_deref(),
                Some("not authorized to publish to a/b")
            );
        }
        other => panic!("{other:?}"),
    }
    // A success stays 2 bytes of body.
    match read_v5(&Outbound::PubAck(Ack::success(4)), usize::MAX) {
        (4, v5::Packet::PubAck(ack)) => assert_eq!((ack.pkid, ack.properties), (4, None)),
        other => panic!("{other:?}"),
    }
    let not_found = Outbound::PubComp(Ack::failure(
        5,
        reason::PACKET_IDENTIFIER_NOT_FOUND,
        "no such id",
    ));
    match read_v5(&not_found, usize::MAX) {
        (_, v5::Packet::PubComp(comp)) => {
            assert_eq!(comp.reason as u8, 0x92);
            assert_eq!(
                comp.properties.and_then(|p| p.reason_string).as_deref(),
                Some("no such id")
            );
        }
        other => panic!("{other:?}"),
    }
    let suback = Outbound::SubAck {
        pkid: 7,
        reasons: vec![1, reason::NOT_AUTHORIZED],
        reason_string: ReasonString::new("not authorized to subscribe to sensors/#"),
    };
    match read_v5(&suback, usize::MAX) {
        (_, v5::Packet::SubAck(ack)) => {
            assert_eq!(ack.pkid, 7);
            assert_eq!(ack.return_codes.len(), 2);
            assert_eq!(
                ack.properties.and_then(|p| p.reason_string).as_deref(),
                Some("not authorized to subscribe to sensors/#")
            );
        }
        other => panic!("{other:?}"),
    }
    // 3.1.1: never a reason string.
    assert_eq!(encoded(&suback, Version::V311), [0x90, 4, 0, 7, 1, 0x80]);
    assert_eq!(encoded(&refused, Version::V311), [0x40, 2, 0, 3]);
}

#[test]
fn a_reason_string_that_would_break_the_clients_maximum_packet_size_is_left_out() {
    let why = "quota exceeded";
    let refused = Outbound::PubRec(Ack::failure(9, reason::QUOTA_EXCEEDED, why));
    // Fixed header 2, packet id 2, reason 1, property length 1, property 3 + text.
    let whole = 2 + 2 + 1 + 1 + 3 + why.len();
    match read_v5(&refused, whole) {
        (len, v5::Packet::PubRec(rec)) => {
            assert_eq!(len, whole);
            assert!(rec.properties.is_some_and(|p| p.reason_string.is_some()));
        }
        other => panic!("{other:?}"),
    }
    match read_v5(&refused, whole - 1) {
        (len, v5::Packet::PubRec(rec)) => {
            assert_eq!((len, rec.reason as u8, rec.properties), (5, 0x97, None));
        }
        other => panic!("{other:?}"),
    }
    let disconnect = Outbound::Disconnect {
        reason: reason::KEEP_ALIVE_TIMEOUT,
        reason_string: ReasonString::new("keep alive timeout"),
    };
    let mut out = BytesMut::new();
    encode_within(disconnect, Version::V5, 10, &mut out).unwrap();
    assert_eq!(&out[..], &[0xE0, 2, 0x8D, 0]);
    // The CONNACK's reason string (written by mqttbytes) too.
    let mut connack = ConnAck::new(ConnectReturnCode::NotAuthorized, false);
    connack.properties = Some(v5::ConnAckProperties::new());
    if let Some(properties) = connack.properties.as_mut() {
        properties.reason_string = Some("credentials required".into());
    }
    let connack = Outbound::ConnAck(Box::new(connack));
    let (len, _) = read_v5(&connack, usize::MAX);
    match read_v5(&connack, len - 1) {
        (5, v5::Packet::ConnAck(back)) => {
            assert_eq!(back.properties.and_then(|p| p.reason_string), None)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reason_strings_are_whole_well_formed_mqtt_strings() {
    let cleaned = ReasonString::new("topic filter invalid: a\0b\n");
    assert_eq!(
        cleaned.as_ref().map(ReasonString::as_str),
        Some("topic filter invalid: a\u{FFFD}b\u{FFFD}")
    );
    let longest = "é".repeat(usize::from(u16::MAX) / 2);
    assert_eq!(
        ReasonString::new(longest.clone()).map(ReasonString::into_string),
        Some(longest)
    );
    // Over 65,535 bytes: left out, never cut.
    assert_eq!(ReasonString::new("é".repeat(32768)), None);
}

proptest! {
    /// Any bytes, at any level: packets, "not yet", or an error; never a panic.
    #[test]
    fn never_panics_on_arbitrary_input(bytes in proptest::collection::vec(any::<u8>(), 0..256), level in 0u8..3) {
        let version = match level {
            0 => None,
            1 => Some(Version::V311),
            _ => Some(Version::V5),
        };
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, version, 128) {}
    }

    /// Valid-looking frames with random bodies, for every packet type.
    #[test]
    fn never_panics_on_framed_garbage(first in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V311 };
        let mut buf = packet(first, &body);
        let _ = decode(&mut buf, Some(version), 1024);
        let mut buf = packet(first, &body);
        let _ = decode(&mut buf, None, 1024);
    }
}

#[test]
fn wills_in_each_level_layout() {
    // 3.1.1: will topic and message right after the client id.
    let mut v4 = packet(
        0x10,
        b"\x00\x04MQTT\x04\x0e\x00\x1e\x00\x02id\x00\x03w/t\x00\x03bye",
    );
    // 5.0: a will property list (empty) first.
    let mut v5 = packet(
        0x10,
        b"\x00\x04MQTT\x05\x0e\x00\x1e\x00\x00\x02id\x00\x00\x03w/t\x00\x03bye",
    );
    for buf in [&mut v4, &mut v5] {
        match decode(buf, None, 1024) {
            Ok(Some(Inbound::Connect(connect))) => {
                let will = connect.last_will.expect("will");
                assert_eq!(
                    (will.topic.as_str(), &will.message[..]),
                    ("w/t", &b"bye"[..])
                );
                assert_eq!(will.qos, QoS::AtLeastOnce);
            }
            other => panic!("{other:?}"),
        }
    }
}
