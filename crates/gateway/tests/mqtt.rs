//! MQTT over real sockets against the gatewayd binary: paho-mqtt (PyPI) at 3.1.1 and 5.0 over TCP and TLS (and the
//! 5.0 shared subscriptions, server topic aliases, No Local on resume, will vs session end, enhanced auth),
//! mqtt.js (npm) and a raw WebSocket (subprotocol, split packets, text refused), MQTT ↔ STOMP both ways (also with
//! mosquitto_sub/mosquitto_pub from Debian), reload,
//! session takeover, and hostile input (garbage, a bad remaining length, PUBLISH before CONNECT, a packet over the
//! size limit, a second CONNECT, an authentication method, an unknown protocol level, names over the topic
//! bounds, silence past the keep-alive and past the CONNECT deadline), each of which must leave other
//! connections working.

mod support;

#[path = "support/mqtt_client.rs"]
mod mqtt_client;
#[path = "support/node.rs"]
mod node;
#[path = "support/python.rs"]
mod python;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::time::{Duration, Instant};

use mqtt_client::{packet, publish, publish_parts, subscribe, Client, Received};
use stomp_client::{frames, Peer};
use support::*;

const WAIT: Duration = Duration::from_secs(5);

/// MQTT over TCP and WebSocket, STOMP over TCP, on ephemeral ports; a 4 KiB packet limit, a short CONNECT
/// deadline, and two tokens: `secret` (everything) and `limited` (only `allowed.#`).
fn config() -> String {
    base_config()
        + r#"
[mqtt]
max_packet_size = 4096
deadlines = { pre_auth_ms = 1000, idle_frame_ms = 30000, write_ms = 30000 }

[[mqtt.auth.tokens]]
token = "secret"
identity = { name = "alice" }

[[mqtt.auth.tokens]]
token = "limited"
identity = { name = "limited", publish = ["allowed.#"], subscribe = ["allowed.#"] }

[mqtt.tcp]
enabled = true
address = "127.0.0.1:0"

[mqtt.ws]
enabled = true
address = "127.0.0.1:0"

[mqtt.tls]
enabled = true
address = "127.0.0.1:0"
tls = { self_signed = true }

[stomp.tcp]
enabled = true
address = "127.0.0.1:0"
"#
}

fn start() -> Gatewayd {
    Gatewayd::start(&config())
}

/// Runs the Python `script` against the MQTT TCP and TLS listeners of a fresh gatewayd.
fn paho(script: &str) {
    let gateway = start();
    python::pytest(
        script,
        &[
            ("MQTT_ADDRESS", gateway.listener("mqtt.tcp").to_string()),
            ("MQTT_TLS_ADDRESS", gateway.listener("mqtt.tls").to_string()),
        ],
    );
}

#[test]
fn paho_clients_at_3_1_1_and_5_0() {
    paho("test_mqtt.py");
}

#[test]
fn paho_against_the_5_0_rules_beyond_the_codec() {
    paho("test_mqtt5_conformance.py");
}

#[test]
fn mqttjs_over_websocket() {
    let gateway = start();
    node::run(
        "test_mqtt.cjs",
        &[(
            "MQTT_WS_URL",
            format!("ws://{}/mqtt", gateway.listener("mqtt.ws")),
        )],
    );
}

/// Waits until the bus shows `n` fanout subscribers on canonical `topic`.
#[test]
fn mqtt_and_stomp_meet_on_the_same_topics() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");
    let mut stomp = Peer::connect(gateway.listener("stomp.tcp"));
    stomp.send(&frames::subscribe("/topic/cross.a.b", "auto", "s1"));
    wait_fanout(&gateway, "cross.a.b", 1);

    // MQTT → STOMP, at both protocol levels.
    for level in [4, 5] {
        let mut publisher = Client::connect(mqtt, level, &format!("pub{level}"));
        publisher.send(&publish(level, "cross/a/b", b"from mqtt"));
        let message = stomp.expect_frame(WAIT);
        assert_eq!(message.command, "MESSAGE");
        assert_eq!(message.get("destination"), Some("/topic/cross.a.b"));
        assert_eq!(message.body, b"from mqtt");
    }

    // STOMP → MQTT through a wildcard filter.
    for level in [4, 5] {
        let mut subscriber = Client::connect(mqtt, level, &format!("sub{level}"));
        subscriber.send(&subscribe(level, 1, "cross/+/c", 0));
        let suback = subscriber.expect_packet(WAIT);
        assert_eq!(suback.kind(), 9, "{suback:?}");
        assert_eq!(suback.body.last(), Some(&0));
        stomp.send(&frames::send_string("/topic/cross.x.c", "from stomp"));
        let delivered = subscriber.expect_packet(WAIT);
        let (topic, payload) = publish_parts(level, &delivered);
        assert_eq!(topic, "cross/x/c");
        assert_eq!(payload, b"from stomp");
    }
}

