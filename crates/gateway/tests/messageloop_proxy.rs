//! The MessageLoop backend proxy over real sockets: gatewayd started with `[[messageloop.proxy]]` entries
//! pointing at an HTTP backend written here (it records every call and answers by method or token), and
//! MessageLoop WebSocket JSON clients. RPC answers, backend errors, timeouts, a backend that is down, the bus
//! fallback (a STOMP responder) and `rpc_fallback = "none"`, Connect tokens, subscribe and publish ACLs
//! checked by the backend and the lifecycle hooks it hears; then the same calls to a gRPC backend
//! (`messageloop.proxy.v2.ProxyService`, a tonic server written here); and both behind TLS with a test CA.

mod support;

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/pki.rs"]
mod pki;
#[path = "support/proxy_backend.rs"]
mod proxy_backend;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use messageloop_client::{Ws, WAIT};
use serde_json::{json, Value};
use stomp_client::{frames, Frame, Peer};
use support::*;

const JSON: &[&str] = &["messageloop+json"];

/// One call the backend received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// An HTTP backend on 127.0.0.1 in its own runtime, stopped when dropped.
struct Backend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    runtime: tokio::runtime::Runtime,
}

impl Backend {
    fn start() -> Backend {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/{*path}", post(handle))
            .with_state(seen.clone());
        let (addr, runtime) = proxy_backend::serve_on_loopback(app);
        Backend {
            addr,
            seen,
            runtime,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/proxy", self.addr)
    }

    fn endpoint_at(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    /// The calls whose body has `key` equal to `value`.
    fn calls(&self, key: &str, value: &str) -> Vec<Seen> {
        self.calls_where(|seen| seen.body[key] == value)
    }

    fn calls_where(&self, check: impl Fn(&Seen) -> bool) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("seen")
            .iter()
            .filter(|seen| check(seen))
            .cloned()
            .collect()
    }

    /// Polls until a call passes `check` (hooks arrive after the client saw their cause), then returns it.
    fn wait_call(&self, what: &str, check: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(seen) = self.calls_where(&check).into_iter().next() {
                return seen;
            }
            assert!(Instant::now() < deadline, "the backend never saw {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Answers RPCs by method, Connect tokens by token, hooks (a `username`, or the path `unsub`) with an empty
/// 200 (after 10 s on the path `hang`), and subscribe/publish ACL checks by channel: refused when it
/// contains `denied`, or contains `member` and comes without a token.
async fn handle(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], String) {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().expect("seen").push(Seen {
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    let json_type = [(header::CONTENT_TYPE, "application/json")];
    if path == "hang" {
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let hook = body.get("username").is_some() || path == "unsub" || path == "hang";
    let reply = match (body["method"].as_str(), body["token"].as_str()) {
        (Some("get"), _) => {
            let mut entries = json!({"x-from": "backend"});
            if let Some(request) = body["metadata"]["entries"]["x-req"].as_str() {
                entries["x-req-echo"] = json!(request);
            }
            json!({
                "id": body["id"],
                "payload": {"contentType": "application/json", "json": {"echo": body["payload"]["json"]}},
                "metadata": {"entries": entries},
            })
        }
        (Some("fail"), _) => json!({
            "id": body["id"],
            "error": {"code": "ORDER_MISSING", "type": "app_error", "message": "no such order"},
        }),
        (Some("slow"), _) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            json!({"id": body["id"]})
        }
        (Some("huge"), _) => {
            let text = "x".repeat(4 * 1024 * 1024);
            json!({"id": body["id"], "payload": {"text": text}})
        }
        (Some("status"), _) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, json_type, "{}".into());
        }
        _ if hook => json!({}),
        _ if body.get("channel").is_some() => acl_answer(&body),
        (_, Some("good-token")) => json!({"user_info": {"id": "user-7"}}),
        (_, Some("banned")) => json!({
            "error": {"code": "BANNED", "type": "auth_error", "message": "you are banned"},
        }),
        _ => return (StatusCode::BAD_REQUEST, json_type, "{}".into()),
    };
    (StatusCode::OK, json_type, reply.to_string())
}

/// An ACL verdict: refused with the backend's own error when the channel contains `denied`, or `member`
/// without a token.
fn acl_answer(body: &Value) -> Value {
    let channel = body["channel"].as_str().unwrap_or_default();
    if channel.contains("denied") || (channel.contains("member") && body.get("token").is_none()) {
        json!({"error": {"code": "NOT_MEMBER", "type": "app_error", "message": "not a member"}})
    } else {
        json!({})
    }
}

fn config(extra: &str) -> String {
    format!(
        "{}[messageloop]\nrpc_timeout_secs = 5\n{extra}\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        config_enabling(&["stomp.tcp"])
    )
}

/// A new backend, and gatewayd with it as the app backend (RPC on `orders.*`, a 2 s timeout that only
/// the `slow` method's 3 s runs into, and `$authenticate`) and a backend that is down (RPC on `down.*`).
fn start(settings: &str) -> (Backend, Gatewayd, SocketAddr) {
    let backend = Backend::start();
    let proxies = format!(
        "{settings}\n\
         [[messageloop.proxy]]\nname = \"app\"\nendpoint = \"{}\"\ntimeout_ms = 2000\n\
         headers = {{ x-api-key = \"secret-1\" }}\n\
         routes = [{{ channel = \"orders.*\", method = \"*\" }}, {{ channel = \"\", method = \"$authenticate\" }}]\n\
         [[messageloop.proxy]]\nname = \"down\"\nendpoint = \"http://127.0.0.1:{}/\"\n\
         routes = [{{ channel = \"down.*\", method = \"*\" }}]\n",
        backend.endpoint(),
        closed_port()
    );
    let gateway = Gatewayd::start(&config(&proxies));
    let ws = gateway.listener("messageloop.ws");
    (backend, gateway, ws)
}

fn rpc(ws: &mut Ws, id: &str, channel: &str, method: &str) -> Value {
    ws.send(json!({"id": id, "rpc_request": {
        "channel": channel,
        "method": method,
        "payload": {"content_type": "application/json", "json": {"q": 1}},
        "metadata": {"entries": {"x-req": "r-1"}},
    }}));
    reply_to(ws, id)
}

/// Reads frames until the one answering `id`, and returns it.
fn reply_to(ws: &mut Ws, id: &str) -> Value {
    loop {
        let reply = ws.recv();
        if reply["id"] == id {
            return reply;
        }
    }
}

/// A WebSocket JSON client at `addr` that has sent Connect with `token`.
fn connected_client(addr: SocketAddr, token: &str) -> Ws {
    let mut ws = Ws::connect(addr, JSON);
    ws.handshake("2.0.0", token);
    ws
}

/// Sends Connect (id `c1`) with `token` on a new client at `addr` and returns how the server closed it.
fn refused_connect(addr: SocketAddr, token: &str) -> (u16, String, Vec<Value>) {
    let mut ws = Ws::connect(addr, JSON);
    ws.send(json!({"id": "c1", "connect": {"client_id": "x", "version": "2.0.0", "token": token}}));
    ws.expect_close()
}

/// Polls `/api/connections` until one connection passes `check`.
fn wait_connection(gateway: &Gatewayd, what: &str, check: impl Fn(&Value) -> bool) {
    gateway.wait_for("/api/connections", what, |connections| {
        connections.as_array().into_iter().flatten().any(&check)
    });
}

/// A STOMP client subscribed as the bus responder of `$rpc.messageloop.svc.get`, once the bus has it.
fn bus_responder(gateway: &Gatewayd) -> Peer {
    let mut responder = Peer::connect(gateway.listener("stomp.tcp"));
    responder.send(&frames::subscribe(
        "/topic/$rpc.messageloop.svc.get",
        "auto",
        "rpc",
    ));
    wait_fanout(gateway, "$rpc.messageloop.svc.get", 1);
    responder
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {reply}"))
}

#[test]
fn rpc_goes_to_the_backend_as_camel_case_json_and_its_answer_comes_back() {
    let (backend, _gateway, addr) = start("");
    let mut ws = connected_client(addr, "");

    let reply = rpc(&mut ws, "r1", "orders.eu.1", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "r1", "{reply}");
    assert_eq!(
        reply["rpc_reply"]["payload"],
        json!({"content_type": "application/json", "json": {"echo": {"q": 1}}})
    );
    assert_eq!(
        reply["rpc_reply"]["metadata"]["entries"],
        json!({"x-from": "backend", "x-req-echo": "r-1"})
    );
    let calls = backend.calls("method", "get");
    assert_eq!(calls.len(), 1);
    let seen = &calls[0];
    assert_eq!(
        seen.body,
        json!({
            "id": "r1",
            "channel": "orders.eu.1",
            "method": "get",
            "payload": {"contentType": "application/json", "json": {"q": 1}},
            "metadata": {"entries": {"x-req": "r-1"}},
        })
    );
    assert_eq!(seen.headers["content-type"], "application/json");
    assert_eq!(seen.headers["x-api-key"], "secret-1");

    let reply = rpc(&mut ws, "r2", "orders.eu", "fail");
    assert_eq!(
        reply["error"],
        json!({"code": "ORDER_MISSING", "type": "app_error", "message": "no such order"})
    );

    let reply = rpc(&mut ws, "r3", "orders.eu", "status");
    assert_eq!(error_code(&reply), "PROXY_ERROR");
    assert_eq!(reply["error"]["type"], "proxy_error");

    let reply = rpc(&mut ws, "r4", "orders.eu", "slow");
    assert_eq!(error_code(&reply), "RPC_TIMEOUT");

    let reply = rpc(&mut ws, "r5", "down.eu", "get");
    assert_eq!(error_code(&reply), "PROXY_ERROR");

    // A response body over 4 MiB is a failed call.
    let reply = rpc(&mut ws, "r7", "orders.eu", "huge");
    assert_eq!(error_code(&reply), "PROXY_ERROR");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("4194304")),
        "{reply}"
    );

    // The connection is still usable after each error.
    let reply = rpc(&mut ws, "r6", "orders.us", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "r6", "{reply}");
}

#[test]
fn an_rpc_no_route_matches_falls_back_to_a_bus_responder() {
    let (backend, gateway, addr) = start("");
    let mut responder = bus_responder(&gateway);
    let mut ws = connected_client(addr, "");
    ws.send(
        json!({"id": "b1", "rpc_request": {"channel": "svc", "method": "get",
        "payload": {"content_type": "text/plain", "text": "ping"}}}),
    );
    let request = responder.expect_frame(WAIT);
    assert_eq!(request.body, b"ping");
    let reply_to = request.get("reply-to").expect("reply-to");
    let correlation = request.get("correlation-id").expect("correlation-id");
    responder.send(
        &Frame::new("SEND")
            .header("destination", reply_to)
            .header("correlation-id", correlation)
            .header("content-type", "text/plain")
            .body(b"pong"),
    );
    let reply = ws.recv_kind("rpc_reply");
    assert_eq!(reply["id"], "b1");
    assert_eq!(reply["rpc_reply"]["payload"]["text"], "pong");
    assert!(backend.calls("channel", "svc").is_empty());
}

#[test]
fn with_rpc_fallback_none_an_unrouted_rpc_is_no_proxy() {
    let (_backend, gateway, addr) = start("rpc_fallback = \"none\"");
    // A bus responder exists but is not asked.
    let _responder = bus_responder(&gateway);
    let mut ws = connected_client(addr, "");
    let reply = rpc(&mut ws, "n1", "svc", "get");
    assert_eq!(error_code(&reply), "NO_PROXY");
    assert_eq!(reply["error"]["type"], "request_error");
    // Routed RPCs still reach the backend.
    let reply = rpc(&mut ws, "n2", "orders.eu", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "n2", "{reply}");
}

#[test]
fn connect_tokens_are_checked_by_the_authenticate_backend() {
    let (backend, gateway, addr) = start("");

    let mut ws = Ws::connect(addr, JSON);
    let connected = ws.handshake("2.0.0", "good-token");
    let session_id = connected["connected"]["session_id"]
        .as_str()
        .expect("session id");
    let calls = backend.calls("token", "good-token");
    assert_eq!(calls.len(), 1);
    let body = &calls[0].body;
    assert_eq!(
        (
            &body["client_id"],
            &body["client_type"],
            &body["session_id"]
        ),
        (&json!("rust-test"), &json!("sdk"), &json!(session_id))
    );
    let remote = body["remote_addr"].as_str().expect("remote_addr");
    assert!(remote.starts_with("127.0.0.1:"), "{body}");
    wait_connection(&gateway, "the backend's user", |c| {
        c["protocol"] == "messageloop" && c["identity"] == "user-7"
    });
    // Authenticated by the backend, allowed everything.
    let reply = rpc(&mut ws, "a1", "orders.eu", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "a1", "{reply}");

    let (code, reason, before) = refused_connect(addr, "banned");
    assert_eq!((code, reason.as_str()), (3500, "invalid token"));
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["id"], "c1");
    assert_eq!(
        before[0]["error"],
        json!({"code": "BANNED", "type": "auth_error", "message": "you are banned"})
    );
    assert_eq!(
        gateway.metric(
            "gatewayd_auth_refusals_total",
            &[("protocol", "messageloop"), ("reason", "proxy")]
        ),
        1.0
    );

