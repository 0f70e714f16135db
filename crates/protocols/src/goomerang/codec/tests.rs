//! The Goomerang codec against worked byte-level examples (subscribe, publish, delivery and broadcast, sync request
//! and reply), malformed and over-limit input, round-trip properties, and prost's generated decoders (what
//! [`decode`] reads must be what they read).

use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;

use super::limits::tests::small;
use super::proto::{Frame, PublishCmd};
use super::*;

/// Hex digits to bytes; whitespace is ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn text(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The examples' `creation`: 1700000000 s + 500000000 ns.
fn ts_time() -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000, 500_000_000)
}
const TS: &str = "2a 0c 08 80 e2 cf aa 06 10 80 ca b5 ee 01";
const UUID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";

fn decode_default(bytes: &[u8]) -> Result<Command, DecodeError> {
    decode(Bytes::copy_from_slice(bytes), &Limits::default())
}

/// Asserts that `wire` decodes to `command` and that `command` encodes (at the examples' time) to `wire`.
fn assert_both_ways(wire: &[u8], command: Command) {
    assert_eq!(decode_default(wire), Ok(command.clone()));
    assert_eq!(encode_command(&command, ts_time()), wire);
}

fn headers(pairs: &[(&str, &str)]) -> FrameHeaders {
    pairs.iter().copied().collect()
}

#[test]
fn example_a_subscribe() {
    let wire = hex(&format!(
        "12 1f {} 18 06 {TS} 3a 06 0a 04 6e 65 77 73",
        text(SUBSCRIBE_CMD)
    ));
    assert_eq!(wire.len(), 57);
    let command = Command::Subscribe {
        topic: "news".into(),
    };
    assert_both_ways(&wire, command);
}

#[test]
fn example_a_unsubscribe_and_empty_topic() {
    let wire = hex(&format!(
        "12 21 {} 18 06 {TS} 3a 06 0a 04 6e 65 77 73",
        text(UNSUBSCRIBE_CMD)
    ));
    assert_eq!(wire.len(), 59);
    let command = Command::Unsubscribe {
        topic: "news".into(),
    };
    assert_both_ways(&wire, command);

    let wire = hex(&format!("12 1f {} {TS}", text(SUBSCRIBE_CMD)));
    assert_eq!(wire.len(), 47);
    let command = Command::Subscribe { topic: "".into() };
    assert_both_ways(&wire, command);
}

fn message_v1(s: &str) -> Bytes {
    // goomerang.example.MessageV1 { message(1) = s }
    let mut bytes = vec![0x0a, s.len() as u8];
    bytes.extend_from_slice(s.as_bytes());
    Bytes::from(bytes)
}

#[test]
fn example_b_publish() {
    let wire = hex(&format!(
        "12 1d {} 18 29 {TS} 32 0e 0a 09 {} 12 01 62 3a 29 0a 04 {} 12 1b {} 1a 04 0a 02 68 69",
        text(PUBLISH_CMD),
        text("message-a"),
        text("news"),
        text("goomerang.example.MessageV1"),
    ));
    assert_eq!(wire.len(), 106);
    let command = Command::Publish {
        topic: "news".into(),
        kind: "goomerang.example.MessageV1".into(),
        message: message_v1("hi"),
        headers: headers(&[("message-a", "b")]),
    };
    assert_both_ways(&wire, command);
}

#[test]
fn example_c_delivery_and_broadcast() {
    let delivery = Delivery {
        kind: "goomerang.example.MessageV1".into(),
        payload: message_v1("hi"),
        headers: headers(&[("a", "b")]),
    };
    let wire = hex(&format!(
        "12 1b {} 18 04 {TS} 32 06 0a 01 61 12 01 62 3a 04 0a 02 68 69",
        text("goomerang.example.MessageV1")
    ));
    assert_eq!(wire.len(), 59);
    assert_eq!(encode_delivery(&delivery, ts_time()), wire);

    let wire = hex(&format!(
        "12 1f {} 18 23 {TS} 3a 23 12 1b {} 1a 04 0a 02 68 69",
        text(BROADCAST_CMD),
        text("goomerang.example.MessageV1")
    ));
    assert_eq!(wire.len(), 86);
    let command = Command::Broadcast {
        kind: "goomerang.example.MessageV1".into(),
        message: message_v1("hi"),
        headers: FrameHeaders::new(),
    };
    assert_both_ways(&wire, command);
}

