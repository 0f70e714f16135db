//! `[cluster] messageloop_layout = "ml2"` against a real redis-server, without an upstream MessageLoop node: the
//! test itself writes and reads Redis exactly as upstream MessageLoop G2's Redis broker does (docs/cluster.md,
//! "Sharing a Redis with MessageLoop nodes"), with the `redis` crate and JSON built here. Upstream → gatewayd:
//! stream entries and Pub/Sub messages reach STOMP and MessageLoop subscribers with their payload kind and content
//! type, and MessageLoop recovery returns them at the upstream offset `(ms << 20) | seq` in the `ml2:broker:epoch`
//! epoch. gatewayd → upstream: a STOMP publish is stored and published with the keys, fields, JSON and TTLs an
//! upstream node reads, once per subscriber across two gatewayd nodes, which also get what upstream's keys cannot
//! hold (`reply-to`).

mod support;

#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/redis.rs"]
mod redis_server;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::time::{Duration, Instant};

use base64::Engine as _;
use messageloop_client::Ws;
use redis_server::RedisServer;
use serde_json::{json, Value};
use stomp_client::{frames, Frame, Peer, Received};
use support::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn node(redis: &RedisServer) -> Gatewayd {
    let config = format!(
        "{}[cluster]\nbackend = \"redis\"\nurls = [\"{}\"]\nmessageloop_layout = \"ml2\"\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [[bus.history]]\ntopics = \"chat.#\"\nmax_messages = 100\nmax_bytes = 1048576\nttl = 0\n",
        base_config(),
        redis.url()
    );
    let gateway = Gatewayd::start(&config);
    wait_cluster(&gateway, "connected");
    gateway
}

fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|client| client.get_connection())
        .expect("redis connection")
}

/// `(ms << 20) | seq` of a stream entry id.
fn offset(id: &str) -> u64 {
    let (ms, seq) = id.split_once('-').expect("entry id");
    ms.parse::<u64>().expect("ms") << 20 | seq.parse::<u64>().expect("seq")
}

/// What an upstream node does for a publish on a history channel: INCR the seq, XADD `s`/`data` with MAXLEN ~,
/// PEXPIRE both keys, mark the first retained offset, PUBLISH the JSON with `off` and `seq`. Returns the offset.
fn upstream_publish(con: &mut redis::Connection, channel: &str, data: Value) -> u64 {
    let seq: u64 = redis::cmd("INCR")
        .arg(format!("ml2:stream:seq:{channel}"))
        .query(con)
        .expect("INCR");
    let stream = format!("ml2:stream:{channel}");
    let id: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("s")
        .arg(seq)
        .arg("data")
        .arg(data.to_string())
        .query(con)
        .expect("XADD");
    for key in [format!("ml2:stream:seq:{channel}"), stream.clone()] {
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(86_400_000)
            .query(con)
            .expect("PEXPIRE");
    }
    let offset = offset(&id);
    let _: () = redis::cmd("SET")
        .arg(format!("ml2:stream:retained:{channel}"))
        .arg(offset)
        .arg("NX")
        .query(con)
        .expect("SET NX");
    let mut live = data;
    live["off"] = json!(offset);
    live["seq"] = json!(seq);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("ml2:pubsub:{channel}"))
        .arg(live.to_string())
        .query(con)
        .expect("PUBLISH");
    offset
}

fn upstream_data(channel: &str, payload: &[u8], kind: u8, ct: &str, epoch: &str) -> Value {
    json!({"t": "pub", "ch": channel, "p": base64::engine::general_purpose::STANDARD.encode(payload),
        "kind": kind, "ct": ct, "id": "upstream-1", "md": {"k": "v"}, "ts": 1_764_633_600_000_u64, "epoch": epoch})
}

fn epoch(con: &mut redis::Connection) -> String {
    redis::cmd("GET")
        .arg("ml2:broker:epoch")
        .query(con)
        .expect("epoch")
}

/// Polls until redis has at least `n` pattern subscriptions.
fn wait_patterns(redis: &RedisServer, n: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let count: usize = redis
            .command(&["PUBSUB", "NUMPAT"])
            .last()
            .and_then(|line| line.trim_start_matches(':').parse().ok())
            .unwrap_or(0);
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} pattern subscriptions");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ml_client(gateway: &Gatewayd) -> Ws {
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), &["messageloop+json"]);
    ws.handshake("2.0.0", "");
    ws
}