    // An empty token is not the backend's business: anonymous, as [messageloop.auth] allows.
    let _anonymous = connected_client(addr, "");
    let tokens = backend
        .seen
        .lock()
        .expect("seen")
        .iter()
        .filter(|s| s.body.get("token").is_some())
        .count();
    assert_eq!(tokens, 2);
}

#[test]
fn an_authenticate_backend_that_is_down_is_auth_error_then_3500() {
    let settings = format!(
        "[[messageloop.proxy]]\nname = \"auth\"\nendpoint = \"http://127.0.0.1:{}/\"\n\
         routes = [{{ channel = \"\", method = \"$authenticate\" }}]\n",
        closed_port()
    );
    let gateway = Gatewayd::start(&config(&settings));
    let (code, _, before) = refused_connect(gateway.listener("messageloop.ws"), "any");
    assert_eq!(code, 3500);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (&before[0]["id"], error_code(&before[0])),
        (&json!("c1"), "AUTH_ERROR")
    );
    assert_eq!(before[0]["error"]["type"], "auth_error");
}

#[test]
fn grpc_clients_reach_the_backend_too() {
    use grpc::g2::inbound_message::Envelope as In;
    use grpc::g2::outbound_message::Envelope as Out;
    use messageloop_client::grpc;
    use protocols::messageloop::pb::messageloop::shared::v2 as shared;

    let (backend, gateway, _) =
        start("[messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n");
    let addr = gateway.listener("messageloop.grpc");
    let runtime = current_thread_runtime();
    let (connected, reply) = runtime.block_on(async {
        let mut stream = grpc::open_g2(addr).await;
        let connect = grpc::g2::Connect {
            version: "2.0.0".into(),
            token: "good-token".into(),
            ..Default::default()
        };
        stream
            .send(grpc::g2_inbound("c", In::Connect(connect)))
            .await;
        let connected = stream.next().await.expect("connected");
        let request = grpc::g2::RpcRequest {
            channel: "orders.eu".into(),
            method: "get".into(),
            payload: Some(shared::Payload {
                content_type: "application/json".into(),
                data: Some(shared::payload::Data::Json(prost_types::Struct {
                    fields: [(
                        "q".to_owned(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::NumberValue(2.0)),
                        },
                    )]
                    .into(),
                })),
            }),
            metadata: None,
        };
        stream
            .send(grpc::g2_inbound("r1", In::RpcRequest(request)))
            .await;
        loop {
            let out = stream.next().await.expect("stream open");
            if out.id == "r1" {
                return (connected, out);
            }
        }
    });
    assert!(
        matches!(connected.envelope, Some(Out::Connected(_))),
        "{connected:?}"
    );
    let Some(Out::RpcReply(reply)) = reply.envelope else {
        panic!("{reply:?}")
    };
    let entries = reply.metadata.expect("metadata").entries;
    assert_eq!(entries.get("x-from").map(String::as_str), Some("backend"));
    assert_eq!(backend.calls("token", "good-token").len(), 1);
    let calls = backend.calls("method", "get");
    assert_eq!(calls[0].body["payload"]["json"], json!({"q": 2}));
    wait_connection(&gateway, "the backend's user", |c| {
        c["identity"] == "user-7"
    });
}

