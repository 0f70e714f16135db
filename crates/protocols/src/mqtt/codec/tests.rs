use bytes::{BufMut, BytesMut};
use mqttbytes::v5::{ConnAck, ConnectReturnCode, Publish};
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
    let mut qos3 = packet(0x36, b"\x00\x01a\x00\x01");
    assert!(decode(&mut qos3, Some(Version::V311), 1024).is_err());
    let mut bad_subscribe_flags = packet(0x80, b"\x00\x01\x00\x01a\x00");
    assert!(decode(&mut bad_subscribe_flags, Some(Version::V311), 1024).is_err());
    let mut level3 = packet(0x10, b"\x00\x06MQIsdp\x03\x02\x00\x1e\x00\x01x");
    assert_eq!(
        decode(&mut level3, None, 1024),
        Err(DecodeError::ProtocolLevel(3))
    );
}

#[test]
fn short_disconnects_and_auth_in_5_0() {
    let mut empty = packet(0xE0, b"");
    assert_eq!(
        decode(&mut empty, Some(Version::V5), 1024),
        Ok(Some(Inbound::Disconnect {
            reason: 0,
            session_expiry: None
        }))
    );
    let mut with_will = packet(0xE0, b"\x04");
    assert_eq!(
        decode(&mut with_will, Some(Version::V5), 1024),
        Ok(Some(Inbound::Disconnect {
            reason: 4,
            session_expiry: None
        }))
    );
    let mut auth = packet(0xF0, b"\x00\x00");
    assert_eq!(
        decode(&mut auth, Some(Version::V5), 1024),
        Ok(Some(Inbound::Auth))
    );
    let mut v311 = packet(0xE0, b"");
    assert!(matches!(
        decode(&mut v311, Some(Version::V311), 1024),
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

#[test]
fn acks_and_refusals_in_each_level() {
    let mut out = BytesMut::new();
    encode(
        &Outbound::SubAck {
            pkid: 1,
            reasons: vec![1, reason::NOT_AUTHORIZED],
        },
        Version::V311,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..], &[0x90, 4, 0, 1, 1, 0x80]);
    out.clear();
    encode(
        &Outbound::SubAck {
            pkid: 1,
            reasons: vec![1, reason::NOT_AUTHORIZED],
        },
        Version::V5,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..], &[0x90, 5, 0, 1, 0, 1, 0x87]);
    out.clear();
    let refusal = ConnAck::new(ConnectReturnCode::BadUserNamePassword, false);
    encode(
        &Outbound::ConnAck(Box::new(refusal)),
        Version::V311,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..], &[0x20, 2, 0, 4]);
    out.clear();
    encode(
        &Outbound::Disconnect {
            reason: reason::PACKET_TOO_LARGE,
            reason_string: None,
        },
        Version::V311,
        &mut out,
    )
    .unwrap();
    assert!(out.is_empty(), "3.1.1 has no server DISCONNECT");
    encode(
        &Outbound::PubAck {
            pkid: 3,
            reason: reason::NOT_AUTHORIZED,
        },
        Version::V5,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[..], &[0x40, 3, 0, 3, 0x87]);
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
