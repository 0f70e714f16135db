//! Goomerang over real sockets against the gatewayd binary: parity with upstream servers
//! (docs/protocols/goomerang.md) — pub/sub, unsubscribe, fragmented messages, broadcast, pings, the close
//! handshake, dropped input with its metrics, ACL refusals, size limits, shutdown — and an independent Python
//! client.

mod support;

#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "support/python.rs"]
mod python;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use goomerang_client::{headers, message_v1, GoomerangClient, Received};
use protocols::goomerang::{Command, FrameHeaders};
use support::*;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const KIND: &str = "goomerang.example.MessageV1";
const LISTENER: &str = "goomerang.ws";
const BYTES_VALUE: &str = "google.protobuf.BytesValue";
/// A STOMP TCP listener next to the Goomerang one (put it after any `[goomerang]` keys).
const STOMP: &str = "[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n";
const WAIT: Duration = Duration::from_secs(10);

/// A STOMP client subscribed to `/topic/<topic>`.
fn stomp_subscriber(gateway: &Gatewayd, topic: &str) -> stomp_client::Peer {
    let mut peer = stomp_client::Peer::connect(gateway.listener("stomp.tcp"));
    peer.send(&stomp_client::frames::subscribe(
        &format!("/topic/{topic}"),
        "auto",
        topic,
    ));
    wait_subscribers(gateway, topic, 1);
    peer
}

/// gatewayd with the Goomerang listener on an ephemeral port plus `extra` config, its address, and a runtime
/// for the clients (blocking admin calls happen outside `block_on`).
fn start(extra: &str) -> (Gatewayd, SocketAddr, Runtime) {
    let gateway = Gatewayd::start(&(config_enabling(&["goomerang"]) + extra));
    let addr = gateway.listener(LISTENER);
    (gateway, addr, multi_thread_runtime(1))
}

/// A Goomerang client at `addr` that has subscribed to each of `topics`, in order.
fn subscribed_client(rt: &Runtime, addr: SocketAddr, topics: &[&str]) -> GoomerangClient {
    rt.block_on(async {
        let mut client = GoomerangClient::connect(addr).await;
        for topic in topics {
            client.subscribe(topic).await;
        }
        client
    })
}

/// Checks that `received` is a close frame with code 1000 and `reason`.
fn assert_close_1000(received: Received, reason: &str) {
    match received {
        Received::Close(Some(close)) => {
            assert_eq!(close.code, CloseCode::Normal);
            assert_eq!(close.reason.as_str(), reason);
        }
        other => panic!("expected close 1000, got {other:?}"),
    }
}

#[test]
fn subscribe_publish_receive_and_unsubscribe() {
    let (gateway, addr, rt) = start("");
    let mut alice = subscribed_client(&rt, addr, &["news.eu"]);
    let mut bob = subscribed_client(&rt, addr, &["news.eu", "marker"]);
    wait_subscribers(&gateway, "news.eu", 2);
    wait_subscribers(&gateway, "marker", 1);
    let connections = gateway.get_json("/api/connections");
    let ours: Vec<_> = connections
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "goomerang")
        .collect();
    assert_eq!(ours.len(), 2, "{connections}");
    assert!(ours.iter().all(|c| c["identity"] == "anonymous"));

    rt.block_on(async {
        alice
            .publish("news.eu", KIND, message_v1("hi"), &[("a", "b")])
            .await;
        // The publisher receives its own message, like every subscriber.
        for client in [&mut alice, &mut bob] {
            let frame = client.recv_frame().await;
            assert_eq!(frame.kind, KIND);
            assert_eq!(frame.payload, message_v1("hi"));
            assert_eq!(frame.payload_size, 4);
            assert_eq!(headers(&frame), [("a".to_owned(), "b".to_owned())]);
            assert!(frame.uuid.is_empty() && !frame.is_sync);
            assert!(frame.creation.is_some());
        }
        bob.unsubscribe("news.eu").await;
    });
    wait_subscribers(&gateway, "news.eu", 1);
    rt.block_on(async {
        alice
            .publish("news.eu", KIND, message_v1("after"), &[])
            .await;
        alice.publish("marker", KIND, message_v1("mark"), &[]).await;
        assert_eq!(alice.recv_frame().await.payload, message_v1("after"));
        // Bob's next frame is the marker: the message published before it never reached him.
        assert_eq!(bob.recv_frame().await.payload, message_v1("mark"));
    });
}

