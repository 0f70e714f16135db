//! The envelope the core bus sees does not depend on the listener: the five adapters run in-process on one
//! `core_bus::Bus` held by the test, a `Mailbox` on the bus captures what each listener published, and an
//! equivalent message sent through different listeners (STOMP over TCP and WebSocket, MessageLoop over gRPC,
//! Goomerang, Loom, chanserv) yields the same topic, payload, content type, key and user headers. Origin, id and
//! timestamp differ by design.

#[path = "matrix/clients.rs"]
mod matrix_clients;
#[path = "support/messageloop_client.rs"]
mod messageloop_client;
#[path = "support/stomp_client.rs"]
mod stomp_client;
#[path = "matrix/stomp_ws.rs"]
mod stomp_ws;
// The client wrappers name the daemon harness; this test runs no daemon.
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use core_bus::{Bus, ConnectionId, Envelope, Mailbox, Origin, Pattern, Topic};
use matrix_clients::*;
use messageloop_client::grpc;
use protocols::connections::ConnectionRegistry;
use protocols::messageloop::pb::messageloop::shared::v2 as ml_shared;
use protocols::{RunningListener, Services};
use stomp_client::{Frame, Peer};
use stomp_ws::StompWs;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// What must not depend on the listener.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    topic: Topic,
    payload: Bytes,
    content_type: Option<String>,
    key: Option<Bytes>,
    headers: Vec<(String, Bytes)>,
}

impl Seen {
    fn of(envelope: &Envelope) -> Seen {
        Seen {
            topic: envelope.topic.clone(),
            payload: envelope.payload.clone(),
            content_type: envelope.content_type.as_deref().map(str::to_owned),
            key: envelope.key.clone(),
            headers: envelope
                .headers
                .iter()
                .map(|(n, v)| (n.to_owned(), v.clone()))
                .collect(),
        }
    }
}

struct InProcess {
    rt: Runtime,
    listeners: Vec<RunningListener>,
    shutdown: CancellationToken,
    capture: Mailbox,
}

/// The listeners a protocol's `start` brought up (`name` says which one failed, should it fail).
fn listeners<C>(
    started: anyhow::Result<protocols::Started<C>>,
    name: &str,
) -> Vec<RunningListener> {
    started.expect(name).listeners
}

