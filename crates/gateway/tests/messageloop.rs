//! MessageLoop over real sockets against the gatewayd binary: JSON and protobuf WebSocket, gRPC, for G0, G1
//! and G2 — Connect rules and close codes, auth failures, wildcards, publish/ack/receive, history recovery,
//! presence, RPC without a responder, idle disconnect, size limit — plus the Python client
//! (`tests/python/test_messageloop.py`).

mod support;

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/python.rs"]
mod python;

use std::net::SocketAddr;

use base64::Engine as _;
use messageloop_client::{g2 as pw, grpc, Ws};
use protocols::messageloop::pb::io::cloudevents::v1::cloud_event::Data as CeData;
use protocols::messageloop::pb::messageloop::shared::v2 as shared;
use serde_json::{json, Value};
use support::*;

/// Asserts that the next message on the gRPC `stream` has an envelope matching `pattern`.
macro_rules! expect_envelope {
    ($stream:expr, $pattern:pat) => {
        assert!(matches!(
            $stream.next().await.unwrap().envelope,
            Some($pattern)
        ))
    };
}

const JSON: &[&str] = &["messageloop+json"];

fn config(extra: &str) -> String {
    format!(
        "{}[messageloop]\nrpc_timeout_secs = 2\n[messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [[bus.history]]\ntopics = \"hist.#\"\nmax_messages = 100\nmax_bytes = 1048576\nttl = 0\n{extra}",
        base_config()
    )
}

fn start(extra: &str) -> (Gatewayd, SocketAddr, SocketAddr) {
    let gateway = Gatewayd::start(&config(extra));
    let ws = gateway.listener("messageloop.ws");
    let grpc = gateway.listener("messageloop.grpc");
    (gateway, ws, grpc)
}

/// A WebSocket JSON client at `addr` that has sent Connect for `version` without a token.
fn client(addr: SocketAddr, version: &str) -> Ws {
    let mut ws = Ws::connect(addr, JSON);
    ws.handshake(version, "");
    ws
}

/// The G2 gRPC Connect message with id `c`, version 2.0.0 and `token`.
fn g2_connect(token: &str) -> grpc::g2::InboundMessage {
    let connect = grpc::g2::Connect {
        version: "2.0.0".into(),
        token: token.into(),
        ..Default::default()
    };
    grpc::g2_inbound("c", grpc::g2::inbound_message::Envelope::Connect(connect))
}

/// The bytes of a CloudEvent's base64 `binary_data`.
fn binary_data(event: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(event["binary_data"].as_str().unwrap())
        .unwrap()
}

/// From a multi-thread tokio test: gatewayd with `extra` config, and its MessageLoop gRPC address.
async fn start_in_tokio(extra: &'static str) -> (Gatewayd, SocketAddr) {
    let gateway = tokio::task::spawn_blocking(move || Gatewayd::start(&config(extra)))
        .await
        .unwrap();
    let addr = tokio::task::block_in_place(|| gateway.listener("messageloop.grpc"));
    (gateway, addr)
}

fn publish_json(ws: &mut Ws, id: &str, channel: &str, object: Value) {
    ws.send(json!({"id": id, "publish": {"channel": channel,
        "payload": {"content_type": "application/json", "json": object}}}));
}