/// A client that must stay unaffected: it still gets its own publish back.
fn assert_still_served(bystander: &mut Client) {
    bystander.send(&publish(4, "bystander/t", b"still here"));
    let delivered = bystander.expect_packet(WAIT);
    assert_eq!(
        publish_parts(4, &delivered),
        ("bystander/t".to_owned(), b"still here".to_vec())
    );
}

/// The reason code of a 5.0 DISCONNECT, then the close.
fn expect_disconnect(client: &mut Client, reason: u8) {
    let disconnect = client.expect_packet(WAIT);
    assert_eq!(disconnect.kind(), 14, "{disconnect:?}");
    assert_eq!(disconnect.body.first(), Some(&reason), "{disconnect:?}");
    client.expect_closed(WAIT);
}

#[test]
fn hostile_input_gets_the_right_answer_and_hurts_nobody_else() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");
    let mut bystander = Client::connect(mqtt, 4, "bystander");
    bystander.send(&subscribe(4, 1, "bystander/t", 0));
    assert_eq!(bystander.expect_packet(WAIT).kind(), 9);

    // Garbage: a reserved packet type 0 is closed at once.
    let mut garbage = Client::open(mqtt);
    garbage.send(b"\x00\x05hello world");
    garbage.expect_closed(WAIT);

    // A remaining length longer than four bytes is malformed.
    let mut bad_length = Client::open(mqtt);
    bad_length.send(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    bad_length.expect_closed(WAIT);

    // PUBLISH before CONNECT: closed without an answer.
    let mut early = Client::open(mqtt);
    early.send(&publish(4, "a/b", b"x"));
    early.expect_closed(WAIT);

    // Over max_packet_size: 5.0 gets DISCONNECT 0x95, 3.1.1 a close.
    let mut big = Client::connect(mqtt, 5, "big5");
    big.try_send(&publish(5, "big", &[b'x'; 5000]));
    expect_disconnect(&mut big, 0x95);
    let mut big = Client::connect(mqtt, 4, "big4");
    big.try_send(&publish(4, "big", &[b'x'; 5000]));
    big.expect_closed(WAIT);

    // A second CONNECT is a protocol error.
    let mut twice = Client::connect(mqtt, 5, "twice");
    twice.send(&mqtt_client::connect(5, "twice", 60, None));
    expect_disconnect(&mut twice, 0x82);

    // A 5.0 Authentication Method is refused with CONNACK 0x8C.
    let mut body = Vec::new();
    body.extend_from_slice(b"\x00\x04MQTT\x05\x02\x00\x3c");
    body.extend_from_slice(b"\x08\x15\x00\x05SCRAM");
    body.extend_from_slice(b"\x00\x01x");
    let mut enhanced = Client::open(mqtt);
    enhanced.send(&packet(0x10, &body));
    let connack = enhanced.expect_packet(WAIT);
    assert_eq!((connack.kind(), connack.body.get(1)), (2, Some(&0x8C)));
    enhanced.expect_closed(WAIT);

    // MQTT 3.1 ("MQIsdp", level 3) gets return code 1.
    let mut old = Client::open(mqtt);
    let mut body = b"\x00\x06MQIsdp\x03\x02\x00\x3c".to_vec();
    body.extend_from_slice(b"\x00\x01x");
    old.send(&packet(0x10, &body));
    assert_eq!(old.expect_packet(WAIT).body, vec![0, 1]);
    old.expect_closed(WAIT);

    // A wrong password: 3.1.1 return code 4, 5.0 reason 0x86.
    for (level, code) in [(4, 4), (5, 0x86)] {
        let mut refused = Client::open(mqtt);
        refused.send(&mqtt_client::connect(level, "x", 60, Some("wrong")));
        let connack = refused.expect_packet(WAIT);
        assert_eq!(connack.body.get(1), Some(&code), "level {level}");
        refused.expect_closed(WAIT);
    }

    // Names over the topic bounds: a publish is DISCONNECT 0x90, a filter SUBACK 0x8F. Each `%` is escaped as
    // `%25`, so 1500 of them are 4500 bytes of canonical text (the bound is 4096) in a packet under 4096 bytes.
    let long = "%".repeat(1500);
    let deep = vec!["l"; 200].join("/");
    for name in [&long, &deep] {
        let mut client = Client::connect(mqtt, 5, "bounds");
        client.send(&subscribe(5, 1, name, 0));
        let suback = client.expect_packet(WAIT);
        assert_eq!(suback.body.last(), Some(&0x8F), "{suback:?}");
        client.send(&publish(5, name, b"x"));
        expect_disconnect(&mut client, 0x90);
    }

    assert_still_served(&mut bystander);
    assert!(dropped(&gateway, "malformed", "mqtt") >= 4.0);
}

