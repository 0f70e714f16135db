//! The uniform face the cross-protocol tests put on [`clients::Client`], the one client per protocol: a [`Pub`]
//! publishes an [`Outgoing`] (payload and whatever metadata its protocol carries) and a [`Sub`] subscribes to a
//! topic and receives `payload + metadata` under the names each protocol uses, whatever the protocol. The clients
//! are async and run on the caller's runtime through `block_on`, so admin calls (`wait_for`, `metric`) stay
//! outside it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clients::{Client, Credentials, Message};
pub use clients::{Outgoing, Protocol};
use tokio::runtime::Runtime;

use crate::support::Gatewayd;

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
    crate::support::multi_thread_runtime(2)
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

    /// The listener the client of `protocol` dials.
    pub fn of_protocol(&self, protocol: Protocol) -> SocketAddr {
        match protocol {
            Protocol::Stomp => self.stomp,
            Protocol::MessageLoop => self.messageloop_ws,
            Protocol::Goomerang => self.goomerang,
            Protocol::Loom => self.loom,
            Protocol::Chanserv => self.chanserv,
            Protocol::Mqtt => self.mqtt,
        }
    }
}

/// What a subscriber received: the body exactly as the client sees it once unwrapped, and its metadata under the
/// names the protocol uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub body: Vec<u8>,
    pub meta: BTreeMap<String, String>,
}

impl Got {
    /// `message` as a subscriber of `protocol` sees it: the STOMP headers but the ones the server owns, the
    /// MessageLoop metadata, content type and payload form (`payload`), the Goomerang headers and kind (not for a
    /// `BytesValue`-wrapped body), the Loom key and message id, the MQTT 5.0 content type, correlation data and
    /// user properties; chanserv carries nothing but the body.
    fn of(protocol: Protocol, message: Message) -> Got {
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        let mut put = |name: &str, value: Option<String>| {
            meta.extend(value.map(|v| (name.to_owned(), v)));
        };
        let key = message
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        match protocol {
            Protocol::Stomp => {
                put("content-type", message.content_type);
                put("JMSXGroupID", key);
                put("correlation-id", message.correlation_id);
                put("reply-to", message.reply_to);
            }
            Protocol::MessageLoop => {
                put("content-type", message.content_type);
                put("payload", message.payload_form.map(str::to_owned));
            }
            Protocol::Goomerang => {
                put("content-type", message.content_type);
                put("goomerang-kind", message.kind);
            }
            Protocol::Loom => {
                put("loom-key", key);
                put("loom-id", message.id);
            }
            Protocol::Chanserv => {}
            Protocol::Mqtt => {
                put("content-type", message.content_type);
                put("correlation-id", message.correlation_id);
            }
        }
        meta.extend(message.headers);
        Got {
            body: message.payload.to_vec(),
            meta,
        }
    }
}

/// The Goomerang kind the matrix publishes with (the client's).
pub const GOOMERANG_KIND: &str = clients::goomerang::RAW_KIND;
/// The Goomerang kind foreign bodies arrive as (`goomerang.wrapper_kind` default).
pub const BYTES_VALUE: &str = protocols::goomerang::bridge::WrapperKind::BYTES_VALUE;

/// Connects a client of `protocol` to its listener, anonymously.
fn connect(protocol: Protocol, addrs: &Addrs, rt: &Runtime) -> Client {
    let address = addrs.of_protocol(protocol).to_string();
    rt.block_on(Client::connect(protocol, &address, &Credentials::default()))
        .unwrap_or_else(|e| panic!("{protocol}: connect to {address}: {e}"))
}

/// One publishing client.
pub struct Pub(Client);

impl Pub {
    pub fn connect(protocol: Protocol, addrs: &Addrs, rt: &Runtime) -> Pub {
        Pub(connect(protocol, addrs, rt))
    }

    /// Publishes `message` on the canonical topic `topic` with whatever metadata the protocol can carry; a
    /// chanserv PUB must be answered `ok`.
    pub fn publish(&mut self, topic: &str, message: &Outgoing, rt: &Runtime) {
        let message = Outgoing {
            topic: topic.to_owned(),
            ..message.clone()
        };
        let client = &mut self.0;
        rt.block_on(async {
            client.publish(&message).await?;
            client.flush().await
        })
        .unwrap_or_else(|e| panic!("{}: publish on {topic}: {e}", client.protocol()));
    }

    /// Ends the publisher cleanly (Loom producers finish their streams and wait until gatewayd has read them, so
    /// nothing is cut short).
    pub fn finish(self, rt: &Runtime) {
        let protocol = self.0.protocol();
        rt.block_on(self.0.close())
            .unwrap_or_else(|e| panic!("{protocol}: close: {e}"));
    }
}

/// One subscribing client, subscribed to one topic.
pub struct Sub {
    client: Client,
    /// The topic, which a chanserv source announces (`topic=<topic>`).
    topic: String,
}

impl Sub {
    /// Connects and subscribes to `topic` (a STOMP `/topic/`, or the destination itself when it starts with `/`,
    /// a MessageLoop channel, a Goomerang topic, a Loom room, a chanserv selector, an MQTT filter). The caller
    /// waits for the subscription in `/api/topics` before publishing.
    pub fn subscribe(protocol: Protocol, addrs: &Addrs, topic: &str, rt: &Runtime) -> Sub {
        let mut client = connect(protocol, addrs, rt);
        rt.block_on(client.subscribe(topic))
            .unwrap_or_else(|e| panic!("{protocol}: subscribe to {topic}: {e}"));
        Sub {
            client,
            topic: topic.to_owned(),
        }
    }

    /// The next message; panics when none arrives within [`WAIT`].
    pub fn recv(&mut self, rt: &Runtime) -> Got {
        self.try_recv(rt, WAIT)
            .unwrap_or_else(|| panic!("{}: no message within {WAIT:?}", self.proto()))
    }

    /// The next message within `wait`, if any; panics when the subscriber is refused or closed.
    pub fn try_recv(&mut self, rt: &Runtime, wait: Duration) -> Option<Got> {
        let protocol = self.proto();
        let client = &mut self.client;
        let next = rt.block_on(async { tokio::time::timeout(wait, client.next_message()).await });
        let message = next
            .ok()?
            .unwrap_or_else(|e| panic!("{protocol} subscriber: {e}"));
        if protocol == Protocol::Chanserv {
            assert_eq!(message.topic.as_deref(), Some(self.topic.as_str()));
        }
        Some(Got::of(protocol, message))
    }

    pub fn proto(&self) -> Protocol {
        self.client.protocol()
    }
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
