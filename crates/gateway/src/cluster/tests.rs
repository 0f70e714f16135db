//! The NATS and Redis backends against a real `nats-server` / `redis-server` on 127.0.0.1 (each case once per
//! backend, Redis also with `messageloop_layout = "ml2"`, `tests/support/backend.rs`): cross-node fanout, anycast exactly once across nodes, and a server
//! restart in the middle.

use std::time::{Duration, Instant};

use core_bus::cluster::ClusterState;
use core_bus::config::GroupPolicy;
use core_bus::{Bus, ConnectionId, Credit, Envelope, Mailbox, Origin, Pattern, Protocol, Topic};

use super::{ClusterBackendKind, ClusterConfig, HistoryMode, MessageLoopLayout, PresenceMode};

#[macro_use]
#[path = "../../tests/support/backend.rs"]
mod backend;
#[path = "../../tests/support/nats.rs"]
mod nats;
#[path = "../../tests/support/redis.rs"]
mod redis;

use backend::{Backend, Server};

on_every_backend!(fanout_and_anycast_cross_nodes_and_survive_a_server_restart);

fn config(server: &Server) -> ClusterConfig {
    let (backend, messageloop_layout) = match server.backend() {
        Backend::Nats => (ClusterBackendKind::Nats, MessageLoopLayout::Gatewayd),
        Backend::Redis => (ClusterBackendKind::Redis, MessageLoopLayout::Gatewayd),
        Backend::RedisMl2 => (ClusterBackendKind::Redis, MessageLoopLayout::Ml2),
    };
    ClusterConfig {
        backend,
        urls: vec![server.url()],
        messageloop_layout,
        ..ClusterConfig::default()
    }
}

async fn node(server: &Server) -> Bus {
    let bus = Bus::new(Default::default());
    super::start(&config(server), &bus)
        .await
        .expect("cluster start");
    bus
}

fn origin() -> Origin {
    Origin {
        protocol: Protocol::Internal,
        connection: ConnectionId::next(),
    }
}

fn publish(bus: &Bus, topic: &str, payload: String) {
    bus.publish(Envelope::new(
        Topic::parse(topic).unwrap(),
        payload,
        origin(),
    ));
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn connected(bus: &Bus) -> bool {
    matches!(bus.cluster_state(), ClusterState::Connected { .. })
}

/// Publishes probes on `topic` from `from` until `to` receives one, so later assertions do not race the server's
/// subscription; returns the probes received.
async fn await_route(from: &Bus, topic: &str, to: &mut Mailbox) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publish(from, topic, "probe".into());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), to.recv()).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no route from node to node on {topic}"
        );
    }
    let mut rest = Vec::new();
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(100), to.recv_batch(&mut rest, 1024)).await
    {
        rest.clear();
    }
}

async fn receive_all(mailbox: &mut Mailbox, quiet: Duration) -> Vec<String> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    while let Ok(Ok(_)) = tokio::time::timeout(quiet, mailbox.recv_batch(&mut batch, 1024)).await {
        out.extend(
            batch
                .drain(..)
                .map(|d| String::from_utf8_lossy(&d.envelope.payload).into_owned()),
        );
    }
    out
}

fn fanout_and_anycast_cross_nodes_and_survive_a_server_restart(backend: Backend) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(cross_nodes(backend));
}

async fn cross_nodes(backend: Backend) {
    let mut server = Server::start(backend, 0);
    let port = server.port();
    let (a, b) = (node(&server).await, node(&server).await);
    until("both nodes connected", || connected(&a) && connected(&b)).await;

    // Fanout: a wildcard subscriber on B gets what A publishes, once.
    let mut on_b = b.mailbox(origin());
    on_b.subscribe(Pattern::parse("orders.*").unwrap()).unwrap();
    on_b.subscribe(Pattern::parse("orders.#").unwrap()).unwrap();
    await_route(&a, "orders.probe", &mut on_b).await;
    for i in 0..50 {
        publish(&a, "orders.eu", format!("o{i}"));
    }
    let got = receive_all(&mut on_b, Duration::from_millis(300)).await;
    // Two matching subscriptions on B: two deliveries per message, each message crossing the server once.
    assert_eq!(got.len(), 100, "{got:?}");

    // Anycast: one member per node; every message reaches exactly one of them.
    let mut member_a = a.mailbox(origin());
    let mut member_b = b.mailbox(origin());
    let jobs = Topic::parse("jobs").unwrap();
    member_a
        .join_group(&jobs, Credit::AutoAck, GroupPolicy::QUEUE)
        .unwrap();
    member_b
        .join_group(&jobs, Credit::AutoAck, GroupPolicy::QUEUE)
        .unwrap();
    let mut probe_watch = b.mailbox(origin());
    probe_watch
        .subscribe(Pattern::parse("jobs").unwrap())
        .unwrap();
    await_route(&a, "jobs", &mut probe_watch).await;
    // Drain probes that reached the group members.
    receive_all(&mut member_a, Duration::from_millis(200)).await;
    receive_all(&mut member_b, Duration::from_millis(200)).await;
    for i in 0..200 {
        publish(&a, "jobs", format!("j{i}"));
    }
    let (got_a, got_b) = tokio::join!(
        receive_all(&mut member_a, Duration::from_millis(500)),
        receive_all(&mut member_b, Duration::from_millis(500))
    );
    let mut all: Vec<String> = got_a.iter().chain(got_b.iter()).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(
        got_a.len() + got_b.len(),
        200,
        "exactly once: a={} b={}",
        got_a.len(),
        got_b.len()
    );
    assert_eq!(all.len(), 200);
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "the backend spread the group over both nodes"
    );
    for got in [&got_a, &got_b] {
        let order: Vec<usize> = got
            .iter()
            .filter_map(|j| j.strip_prefix('j')?.parse().ok())
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "each node delivers in publish order: {order:?}"
        );
    }

    // The server goes away: both nodes notice, keep serving local traffic (groups fall back to local delivery).
    server.stop();
    until("nodes notice the outage", || {
        !connected(&a) && !connected(&b)
    })
    .await;
    publish(&a, "jobs", "local".into());
    assert_eq!(
        receive_all(&mut member_a, Duration::from_millis(200)).await,
        ["local"]
    );

    // The server comes back on the same port: traffic crosses nodes again.
    let _server = Server::start(backend, port);
    until("nodes reconnect", || connected(&a) && connected(&b)).await;
    await_route(&a, "orders.back", &mut on_b).await;
}

#[test]
fn jetstream_history_and_kv_presence_are_refused_on_a_single_node() {
    let single = ClusterConfig {
        history: HistoryMode::Jetstream,
        ..ClusterConfig::default()
    };
    assert_eq!(single.validate().unwrap_err().key, "cluster.history");
    let single = ClusterConfig {
        presence: PresenceMode::Kv,
        ..ClusterConfig::default()
    };
    assert_eq!(single.validate().unwrap_err().key, "cluster.presence");
    let nats = ClusterConfig {
        history: HistoryMode::Jetstream,
        presence: PresenceMode::Kv,
        backend: ClusterBackendKind::Nats,
        ..ClusterConfig::default()
    };
    assert_eq!(nats.validate(), Ok(()));
}
