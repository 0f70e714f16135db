//! Every protocol to every protocol (issue 9), over real sockets against one gatewayd with all six protocols:
//! the 6×6 delivery matrix (text, binary with NULs, 60 KiB; byte-exact bodies and the metadata
//! `docs/conversion.md` says survives each pair), the too-large rule (a body over a receiver's limit is not
//! delivered to it and is counted), fanout to a subscriber of every protocol from one publish, the STOMP
//! `/queue/` + Loom room anycast group with key affinity across `JMSXGroupID` and the Loom key, and the README's
//! 6×6 table checked against what the matrix observed.

mod support;

#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/python.rs"]
mod python;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use matrix_clients::*;
use support::*;

/// A body over MessageLoop's 64 KiB envelope cap, under every other protocol's limit.
const OVER_MESSAGELOOP: usize = 70 * 1024;

fn text() -> Outgoing {
    Outgoing {
        payload: Bytes::from_static("héllo, matrix\0with a NUL".as_bytes()),
        content_type: Some("text/plain".into()),
        ..metadata()
    }
}

fn binary(len: usize) -> Outgoing {
    let mut payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    payload[..4].copy_from_slice(&[0x00, 0xff, 0xfe, 0x00]);
    Outgoing {
        payload: payload.into(),
        content_type: Some("application/octet-stream".into()),
        ..metadata()
    }
}

fn tail() -> Outgoing {
    Outgoing {
        payload: Bytes::from_static(b"tail"),
        content_type: Some("text/plain".into()),
        ..metadata()
    }
}

/// The metadata every publisher offers; each protocol carries what it can.
fn metadata() -> Outgoing {
    Outgoing {
        key: Some("k-1".into()),
        correlation_id: Some("c-1".into()),
        headers: vec![("x-trace".into(), "t-1".into())],
        ..Outgoing::default()
    }
}

/// What the bus envelope holds after `publisher` published `message` (docs/conversion.md, "into the bus").
#[derive(Debug, Default)]
struct Carried {
    content_type: Option<String>,
    key: Option<String>,
    correlation_id: Option<String>,
    headers: Vec<(String, String)>,
}

fn carried(publisher: Protocol, message: &Outgoing) -> Carried {
    let key = message
        .key
        .as_ref()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    match publisher {
        Protocol::Stomp => Carried {
            content_type: message.content_type.clone(),
            key,
            correlation_id: message.correlation_id.clone(),
            headers: message.headers.clone(),
        },
        Protocol::MessageLoop => Carried {
            content_type: message.content_type.clone(),
            headers: message.headers.clone(),
            ..Carried::default()
        },
        Protocol::Goomerang => Carried {
            content_type: Some("application/x-protobuf".into()),
            headers: std::iter::once(("goomerang-kind".to_owned(), GOOMERANG_KIND.to_owned()))
                .chain(message.headers.iter().cloned())
                .collect(),
            ..Carried::default()
        },
        Protocol::Loom => Carried {
            key,
            ..Carried::default()
        },
        Protocol::Chanserv => Carried::default(),
        Protocol::Mqtt => Carried {
            content_type: message.content_type.clone(),
            correlation_id: message.correlation_id.clone(),
            headers: std::iter::once(("mqtt-qos".to_owned(), "0".to_owned()))
                .chain(message.headers.iter().cloned())
                .collect(),
            ..Carried::default()
        },
    }
}

/// The metadata `subscriber` must see for an envelope that carries `c` (docs/conversion.md, "out of the bus").
fn expected_meta(
    subscriber: Protocol,
    c: &Carried,
    body: &[u8],
    got: &Got,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    let headers = c.headers.iter().cloned();
    match subscriber {
        Protocol::Stomp => {
            meta.extend(c.content_type.clone().map(|v| ("content-type".into(), v)));
            meta.extend(c.key.clone().map(|v| ("JMSXGroupID".into(), v)));
            meta.extend(
                c.correlation_id
                    .clone()
                    .map(|v| ("correlation-id".into(), v)),
            );
            meta.extend(headers);
        }
        Protocol::MessageLoop => {
            meta.extend(c.content_type.clone().map(|v| ("content-type".into(), v)));
            let text = c
                .content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("text/"))
                && std::str::from_utf8(body).is_ok();
            meta.insert(
                "payload".into(),
                if text { "text" } else { "binary" }.into(),
            );
            meta.extend(headers);
        }
        Protocol::Goomerang => {
            let native = c.headers.iter().any(|(n, _)| n == "goomerang-kind");
            if !native {
                meta.extend(c.content_type.clone().map(|v| ("content-type".into(), v)));
            }
            meta.extend(headers);
        }
        Protocol::Loom => {
            let id = got.meta.get("loom-id").cloned().unwrap_or_default();
            meta.insert(
                "loom-key".into(),
                c.key.clone().unwrap_or_else(|| id.clone()),
            );
            meta.insert("loom-id".into(), id);
        }
        Protocol::Chanserv => {}
        Protocol::Mqtt => {
            meta.extend(c.content_type.clone().map(|v| ("content-type".into(), v)));
            meta.extend(
                c.correlation_id
                    .clone()
                    .map(|v| ("correlation-id".into(), v)),
            );
            meta.extend(headers.filter(|(name, _)| !name.starts_with("mqtt-")));
        }
    }
    meta
}

