//! Flow control over real sockets, for every protocol's publish path: a publisher far faster than a subscriber that
//! reads with pauses is slowed down, and the subscriber gets every message in order without being cut; a
//! subscriber that never reads is cut once it has held its publisher for `bus.max_publisher_stall_ms`, and the
//! publisher's other subscriber still gets everything.

mod support;

#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;

use std::time::Duration;

use matrix_clients::*;
use support::*;

/// Bodies big enough that a few hundred fill the socket buffers in front of a subscriber that stops reading.
const BODY: usize = 16 * 1024;
const MESSAGES: usize = 1500;

/// Every listener, and subscriber queues of eight messages: a subscriber that falls behind the socket buffers
/// is over its bound at once.
fn flow_config(max_stall_ms: u64) -> String {
    config(&format!(
        "[bus]\nsubscriber_queue = {{ max_messages = 8, max_bytes = 1048576 }}\n\
         max_publisher_stall_ms = {max_stall_ms}\nslow_consumer = \"disconnect\"\n"
    ))
}

fn body(n: usize) -> Vec<u8> {
    let mut body = format!("{n:06}").into_bytes();
    body.resize(BODY, b'.');
    body
}

/// Publishes `MESSAGES` numbered bodies on `topic` as fast as the connection takes them, on a thread of its own.
fn publish_all(
    publisher: Protocol,
    addrs: Addrs,
    topic: &'static str,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = runtime();
        let mut client = Pub::connect(publisher, &addrs, &rt);
        for n in 0..MESSAGES {
            let message = Outgoing {
                payload: body(n).into(),
                ..Outgoing::default()
            };
            client.publish(topic, &message, &rt);
        }
        client.finish(&rt);
    })
}