#[test]
fn example_d_sync_request_and_reply() {
    let request = hex(&format!(
        "0a 24 {} 12 1b {} 18 06 20 01 {TS} 3a 06 0a 04 70 69 6e 67",
        text(UUID),
        text("goomerang.example.MessageV1")
    ));
    assert_eq!(request.len(), 93);
    let command = Command::SendSync {
        uuid: UUID.into(),
        kind: "goomerang.example.MessageV1".into(),
        payload: message_v1("ping"),
        headers: FrameHeaders::new(),
    };
    assert_both_ways(&request, command);

    let reply = Delivery {
        kind: "goomerang.example.ReplyV1".into(),
        payload: message_v1("pong"),
        headers: FrameHeaders::new(),
    };
    let wire = hex(&format!(
        "0a 24 {} 12 19 {} 18 06 20 01 {TS} 3a 06 0a 04 70 6f 6e 67",
        text(UUID),
        text("goomerang.example.ReplyV1")
    ));
    assert_eq!(wire.len(), 91);
    assert_eq!(encode_sync_reply(UUID, &reply, ts_time()), wire);
}

#[test]
fn direct_send_keeps_headers_verbatim() {
    let command = Command::Send {
        kind: "goomerang.example.MessageV1".into(),
        payload: message_v1("x"),
        headers: headers(&[("trace", "1")]),
    };
    assert_eq!(
        decode_default(&encode_command(&command, ts_time())),
        Ok(command)
    );
}

/// A frame with the given fields, encoded by prost.
fn raw_frame(kind: &str, payload: &[u8], uuid: &str, is_sync: bool) -> Vec<u8> {
    Frame {
        uuid: uuid.into(),
        kind: kind.into(),
        is_sync,
        payload: Bytes::copy_from_slice(payload),
        ..Frame::default()
    }
    .encode_to_vec()
}

#[test]
fn general_protobuf_reader() {
    // Fields out of order, an unknown field (15, varint), a non-minimal payloadSize, no creation,
    // a repeated header key (last value wins).
    let wire = hex(&format!(
        "3a 0b 0a 04 6e 65 77 73 12 03 61 2e 42 78 07 32 06 0a 01 6b 12 01 31 18 86 80 00 12 1d {} 32 06 0a 01 6b 12 01 32",
        text(PUBLISH_CMD)
    ));
    assert_eq!(
        decode_default(&wire),
        Ok(Command::Publish {
            topic: "news".into(),
            kind: "a.B".into(),
            message: Bytes::new(),
            headers: headers(&[("k", "2")]),
        })
    );
}

#[test]
fn kinds_that_are_dropped() {
    assert_eq!(
        decode_default(&raw_frame("", b"", "", false)),
        Err(DecodeError::MissingKind)
    );
    assert_eq!(
        decode_default(&raw_frame("goomerang.protocol.Frame", b"", "", false)),
        Err(DecodeError::UnknownCommand {
            kind: "goomerang.protocol.Frame".into()
        })
    );
    assert_eq!(
        decode_default(&raw_frame("a.B", b"", "", true)),
        Err(DecodeError::SyncWithoutUuid)
    );
    let no_kind = BroadcastCmd {
        kind: String::new(),
        message: Bytes::from_static(b"x"),
    };
    assert_eq!(
        decode_default(&raw_frame(
            BROADCAST_CMD,
            &no_kind.encode_to_vec(),
            "",
            false
        )),
        Err(DecodeError::MissingMessageKind {
            command: BROADCAST_CMD
        })
    );
    // A sync flag on a command is ignored, as upstream does.
    let sub = SubscribeCmd { topic: "t".into() }.encode_to_vec();
    assert_eq!(
        decode_default(&raw_frame(SUBSCRIBE_CMD, &sub, "u", true)),
        Ok(Command::Subscribe { topic: "t".into() })
    );
}