fn stomp_subscriber(gateway: &Gatewayd, destination: &str) -> Peer {
    let mut peer = Peer::connect(gateway.listener("stomp.tcp"));
    peer.send(&frames::subscribe(destination, "auto", "s1"));
    peer
}

fn publication(ws: &mut Ws) -> Value {
    ws.recv_kind("publication")["publication"]["messages"][0].clone()
}

/// Upstream's writes reach gatewayd: one entry stored before the node started (read from the stream at connect),
/// then a JSON and a text message live; recovery returns all three at upstream's offsets.
#[test]
fn upstream_messages_reach_stomp_and_messageloop_with_upstream_offsets() {
    let redis = RedisServer::start(0);
    let mut con = connection(&redis);
    let _: () = redis::cmd("SET")
        .arg("ml2:broker:epoch")
        .arg("6f1c2a9e-4b7d-4e8a-9c3f-0d5e7a1b2c3d")
        .query(&mut con)
        .expect("epoch");
    let epoch = epoch(&mut con);
    let before = upstream_publish(
        &mut con,
        "chat.room",
        upstream_data("chat.room", br#"{"n":0}"#, 2, "", &epoch),
    );
    let gateway = node(&redis);
    let mut stomp = stomp_subscriber(&gateway, "/topic/chat.room");
    let mut ml = ml_client(&gateway);
    ml.subscribe("s", &["chat.room"]);
    // The node's Redis subscription may be the MessageLoop one's, and STOMP's is not acknowledged: the bus holds
    // both before upstream publishes.
    wait_subscribers(&gateway, "chat.room", 2);
    redis.wait_subscribed("ml2:pubsub:chat.room", 1);
    // The history rule's channels are subscribed for the node's own history: `chat` and the glob `chat.*`.
    redis.wait_subscribed("ml2:pubsub:chat", 1);
    wait_patterns(&redis, 1);

    let json_offset = upstream_publish(
        &mut con,
        "chat.room",
        upstream_data("chat.room", br#"{"n":1}"#, 2, "application/json", &epoch),
    );
    let text_offset = upstream_publish(
        &mut con,
        "chat.room",
        upstream_data("chat.room", b"hello", 1, "", &epoch),
    );
    assert!(before < json_offset && json_offset < text_offset);

    let first = publication(&mut ml);
    assert_eq!(first["channel"], "chat.room");
    assert_eq!(first["payload"]["json"], json!({"n": 1}), "{first}");
    assert_eq!(first["payload"]["content_type"], "application/json");
    assert_eq!(first["position"]["offset"], json_offset.to_string());
    assert_eq!(first["position"]["stream_epoch"], epoch.as_str());
    assert_eq!(first["metadata"]["entries"]["k"], "v", "{first}");
    let second = publication(&mut ml);
    assert_eq!(second["payload"]["text"], "hello", "{second}");
    assert_eq!(second["payload"]["content_type"], "text/plain");
    assert_eq!(second["position"]["offset"], text_offset.to_string());

    let frames = stomp.messages(DEADLINE, Duration::from_millis(500));
    assert_eq!(frames.len(), 2, "each once: {frames:?}");
    assert_eq!(frames[0].body, br#"{"n":1}"#);
    assert_eq!(frames[0].get("content-type"), Some("application/json"));
    assert_eq!(frames[0].get("k"), Some("v"));
    assert_eq!(frames[1].body, b"hello");
    assert_eq!(frames[1].get("content-type"), Some("text/plain"));

    // History recovery from the start reads what upstream stored, with upstream's offsets and epoch.
    let mut again = ml_client(&gateway);
    again.send(json!({"id": "r", "subscribe": {"subscriptions": [
        {"channel": "chat.room", "recover": true, "fresh": true}]}}));
    assert_eq!(
        again.recv_kind("subscribe_ack")["subscribe_ack"]["stream_epoch"],
        epoch.as_str()
    );
    let mut replayed = Vec::new();
    loop {
        let frame = again.recv();
        if let Some(complete) = frame.get("recover_complete") {
            assert_eq!(complete["position"]["offset"], text_offset.to_string());
            assert_eq!(complete["position"]["stream_epoch"], epoch.as_str());
            assert_ne!(complete["gap"], true, "{frame}");
            break;
        }
        if let Some(message) = frame["publication"]["messages"].get(0) {
            assert_eq!(message["replay"], true);
            replayed.push(
                message["position"]["offset"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
        }
    }
    let expected: Vec<String> = [before, json_offset, text_offset]
        .iter()
        .map(u64::to_string)
        .collect();
    assert_eq!(replayed, expected);

    // A cursor naming upstream's epoch and an offset recovers what follows it.
    let mut resumed = ml_client(&gateway);
    resumed.send(
        json!({"id": "c", "subscribe": {"subscriptions": [{"channel": "chat.room", "recover": true,
        "cursor": {"stream_epoch": epoch, "offset": json_offset.to_string()}}]}}),
    );
    let replay = publication(&mut resumed);
    assert_eq!(replay["position"]["offset"], text_offset.to_string());
    assert_eq!(replay["replay"], true);

    // A channel without history: Pub/Sub only, no offset.
    let mut news = stomp_subscriber(&gateway, "/topic/news.eu");
    redis.wait_subscribed("ml2:pubsub:news.eu", 1);
    let transient = upstream_data("news.eu", b"flash", 1, "text/plain", &epoch);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("ml2:pubsub:news.eu")
        .arg(transient.to_string())
        .query(&mut con)
        .expect("PUBLISH");
    let frame = news.expect_frame(DEADLINE);
    assert_eq!(frame.body, b"flash");
    // Occupancy shares the channel and is not a message.
    let occupancy = json!({"t": "occupancy", "ch": "news.eu", "gen": 1, "evt": {"channel": "news.eu", "action": "join"}});
    let _: i64 = redis::cmd("PUBLISH")
        .arg("ml2:pubsub:news.eu")
        .arg(occupancy.to_string())
        .query(&mut con)
        .expect("PUBLISH");
    assert_eq!(news.receive(Duration::from_millis(300)), Received::Nothing);
}

/// A STOMP publish on gatewayd is stored and published as upstream stores and publishes, with the same offset on
/// every gatewayd subscriber, each getting it once across two nodes.
#[test]
fn stomp_publishes_are_written_as_upstream_writes_them() {
    let redis = RedisServer::start(0);
    let (a, b) = (node(&redis), node(&redis));
    let mut con = connection(&redis);
    let epoch = epoch(&mut con);
    assert_eq!(epoch.len(), 36, "a UUID: {epoch}");
    let mut watcher = connection(&redis);
    let mut pubsub = watcher.as_pubsub();
    pubsub.subscribe("ml2:pubsub:chat.room").expect("SUBSCRIBE");
    pubsub
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut on_b = stomp_subscriber(&b, "/topic/chat.room");
    let mut ml_b = ml_client(&b);
    ml_b.subscribe("s", &["chat.room"]);
    let mut on_a = stomp_subscriber(&a, "/topic/chat.room");
    // Node b's Redis subscription may be the MessageLoop one's: its bus holds on_b's unacknowledged one too.
    wait_subscribers(&b, "chat.room", 2);
    redis.wait_subscribed("ml2:pubsub:chat.room", 3);

    let mut publisher = Peer::connect(a.listener("stomp.tcp"));
    publisher.send(
        &Frame::new("SEND")
            .header("destination", "/topic/chat.room")
            .header("content-type", "text/plain")
            .header("x-k", "v")
            .header("reply-to", "/topic/answers")
            .body(b"hello"),
    );

    let message = pubsub.get_message().expect("Pub/Sub message");
    let live: Value = serde_json::from_slice(message.get_payload_bytes()).expect("json");
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("ml2:stream:chat.room")
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (id, fields) = &entries[0];
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("field {name}: {fields:?}"))
    };
    assert_eq!(field("s"), "1");
    let stored: Value = serde_json::from_str(&field("data")).expect("data json");
    assert_eq!(stored["t"], "pub");
    assert_eq!(stored["ch"], "chat.room");
    assert_eq!(stored["p"], "aGVsbG8=");
    assert_eq!(stored["kind"], 1);
    assert_eq!(stored["ct"], "text/plain");
    assert_eq!(stored["md"]["x-k"], "v", "{stored}");
    assert_eq!(stored["epoch"], epoch.as_str());
    assert!(stored["ts"]
        .as_u64()
        .is_some_and(|ts| ts > 1_700_000_000_000));
    assert!(stored["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(stored.get("off").is_none() && stored.get("seq").is_none());
    // gatewayd's own extension, which upstream's JSON decoding ignores.
    assert!(stored["gw"].is_string(), "{stored}");
    // The Pub/Sub copy is the stored JSON plus `off` and `seq`.
    let mut expected = stored.clone();
    expected["off"] = json!(offset(id));
    expected["seq"] = json!(1);
    assert_eq!(live, expected);

    let seq: String = redis::cmd("GET")
        .arg("ml2:stream:seq:chat.room")
        .query(&mut con)
        .expect("seq");
    assert_eq!(seq, "1");
    let retained: String = redis::cmd("GET")
        .arg("ml2:stream:retained:chat.room")
        .query(&mut con)
        .expect("retained");
    assert_eq!(retained, offset(id).to_string());
    for key in [
        "ml2:stream:chat.room",
        "ml2:stream:seq:chat.room",
        "ml2:stream:retained:chat.room",
    ] {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).expect("PTTL");
        assert!(
            ttl > 86_000_000 && ttl <= 86_400_000,
            "{key}: upstream's 24 h, got {ttl} ms"
        );
    }

    // gatewayd's subscribers get it once each, at the same offset.
    let on_ml = publication(&mut ml_b);
    assert_eq!(on_ml["payload"]["text"], "hello");
    assert_eq!(on_ml["position"]["offset"], offset(id).to_string());
    assert_eq!(on_ml["position"]["stream_epoch"], epoch.as_str());
    for peer in [&mut on_a, &mut on_b] {
        let frames = peer.messages(DEADLINE, Duration::from_millis(500));
        assert_eq!(frames.len(), 1, "once: {frames:?}");
        assert_eq!(frames[0].body, b"hello");
        assert_eq!(frames[0].get("x-k"), Some("v"));
        // What upstream's keys cannot hold still crosses between gatewayd nodes.
        assert_eq!(frames[0].get("reply-to"), Some("/topic/answers"));
    }
    // And nothing came twice to the MessageLoop subscriber either.
    ml_b.send(json!({"id": "p", "presence_query": {"channel": "chat.room"}}));
    let next = ml_b.recv();
    assert!(next.get("publication").is_none(), "a repeat: {next}");
    assert_eq!(self::epoch(&mut con), epoch, "the epoch is never replaced");
}

/// Two gatewayd nodes publishing on one channel at once: each node's subscribers get every message once, in
/// stream order (gatewayd publishes inside its append script, so Pub/Sub order is the stream's).
#[test]
fn concurrent_publishes_from_two_nodes_arrive_whole_and_in_stream_order() {
    let redis = RedisServer::start(0);
    let (a, b) = (node(&redis), node(&redis));
    let mut readers = [ml_client(&a), ml_client(&b)];
    for reader in &mut readers {
        reader.subscribe("s", &["chat.load"]);
    }
    redis.wait_subscribed("ml2:pubsub:chat.load", 2);
    let mut publishers = [
        Peer::connect(a.listener("stomp.tcp")),
        Peer::connect(b.listener("stomp.tcp")),
    ];
    // Within the rule's `max_messages` (100), so the stream keeps them all.
    const EACH: usize = 40;
    for n in 0..EACH {
        for (node, publisher) in publishers.iter_mut().enumerate() {
            publisher.send(&frames::send_string(
                "/topic/chat.load",
                &format!("{node}-{n}"),
            ));
        }
    }
    let mut con = connection(&redis);
    let stored: Vec<(String, Vec<(String, String)>)> = {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg("ml2:stream:chat.load")
                .arg("-")
                .arg("+")
                .query(&mut con)
                .expect("XRANGE");
            if entries.len() == 2 * EACH {
                break entries;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} stored",
                entries.len(),
                2 * EACH
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let expected: Vec<String> = stored
        .iter()
        .map(|(id, _)| offset(id).to_string())
        .collect();
    for reader in &mut readers {
        let offsets: Vec<String> = (0..2 * EACH)
            .map(|_| {
                publication(reader)["position"]["offset"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert_eq!(offsets, expected);
    }
}
