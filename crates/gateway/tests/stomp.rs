//! STOMP over real sockets against the gatewayd binary: the seed Go peer's cases
//! (docs/protocols/stomp.md, "Clients it is tested with") with a client that has its wire habits,
//! the bad inputs of docs/protocols/stomp.md, "Errors", heart-beats, slow consumers, shutdown,
//! config checks, durable subscriptions, and the stomp.py (TCP, TLS), @stomp/stompjs (WebSocket)
//! and stompit (TCP) interop suites.

mod support;

#[path = "support/node.rs"]
mod node;
#[path = "support/python.rs"]
mod python;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::collections::HashSet;
use std::time::Duration;

use stomp_client::{app_token_auth, frames, Frame, Peer, Received};
use support::*;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

/// All three STOMP listeners on ephemeral ports, fast heart-beat floors, and two logins: `guest`
/// (everything) and `limited` (may only publish to `allowed.#`).
fn config() -> String {
    base_config()
        + r#"
[stomp.heart_beat]
min_interval_ms = 100
grace_factor = 2

[stomp.auth]
required = false

[[stomp.auth.tokens]]
login = "guest"
token = "guest"
identity = { name = "guest" }

[[stomp.auth.tokens]]
login = "limited"
token = "secret"
identity = { name = "limited", publish = ["allowed.#"] }

[stomp.tcp]
enabled = true
address = "127.0.0.1:0"

[stomp.tls]
enabled = true
address = "127.0.0.1:0"
tls = { self_signed = true }

[stomp.ws]
enabled = true
address = "127.0.0.1:0"
"#
}

fn start() -> Gatewayd {
    Gatewayd::start(&config())
}

/// gatewayd with [`config`], and the address of its STOMP TCP listener.
fn start_tcp() -> (Gatewayd, std::net::SocketAddr) {
    let gateway = start();
    let address = gateway.listener("stomp.tcp");
    (gateway, address)
}

/// Like `support::wait_fanout`, except that a topic gone from `/api/topics` counts as 0 subscribers.
fn wait_fanout_or_gone(gateway: &Gatewayd, topic: &str, subscribers: u64) {
    gateway.wait_for("/api/topics", &format!("{subscribers} on {topic}"), |v| {
        topic_entry(v, topic).map_or(subscribers == 0, |t| {
            t["fanout_subscribers"].as_u64() == Some(subscribers)
        })
    });
}

fn message(peer: &mut Peer) -> Frame {
    let frame = peer.expect_frame(WAIT);
    assert_eq!(frame.command, "MESSAGE", "{frame:?}");
    frame
}

/// A logged-in client at `address` that has subscribed to `destination` with `ack` mode and `id`.
fn subscriber(address: std::net::SocketAddr, destination: &str, ack: &str, id: &str) -> Peer {
    let mut peer = Peer::connect(address);
    peer.send(&frames::subscribe(destination, ack, id));
    peer
}

/// Reads the next frame of `peer` and checks it is an ERROR with `text` as its `message`.
fn expect_error(peer: &mut Peer, text: &str) {
    let error = peer.expect_frame(WAIT);
    assert_eq!(error.command, "ERROR");
    assert_eq!(error.get("message"), Some(text));
}

/// A STOMP 1.2 CONNECT frame asking for `heart_beat`.
fn heart_beat_connect(heart_beat: &str) -> Vec<u8> {
    raw_frame(
        "CONNECT",
        &[
            ("accept-version", "1.2"),
            ("host", "h"),
            ("heart-beat", heart_beat),
        ],
        b"",
    )
}

fn raw_frame(command: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{command}\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}:{value}\n").as_bytes());
    }
    out.push(b'\n');
    out.extend_from_slice(body);
    out.push(0);
    out
}

#[test]
fn seed_connect_is_a_1_0_session_without_heart_beats() {
    let gateway = start();
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    peer.send(&frames::connect("guest", "guest"));
    let connected = peer.expect_frame(WAIT);
    assert_eq!(connected.command, "CONNECTED");
    assert!(!connected.get("session").unwrap_or_default().is_empty());
    assert_eq!(connected.get("version"), Some("1.0"));
    assert_eq!(connected.get("heart-beat"), Some("0,0"));
    assert_eq!(peer.receive(QUIET), Received::Nothing);
    assert_eq!(peer.heart_beats, 0);
}

