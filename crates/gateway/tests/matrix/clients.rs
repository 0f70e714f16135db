//! The uniform face the cross-protocol tests put on the six test clients: a [`Pub`] publishes
//! `(topic, payload, key)` and a [`Sub`] subscribes to a topic and receives `payload + metadata`, whatever the
//! protocol. Blocking clients (STOMP, chanserv, MQTT) are used directly; async ones (Goomerang, MessageLoop gRPC,
//! Loom) run on the caller's runtime through `block_on`, so admin calls (`wait_for`, `metric`) stay outside it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
pub use clients::Protocol;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::chanserv_client;
use crate::goomerang_client::GoomerangClient;
use crate::loom_client;
use crate::messageloop_client::grpc;
use crate::mqtt_client;
use crate::stomp_client::{self, Frame, Peer};
use crate::support::Gatewayd;

use grpc::g2::inbound_message::Envelope as MlIn;
use grpc::g2::outbound_message::Envelope as MlOut;
use protocols::messageloop::pb::messageloop::shared::v2 as ml_shared;

/// How long one expected message may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// The largest body a subscriber of `protocol` receives with the default limits, if any.
pub fn delivery_limit(protocol: Protocol) -> Option<usize> {
    match protocol {
        // `messageloop.limits.max_message_size`: the whole encoded envelope.
        Protocol::MessageLoop => Some(64 * 1024),
        Protocol::Goomerang | Protocol::Loom => Some(16 * 1024 * 1024),
        Protocol::Stomp | Protocol::Chanserv | Protocol::Mqtt => None,
    }
}

/// Config text with all six protocols' listeners on ephemeral loopback ports, plus `extra`.
pub fn config(extra: &str) -> String {
    format!(
        "{}\
[stomp.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[stomp.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[messageloop]\nrpc_timeout_secs = 5\n\
[messageloop.ws]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[messageloop.grpc]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[goomerang]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[loom]\nenabled = true\naddress = \"127.0.0.1:0\"\nreject_delay_ms = 100\n\
[chanserv]\nenabled = true\naddress = \"127.0.0.1:0\"\n\
[mqtt.tcp]\nenabled = true\naddress = \"127.0.0.1:0\"\n{extra}",
        crate::support::base_config()
    )
}

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The listener addresses of one gatewayd.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub stomp: SocketAddr,
    pub stomp_ws: SocketAddr,
    pub messageloop_ws: SocketAddr,
    pub messageloop_grpc: SocketAddr,
    pub goomerang: SocketAddr,
    pub loom: SocketAddr,
    pub chanserv: SocketAddr,
    pub mqtt: SocketAddr,
}

impl Addrs {
    pub fn of(gateway: &Gatewayd) -> Addrs {
        let loom = gateway.listener("loom.quic");
        Addrs {
            stomp: gateway.listener("stomp.tcp"),
            stomp_ws: gateway.listener("stomp.ws"),
            messageloop_ws: gateway.listener("messageloop.ws"),
            messageloop_grpc: gateway.listener("messageloop.grpc"),
            goomerang: gateway.listener("goomerang.ws"),
            loom: SocketAddr::from(([127, 0, 0, 1], loom.port())),
            chanserv: gateway.listener("chanserv.tcp"),
            mqtt: gateway.listener("mqtt.tcp"),
        }
    }
}

/// The metadata a publisher attaches, in each protocol's own form where it has one.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    /// Content type (STOMP `content-type`, MessageLoop `Payload.content_type`).
    pub content_type: Option<String>,
    /// Affinity key (STOMP `JMSXGroupID`, Loom key).
    pub key: Option<String>,
    /// STOMP `correlation-id`, MQTT 5.0 correlation data.
    pub correlation_id: Option<String>,
    /// User headers (STOMP headers, MessageLoop metadata, Goomerang message headers, MQTT user properties).
    pub headers: Vec<(String, String)>,
}

