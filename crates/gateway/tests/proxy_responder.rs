//! The MessageLoop backend proxy answering requests from other protocols: gatewayd with `[[messageloop.proxy]]`
//! routes pointing at an HTTP backend (`support/proxy_backend.rs`) and at a backend that is down; STOMP SENDs
//! with `reply-to` and Goomerang `SendSync`s to topics the routes claim get the backend's answer or an error
//! reply (`rpc-error` header); a topic no route claims is still answered by a STOMP responder; a MessageLoop
//! client's own RPC reaches the backend once, never through the bus; a reload starts and stops the responder.

mod support;

#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/proxy_backend.rs"]
mod proxy_backend;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use goomerang_client::GoomerangClient;
use messageloop_client::{Ws, WAIT};
use protocols::goomerang::{encode_command, Command, FrameHeaders};
use proxy_backend::ProxyBackend;
use serde_json::{json, Value};
use stomp_client::{frames, Frame, Peer, Received};
use support::*;

/// The Goomerang kind a literal route claims: channel `goomerang.example`, method `MessageV1`.
const KIND: &str = "goomerang.example.MessageV1";
const RESPONDER_REQUESTS: &str = "gatewayd_proxy_bus_requests_total";

/// The `app` backend claims `orders.*` (any method), the literal routes `svc`/`echo`,
/// `goomerang.example`/`MessageV1` and `goomerang.example`/`fail`, with a 2 s timeout (only `slow`'s 3 s runs
/// into it); the `down` backend claims `down`.
fn proxies(backend: &ProxyBackend) -> String {
    format!(
        "[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"{}\"\ntimeout_ms = 2000\n\
         routes = [{{ channel = \"orders.*\", method = \"*\" }}, {{ channel = \"svc\", method = \"echo\" }}, \
         {{ channel = \"goomerang.example\", method = \"MessageV1\" }}, \
         {{ channel = \"goomerang.example\", method = \"fail\" }}]\n\
         [[messageloop.proxy]]\nname = \"down\"\nendpoint = \"http://127.0.0.1:{}/\"\n\
         routes = [{{ channel = \"down\", method = \"*\" }}]\n",
        backend.endpoint(),
        closed_port()
    )
}

/// STOMP, Goomerang and MessageLoop WebSocket listeners, and `proxies`.
fn config(proxies: &str) -> String {
    format!(
        "{}[messageloop]\nrpc_timeout_secs = 5\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n{proxies}",
        config_enabling(&["stomp.tcp", "goomerang"])
    )
}

/// A new proxy backend, and gatewayd routing to it.
fn start() -> (ProxyBackend, Gatewayd) {
    let backend = ProxyBackend::start();
    let gateway = Gatewayd::start(&config(&proxies(&backend)));
    (backend, gateway)
}

/// A STOMP requester with a temp queue for replies.
fn requester(gateway: &Gatewayd) -> Peer {
    Peer::connect(gateway.listener("stomp.tcp"))
}

/// SENDs a JSON request to `destination` with `reply-to` and `correlation-id` and returns the reply.
fn request(peer: &mut Peer, destination: &str, correlation: &str) -> Frame {
    peer.send(
        &frames::send_string(destination, r#"{"q":1}"#)
            .header("content-type", "application/json")
            .header("reply-to", "/temp-queue/answers")
            .header("correlation-id", correlation)
            .header("x-req", "r-1"),
    );
    let reply = peer.expect_frame(WAIT);
    assert_eq!(reply.command, "MESSAGE", "{reply:?}");
    assert_eq!(reply.get("destination"), Some("/temp-queue/answers"));
    assert_eq!(reply.get("correlation-id"), Some(correlation));
    reply
}

fn body_json(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.body).unwrap_or_else(|_| panic!("a JSON body: {frame:?}"))
}