#[test]
fn acl_refusals_carry_their_reason_codes() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");
    for (level, refused) in [(4u8, 0x80u8), (5, 0x87)] {
        let mut client = Client::open(mqtt);
        client.send(&mqtt_client::connect(level, "limited", 60, Some("limited")));
        assert_eq!(client.expect_packet(WAIT).body.get(1), Some(&0));
        client.send(&subscribe(level, 7, "secret/#", 1));
        let suback = client.expect_packet(WAIT);
        assert_eq!(suback.kind(), 9);
        assert_eq!(suback.body.last(), Some(&refused), "level {level}");
        client.send(&subscribe(level, 8, "allowed/+", 1));
        let suback = client.expect_packet(WAIT);
        assert_eq!(suback.body.last(), Some(&1), "level {level}");
    }
}

#[test]
fn silence_past_the_keep_alive_or_the_connect_deadline_closes() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");

    let mut silent = Client::open(mqtt);
    silent.send(&mqtt_client::connect(5, "silent", 1, None));
    assert_eq!(silent.expect_packet(WAIT).kind(), 2);
    let started = Instant::now();
    expect_disconnect(&mut silent, 0x8D);
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // pre_auth_ms = 1000 in the config.
    let started = Instant::now();
    let mut mute = Client::open(mqtt);
    assert_eq!(mute.receive(WAIT), Received::Closed);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

fn reload_config(token: &str) -> String {
    base_config()
        + &format!(
            r#"
[mqtt.auth]
required = true

[[mqtt.auth.tokens]]
token = "{token}"
identity = {{ name = "app" }}

[mqtt.tcp]
enabled = true
address = "127.0.0.1:0"
"#
        )
}

/// A reload swaps the `[mqtt]` settings for new connections (here the token) and leaves open ones alone.
#[test]
fn reload_applies_new_tokens_to_new_connections_only() {
    let gateway = Gatewayd::start(&reload_config("token-a"));
    let mqtt = gateway.listener("mqtt.tcp");
    let login = |token: &str| {
        let mut client = Client::open(mqtt);
        client.send(&mqtt_client::connect(5, "", 60, Some(token)));
        let code = client.expect_packet(WAIT).body[1];
        (client, code)
    };
    let (mut old, code) = login("token-a");
    assert_eq!(code, 0);
    old.send(&subscribe(5, 1, "reload/t", 0));
    assert_eq!(old.expect_packet(WAIT).kind(), 9);

    let report: serde_json::Value = gateway.rewrite_and_reload(&reload_config("token-b"));
    assert!(report["error"].is_null(), "{report}");
    assert_reload(&report, &["mqtt.tcp"], &[]);

    old.send(&publish(5, "reload/t", b"still here"));
    assert_eq!(
        publish_parts(5, &old.expect_packet(WAIT)),
        ("reload/t".to_owned(), b"still here".to_vec())
    );
    let (mut refused, code) = login("token-a");
    assert_eq!(code, 0x86);
    refused.expect_closed(WAIT);
    let (mut anonymous, code) = {
        let mut client = Client::open(mqtt);
        client.send(&mqtt_client::connect(5, "", 60, None));
        let code = client.expect_packet(WAIT).body[1];
        (client, code)
    };
    assert_eq!(code, 0x87);
    anonymous.expect_closed(WAIT);
    assert_eq!(login("token-b").1, 0);
}

