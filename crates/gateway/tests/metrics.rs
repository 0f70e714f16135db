//! Metrics an operator reads when something goes wrong, over real sockets: per-topic counters for the configured
//! patterns only, the subscriber queue depth distribution, handshake failures by listener and reason, and auth
//! refusals by protocol and reason.

mod support;

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use stomp_client::{frames, Peer};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

fn start() -> Gatewayd {
    Gatewayd::start(&format!(
        "{}[bus]\nmetered_topics = [\"orders.#\"]\n\
         [stomp.auth]\nrequired = true\n[[stomp.auth.tokens]]\nlogin = \"app\"\ntoken = \"right\"\n\
         identity = {{ name = \"app\" }}\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.auth]\nallow_anonymous = true\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config()
    ))
}

fn login(gateway: &Gatewayd, passcode: &str) -> (Peer, String) {
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    peer.send(&frames::connect("app", passcode).header("accept-version", "1.2"));
    let answer = peer.expect_frame(WAIT);
    (peer, answer.command)
}

#[test]
fn configured_topics_are_counted_in_and_out_and_no_others() {
    let gateway = start();
    let (mut subscriber, _) = login(&gateway, "right");
    subscriber.send(&frames::subscribe("/topic/orders.eu", "auto", "s").header("receipt", "r"));
    assert_eq!(subscriber.expect_frame(WAIT).command, "RECEIPT");
    let (mut publisher, _) = login(&gateway, "right");
    for destination in ["/topic/orders.eu", "/topic/orders.eu", "/topic/other"] {
        publisher.send(&frames::send_string(destination, "x"));
    }
    for _ in 0..2 {
        assert_eq!(subscriber.expect_frame(WAIT).command, "MESSAGE");
    }
    let metric = |name: &str| gateway.metric(name, &[("topic", "orders.#")]);
    assert_eq!(metric("gatewayd_topic_messages_in_total"), 2.0);
    assert_eq!(metric("gatewayd_topic_messages_out_total"), 2.0);
    let (_, text) = gateway.get("/metrics");
    assert!(
        !text.contains("topic=\"other\""),
        "only configured patterns are labels"
    );
    // Two connections with a queue each, both empty now.
    let queues = |le: &str| gateway.metric("gatewayd_subscriber_queues", &[("depth_le", le)]);
    assert!(queues("+Inf") >= 1.0);
    assert_eq!(queues("0"), queues("+Inf"));
}

#[test]
fn handshake_failures_and_auth_refusals_are_counted_by_reason() {
    let gateway = start();
    // An HTTP request that is not a WebSocket upgrade.
    let mut plain = std::net::TcpStream::connect(gateway.listener("messageloop.ws")).unwrap();
    plain
        .write_all(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let _ = plain.read(&mut [0u8; 512]);
    let (_peer, answer) = login(&gateway, "wrong");
    assert_eq!(answer, "ERROR");
    let failures = gateway.metric(
        "gatewayd_handshake_failures_total",
        &[("listener", "messageloop.ws"), ("reason", "failed")],
    );
    assert_eq!(failures, 1.0);
    let refusals = gateway.metric(
        "gatewayd_auth_refusals_total",
        &[("protocol", "stomp"), ("reason", "invalid")],
    );
    assert_eq!(refusals, 1.0);
}

/// Polls `/metrics` until the closed-connection counter of stomp.tcp for `reason` reaches `count`.
fn wait_closed(gateway: &Gatewayd, reason: &str, count: f64) {
    gateway.wait_metric(
        "gatewayd_connections_closed_total",
        &[("listener", "stomp.tcp"), ("reason", reason)],
        count,
    );
}

#[test]
fn closed_connections_are_counted_by_reason() {
    let gateway = Gatewayd::start(&format!(
        "{}[stomp]\ndeadlines = {{ pre_auth_ms = 1000 }}\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config()
    ));
    let stomp = gateway.listener("stomp.tcp");
    // A DISCONNECT: the client's choice.
    let mut polite = Peer::connect(stomp);
    polite.send(&stomp_client::Frame::new("DISCONNECT").header("receipt", "bye"));
    assert_eq!(polite.expect_frame(WAIT).command, "RECEIPT");
    wait_closed(&gateway, "client", 1.0);
    // A frame that breaks the protocol: ERROR, then the close.
    let mut rude = Peer::connect(stomp);
    rude.send_raw(b"NOT-A-COMMAND\n\n\0");
    assert_eq!(rude.expect_frame(WAIT).command, "ERROR");
    wait_closed(&gateway, "protocol_error", 1.0);
    // No CONNECT before the pre-auth deadline.
    let _silent = Peer::open(stomp);
    wait_closed(&gateway, "deadline", 1.0);
    wait_closed(&gateway, "client", 1.0);
}

#[test]
fn a_grpc_client_that_goes_away_is_counted_as_the_clients_close() {
    let gateway = Gatewayd::start(&config_enabling(&["messageloop.grpc"]));
    let address = gateway.listener("messageloop.grpc");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stream = runtime.block_on(messageloop_client::grpc::connected_g2(address));
    // The HTTP/2 connection goes away under the open stream, as when a client process ends.
    drop(stream);
    drop(runtime);
    let closed = |reason: &str| {
        gateway.metric(
            "gatewayd_connections_closed_total",
            &[("listener", "messageloop.grpc"), ("reason", reason)],
        )
    };
    gateway.wait_metric(
        "gatewayd_connections_closed_total",
        &[("listener", "messageloop.grpc"), ("reason", "client")],
        1.0,
    );
    assert_eq!(closed("protocol_error"), 0.0);
}