/// `[[messageloop.proxy]]` entries: the backend at `endpoint` checks Connect tokens and `acl.*` subscribes and
/// publishes (and hears their hooks); a backend that is down checks `down.*`.
fn acl_settings(endpoint: &str) -> String {
    format!(
        "[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"{endpoint}\"\ntimeout_ms = 5000\n\
         routes = [{{ channel = \"\", method = \"$authenticate\" }}, {{ channel = \"acl.*\", method = \"subscribe\" }}, \
         {{ channel = \"acl.*\", method = \"publish\" }}, {{ channel = \"acl.*\", method = \"unsubscribe\" }}, \
         {{ channel = \"\", method = \"disconnect\" }}]\n\
         [[messageloop.proxy]]\nname = \"down\"\nendpoint = \"http://127.0.0.1:{}/\"\n\
         routes = [{{ channel = \"down.*\", method = \"subscribe\" }}, {{ channel = \"down.*\", method = \"publish\" }}]\n",
        closed_port()
    )
}

fn publish(ws: &mut Ws, id: &str, channel: &str, token: &str) -> Value {
    ws.send(json!({"id": id, "publish": {
        "channel": channel, "token": token, "payload": {"text": "hello"},
    }}));
    reply_to(ws, id)
}

/// Subscribes to each `(channel, token)` and returns the frames answering `id` up to the ack, the ack last.
fn subscribe_with_tokens(ws: &mut Ws, id: &str, entries: &[(&str, &str)]) -> Vec<Value> {
    let subscriptions: Vec<Value> = entries
        .iter()
        .map(|(channel, token)| json!({"channel": channel, "token": token}))
        .collect();
    ws.send(json!({"id": id, "subscribe": {"subscriptions": subscriptions}}));
    let mut answers = Vec::new();
    loop {
        let frame = ws.recv();
        if frame["id"] != id {
            continue;
        }
        let done = frame.get("subscribe_ack").is_some();
        answers.push(frame);
        if done {
            return answers;
        }
    }
}

