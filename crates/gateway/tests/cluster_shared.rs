//! MQTT shared subscriptions across a cluster: two gatewayd nodes on a real nats-server or redis-server (once per
//! backend, `support/backend.rs`), each with members of the same share groups. Each group gets every message once
//! across the nodes, whatever node the message was published on, while plain subscribers on every node get all.

mod support;

#[macro_use]
#[path = "support/backend.rs"]
mod backend;
#[path = "support/mqtt_client.rs"]
mod mqtt_client;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/redis.rs"]
mod redis;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use backend::{Backend, Server};
use mqtt_client::{Client, Received};
use support::*;

on_every_backend!(each_share_group_gets_every_message_once_across_nodes);

const TOPIC: &str = "shared/jobs";
/// The share groups: one name on a wildcard filter that matches the topic, two names on the topic. Joined in this
/// order, so that the last new backend subscription of a node is the topic's own.
const GROUPS: [&str; 3] = [
    "$share/g/shared/#",
    "$share/g/shared/jobs",
    "$share/h/shared/jobs",
];
const PROBE: &[u8] = b"probe";

fn node(server: &Server) -> Gatewayd {
    let gateway = Gatewayd::start(&(config_enabling(&["mqtt.tcp"]) + &server.cluster_config()));
    wait_cluster(&gateway, "connected");
    gateway
}

fn subscriber(gateway: &Gatewayd, id: &str, filter: &str) -> Client {
    let mut client = Client::connect(gateway.listener("mqtt.tcp"), 5, id);
    client.send(&mqtt_client::subscribe(5, 1, filter, 0));
    let suback = client.expect_packet(Duration::from_secs(5));
    assert_eq!(suback.kind(), 9, "{filter}: {suback:?}");
    client
}

/// The payloads `client` receives until it has been quiet for `quiet`, the first within `first`.
fn payloads(client: &mut Client, first: Duration, quiet: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        match client.receive(if got.is_empty() { first } else { quiet }) {
            Received::Packet(packet) => got.push(mqtt_client::publish_parts(5, &packet).1),
            Received::Nothing => return got,
            Received::Closed => panic!("an MQTT subscriber was closed"),
        }
    }
}

fn each_share_group_gets_every_message_once_across_nodes(backend: Backend) {
    let server = Server::start(backend, 0);
    let nodes = [node(&server), node(&server)];
    // Per node: one member of each group, then the plain subscriber (the last interest each node announces).
    let mut members: Vec<[Client; 2]> = GROUPS
        .iter()
        .enumerate()
        .map(|(g, filter)| {
            [0, 1].map(|n| subscriber(&nodes[n], &format!("member-{g}-{n}"), filter))
        })
        .collect();
    let mut plain = [0, 1].map(|n| subscriber(&nodes[n], &format!("plain-{n}"), TOPIC));
    let mut publishers =
        [0, 1].map(|n| Client::connect(nodes[n].listener("mqtt.tcp"), 5, &format!("pub-{n}")));

    // Probes from both nodes until both plain subscribers get one from each: every node's interest has reached
    // the server, its groups' included (each node announces them in order, on one connection).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probed = [[false; 2]; 2];
    let probe_wait = Duration::from_millis(100);
    while probed.iter().flatten().any(|seen| !seen) {
        assert!(
            Instant::now() < deadline,
            "probes never crossed: {probed:?}"
        );
        for (from, publisher) in publishers.iter_mut().enumerate() {
            let probe = [PROBE, &[b'0' + from as u8]].concat();
            publisher.send(&mqtt_client::publish(5, TOPIC, &probe));
        }
        for (to, client) in plain.iter_mut().enumerate() {
            for payload in payloads(client, probe_wait, probe_wait) {
                if let Some(&from) = payload.strip_prefix(PROBE).and_then(|p| p.first()) {
                    probed[to][usize::from(from - b'0')] = true;
                }
            }
        }
    }

    const N: usize = 50;
    for i in 0..N {
        publishers[0].send(&mqtt_client::publish(5, TOPIC, format!("m-{i}").as_bytes()));
    }
    let real = |got: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        got.into_iter().filter(|p| !p.starts_with(PROBE)).collect()
    };
    for (n, client) in plain.iter_mut().enumerate() {
        // The first may take seconds on a loaded machine; by the groups' turn everything has arrived.
        let got = real(payloads(
            client,
            Duration::from_secs(10),
            Duration::from_millis(700),
        ));
        assert_eq!(got.len(), N, "plain subscriber on node {n}");
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), N);
    }
    let quiet = Duration::from_millis(300);
    for (filter, group) in GROUPS.iter().zip(&mut members) {
        let [on_a, on_b] = group;
        let (a, b) = (
            real(payloads(on_a, quiet, quiet)),
            real(payloads(on_b, quiet, quiet)),
        );
        let unique: HashSet<&Vec<u8>> = a.iter().chain(&b).collect();
        assert_eq!(
            (a.len() + b.len(), unique.len()),
            (N, N),
            "{filter}: every message once across the nodes (node A {}, node B {})",
            a.len(),
            b.len()
        );
    }
}
