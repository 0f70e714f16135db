//! Cluster mode end to end: two gatewayd nodes and a real nats-server or redis-server on 127.0.0.1. On both
//! backends (each case runs once per backend, `on_nats::`, `on_redis::` and `on_redis_ml2::` for Redis with
//! `messageloop_layout = "ml2"`, `support/backend.rs`): every protocol
//! to every protocol across nodes, cross-node fanout STOMP→MessageLoop and Loom→Goomerang, a STOMP `/queue/`
//! consumed on both nodes exactly once, a server restart in the middle, a node killed without affecting the other,
//! MessageLoop history recovered on another node with the same offsets (`history = "jetstream"` or `"streams"`),
//! and MessageLoop presence across nodes (`presence = "kv"`). Redis only: nodes logging in as an ACL user confined
//! to the key prefix, a wrong password counted and shown, `rediss://` with `require_tls`, and history (a new
//! epoch) and presence recovering after Redis lost its data. NATS only: history and presence surviving a NATS restart with its store.

mod support;

#[macro_use]
#[path = "support/backend.rs"]
mod backend;
#[path = "support/goomerang_client.rs"]
mod goomerang_client;
#[path = "support/loom_client.rs"]
mod loom_client;
#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/mqtt_client.rs"]
mod mqtt_client;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/redis.rs"]
mod redis;
#[path = "support/stomp_client.rs"]
mod stomp_client;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use backend::{Backend, Server};
use goomerang_client::GoomerangClient;
use loom_client::{hello, message, Client as LoomClient, Transport, PRODUCER};
use matrix_clients::{Addrs, Outgoing, Protocol, Pub, Sub};
use messageloop_client::Ws;
use nats::NatsServer;
use prost::Message as _;
use redis::RedisServer;
use serde_json::{json, Value};
use stomp_client::{frames, Frame, Peer, Received};
use support::*;

/// Longest a test waits for the first of the messages it expects.
const WAIT: Duration = Duration::from_secs(10);

on_every_backend!(
    every_protocol_reaches_every_protocol_on_another_node,
    messageloop_history_recovers_on_another_node_with_the_same_offsets,
    messageloop_presence_is_cluster_wide,
    stomp_publishes_reach_messageloop_on_another_node,
    loom_producers_reach_goomerang_on_another_node,
    queue_messages_are_consumed_exactly_once_across_nodes_and_survive_a_server_restart,
    a_killed_node_does_not_affect_the_other,
);

fn node(server: &Server) -> Gatewayd {
    let config = format!(
        "{}{}\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [loom]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config(),
        server.cluster_config()
    );
    let gateway = Gatewayd::start(&config);
    wait_cluster(&gateway, "connected");
    gateway
}

/// Waits for the cluster `state` while asserting at every poll that the node stays ready: readiness does not follow
/// the cluster connection.
fn wait_cluster_ready(gateway: &Gatewayd, state: &str) {
    gateway.wait_for("/api/cluster", &format!("cluster {state}"), |c| {
        assert_eq!(gateway.get("/readyz").0, 200, "ready while cluster is {c}");
        c["state"] == state
    });
}

/// Waits until `gateway`'s cluster is connected with its one history stream ready.
fn wait_streams_ready(gateway: &Gatewayd, what: &str) {
    gateway.wait_for("/api/cluster", what, |c| {
        c["state"] == "connected"
            && c["detail"]
                .as_str()
                .is_some_and(|d| d.contains("1/1 streams ready"))
    });
}

/// A STOMP client at `stomp` subscribed to `/topic/<topic>` as `s1`.
fn stomp_subscriber(stomp: std::net::SocketAddr, topic: &str) -> Peer {
    let mut peer = Peer::connect(stomp);
    peer.send(&frames::subscribe(&format!("/topic/{topic}"), "auto", "s1"));
    peer
}

/// Subscribes `ws` to `hist.room` (id `r`), recovering from `offset` in `epoch`.
fn ml_recover(ws: &mut Ws, epoch: &str, offset: &str) {
    ws.send(
        json!({"id": "r", "subscribe": {"subscriptions": [{"channel": "hist.room",
        "recover": true, "cursor": {"stream_epoch": epoch, "offset": offset}}]}}),
    );
}