#[test]
fn malformed_frames_and_payloads() {
    assert!(matches!(
        decode_default(b"\x0a\x05ab"),
        Err(DecodeError::Frame(_))
    ));
    // Invalid UTF-8 in a string field is rejected, as Go's proto3 decoder does.
    assert!(matches!(
        decode_default(b"\x12\x02\xff\xfe"),
        Err(DecodeError::Frame(_))
    ));
    let err = decode_default(&raw_frame(PUBLISH_CMD, b"\x0a\x09short", "", false)).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::CommandPayload {
            kind: PUBLISH_CMD,
            ..
        }
    ));
    assert_eq!(err.close_reason(), None);
}

#[test]
fn reserved_topics_are_refused() {
    for topic in ["$goomerang.broadcast", "$rpc.goomerang.a%2EB", "$inbox.1.x"] {
        let command = Command::Unsubscribe {
            topic: topic.into(),
        };
        assert_eq!(
            decode_default(&encode_command(&command, ts_time())),
            Err(DecodeError::ReservedTopic {
                topic: topic.into()
            })
        );
    }
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_message_size: 200,
        max_topic_len: 4,
        // The frame's own kind, `goomerang.protocol.PublishCmd`, is 29 bytes.
        max_kind_len: 32,
        max_headers: 1,
    };
    let publish = |topic: &str, kind: &str, headers: FrameHeaders| {
        encode_command(
            &Command::Publish {
                topic: topic.into(),
                kind: kind.into(),
                message: Bytes::new(),
                headers,
            },
            ts_time(),
        )
    };
    let ok = publish("news", "a.B", headers(&[("message-a", "b")]));
    assert!(decode(ok, &limits).is_ok());
    assert_eq!(
        decode(publish("news!", "a.B", FrameHeaders::new()), &limits),
        Err(LimitExceeded::TopicTooLong { len: 5, limit: 4 }.into())
    );
    let long_kind = format!("a.{}", "B".repeat(31));
    assert_eq!(
        decode(publish("news", &long_kind, FrameHeaders::new()), &limits),
        Err(LimitExceeded::KindTooLong { len: 33, limit: 32 }.into())
    );
    let two = headers(&[("message-a", "b"), ("message-c", "d")]);
    assert_eq!(
        decode(publish("news", "a.B", two), &limits),
        Err(LimitExceeded::TooManyHeaders { limit: 1 }.into())
    );
    let big = encode_command(
        &Command::Send {
            kind: "a.B".into(),
            payload: Bytes::from(vec![0; 200]),
            headers: FrameHeaders::new(),
        },
        ts_time(),
    );
    let err = decode(big, &limits).unwrap_err();
    assert!(matches!(
        err,
        DecodeError::Limit(LimitExceeded::MessageTooBig { limit: 200, .. })
    ));
    assert_eq!(err.close_reason(), Some(CloseReason::MessageTooBig));
}

fn send_a_b() -> Command {
    Command::Send {
        kind: "a.B".into(),
        payload: Bytes::new(),
        headers: FrameHeaders::new(),
    }
}

#[test]
fn kind_length_is_checked_before_anything_else() {
    let read = |bytes: &[u8]| decode(Bytes::copy_from_slice(bytes), &small());
    assert_eq!(read(b"\x12\x03a.B"), Ok(send_a_b()));
    assert_eq!(
        read(b"\x12\x04a.BC"),
        Err(LimitExceeded::KindTooLong { len: 4, limit: 3 }.into())
    );
    // Not UTF-8 either: the length is checked first.
    assert_eq!(
        read(b"\x12\x04\xff\xff\xff\xff"),
        Err(LimitExceeded::KindTooLong { len: 4, limit: 3 }.into())
    );
    // varint (non-minimal), fixed64, fixed32 fields are skipped, then a kind over the limit.
    assert_eq!(
        read(
            b"\x18\x80\x80\x00\x49\x01\x02\x03\x04\x05\x06\x07\x08\x55\x01\x02\x03\x04\x12\x04abcd"
        ),
        Err(LimitExceeded::KindTooLong { len: 4, limit: 3 }.into())
    );
}