fn acked_channels(ack: &Value) -> Vec<&str> {
    ack["subscribe_ack"]["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["channel"].as_str())
        .collect()
}

const NOT_MEMBER: &str = "NOT_MEMBER";

#[test]
fn subscribe_and_publish_acl_backends_allow_refuse_and_fail() {
    let backend = Backend::start();
    let gateway = Gatewayd::start(&config(&acl_settings(&backend.endpoint())));
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), JSON);
    let connected = ws.handshake("2.0.0", "good-token");
    let session_id = connected["connected"]["session_id"].clone();

    let answers = subscribe_with_tokens(
        &mut ws,
        "s1",
        &[
            ("acl.room", "t-1"),
            ("acl.denied", "t-2"),
            ("down.x", ""),
            ("free", ""),
        ],
    );
    assert_eq!(answers.len(), 3, "{answers:?}");
    assert_eq!(
        answers[0]["error"],
        json!({"code": NOT_MEMBER, "type": "app_error", "message": "not a member"})
    );
    assert_eq!(error_code(&answers[1]), "PROXY_ERROR");
    assert_eq!(answers[1]["error"]["type"], "proxy_error");
    assert_eq!(acked_channels(&answers[2]), ["acl.room", "free"]);
    let checked = backend.calls("token", "t-1");
    assert_eq!(checked.len(), 1);
    assert_eq!(
        checked[0].body,
        json!({"channel": "acl.room", "token": "t-1", "user_id": "user-7", "session_id": session_id})
    );
    // A channel no route names is never asked about.
    assert!(backend.calls("channel", "free").is_empty());

    let reply = publish(&mut ws, "p1", "acl.room", "p-1");
    assert!(reply.get("publish_ack").is_some(), "{reply}");
    let publication = ws.recv_kind("publication");
    assert_eq!(
        publication["publication"]["messages"][0]["channel"],
        "acl.room"
    );
    assert_eq!(
        backend.calls("token", "p-1")[0].body,
        json!({"channel": "acl.room", "token": "p-1", "user_id": "user-7", "session_id": session_id})
    );
    let reply = publish(&mut ws, "p2", "acl.denied", "");
    assert_eq!(error_code(&reply), NOT_MEMBER);
    let reply = publish(&mut ws, "p3", "down.y", "");
    assert_eq!(error_code(&reply), "PROXY_ERROR");

    // Connect's own subscriptions are checked too; a refused one is answered before Connected.
    let mut other = Ws::connect(gateway.listener("messageloop.ws"), JSON);
    other.send(
        json!({"id": "c2", "connect": {"client_id": "x", "version": "2.0.0", "subscriptions": [
            {"channel": "acl.denied.c"}, {"channel": "acl.c"},
        ]}}),
    );
    let first = other.recv();
    assert_eq!(
        (&first["id"], error_code(&first)),
        (&json!("c2"), NOT_MEMBER)
    );
    let connected = other.recv_kind("connected");
    assert_eq!(
        connected["connected"]["subscriptions"],
        json!([{"channel": "acl.c"}])
    );

    // sub_refresh asks again without the token: `acl.member` is no longer allowed and quietly ends.
    let answers = subscribe_with_tokens(&mut ws, "s2", &[("acl.member", "t-3")]);
    assert_eq!(acked_channels(&answers[0]), ["acl.member"], "{answers:?}");
    ws.send(json!({"id": "r1", "sub_refresh": {"channels": ["acl.member", "acl.room"]}}));
    assert_eq!(ws.recv_kind("sub_refresh_ack")["id"], "r1");
    let refreshed = backend.calls_where(|seen| {
        seen.body["channel"] == "acl.member"
            && seen.body.get("token").is_none()
            && seen.body.get("username").is_none()
    });
    assert_eq!(refreshed.len(), 1, "{refreshed:?}");
    let reply = publish(&mut ws, "p4", "acl.room", "p-4");
    assert!(reply.get("publish_ack").is_some(), "{reply}");
    wait_connection(&gateway, "acl.member gone", |c| {
        c["identity"] == "user-7" && c["subscriptions"] == 2
    });
}