fn stomp_send(peer: &mut Peer, destination: &str, body: &str) {
    peer.send(&frames::send_string(destination, body));
}

/// The bodies `peer` receives (acking each) until it has been quiet for `quiet`; the first may take up to
/// [`WAIT`], which a message crossing nodes on a loaded machine can need.
fn stomp_bodies(peer: &mut Peer, quiet: Duration) -> Vec<String> {
    let mut bodies = Vec::new();
    while let Some(body) = stomp_body(peer, if bodies.is_empty() { WAIT } else { quiet }) {
        bodies.push(body);
    }
    bodies
}

/// The next message's body (acked), if one comes within `wait`.
fn stomp_body(peer: &mut Peer, wait: Duration) -> Option<String> {
    let Received::Frame(frame) = peer.receive(wait) else {
        return None;
    };
    assert_eq!(frame.command, "MESSAGE", "{frame:?}");
    if let Some(ack) = frame
        .get("ack")
        .or(frame.get("message-id"))
        .map(str::to_owned)
    {
        peer.send(
            &Frame::new("ACK")
                .header("id", &ack)
                .header("message-id", &ack),
        );
    }
    Some(String::from_utf8_lossy(&frame.body).into_owned())
}

/// The bodies each of `peers` receives until `total` have come (within [`WAIT`] from the last), then for a quiet
/// spell of 300 ms more: a split that counts, so a pause in the middle of the stream ends nothing early.
fn stomp_split<const N: usize>(mut peers: [&mut Peer; N], total: usize) -> [Vec<String>; N] {
    let mut got: [Vec<String>; N] = std::array::from_fn(|_| Vec::new());
    let mut deadline = Instant::now() + WAIT;
    let count = |got: &[Vec<String>; N]| got.iter().map(Vec::len).sum::<usize>();
    while count(&got) < total && Instant::now() < deadline {
        for (peer, bodies) in peers.iter_mut().zip(&mut got) {
            if let Some(body) = stomp_body(peer, Duration::from_millis(20)) {
                bodies.push(body);
                deadline = Instant::now() + WAIT;
            }
        }
    }
    for (peer, bodies) in peers.into_iter().zip(&mut got) {
        bodies.extend(std::iter::from_fn(|| {
            stomp_body(peer, Duration::from_millis(300))
        }));
    }
    got
}

/// One publish from each protocol on node A reaches a subscriber of every protocol on node B (the Loom consumer
/// through the anycast group), byte-exact.
fn every_protocol_reaches_every_protocol_on_another_node(backend: Backend) {
    let server = Server::start(backend, 0);
    let start = || {
        let gateway = Gatewayd::start(&matrix_clients::config(&server.cluster_config()));
        wait_cluster(&gateway, "connected");
        gateway
    };
    let (a, b) = (start(), start());
    let (on_a, on_b) = (Addrs::of(&a), Addrs::of(&b));
    let rt = matrix_clients::runtime();
    for publisher in Protocol::ALL {
        let topic = format!("cross.from-{publisher}");
        let mut subscribers: Vec<Sub> = Protocol::ALL
            .iter()
            .map(|&p| Sub::subscribe(p, &on_b, &topic, &rt))
            .collect();
        matrix_clients::wait_subscribed(&b, &topic, Protocol::ALL.len() as u64 - 1, 1);
        server.wait_fanout_and_group(&topic, 1);
        let body = format!("from {publisher} on another node\0").into_bytes();
        let message = Outgoing {
            payload: body.clone().into(),
            content_type: Some("text/plain".into()),
            ..Outgoing::default()
        };
        let mut producer = Pub::connect(publisher, &on_a, &rt);
        producer.publish(&topic, &message, &rt);
        for subscriber in &mut subscribers {
            let to = subscriber.proto();
            assert!(subscriber.recv(&rt).body == body, "{publisher} → {to}");
            assert!(
                subscriber
                    .try_recv(&rt, Duration::from_millis(50))
                    .is_none(),
                "{publisher} → {to}: an extra message"
            );
        }
        producer.finish(&rt);
    }
}

