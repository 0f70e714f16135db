//! Hostile topic patterns over real sockets: a 5,000-token pattern (which once overflowed the stack and aborted
//! the daemon) gets each protocol's own error on STOMP, MessageLoop and chanserv, and a short pattern with several
//! `#` (which once spun a core forever on the next publish) matches promptly. Publishing to a topic of more tokens
//! than allowed is refused the same way. Every test then shows that a
//! connection opened before the attack is still served.

#[path = "support/chanserv_client.rs"]
mod chanserv_client;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use messageloop_client::Ws;
use serde_json::json;
use stomp_client::{frames, Peer};
use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// `*.` × 5000 + `x`: 10,001 bytes, 5,001 tokens.
fn deep_pattern() -> String {
    format!("{}x", "*.".repeat(5000))
}

/// 23 bytes, six `#`: exponential for a backtracking matcher against a topic of many tokens.
const HASHES: &str = "#.a.#.a.#.a.#.a.#.a.#.b";

fn start() -> Gatewayd {
    Gatewayd::start(&config_enabling(&[
        "stomp.tcp",
        "messageloop.ws",
        "chanserv",
    ]))
}

/// A STOMP subscriber on `bystander` that is already up, and a check that it still gets messages.
struct Bystander {
    peer: Peer,
    address: SocketAddr,
}

impl Bystander {
    fn new(gateway: &Gatewayd) -> Bystander {
        let address = gateway.listener("stomp.tcp");
        let mut peer = Peer::connect(address);
        peer.send(&frames::subscribe("/topic/bystander", "", "b").header("receipt", "r"));
        assert_eq!(peer.expect_frame(WAIT).command, "RECEIPT");
        Bystander { peer, address }
    }

    fn still_served(&mut self, gateway: &Gatewayd, n: usize) {
        assert_eq!(gateway.get("/readyz").0, 200);
        let mut publisher = Peer::connect(self.address);
        publisher.send(&frames::send_string(
            "/topic/bystander",
            &format!("still here {n}"),
        ));
        let message = self.peer.expect_frame(WAIT);
        assert_eq!(message.command, "MESSAGE", "{message:?}");
        assert_eq!(message.body, format!("still here {n}").into_bytes());
    }
}

#[test]
fn stomp_deep_pattern_gets_an_error_frame() {
    let gateway = start();
    let mut bystander = Bystander::new(&gateway);
    let mut attacker = Peer::connect(gateway.listener("stomp.tcp"));
    attacker.send(&frames::subscribe(
        &format!("/topic/{}", deep_pattern()),
        "",
        "1",
    ));
    let error = attacker.expect_frame(WAIT);
    assert_eq!(error.command, "ERROR", "{error:?}");
    assert_eq!(error.get("message"), Some("Invalid destination"));
    attacker.expect_closed(WAIT);
    bystander.still_served(&gateway, 1);
}

#[test]
fn messageloop_deep_channel_gets_bad_request() {
    let gateway = start();
    let mut bystander = Bystander::new(&gateway);
    let mut attacker = Ws::connect(gateway.listener("messageloop.ws"), &["messageloop+json"]);
    attacker.handshake("2.0.0", "");
    let deep = format!("{}**", "a.".repeat(5000));
    attacker.send(json!({"id": "deep", "subscribe": {"subscriptions": [{"channel": deep}]}}));
    let refused = attacker.recv();
    assert_eq!(refused["id"], "deep", "{refused}");
    assert_eq!(refused["error"]["code"], "BAD_REQUEST", "{refused}");
    let ack = attacker.recv_kind("subscribe_ack");
    assert_eq!(ack["subscribe_ack"].get("subscriptions"), None, "{ack}");
    let wide = vec!["a"; 200].join(".");
    attacker.send(json!({"id": "wide", "publish": {"channel": wide,
        "payload": {"content_type": "application/json", "json": {"n": 1}}}}));
    let refused = attacker.recv();
    assert_eq!(refused["id"], "wide", "{refused}");
    assert_eq!(refused["error"]["code"], "BAD_REQUEST", "{refused}");
    // The session goes on: a normal subscription on the same connection works.
    attacker.subscribe("ok", &["chat.ok"]);
    bystander.still_served(&gateway, 1);
}

#[test]
fn chanserv_deep_selector_gets_an_err_source() {
    let gateway = start();
    let mut bystander = Bystander::new(&gateway);
    let mut attacker = chanserv_client::Client::connect(gateway.listener("chanserv.tcp"));
    let master = attacker.post(deep_pattern().as_bytes());
    let (header, _) = attacker.next_source(master).expect("an answer");
    assert!(header.starts_with("err "), "{header}");
    let wide = vec!["a"; 200].join(".");
    let refused = attacker.publish(&wide, b"x");
    assert!(refused.starts_with("err"), "{refused}");
    assert_eq!(attacker.publish("chanserv.ok", b"x"), "ok");
    bystander.still_served(&gateway, 1);
}

#[test]
fn several_hashes_match_promptly() {
    let gateway = start();
    let mut bystander = Bystander::new(&gateway);
    let address = gateway.listener("stomp.tcp");
    let mut subscriber = Peer::connect(address);
    subscriber.send(
        &frames::subscribe(&format!("/topic/{HASHES}"), "", "h").header("receipt", "subscribed"),
    );
    assert_eq!(subscriber.expect_frame(WAIT).command, "RECEIPT");
    let mut publisher = Peer::connect(address);
    let miss = vec!["a"; 100].join(".");
    let hit = format!("{miss}.b");
    publisher.send(&frames::send_string(&format!("/topic/{miss}"), "miss"));
    publisher.send(&frames::send_string(&format!("/topic/{hit}"), "hit"));
    let message = subscriber.expect_frame(WAIT);
    assert_eq!(message.command, "MESSAGE", "{message:?}");
    assert_eq!(message.body, b"hit");
    bystander.still_served(&gateway, 1);
    bystander.still_served(&gateway, 2);
}