#[test]
fn header_entries_are_counted_at_top_level_only() {
    let read = |bytes: &[u8]| decode(Bytes::copy_from_slice(bytes), &small());
    let mut two = send_a_b();
    if let Command::Send { headers, .. } = &mut two {
        headers.insert("", "");
    }
    assert_eq!(read(b"\x32\x00\x32\x00\x12\x03a.B"), Ok(two.clone()));
    assert_eq!(
        read(b"\x32\x00\x32\x00\x32\x00\x12\x03a.B"),
        Err(LimitExceeded::TooManyHeaders { limit: 2 }.into())
    );
    // Field 6 inside an unknown group (field 9) is not a header; after the group it is again.
    assert_eq!(
        read(b"\x4b\x32\x00\x32\x00\x32\x00\x4c\x32\x00\x12\x03a.B"),
        Ok(two)
    );
    assert_eq!(
        read(b"\x4b\x4c\x32\x00\x32\x00\x32\x00"),
        Err(LimitExceeded::TooManyHeaders { limit: 2 }.into())
    );
}

#[test]
fn fields_that_cannot_be_read() {
    for (input, error) in [
        (&b"\x12\x7f"[..], WireError::Truncated(2)),
        (b"\x3a\x05ab", WireError::Truncated(7)),
        (b"\x0a\x02\xff\xfe", WireError::NotUtf8(1)),
        (b"\x10\x01", WireError::WireType(2)),
        (b"\x22\x00", WireError::WireType(4)),
    ] {
        assert_eq!(
            decode_default(input),
            Err(DecodeError::Frame(error)),
            "{input:?}"
        );
    }
    for input in [
        &b"\x80"[..],
        b"\x18",
        b"\x4c\x32\x00",
        b"\x0f",
        b"\x2a\x01\x08",
    ] {
        assert!(
            matches!(
                decode_default(input),
                Err(DecodeError::Frame(WireError::Protobuf(_)))
            ),
            "{input:?}"
        );
    }
}

#[test]
fn decoded_bytes_share_the_message_buffer() {
    let wire = encode_command(
        &Command::Send {
            kind: "a.B".into(),
            payload: Bytes::from_static(b"payload"),
            headers: FrameHeaders::new(),
        },
        ts_time(),
    );
    let range = wire.as_ptr_range();
    let Ok(Command::Send { payload, .. }) = decode(wire.clone(), &Limits::default()) else {
        panic!("expected a send");
    };
    assert!(range.contains(&payload.as_ptr()));
}

fn topic() -> impl Strategy<Value = String> {
    "[^$]{0,12}"
}

fn kind() -> impl Strategy<Value = String> {
    "[a-z]{1,6}(\\.[A-Za-z0-9_]{1,6}){0,3}"
        .prop_filter("built-in package", |k| !k.starts_with(PACKAGE_PREFIX))
}

fn frame_headers() -> impl Strategy<Value = FrameHeaders> {
    proptest::collection::vec((".{0,6}", ".{0,6}"), 0..5)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn bytes() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from)
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        topic().prop_map(|topic| Command::Subscribe { topic }),
        topic().prop_map(|topic| Command::Unsubscribe { topic }),
        (topic(), kind(), bytes(), frame_headers()).prop_map(|(topic, kind, message, headers)| {
            Command::Publish {
                topic: topic.into(),
                kind: kind.into(),
                message,
                headers,
            }
        }),
        (kind(), bytes(), frame_headers()).prop_map(|(kind, message, headers)| {
            Command::Broadcast {
                kind: kind.into(),
                message,
                headers,
            }
        }),
        (kind(), bytes(), frame_headers()).prop_map(|(kind, payload, headers)| {
            Command::Send {
                kind,
                payload,
                headers,
            }
        }),
        ("[0-9a-f-]{1,36}", kind(), bytes(), frame_headers()).prop_map(
            |(uuid, kind, payload, headers)| Command::SendSync {
                uuid,
                kind,
                payload,
                headers,
            }
        ),
    ]
}