#[test]
fn stomp_send_with_reply_to_a_claimed_topic_gets_the_backend_answer() {
    let (backend, gateway) = start();
    let mut peer = requester(&gateway);

    // A plain topic: channel = all but the last token, method = the last token; `orders.*` spans dots.
    let reply = request(&mut peer, "/topic/orders.eu.create", "c-1");
    assert_eq!(reply.get("rpc-error"), None, "{reply:?}");
    assert_eq!(reply.get("content-type"), Some("application/json"));
    assert_eq!(body_json(&reply), json!({"q": 1}));
    assert_eq!(reply.get("x-from"), Some("backend"));
    assert_eq!(reply.get("x-req"), Some("r-1"), "headers go as metadata");
    let calls = backend.calls("orders.eu", "create");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["payload"],
        json!({"contentType": "application/json", "json": {"q": 1}})
    );

    // The MessageLoop RPC topic, which a literal route claims.
    let reply = request(&mut peer, "/topic/$rpc.messageloop.svc.echo", "c-2");
    assert_eq!(reply.get("rpc-error"), None, "{reply:?}");
    assert_eq!(body_json(&reply), json!({"q": 1}));
    assert_eq!(backend.calls("svc", "echo").len(), 1);

    // A SEND without reply-to is a plain publish: the backend is not called.
    peer.send(&frames::send_string("/topic/orders.eu.notify", "x").header("receipt", "n-1"));
    assert_eq!(peer.expect_frame(WAIT).command, "RECEIPT");
    assert_eq!(backend.calls("orders.eu", "notify").len(), 0);
    assert_eq!(
        gateway.metric(RESPONDER_REQUESTS, &[("outcome", "answered")]),
        2.0
    );
}

#[test]
fn goomerang_send_sync_gets_the_backend_answer_and_its_error() {
    let (backend, gateway) = start();
    let rt = current_thread_runtime();
    let mut client = rt.block_on(GoomerangClient::connect(gateway.listener("goomerang.ws")));
    let send_sync = |uuid: &str, kind: &str| {
        let mut user = FrameHeaders::new();
        user.insert("x-request", "2");
        encode_command(
            &Command::SendSync {
                uuid: uuid.into(),
                kind: kind.into(),
                payload: goomerang_client::message_v1("hello"),
                headers: user,
            },
            SystemTime::now(),
        )
    };

    rt.block_on(client.send_raw(send_sync("uuid-1", KIND)));
    let reply = rt.block_on(client.recv_frame());
    assert!(reply.is_sync, "{reply:?}");
    assert_eq!(reply.uuid, "uuid-1");
    // The backend echoed the payload and the metadata, `goomerang-kind` included: a native reply.
    assert_eq!(reply.kind, KIND);
    assert_eq!(reply.payload, goomerang_client::message_v1("hello"));
    let headers = goomerang_client::headers(&reply);
    assert!(
        headers.contains(&("x-from".into(), "backend".into())),
        "{headers:?}"
    );
    let calls = backend.calls("goomerang.example", "MessageV1");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["payload"]["contentType"], "application/x-protobuf");

    rt.block_on(client.send_raw(send_sync("uuid-2", "goomerang.example.fail")));
    let reply = rt.block_on(client.recv_frame());
    assert!(reply.is_sync, "{reply:?}");
    assert_eq!(reply.uuid, "uuid-2");
    let headers = goomerang_client::headers(&reply);
    assert!(
        headers.contains(&("rpc-error".into(), "ORDER_MISSING".into())),
        "{headers:?}"
    );
}

#[test]
fn backend_error_down_and_timeout_give_error_replies() {
    let (_backend, gateway) = start();
    let mut peer = requester(&gateway);

    let failed = request(&mut peer, "/topic/orders.eu.fail", "e-1");
    assert_eq!(failed.get("rpc-error"), Some("ORDER_MISSING"), "{failed:?}");
    assert_eq!(failed.get("content-type"), Some("text/plain"));
    assert_eq!(failed.body, b"no such order");

    let down = request(&mut peer, "/topic/down.get", "e-2");
    assert_eq!(down.get("rpc-error"), Some("PROXY_ERROR"), "{down:?}");
    assert!(!down.body.is_empty(), "the reason is the body");

    let slow = request(&mut peer, "/topic/orders.eu.slow", "e-3");
    assert_eq!(slow.get("rpc-error"), Some("RPC_TIMEOUT"), "{slow:?}");

    for (outcome, count) in [("backend_error", 1.0), ("failed", 1.0), ("timeout", 1.0)] {
        assert_eq!(
            gateway.metric(RESPONDER_REQUESTS, &[("outcome", outcome)]),
            count,
            "{outcome}"
        );
    }
}

