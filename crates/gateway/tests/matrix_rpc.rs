//! Request/reply across protocols against one gatewayd with all five listeners: a MessageLoop RPC answered by a
//! STOMP client, a Goomerang sync send answered by a STOMP-over-WebSocket client, and a STOMP `/temp-queue/`
//! request answered by a client on the STOMP WebSocket listener. Responders subscribe to the request topic
//! (`docs/topics.md`) and SEND to the MESSAGE's `reply-to` with its `correlation-id`. The legs are test clients,
//! not `clients::Client`: what is checked is each side's wire form (the request's headers and payload data, the
//! reply's `BytesValue` wrapping and sync flag, the inbox `reply-to`), which the one client hides.

mod support;

#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;
#[path = "matrix/stomp_ws.rs"]
mod stomp_ws;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use matrix_clients::*;
use messageloop_client::grpc;
use protocols::goomerang::{encode_command, Command, FrameHeaders};
use protocols::messageloop::pb::messageloop::shared::v2 as ml_shared;
use stomp_client::{frames, Frame, Peer};
use stomp_ws::StompWs;
use support::*;

use grpc::g2::inbound_message::Envelope as MlIn;
use grpc::g2::outbound_message::Envelope as MlOut;

/// Answers one request MESSAGE: SEND to its `reply-to` with its `correlation-id` and `body`.
fn reply_to(request: &Frame, body: &[u8]) -> Frame {
    let reply_to = request
        .get("reply-to")
        .expect("the request carries reply-to");
    assert!(
        reply_to.starts_with("/reply-queue/"),
        "an inbox reply-to: {reply_to}"
    );
    let correlation_id = request
        .get("correlation-id")
        .expect("the request carries correlation-id");
    Frame::new("SEND")
        .header("destination", reply_to)
        .header("correlation-id", correlation_id)
        .header("content-type", "text/plain")
        .header("x-answered-by", "stomp")
        .body(body)
}

#[test]
fn messageloop_rpc_is_answered_by_a_stomp_client() {
    let gateway = Gatewayd::start(&config(""));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    // Channel and method are one token each: `$rpc.messageloop.orders.get`, which STOMP names literally.
    let mut responder = Peer::connect(addrs.stomp);
    responder.send(&frames::subscribe(
        "/topic/$rpc.messageloop.orders.get",
        "auto",
        "rpc",
    ));
    wait_subscribed(&gateway, "$rpc.messageloop.orders.get", 1, 0);
    let mut requester = rt.block_on(async {
        let stream = grpc::open_g2(addrs.messageloop_grpc).await;
        stream
            .send(grpc::g2_inbound(
                "c",
                MlIn::Connect(grpc::g2::Connect {
                    version: "2.0.0".into(),
                    ..Default::default()
                }),
            ))
            .await;
        let mut stream = stream;
        assert!(matches!(
            stream.next().await.expect("connected").envelope,
            Some(MlOut::Connected(_))
        ));
        stream
            .send(grpc::g2_inbound(
                "r1",
                MlIn::RpcRequest(grpc::g2::RpcRequest {
                    channel: "orders".into(),
                    method: "get".into(),
                    payload: Some(ml_shared::Payload {
                        content_type: "text/plain".into(),
                        data: Some(ml_shared::payload::Data::Text("order 42?".into())),
                    }),
                    metadata: Some(ml_shared::Metadata {
                        entries: [("x-request".to_owned(), "1".to_owned())].into(),
                    }),
                }),
            ))
            .await;
        stream
    });
    let request = responder.expect_frame(WAIT);
    assert_eq!(request.command, "MESSAGE");
    assert_eq!(request.body, b"order 42?");
    assert_eq!(request.get("content-type"), Some("text/plain"));
    assert_eq!(request.get("x-request"), Some("1"));
    responder.send(&reply_to(&request, b"order 42: shipped"));
    let reply = rt.block_on(async {
        loop {
            let out = requester.next().await.expect("stream open");
            if let Some(MlOut::RpcReply(reply)) = out.envelope {
                assert_eq!(out.id, "r1");
                return reply;
            }
        }
    });
    assert!(reply.error.is_none(), "{reply:?}");
    let payload = reply.payload.expect("reply payload");
    assert_eq!(payload.content_type, "text/plain");
    assert_eq!(
        payload.data,
        Some(ml_shared::payload::Data::Text("order 42: shipped".into()))
    );
    let metadata = reply.metadata.expect("reply metadata").entries;
    assert_eq!(
        metadata.get("x-answered-by").map(String::as_str),
        Some("stomp")
    );
}