#[test]
fn large_message_in_continuation_frames_is_reassembled() {
    let (gateway, addr, rt) = start("");
    let mut subscriber = subscribed_client(&rt, addr, &["big"]);
    wait_subscribers(&gateway, "big", 1);
    rt.block_on(async {
        let mut publisher = GoomerangClient::connect(addr).await;
        let text = "0123456789".repeat(1000);
        let frame = protocols::goomerang::encode_command(
            &Command::Publish {
                topic: "big".into(),
                kind: KIND.into(),
                message: message_v1(&text),
                headers: Default::default(),
            },
            std::time::SystemTime::now(),
        );
        assert!(frame.len() > 8192);
        // Gorilla's 4096-byte write buffer: a binary frame and continuation frames.
        publisher.send_fragmented(&frame, 4096).await;
        let received = subscriber.recv_frame().await;
        assert_eq!(received.payload, message_v1(&text));
        assert_eq!(received.payload_size, 10_003);
    });
}

#[test]
fn broadcast_reaches_three_clients_including_the_sender() {
    let (gateway, addr, rt) = start("");
    let mut clients = rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(GoomerangClient::connect(addr).await);
        }
        clients
    });
    wait_subscribers(&gateway, "$goomerang.broadcast", 3);
    rt.block_on(async {
        clients[0].broadcast(KIND, message_v1("everyone")).await;
        for client in &mut clients {
            let frame = client.recv_frame().await;
            assert_eq!(frame.kind, KIND);
            assert_eq!(frame.payload, message_v1("everyone"));
        }
    });
}

#[test]
fn client_close_is_echoed_with_1000_then_tcp_closes() {
    let (gateway, addr, rt) = start("");
    let client = rt.block_on(GoomerangClient::connect(addr));
    wait_connection_count(&gateway, 1);
    let echo = rt
        .block_on(client.close())
        .expect("close frame with a code");
    // `88 02 03 e8`: code 1000, empty reason.
    assert_eq!(echo.code, CloseCode::Normal);
    assert!(echo.reason.is_empty());
    wait_connection_count(&gateway, 0);
}

#[test]
fn pings_are_answered_with_the_same_payload() {
    let (_gateway, addr, rt) = start("");
    rt.block_on(async {
        let mut client = GoomerangClient::connect(addr).await;
        client.ping(b"ping").await;
        match client.recv_message().await {
            Message::Pong(payload) => assert_eq!(&payload[..], b"ping"),
            other => panic!("expected a pong, got {other:?}"),
        }
    });
}

#[test]
fn garbage_unknown_kinds_and_text_are_dropped_and_counted() {
    let (gateway, addr, rt) = start("");
    let malformed = dropped(&gateway, "malformed", "goomerang");
    let unroutable = dropped(&gateway, "unroutable", "goomerang");
    let mut client = rt.block_on(async {
        let mut client = GoomerangClient::connect(addr).await;
        client.send_raw(&b"\xff\xff\xff\xff"[..]).await;
        client.send_text("not a frame").await;
        // A direct send of a kind nobody handles.
        client
            .send(&Command::Send {
                kind: "acme.Unknown".into(),
                payload: message_v1("x"),
                headers: Default::default(),
            })
            .await;
        client.subscribe("alive").await;
        client
    });
    wait_subscribers(&gateway, "alive", 1);
    assert!(dropped(&gateway, "malformed", "goomerang") >= malformed + 2.0);
    assert!(dropped(&gateway, "unroutable", "goomerang") > unroutable);
    rt.block_on(async {
        client.publish("alive", KIND, message_v1("yes"), &[]).await;
        assert_eq!(client.recv_frame().await.payload, message_v1("yes"));
    });
}