#[test]
fn g2_json_worked_example_publish_ack_and_delivery() {
    let (_gateway, addr, _) = start("");
    let mut alice = Ws::connect(addr, JSON);
    assert_eq!(alice.subprotocol.as_deref(), Some("messageloop+json"));
    let connected = alice.handshake("2.0.0", "");
    assert!(connected["connected"]["session_id"].as_str().unwrap().len() == 36);
    let ack = alice.subscribe("2", &["chat.messages"]);
    assert_eq!(ack["subscribe_ack"]["recover"], "RECOVER_STATE_NONE");
    assert_eq!(
        ack["subscribe_ack"]["subscriptions"][0]["channel"],
        "chat.messages"
    );
    assert_eq!(ack["subscribe_ack"]["presence"][0]["occupancy"], 1);
    assert_eq!(
        ack["subscribe_ack"]["presence"][0]["clients"][0]["client_id"],
        "rust-test"
    );

    let mut bob = Ws::connect(addr, &["messageloop+proto", "messageloop"]);
    assert_eq!(
        bob.subprotocol.as_deref(),
        Some("messageloop"),
        "server order wins"
    );
    bob.handshake("2.0.0", "");
    let refused = {
        bob.send(json!({"id": "w1", "subscribe": {"subscriptions": [{"channel": "*.messages"}]}}));
        bob.recv()
    };
    assert_eq!(refused["id"], "w1");
    assert_eq!(refused["error"]["code"], "PATTERN_NOT_ROUTABLE");
    let ack = bob.recv_kind("subscribe_ack");
    assert_eq!(ack["subscribe_ack"].get("subscriptions"), None);
    bob.subscribe("w2", &["chat.**", "chat.*"]);

    publish_json(&mut alice, "3", "chat.messages", json!({"text": "hi"}));
    let ack = alice.recv_kind("publish_ack");
    assert_eq!(ack["id"], "3");
    assert_eq!(ack["publish_ack"]["id"], "3");
    assert!(ack["publish_ack"]["position"]["stream_epoch"].is_string());
    for client in [&mut alice, &mut bob] {
        let delivered = client.recv_kind("publication");
        let message = &delivered["publication"]["messages"][0];
        assert_eq!(message["channel"], "chat.messages");
        assert_eq!(message["payload"]["json"], json!({"text": "hi"}));
        assert_eq!(message["payload"]["content_type"], "application/json");
        assert_ne!(delivered["id"], "3");
    }
    publish_json(&mut alice, "4", "chat.deep.er", json!({"n": 2}));
    let delivered = bob.recv_kind("publication");
    assert_eq!(
        delivered["publication"]["messages"][0]["channel"],
        "chat.deep.er"
    );
    bob.send(json!({"id": "5", "ping": {}}));
    let pong = bob.recv_kind("pong");
    assert_eq!(pong["id"], "5");
    assert!(pong["time"].is_string());
}

#[test]
fn connect_rules_and_close_codes() {
    let (_gateway, addr, _) = start("");
    let mut early = Ws::connect(addr, JSON);
    early.send(json!({"id": "1", "ping": {}}));
    let (code, reason, before) = early.expect_close();
    assert_eq!((code, reason.as_str()), (3500, "invalid token"));
    assert!(before.is_empty());

    let mut twice = client(addr, "2.0.0");
    twice.send_text("{not json");
    let bad = twice.recv();
    assert_eq!(bad["error"]["code"], "BAD_REQUEST");
    assert_eq!(bad["error"]["type"], "client_error");
    twice.send(json!({"id": "p", "ping": {}}));
    assert_eq!(
        twice.recv_kind("pong")["id"],
        "p",
        "still connected after a malformed frame"
    );
    twice.send(json!({"id": "c2", "connect": {"version": "2.0.0"}}));
    assert_eq!(twice.expect_close().0, 3501);

    let mut version = Ws::connect(addr, JSON);
    version.send(json!({"id": "v", "connect": {"version": "3.0.0"}}));
    let (code, _, before) = version.expect_close();
    assert_eq!(code, 3514);
    assert_eq!(before[0]["error"]["code"], "VERSION_UNSUPPORTED");

    let mut big = client(addr, "2.0.0");
    big.send_text(&format!(
        "{{\"id\":\"x\",\"ping\":{{}},\"pad\":\"{}\"}}",
        "a".repeat(70_000)
    ));
    assert_eq!(big.expect_close().0, 1009);

    let mut empty = client(addr, "2.0.0");
    empty.send(json!({"id": "e"}));
    assert_eq!(empty.expect_close().0, 3501);
}