#[test]
fn seed_topic_fan_out_keeps_user_headers() {
    let (gateway, address) = start_tcp();
    let mut a = Peer::connect(address);
    let mut b = Peer::connect(address);
    a.send(&frames::subscribe("/topic/t", "auto", "s1"));
    b.send(&frames::subscribe("/topic/t", "auto", "s1"));
    wait_fanout_or_gone(&gateway, "t", 2);
    let mut sender = Peer::connect(address);
    sender.send(&frames::send_string("/topic/t", "hello").header("x-note", "a:b:c"));
    for peer in [&mut a, &mut b] {
        let m = message(peer);
        assert_eq!(m.get("destination"), Some("/topic/t"));
        assert!(!m.get("message-id").unwrap_or_default().is_empty());
        assert_eq!(m.get("subscription"), Some("s1"));
        assert_eq!(m.get("x-note"), Some("a:b:c"));
        assert_eq!(m.body, b"hello");
    }
}

#[test]
fn seed_queue_balances_each_message_to_exactly_one_consumer() {
    let (gateway, address) = start_tcp();
    let mut a = Peer::connect(address);
    let mut b = Peer::connect(address);
    a.send(&frames::subscribe("/queue/q", "auto", "c"));
    b.send(&frames::subscribe("/queue/q", "auto", "c"));
    wait_members(&gateway, "q", 2);
    let mut sender = Peer::connect(address);
    for i in 0..100 {
        sender.send(&frames::send_string("/queue/q", &format!("m{i}")));
    }
    let mut seen = Vec::new();
    let mut counts = [0usize; 2];
    for (i, peer) in [&mut a, &mut b].into_iter().enumerate() {
        // The first may take up to WAIT; QUIET after the last ends the consumer's share.
        while let Received::Frame(m) = peer.receive(if counts[i] == 0 { WAIT } else { QUIET }) {
            assert_eq!(m.get("destination"), Some("/queue/q"));
            seen.push(String::from_utf8(m.body).unwrap());
            counts[i] += 1;
        }
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), 100, "no duplicates and none lost");
    assert_eq!(unique.len(), 100);
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");
}

#[test]
fn seed_unsubscribe_by_destination_stops_delivery() {
    let (gateway, address) = start_tcp();
    let mut a = subscriber(address, "/topic/t", "auto", "s1");
    wait_fanout_or_gone(&gateway, "t", 1);
    a.send(&frames::unsubscribe("/topic/t", ""));
    wait_fanout_or_gone(&gateway, "t", 0);
    let mut sender = Peer::connect(address);
    sender.send(&frames::send_string("/topic/t", "late"));
    assert_eq!(a.receive(QUIET), Received::Nothing);
}

#[test]
fn seed_unacked_message_is_redelivered_after_abrupt_close() {
    let (gateway, address) = start_tcp();
    let mut first = subscriber(address, "/queue/r", "client", "c1");
    wait_members(&gateway, "r", 1);
    let mut sender = Peer::connect(address);
    sender.send(&frames::send_string("/queue/r", "work"));
    let m = message(&mut first);
    assert_eq!(m.get("redelivered"), None);
    first.shutdown();
    wait_members(&gateway, "r", 0);
    let mut second = subscriber(address, "/queue/r", "client", "c2");
    let again = message(&mut second);
    assert_eq!(again.body, b"work");
    assert_eq!(again.get("redelivered"), Some("true"));
    let id = again.get("message-id").unwrap().to_owned();
    second.send(&Frame::new("ACK").header("message-id", &id));
    gateway.wait_for("/api/topics", "the ack", |v| {
        topic_entry(v, "r").is_some_and(|t| t["group"]["unacked"] == 0)
    });
}

#[test]
fn seed_errors_are_answered_and_close() {
    let (_gateway, address) = start_tcp();
    let mut early = Peer::open(address);
    early.send(&frames::send_string("/topic/t", "too early"));
    expect_error(&mut early, "Must CONNECT first");
    early.expect_closed(WAIT);

    let mut bogus = Peer::connect(address);
    bogus.send(&Frame::new("BOGUS"));
    expect_error(&mut bogus, "Bad command");
    bogus.expect_closed(WAIT);
}