#[test]
fn hooks_reach_the_http_backend_and_a_hanging_one_does_not_hold_the_client() {
    let backend = Backend::start();
    // First in config order, so their routes win: OnSubscribed and OnUnsubscribed bodies look the same.
    let settings = format!(
        "[[messageloop.proxy]]\nname = \"unsub\"\nendpoint = \"{}\"\n\
         routes = [{{ channel = \"hook.*\", method = \"unsubscribe\" }}]\n\
         [[messageloop.proxy]]\nname = \"hang\"\nendpoint = \"{}\"\ntimeout_ms = 5000\n\
         routes = [{{ channel = \"slow.*\", method = \"unsubscribe\" }}]\n{}",
        backend.endpoint_at("unsub"),
        backend.endpoint_at("hang"),
        acl_settings(&backend.endpoint()).replace("acl.*", "hook.*"),
    );
    let gateway = Gatewayd::start(&config(&settings));
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), JSON);
    let connected = ws.handshake("2.0.0", "good-token");
    let session_id = connected["connected"]["session_id"].clone();
    backend.wait_call("OnConnected", |seen| {
        seen.body == json!({"session_id": session_id, "username": "rust-test"})
    });

    ws.subscribe("s1", &["hook.a", "slow.b"]);
    backend.wait_call("OnSubscribed", |seen| {
        seen.body == json!({"session_id": session_id, "channel": "hook.a", "username": "user-7"})
    });
    ws.send(json!({"id": "u1", "unsubscribe": {"subscriptions": [{"channel": "hook.a"}]}}));
    assert_eq!(ws.recv_kind("unsubscribe_ack")["id"], "u1");
    let seen = backend.wait_call("OnUnsubscribed", |seen| seen.path == "unsub");
    assert_eq!(
        seen.body,
        json!({"session_id": session_id, "channel": "hook.a", "username": "user-7"})
    );

    // The backend of `slow.*` takes 10 s to answer: the client is not kept waiting.
    let started = Instant::now();
    ws.send(json!({"id": "u2", "unsubscribe": {"subscriptions": [{"channel": "slow.b"}]}}));
    assert_eq!(ws.recv_kind("unsubscribe_ack")["id"], "u2");
    backend.wait_call("the hanging OnUnsubscribed", |seen| seen.path == "hang");
    ws.send(json!({"id": "ping-1", "ping": {}}));
    assert_eq!(ws.recv_kind("pong")["id"], "ping-1");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held for {:?}",
        started.elapsed()
    );

    ws.close();
    backend.wait_call("OnDisconnected", |seen| {
        seen.body == json!({"session_id": session_id, "username": "user-7"})
    });
}

mod grpc_backend {
    //! A tonic `ProxyService` that records the calls and answers RPCs by method, Connect tokens by token and
    //! ACL checks by channel (refused when it contains `denied`); hooks are recorded as text.

    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use protocols::messageloop::pb::messageloop::proxy::v2 as pb;
    use protocols::messageloop::pb::messageloop::shared::v2 as shared;
    use tonic::{Request, Response, Status};

    /// A backend error with `code`, `type` and `message`.
    fn error(code: &str, kind: &str, message: &str) -> shared::Error {
        shared::Error {
            code: code.into(),
            r#type: kind.into(),
            message: message.into(),
            metadata: None,
        }
    }

    #[derive(Clone, Default)]
    pub struct Service {
        pub rpcs: Arc<Mutex<Vec<pb::RpcRequest>>>,
        pub authentications: Arc<Mutex<Vec<pb::AuthenticateRequest>>>,
        /// `subscribe <channel> <token> <user>` and `publish …`.
        pub acls: Arc<Mutex<Vec<String>>>,
        /// `connected <username>`, `subscribed <channel> <username>`, …
        pub hooks: Arc<Mutex<Vec<String>>>,
    }

    impl Service {
        fn acl(&self, kind: &str, channel: &str, token: &str, user: &str) -> Option<shared::Error> {
            self.acls
                .lock()
                .expect("acls")
                .push(format!("{kind} {channel} {token} {user}"));
            channel
                .contains("denied")
                .then(|| error("NOT_MEMBER", "app_error", "not a member"))
        }