#[test]
fn goomerang_sync_send_is_answered_by_a_stomp_websocket_client() {
    let gateway = Gatewayd::start(&config(""));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    // The kind is one token of `$rpc.goomerang.<kind>` (its dots escaped); internal names are written in
    // canonical form in every protocol, so the STOMP responder names the request topic as gatewayd prints it.
    const KIND: &str = "goomerang.example.MessageV1";
    const REQUESTS: &str = "$rpc.goomerang.goomerang%2Eexample%2EMessageV1";
    let mut responder = StompWs::connect(addrs.stomp_ws);
    responder.send(
        &Frame::new("SUBSCRIBE")
            .header("id", "sync")
            .header("destination", &format!("/topic/{REQUESTS}"))
            .header("ack", "auto"),
    );
    wait_subscribed(&gateway, REQUESTS, 1, 0);
    let mut requester = rt.block_on(goomerang_client::GoomerangClient::connect(addrs.goomerang));
    let mut user = FrameHeaders::new();
    user.insert("x-request", "2");
    rt.block_on(requester.send_raw(encode_command(
        &Command::SendSync {
            uuid: "uuid-7".into(),
            kind: KIND.into(),
            payload: Bytes::from_static(b"\x0a\x03abc"),
            headers: user,
        },
        SystemTime::now(),
    )));
    let request = responder.receive();
    assert_eq!(request.command, "MESSAGE");
    assert_eq!(request.body, b"\x0a\x03abc");
    assert_eq!(request.get("goomerang-kind"), Some(KIND));
    assert_eq!(request.get("content-type"), Some("application/x-protobuf"));
    assert_eq!(request.get("correlation-id"), Some("uuid-7"));
    assert_eq!(request.get("x-request"), Some("2"));
    responder.send(&reply_to(&request, b"pong"));
    let reply = rt.block_on(requester.recv_frame());
    assert!(reply.is_sync, "{reply:?}");
    assert_eq!(reply.uuid, "uuid-7");
    assert_eq!(reply.kind, BYTES_VALUE, "a foreign reply is wrapped");
    let body = <Vec<u8> as prost::Message>::decode(reply.payload.as_ref()).expect("BytesValue");
    assert_eq!(body, b"pong");
    let headers = goomerang_client::headers(&reply);
    assert!(headers.contains(&("content-type".into(), "text/plain".into())));
    assert!(headers.contains(&("x-answered-by".into(), "stomp".into())));
}

#[test]
fn stomp_temp_queue_request_is_answered_on_another_listener() {
    let gateway = Gatewayd::start(&config(""));
    let addrs = Addrs::of(&gateway);
    let mut responder = StompWs::connect(addrs.stomp_ws);
    responder.send(
        &Frame::new("SUBSCRIBE")
            .header("id", "svc")
            .header("destination", "/queue/matrix.echo"),
    );
    wait_subscribed(&gateway, "matrix.echo", 0, 1);
    let mut requester = Peer::connect(addrs.stomp);
    requester.send(
        &frames::send_string("/queue/matrix.echo", "ping")
            .header("reply-to", "/temp-queue/answers")
            .header("correlation-id", "q-1"),
    );
    let request = responder.receive();
    assert_eq!(request.body, b"ping");
    responder.send(&reply_to(&request, b"\x00binary\xffanswer"));
    let reply = requester.expect_frame(WAIT);
    assert_eq!(reply.command, "MESSAGE");
    assert_eq!(reply.get("destination"), Some("/temp-queue/answers"));
    assert_eq!(reply.get("subscription"), Some("/temp-queue/answers"));
    assert_eq!(reply.get("correlation-id"), Some("q-1"));
    assert_eq!(reply.body, b"\x00binary\xffanswer");
    assert!(matches!(
        requester.receive(Duration::from_millis(100)),
        stomp_client::Received::Nothing
    ));
}
