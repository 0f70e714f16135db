//! The Grafana dashboard cannot rot: every metric that a PromQL expression in `deploy/grafana/gatewayd.json` names
//! is in gatewayd's `/metrics` after traffic on all six protocols through a NATS cluster backend, a refused
//! connection and a dropped frame; and the connection, byte, size and latency metrics count what happened.

mod support;

#[path = "support/ctl.rs"]
mod ctl;
#[path = "support/nats.rs"]
mod nats;

use std::collections::BTreeSet;
use std::net::TcpStream;

use nats::NatsServer;
use support::*;
use tokio_tungstenite::tungstenite;

/// The metric names (`gatewayd_*`, `process_*`) of every expression in the dashboard.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = repo_root().join("deploy/grafana/gatewayd.json");
    let text = std::fs::read_to_string(&path).expect("read the dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = Vec::new();
    let mut stack = vec![&dashboard];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    exprs.push(expr.to_owned());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    assert!(exprs.len() >= 20, "only {} expressions found", exprs.len());
    let mut names = BTreeSet::new();
    for expr in &exprs {
        let identifiers = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for word in identifiers {
            if word.starts_with("gatewayd_") || word.starts_with("process_") {
                names.insert(word.to_owned());
            }
        }
        assert!(
            expr.contains("gatewayd_") || expr.contains("process_"),
            "expression names no gatewayd metric: {expr}"
        );
    }
    names
}

/// The metric names in a `/metrics` page.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_dashboard_metric_is_exported_after_traffic_on_every_protocol() {
    let wanted = dashboard_metrics();
    let nats = NatsServer::start(0);
    let gateway = Gatewayd::start(&format!(
        "{}[cluster]\nbackend = \"nats\"\nurls = [\"{}\"]\n\
         [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n[goomerang.limits]\nmax_connections = 3\n\
         [loom]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
         [mqtt.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
        base_config(),
        nats.url()
    ));

    // Each protocol publishes to a STOMP subscriber.
    let subscriber = ctl::spawn(
        &gateway,
        &["sub", "-p", "stomp", "dash.all", "--count", "5"],
    );
    ctl::wait_subscribed(&gateway, "dash.all", 1, 0);
    for protocol in PROTOCOLS {
        ctl::run(
            &gateway,
            &["pub", "-p", protocol, "dash.all", "x".repeat(100).as_str()],
        );
    }
    let received = ctl::finish(subscriber);
    assert!(
        received.status.success(),
        "{}",
        String::from_utf8_lossy(&received.stderr)
    );
    for protocol in PROTOCOLS {
        assert!(
            gateway.metric("gatewayd_messages_in_total", &[("protocol", protocol)]) >= 1.0,
            "no message in from {protocol}"
        );
    }
    assert!(gateway.metric("gatewayd_message_bytes_in_total", &[("protocol", "loom")]) >= 100.0);
    assert!(gateway.metric("gatewayd_message_bytes_out_total", &[("protocol", "stomp")]) >= 500.0);
    assert!(
        gateway.metric(
            "gatewayd_delivery_latency_seconds_count",
            &[("publisher", "chanserv"), ("subscriber", "stomp")]
        ) >= 1.0
    );
    assert!(
        gateway.metric(
            "gatewayd_connections_accepted_total",
            &[("protocol", "loom")]
        ) >= 1.0
    );

    // A text frame on Goomerang is dropped as malformed.
    let goomerang = gateway.listener("goomerang.ws");
    let (mut socket, _) =
        tungstenite::connect(format!("ws://{goomerang}/ws")).expect("goomerang WebSocket");
    socket
        .send(tungstenite::Message::Text("not a frame".into()))
        .expect("send text");
    wait_metric(
        &gateway,
        "gatewayd_drops_total",
        &[("reason", "malformed")],
        1.0,
    );
    wait_connections(&gateway, "goomerang", 1.0);

    // Goomerang's limit is 3: a fourth connection is refused and counted.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(goomerang).expect("connect"))
        .collect();
    wait_connections(&gateway, "goomerang", 3.0);
    let _refused = TcpStream::connect(goomerang).expect("connect");
    wait_metric(
        &gateway,
        "gatewayd_connections_refused_total",
        &[("protocol", "goomerang"), ("reason", "at_capacity")],
        1.0,
    );
    drop(held);
    drop(socket);

    let (_, text) = gateway.get("/metrics");
    let have = exported(&text);
    let missing: Vec<&String> = wanted.difference(&have).collect();
    assert!(
        missing.is_empty(),
        "the dashboard names metrics /metrics lacks: {missing:?}"
    );
}

/// Polls `/metrics` until `gatewayd_connections` of `protocol` reaches `at_least`.
fn wait_connections(gateway: &Gatewayd, protocol: &str, at_least: f64) {
    wait_metric(
        gateway,
        "gatewayd_connections",
        &[("protocol", protocol)],
        at_least,
    );
}

/// Polls `/metrics` until `name` with `labels` reaches `at_least`.
fn wait_metric(gateway: &Gatewayd, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gateway.metric(name, labels) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{name}{labels:?} stayed below {at_least}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn open_connections_go_up_and_down() {
    let gateway = Gatewayd::start(&config_enabling(&["chanserv"]));
    let address = gateway.listener("chanserv.tcp");
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(address).expect("connect"))
        .collect();
    wait_connections(&gateway, "chanserv", 3.0);
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gateway.metric("gatewayd_connections", &[("protocol", "chanserv")]) > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connections gauge stayed up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        gateway.metric(
            "gatewayd_connections_accepted_total",
            &[("protocol", "chanserv")]
        ) >= 3.0
    );
}