        /// Records a hook as `text` and answers it with an empty response.
        fn heard<T: Default>(&self, text: String) -> Result<Response<T>, Status> {
            self.hooks.lock().expect("hooks").push(text);
            Ok(Response::new(T::default()))
        }
    }

    #[tonic::async_trait]
    impl pb::proxy_service_server::ProxyService for Service {
        async fn rpc(
            &self,
            request: Request<pb::RpcRequest>,
        ) -> Result<Response<pb::RpcResponse>, Status> {
            let request = request.into_inner();
            self.rpcs.lock().expect("rpcs").push(request.clone());
            let response = match request.method.as_str() {
                "get" => pb::RpcResponse {
                    id: request.id,
                    payload: request.payload,
                    metadata: Some(shared::Metadata {
                        entries: [("x-from".to_owned(), "grpc".to_owned())].into(),
                    }),
                    error: None,
                },
                _ => pb::RpcResponse {
                    id: request.id,
                    error: Some(error("ORDER_MISSING", "app_error", "no such order")),
                    ..pb::RpcResponse::default()
                },
            };
            Ok(Response::new(response))
        }

        async fn authenticate(
            &self,
            request: Request<pb::AuthenticateRequest>,
        ) -> Result<Response<pb::AuthenticateResponse>, Status> {
            let request = request.into_inner();
            self.authentications
                .lock()
                .expect("authentications")
                .push(request.clone());
            let response = if request.token == "good-token" {
                pb::AuthenticateResponse {
                    user_info: Some(pb::UserInfo {
                        id: "grpc-user".into(),
                        ..pb::UserInfo::default()
                    }),
                    error: None,
                }
            } else {
                pb::AuthenticateResponse {
                    user_info: None,
                    error: Some(error("BANNED", "auth_error", "you are banned")),
                }
            };
            Ok(Response::new(response))
        }

        async fn subscribe_acl(
            &self,
            request: Request<pb::SubscribeAclRequest>,
        ) -> Result<Response<pb::SubscribeAclResponse>, Status> {
            let r = request.into_inner();
            let error = self.acl("subscribe", &r.channel, &r.token, &r.user_id);
            Ok(Response::new(pb::SubscribeAclResponse { error }))
        }

        async fn publish_acl(
            &self,
            request: Request<pb::PublishAclRequest>,
        ) -> Result<Response<pb::PublishAclResponse>, Status> {
            let r = request.into_inner();
            let error = self.acl("publish", &r.channel, &r.token, &r.user_id);
            Ok(Response::new(pb::PublishAclResponse { error }))
        }

        async fn on_connected(
            &self,
            request: Request<pb::OnConnectedRequest>,
        ) -> Result<Response<pb::OnConnectedResponse>, Status> {
            self.heard(format!("connected {}", request.into_inner().username))
        }

        async fn on_subscribed(
            &self,
            request: Request<pb::OnSubscribedRequest>,
        ) -> Result<Response<pb::OnSubscribedResponse>, Status> {
            let r = request.into_inner();
            self.heard(format!("subscribed {} {}", r.channel, r.username))
        }

        async fn on_unsubscribed(
            &self,
            request: Request<pb::OnUnsubscribedRequest>,
        ) -> Result<Response<pb::OnUnsubscribedResponse>, Status> {
            let r = request.into_inner();
            self.heard(format!("unsubscribed {} {}", r.channel, r.username))
        }

        async fn on_disconnected(
            &self,
            request: Request<pb::OnDisconnectedRequest>,
        ) -> Result<Response<pb::OnDisconnectedResponse>, Status> {
            self.heard(format!("disconnected {}", request.into_inner().username))
        }
    }

    /// Polls until `hooks` holds `text`.
    pub fn wait_hook(service: &Service, text: &str) {
        let deadline = std::time::Instant::now() + super::WAIT;
        while !service
            .hooks
            .lock()
            .expect("hooks")
            .iter()
            .any(|h| h == text)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no hook {text:?} in {:?}",
                service.hooks.lock().expect("hooks")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Serves `service` on 127.0.0.1 in `runtime`.
    pub fn serve(runtime: &tokio::runtime::Runtime, service: Service) -> SocketAddr {
        let _entered = runtime.enter();
        let incoming =
            tonic::transport::server::TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .expect("bind grpc backend");
        let addr = incoming.local_addr().expect("grpc backend address");
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(pb::proxy_service_server::ProxyServiceServer::new(service))
                .serve_with_incoming(incoming),
        );
        addr
    }
}

