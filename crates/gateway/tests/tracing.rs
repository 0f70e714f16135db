//! Traces across protocols against an in-process OTLP receiver: a STOMP SEND with a `traceparent` yields a publish
//! span under it and one delivery span per subscriber (MessageLoop, Goomerang) under the publish span, all in the
//! caller's trace; the subscribers see the trace in their metadata; a message that came without one starts a new
//! trace, and the trace goes on across cluster nodes (NATS and Redis), with spans of the hop.

mod support;

#[macro_use]
#[path = "support/backend.rs"]
mod backend;
#[path = "support/ctl.rs"]
mod ctl;
#[path = "support/nats.rs"]
mod nats;
#[path = "support/otlp.rs"]
mod otlp;
#[path = "support/redis.rs"]
mod redis;

use backend::{Backend, Server};
use ctl::*;
use serde_json::Value;
use support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn start(receiver: &otlp::Receiver) -> Gatewayd {
    Gatewayd::start(&format!(
        "{}[tracing]\notlp_endpoint = \"{}\"\nexport_interval_ms = 100\n",
        config_enabling(&["stomp.tcp", "messageloop.ws", "goomerang"]),
        receiver.endpoint()
    ))
}

/// The trace id of a `traceparent` value.
fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

/// Subscribes with gatewayctl over MessageLoop and Goomerang, publishes `extra` over STOMP, and returns what the
/// two subscribers printed.
fn publish_to_both(gateway: &Gatewayd, topic: &str, extra: &[&str]) -> [Value; 2] {
    let subscribers = ["messageloop", "goomerang"].map(|protocol| {
        spawn(
            gateway,
            &["sub", "-p", protocol, topic, "--count", "1", "--json"],
        )
    });
    wait_subscribed(gateway, topic, 2, 0);
    let mut args = vec!["pub", "-p", "stomp", topic, "traced"];
    args.extend_from_slice(extra);
    run(gateway, &args);
    subscribers.map(|subscriber| {
        let output = finish(subscriber);
        assert_succeeded(&output, "gatewayctl sub");
        serde_json::from_slice(&output.stdout).expect("one JSON message")
    })
}

#[test]
fn a_stomp_traceparent_links_publish_and_every_delivery_in_one_trace() {
    let receiver = otlp::Receiver::start();
    let gateway = start(&receiver);
    let incoming = format!("traceparent=00-{TRACE}-{CALLER_SPAN}-01");
    let received = publish_to_both(
        &gateway,
        "orders.traced",
        &["-H", &incoming, "-H", "tracestate=vendor=opaque"],
    );
    for message in &received {
        let traceparent = header(message, "traceparent").expect("traceparent in the delivery");
        assert_eq!(trace_of(traceparent), TRACE, "{message}");
        assert_eq!(
            header(message, "tracestate"),
            Some("vendor=opaque"),
            "{message}"
        );
    }
    let spans = receiver.wait_for_trace(TRACE, |spans| spans.len() >= 3);
    let publish = spans
        .iter()
        .find(|span| span.name == "publish stomp")
        .expect("a publish span");
    assert_eq!(publish.parent_span_id, CALLER_SPAN, "{spans:#?}");
    for protocol in ["messageloop", "goomerang"] {
        let deliver = spans
            .iter()
            .find(|span| span.name == format!("deliver {protocol}"))
            .unwrap_or_else(|| panic!("a {protocol} delivery span in {spans:#?}"));
        assert_eq!(deliver.parent_span_id, publish.span_id, "{spans:#?}");
        assert!(
            deliver
                .attributes
                .iter()
                .any(|(k, v)| k == "messaging.destination.name" && v.contains("orders.traced")),
            "{deliver:?}"
        );
    }
    // The subscribers' traceparent names the publish span, their parent.
    assert!(header(&received[0], "traceparent").is_some_and(|tp| tp.contains(&publish.span_id)));
}

#[test]
fn a_message_without_a_traceparent_starts_a_trace() {
    let receiver = otlp::Receiver::start();
    let gateway = start(&receiver);
    let received = publish_to_both(&gateway, "orders.fresh", &[]);
    let traceparent =
        header(&received[0], "traceparent").expect("a traceparent started at ingress");
    let trace = trace_of(traceparent).to_owned();
    assert_eq!(trace.len(), 32);
    assert_eq!(header(&received[1], "traceparent"), Some(traceparent));
    let spans = receiver.wait_for_trace(&trace, |spans| spans.len() >= 3);
    let publish = spans
        .iter()
        .find(|span| span.name == "publish stomp")
        .expect("a publish span");
    assert_eq!(publish.parent_span_id, "", "a root span: {spans:#?}");
}

on_every_backend!(the_trace_crosses_cluster_nodes);

fn the_trace_crosses_cluster_nodes(backend: Backend) {
    let server = Server::start(backend, 0);
    let receiver = otlp::Receiver::start();
    let node = || {
        let gateway = Gatewayd::start(&format!(
            "{}{}\
             [tracing]\notlp_endpoint = \"{}\"\nexport_interval_ms = 100\n\
             [stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
             [messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n",
            base_config(),
            server.cluster_config(),
            receiver.endpoint()
        ));
        wait_cluster(&gateway, "connected");
        gateway
    };
    let (a, b) = (node(), node());
    let subscriber = spawn(
        &b,
        &[
            "sub",
            "-p",
            "messageloop",
            "orders.far",
            "--count",
            "1",
            "--json",
        ],
    );
    server.wait_subscribed("orders.far", 1);
    let incoming = format!("traceparent=00-{TRACE}-{CALLER_SPAN}-01");
    run(
        &a,
        &["pub", "-p", "stomp", "orders.far", "far", "-H", &incoming],
    );
    let output = finish(subscriber);
    assert!(output.status.success());
    let spans = receiver.wait_for_trace(TRACE, |spans| {
        [
            "publish stomp",
            "cluster forward",
            "cluster receive",
            "deliver messageloop",
        ]
        .iter()
        .all(|name| spans.iter().any(|span| span.name == *name))
    });
    let publish = spans
        .iter()
        .find(|span| span.name == "publish stomp")
        .expect("publish span");
    for name in ["cluster forward", "cluster receive", "deliver messageloop"] {
        let span = spans.iter().find(|span| span.name == name).expect("span");
        assert_eq!(span.parent_span_id, publish.span_id, "{name}: {spans:#?}");
    }
}