#[test]
fn binary_bodies_with_nul_arrive_intact() {
    let (gateway, address) = start_tcp();
    let mut consumer = subscriber(address, "/topic/bin", "auto", "b");
    wait_fanout_or_gone(&gateway, "bin", 1);
    let body = [0u8, 1, 2, 0, 0xff, 0xfe, b'\n', 0];
    let mut sender = Peer::connect(address);
    sender.send(
        &Frame::new("SEND")
            .header("destination", "/topic/bin")
            .body(&body),
    );
    let m = message(&mut consumer);
    assert_eq!(m.body, body);
    assert_eq!(m.get("content-length"), Some("8"));
}

#[test]
fn a_stalled_subscriber_does_not_stall_others_and_is_dropped_as_slow() {
    let config =
        config() + "[bus]\nsubscriber_queue = { max_messages = 100000, max_bytes = 1048576 }\n";
    let gateway = Gatewayd::start(&config);
    let address = gateway.listener("stomp.tcp");
    let mut stalled = subscriber(address, "/topic/flood", "auto", "s");
    let mut reader = subscriber(address, "/topic/flood", "auto", "r");
    wait_fanout_or_gone(&gateway, "flood", 2);
    let mut sender = Peer::connect(address);
    let body = vec![b'x'; 16 << 10];
    for _ in 0..2000 {
        sender.send(
            &Frame::new("SEND")
                .header("destination", "/topic/flood")
                .body(&body),
        );
        assert_eq!(message(&mut reader).body.len(), body.len());
    }
    let last = loop {
        match stalled.receive(WAIT) {
            Received::Frame(frame) if frame.command == "MESSAGE" => continue,
            Received::Frame(frame) => break frame,
            other => panic!("the stalled subscriber got {other:?}"),
        }
    };
    assert_eq!(last.command, "ERROR");
    assert_eq!(last.get("message"), Some("Slow consumer"));
    stalled.expect_closed(WAIT);
}

#[test]
fn a_full_blocking_queue_stops_reading_from_its_producer() {
    let config = config()
        + "[[bus.groups]]\ntopics = \"slowq\"\nno_member = \"retain\"\noverflow = \"block\"\n\
           max_messages = 2\nmax_bytes = 1048576\n";
    let gateway = Gatewayd::start(&config);
    let address = gateway.listener("stomp.tcp");
    let mut producer = Peer::open(address);
    producer.send_raw(&connect_frame("1.2", "guest", "guest"));
    assert_eq!(producer.expect_frame(WAIT).command, "CONNECTED");
    let sends: Vec<u8> = (1..=5)
        .flat_map(|i| {
            let receipt = format!("r{i}");
            let body = format!("m{i}");
            raw_frame(
                "SEND",
                &[("destination", "/queue/slowq"), ("receipt", &receipt)],
                body.as_bytes(),
            )
        })
        .collect();
    producer.send_raw(&sends);
    for i in 1..=3 {
        let receipt = producer.expect_frame(WAIT);
        assert_eq!(receipt.get("receipt-id"), Some(format!("r{i}").as_str()));
    }
    assert_eq!(
        producer.receive(QUIET),
        Received::Nothing,
        "the producer is paused"
    );
    let mut consumer = subscriber(address, "/queue/slowq", "auto", "c");
    for i in 4..=5 {
        let receipt = producer.expect_frame(WAIT);
        assert_eq!(receipt.get("receipt-id"), Some(format!("r{i}").as_str()));
    }
    for i in 1..=5 {
        assert_eq!(message(&mut consumer).body, format!("m{i}").as_bytes());
    }
}

#[test]
fn heart_beats_flow_and_a_silent_client_is_closed() {
    let (_gateway, address) = start_tcp();
    let mut listener = Peer::open(address);
    listener.send_raw(&heart_beat_connect("0,100"));
    let connected = listener.expect_frame(WAIT);
    assert_eq!(connected.get("heart-beat"), Some("100,0"));
    assert_eq!(
        listener.receive(Duration::from_millis(700)),
        Received::Nothing
    );
    assert!(listener.heart_beats >= 3, "{} beats", listener.heart_beats);

    let mut silent = Peer::open(address);
    silent.send_raw(&heart_beat_connect("100,0"));
    assert_eq!(silent.expect_frame(WAIT).get("heart-beat"), Some("0,100"));
    silent.expect_closed(Duration::from_secs(3));
}