/// Times after the Unix epoch and before it (a negative `seconds`), whole seconds among them.
fn creation() -> impl Strategy<Value = SystemTime> {
    (
        any::<bool>(),
        0u64..4_000_000_000,
        prop_oneof![Just(0u32), 0u32..1_000_000_000],
    )
        .prop_map(|(before, secs, nanos)| {
            let since = Duration::new(secs, nanos);
            if before {
                UNIX_EPOCH - since
            } else {
                UNIX_EPOCH + since
            }
        })
}

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        ".{0,8}",
        ".{0,12}",
        any::<i64>(),
        any::<bool>(),
        proptest::option::of((any::<i64>(), any::<i32>())),
        proptest::collection::vec((".{0,4}", ".{0,4}"), 0..4),
        bytes(),
    )
        .prop_map(
            |(uuid, kind, payload_size, is_sync, creation, headers, payload)| Frame {
                uuid,
                kind,
                payload_size,
                is_sync,
                creation: creation
                    .map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
                headers: headers
                    .into_iter()
                    .map(|(key, value)| super::proto::HeaderEntry { key, value })
                    .collect(),
                payload,
            },
        )
}

/// What prost's generated decoders make of `message`, with [`decode`]'s checks after them: the reference for
/// [`decode`] (limits aside).
fn prost_decode(message: Bytes, limits: &Limits) -> Option<Command> {
    let frame = Frame::decode(message).ok()?;
    let headers = FrameHeaders::from_entries(frame.headers);
    let command = match frame.kind.as_str() {
        SUBSCRIBE_CMD => Command::Subscribe {
            topic: checked_topic(&SubscribeCmd::decode(frame.payload).ok()?.topic, limits)
                .ok()?
                .to_owned(),
        },
        UNSUBSCRIBE_CMD => Command::Unsubscribe {
            topic: checked_topic(&UnsubscribeCmd::decode(frame.payload).ok()?.topic, limits)
                .ok()?
                .to_owned(),
        },
        PUBLISH_CMD => {
            let cmd = PublishCmd::decode(frame.payload).ok()?;
            Command::Publish {
                topic: checked_topic(&cmd.topic, limits).ok()?.into(),
                kind: message_kind(PUBLISH_CMD, cmd.kind.into(), limits).ok()?,
                message: cmd.message,
                headers,
            }
        }
        BROADCAST_CMD => {
            let cmd = BroadcastCmd::decode(frame.payload).ok()?;
            Command::Broadcast {
                kind: message_kind(BROADCAST_CMD, cmd.kind.into(), limits).ok()?,
                message: cmd.message,
                headers,
            }
        }
        "" => return None,
        kind if kind.starts_with(PACKAGE_PREFIX) => return None,
        _ if frame.is_sync && frame.uuid.is_empty() => return None,
        _ if frame.is_sync => Command::SendSync {
            uuid: frame.uuid,
            kind: frame.kind,
            payload: frame.payload,
            headers,
        },
        _ => Command::Send {
            kind: frame.kind,
            payload: frame.payload,
            headers,
        },
    };
    Some(command)
}