#[test]
fn a_grpc_backend_answers_rpcs_and_checks_connect_tokens() {
    let runtime = multi_thread_runtime(1);
    let service = grpc_backend::Service::default();
    let addr = grpc_backend::serve(&runtime, service.clone());
    let settings = format!(
        "[[messageloop.proxy]]\nname = \"grpc\"\nendpoint = \"{addr}\"\ntimeout_ms = 5000\n\
         routes = [{{ channel = \"orders.*\", method = \"*\" }}, {{ channel = \"\", method = \"$authenticate\" }}]\n\
         [[messageloop.proxy]]\nname = \"down\"\nendpoint = \"grpc://127.0.0.1:{}\"\n\
         routes = [{{ channel = \"down.*\", method = \"*\" }}]\n",
        closed_port()
    );
    let gateway = Gatewayd::start(&config(&settings));
    let ws_addr = gateway.listener("messageloop.ws");

    let mut ws = Ws::connect(ws_addr, JSON);
    let connected = ws.handshake("2.0.0", "good-token");
    let authentications = service.authentications.lock().expect("auth").clone();
    assert_eq!(authentications.len(), 1);
    assert_eq!(
        (
            authentications[0].client_id.as_str(),
            authentications[0].session_id.as_str()
        ),
        (
            "rust-test",
            connected["connected"]["session_id"].as_str().expect("id")
        )
    );
    assert!(authentications[0].remote_addr.starts_with("127.0.0.1:"));
    wait_connection(&gateway, "the backend's user", |c| {
        c["identity"] == "grpc-user"
    });

    let reply = rpc(&mut ws, "g1", "orders.eu", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "g1", "{reply}");
    assert_eq!(
        reply["rpc_reply"]["payload"],
        json!({"content_type": "application/json", "json": {"q": 1}})
    );
    assert_eq!(
        reply["rpc_reply"]["metadata"]["entries"],
        json!({"x-from": "grpc"})
    );
    let rpcs = service.rpcs.lock().expect("rpcs").clone();
    assert_eq!(
        (
            rpcs[0].id.as_str(),
            rpcs[0].channel.as_str(),
            rpcs[0].method.as_str()
        ),
        ("g1", "orders.eu", "get")
    );
    assert_eq!(
        rpcs[0]
            .metadata
            .as_ref()
            .map(|m| m.entries["x-req"].as_str()),
        Some("r-1")
    );

    let reply = rpc(&mut ws, "g2", "orders.eu", "other");
    assert_eq!(reply["error"]["code"], "ORDER_MISSING", "{reply}");
    let reply = rpc(&mut ws, "g3", "down.eu", "get");
    assert_eq!(error_code(&reply), "PROXY_ERROR");

    let (code, _, before) = refused_connect(ws_addr, "nope");
    assert_eq!(code, 3500);
    assert_eq!(before[0]["error"]["code"], "BANNED", "{before:?}");
}

#[test]
fn reload_applies_proxies_to_new_connections_and_refuses_a_bad_entry() {
    let backend = Backend::start();
    let gateway = Gatewayd::start(&config("rpc_fallback = \"none\""));
    let addr = gateway.listener("messageloop.ws");
    let mut before = connected_client(addr, "");

    let routed = format!(
        "rpc_fallback = \"none\"\n[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"{}\"\n\
         routes = [{{ channel = \"orders.*\", method = \"*\" }}]\n",
        backend.endpoint()
    );
    let report = gateway.rewrite_and_reload(&config(&routed));
    assert!(report["error"].is_null(), "{report}");
    assert_eq!(report["restart_needed"], json!([]), "{report}");

    let mut after = connected_client(addr, "");
    let reply = rpc(&mut after, "x1", "orders.eu", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "x1", "{reply}");
    // The connection opened before keeps the settings it started with.
    let reply = rpc(&mut before, "x2", "orders.eu", "get");
    assert_eq!(error_code(&reply), "NO_PROXY");

    let unrouted = "[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"http://127.0.0.1:1/\"\n";
    let report = gateway.rewrite_and_reload(&config(unrouted));
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("messageloop.proxy[0].routes"), "{report}");
    let mut later = connected_client(addr, "");
    let reply = rpc(&mut later, "x3", "orders.eu", "get");
    assert_eq!(reply["rpc_reply"]["request_id"], "x3", "{reply}");
}

#[test]
fn a_grpc_backend_checks_acls_and_hears_every_hook() {
    let runtime = multi_thread_runtime(1);
    let service = grpc_backend::Service::default();
    let addr = grpc_backend::serve(&runtime, service.clone());
    let gateway = Gatewayd::start(&config(&acl_settings(&format!("grpc://{addr}"))));
    let mut ws = connected_client(gateway.listener("messageloop.ws"), "good-token");
    grpc_backend::wait_hook(&service, "connected rust-test");

    let answers = subscribe_with_tokens(&mut ws, "s1", &[("acl.a", "t-a"), ("acl.denied", "")]);
    assert_eq!(error_code(&answers[0]), NOT_MEMBER, "{answers:?}");
    assert_eq!(acked_channels(&answers[1]), ["acl.a"]);
    grpc_backend::wait_hook(&service, "subscribed acl.a grpc-user");
    let reply = publish(&mut ws, "p1", "acl.a", "p-a");
    assert!(reply.get("publish_ack").is_some(), "{reply}");
    let reply = publish(&mut ws, "p2", "acl.denied", "");
    assert_eq!(error_code(&reply), NOT_MEMBER);
    // The two subscribe checks run side by side, the publish check after them.
    let mut acls = service.acls.lock().expect("acls").clone();
    acls[..2].sort();
    assert_eq!(
        acls,
        [
            "subscribe acl.a t-a grpc-user",
            "subscribe acl.denied  grpc-user",
            "publish acl.a p-a grpc-user",
            "publish acl.denied  grpc-user",
        ]
    );
    ws.send(json!({"id": "u1", "unsubscribe": {"subscriptions": [{"channel": "acl.a"}]}}));
    assert_eq!(ws.recv_kind("unsubscribe_ack")["id"], "u1");
    grpc_backend::wait_hook(&service, "unsubscribed acl.a grpc-user");
    ws.close();
    grpc_backend::wait_hook(&service, "disconnected grpc-user");
}