fn stomp_publishes_reach_messageloop_on_another_node(backend: Backend) {
    let server = Server::start(backend, 0);
    let (a, b) = (node(&server), node(&server));
    let mut subscriber = Ws::connect(b.listener("messageloop.ws"), &["messageloop+json"]);
    subscriber.handshake("2.0.0", "");
    subscriber.subscribe("s1", &["news.eu"]);
    server.wait_subscribed("news.eu", 1);
    let mut publisher = Peer::connect(a.listener("stomp.tcp"));
    stomp_send(&mut publisher, "/topic/news.eu", "across nodes");
    let publication = subscriber.recv_kind("publication");
    let message = &publication["publication"]["messages"][0];
    assert_eq!(message["channel"], "news.eu", "{publication}");
    let payload = &message["payload"];
    let text = payload["text"].as_str().map(str::to_owned).or_else(|| {
        payload["binary"].as_str().map(|b| {
            use base64::Engine as _;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
        })
    });
    assert_eq!(text.as_deref(), Some("across nodes"), "{publication}");
    a.wait_metric("gatewayd_cluster_forwarded_total", &[], 1.0);
}

fn loom_producers_reach_goomerang_on_another_node(backend: Backend) {
    let server = Server::start(backend, 0);
    let (a, b) = (node(&server), node(&server));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let goomerang = b.listener("goomerang.ws");
    let mut subscriber = rt.block_on(async {
        let mut client = GoomerangClient::connect(goomerang).await;
        client.subscribe("sensors.t1").await;
        client
    });
    server.wait_subscribed("sensors.t1", 1);
    let loom = a.listener("loom.quic");
    let (frame, _producer) = rt.block_on(async {
        let producer = LoomClient::connect(loom, Transport::Quic).await;
        let mut stream = producer
            .open(&hello(PRODUCER, b"p", b"sensors.t1", b""))
            .await;
        stream
            .write(&message(b"device-7", b"21.5\0C", 4))
            .await
            .unwrap();
        (subscriber.recv_frame().await, producer)
    });
    assert_eq!(frame.kind, "google.protobuf.BytesValue");
    assert_eq!(
        Vec::<u8>::decode(frame.payload.as_ref()).unwrap(),
        b"21.5\0C"
    );
}

