//! Replays the MessageLoop wire transcripts (`tests/fixtures/wire/messageloop/*.jsonl`): every
//! client → server message goes through our decoders (WS JSON, WS protobuf, gRPC messages) and its meaning
//! is checked; a scripted server answers each one the way the reference server did, our encoder renders the
//! answers, and they are compared with the transcript's server → client messages field by field, with ids,
//! times, session ids, epochs and offsets masked. Every message we render must also read strictly as the
//! recording's generation (unknown fields rejected, types checked, as the G0 SDK's protojson reads).

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use prost::Message as _;
use protocols::messageloop::codes::DisconnectCode;
use protocols::messageloop::conformance::{check_json, check_protobuf, outbound_name, UnknownKeys};
use protocols::messageloop::generation::{Encoding, Generation, GenerationSetting};
use protocols::messageloop::message::{
    Connected, Inbound, InboundBody, Message, Outbound, OutboundBody, Payload, Position,
    PresenceInfo, PresenceSnapshot, Publish, RecoverState, SubscribeAck, Subscription,
};
use protocols::messageloop::pb;
use protocols::messageloop::subprotocol::negotiate;
use protocols::messageloop::wire::{G2Wire, Wire};
use protocols::messageloop::{json, Frame, WsCodec};
use serde_json::Value;

/// Renders a server → client protobuf message as protojson for comparison.
fn outbound_json(generation: Generation, bytes: &[u8]) -> Value {
    match generation {
        Generation::G0 => {
            json::to_value(&pb::messageloop::v1::OutboundMessage::decode(bytes).unwrap())
        }
        Generation::G1 => {
            json::to_value(&pb::messageloop::client::v1::OutboundMessage::decode(bytes).unwrap())
        }
        Generation::G2 => {
            json::to_value(&pb::messageloop::client::v2::OutboundMessage::decode(bytes).unwrap())
        }
    }
    .unwrap()
}

/// A server message as JSON, after checking that it reads strictly as `generation`'s envelope.
fn strictly(generation: Generation, frame: &Frame) -> Value {
    let name = outbound_name(generation);
    match frame {
        Frame::Text(text) => {
            let value = serde_json::from_str(text).expect("JSON");
            if let Err(err) = check_json(name, &value, UnknownKeys::Reject) {
                panic!("{err}: {value}");
            }
            value
        }
        Frame::Binary(bytes) => {
            if let Err(err) = check_protobuf(name, bytes) {
                panic!("{err}: {bytes:?}");
            }
            outbound_json(generation, bytes)
        }
    }
}

const VOLATILE: [&str; 6] = [
    "id",
    "time",
    "session_id",
    "stream_epoch",
    "connected_at",
    "offset",
];