/// Which envelope fields reach `subscriber` from `publisher`, as the README cell lists them.
fn cell(publisher: Protocol, subscriber: Protocol, got: &Got) -> String {
    let c = carried(publisher, &tail());
    let mut fields = vec!["body"];
    let seen = |name: &str| got.meta.contains_key(name);
    match subscriber {
        Protocol::Stomp => {
            if seen("content-type") {
                fields.push("content type");
            }
            if seen("JMSXGroupID") {
                fields.push("key");
            }
            if seen("correlation-id") {
                fields.push("correlation id");
            }
        }
        Protocol::MessageLoop | Protocol::Goomerang => {
            if seen("content-type") && c.content_type.is_some() {
                fields.push("content type");
            }
        }
        Protocol::Loom => {
            if c.key.is_some() {
                fields.push("key");
            }
        }
        Protocol::Chanserv => {}
        Protocol::Mqtt => {
            if seen("content-type") {
                fields.push("content type");
            }
            if seen("correlation-id") {
                fields.push("correlation id");
            }
        }
    }
    if subscriber == Protocol::Goomerang && got.meta.contains_key("goomerang-kind") {
        fields.push("kind");
    }
    if seen("x-trace") {
        fields.push("headers");
    }
    fields.join(", ")
}

#[test]
fn every_pair_delivers_byte_exact_bodies_and_mapped_metadata() {
    let gateway = Gatewayd::start(&config(""));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    let mut table: BTreeMap<(Protocol, Protocol), String> = BTreeMap::new();
    for publisher in Protocol::ALL {
        let topic = format!("matrix.from-{publisher}");
        // One subscriber of every protocol on the topic: every publish below is also the fanout case.
        let mut subscribers: Vec<Sub> = Protocol::ALL
            .iter()
            .map(|&p| Sub::subscribe(p, &addrs, &topic, &rt))
            .collect();
        wait_subscribed(&gateway, &topic, 5, 1);
        let mut messages = vec![text(), binary(64), binary(60 * 1024)];
        if publisher != Protocol::MessageLoop {
            messages.push(binary(OVER_MESSAGELOOP));
        }
        messages.push(tail());
        let too_large_before = drops(&gateway, "too_large", Protocol::MessageLoop);
        let mut producer = Pub::connect(publisher, &addrs, &rt);
        for message in &messages {
            producer.publish(&topic, message, &rt);
        }
        for subscriber in &mut subscribers {
            let to = subscriber.proto();
            for message in &messages {
                if delivery_limit(to).is_some_and(|limit| message.payload.len() > limit) {
                    continue;
                }
                let got = subscriber.recv(&rt);
                assert_eq!(
                    got.body.len(),
                    message.payload.len(),
                    "{publisher} → {to}: body length"
                );
                assert!(
                    got.body == message.payload,
                    "{publisher} → {to}: body differs"
                );
                let c = carried(publisher, message);
                assert_eq!(
                    got.meta,
                    expected_meta(to, &c, &message.payload, &got),
                    "{publisher} → {to}: metadata of a {}-byte body",
                    message.payload.len()
                );
                if message.payload == tail().payload {
                    table.insert((publisher, to), cell(publisher, to, &got));
                }
            }
            assert!(
                subscriber
                    .try_recv(&rt, Duration::from_millis(50))
                    .is_none(),
                "{publisher} → {to}: an extra message"
            );
        }
        if publisher != Protocol::MessageLoop {
            // The marker behind the big body already arrived, so the drop is counted: no wait needed.
            assert_eq!(
                drops(&gateway, "too_large", Protocol::MessageLoop),
                too_large_before + 1.0,
                "{publisher} → messageloop: one body over the limit, counted once"
            );
        }
        producer.finish(&rt);
    }
    check_readme(&table);
}