/// What a subscriber received: the body exactly as the client sees it once unwrapped, and its metadata under the
/// names the protocol uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub body: Vec<u8>,
    pub meta: BTreeMap<String, String>,
}

/// The Goomerang kind the matrix publishes with.
pub const GOOMERANG_KIND: &str = "matrix.v1.Blob";
/// The Goomerang kind foreign bodies arrive as (`goomerang.wrapper_kind` default).
pub const BYTES_VALUE: &str = "google.protobuf.BytesValue";

/// One publishing client.
pub enum Pub {
    Stomp(Peer),
    MessageLoop(
        grpc::Stream<grpc::g2::InboundMessage, grpc::g2::OutboundMessage>,
        u64,
    ),
    Goomerang(GoomerangClient),
    /// A connection and its open producer streams by room.
    Loom(loom_client::Client, BTreeMap<String, loom_client::Stream>),
    Chanserv(chanserv_client::Client),
    Mqtt(mqtt_client::Client),
}

impl Pub {
    pub fn connect(proto: Protocol, addrs: &Addrs, rt: &Runtime) -> Pub {
        match proto {
            Protocol::Stomp => Pub::Stomp(Peer::connect(addrs.stomp)),
            Protocol::MessageLoop => {
                Pub::MessageLoop(rt.block_on(messageloop_connect(addrs.messageloop_grpc)), 0)
            }
            Protocol::Goomerang => {
                Pub::Goomerang(rt.block_on(GoomerangClient::connect(addrs.goomerang)))
            }
            Protocol::Loom => Pub::Loom(
                rt.block_on(loom_client::Client::connect(
                    addrs.loom,
                    loom_client::Transport::Quic,
                )),
                BTreeMap::new(),
            ),
            Protocol::Chanserv => Pub::Chanserv(chanserv_client::Client::connect(addrs.chanserv)),
            Protocol::Mqtt => Pub::Mqtt(mqtt_connect(addrs.mqtt)),
        }
    }

    /// Publishes `message` on the canonical topic `topic` with whatever metadata the protocol can carry.
    pub fn publish(&mut self, topic: &str, message: &Outgoing, rt: &Runtime) {
        match self {
            Pub::Stomp(peer) => {
                let mut frame = Frame::new("SEND")
                    .header("destination", &format!("/topic/{topic}"))
                    .body(&message.payload);
                if let Some(content_type) = &message.content_type {
                    frame = frame.header("content-type", content_type);
                }
                if let Some(key) = &message.key {
                    frame = frame.header("JMSXGroupID", key);
                }
                if let Some(correlation_id) = &message.correlation_id {
                    frame = frame.header("correlation-id", correlation_id);
                }
                for (name, value) in &message.headers {
                    frame = frame.header(name, value);
                }
                peer.send(&frame);
            }
            Pub::MessageLoop(stream, next) => {
                *next += 1;
                let id = format!("p{next}");
                let publish = grpc::g2::Publish {
                    channel: topic.to_owned(),
                    payload: Some(messageloop_payload(message)),
                    metadata: Some(ml_shared::Metadata {
                        entries: message.headers.iter().cloned().collect(),
                    }),
                    ..Default::default()
                };
                rt.block_on(async {
                    stream
                        .send(grpc::g2::InboundMessage {
                            id: id.clone(),
                            time: 0,
                            envelope: Some(MlIn::Publish(publish)),
                        })
                        .await;
                    loop {
                        let out = stream.next().await.expect("stream open");
                        match out.envelope {
                            Some(MlOut::PublishAck(_)) if out.id == id => break,
                            Some(MlOut::Error(error)) => panic!("publish refused: {error:?}"),
                            _ => {}
                        }
                    }
                });
            }
            Pub::Goomerang(client) => {
                let headers: Vec<(&str, &str)> = message
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                rt.block_on(client.publish(
                    topic,
                    GOOMERANG_KIND,
                    Bytes::copy_from_slice(&message.payload),
                    &headers,
                ));
            }
            Pub::Loom(client, streams) => rt.block_on(async {
                if !streams.contains_key(topic) {
                    let stream = client
                        .open(&loom_client::hello(
                            loom_client::PRODUCER,
                            b"matrix",
                            topic.as_bytes(),
                            b"",
                        ))
                        .await;
                    streams.insert(topic.to_owned(), stream);
                }
                let stream = streams.get_mut(topic).expect("producer stream");
                let key = message.key.as_deref().unwrap_or("matrix");
                stream
                    .write(&loom_client::message(
                        key.as_bytes(),
                        &message.payload,
                        16 * 1024,
                    ))
                    .await
                    .expect("loom write");
            }),
            Pub::Chanserv(client) => {
                let header = chanserv_publish(client, topic, &message.payload);
                assert!(header.starts_with("ok"), "chanserv PUB answered {header:?}");
            }
            Pub::Mqtt(client) => client.send(&mqtt_publish(topic, message)),
        }
    }