fn queue_messages_are_consumed_exactly_once_across_nodes_and_survive_a_server_restart(
    backend: Backend,
) {
    let mut server = Server::start(backend, 0);
    let (a, b) = (node(&server), node(&server));
    if backend != Backend::Nats {
        let (_, metrics) = a.get("/metrics");
        for reason in [
            "connect",
            "presence",
            "history",
            "history_unavailable",
            "slow_consumer",
            "queue_full",
            "publish",
            "subscribe",
            "decode",
            "claim",
        ] {
            let series = format!("gatewayd_cluster_failed_total{{reason=\"{reason}\"}} 0");
            assert!(metrics.contains(&series), "{series} exported from start-up");
        }
    }
    let mut consumer_a = Peer::connect(a.listener("stomp.tcp"));
    let mut consumer_b = Peer::connect(b.listener("stomp.tcp"));
    for consumer in [&mut consumer_a, &mut consumer_b] {
        consumer.send(&frames::subscribe("/queue/jobs", "auto", "s1"));
    }
    server.wait_subscribed("jobs", 2);
    let mut producer = Peer::connect(a.listener("stomp.tcp"));
    for i in 0..60 {
        stomp_send(&mut producer, "/queue/jobs", &format!("job-{i}"));
    }
    let [got_a, got_b] = stomp_split([&mut consumer_a, &mut consumer_b], 60);
    let unique: HashSet<&String> = got_a.iter().chain(&got_b).collect();
    assert_eq!(got_a.len() + got_b.len(), 60, "a={got_a:?} b={got_b:?}");
    assert_eq!(unique.len(), 60);
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "the backend spreads the group over both nodes"
    );

    // The server goes away: nodes report it, stay ready and keep serving local traffic.
    let port = server.port();
    server.stop();
    wait_cluster_ready(&a, "disconnected");
    wait_cluster_ready(&b, "disconnected");
    assert_eq!(a.metric("gatewayd_cluster_connected", &[]), 0.0);
    stomp_send(&mut producer, "/queue/jobs", "local");
    assert_eq!(
        stomp_bodies(&mut consumer_a, Duration::from_millis(500)),
        ["local"]
    );

    // The server is back on the same port: nodes reconnect and traffic crosses again.
    let server = Server::start(backend, port);
    wait_cluster_ready(&a, "connected");
    wait_cluster_ready(&b, "connected");
    assert_eq!(a.metric("gatewayd_cluster_connected", &[]), 1.0);
    if backend != Backend::Nats {
        // Each failed reconnect attempt is counted.
        let failed = |reason| a.metric("gatewayd_cluster_failed_total", &[("reason", reason)]);
        assert!(failed("connect") >= 1.0);
    }
    server.wait_subscribed("jobs", 2);
    // Whichever node's claim reaches the server first wins (docs/cluster.md), so with one message at a time the
    // node first in the server's subscriber list can take them all: node a's consumer leaves, and every message
    // then has to cross to node b, exactly once.
    consumer_a.send(&frames::unsubscribe("/queue/jobs", "s1"));
    server.wait_unsubscribed("jobs", 1);
    for i in 0..20 {
        stomp_send(&mut producer, "/queue/jobs", &format!("after-restart-{i}"));
    }
    let expected: Vec<String> = (0..20).map(|i| format!("after-restart-{i}")).collect();
    assert_eq!(
        stomp_bodies(&mut consumer_b, Duration::from_millis(500)),
        expected
    );
    assert_eq!(
        consumer_a.receive(Duration::from_millis(50)),
        Received::Nothing
    );
}