#[test]
fn auth_failures_close_with_3500() {
    let (_gateway, addr, _) = start(
        "[messageloop.auth]\nrequired = true\n[[messageloop.auth.tokens]]\ntoken = \"good\"\nidentity = { name = \"alice\" }\n",
    );
    for (token, code) in [("", "AUTH_REQUIRED"), ("wrong", "AUTH_ERROR")] {
        let mut ws = Ws::connect(addr, JSON);
        ws.send(json!({"id": "c", "connect": {"version": "2.0.0", "token": token}}));
        let (close, reason, before) = ws.expect_close();
        assert_eq!((close, reason.as_str()), (3500, "invalid token"));
        assert_eq!(before[0]["id"], "c");
        assert_eq!(before[0]["error"]["code"], code);
        assert_eq!(before[0]["error"]["type"], "auth_error");
    }
    let mut ws = Ws::connect(addr, JSON);
    ws.handshake("2.0.0", "good");
}

#[test]
fn websocket_over_tls() {
    let gateway =
        Gatewayd::start(&(config_enabling(&["messageloop.ws"]) + "tls = { self_signed = true }\n"));
    let listeners = gateway.get_json("/api/listeners");
    assert_eq!(listeners[0]["transport"], "wss", "{listeners}");
    let mut ws = Ws::connect_tls(gateway.listener("messageloop.ws"), JSON);
    ws.handshake("2.0.0", "");
    ws.send(json!({"id": "p", "ping": {}}));
    assert_eq!(ws.recv_kind("pong")["id"], "p");
}

/// gRPC over TLS carries HTTP/2 both ways: the server's SETTINGS come through the TLS session, and so does its
/// acknowledgement of the client's, which it could only send having read them.
#[test]
fn grpc_over_tls_speaks_http2_through_the_tls_session() {
    use std::io::{Read, Write};
    let gateway = Gatewayd::start(
        &(config_enabling(&["messageloop.grpc"]) + "tls = { self_signed = true }\n"),
    );
    let mut tcp =
        std::net::TcpStream::connect(gateway.listener("messageloop.grpc")).expect("connect");
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("read timeout");
    let mut tls = messageloop_client::trusting_tls_client();
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .expect("preface and an empty SETTINGS");
    let (mut settings, mut acked) = (false, false);
    for _ in 0..8 {
        let mut header = [0u8; 9];
        stream.read_exact(&mut header).expect("a frame header");
        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).expect("a frame payload");
        if header[3] == 4 {
            // SETTINGS on stream 0; flag 1 is the acknowledgement.
            assert_eq!(&header[5..9], &[0, 0, 0, 0], "SETTINGS off stream 0");
            if header[4] & 1 == 1 {
                acked = true;
            } else {
                settings = true;
            }
        }
        if settings && acked {
            return;
        }
    }
    panic!("no SETTINGS ({settings}) and acknowledgement ({acked}) from the server in its first 8 frames");
}

#[test]
fn shutdown_closes_with_3503() {
    let (gateway, addr, _) = start("");
    let mut ws = client(addr, "2.0.0");
    let status = gateway.terminate(std::time::Duration::from_secs(8));
    assert_eq!(status.code(), Some(0));
    let (code, reason, _) = ws.expect_close();
    assert_eq!((code, reason.as_str()), (3503, "force disconnect"));
}

#[test]
fn idle_connections_get_3511() {
    let (_gateway, addr, _) = start("[messageloop.heartbeat]\nidle_timeout_secs = 1\n");
    let mut ws = client(addr, "2.0.0");
    let (code, reason, _) = ws.expect_close();
    assert_eq!((code, reason.as_str()), (3511, "idle timeout"));
}