#[test]
fn acl_refusals_are_dropped_and_counted() {
    let (gateway, addr, rt) = start(
        "[goomerang.auth.anonymous]\nname = \"goomer\"\npublish = [\"open.#\"]\nsubscribe = [\"open.#\"]\n",
    );
    let denied = dropped(&gateway, "acl_denied", "goomerang");
    let mut client = subscribed_client(&rt, addr, &["closed", "open.a"]);
    wait_subscribers(&gateway, "open.a", 1);
    assert_eq!(subscribers(&gateway.get_json("/api/topics"), "closed"), 0);
    assert!(dropped(&gateway, "acl_denied", "goomerang") >= denied + 1.0);
    let connections = gateway.get_json("/api/connections");
    assert_eq!(connections[0]["identity"], "goomer", "{connections}");
    rt.block_on(async {
        client.publish("secret", KIND, message_v1("no"), &[]).await;
        client.broadcast(KIND, message_v1("no")).await;
        client.publish("open.a", KIND, message_v1("yes"), &[]).await;
        // Neither the refused publish nor the refused broadcast came back.
        assert_eq!(client.recv_frame().await.payload, message_v1("yes"));
    });
    assert!(dropped(&gateway, "acl_denied", "goomerang") >= denied + 3.0);
}

#[test]
fn oversized_message_gets_close_1000_message_too_big() {
    let (_gateway, addr, rt) = start("[goomerang.frame_limits]\nmax_message_size = 1024\n");
    rt.block_on(async {
        let mut client = GoomerangClient::connect(addr).await;
        client
            .publish("t", KIND, message_v1(&"x".repeat(2000)), &[])
            .await;
        assert_close_1000(client.receive().await, "message too big");
    });
}

#[test]
fn upgrades_on_ws_and_wss_paths_only() {
    let (_gateway, addr, rt) = start("");
    rt.block_on(async {
        assert!(GoomerangClient::connect_path(addr, "/ws?x=1").await.is_ok());
        assert!(GoomerangClient::connect_path(addr, "/wss").await.is_ok());
        for path in ["/", "/ws/", "/WS"] {
            assert!(
                GoomerangClient::connect_path(addr, path).await.is_err(),
                "{path}"
            );
        }
    });
}

#[test]
fn shutdown_closes_connections_with_1000() {
    let (gateway, addr, rt) = start("");
    let mut client = rt.block_on(GoomerangClient::connect(addr));
    wait_connection_count(&gateway, 1);
    let closed = rt.spawn(async move { client.receive().await });
    let status = gateway.terminate(Duration::from_secs(8));
    assert_eq!(status.code(), Some(0));
    assert_close_1000(rt.block_on(closed).unwrap(), "server shutting down");
}

#[test]
fn tls_listener_serves_wss() {
    use futures::{SinkExt, StreamExt};
    use prost::Message as _;
    use protocols::goomerang::codec::proto::Frame;

    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (gateway, addr, rt) = start(&format!(
        "[goomerang.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    ));
    let listeners = gateway.get_json("/api/listeners");
    assert_eq!(listeners[0]["transport"], "wss", "{listeners}");

    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/wss", stream)
            .await
            .expect("upgrade over TLS");
        let now = std::time::SystemTime::now();
        for command in [
            Command::Subscribe {
                topic: "secure".into(),
            },
            Command::Publish {
                topic: "secure".into(),
                kind: KIND.into(),
                message: message_v1("tls"),
                headers: Default::default(),
            },
        ] {
            let bytes = protocols::goomerang::encode_command(&command, now);
            ws.send(Message::Binary(bytes)).await.unwrap();
        }
        let received = tokio::time::timeout(goomerang_client::TIMEOUT, ws.next())
            .await
            .expect("a delivery")
            .expect("open")
            .expect("message");
        let Message::Binary(bytes) = received else {
            panic!("expected a binary message, got {received:?}");
        };
        assert_eq!(Frame::decode(bytes).unwrap().payload, message_v1("tls"));
    });
}

#[test]
fn check_config_refuses_bad_goomerang_sections() {
    assert_config_rejected(
        "[[goomerang.auth.certificates]]\ncommon_name = \"a\"\nidentity = { name = \"a\" }\n",
        "goomerang.auth.certificates",
    );
    assert_config_rejected(
        "[goomerang]\nwrapper_kind = \"not a name\"\n",
        "wrapper_kind",
    );
}

#[test]
fn python_websockets_client_interoperates() {
    let (gateway, addr, _rt) = start("");
    python::pytest(
        "test_goomerang.py",
        &[
            ("GOOMERANG_ADDR", addr.to_string()),
            ("GATEWAYD_ADMIN", gateway.url("")),
        ],
    );
}