    /// Ends the publisher cleanly (Loom producers finish their streams so nothing is cut short).
    pub fn finish(self, rt: &Runtime) {
        if let Pub::Loom(client, mut streams) = self {
            rt.block_on(async {
                for stream in streams.values_mut() {
                    stream.finish().await;
                }
                // Wait until gatewayd has read every producer stream to its end.
                for stream in streams.values_mut() {
                    let _ = tokio::time::timeout(WAIT, stream.read_to_end()).await;
                }
            });
            drop(client);
        }
    }
}

/// `PUB <topic>\n<payload>` on a fresh request, written in DATA ops of at most 32 KiB (AstraNet's op payload
/// limit is 64 KiB, so a large PUB must be split, as the Go client's stream writes are). Returns the answer.
pub fn chanserv_publish(
    client: &mut chanserv_client::Client,
    topic: &str,
    payload: &[u8],
) -> String {
    let mut body = format!("PUB {topic}\n").into_bytes();
    body.extend_from_slice(payload);
    let (_, service_port) = client.service.clone().expect("SERVICE seen");
    let master = client.open((client.server, service_port));
    client.write(master, &(body.len() as u64).to_le_bytes());
    for chunk in body.chunks(32 * 1024) {
        client.write(master, chunk);
    }
    let (header, addr) = client.next_source(master).expect("publish answer");
    let channel = client.open(addr);
    assert_eq!(
        client.read_frame(channel),
        None,
        "the answer's channel is empty"
    );
    assert!(
        client.next_source(master).is_none(),
        "one answer, then the master closes"
    );
    client.close(master);
    client.close(channel);
    header
}

fn messageloop_payload(message: &Outgoing) -> ml_shared::Payload {
    use ml_shared::payload::Data;
    let content_type = message.content_type.clone().unwrap_or_default();
    let data = match std::str::from_utf8(&message.payload) {
        Ok(text) if content_type.starts_with("text/") => Data::Text(text.to_owned()),
        _ => Data::Binary(Bytes::copy_from_slice(&message.payload)),
    };
    ml_shared::Payload {
        content_type,
        data: Some(data),
    }
}