fn mask(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, field) in object.iter_mut() {
                if VOLATILE.contains(&key.as_str()) {
                    *field = Value::String("*".into());
                } else {
                    mask(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// The differences between two masked messages, field by field: a key on one side only (volatile keys aside:
/// an offset of 0 is left out of a rendering) or a different value, each with its path.
fn differences(theirs: &Value, ours: &Value, path: &str, found: &mut Vec<String>) {
    match (theirs, ours) {
        (Value::Object(theirs), Value::Object(ours)) => {
            for (key, value) in theirs {
                match ours.get(key) {
                    Some(mine) => differences(value, mine, &format!("{path}.{key}"), found),
                    None if VOLATILE.contains(&key.as_str()) => {}
                    None => found.push(format!("{path}.{key}: missing from ours")),
                }
            }
            for key in ours.keys() {
                if !theirs.contains_key(key) && !VOLATILE.contains(&key.as_str()) {
                    found.push(format!("{path}.{key}: not in the recording"));
                }
            }
        }
        (Value::Array(theirs), Value::Array(ours)) if theirs.len() == ours.len() => {
            for (index, (a, b)) in theirs.iter().zip(ours).enumerate() {
                differences(a, b, &format!("{path}[{index}]"), found);
            }
        }
        _ if theirs == ours => {}
        _ => found.push(format!("{path}: {theirs} recorded, {ours} ours")),
    }
}

enum Transport {
    Ws(WsCodec),
    Grpc,
}

struct Conn {
    transport: Transport,
    /// The generation the transcript's client speaks.
    recorded: Generation,
    decoded: Vec<Inbound>,
    ours: Vec<Value>,
    theirs: Vec<Value>,
    close_codes: Vec<u16>,
}

impl Conn {
    fn generation(&self) -> Generation {
        match &self.transport {
            Transport::Ws(codec) => codec.generation().unwrap_or(Generation::G1),
            Transport::Grpc => Generation::G2,
        }
    }

    fn decode(&mut self, bytes: &[u8]) -> Inbound {
        let inbound = match &mut self.transport {
            Transport::Ws(codec) => codec.decode(bytes).expect("client message decodes"),
            Transport::Grpc => {
                G2Wire::inbound(pb::messageloop::client::v2::InboundMessage::decode(bytes).unwrap())
                    .unwrap()
            }
        };
        self.decoded.push(inbound.clone());
        inbound
    }

    fn encode(&mut self, message: &Outbound) {
        let frame = match &self.transport {
            Transport::Ws(codec) => codec.encode(message).expect("encodes"),
            Transport::Grpc => {
                Frame::Binary(G2Wire::outbound(message).unwrap().encode_to_vec().into())
            }
        };
        let value = strictly(self.recorded, &frame);
        self.ours.push(value);
    }
}

/// Answers like the reference server with the memory broker: one epoch, dense offsets from 1, presence
/// snapshots in the subscribe ack, one publication per subscriber.
#[derive(Default)]
struct ScriptedServer {
    offset: u64,
    subscribers: Vec<u64>,
}

impl ScriptedServer {
    const EPOCH: &'static str = "epoch";

    fn handle(&mut self, conn: u64, inbound: &Inbound) -> Vec<(u64, Outbound)> {
        let reply = |body| Outbound {
            id: inbound.id.clone(),
            time_ms: 1,
            body,
        };
        let position = |offset| Position {
            stream_epoch: Self::EPOCH.into(),
            offset: Some(offset),
        };
        match &inbound.body {
            InboundBody::Connect(_) => vec![(
                conn,
                reply(OutboundBody::Connected(Box::new(Connected {
                    session_id: format!("session-{conn}"),
                    stream_epoch: Self::EPOCH.into(),
                    ..Connected::default()
                }))),
            )],
            InboundBody::Subscribe(subscriptions) => {
                self.subscribers.push(conn);
                let presence = subscriptions
                    .iter()
                    .map(|subscription| PresenceSnapshot {
                        channel: subscription.channel.clone(),
                        clients: vec![PresenceInfo {
                            session_id: format!("session-{conn}"),
                            connected_at_ms: 1,
                            ..PresenceInfo::default()
                        }],
                        truncated: false,
                        occupancy: 1,
                    })
                    .collect();
                vec![(
                    conn,
                    reply(OutboundBody::SubscribeAck(Box::new(SubscribeAck {
                        subscriptions: subscriptions.clone(),
                        recover: RecoverState::None,
                        stream_epoch: Self::EPOCH.into(),
                        presence,
                        error: None,
                        replayed: Vec::new(),
                        recover_results: Vec::new(),
                    }))),
                )]
            }
            InboundBody::Publish(publish) => {
                self.offset += 1;
                let mut out = vec![(conn, reply(OutboundBody::PublishAck(position(self.offset))))];
                for subscriber in &self.subscribers {
                    let message = Message {
                        id: format!("{}-{}", publish.channel, self.offset),
                        channel: publish.channel.clone(),
                        position: position(self.offset),
                        payload: publish.payload.clone(),
                        headers: publish.headers.clone(),
                        replay: false,
                    };
                    out.push((
                        *subscriber,
                        Outbound {
                            id: format!("delivery-{}", self.offset),
                            time_ms: 1,
                            body: OutboundBody::Publication(vec![message]),
                        },
                    ));
                }
                out
            }
            other => panic!("transcripts hold no {other:?}"),
        }
    }
}

/// Replays one transcript; returns the connections in order.
fn replay(name: &str) -> BTreeMap<u64, Conn> {
    let mut conns: BTreeMap<u64, Conn> = BTreeMap::new();
    let mut server = ScriptedServer::default();
    for line in transcript_lines(&format!("messageloop/{name}"))
        .iter()
        .skip(1)
    {
        let conn = line["conn"].as_u64().expect("conn");
        let dir = line["dir"].as_str().unwrap_or("");
        if line["event"] == "open" {
            let transport = if name.contains("grpc") {
                Transport::Grpc
            } else {
                Transport::Ws(WsCodec::new(Encoding::Json, GenerationSetting::Auto))
            };
            conns.insert(
                conn,
                Conn {
                    transport,
                    recorded: if name.starts_with("g0") {
                        Generation::G0
                    } else {
                        Generation::G2
                    },
                    decoded: Vec::new(),
                    ours: Vec::new(),
                    theirs: Vec::new(),
                    close_codes: Vec::new(),
                },
            );
            continue;
        }
        let state = conns.get_mut(&conn).expect("opened");
        // The HTTP upgrade request: negotiate the subprotocol from the client's offer.
        if let (Transport::Ws(_), Some(hex)) = (&state.transport, line["hex"].as_str()) {
            let request = String::from_utf8_lossy(&unhex(hex)).into_owned();
            if let Some(offer) = request
                .lines()
                .find_map(|header| header.strip_prefix("Sec-WebSocket-Protocol: "))
            {
                let negotiated = negotiate([offer], GenerationSetting::Auto);
                assert_eq!(negotiated.subprotocol.as_deref(), Some(offer));
                state.transport =
                    Transport::Ws(WsCodec::new(negotiated.encoding, GenerationSetting::Auto));
            }
            continue;
        }
        let mut units: Vec<Vec<u8>> = Vec::new();
        match line["ws_opcode"].as_u64() {
            Some(1 | 2) => units.push(unhex(line["payload_hex"].as_str().expect("payload_hex"))),
            Some(8) if dir == "s2c" => {
                let code = line["ws_close_code"].as_u64().expect("close code");
                state.close_codes.push(u16::try_from(code).expect("u16"));
            }
            _ => {}
        }
        if let Some(messages) = line["grpc_messages"].as_array() {
            units.extend(
                messages
                    .iter()
                    .map(|message| unhex(message["hex"].as_str().expect("hex"))),
            );
        }
        for unit in units {
            if dir == "c2s" {
                let inbound = conns.get_mut(&conn).expect("opened").decode(&unit);
                for (target, outbound) in server.handle(conn, &inbound) {
                    conns.get_mut(&target).expect("target").encode(&outbound);
                }
            } else {
                let state = conns.get_mut(&conn).expect("opened");
                let frame = match line["ws_opcode"].as_u64() {
                    Some(1) => Frame::Text(String::from_utf8(unit).expect("UTF-8")),
                    _ => Frame::Binary(unit.into()),
                };
                state.theirs.push(strictly(state.recorded, &frame));
            }
        }
    }
    conns
}

/// Compares our server → client messages with the transcript's, field by field after masking.
fn compare(conns: &BTreeMap<u64, Conn>) {
    for (number, conn) in conns {
        assert_eq!(
            conn.ours.len(),
            conn.theirs.len(),
            "conn {number}: message count"
        );
        for (ours, theirs) in conn.ours.iter().zip(&conn.theirs) {
            let (mut ours, mut theirs) = (ours.clone(), theirs.clone());
            mask(&mut ours);
            mask(&mut theirs);
            let mut found = Vec::new();
            differences(&theirs, &ours, "", &mut found);
            assert!(
                found.is_empty(),
                "conn {number}: {found:#?}\nrecorded {theirs}\nours     {ours}"
            );
        }
    }
}

fn assert_connect(inbound: &Inbound, version: &str) {
    let InboundBody::Connect(connect) = &inbound.body else {
        panic!("expected connect, got {inbound:?}");
    };
    assert_eq!(connect.client_type, "sdk");
    assert_eq!(connect.version, version);
    assert!(connect.token.is_empty() && connect.subscriptions.is_empty());
    assert!(inbound.id.ends_with("-1"), "{}", inbound.id);
}

fn assert_subscribe(inbound: &Inbound) {
    assert_eq!(
        inbound.body,
        InboundBody::Subscribe(vec![Subscription::channel("demo")])
    );
}

fn assert_g2_publish(inbound: &Inbound, text: &str) {
    assert_eq!(
        inbound.body,
        InboundBody::Publish(Publish {
            channel: "demo".into(),
            payload: Payload::text("text/plain", text),
            ..Publish::default()
        })
    );
}

fn assert_g0_publish(inbound: &Inbound, data: &str) {
    let InboundBody::Publish(publish) = &inbound.body else {
        panic!("expected publish, got {inbound:?}");
    };
    assert_eq!(publish.channel, "demo");
    assert_eq!(
        publish.payload,
        Payload::binary("text/plain", Bytes::from(data.to_owned()))
    );
    let names: Vec<&str> = publish
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(names, ["ce-id", "ce-source", "ce-specversion", "ce-type"]);
    assert_eq!(publish.headers[1].1, "/interop");
    assert_eq!(publish.headers[2].1, "1.0");
    assert_eq!(publish.headers[3].1, "interop.message");
    assert_eq!(publish.headers[0].1.len(), 36, "uuid event id");
}

/// The G0 demo: the subscriber connects and subscribes, the publisher connects and publishes `data` twice.
fn assert_g0_demo(subscriber: &Conn, publisher: &Conn, data: &str) {
    assert_connect(&subscriber.decoded[0], "1.0.0");
    assert_subscribe(&subscriber.decoded[1]);
    assert_connect(&publisher.decoded[0], "1.0.0");
    assert_g0_publish(&publisher.decoded[1], data);
    assert_g0_publish(&publisher.decoded[2], data);
}

fn check_g2(name: &str, text: &str) {
    let conns = replay(name);
    let [subscriber, publisher] = [&conns[&1], &conns[&2]];
    assert_eq!(subscriber.decoded.len(), 2);
    assert_connect(&subscriber.decoded[0], "2.0.0");
    assert_subscribe(&subscriber.decoded[1]);
    assert_eq!(publisher.decoded.len(), 3);
    assert_connect(&publisher.decoded[0], "2.0.0");
    assert_g2_publish(&publisher.decoded[1], text);
    assert_g2_publish(&publisher.decoded[2], text);
    for conn in conns.values() {
        assert_eq!(conn.generation(), Generation::G2);
        for code in &conn.close_codes {
            assert_eq!(*code, DisconnectCode::Normal.ws_close_code());
        }
    }
    compare(&conns);
}

#[test]
fn g2_ws_json() {
    check_g2("g2-ws-json.jsonl", "hello-ml-json");
}

#[test]
fn g2_ws_protobuf() {
    check_g2("g2-ws-protobuf.jsonl", "hello-ml-protobuf");
}

#[test]
fn g2_grpc() {
    check_g2("g2-grpc.jsonl", "hello-ml-grpc");
}

#[test]
fn g0_ws_protobuf() {
    let conns = replay("g0-ws-protobuf.jsonl");
    let [subscriber, publisher] = [&conns[&1], &conns[&2]];
    assert_g0_demo(subscriber, publisher, "hello-g0-protobuf");
    assert_eq!(subscriber.generation(), Generation::G0);
    assert_eq!(publisher.generation(), Generation::G0);
    compare(&conns);
}

#[test]
fn g0_ws_json() {
    let conns = replay("g0-ws-json.jsonl");
    let [subscriber, publisher] = [&conns[&1], &conns[&2]];
    assert_g0_demo(subscriber, publisher, "hello-g0-json");
    // The subscriber never sends anything G0-specific; the publisher's CloudEvent settles it.
    let Transport::Ws(codec) = &subscriber.transport else {
        unreachable!()
    };
    assert!(codec.is_g0_or_g1());
    let Transport::Ws(codec) = &publisher.transport else {
        unreachable!()
    };
    assert_eq!(codec.generation(), Some(Generation::G0));
    compare(&conns);
}

#[test]
fn grpc_service_paths_are_the_sdks() {
    use pb::messageloop::client::{v1, v2};
    let paths = [
        (
            Generation::G0,
            pb::messageloop::v1::messaging_service_server::SERVICE_NAME,
        ),
        (
            Generation::G1,
            v1::message_loop_service_server::SERVICE_NAME,
        ),
        (
            Generation::G2,
            v2::message_loop_service_server::SERVICE_NAME,
        ),
    ];
    for (generation, service) in paths {
        assert_eq!(format!("/{service}/MessageLoop"), generation.grpc_path());
    }
}