/// Rewrites the config file with the Goomerang section plus `extra`, reloads, and returns the report.
fn reload_with(gateway: &Gatewayd, address: &str, extra: &str) -> serde_json::Value {
    gateway.rewrite_and_reload(&format!(
        "{}[goomerang]\nenabled = true\naddress = \"{address}\"\n{extra}",
        base_config()
    ))
}

#[test]
fn reload_gives_new_connections_the_new_acl_and_keeps_open_ones() {
    let (gateway, addr, rt) =
        start("[goomerang.auth.anonymous]\nname = \"before\"\nsubscribe = [\"open.#\"]\n");
    let mut open = subscribed_client(&rt, addr, &["open.a"]);
    wait_subscribers(&gateway, "open.a", 1);

    let report = reload_with(
        &gateway,
        "127.0.0.1:0",
        "[goomerang.auth.anonymous]\nname = \"after\"\nsubscribe = [\"other.#\"]\n",
    );
    assert_reload(&report, &[LISTENER], &[]);
    assert!(report["error"].is_null(), "{report}");

    // A new connection is "after": `open.#` is refused, `other.#` allowed.
    let denied = dropped(&gateway, "acl_denied", "goomerang");
    let mut new = subscribed_client(&rt, addr, &["open.b", "other.x"]);
    wait_subscribers(&gateway, "other.x", 1);
    assert_eq!(subscribers(&gateway.get_json("/api/topics"), "open.b"), 0);
    assert!(dropped(&gateway, "acl_denied", "goomerang") >= denied + 1.0);
    let connections = gateway.get_json("/api/connections");
    assert_eq!(
        sorted_identities(&connections),
        ["after", "before"],
        "{connections}"
    );

    // The open connection was not dropped and still works under the identity it started with.
    rt.block_on(open.subscribe("open.c"));
    wait_subscribers(&gateway, "open.c", 1);
    rt.block_on(async {
        new.publish("open.a", KIND, message_v1("still here"), &[])
            .await;
        assert_eq!(open.recv_frame().await.payload, message_v1("still here"));
    });

    let report = reload_with(
        &gateway,
        "127.0.0.1:1",
        "[goomerang.auth.anonymous]\nname = \"after\"\nsubscribe = [\"other.#\"]\n",
    );
    assert_reload(&report, &[LISTENER], &["goomerang.address"]);
    assert_eq!(gateway.listener(LISTENER), addr);
}

#[test]
fn direct_send_reaches_a_handler_of_another_protocol_with_the_sender_identity() {
    let (gateway, addr, rt) = start(&format!(
        "[goomerang.send_topics]\n\"acme.v1.Order\" = \"orders.commands\"\n{STOMP}"
    ));
    let mut handler = stomp_subscriber(&gateway, "goomerang.send.goomerang.example.MessageV1");
    let mut orders = stomp_subscriber(&gateway, "orders.commands");
    let unroutable = dropped(&gateway, "unroutable", "goomerang");
    rt.block_on(async {
        let mut client = GoomerangClient::connect(addr).await;
        let mut user = FrameHeaders::new();
        user.insert("trace", "7");
        user.insert("goomerang-sender", "spoofed");
        client
            .send(&Command::Send {
                kind: KIND.into(),
                payload: message_v1("do it"),
                headers: user,
            })
            .await;
        client
            .send(&Command::Send {
                kind: "acme.v1.Order".into(),
                payload: Bytes::from_static(b"\x0a\x01x"),
                headers: FrameHeaders::new(),
            })
            .await;
    });
    let request = handler.expect_frame(WAIT);
    assert_eq!(request.command, "MESSAGE");
    assert_eq!(request.body, message_v1("do it"));
    assert_eq!(request.get("goomerang-kind"), Some(KIND));
    assert_eq!(request.get("content-type"), Some("application/x-protobuf"));
    assert_eq!(request.get("goomerang-sender"), Some("anonymous"));
    assert_eq!(request.get("trace"), Some("7"));
    let order = orders.expect_frame(WAIT);
    assert_eq!(order.body, b"\x0a\x01x");
    assert_eq!(order.get("goomerang-kind"), Some("acme.v1.Order"));
    assert_eq!(dropped(&gateway, "unroutable", "goomerang"), unroutable);
}