#[test]
fn g2_protobuf_over_websocket() {
    let (_gateway, addr, _) = start("");
    let mut ws = Ws::connect(addr, &["messageloop+proto"]);
    assert_eq!(ws.subprotocol.as_deref(), Some("messageloop+proto"));
    // The reference's worked-example bytes for Connect with id "1".
    let hex = "0a01311a190a0b676f2d636c69656e742d31120373646b2205322e302e30";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let ours = pw::InboundMessage {
        id: "1".into(),
        connect: Some(pw::Connect {
            client_id: "go-client-1".into(),
            client_type: "sdk".into(),
            version: "2.0.0".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(prost::Message::encode_to_vec(&ours), bytes);
    ws.send_binary(bytes);
    let connected = ws.recv_proto();
    assert_eq!(connected.id, "1");
    assert!(!connected.connected.unwrap().session_id.is_empty());
    ws.send_proto(&pw::InboundMessage {
        id: "2".into(),
        subscribe: Some(pw::Subscribe {
            subscriptions: vec![pw::Subscription {
                channel: "hist.bin".into(),
            }],
        }),
        ..Default::default()
    });
    assert!(ws.recv_proto().subscribe_ack.is_some());
    ws.send_proto(&pw::InboundMessage {
        id: "3".into(),
        publish: Some(pw::Publish {
            channel: "hist.bin".into(),
            payload: Some(pw::Payload {
                content_type: "application/octet-stream".into(),
                binary: Some(vec![0, 1, 2, 255]),
                text: None,
            }),
        }),
        ..Default::default()
    });
    let mut ack = None;
    let mut publication = None;
    while ack.is_none() || publication.is_none() {
        let message = ws.recv_proto();
        if let Some(a) = message.publish_ack {
            ack = Some(a);
        } else if let Some(p) = message.publication {
            publication = Some(p);
        }
    }
    let ack = ack.unwrap();
    assert_eq!(ack.id, "3");
    assert_eq!(ack.position.unwrap().offset, Some(1));
    let message = &publication.unwrap().messages[0];
    assert_eq!(message.id, "hist.bin-1");
    assert_eq!(
        message.payload.as_ref().unwrap().binary,
        Some(vec![0, 1, 2, 255])
    );
    ws.send_binary(vec![0xff, 0xff, 0xff]);
    let error = ws.recv_proto().error.expect("error");
    assert_eq!(error.code, "BAD_REQUEST");
}

#[test]
fn g1_json_acks_offsets_and_epoch() {
    let (_gateway, addr, _) = start("");
    let mut ws = Ws::connect(addr, JSON);
    // Version 1.0.0 may be G0 or G1: until a message tells, replies hold only what both define (the G0 SDK
    // rejects unknown keys such as `epoch`).
    let connected = ws.handshake("1.0.0", "");
    assert_eq!(connected["connected"].get("epoch"), None, "{connected}");
    let ack = ws.subscribe("s", &["hist.g1"]);
    assert_eq!(ack["subscribe_ack"].get("epoch"), None, "{ack}");
    assert_eq!(ack["subscribe_ack"].get("presence"), None, "{ack}");
    assert_eq!(ack["subscribe_ack"].get("recover"), None);
    // A G1 publish (a `payload`, no CloudEvent) settles it: from here on replies are G1's.
    ws.send(json!({"id": "p", "publish": {"channel": "hist.g1", "payload": {"text": "one"}}}));
    let ack = ws.recv_kind("publish_ack");
    assert_eq!(ack["publish_ack"]["offset"], "1");
    let delivered = ws.recv_kind("publication");
    let message = &delivered["publication"]["messages"][0];
    assert_eq!(message["offset"], "1");
    assert_eq!(message["payload"]["text"], "one");
    assert_eq!(message.get("position"), None);
    let epoch = ws.subscribe("s2", &["hist.g1"])["subscribe_ack"]["epoch"].clone();
    assert!(epoch.is_string(), "{epoch}");

    // G1 recovery rides in the ack: publications plus recover_results.
    for (cursor_epoch, recovered) in [(epoch.clone(), true), (json!("999"), false)] {
        let mut late = client(addr, "1.0.0");
        late.send(
            json!({"id": "r", "subscribe": {"subscriptions": [{"channel": "hist.g1",
            "recover": true, "offset": "0", "epoch": cursor_epoch}]}}),
        );
        let ack = late.recv_kind("subscribe_ack");
        let ack = &ack["subscribe_ack"];
        assert_eq!(
            ack["publications"][0]["messages"][0]["payload"]["text"], "one",
            "{ack}"
        );
        let result = &ack["recover_results"][0];
        assert_eq!(result["channel"], "hist.g1");
        assert_eq!(result["offset"], "1");
        assert_eq!(result.get("recovered").is_some(), recovered, "{result}");
        assert_eq!(result.get("truncated").is_some(), !recovered, "{result}");
    }
}

/// A G0 Go SDK over WebSocket JSON only connects and subscribes, which a G1 SDK sends alike: every reply must
/// still read strictly as G0 (the test client checks each one), and deliveries from a G2 publisher arrive as
/// CloudEvents.
#[test]
fn g0_json_subscriber_gets_only_g0_fields() {
    let (_gateway, addr, _) = start("");
    let mut g0 = Ws::connect(addr, &["messageloop+json"]);
    let connected = g0.handshake("1.0.0", "");
    assert_eq!(
        connected["connected"].as_object().map(|c| c.len()),
        Some(1),
        "only session_id: {connected}"
    );
    let ack = g0.subscribe("s", &["g0.sub"]);
    assert_eq!(
        ack["subscribe_ack"],
        json!({"subscriptions": [{"channel": "g0.sub"}]})
    );
    let mut g2 = client(addr, "2.0.0");
    g2.send(json!({"id": "p", "publish": {"channel": "g0.sub",
        "payload": {"content_type": "text/plain", "text": "from g2"}}}));
    g2.recv_kind("publish_ack");
    let delivered = g0.recv_kind("publication");
    let event = &delivered["publication"]["messages"][0]["payload"];
    assert_eq!(event["source"], "g0.sub");
    let data = binary_data(event);
    assert_eq!(data, b"from g2");
}

#[test]
fn g0_cloudevents_in_and_out() {
    let (_gateway, addr, _) = start("");
    let mut g0 = Ws::connect(addr, &["json"]);
    g0.handshake("1.0.0", "");
    g0.subscribe("s", &["chat.g0"]);
    let mut g2 = client(addr, "2.0.0");
    g2.subscribe("s", &["chat.g0"]);
    g0.send(json!({"id": "p", "channel": "chat.g0", "publish": {
        "id": "3b6d", "source": "messageloop/go-sdk", "spec_version": "1.0", "type": "chat.message",
        "attributes": {"datacontenttype": {"ce_string": "application/json"}},
        "binary_data": "eyJ0ZXh0IjoiaGkifQ=="}}));
    g0.recv_kind("publish_ack");
    let delivered = g0.recv_kind("publication");
    let event = &delivered["publication"]["messages"][0]["payload"];
    assert_eq!(event["source"], "chat.g0");
    assert_eq!(event["spec_version"], "1.0");
    assert_eq!(event["type"], "chat.g0.message");
    let data = binary_data(event);
    assert_eq!(
        serde_json::from_slice::<Value>(&data).unwrap(),
        json!({"text": "hi"})
    );
    let seen = g2.recv_kind("publication");
    let message = &seen["publication"]["messages"][0];
    assert_eq!(message["payload"]["json"], json!({"text": "hi"}));
    assert_eq!(message["metadata"]["entries"]["ce-type"], "chat.message");
    assert_eq!(message["metadata"]["entries"]["ce-id"], "3b6d");
}

#[test]
fn history_recovery_after_reconnect() {
    let (_gateway, addr, _) = start("");
    let mut first = client(addr, "2.0.0");
    first.subscribe("s", &["hist.room"]);
    let mut position = Value::Null;
    for n in 1..=3 {
        publish_json(&mut first, &format!("p{n}"), "hist.room", json!({"n": n}));
        position = first.recv_kind("publish_ack")["publish_ack"]["position"].clone();
        first.recv_kind("publication");
    }
    assert_eq!(position["offset"], "3");
    first.close();
    let mut again = client(addr, "2.0.0");
    again.send(
        json!({"id": "r", "subscribe": {"subscriptions": [{"channel": "hist.room",
        "recover": true, "cursor": {"stream_epoch": position["stream_epoch"], "offset": "1"}}]}}),
    );
    let ack = again.recv_kind("subscribe_ack");
    assert_eq!(ack["subscribe_ack"]["recover"], "RECOVER_STATE_PENDING");
    let mut replayed = Vec::new();
    loop {
        let frame = again.recv();
        if frame.get("recover_complete").is_some() {
            assert_eq!(frame["id"], "r");
            assert_eq!(frame["recover_complete"]["position"]["offset"], "3");
            break;
        }
        if let Some(messages) = frame["publication"]["messages"].as_array() {
            assert_eq!(frame["id"], "r");
            assert_eq!(messages[0]["replay"], true);
            replayed.push(messages[0]["id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(replayed, ["hist.room-2", "hist.room-3"]);
}

#[test]
fn presence_join_and_leave() {
    let (_gateway, addr, _) = start("");
    let mut alice = client(addr, "2.0.0");
    alice.subscribe("s", &["lobby"]);
    let mut bob = client(addr, "2.0.0");
    let ack = bob.subscribe("s", &["lobby"]);
    assert_eq!(ack["subscribe_ack"]["presence"][0]["occupancy"], 2);
    let join = alice.recv_kind("presence_event");
    assert_eq!(join["presence_event"]["action"], "join");
    bob.close();
    let leave = alice.recv_kind("presence_event");
    assert_eq!(leave["presence_event"]["action"], "leave");
    alice.send(json!({"id": "q", "presence_query": {"channel": "lobby"}}));
    let snapshot = alice.recv_kind("presence");
    assert_eq!(snapshot["id"], "q");
    assert_eq!(snapshot["presence"]["occupancy"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_g2_session_rpc_and_disconnect() {
    let (gateway, addr) = start_in_tokio(
        "[messageloop.auth]\n[[messageloop.auth.tokens]]\ntoken = \"good\"\nidentity = { name = \"alice\" }\n",
    )
    .await;
    use grpc::g2::inbound_message::Envelope as In;
    use grpc::g2::outbound_message::Envelope as Out;
    let mut stream = grpc::open_g2(addr).await;
    stream.send(g2_connect("good")).await;
    expect_envelope!(stream, Out::Connected(_));
    stream
        .send(grpc::g2_inbound(
            "s",
            In::Subscribe(grpc::g2::Subscribe {
                subscriptions: vec![grpc::g2::Subscription {
                    channel: "grpc.room".into(),
                    ephemeral: true,
                    ..Default::default()
                }],
            }),
        ))
        .await;
    expect_envelope!(stream, Out::SubscribeAck(_));
    let payload = grpc::g2::Publish {
        channel: "grpc.room".into(),
        payload: Some(shared::Payload {
            content_type: "text/plain".into(),
            data: Some(shared::payload::Data::Text("hello".into())),
        }),
        ..Default::default()
    };
    stream
        .send(grpc::g2_inbound("p", In::Publish(payload)))
        .await;
    let mut got_ack = false;
    let mut got_publication = false;
    while !(got_ack && got_publication) {
        match stream.next().await.unwrap().envelope {
            Some(Out::PublishAck(ack)) => got_ack = ack.id == "p",
            Some(Out::Publication(publication)) => {
                got_publication = publication.messages[0].channel == "grpc.room"
            }
            other => panic!("{other:?}"),
        }
    }
    stream
        .send(grpc::g2_inbound(
            "r",
            In::RpcRequest(grpc::g2::RpcRequest {
                channel: "svc".into(),
                method: "echo".into(),
                ..Default::default()
            }),
        ))
        .await;
    let reply = stream.next().await.unwrap();
    assert_eq!(reply.id, "r");
    let Some(Out::Error(error)) = reply.envelope else {
        panic!("{reply:?}")
    };
    assert_eq!(error.code, "NO_PROXY");

    stream
        .send(grpc::g2_inbound(
            "c2",
            In::Connect(grpc::g2::Connect::default()),
        ))
        .await;
    let notice = stream.next().await.unwrap();
    let Some(Out::Error(error)) = notice.envelope else {
        panic!("{notice:?}")
    };
    assert_eq!(error.code, "DISCONNECT_ERROR");
    assert_eq!(error.r#type, "transport_error");
    let code = error.metadata.unwrap().fields["disconnect_code"].clone();
    assert_eq!(
        code.kind,
        Some(prost_types::value::Kind::NumberValue(3501.0))
    );
    assert!(stream.next().await.is_none(), "stream ends with status OK");

    let mut refused = grpc::open_g2(addr).await;
    refused.send(g2_connect("bad")).await;
    let first = refused.next().await.unwrap();
    assert_eq!(first.id, "c");
    assert!(matches!(first.envelope, Some(Out::Error(ref e)) if e.code == "AUTH_ERROR"));
    let Some(Out::Error(notice)) = refused.next().await.unwrap().envelope else {
        panic!()
    };
    assert_eq!(notice.message, "invalid token");
    assert!(refused.next().await.is_none());
    drop(gateway);
}

/// A method or service the listener does not have is answered UNIMPLEMENTED, and the listener keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unknown_methods_are_unimplemented() {
    let (gateway, addr) = start_in_tokio("").await;
    for path in [
        "/messageloop.client.v2.MessageLoopService/Publish",
        "/messageloop.client.v1.MessageLoopService/MessageLoopX",
        "/messageloop.v1.MessagingService/",
        "/messageloop.client.v3.MessageLoopService/MessageLoop",
    ] {
        let status = grpc::unary_status(addr, path).await;
        assert_eq!(
            status.code(),
            tonic::Code::Unimplemented,
            "{path}: {status:?}"
        );
    }
    grpc::connected_g2(addr).await;
    drop(gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_g1_and_g0_paths() {
    let (gateway, addr) = start_in_tokio("").await;
    {
        use grpc::g1::inbound_message::Envelope as In;
        use grpc::g1::outbound_message::Envelope as Out;
        let mut stream = grpc::open_g1(addr).await;
        let inbound = |id: &str, envelope: In| grpc::g1::InboundMessage {
            id: id.into(),
            time: 0,
            envelope: Some(envelope),
        };
        stream
            .send(inbound(
                "c",
                In::Connect(grpc::g1::Connect {
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
            ))
            .await;
        expect_envelope!(stream, Out::Connected(_));
        stream.send(inbound("p", In::Ping(grpc::g1::Ping {}))).await;
        let pong = stream.next().await.unwrap();
        assert_eq!(pong.id, "p");
        assert!(matches!(pong.envelope, Some(Out::Pong(_))));
    }
    {
        use grpc::g0::inbound_message::Envelope as In;
        use grpc::g0::outbound_message::Envelope as Out;
        let mut stream = grpc::open_g0(addr).await;
        let inbound = |id: &str, channel: &str, envelope: In| grpc::g0::InboundMessage {
            id: id.into(),
            channel: channel.into(),
            envelope: Some(envelope),
            ..Default::default()
        };
        stream
            .send(inbound(
                "c",
                "",
                In::Connect(grpc::g0::Connect {
                    client_id: "g0".into(),
                    ..Default::default()
                }),
            ))
            .await;
        expect_envelope!(stream, Out::Connected(_));
        stream
            .send(inbound(
                "s",
                "",
                In::Subscribe(grpc::g0::Subscribe {
                    subscriptions: vec![grpc::g0::Subscription {
                        channel: "g0.room".into(),
                        ..Default::default()
                    }],
                }),
            ))
            .await;
        expect_envelope!(stream, Out::SubscribeAck(_));
        let event = protocols::messageloop::bridge::cloudevent::CloudEvent {
            id: "e1".into(),
            source: "test".into(),
            spec_version: "1.0".into(),
            r#type: "demo".into(),
            data: Some(CeData::TextData("hey".into())),
            ..Default::default()
        };
        stream
            .send(inbound("p", "g0.room", In::Publish(event)))
            .await;
        let mut delivered = None;
        while delivered.is_none() {
            if let Some(Out::Publication(publication)) = stream.next().await.unwrap().envelope {
                delivered = publication.messages.into_iter().next();
            }
        }
        let event = delivered.unwrap().payload.unwrap();
        assert_eq!(event.source, "g0.room");
        assert_eq!(
            event.data,
            Some(CeData::BinaryData(bytes::Bytes::from_static(b"hey")))
        );
    }
    drop(gateway);
}

#[test]
fn python_client_json_ws_and_grpc() {
    let (_gateway, ws, grpc) = start("");
    python::pytest(
        "test_messageloop.py",
        &[
            ("MESSAGELOOP_WS", format!("ws://{ws}/ws")),
            ("MESSAGELOOP_GRPC", grpc.to_string()),
        ],
    );
}

#[test]
fn reload_applies_new_tokens_to_new_connections_and_keeps_open_ones() {
    let auth = |token: &str, name: &str| {
        format!(
            "[messageloop.auth]\nrequired = true\n[[messageloop.auth.tokens]]\ntoken = \"{token}\"\n\
             identity = {{ name = \"{name}\" }}\n"
        )
    };
    let (gateway, addr, _) = start(&auth("good", "alice"));
    let mut open = Ws::connect(addr, JSON);
    open.handshake("2.0.0", "good");
    open.subscribe("s", &["news"]);

    let reload = |ws_address: &str| -> Value {
        gateway.rewrite_and_reload(&config(&auth("fresh", "bob")).replace(
            "[messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"",
            &format!("[messageloop.ws]\nenabled = true\naddress = \"{ws_address}\""),
        ))
    };
    let report = reload("127.0.0.1:0");
    assert_reload(&report, &["messageloop.ws", "messageloop.grpc"], &[]);
    assert!(report["error"].is_null(), "{report}");

    let mut stale = Ws::connect(addr, JSON);
    stale.send(json!({"id": "c", "connect": {"version": "2.0.0", "token": "good"}}));
    let (close, _, before) = stale.expect_close();
    assert_eq!(close, 3500);
    assert_eq!(before[0]["error"]["code"], "AUTH_ERROR");

    let mut fresh = Ws::connect(addr, JSON);
    fresh.handshake("2.0.0", "fresh");
    publish_json(&mut fresh, "p", "news", json!({"after": "reload"}));
    fresh.recv_kind("publish_ack");
    // The connection opened before the reload is still up and still subscribed.
    let delivered = open.recv_kind("publication");
    assert_eq!(
        delivered["publication"]["messages"][0]["payload"]["json"],
        json!({"after": "reload"})
    );
    drop(stale);
    gateway.wait_for("/api/connections", "alice and bob", |all| {
        sorted_identities(all) == ["alice", "bob"]
    });

    // gRPC streams opened after the reload see the new tokens too.
    let grpc_addr = gateway.listener("messageloop.grpc");
    let runtime = current_thread_runtime();
    runtime.block_on(async {
        use grpc::g2::outbound_message::Envelope as Out;
        for (token, connected) in [("good", false), ("fresh", true)] {
            let mut stream = grpc::open_g2(grpc_addr).await;
            stream.send(g2_connect(token)).await;
            let first = stream.next().await.unwrap().envelope;
            if connected {
                assert!(matches!(first, Some(Out::Connected(_))), "{first:?}");
            } else {
                assert!(
                    matches!(first, Some(Out::Error(ref e)) if e.code == "AUTH_ERROR"),
                    "{first:?}"
                );
            }
        }
    });

    let report = reload("127.0.0.1:1");
    assert_eq!(
        report["restart_needed"],
        json!(["messageloop.ws.address"]),
        "{report}"
    );
}