#[test]
fn connections_are_registered_and_capped() {
    let config = config().replace(
        "[stomp.tcp]\nenabled = true\n",
        "[stomp.tcp]\nenabled = true\nlimits = { max_connections = 1 }\n",
    );
    let gateway = Gatewayd::start(&config);
    let address = gateway.listener("stomp.tcp");
    let mut first = subscriber(address, "/topic/a", "auto", "1");
    gateway.wait_for("/api/connections", "the registered connection", |v| {
        v.as_array().is_some_and(|all| {
            all.iter().any(|c| {
                c["listener"] == "stomp.tcp" && c["identity"] == "guest" && c["subscriptions"] == 1
            })
        })
    });
    let mut second = Peer::open(address);
    second.expect_closed(WAIT);
    first.send(&frames::send_string("/topic/a", "still here"));
    assert_eq!(message(&mut first).body, b"still here");
}

#[test]
fn graceful_shutdown_says_goodbye() {
    let gateway = start();
    let mut peer = Peer::connect(gateway.listener("stomp.tcp"));
    let status = gateway.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    expect_error(&mut peer, "server shutting down");
    peer.expect_closed(WAIT);
}

#[test]
fn check_config_names_a_missing_tls_certificate() {
    let text = base_config()
        + "[stomp.tls]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
           tls = { cert_file = \"/nonexistent/cert.pem\", key_file = \"/nonexistent/key.pem\" }\n";
    assert_config_rejected(&text, "stomp.tls.tls.cert_file");
    let (ok, output) = check_config(&config());
    assert!(ok, "{output}");
}

/// One bad-input case (docs/protocols/stomp.md, "Errors"): what to send after an optional CONNECT,
/// and the ERROR `message` expected (`None` = closed without ERROR).
struct Bad {
    name: &'static str,
    connect: Option<&'static str>,
    input: Vec<u8>,
    error: Option<&'static str>,
}

fn connect_frame(version: &str, login: &str, passcode: &str) -> Vec<u8> {
    raw_frame(
        "CONNECT",
        &[
            ("accept-version", version),
            ("host", "h"),
            ("login", login),
            ("passcode", passcode),
        ],
        b"",
    )
}

/// A bad-input case sent after a STOMP 1.2 CONNECT, answered with the ERROR `error`.
fn connected(name: &'static str, input: impl Into<Vec<u8>>, error: &'static str) -> Bad {
    Bad {
        name,
        connect: Some("1.2"),
        input: input.into(),
        error: Some(error),
    }
}

/// A bad-input case sent without a CONNECT first, answered with the ERROR `error`.
fn unconnected(name: &'static str, input: impl Into<Vec<u8>>, error: &'static str) -> Bad {
    Bad {
        name,
        connect: None,
        input: input.into(),
        error: Some(error),
    }
}

fn bad_cases() -> Vec<Bad> {
    let send = |headers: &[(&str, &str)]| raw_frame("SEND", headers, b"x");
    let many_headers: Vec<(String, String)> =
        (0..101).map(|i| (format!("h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many_headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let long_value = "v".repeat(100 * 1024 + 1);
    let case = |name, connect, input, error| Bad {
        name,
        connect,
        input,
        error,
    };
    vec![
        unconnected(
            "frame before CONNECT",
            send(&[("destination", "/topic/a")]),
            "Must CONNECT first",
        ),
        connected("unknown command", b"BOGUS\n\n\0", "Bad command"),
        connected(
            "lower-case command",
            b"send\ndestination:/topic/a\n\n\0",
            "Bad command",
        ),
        connected(
            "server command from the client",
            raw_frame("MESSAGE", &[], b""),
            "Bad command",
        ),
        connected(
            "second CONNECT",
            connect_frame("1.2", "guest", "guest"),
            "Already connected",
        ),
        unconnected(
            "no common version",
            connect_frame("2.0", "guest", "guest"),
            "Version mismatch",
        ),
        unconnected(
            "bad credentials",
            connect_frame("1.2", "guest", "wrong"),
            "Bad CONNECT",
        ),
        unconnected(
            "malformed heart-beat",
            raw_frame(
                "CONNECT",
                &[("accept-version", "1.2"), ("heart-beat", "soon")],
                b"",
            ),
            "Invalid heart-beat",
        ),
        connected(
            "negative content-length",
            b"SEND\ndestination:/topic/a\ncontent-length:-1\n\nx\0",
            "Invalid content-length",
        ),
        connected(
            "non-numeric content-length",
            b"SEND\ndestination:/topic/a\ncontent-length:ten\n\nx\0",
            "Invalid content-length",
        ),
        connected(
            "content-length beyond the body cap",
            b"SEND\ndestination:/topic/a\ncontent-length:99999999999\n\n",
            "Body too large",
        ),
        connected(
            "no NUL after the content-length body",
            b"SEND\ndestination:/topic/a\ncontent-length:1\n\nxy\0",
            "Missing NUL after body",
        ),
        connected(
            "too many headers",
            raw_frame("SEND", &many, b""),
            "Too many headers",
        ),
        connected(
            "header line too long",
            send(&[("destination", "/topic/a"), ("x", &long_value)]),
            "Header too long",
        ),
        unconnected(
            "no NUL before the pre-CONNECT frame cap",
            [b"CONNECT\nx:".as_slice(), &vec![b'a'; 70_000]].concat(),
            "Frame too large",
        ),
        connected(
            "invalid escape in 1.2",
            b"SEND\ndestination:/topic/a\nx:\\t\n\nx\0",
            "Invalid escape",
        ),
        connected(
            "CR without LF",
            b"SEND\rdestination:/topic/a\n\nx\0",
            "Malformed frame",
        ),
        connected(
            "header without colon",
            b"SEND\ndestination\n\nx\0",
            "Invalid header",
        ),
        connected("empty header name", b"SEND\n:v\n\nx\0", "Invalid header"),
        connected(
            "SEND without destination",
            send(&[("x", "y")]),
            "Missing destination",
        ),
        case(
            "SUBSCRIBE without id in 1.1",
            Some("1.1"),
            raw_frame("SUBSCRIBE", &[("destination", "/topic/a")], b""),
            Some("Missing id"),
        ),
        connected(
            "unknown destination prefix",
            send(&[("destination", "/bogus/a")]),
            "Unknown destination",
        ),
        connected(
            "duplicate subscription id",
            [
                raw_frame(
                    "SUBSCRIBE",
                    &[("destination", "/topic/a"), ("id", "1")],
                    b"",
                ),
                raw_frame(
                    "SUBSCRIBE",
                    &[("destination", "/topic/b"), ("id", "1")],
                    b"",
                ),
            ]
            .concat(),
            "Duplicated subscription identifier",
        ),
        connected(
            "selector",
            raw_frame(
                "SUBSCRIBE",
                &[
                    ("destination", "/topic/a"),
                    ("id", "1"),
                    ("selector", "a = 1"),
                ],
                b"",
            ),
            "Selector not supported",
        ),
        connected(
            "ACK of an id never issued",
            raw_frame("ACK", &[("id", "nope")], b""),
            "Message not found",
        ),
        connected(
            "duplicate BEGIN",
            [
                raw_frame("BEGIN", &[("transaction", "t")], b""),
                raw_frame("BEGIN", &[("transaction", "t")], b""),
            ]
            .concat(),
            "Bad transaction",
        ),
        connected(
            "COMMIT of an unknown transaction",
            raw_frame("COMMIT", &[("transaction", "t")], b""),
            "Bad transaction",
        ),
        case(
            "SEND the ACL refuses",
            Some("limited"),
            send(&[("destination", "/topic/secret")]),
            Some("Access refused"),
        ),
        case(
            "TLS ClientHello on the plaintext port",
            None,
            vec![0x16, 0x03, 0x01, 0x00, 0x10],
            None,
        ),
    ]
}

#[test]
fn bad_input_gets_error_and_close_and_leaves_others_working() {
    let (gateway, address) = start_tcp();
    let mut bystander = subscriber(address, "/topic/bystander", "auto", "b");
    wait_fanout_or_gone(&gateway, "bystander", 1);
    for case in bad_cases() {
        let mut peer = Peer::open(address);
        match case.connect {
            None => {}
            Some("limited") => peer.send_raw(&connect_frame("1.2", "limited", "secret")),
            Some(version) => peer.send_raw(&connect_frame(version, "guest", "guest")),
        }
        if case.connect.is_some() {
            let connected = peer.expect_frame(WAIT);
            assert_eq!(connected.command, "CONNECTED", "{}", case.name);
        }
        // The server may close before it read everything; what it read decides the answer.
        let _ = peer.try_send_raw(&case.input);
        match case.error {
            Some(expected) => {
                let error = match peer.receive(WAIT) {
                    Received::Frame(frame) => frame,
                    other => panic!("{}: expected ERROR, got {other:?}", case.name),
                };
                assert_eq!(error.command, "ERROR", "{}", case.name);
                assert_eq!(error.get("message"), Some(expected), "{}", case.name);
                if expected == "Version mismatch" {
                    assert_eq!(error.get("version"), Some("1.0,1.1,1.2"));
                }
                peer.expect_closed(WAIT);
            }
            None => peer.expect_closed(WAIT),
        }
        bystander.send(&frames::send_string("/topic/bystander", case.name));
        assert_eq!(
            message(&mut bystander).body,
            case.name.as_bytes(),
            "after {}",
            case.name
        );
    }
}

#[test]
fn receipts_unknown_unsubscribe_and_disconnect() {
    let gateway = start();
    let mut peer = Peer::open(gateway.listener("stomp.tcp"));
    peer.send_raw(&connect_frame("1.2", "guest", "guest"));
    assert_eq!(peer.expect_frame(WAIT).command, "CONNECTED");
    peer.send_raw(&raw_frame(
        "UNSUBSCRIBE",
        &[("id", "never"), ("receipt", "r1")],
        b"",
    ));
    let receipt = peer.expect_frame(WAIT);
    assert_eq!(receipt.command, "RECEIPT");
    assert_eq!(
        receipt.headers,
        vec![("receipt-id".to_owned(), "r1".to_owned())]
    );
    assert!(receipt.body.is_empty());
    peer.send_raw(&raw_frame("DISCONNECT", &[("receipt", "bye")], b""));
    assert_eq!(peer.expect_frame(WAIT).get("receipt-id"), Some("bye"));
    peer.expect_closed(WAIT);
}

fn retained(gateway: &Gatewayd, topic: &str, kept: u64) {
    gateway.wait_for("/api/topics", &format!("{kept} kept on {topic}"), |v| {
        topic_entry(v, topic).is_some_and(|t| t["group"]["retained"].as_u64() == Some(kept))
    });
}

/// The ActiveMQ form: `client-id` on CONNECT and `activemq.subscriptionName` on SUBSCRIBE name
/// the queue `$durable.<client-id>.<name>`, fed from a topic pattern while the client is away.
#[test]
fn durable_subscription_keeps_messages_for_its_client_id() {
    let (gateway, address) = start_tcp();
    let queue = "$durable.rs-app.audit";
    let connect = || {
        let mut peer = Peer::open(address);
        peer.send(&frames::connect("guest", "guest").header("client-id", "rs-app"));
        assert_eq!(peer.expect_frame(WAIT).command, "CONNECTED");
        peer
    };
    let subscribe = frames::subscribe("/topic/rs.*", "client", "a")
        .header("activemq.subscriptionName", "audit");
    let mut first = connect();
    first.send(&subscribe);
    wait_members(&gateway, queue, 1);
    let mut sender = Peer::connect(address);
    sender.send(&frames::send_string("/topic/rs.one", "1"));
    let m = message(&mut first);
    assert_eq!(m.body, b"1");
    assert_eq!(m.get("destination"), Some("/topic/rs.one"));
    assert_eq!(m.get("x-gatewayd-source-topic"), None);
    first.shutdown();
    wait_members(&gateway, queue, 0);
    sender.send(&frames::send_string("/topic/rs.two", "2"));
    sender.send(&frames::send_string("/topic/elsewhere", "x"));
    retained(&gateway, queue, 2);

    let mut back = connect();
    back.send(&subscribe);
    let again = message(&mut back);
    assert_eq!(again.body, b"1");
    assert_eq!(again.get("redelivered"), Some("true"));
    let kept = message(&mut back);
    assert_eq!(kept.body, b"2");
    assert_eq!(kept.get("destination"), Some("/topic/rs.two"));
    assert_eq!(back.receive(QUIET), Received::Nothing);
    let id = kept.get("message-id").unwrap().to_owned();
    back.send(&Frame::new("ACK").header("message-id", &id));
    gateway.wait_for("/api/topics", "the cumulative ack", |v| {
        topic_entry(v, queue).is_some_and(|t| t["group"]["unacked"] == 0)
    });

    let mut anonymous = Peer::connect(address);
    anonymous.send(&subscribe);
    expect_error(&mut anonymous, "Invalid header");

    back.send(
        &Frame::new("UNSUBSCRIBE")
            .header("id", "a")
            .header("activemq.subscriptionName", "audit")
            .header("receipt", "gone"),
    );
    assert_eq!(back.expect_frame(WAIT).get("receipt-id"), Some("gone"));
    sender.send(&frames::send_string("/topic/rs.three", "3").header("receipt", "sent"));
    assert_eq!(sender.expect_frame(WAIT).get("receipt-id"), Some("sent"));
    back.send(&subscribe);
    wait_members(&gateway, queue, 1);
    assert_eq!(
        back.receive(QUIET),
        Received::Nothing,
        "deleted with its messages"
    );
    sender.send(&frames::send_string("/topic/rs.four", "4"));
    assert_eq!(message(&mut back).body, b"4");
}

#[test]
fn stomp_py_clients_over_tcp_and_tls() {
    let gateway = start();
    python::pytest(
        "test_stomp.py",
        &[
            ("STOMP_ADDRESS", gateway.listener("stomp.tcp").to_string()),
            (
                "STOMP_TLS_ADDRESS",
                gateway.listener("stomp.tls").to_string(),
            ),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
        ],
    );
}

#[test]
fn stompjs_over_websocket() {
    let gateway = start();
    node::run(
        "test_stomp.cjs",
        &[
            (
                "STOMP_WS_URL",
                format!("ws://{}/ws", gateway.listener("stomp.ws")),
            ),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
        ],
    );
}

#[test]
fn stompit_over_tcp() {
    let gateway = start();
    node::run(
        "test_stompit.cjs",
        &[
            ("STOMP_ADDRESS", gateway.listener("stomp.tcp").to_string()),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
        ],
    );
}

fn reload_config(token: &str) -> String {
    base_config()
        + &app_token_auth(token)
        + "\n[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n"
}

/// A reload swaps the `[stomp]` settings for new connections (here the static token) and leaves the
/// connections already open alone.
#[test]
fn reload_applies_new_tokens_to_new_connections_only() {
    let gateway = Gatewayd::start(&reload_config("token-a"));
    let address = gateway.listener("stomp.tcp");
    let login = |passcode: &str| {
        let mut peer = Peer::open(address);
        peer.send(&frames::connect("app", passcode));
        let answer = peer.expect_frame(WAIT);
        (peer, answer)
    };
    let (mut old, answer) = login("token-a");
    assert_eq!(answer.command, "CONNECTED");
    old.send(&frames::subscribe("/topic/reload.t", "auto", "s"));
    wait_fanout_or_gone(&gateway, "reload.t", 1);

    let report: serde_json::Value = gateway.rewrite_and_reload(&reload_config("token-b"));
    assert!(report["error"].is_null(), "{report}");
    assert_reload(&report, &["stomp.tcp"], &[]);

    old.send(&frames::send_string("/topic/reload.t", "still here").header("receipt", "r"));
    let mut frames_seen = [old.expect_frame(WAIT), old.expect_frame(WAIT)];
    frames_seen.sort_by(|a, b| a.command.cmp(&b.command));
    assert_eq!(frames_seen[0].command, "MESSAGE");
    assert_eq!(frames_seen[0].body, b"still here");
    assert_eq!(frames_seen[1].get("receipt-id"), Some("r"));

    let (mut refused, answer) = login("token-a");
    assert_eq!(answer.command, "ERROR");
    assert_eq!(answer.get("message"), Some("Bad CONNECT"));
    refused.expect_closed(WAIT);
    let (_accepted, answer) = login("token-b");
    assert_eq!(answer.command, "CONNECTED");
}

#[test]
fn stompjs_over_secure_websocket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.signing_key.serialize_pem()).expect("write key");
    let gateway = Gatewayd::start(&format!(
        "{}[stomp.ws.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        config(),
        cert.display().to_string(),
        key.display().to_string()
    ));
    let listeners = gateway.get_json("/api/listeners");
    let ws = listeners
        .as_array()
        .and_then(|all| all.iter().find(|l| l["name"] == "stomp.ws"))
        .expect("stomp.ws listed");
    assert_eq!(ws["transport"], "wss", "{listeners}");
    // The whole @stomp/stompjs suite, over TLS that Node verifies against the test certificate.
    node::run(
        "test_stomp.cjs",
        &[
            (
                "STOMP_WS_URL",
                format!("wss://{}/ws", gateway.listener("stomp.ws")),
            ),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
            ("NODE_EXTRA_CA_CERTS", cert.display().to_string()),
        ],
    );
}