#[test]
fn publishing_to_the_broadcast_topic_from_stomp_reaches_every_goomerang_client() {
    let (gateway, addr, rt) = start(STOMP);
    let mut clients = rt.block_on(async {
        vec![
            GoomerangClient::connect(addr).await,
            GoomerangClient::connect(addr).await,
        ]
    });
    wait_subscribers(&gateway, "$goomerang.broadcast", 2);
    let mut stomp = stomp_client::Peer::connect(gateway.listener("stomp.tcp"));
    stomp.send(
        &stomp_client::Frame::new("SEND")
            .header("destination", "/topic/$goomerang.broadcast")
            .header("content-type", "text/plain")
            .body(b"to everyone"),
    );
    rt.block_on(async {
        for client in &mut clients {
            let frame = client.recv_frame().await;
            assert_eq!(frame.kind, BYTES_VALUE);
            let body = <Vec<u8> as prost::Message>::decode(frame.payload.as_ref()).unwrap();
            assert_eq!(body, b"to everyone");
            assert!(headers(&frame).contains(&("content-type".into(), "text/plain".into())));
        }
    });
}

#[test]
fn foreign_messages_arrive_as_a_registered_kind_by_topic_rule_or_header() {
    let (gateway, addr, rt) = start(&format!(
        "[[goomerang.foreign_kinds]]\ntopic = \"orders.#\"\nkind = \"{KIND}\"\n{STOMP}"
    ));
    let mut client = subscribed_client(&rt, addr, &["orders.eu", "other"]);
    wait_subscribers(&gateway, "orders.eu", 1);
    wait_subscribers(&gateway, "other", 1);
    let mut stomp = stomp_client::Peer::connect(gateway.listener("stomp.tcp"));
    let send = |destination: &str, body: &[u8]| {
        stomp_client::Frame::new("SEND")
            .header("destination", destination)
            .header("content-type", "application/x-protobuf")
            .body(body)
    };
    // A rule: the body already is a MessageV1.
    stomp.send(&send("/topic/orders.eu", &message_v1("by rule")));
    // The publisher says so in a header.
    stomp.send(&send("/topic/other", &message_v1("by header")).header("goomerang-kind", KIND));
    // Neither: wrapped.
    stomp.send(&send("/topic/other", b"raw"));
    rt.block_on(async {
        let frame = client.recv_frame().await;
        assert_eq!(
            (frame.kind.as_str(), frame.payload.clone()),
            (KIND, message_v1("by rule"))
        );
        let frame = client.recv_frame().await;
        assert_eq!(
            (frame.kind.as_str(), frame.payload.clone()),
            (KIND, message_v1("by header"))
        );
        let frame = client.recv_frame().await;
        assert_eq!(frame.kind, BYTES_VALUE);
    });
}

#[test]
fn a_quiet_client_is_pinged_and_one_that_never_answers_is_closed() {
    let (gateway, addr, rt) = start("idle_timeout_secs = 2\n");
    let mut alive = rt.block_on(async {
        let mut alive = GoomerangClient::connect(addr).await;
        let mut silent = GoomerangClient::connect(addr).await;
        let answering = async {
            // Answers every ping for 3 s, longer than the idle timeout.
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            let mut pings = 0;
            while let Ok(message) = tokio::time::timeout_at(until, alive.recv_message()).await {
                match message {
                    Message::Ping(_) => {
                        pings += 1;
                        alive.ping(b"here").await;
                    }
                    Message::Pong(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(pings >= 1, "a quiet client is pinged");
        };
        let ignoring = async {
            // Reads nothing (so answers no ping) until well past the timeout.
            tokio::time::sleep(Duration::from_millis(2600)).await;
            assert_close_1000(silent.receive().await, "idle timeout");
        };
        tokio::join!(answering, ignoring);
        // The answering client is still served.
        alive.subscribe("idle.t").await;
        alive
    });
    // A subscription is not acknowledged: the publisher waits until the bus holds it.
    wait_subscribers(&gateway, "idle.t", 1);
    rt.block_on(async {
        let mut publisher = GoomerangClient::connect(addr).await;
        publisher
            .publish("idle.t", KIND, message_v1("still here"), &[])
            .await;
        assert_eq!(alive.recv_frame().await.payload, message_v1("still here"));
    });
}