fn receive_all_in_order(sub: &mut Sub, rt: &tokio::runtime::Runtime, pause_every: Option<usize>) {
    for n in 0..MESSAGES {
        let got = sub.recv(rt);
        assert_eq!(
            &got.body[..6],
            format!("{n:06}").as_bytes(),
            "{}: message {n} out of order or missing",
            sub.proto()
        );
        assert_eq!(got.body.len(), BODY);
        if pause_every.is_some() && n == 0 {
            // A long first pause: however slow the publisher (a loaded machine), it fills every buffer in
            // front of the reader and must stall, before the reader's pace takes over.
            std::thread::sleep(Duration::from_secs(1));
        } else if pause_every.is_some_and(|every| n % every == every - 1) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn stalls(gateway: &Gatewayd, publisher: Protocol) -> f64 {
    gateway.metric(
        "gatewayd_publisher_stalls_total",
        &[("protocol", publisher.name())],
    )
}

fn slow_reader_gets_everything(publisher: Protocol, subscriber: Protocol, topic: &'static str) {
    // Stalls never run out here: only the pauses of the reader set the pace.
    let gateway = Gatewayd::start(&flow_config(60_000));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    let mut sub = Sub::subscribe(subscriber, &addrs, topic, &rt);
    wait_subscribed(&gateway, topic, 1, 0);
    let sender = publish_all(publisher, addrs, topic);
    receive_all_in_order(&mut sub, &rt, Some(20));
    sender.join().expect("publisher");
    assert!(
        stalls(&gateway, publisher) > 0.0,
        "{publisher} was never stalled"
    );
    assert_eq!(drops(&gateway, "slow_consumer_disconnect", subscriber), 0.0);
    assert!(sub.try_recv(&rt, Duration::from_millis(100)).is_none());
}

#[test]
fn stomp_publisher_is_slowed_to_a_slow_stomp_reader() {
    slow_reader_gets_everything(Protocol::Stomp, Protocol::Stomp, "flow.stomp");
}

#[test]
fn messageloop_publisher_is_slowed_to_a_slow_messageloop_reader() {
    slow_reader_gets_everything(Protocol::MessageLoop, Protocol::MessageLoop, "flow.ml");
}

#[test]
fn goomerang_publisher_is_slowed_to_a_slow_goomerang_reader() {
    slow_reader_gets_everything(Protocol::Goomerang, Protocol::Goomerang, "flow.goomerang");
}

#[test]
fn chanserv_publisher_is_slowed_to_a_slow_chanserv_reader() {
    slow_reader_gets_everything(Protocol::Chanserv, Protocol::Chanserv, "flow.chanserv");
}

#[test]
fn mqtt_publisher_is_slowed_to_a_slow_mqtt_reader() {
    slow_reader_gets_everything(Protocol::Mqtt, Protocol::Mqtt, "flow.mqtt");
}

#[test]
fn loom_producer_is_slowed_to_a_slow_goomerang_reader() {
    slow_reader_gets_everything(Protocol::Loom, Protocol::Goomerang, "flow.loom");
}

#[test]
fn stomp_publisher_is_slowed_to_a_slow_messageloop_reader() {
    slow_reader_gets_everything(Protocol::Stomp, Protocol::MessageLoop, "flow.cross");
}

/// The stuck subscriber is opened and never read; the reader reads without pauses.
fn stuck_subscriber_is_cut(publisher: Protocol, subscriber: Protocol, topic: &'static str) {
    let gateway = Gatewayd::start(&flow_config(1000));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    let _stuck = Sub::subscribe(subscriber, &addrs, topic, &rt);
    let mut reader = Sub::subscribe(subscriber, &addrs, topic, &rt);
    wait_subscribed(&gateway, topic, 2, 0);
    let sender = publish_all(publisher, addrs, topic);
    receive_all_in_order(&mut reader, &rt, None);
    sender.join().expect("publisher");
    // The stuck subscriber held the publisher, then got the policy; the reader was never cut.
    assert!(
        stalls(&gateway, publisher) > 0.0,
        "{publisher} was never stalled"
    );
    assert_eq!(drops(&gateway, "slow_consumer_disconnect", subscriber), 1.0);
    // Nobody is over a bound any more (the stuck queue is closed): no connection shows a stall.
    gateway.wait_for("/api/connections", "no stalled connection", |connections| {
        connections
            .as_array()
            .is_some_and(|all| all.iter().all(|c| c.get("flow").is_none()))
    });
}

#[test]
fn a_stomp_subscriber_that_never_reads_is_cut_and_the_others_get_everything() {
    stuck_subscriber_is_cut(Protocol::Stomp, Protocol::Stomp, "stuck.stomp");
}

#[test]
fn a_messageloop_subscriber_that_never_reads_is_cut_and_the_others_get_everything() {
    stuck_subscriber_is_cut(Protocol::MessageLoop, Protocol::MessageLoop, "stuck.ml");
}

#[test]
fn a_goomerang_subscriber_that_never_reads_is_cut_and_the_others_get_everything() {
    stuck_subscriber_is_cut(Protocol::Goomerang, Protocol::Goomerang, "stuck.goomerang");
}

#[test]
fn a_chanserv_subscriber_that_never_reads_is_cut_and_the_others_get_everything() {
    stuck_subscriber_is_cut(Protocol::Chanserv, Protocol::Chanserv, "stuck.chanserv");
}

#[test]
fn an_mqtt_subscriber_that_never_reads_is_cut_and_the_others_get_everything() {
    stuck_subscriber_is_cut(Protocol::Mqtt, Protocol::Mqtt, "stuck.mqtt");
}

#[test]
fn a_subscriber_that_never_reads_a_loom_room_producer_is_cut() {
    stuck_subscriber_is_cut(Protocol::Loom, Protocol::Goomerang, "stuck.loom");
}

#[test]
fn the_admin_api_shows_the_stalled_publisher_and_the_stalling_subscriber() {
    let gateway = Gatewayd::start(&flow_config(60_000));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    let _stuck = Sub::subscribe(Protocol::Stomp, &addrs, "shown", &rt);
    wait_subscribed(&gateway, "shown", 1, 0);
    let _sender = publish_all(Protocol::Stomp, addrs, "shown");
    gateway.wait_for(
        "/api/connections",
        "a stalled publisher and a stalling subscriber",
        |connections| {
            let all = connections.as_array().cloned().unwrap_or_default();
            let has = |key: &str| all.iter().any(|c| c["flow"][key].is_u64());
            has("stalled_ms") && has("stalling_ms")
        },
    );
    // The publisher thread stays blocked in its socket write; gatewayd's shutdown ends it.
}

/// MessageLoop over WebSocket (JSON): the publisher sends windows of publishes before reading their acks.
#[test]
fn messageloop_ws_publisher_is_slowed_to_a_slow_messageloop_ws_reader() {
    use messageloop_client::Ws;
    use serde_json::json;
    const WINDOW: usize = 32;
    let gateway = Gatewayd::start(&flow_config(60_000));
    let address = gateway.listener("messageloop.ws");
    let mut reader = Ws::connect(address, &["messageloop+json"]);
    reader.handshake("2.0.0", "");
    reader.subscribe("s", &["flow.ws"]);
    let sender = std::thread::spawn(move || {
        let mut ws = Ws::connect(address, &["messageloop+json"]);
        ws.handshake("2.0.0", "");
        let pad = ".".repeat(BODY);
        for window in 0..MESSAGES / WINDOW {
            for i in 0..WINDOW {
                let n = window * WINDOW + i;
                ws.send(json!({"id": format!("p{n}"), "publish": {"channel": "flow.ws",
                    "payload": {"content_type": "application/json", "json": {"n": n, "pad": pad}}}}));
            }
            for _ in 0..WINDOW {
                ws.recv_kind("publish_ack");
            }
        }
    });
    let mut next = 0;
    while next < MESSAGES / WINDOW * WINDOW {
        let publication = reader.recv_kind("publication");
        for message in publication["publication"]["messages"].as_array().unwrap() {
            assert_eq!(
                message["payload"]["json"]["n"], next,
                "out of order or missing"
            );
            next += 1;
            if next % 20 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    sender.join().expect("publisher");
    assert!(stalls(&gateway, Protocol::MessageLoop) > 0.0);
    assert_eq!(
        drops(&gateway, "slow_consumer_disconnect", Protocol::MessageLoop),
        0.0
    );
}