proptest! {
    #[test]
    fn command_round_trip(command in command(), creation in creation()) {
        let wire = encode_command(&command, creation);
        prop_assert_eq!(decode(wire, &Limits::default()), Ok(command));
    }

    #[test]
    fn frame_round_trip(frame in any_frame()) {
        let wire = frame.encode_to_vec();
        prop_assert_eq!(Frame::decode(wire.as_slice()), Ok(frame));
    }

    #[test]
    fn delivery_round_trip(
        kind in kind(), payload in bytes(), headers in frame_headers(),
        uuid in proptest::option::of("[0-9a-f-]{1,36}"), creation in creation(),
    ) {
        let delivery = Delivery { kind, payload, headers };
        let wire = match &uuid {
            Some(uuid) => encode_sync_reply(uuid, &delivery, creation),
            None => encode_delivery(&delivery, creation),
        };
        let frame = Frame::decode(wire).unwrap();
        prop_assert_eq!(frame.uuid, uuid.clone().unwrap_or_default());
        prop_assert_eq!(frame.is_sync, uuid.is_some());
        prop_assert_eq!(frame.payload_size, delivery.payload.len() as i64);
        prop_assert_eq!(frame.creation, Some(creation.into()));
        prop_assert_eq!(frame.kind, delivery.kind);
        prop_assert_eq!(frame.payload, delivery.payload);
        prop_assert_eq!(FrameHeaders::from_entries(frame.headers), delivery.headers);
    }

    #[test]
    fn frames_are_encoded_as_prost_encodes_them(
        uuid in ".{0,8}", is_sync in any::<bool>(), kind in ".{0,12}", payload in bytes(),
        headers in frame_headers(), creation in creation(), topic in ".{0,8}",
    ) {
        let prost = |uuid: &str, is_sync: bool, kind: &str, payload: Bytes| {
            Frame {
                uuid: uuid.to_owned(),
                kind: kind.to_owned(),
                payload_size: payload.len() as i64,
                is_sync,
                creation: Some(creation.into()),
                headers: headers.to_entries(),
                payload,
            }
            .encode_to_vec()
        };
        let wire = encode_frame(&uuid, is_sync, &kind, &payload, &headers, creation);
        prop_assert_eq!(&wire[..], &prost(&uuid, is_sync, &kind, payload.clone())[..]);
        let cmd = PublishCmd { topic: topic.clone(), kind: kind.clone(), message: payload.clone() };
        let wire = encode_publish(&topic, &kind, &payload, &headers, creation);
        prop_assert_eq!(&wire[..], &prost("", false, PUBLISH_CMD, cmd.encode_to_vec().into())[..]);
    }

    #[test]
    fn random_bytes_read_as_prost_reads_them(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let limits = Limits::default();
        let bytes = Bytes::from(bytes);
        prop_assert_eq!(decode(bytes.clone(), &limits).ok(), prost_decode(bytes, &limits));
    }

    #[test]
    fn mutated_frames_read_as_prost_reads_them(
        command in command(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = encode_command(&command, ts_time()).to_vec();
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let small = Limits { max_message_size: 96, max_topic_len: 4, max_kind_len: 8, max_headers: 2 };
        let limits = Limits::default();
        let whole = Bytes::from(wire.clone());
        prop_assert_eq!(decode(whole.clone(), &limits).ok(), prost_decode(whole, &limits));
        let _ = decode(Bytes::from(wire.clone()), &small);
        wire.truncate(cut.index(wire.len() + 1));
        let cut = Bytes::from(wire);
        prop_assert_eq!(decode(cut.clone(), &limits).ok(), prost_decode(cut, &limits));
    }

    #[test]
    fn frames_read_as_prost_reads_them(frame in any_frame()) {
        let wire = Bytes::from(frame.encode_to_vec());
        let limits = Limits::default();
        prop_assert_eq!(decode(wire.clone(), &limits).ok(), prost_decode(wire, &limits));
    }
}

#[test]
fn a_short_publish_keeps_nothing_of_its_frame() {
    let within = |frame: &Bytes, part: &[u8]| frame.as_ptr_range().contains(&part.as_ptr());
    for (size, shared) in [(16, false), (2048, true)] {
        let body = vec![7u8; size];
        let frame = encode_publish(
            "orders.eu",
            "shop.Order",
            &body,
            &FrameHeaders::new(),
            ts_time(),
        );
        let Ok(Command::Publish {
            topic,
            kind,
            message,
            ..
        }) = decode(frame.clone(), &Limits::default())
        else {
            panic!("not a publish");
        };
        assert_eq!(
            (&*topic, &*kind, &message[..]),
            ("orders.eu", "shop.Order", &body[..])
        );
        for part in [topic.as_bytes(), kind.as_bytes(), &message[..]] {
            assert_eq!(within(&frame, part), shared, "{size} B");
        }
    }
}