/// A TLS front on 127.0.0.1 for the plain backend at `plain`: a certificate for `localhost` signed by `ca`,
/// ALPN h2 and http/1.1, the bytes passed through both ways. Runs in `runtime`.
fn tls_front(
    runtime: &tokio::runtime::Runtime,
    plain: SocketAddr,
    ca: &rcgen::Issuer<'_, rcgen::KeyPair>,
) -> SocketAddr {
    let (certificate, key) = pki::client_certificate(ca, "localhost", &["localhost"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind tls front");
    let addr = listener.local_addr().expect("tls front address");
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut backend) = tokio::net::TcpStream::connect(plain).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut backend).await;
                }
            });
        }
    });
    addr
}

#[test]
fn https_and_grpcs_backends_are_checked_against_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = pki::test_ca(dir.path());
    let ca_file = dir.path().join("ca.pem");
    let other = tempfile::tempdir().expect("tempdir");
    pki::test_ca(other.path());
    let wrong_ca_file = other.path().join("ca.pem");

    let backend = Backend::start();
    let https = tls_front(&backend.runtime, backend.addr, &ca);
    let runtime = multi_thread_runtime(1);
    let service = grpc_backend::Service::default();
    let grpcs = tls_front(
        &runtime,
        grpc_backend::serve(&runtime, service.clone()),
        &ca,
    );
    let settings = format!(
        "[[messageloop.proxy]]\nname = \"https\"\nendpoint = \"https://127.0.0.1:{}/proxy\"\n\
         tls = {{ ca_file = {:?}, server_name = \"localhost\" }}\n\
         routes = [{{ channel = \"https.*\", method = \"*\" }}]\n\
         [[messageloop.proxy]]\nname = \"grpcs\"\nendpoint = \"grpcs://localhost:{}\"\n\
         tls = {{ ca_file = {:?} }}\n\
         routes = [{{ channel = \"grpcs.*\", method = \"*\" }}, {{ channel = \"\", method = \"$authenticate\" }}]\n\
         [[messageloop.proxy]]\nname = \"wrong-ca\"\nendpoint = \"https://127.0.0.1:{}/proxy\"\n\
         tls = {{ ca_file = {:?}, server_name = \"localhost\" }}\n\
         routes = [{{ channel = \"wrong.*\", method = \"*\" }}]\n\
         [[messageloop.proxy]]\nname = \"system-roots\"\nendpoint = \"grpcs://localhost:{}\"\n\
         routes = [{{ channel = \"roots.*\", method = \"*\" }}]\n",
        https.port(),
        ca_file,
        grpcs.port(),
        ca_file,
        https.port(),
        wrong_ca_file,
        grpcs.port(),
    );
    let gateway = Gatewayd::start(&config(&settings));
    let mut ws = connected_client(gateway.listener("messageloop.ws"), "good-token");
    assert_eq!(service.authentications.lock().expect("auth").len(), 1);

    let reply = rpc(&mut ws, "t1", "https.x", "get");
    assert_eq!(
        reply["rpc_reply"]["metadata"]["entries"]["x-from"], "backend",
        "{reply}"
    );
    let reply = rpc(&mut ws, "t2", "grpcs.x", "get");
    assert_eq!(
        reply["rpc_reply"]["metadata"]["entries"]["x-from"], "grpc",
        "{reply}"
    );

    // A certificate the configured CA (or the system's roots) did not sign: the call fails.
    for (id, channel) in [("t3", "wrong.x"), ("t4", "roots.x")] {
        let reply = rpc(&mut ws, id, channel, "get");
        assert_eq!(error_code(&reply), "PROXY_ERROR", "{reply}");
    }
    let reply = rpc(&mut ws, "t5", "wrong.x", "get");
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{reply}");
    assert_eq!(backend.calls("method", "get").len(), 1);

    // A Connect token for a backend whose certificate the CA did not sign: AUTH_ERROR, then 3500.
    let wrong_auth = format!(
        "[[messageloop.proxy]]\nname = \"wrong-auth\"\nendpoint = \"grpcs://localhost:{}\"\n\
         tls = {{ ca_file = {:?} }}\nroutes = [{{ channel = \"\", method = \"$authenticate\" }}]\n",
        grpcs.port(),
        wrong_ca_file,
    );
    let gateway = Gatewayd::start(&config(&wrong_auth));
    let (code, _, before) = refused_connect(gateway.listener("messageloop.ws"), "good-token");
    assert_eq!(code, 3500);
    assert_eq!(error_code(&before[0]), "AUTH_ERROR", "{before:?}");
    assert_eq!(service.authentications.lock().expect("auth").len(), 1);
}

#[test]
fn a_tls_table_on_a_cleartext_endpoint_or_an_unreadable_ca_file_is_refused_by_name() {
    let plain = "[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"http://127.0.0.1:1/\"\n\
                 tls = {}\nroutes = [{ channel = \"*\", method = \"*\" }]\n";
    let (ok, output) = check_config(&config(plain));
    assert!(
        !ok && output.contains("messageloop.proxy[0].tls"),
        "{output}"
    );
    let missing = "[[messageloop.proxy]]\nname = \"app\"\nendpoint = \"grpcs://127.0.0.1:1\"\n\
                   tls = { ca_file = \"/nonexistent/ca.pem\" }\nroutes = [{ channel = \"*\", method = \"*\" }]\n";
    let gateway = Gatewayd::start(&config(""));
    let report = gateway.rewrite_and_reload(&config(missing));
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("messageloop.proxy[0].tls.ca_file"),
        "{report}"
    );
}