/// Nodes log in as an ACL user allowed only the keys and channels under the default `key_prefix` (with history
/// streams, presence and an MQTT share group's claims), with the password read from `password_file`; a node with the wrong password stays ready, disconnected, and counts its
/// failed attempts.
#[test]
fn redis_nodes_authenticate_as_an_acl_user_confined_to_the_key_prefix() {
    let redis = RedisServer::start_with_user("gw", "s3cret", "gatewayd:");
    let dir = tempfile::tempdir().unwrap();
    let node = |password: &str| {
        let file = dir.path().join(format!("password-{password}"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        Gatewayd::start(&format!(
            "{}[cluster]\nbackend = \"redis\"\nurls = [\"{}\"]\nusername = \"gw\"\npassword_file = \"{}\"\n\
             history = \"streams\"\npresence = \"kv\"\n\
             [[bus.history]]\ntopics = \"hist.#\"\nmax_messages = 100\nmax_bytes = 1048576\nttl = 0\n\
             [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
             [mqtt.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
             [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
            base_config(),
            redis.url(),
            file.display()
        ))
    };
    let (a, b) = (node("s3cret"), node("s3cret"));
    for node in [&a, &b] {
        wait_streams_ready(node, "connected, history stream ready");
    }
    let mut subscriber = stomp_subscriber(b.listener("stomp.tcp"), "secure");
    redis.wait_subscribed("gatewayd:topic:secure", 1);
    let mut publisher = Peer::connect(a.listener("stomp.tcp"));
    stomp_send(&mut publisher, "/topic/secure", "authenticated");
    assert_eq!(
        stomp_bodies(&mut subscriber, Duration::from_millis(500)),
        ["authenticated"]
    );
    // A share group's claim key, `gatewayd:claim:<id>:<tag>`, is the user's to set.
    let mut member = mqtt_client::Client::connect(b.listener("mqtt.tcp"), 5, "acl-member");
    member.send(&mqtt_client::subscribe(5, 1, "$share/g/secure-share", 0));
    assert_eq!(member.expect_packet(Duration::from_secs(5)).kind(), 9);
    redis.wait_subscribed("gatewayd:topic:secure-share", 1);
    stomp_send(&mut publisher, "/topic/secure-share", "claimed");
    let delivered = member.expect_packet(Duration::from_secs(5));
    assert_eq!(mqtt_client::publish_parts(5, &delivered).1, b"claimed");
    assert_eq!(
        b.metric("gatewayd_cluster_failed_total", &[("reason", "claim")]),
        0.0
    );
    let _alice = ml_subscriber(&a, "s", "lounge");
    let mut bob = ml_subscriber(&b, "s", "lounge");
    wait_occupancy(&mut bob, "lounge", 2);
    assert_eq!(
        b.metric("gatewayd_cluster_failed_total", &[("reason", "presence")]),
        0.0
    );

    let wrong = node("wrong");
    wrong.wait_for("/api/cluster", "failed connects", |_| {
        wrong.metric("gatewayd_cluster_failed_total", &[("reason", "connect")]) >= 2.0
    });
    let cluster = wrong.get_json("/api/cluster");
    assert_eq!(cluster["state"], "disconnected", "{cluster}");
    let detail = cluster["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("WRONGPASS"),
        "the refusal is shown: {detail}"
    );
    assert_eq!(wrong.get("/readyz").0, 200);
}

/// `rediss://` with `require_tls`: the nodes trust the server's CA through the system roots (`SSL_CERT_FILE`) and
/// carry messages across over TLS.
#[test]
fn redis_nodes_connect_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let file = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (ca_file, certificate_file, key_file) = (
        file("ca.pem", ca.pem()),
        file("redis.pem", certificate.pem()),
        file("redis.key", key.serialize_pem()),
    );
    let redis = RedisServer::start_tls(&certificate_file, &key_file, &ca_file);
    let tls_port = redis.tls_port.unwrap();
    let config = format!(
        "{}[cluster]\nbackend = \"redis\"\nurls = [\"rediss://localhost:{tls_port}\"]\nrequire_tls = true\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config()
    );
    let roots = ca_file.display().to_string();
    let start = || {
        let gateway = Gatewayd::start_with_env(&config, &[("SSL_CERT_FILE", &roots)]);
        wait_cluster(&gateway, "connected");
        gateway
    };
    let (a, b) = (start(), start());
    let mut subscriber = stomp_subscriber(b.listener("stomp.tcp"), "sealed");
    redis.wait_subscribed("gatewayd:topic:sealed", 1);
    let mut publisher = Peer::connect(a.listener("stomp.tcp"));
    stomp_send(&mut publisher, "/topic/sealed", "over TLS");
    assert_eq!(
        stomp_bodies(&mut subscriber, Duration::from_millis(500)),
        ["over TLS"]
    );
}

fn a_killed_node_does_not_affect_the_other(backend: Backend) {
    let server = Server::start(backend, 0);
    let a = node(&server);
    let b = node(&server);
    let mut subscriber = stomp_subscriber(a.listener("stomp.tcp"), "alive");
    server.wait_subscribed("alive", 1);
    drop(b);
    let mut publisher = Peer::connect(a.listener("stomp.tcp"));
    stomp_send(&mut publisher, "/topic/alive", "still here");
    assert_eq!(
        stomp_bodies(&mut subscriber, Duration::from_millis(500)),
        ["still here"]
    );
    assert_eq!(a.get_json("/api/cluster")["state"], "connected");
}

/// A node with MessageLoop, JetStream-backed history on `hist.#` and KV presence, ready once its stream is.
fn jetstream_node(nats: &NatsServer) -> Gatewayd {
    node_with_history(&format!(
        "[cluster]\nbackend = \"nats\"\nurls = [\"{}\"]\nhistory = \"jetstream\"\npresence = \"kv\"\n",
        nats.url()
    ))
}

fn ml_client(gateway: &Gatewayd) -> Ws {
    let mut ws = Ws::connect(gateway.listener("messageloop.ws"), &["messageloop+json"]);
    ws.handshake("2.0.0", "");
    ws
}

/// A MessageLoop client on `gateway` subscribed (id `id`) to `channel`.
fn ml_subscriber(gateway: &Gatewayd, id: &str, channel: &str) -> Ws {
    let mut ws = ml_client(gateway);
    ws.subscribe(id, &[channel]);
    ws
}

fn ml_publish(ws: &mut Ws, id: &str, channel: &str, n: u64) {
    ws.send(json!({"id": id, "publish": {"channel": channel,
        "payload": {"content_type": "application/json", "json": {"n": n}}}}));
}

type Publication = (String, u64, u64, bool);

/// Reads until `acks` publish acks and `publications` publications arrived, in whatever order.
fn ml_read(ws: &mut Ws, acks: usize, publications: usize) -> (Vec<Value>, Vec<Publication>) {
    let (mut got_acks, mut got_publications) = (Vec::new(), Vec::new());
    while got_acks.len() < acks || got_publications.len() < publications {
        let frame = ws.recv();
        if let Some(ack) = frame.get("publish_ack") {
            got_acks.push(ack["position"].clone());
        } else if frame.get("publication").is_some() {
            got_publications.push(publication(&frame));
        }
    }
    (got_acks, got_publications)
}

/// (stream epoch, offset, payload n, replay) of a publication frame.
fn publication(frame: &Value) -> Publication {
    let message = &frame["publication"]["messages"][0];
    (
        message["position"]["stream_epoch"]
            .as_str()
            .unwrap()
            .to_owned(),
        message["position"]["offset"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        message["payload"]["json"]["n"].as_u64().unwrap(),
        message["replay"] == true,
    )
}

/// A node with cluster-wide history, `cluster` adding keys to its `[cluster]` section.
fn history_node(server: &Server, cluster: &str) -> Gatewayd {
    node_with_history(&format!("{}{cluster}", server.history_cluster_config()))
}

/// A node with the `[cluster]` section `cluster`, MessageLoop and history on `hist.#`, ready once its stream is.
fn node_with_history(cluster: &str) -> Gatewayd {
    let config = format!(
        "{}{cluster}[messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [[bus.history]]\ntopics = \"hist.#\"\nmax_messages = 100\nmax_bytes = 1048576\nttl = 0\n",
        base_config()
    );
    let gateway = Gatewayd::start(&config);
    wait_streams_ready(&gateway, "history stream ready");
    gateway
}

/// MessageLoop history numbered by the cluster (a JetStream stream, a Redis stream): the same positions on every
/// node, recovery on another node, live traffic right after.
fn messageloop_history_recovers_on_another_node_with_the_same_offsets(backend: Backend) {
    let server = Server::start_with_history(backend);
    let (a, b) = (history_node(&server, ""), history_node(&server, ""));
    let mut watcher = ml_subscriber(&b, "w", "hist.room");
    let mut client = ml_subscriber(&a, "s", "hist.room");

    for n in 1..=5 {
        ml_publish(&mut client, &format!("p{n}"), "hist.room", n);
        ml_publish(&mut client, &format!("o{n}"), "hist.other", n);
    }
    let (acks, on_a) = ml_read(&mut client, 10, 5);
    let epoch = acks[0]["stream_epoch"].as_str().unwrap().to_owned();
    for ack in &acks {
        assert_eq!(
            ack.get("offset"),
            None,
            "assigned by the cluster's log after the ack"
        );
        assert_eq!(ack["stream_epoch"], epoch.as_str(), "the stream's epoch");
    }
    let offsets: Vec<u64> = on_a.iter().map(|p| p.1).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{on_a:?}");
    match backend {
        // hist.room and hist.other share the rule's stream: hist.room's offsets are increasing, not dense.
        Backend::Nats => assert_eq!(offsets, [1, 3, 5, 7, 9], "{on_a:?}"),
        // Entry ids `<ms>-<seq>` as `(ms << 20) | seq`.
        Backend::Redis | Backend::RedisMl2 => {
            assert!(offsets[0] >> 20 > 1_700_000_000_000, "{on_a:?}")
        }
    }
    assert!(on_a.iter().all(|p| p.0 == epoch && !p.3), "{on_a:?}");
    assert_eq!(
        on_a.iter().map(|p| p.2).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // Node B delivered the same messages at the same positions.
    assert_eq!(ml_read(&mut watcher, 0, 5).1, on_a);

    // The client read up to the second message on A, then reconnects to B and recovers from there.
    client.close();
    let mut again = ml_client(&b);
    ml_recover(&mut again, &epoch, &offsets[1].to_string());
    let ack = again.recv_kind("subscribe_ack");
    assert_eq!(ack["subscribe_ack"]["recover"], "RECOVER_STATE_PENDING");
    let mut replayed = Vec::new();
    loop {
        let frame = again.recv();
        if let Some(complete) = frame.get("recover_complete") {
            assert_eq!(
                complete["position"]["offset"],
                offsets[4].to_string(),
                "{frame}"
            );
            assert_eq!(complete["position"]["stream_epoch"], epoch.as_str());
            assert_ne!(complete["gap"], true, "{frame}");
            break;
        }
        if let Some(message) = frame["publication"]["messages"].get(0) {
            assert_eq!(message["replay"], true);
            replayed.push((
                message["position"]["offset"].as_str().unwrap().to_owned(),
                message["payload"]["json"]["n"].as_u64().unwrap(),
            ));
        }
    }
    let expected: Vec<(String, u64)> = (2..5)
        .map(|i| (offsets[i].to_string(), i as u64 + 1))
        .collect();
    assert_eq!(replayed, expected);

    // Live traffic published on A continues on B right after the recovered offset, once.
    let mut publisher = ml_client(&a);
    ml_publish(&mut publisher, "p6", "hist.room", 6);
    let live = ml_read(&mut again, 0, 1).1;
    assert!(live[0].1 > offsets[4], "{live:?}");
    if backend == Backend::Nats {
        assert_eq!(live[0].1, 11);
    }
    assert_eq!(live, [(epoch, live[0].1, 6, false)]);
    assert_eq!(ml_read(&mut watcher, 0, 1).1, live);
}

/// A Redis without persistence restarts empty: the nodes read a new epoch from it, report the stream ready again,
/// and history starts over in that epoch on every node; presence is written again, so a node started afterwards
/// lists the members that joined before, and joins after the restart cross as before.
#[test]
fn redis_history_and_presence_recover_after_redis_lost_its_data() {
    let mut server = Server::start_with_history(Backend::Redis);
    let presence = "presence = \"kv\"\n";
    let (a, b) = (
        history_node(&server, presence),
        history_node(&server, presence),
    );
    let _alice = ml_subscriber(&a, "s", "lounge");
    let mut observer = ml_subscriber(&b, "s", "lounge");
    wait_occupancy(&mut observer, "lounge", 2);
    let mut watcher = ml_subscriber(&b, "w", "hist.room");
    let mut publisher = ml_client(&a);
    ml_publish(&mut publisher, "p1", "hist.room", 1);
    let before = ml_read(&mut watcher, 0, 1).1;
    assert_eq!(before[0].2, 1);

    let port = server.port();
    server.stop();
    wait_cluster_ready(&a, "disconnected");
    wait_cluster_ready(&b, "disconnected");
    let server = Server::start(Backend::Redis, port);
    for node in [&a, &b] {
        wait_streams_ready(node, "reconnected with the stream ready");
    }
    ml_publish(&mut publisher, "p2", "hist.room", 2);
    let after = ml_read(&mut watcher, 0, 1).1;
    let epoch = after[0].0.clone();
    assert_ne!(epoch, before[0].0, "a new epoch");
    assert_eq!(after, [(epoch.clone(), after[0].1, 2, false)]);
    let mut late = ml_client(&b);
    ml_recover(&mut late, &epoch, "0");
    assert_eq!(ml_read(&mut late, 0, 1).1, [(epoch, after[0].1, 2, true)]);
    assert!(a.metric("gatewayd_cluster_failed_total", &[("reason", "history")]) >= 1.0);

    // Both nodes wrote their members again: a node started now lists them (and its own client).
    let c = history_node(&server, presence);
    let mut newcomer = ml_subscriber(&c, "s", "lounge");
    wait_occupancy(&mut newcomer, "lounge", 3);
    // A join after the restart is announced to the others.
    let _dave = ml_subscriber(&a, "s", "lounge");
    wait_occupancy(&mut observer, "lounge", 4);
}

/// Queries `channel`'s presence until it lists `n` members.
fn wait_occupancy(ws: &mut Ws, channel: &str, n: u64) {
    wait_occupancy_or(ws, channel, n, &format!("{channel} never had {n} members"));
}

/// Queries `channel`'s presence until it lists `n` members, failing with `failure` after 20 s.
fn wait_occupancy_or(ws: &mut Ws, channel: &str, n: u64, failure: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let presence = occupancy(ws, channel);
        if presence["occupancy"] == n {
            return;
        }
        assert!(Instant::now() < deadline, "{failure}: {presence}");
    }
}

fn occupancy(ws: &mut Ws, channel: &str) -> Value {
    ws.send(json!({"id": "q", "presence_query": {"channel": channel}}));
    ws.recv_kind("presence")["presence"].clone()
}

/// `presence = "kv"`: NATS KV or Redis hashes and announcements.
fn messageloop_presence_is_cluster_wide(backend: Backend) {
    let server = Server::start_with_history(backend);
    let presence = "presence = \"kv\"\n";
    let (a, b) = (
        history_node(&server, presence),
        history_node(&server, presence),
    );
    let mut alice = ml_subscriber(&a, "s", "lobby");
    let mut bob = ml_subscriber(&b, "s", "lobby");

    // Alice's membership reaches node B through the backend (a KV put and watch, a Redis announcement).
    wait_occupancy_or(&mut bob, "lobby", 2, "B never saw A's member");
    // Subscribe-time snapshots on B include A's member too.
    let mut carol = ml_client(&b);
    let ack = carol.subscribe("s", &["lobby"]);
    let snapshot = &ack["subscribe_ack"]["presence"][0];
    assert_eq!(snapshot["occupancy"], 3, "{ack}");
    assert_eq!(snapshot["clients"].as_array().unwrap().len(), 3, "{ack}");
    // And A sees B's members: the join events crossed, and the query agrees.
    let join = alice.recv_kind("presence_event");
    assert_eq!(join["presence_event"]["action"], "join");
    wait_occupancy_or(&mut alice, "lobby", 3, "A never saw B's members");

    // A leave is removed everywhere at once (the key is deleted).
    carol.close();
    wait_occupancy_or(&mut alice, "lobby", 2, "A never saw the leave");
}

#[test]
fn messageloop_history_and_presence_continue_after_a_nats_restart() {
    let nats = NatsServer::start_jetstream(0);
    let (a, b) = (jetstream_node(&nats), jetstream_node(&nats));
    let mut watcher = ml_subscriber(&b, "w", "hist.room");
    let mut publisher = ml_client(&a);
    ml_publish(&mut publisher, "p1", "hist.room", 1);
    let before = ml_read(&mut watcher, 0, 1).1;
    let epoch = before[0].0.clone();
    assert_eq!(before, [(epoch.clone(), 1, 1, false)]);

    // NATS restarts with its store: the stream, its epoch and its sequence survive.
    let mut nats = nats;
    nats.stop();
    wait_cluster(&a, "disconnected");
    wait_cluster(&b, "disconnected");
    let nats = nats.restart();
    for node in [&a, &b] {
        wait_streams_ready(node, "reconnected");
    }
    ml_publish(&mut publisher, "p2", "hist.room", 2);
    assert_eq!(
        ml_read(&mut watcher, 0, 1).1,
        [(epoch.clone(), 2, 2, false)]
    );
    let mut late = ml_client(&b);
    ml_recover(&mut late, &epoch, "0");
    let replayed = ml_read(&mut late, 0, 2).1;
    assert_eq!(replayed, [(epoch.clone(), 1, 1, true), (epoch, 2, 2, true)]);

    // Presence is shared again after the restart: a member joining on A is listed on B.
    let _dave = ml_subscriber(&a, "s", "lounge");
    wait_occupancy_or(
        &mut late,
        "lounge",
        1,
        "B never saw A's member after the restart",
    );
    drop(nats);
}