async fn messageloop_connect(
    addr: SocketAddr,
) -> grpc::Stream<grpc::g2::InboundMessage, grpc::g2::OutboundMessage> {
    let stream = grpc::open_g2(addr).await;
    stream
        .send(grpc::g2::InboundMessage {
            id: "c".into(),
            time: 0,
            envelope: Some(MlIn::Connect(grpc::g2::Connect {
                client_id: "matrix".into(),
                version: "2.0.0".into(),
                ..Default::default()
            })),
        })
        .await;
    let mut stream = stream;
    match stream.next().await.expect("connected").envelope {
        Some(MlOut::Connected(_)) => stream,
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// One subscribing client, subscribed to one topic.
pub enum Sub {
    Stomp(Peer),
    MessageLoop(
        grpc::Stream<grpc::g2::InboundMessage, grpc::g2::OutboundMessage>,
        Vec<Got>,
    ),
    Goomerang(GoomerangClient),
    /// The consumer's deliveries, acked by a task as they arrive.
    Loom(
        loom_client::Client,
        mpsc::UnboundedReceiver<loom_client::Msg>,
    ),
    /// The client and the source channel of the topic.
    Chanserv(chanserv_client::Client, u32),
    Mqtt(mqtt_client::Client),
}

impl Sub {
    /// Connects and subscribes to `topic` (a STOMP `/topic/`, a MessageLoop channel, a Goomerang topic, a Loom
    /// room, a chanserv selector). The caller waits for the subscription in `/api/topics` before publishing.
    pub fn subscribe(proto: Protocol, addrs: &Addrs, topic: &str, rt: &Runtime) -> Sub {
        match proto {
            Protocol::Stomp => {
                let mut peer = Peer::connect(addrs.stomp);
                peer.send(&stomp_client::frames::subscribe(
                    &format!("/topic/{topic}"),
                    "auto",
                    "matrix",
                ));
                Sub::Stomp(peer)
            }
            Protocol::MessageLoop => rt.block_on(async {
                let mut stream = messageloop_connect(addrs.messageloop_grpc).await;
                stream
                    .send(grpc::g2::InboundMessage {
                        id: "s".into(),
                        time: 0,
                        envelope: Some(MlIn::Subscribe(grpc::g2::Subscribe {
                            subscriptions: vec![grpc::g2::Subscription {
                                channel: topic.to_owned(),
                                ephemeral: true,
                                ..Default::default()
                            }],
                        })),
                    })
                    .await;
                loop {
                    match stream.next().await.expect("subscribe ack").envelope {
                        Some(MlOut::SubscribeAck(_)) => break,
                        Some(MlOut::Error(error)) => panic!("subscribe refused: {error:?}"),
                        _ => {}
                    }
                }
                Sub::MessageLoop(stream, Vec::new())
            }),
            Protocol::Goomerang => rt.block_on(async {
                let mut client = GoomerangClient::connect(addrs.goomerang).await;
                client.subscribe(topic).await;
                Sub::Goomerang(client)
            }),
            Protocol::Loom => rt.block_on(async {
                let client =
                    loom_client::Client::connect(addrs.loom, loom_client::Transport::Quic).await;
                let mut stream = client
                    .open(&loom_client::hello(
                        loom_client::CONSUMER,
                        b"matrix",
                        topic.as_bytes(),
                        b"",
                    ))
                    .await;
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Ok(Some(msg)) = stream.next().await {
                        if stream.write(&loom_client::ack(msg.id)).await.is_err()
                            || tx.send(msg).is_err()
                        {
                            break;
                        }
                    }
                });
                Sub::Loom(client, rx)
            }),
            Protocol::Chanserv => {
                let mut client = chanserv_client::Client::connect(addrs.chanserv);
                let (_, sources) = client.subscribe(&format!("{topic}\n"), 1);
                let (header, channel) = sources.into_iter().next().expect("one source");
                assert_eq!(header, format!("topic={topic}\n"));
                Sub::Chanserv(client, channel)
            }
            Protocol::Mqtt => {
                let mut client = mqtt_connect(addrs.mqtt);
                client.send(&mqtt_client::subscribe(5, 1, &topic.replace('.', "/"), 0));
                let suback = client.expect_packet(WAIT);
                assert_eq!((suback.kind(), suback.body.last()), (9, Some(&0)));
                Sub::Mqtt(client)
            }
        }
    }

    /// The next message; panics when none arrives within [`WAIT`].
    pub fn recv(&mut self, rt: &Runtime) -> Got {
        self.try_recv(rt, WAIT)
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.proto()))
    }

    /// The next message within `wait`, if any.
    pub fn try_recv(&mut self, rt: &Runtime, wait: Duration) -> Option<Got> {
        match self {
            Sub::Stomp(peer) => match peer.receive(wait) {
                stomp_client::Received::Frame(frame) => {
                    assert_eq!(frame.command, "MESSAGE", "{frame:?}");
                    let meta = frame
                        .headers
                        .iter()
                        .filter(|(name, _)| {
                            !matches!(
                                name.as_str(),
                                "subscription" | "destination" | "message-id" | "content-length"
                            )
                        })
                        .map(|(n, v)| (n.clone(), v.clone()))
                        .collect();
                    Some(Got {
                        body: frame.body,
                        meta,
                    })
                }
                stomp_client::Received::Nothing => None,
                stomp_client::Received::Closed => panic!("STOMP subscriber closed"),
            },
            Sub::MessageLoop(stream, queue) => {
                while queue.is_empty() {
                    let next = rt
                        .block_on(async { tokio::time::timeout(wait, stream.rx.message()).await });
                    let Ok(next) = next else { return None };
                    let out = next.expect("grpc status OK").expect("stream open");
                    if let Some(MlOut::Publication(publication)) = out.envelope {
                        queue.extend(publication.messages.into_iter().map(messageloop_got));
                    }
                }
                Some(queue.remove(0))
            }
            Sub::Goomerang(client) => rt.block_on(async {
                let frame = tokio::time::timeout(wait, client.receive()).await.ok()?;
                let frame = match frame {
                    crate::goomerang_client::Received::Frame(frame) => frame,
                    other => panic!("Goomerang subscriber: {other:?}"),
                };
                let mut meta: BTreeMap<String, String> = frame
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect();
                let body = if frame.kind == BYTES_VALUE {
                    <Vec<u8> as prost::Message>::decode(frame.payload.as_ref())
                        .expect("a BytesValue")
                } else {
                    meta.insert("goomerang-kind".into(), frame.kind.clone());
                    frame.payload.to_vec()
                };
                Some(Got { body, meta })
            }),
            Sub::Loom(_, rx) => rt.block_on(async {
                let msg = tokio::time::timeout(wait, rx.recv()).await.ok()??;
                assert_eq!(msg.declared_size, msg.body.len() as u64);
                let mut meta = BTreeMap::new();
                meta.insert(
                    "loom-key".to_owned(),
                    String::from_utf8_lossy(&msg.key).into_owned(),
                );
                meta.insert("loom-id".to_owned(), msg.id.to_string());
                Some(Got {
                    body: msg.body,
                    meta,
                })
            }),
            Sub::Chanserv(client, channel) => {
                let deadline = std::time::Instant::now() + wait;
                loop {
                    let stream = client.streams.get_mut(channel).expect("source stream");
                    if let Some(frame) = chanserv_client::take_frame(&mut stream.buf) {
                        return Some(Got {
                            body: chanserv_client::decode_item(&frame),
                            meta: BTreeMap::new(),
                        });
                    }
                    assert!(!stream.fin, "chanserv source closed");
                    if std::time::Instant::now() >= deadline {
                        return None;
                    }
                    client.pump();
                }
            }
            Sub::Mqtt(client) => match client.receive(wait) {
                mqtt_client::Received::Packet(packet) => Some(mqtt_got(&packet)),
                mqtt_client::Received::Nothing => None,
                mqtt_client::Received::Closed => panic!("MQTT subscriber closed"),
            },
        }
    }

    pub fn proto(&self) -> Protocol {
        match self {
            Sub::Stomp(_) => Protocol::Stomp,
            Sub::MessageLoop(..) => Protocol::MessageLoop,
            Sub::Goomerang(_) => Protocol::Goomerang,
            Sub::Loom(..) => Protocol::Loom,
            Sub::Chanserv(..) => Protocol::Chanserv,
            Sub::Mqtt(_) => Protocol::Mqtt,
        }
    }
}