impl InProcess {
    fn start() -> InProcess {
        let rt = runtime();
        let bus = Bus::new(core_bus::config::BusConfig::default());
        let shutdown = CancellationToken::new();
        let services = Services {
            bus: bus.clone(),
            connections: ConnectionRegistry::default(),
            shutdown: shutdown.clone(),
        };
        let mut capture = bus.mailbox(Origin {
            protocol: core_bus::Protocol::Internal,
            connection: ConnectionId::next(),
        });
        capture
            .subscribe(Pattern::parse("envelope.>").expect("pattern"))
            .expect("capture subscription");
        let listen = "enabled = true\naddress = \"127.0.0.1:0\"\n";
        let listeners = rt.block_on(async {
            let stomp: protocols::stomp::Config =
                toml::from_str(&format!("[tcp]\n{listen}[ws]\n{listen}")).expect("stomp");
            let messageloop: protocols::messageloop::Config =
                toml::from_str(&format!("[ws]\n{listen}[grpc]\n{listen}")).expect("messageloop");
            let goomerang: protocols::goomerang::Config =
                toml::from_str(listen).expect("goomerang");
            let loom: protocols::loom::Config = toml::from_str(listen).expect("loom");
            let chanserv: protocols::chanserv::Config = toml::from_str(listen).expect("chanserv");
            let mqtt: protocols::mqtt::Config =
                toml::from_str(&format!("[tcp]\n{listen}")).expect("mqtt");
            [
                listeners(protocols::stomp::start(&stomp, &services).await, "stomp"),
                listeners(
                    protocols::messageloop::start(&messageloop, &services).await,
                    "messageloop",
                ),
                listeners(
                    protocols::goomerang::start(&goomerang, &services).await,
                    "goomerang",
                ),
                listeners(protocols::loom::start(&loom, &services).await, "loom"),
                listeners(
                    protocols::chanserv::start(&chanserv, &services).await,
                    "chanserv",
                ),
                listeners(protocols::mqtt::start(&mqtt, &services).await, "mqtt"),
            ]
            .into_iter()
            .flatten()
            .collect()
        });
        InProcess {
            rt,
            listeners,
            shutdown,
            capture,
        }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        let addr = self
            .listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("listener {name}"))
            .local_addr;
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    }

    fn addrs(&self) -> Addrs {
        Addrs {
            stomp: self.addr("stomp.tcp"),
            stomp_ws: self.addr("stomp.ws"),
            messageloop_ws: self.addr("messageloop.ws"),
            messageloop_grpc: self.addr("messageloop.grpc"),
            goomerang: self.addr("goomerang.ws"),
            loom: self.addr("loom.quic"),
            chanserv: self.addr("chanserv.tcp"),
            mqtt: self.addr("mqtt.tcp"),
        }
    }

    /// The next envelope published on the bus under `envelope.>`.
    fn next(&mut self) -> Arc<Envelope> {
        let capture = &mut self.capture;
        self.rt.block_on(async {
            tokio::time::timeout(WAIT, capture.recv())
                .await
                .expect("an envelope in time")
                .expect("bus open")
                .envelope
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

const TOPIC: &str = "envelope.same";
const BODY: &[u8] = b"\x00same bytes\xff\x00";

fn stomp_send(headers: &[(&str, &str)]) -> Frame {
    let mut frame = Frame::new("SEND")
        .header("destination", &format!("/topic/{TOPIC}"))
        .body(BODY);
    for (name, value) in headers {
        frame = frame.header(name, value);
    }
    frame
}

#[test]
fn equivalent_messages_make_the_same_envelope_on_every_listener() {
    let mut gateway = InProcess::start();
    let addrs = gateway.addrs();

    // 1. What STOMP and MessageLoop both express: a content type and user headers.
    let headers = [
        ("content-type", "application/octet-stream"),
        ("x-one", "1"),
        ("x-two", "2"),
    ];
    let mut stomp = Peer::connect(addrs.stomp);
    stomp.send(&stomp_send(&headers));
    let via_stomp = Seen::of(&gateway.next());
    let mut stomp_ws = StompWs::connect(addrs.stomp_ws);
    stomp_ws.send(&stomp_send(&headers));
    let via_stomp_ws = Seen::of(&gateway.next());
    // The clients crate speaks MessageLoop over WebSocket; this leg is the gRPC listener's.
    let _ml = gateway.rt.block_on(async {
        let stream = grpc::connected_g2(addrs.messageloop_grpc).await;
        let publish = grpc::g2::Publish {
            channel: TOPIC.into(),
            payload: Some(ml_shared::Payload {
                content_type: "application/octet-stream".into(),
                data: Some(ml_shared::payload::Data::Binary(Bytes::from_static(BODY))),
            }),
            metadata: Some(ml_shared::Metadata {
                entries: [("x-one", "1"), ("x-two", "2")]
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .into(),
            }),
            ..Default::default()
        };
        stream
            .send(grpc::g2_inbound(
                "p",
                grpc::g2::inbound_message::Envelope::Publish(publish),
            ))
            .await;
        stream
    });
    let via_messageloop = Seen::of(&gateway.next());
    assert_eq!(via_stomp.topic, Topic::from_dotted(TOPIC.as_bytes()));
    assert_eq!(via_stomp.payload, BODY);
    assert_eq!(
        via_stomp.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(via_stomp.headers.len(), 2, "{via_stomp:?}");
    assert_eq!(via_stomp_ws, via_stomp, "STOMP over WebSocket");
    assert_eq!(via_messageloop, via_stomp, "MessageLoop over gRPC");

    // 2. A Goomerang message, and the same message written by hand over STOMP.
    let mut goomerang = Pub::connect(Protocol::Goomerang, &addrs, &gateway.rt);
    goomerang.publish(
        TOPIC,
        &Outgoing {
            payload: Bytes::from_static(BODY),
            headers: vec![("x-one".into(), "1".into())],
            ..Outgoing::default()
        },
        &gateway.rt,
    );
    let via_goomerang = Seen::of(&gateway.next());
    stomp.send(&stomp_send(&[
        ("content-type", "application/x-protobuf"),
        ("goomerang-kind", GOOMERANG_KIND),
        ("x-one", "1"),
    ]));
    let as_goomerang_via_stomp = Seen::of(&gateway.next());
    assert_eq!(
        via_goomerang.content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(as_goomerang_via_stomp, via_goomerang, "Goomerang ≡ STOMP");

    // 3. A keyed Loom message, and STOMP with JMSXGroupID.
    let mut loom = Pub::connect(Protocol::Loom, &addrs, &gateway.rt);
    loom.publish(
        TOPIC,
        &Outgoing {
            payload: Bytes::from_static(BODY),
            key: Some("key-9".into()),
            ..Outgoing::default()
        },
        &gateway.rt,
    );
    let via_loom = Seen::of(&gateway.next());
    stomp.send(&stomp_send(&[("JMSXGroupID", "key-9")]));
    let keyed_via_stomp = Seen::of(&gateway.next());
    assert_eq!(via_loom.key.as_deref(), Some(&b"key-9"[..]));
    assert_eq!(keyed_via_stomp, via_loom, "Loom ≡ STOMP");

    // 4. A bare chanserv PUB, and a bare STOMP SEND.
    // `publish` asserts the `ok` answer.
    let mut chanserv = Pub::connect(Protocol::Chanserv, &addrs, &gateway.rt);
    chanserv.publish(
        TOPIC,
        &Outgoing {
            payload: Bytes::from_static(BODY),
            ..Outgoing::default()
        },
        &gateway.rt,
    );
    let via_chanserv = Seen::of(&gateway.next());
    stomp.send(&stomp_send(&[]));
    let bare_via_stomp = Seen::of(&gateway.next());
    assert_eq!(via_chanserv.content_type, None);
    assert_eq!(via_chanserv.key, None);
    assert!(via_chanserv.headers.is_empty());
    assert_eq!(bare_via_stomp, via_chanserv, "chanserv ≡ STOMP");

    // 5. An MQTT 5.0 publish, and STOMP with the same content type, correlation id and headers, plus the
    //    `mqtt-qos` header the MQTT listener adds first.
    let mut mqtt = Pub::connect(Protocol::Mqtt, &addrs, &gateway.rt);
    mqtt.publish(
        TOPIC,
        &Outgoing {
            payload: Bytes::from_static(BODY),
            content_type: Some("application/octet-stream".into()),
            correlation_id: Some("c-9".into()),
            headers: vec![("x-one".into(), "1".into())],
            ..Outgoing::default()
        },
        &gateway.rt,
    );
    let via_mqtt = Seen::of(&gateway.next());
    stomp.send(&stomp_send(&[
        ("content-type", "application/octet-stream"),
        ("correlation-id", "c-9"),
        ("mqtt-qos", "0"),
        ("x-one", "1"),
    ]));
    let as_mqtt_via_stomp = Seen::of(&gateway.next());
    assert_eq!(via_mqtt.topic, Topic::from_dotted(TOPIC.as_bytes()));
    assert_eq!(as_mqtt_via_stomp, via_mqtt, "MQTT ≡ STOMP");
    loom.finish(&gateway.rt);
}