#[test]
fn an_unclaimed_topic_is_answered_by_a_bus_responder_not_the_proxy() {
    let (backend, gateway) = start();
    let stomp = gateway.listener("stomp.tcp");
    // The responder listens on `orders.#` for the route `orders.*`, but `orders.get` is channel `orders`,
    // which the glob does not match: not claimed.
    let mut responder = Peer::connect(stomp);
    responder.send(&frames::subscribe("/queue/orders.get", "auto", "svc"));
    wait_members(&gateway, "orders.get", 1);
    let mut peer = Peer::connect(stomp);
    peer.send(
        &frames::send_string("/queue/orders.get", "invoice?")
            .header("reply-to", "/temp-queue/answers")
            .header("correlation-id", "b-1"),
    );
    let request = responder.expect_frame(WAIT);
    assert_eq!(request.body, b"invoice?");
    let reply_to = request.get("reply-to").expect("reply-to");
    responder.send(
        &Frame::new("SEND")
            .header("destination", reply_to)
            .header("correlation-id", "b-1")
            .header("x-answered-by", "stomp")
            .body(b"invoice 7"),
    );
    let reply = peer.expect_frame(WAIT);
    assert_eq!(reply.get("x-answered-by"), Some("stomp"), "{reply:?}");
    assert_eq!(reply.body, b"invoice 7");
    assert!(matches!(
        peer.receive(Duration::from_millis(300)),
        Received::Nothing
    ));
    assert_eq!(backend.call_count(), 0);
}

#[test]
fn a_messageloop_rpc_reaches_the_backend_once_never_through_the_bus() {
    let (backend, gateway) = start();
    let addr: SocketAddr = gateway.listener("messageloop.ws");
    let mut ws = Ws::connect(addr, &["messageloop+json"]);
    ws.handshake("2.0.0", "");
    ws.send(json!({"id": "r1", "rpc_request": {
        "channel": "svc",
        "method": "echo",
        "payload": {"content_type": "text/plain", "text": "hi"},
    }}));
    let reply = loop {
        let reply = ws.recv();
        if reply["id"] == "r1" {
            break reply;
        }
    };
    assert_eq!(reply["rpc_reply"]["payload"]["text"], "hi", "{reply}");
    assert_eq!(backend.calls("svc", "echo").len(), 1);
    assert_eq!(
        gateway.metric(RESPONDER_REQUESTS, &[]),
        0.0,
        "the responder took nothing: it counts a request before it answers"
    );
}

#[test]
fn a_reload_starts_and_stops_the_responder() {
    let backend = ProxyBackend::start();
    let gateway = Gatewayd::start(&config(""));
    let mut peer = requester(&gateway);
    let unanswered = |peer: &mut Peer| {
        peer.send(
            &frames::send_string("/topic/orders.eu.create", "{}")
                .header("reply-to", "/temp-queue/answers")
                .header("correlation-id", "none"),
        );
        assert!(matches!(
            peer.receive(Duration::from_millis(300)),
            Received::Nothing
        ));
    };
    unanswered(&mut peer);

    let report = gateway.rewrite_and_reload(&config(&proxies(&backend)));
    assert!(report["error"].is_null(), "{report}");
    assert_reload(&report, &["messageloop.ws"], &[]);
    let reply = request(&mut peer, "/topic/orders.eu.create", "c-1");
    assert_eq!(body_json(&reply), json!({"q": 1}));

    assert!(gateway.rewrite_and_reload(&config(""))["error"].is_null());
    unanswered(&mut peer);
    assert_eq!(backend.calls("orders.eu", "create").len(), 1);
}