/// A client that comes back while its old connection is still open takes the session over: the old connection
/// is closed, and the new one gets its subscriptions (session present 1).
#[test]
fn a_takeover_hands_the_session_to_the_new_connection() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");
    let mut old = Client::open(mqtt);
    old.send(&mqtt_client::connect_persistent("returning"));
    assert_eq!(old.expect_packet(WAIT).body, vec![0, 0]);
    old.send(&subscribe(4, 1, "handover/t", 0));
    assert_eq!(old.expect_packet(WAIT).kind(), 9);

    let mut new = Client::open(mqtt);
    new.send(&mqtt_client::connect_persistent("returning"));
    assert_eq!(new.expect_packet(WAIT).body, vec![1, 0], "session present");
    old.expect_closed(WAIT);

    let mut publisher = Client::connect(mqtt, 4, "publisher");
    publisher.send(&publish(4, "handover/t", b"to the new one"));
    assert_eq!(
        publish_parts(4, &new.expect_packet(WAIT)),
        ("handover/t".to_owned(), b"to the new one".to_vec())
    );
}

/// The WebSocket listener answers subprotocol `mqtt`, takes packets in binary messages and closes on a text one.
#[test]
fn websocket_takes_binary_packets_and_refuses_text() {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
    let gateway = start();
    let url = format!("ws://{}/mqtt", gateway.listener("mqtt.ws"));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "mqtt".parse().expect("header value"),
    );
    let (mut ws, response) = tungstenite::connect(request).expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("mqtt")
    );
    // CONNECT split over two messages.
    let connect = mqtt_client::connect(4, "ws", 60, None);
    let (first, second) = connect.split_at(5);
    ws.send(Message::binary(first.to_vec())).expect("send");
    ws.send(Message::binary(second.to_vec())).expect("send");
    match ws.read().expect("CONNACK") {
        Message::Binary(data) => assert_eq!(&data[..], &[0x20, 2, 0, 0]),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = ws.get_mut() {
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    }
    ws.send(Message::text("not mqtt")).expect("send");
    match ws.read() {
        Ok(Message::Close(_)) => {}
        Err(tungstenite::Error::Io(error))
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("the text message did not close the connection")
        }
        Err(_) => {}
        Ok(other) => panic!("expected the close, got {other:?}"),
    }
}

/// Runs `program` (a mosquitto client from Debian's mosquitto-clients) with `args`, failing with the package to
/// install when it is missing.
fn mosquitto(program: &str, args: &[&str]) -> std::process::Child {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install Debian's mosquitto-clients (scripts/test.sh does)")
        })
}

#[test]
fn mosquitto_clients_meet_stomp_both_ways() {
    let gateway = start();
    let mqtt = gateway.listener("mqtt.tcp");
    let (host, port) = (mqtt.ip().to_string(), mqtt.port().to_string());
    let common = [
        "-h", &host, "-p", &port, "-u", "app", "-P", "secret", "-V", "mqttv311",
    ];
    // mosquitto_sub gets what a STOMP client sends to /topic/sensors.t1.
    let mut sub_args = common.to_vec();
    sub_args.extend(["-t", "sensors/t1", "-C", "1", "-W", "10", "-v"]);
    let subscriber = mosquitto("mosquitto_sub", &sub_args);
    wait_fanout(&gateway, "sensors.t1", 1);
    let mut stomp = Peer::connect(gateway.listener("stomp.tcp"));
    stomp.send(&frames::send_string("/topic/sensors.t1", "21.5"));
    let output = subscriber.wait_with_output().expect("mosquitto_sub");
    assert_succeeded(&output, "mosquitto_sub");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "sensors/t1 21.5\n");
    // A STOMP subscriber gets what mosquitto_pub publishes at QoS 1.
    let mut listener = Peer::connect(gateway.listener("stomp.tcp"));
    listener.send(&frames::subscribe("/topic/alerts.fire", "auto", "s").header("receipt", "r"));
    assert_eq!(listener.expect_frame(WAIT).command, "RECEIPT");
    let mut pub_args = common.to_vec();
    pub_args.extend(["-t", "alerts/fire", "-m", "evacuate", "-q", "1"]);
    let output = mosquitto("mosquitto_pub", &pub_args)
        .wait_with_output()
        .expect("mosquitto_pub");
    assert_succeeded(&output, "mosquitto_pub");
    let message = listener.expect_frame(WAIT);
    assert_eq!(message.command, "MESSAGE", "{message:?}");
    assert_eq!(message.body, b"evacuate");
    assert_eq!(message.get("destination"), Some("/topic/alerts.fire"));
}