/// The README's 6×6 table, rebuilt from the matrix; `MATRIX_BLESS=1` rewrites it.
fn check_readme(table: &BTreeMap<(Protocol, Protocol), String>) {
    let mut text = String::from("| from ↓ / to → |");
    for to in Protocol::ALL {
        text.push_str(&format!(" {} |", to.title()));
    }
    text.push_str("\n|---|");
    text.push_str(&"---|".repeat(Protocol::ALL.len()));
    text.push('\n');
    for from in Protocol::ALL {
        text.push_str(&format!("| **{}** |", from.title()));
        for to in Protocol::ALL {
            text.push_str(&format!(" {} |", table[&(from, to)]));
        }
        text.push('\n');
    }
    const BEGIN: &str = "<!-- matrix:begin (generated by crates/gateway/tests/matrix.rs) -->\n";
    const END: &str = "<!-- matrix:end -->";
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme.find(BEGIN).map(|i| i + BEGIN.len());
    let end = readme.find(END);
    let (Some(start), Some(end)) = (start, end) else {
        panic!("README.md has no matrix section between {BEGIN:?} and {END:?}");
    };
    if std::env::var_os("MATRIX_BLESS").is_some() {
        let updated = format!("{}{}{}", &readme[..start], text, &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    assert_eq!(
        &readme[start..end],
        text,
        "README.md's matrix differs from what the test observed (MATRIX_BLESS=1 rewrites it)"
    );
}

/// A STOMP `/queue/N` consumer and a Loom room `N` consumer are one anycast group: each message reaches exactly
/// one of them, and a key (`JMSXGroupID` from STOMP, the Loom key from Loom) sticks to one consumer.
#[test]
fn stomp_queue_and_loom_room_share_one_group_with_key_affinity() {
    let gateway = Gatewayd::start(&config(""));
    let addrs = Addrs::of(&gateway);
    let rt = runtime();
    let room = "matrix.anycast";
    let mut stomp = Sub::subscribe(Protocol::Stomp, &addrs, &format!("/queue/{room}"), &rt);
    let mut loom = Sub::subscribe(Protocol::Loom, &addrs, room, &rt);
    wait_subscribed(&gateway, room, 0, 2);
    const KEYS: usize = 16;
    const PER_KEY: usize = 4;
    let mut sent = BTreeSet::new();
    let mut stomp_producer = Pub::connect(Protocol::Stomp, &addrs, &rt);
    let mut loom_producer = Pub::connect(Protocol::Loom, &addrs, &rt);
    for round in 0..PER_KEY {
        for key in 0..KEYS {
            let body = format!("m-{round}-{key}");
            let message = Outgoing {
                payload: body.clone().into(),
                key: Some(format!("key-{key}").into()),
                ..Outgoing::default()
            };
            // Alternate producers: affinity must hold whichever protocol set the key.
            if round % 2 == 0 {
                stomp_producer.publish(room, &message, &rt);
            } else {
                loom_producer.publish(room, &message, &rt);
            }
            sent.insert(body);
        }
    }
    let mut owner: BTreeMap<String, Protocol> = BTreeMap::new();
    let mut received = BTreeSet::new();
    let total = KEYS * PER_KEY;
    let mut last_progress = std::time::Instant::now();
    while received.len() < total {
        for consumer in [&mut stomp, &mut loom] {
            while let Some(got) = consumer.try_recv(&rt, Duration::from_millis(20)) {
                last_progress = std::time::Instant::now();
                let key = match consumer.proto() {
                    Protocol::Stomp => got.meta["JMSXGroupID"].clone(),
                    _ => got.meta["loom-key"].clone(),
                };
                let body = String::from_utf8(got.body).expect("utf-8 body");
                assert!(received.insert(body.clone()), "{body} delivered twice");
                let first = *owner.entry(key.clone()).or_insert(consumer.proto());
                assert_eq!(first, consumer.proto(), "key {key} moved between consumers");
            }
        }
        assert!(
            last_progress.elapsed() < WAIT,
            "only {} of {total} messages arrived",
            received.len()
        );
    }
    assert_eq!(received, sent);
    for consumer in [&mut stomp, &mut loom] {
        assert!(
            consumer.try_recv(&rt, Duration::from_millis(200)).is_none(),
            "a message was delivered twice"
        );
    }
    let used: BTreeSet<Protocol> = owner.values().copied().collect();
    assert_eq!(used.len(), 2, "{KEYS} keys all went to one consumer");
    stomp_producer.finish(&rt);
    loom_producer.finish(&rt);
}

/// Third-party clients on some legs: stomp.py (STOMP over TCP) and `websockets` (MessageLoop JSON over
/// WebSocket, STOMP frames over STOMP's WebSocket listener), `tests/python/test_matrix.py`.
#[test]
fn python_clients_cross_protocol() {
    let gateway = Gatewayd::start(&config(""));
    python::pytest(
        "test_matrix.py",
        &[
            ("STOMP_ADDRESS", gateway.listener("stomp.tcp").to_string()),
            (
                "STOMP_WS",
                format!("ws://{}/ws", gateway.listener("stomp.ws")),
            ),
            (
                "MESSAGELOOP_WS",
                format!("ws://{}/ws", gateway.listener("messageloop.ws")),
            ),
            ("GATEWAYD_ADMIN", gateway.admin.to_string()),
        ],
    );
}