/// A 5.0 connection under a client id of its own.
fn mqtt_connect(address: SocketAddr) -> mqtt_client::Client {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    mqtt_client::Client::connect(address, 5, &format!("matrix-{n}"))
}

/// A 5.0 QoS 0 PUBLISH of `message` on the MQTT name of `topic`: content type, correlation data and user
/// properties.
fn mqtt_publish(topic: &str, message: &Outgoing) -> Vec<u8> {
    use mqttbytes::v5::{Publish, PublishProperties};
    let mut publish = Publish::new(
        topic.replace('.', "/"),
        mqttbytes::QoS::AtMostOnce,
        message.payload.clone(),
    );
    publish.properties = Some(PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: None,
        topic_alias: None,
        response_topic: None,
        correlation_data: message
            .correlation_id
            .as_ref()
            .map(|id| Bytes::from(id.clone().into_bytes())),
        user_properties: message.headers.clone(),
        subscription_identifiers: Vec::new(),
        content_type: message.content_type.clone(),
    });
    let mut out = bytes::BytesMut::new();
    publish.write(&mut out).expect("encode PUBLISH");
    out.to_vec()
}

/// The body and metadata (`content-type`, `correlation-id`, user properties) of a 5.0 PUBLISH.
fn mqtt_got(packet: &mqtt_client::Packet) -> Got {
    let mut frame = bytes::BytesMut::from(&mqtt_client::packet(packet.first, &packet.body)[..]);
    let publish = match mqttbytes::v5::read(&mut frame, usize::MAX) {
        Ok(mqttbytes::v5::Packet::Publish(publish)) => publish,
        other => panic!("MQTT subscriber got {other:?}"),
    };
    let mut meta = BTreeMap::new();
    if let Some(properties) = publish.properties {
        meta.extend(
            properties
                .content_type
                .map(|v| ("content-type".to_owned(), v)),
        );
        meta.extend(properties.correlation_data.map(|v| {
            (
                "correlation-id".to_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        }));
        meta.extend(properties.user_properties);
    }
    Got {
        body: publish.payload.to_vec(),
        meta,
    }
}

fn messageloop_got(message: grpc::g2::Message) -> Got {
    use ml_shared::payload::Data;
    let payload = message.payload.unwrap_or_default();
    let mut meta: BTreeMap<String, String> = message
        .metadata
        .map(|m| m.entries.into_iter().collect())
        .unwrap_or_default();
    if !payload.content_type.is_empty() {
        meta.insert("content-type".into(), payload.content_type.clone());
    }
    let (variant, body) = match payload.data {
        Some(Data::Text(text)) => ("text", text.into_bytes()),
        Some(Data::Binary(bytes)) => ("binary", bytes.to_vec()),
        Some(Data::Json(object)) => ("json", format!("{object:?}").into_bytes()),
        None => ("none", Vec::new()),
    };
    meta.insert("payload".into(), variant.into());
    Got { body, meta }
}

/// Topic statistics from `/api/topics`: (fanout subscribers, group members) of `topic`.
pub fn topic_stats(topics: &serde_json::Value, topic: &str) -> (u64, u64) {
    topics
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic"] == topic)
        .map_or((0, 0), |t| {
            (
                t["fanout_subscribers"].as_u64().unwrap_or(0),
                t["group"]["members"].as_u64().unwrap_or(0),
            )
        })
}

/// Waits until `topic` has `fanout` fanout subscribers and `members` anycast group members.
pub fn wait_subscribed(gateway: &Gatewayd, topic: &str, fanout: u64, members: u64) {
    gateway.wait_for(
        "/api/topics",
        &format!("{fanout} subscribers and {members} members on {topic}"),
        |topics| topic_stats(topics, topic) == (fanout, members),
    );
}

/// `gatewayd_drops_total{reason, protocol}`.
pub fn drops(gateway: &Gatewayd, reason: &str, proto: Protocol) -> f64 {
    gateway.metric(
        "gatewayd_drops_total",
        &[("reason", reason), ("protocol", proto.name())],
    )
}
