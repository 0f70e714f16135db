//! Replays the upstream Goomerang transcript (`tests/fixtures/wire/goomerang/goomerang-sub-pub.jsonl`) through
//! the codec: client messages decode to the expected commands, the deliveries gatewayd builds for them
//! match the reference server's frames field by field (timestamps aside), and close frames get the echo
//! the reference server sent.

mod common;

use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;
use common::*;
use core_bus::Headers;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use protocols::goomerang::bridge::{delivery_from_bus, to_bus_headers, user_headers};
use protocols::goomerang::codec::proto::Frame;
use protocols::goomerang::{
    decode, encode_delivery, CloseHandshake, Command, FrameHeaders, Limits, PeerClose, WrapperKind,
};
use protox::file::{ChainFileResolver, GoogleFileResolver, IncludeFileResolver};

/// One WebSocket message of the transcript.
struct WsMessage {
    conn: u64,
    client_to_server: bool,
    opcode: u64,
    payload: Vec<u8>,
}

fn transcript() -> Vec<WsMessage> {
    transcript_lines("goomerang/goomerang-sub-pub.jsonl")
        .into_iter()
        .skip(1)
        .filter_map(|line| {
            let opcode = line.get("ws_opcode")?.as_u64()?;
            Some(WsMessage {
                conn: line["conn"].as_u64().expect("conn"),
                client_to_server: line["dir"] == "c2s",
                opcode,
                payload: unhex(line["payload_hex"].as_str().expect("payload_hex")),
            })
        })
        .collect()
}

fn binary(messages: &[WsMessage], conn: u64, client_to_server: bool) -> Vec<&[u8]> {
    messages
        .iter()
        .filter(|m| m.conn == conn && m.client_to_server == client_to_server && m.opcode == 2)
        .map(|m| m.payload.as_slice())
        .collect()
}

const STRING_VALUE: &str = "google.protobuf.StringValue";
/// `StringValue("hello-goom")`.
const HELLO: &[u8] = b"\x0a\x0ahello-goom";

#[test]
fn client_messages_decode_to_commands() {
    let messages = transcript();
    let decode_all = |conn| -> Vec<Command> {
        binary(&messages, conn, true)
            .into_iter()
            .map(|payload| decode(Bytes::copy_from_slice(payload), &Limits::default()).unwrap())
            .collect()
    };
    assert_eq!(
        decode_all(1),
        [Command::Subscribe {
            topic: "demo".into()
        }]
    );
    let publish = Command::Publish {
        topic: "demo".into(),
        kind: STRING_VALUE.into(),
        message: Bytes::from_static(HELLO),
        headers: FrameHeaders::new(),
    };
    assert_eq!(decode_all(2), [publish.clone(), publish]);
}

/// A frame with its `creation` checked present and then cleared, for comparison.
fn without_creation(bytes: &[u8]) -> Frame {
    let mut frame = Frame::decode(bytes).expect("frame");
    assert!(frame.creation.is_some(), "creation missing");
    frame.creation = None;
    frame
}

#[test]
fn deliveries_match_the_reference_server() {
    let messages = transcript();
    let built: Vec<Frame> = binary(&messages, 2, true)
        .into_iter()
        .map(|payload| {
            let Ok(Command::Publish {
                kind,
                message,
                headers,
                ..
            }) = decode(Bytes::copy_from_slice(payload), &Limits::default())
            else {
                panic!("expected a publish");
            };
            let bus_headers = to_bus_headers(Bytes::from(kind), &user_headers(&headers));
            let delivery = delivery_from_bus(message, &bus_headers, &WrapperKind::default());
            without_creation(&encode_delivery(&delivery, SystemTime::now()))
        })
        .collect();
    let received: Vec<Frame> = binary(&messages, 1, false)
        .into_iter()
        .map(without_creation)
        .collect();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].kind, STRING_VALUE);
    assert_eq!(received[0].payload_size, 12);
    assert_eq!(built, received);
}

/// Descriptors of the Goomerang frame and the well-known wrapper kinds, from the repository's `.proto`.
fn pool() -> DescriptorPool {
    let mut resolver = ChainFileResolver::new();
    resolver.add(GoogleFileResolver::new());
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    resolver.add(IncludeFileResolver::new(proto));
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .open_files(["goomerang/protocol.proto", "google/protobuf/wrappers.proto"])
        .expect("compile goomerang protos");
    compiler.descriptor_pool()
}

/// Decodes `bytes` as `name` the way a Go client does with its registry, and fails on a field the message
/// does not define (at the top level, which is all a frame or a wrapper has).
fn read_strictly(pool: &DescriptorPool, name: &str, bytes: &[u8]) -> DynamicMessage {
    let descriptor = pool
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("kind {name} is not registered"));
    let message = DynamicMessage::decode(descriptor, bytes).expect("decodes");
    let unknown: Vec<u32> = message.unknown_fields().map(|f| f.number()).collect();
    assert!(unknown.is_empty(), "{name}: unknown fields {unknown:?}");
    message
}

/// What a Go client reads of a delivery: a Frame with only Frame's fields, whose `kind` is a full name (not a
/// type URL) registered on the client, and whose payload reads strictly as that kind.
#[test]
fn deliveries_read_strictly_as_registered_kinds() {
    let pool = pool();
    let messages = transcript();
    let recorded = binary(&messages, 1, false);
    let foreign = delivery_from_bus(
        Bytes::from_static(b"from stomp"),
        &Headers::new(),
        &WrapperKind::default(),
    );
    let foreign = encode_delivery(&foreign, SystemTime::now());
    for (bytes, kind) in recorded
        .into_iter()
        .map(|bytes| (bytes, STRING_VALUE))
        .chain([(foreign.as_ref(), WrapperKind::BYTES_VALUE)])
    {
        let frame = read_strictly(&pool, "goomerang.protocol.Frame", bytes);
        let field = |name: &str| frame.get_field_by_name(name).expect(name).into_owned();
        assert_eq!(field("kind").as_str(), Some(kind));
        assert!(!kind.contains('/'), "a full name, not a type URL");
        let payload = field("payload");
        read_strictly(&pool, kind, payload.as_bytes().expect("bytes"));
    }
}

#[test]
fn client_closes_get_the_reference_echo() {
    let messages = transcript();
    for conn in [1, 2] {
        let close = |client_to_server| {
            messages
                .iter()
                .find(|m| m.conn == conn && m.client_to_server == client_to_server && m.opcode == 8)
                .map(|m| m.payload.clone())
                .expect("close frame")
        };
        assert_eq!(close(true), [0x03, 0xe8]);
        let PeerClose::EchoThenCloseTcp(echo) = CloseHandshake::new().on_peer_close() else {
            panic!("expected an echo");
        };
        assert_eq!(echo.payload(), close(false));
    }
}
