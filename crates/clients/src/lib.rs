//! One async client per protocol gatewayd speaks, built on the adapters' codecs (`protocols`), for `gatewayctl`
//! and the cross-protocol tests: connect, publish, subscribe and receive, and request/reply where the protocol
//! lets a client receive a reply. Each protocol's module owns its wire details; this crate root owns the shared
//! types ([`Protocol`], [`Credentials`], [`Outgoing`], [`Message`], [`ClientError`]) and [`Client`], which
//! dispatches to the protocol's client.
//!
//! A client reads its socket in one of two ways ([`Reading`]): by default one reader task turns the server's frames
//! into [`Incoming`] events on a bounded channel, so a publisher keeps draining acknowledgements while it writes
//! and a subscriber receives in order; the MessageLoop and Goomerang clients can instead read in the task that asks
//! for the next event (a subscriber that only receives, such as each of a benchmark's many subscribers).

pub mod chanserv;
mod credentials;
pub mod goomerang;
mod inbox;
pub mod loom;
pub mod messageloop;
pub mod messageloop_grpc;
pub mod mqtt;
pub mod stomp;
pub mod stomp_connect;
pub mod tls;
mod ws;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;

pub use credentials::Credentials;
pub(crate) use inbox::{send_until_error, Batches, Event};
pub use inbox::{Inbox, InboxGone, InboxSender, Incoming, Reading};

/// How long a handshake or a confirmation may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A protocol a client speaks: every [`core_bus::Protocol`] but the bus's own `Internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Stomp,
    MessageLoop,
    Goomerang,
    Loom,
    Chanserv,
    Mqtt,
}

impl Protocol {
    pub const ALL: [Protocol; 6] = [
        Protocol::Stomp,
        Protocol::MessageLoop,
        Protocol::Goomerang,
        Protocol::Loom,
        Protocol::Chanserv,
        Protocol::Mqtt,
    ];

    /// The name used on the command line and in `/api/listeners`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Stomp => "stomp",
            Protocol::MessageLoop => "messageloop",
            Protocol::Goomerang => "goomerang",
            Protocol::Loom => "loom",
            Protocol::Chanserv => "chanserv",
            Protocol::Mqtt => "mqtt",
        }
    }

    /// The name in prose and tables (the README's matrix).
    pub fn title(self) -> &'static str {
        match self {
            Protocol::Stomp => "STOMP",
            Protocol::MessageLoop => "MessageLoop",
            Protocol::Goomerang => "Goomerang",
            Protocol::Loom => "Loom",
            Protocol::Chanserv => "chanserv",
            Protocol::Mqtt => "MQTT",
        }
    }

    /// The address of the listener a client of this protocol dials when none is given.
    pub fn default_address(self) -> &'static str {
        match self {
            Protocol::Stomp => "127.0.0.1:61613",
            Protocol::MessageLoop => "127.0.0.1:9080",
            Protocol::Goomerang => "127.0.0.1:8080",
            Protocol::Loom => "127.0.0.1:4242",
            Protocol::Chanserv => "127.0.0.1:5555",
            Protocol::Mqtt => "127.0.0.1:1883",
        }
    }

    /// The `/api/listeners` name of the listener this client dials.
    pub fn listener(self) -> &'static str {
        match self {
            Protocol::Stomp => "stomp.tcp",
            Protocol::MessageLoop => "messageloop.ws",
            Protocol::Goomerang => "goomerang.ws",
            Protocol::Loom => "loom.quic",
            Protocol::Chanserv => "chanserv.tcp",
            Protocol::Mqtt => "mqtt.tcp",
        }
    }

    /// Whether a subscriber receives every message (fanout) rather than sharing them with the other
    /// subscribers of the topic (Loom rooms are anycast groups).
    pub fn is_fanout(self) -> bool {
        self != Protocol::Loom
    }

    /// Whether this protocol's client can send a request and receive its reply.
    pub fn can_request(self) -> bool {
        matches!(
            self,
            Protocol::Stomp | Protocol::MessageLoop | Protocol::Goomerang | Protocol::Mqtt
        )
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!("unknown protocol {text:?} (stomp, messageloop, goomerang, loom, chanserv, mqtt)")
            })
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Topic in gatewayd's dotted form (`orders.eu`); STOMP also takes a full destination (`/queue/orders`).
    pub topic: String,
    pub payload: Bytes,
    /// Affinity key (STOMP `JMSXGroupID`, the Loom key); ignored where the protocol has none.
    pub key: Option<Bytes>,
    /// Content type (STOMP `content-type`, MessageLoop `Payload.content_type`, MQTT 5.0 content type); ignored
    /// where the protocol has none (Goomerang, Loom, chanserv).
    pub content_type: Option<String>,
    /// Correlation id (STOMP `correlation-id`, MQTT 5.0 correlation data); ignored where the protocol has none.
    pub correlation_id: Option<String>,
    /// User headers; ignored where the protocol carries none (Loom, chanserv).
    pub headers: Vec<(String, String)>,
}

/// A received message with the metadata its protocol carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The topic, channel or destination it arrived on, when the protocol says.
    pub topic: Option<String>,
    pub payload: Bytes,
    pub key: Option<Bytes>,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Where a reply goes (STOMP `reply-to`), for responders.
    pub reply_to: Option<String>,
    pub correlation_id: Option<String>,
    /// The server's id of the message where the protocol shows one (STOMP `message-id`, the Loom message id).
    pub id: Option<String>,
    /// The message type where the protocol names one: the Goomerang kind (`None` for a body gatewayd wrapped as
    /// `google.protobuf.BytesValue`, which the client unwraps).
    pub kind: Option<String>,
    /// The form the payload took where the protocol offers several: MessageLoop's `text`, `binary` or `json`
    /// data.
    pub payload_form: Option<&'static str>,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_websockets::Error),
    #[error("quic: {0}")]
    Quic(String),
    #[error("bad address {0:?}")]
    Address(String),
    #[error("credentials: {0}")]
    Credentials(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("unexpected data from the server: {0}")]
    Protocol(String),
    #[error("cannot encode a message: {0}")]
    Encode(String),
    #[error("the connection closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{protocol} cannot {what}")]
    Unsupported {
        protocol: Protocol,
        what: &'static str,
    },
}

/// A connection to gatewayd over one protocol.
pub enum Client {
    Stomp(stomp::StompClient),
    MessageLoop(messageloop::MessageLoopClient),
    Goomerang(goomerang::GoomerangClient),
    Loom(loom::LoomClient),
    Chanserv(chanserv::ChanservClient),
    Mqtt(mqtt::MqttClient),
}

impl Client {
    /// Connects to `address` (`host:port`) and completes the protocol's handshake, presenting `credentials`
    /// (Goomerang: a bearer token on the upgrade; chanserv: an `AUTH` line in front of every request).
    pub async fn connect(
        protocol: Protocol,
        address: &str,
        credentials: &Credentials,
    ) -> Result<Client, ClientError> {
        Ok(match protocol {
            Protocol::Stomp => {
                Client::Stomp(stomp::StompClient::connect(address, credentials).await?)
            }
            Protocol::MessageLoop => Client::MessageLoop(
                messageloop::MessageLoopClient::connect(
                    address,
                    credentials,
                    messageloop::Encoding::Protobuf,
                    None,
                )
                .await?,
            ),
            Protocol::Goomerang => Client::Goomerang(
                goomerang::GoomerangClient::connect(address, credentials, None).await?,
            ),
            Protocol::Loom => Client::Loom(loom::LoomClient::connect(address, credentials).await?),
            Protocol::Chanserv => {
                Client::Chanserv(chanserv::ChanservClient::connect(address, credentials).await?)
            }
            Protocol::Mqtt => Client::Mqtt(mqtt::MqttClient::connect(address, credentials).await?),
        })
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Client::Stomp(_) => Protocol::Stomp,
            Client::MessageLoop(_) => Protocol::MessageLoop,
            Client::Goomerang(_) => Protocol::Goomerang,
            Client::Loom(_) => Protocol::Loom,
            Client::Chanserv(_) => Protocol::Chanserv,
            Client::Mqtt(_) => Protocol::Mqtt,
        }
    }

    /// Publishes one message. Writes may be buffered until [`Client::flush`].
    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        match self {
            Client::Stomp(c) => c.publish(message).await,
            Client::MessageLoop(c) => c.publish(message).await,
            Client::Goomerang(c) => c.publish(message).await,
            Client::Loom(c) => c.publish(message).await,
            Client::Chanserv(c) => c.publish(message).await,
            Client::Mqtt(c) => c.publish(message).await,
        }
    }

    /// Writes out whatever [`Client::publish`] buffered.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        match self {
            Client::Stomp(c) => c.flush().await,
            Client::MessageLoop(c) => c.flush().await,
            Client::Goomerang(c) => c.flush().await,
            Client::Loom(c) => c.flush().await,
            Client::Chanserv(_) => Ok(()),
            Client::Mqtt(c) => c.flush().await,
        }
    }

    /// Subscribes to `topic`; messages arrive through [`Client::next_message`]. Returns once gatewayd has
    /// confirmed the subscription where the protocol confirms it.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        match self {
            Client::Stomp(c) => c.subscribe(topic).await,
            Client::MessageLoop(c) => c.subscribe(topic).await,
            Client::Goomerang(c) => c.subscribe(topic).await,
            Client::Loom(c) => c.subscribe(topic).await,
            Client::Chanserv(c) => c.subscribe(topic).await,
            Client::Mqtt(c) => c.subscribe(topic).await,
        }
    }

    /// The payload of the next message of any subscription.
    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        match self {
            Client::Stomp(c) => c.next_payload().await,
            Client::MessageLoop(c) => c.next_payload().await,
            Client::Goomerang(c) => c.next_payload().await,
            Client::Loom(c) => c.next_payload().await,
            Client::Chanserv(c) => c.next_payload().await,
            Client::Mqtt(c) => c.next_payload().await,
        }
    }

    /// The next message of any subscription.
    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        match self {
            Client::Stomp(c) => c.next_message().await,
            Client::MessageLoop(c) => c.next_message().await,
            Client::Goomerang(c) => c.next_message().await,
            Client::Loom(c) => c.next_message().await,
            Client::Chanserv(c) => c.next_message().await,
            Client::Mqtt(c) => c.next_message().await,
        }
    }

    /// The received messages as a stream, which ends after the first error (a closed connection included).
    pub fn into_messages(self) -> impl futures::Stream<Item = Result<Message, ClientError>> {
        futures::stream::unfold(Some(self), |client| async move {
            let mut client = client?;
            match client.next_message().await {
                Ok(message) => Some((Ok(message), Some(client))),
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    /// Sends a request and waits for its reply. `target` is the STOMP destination or topic, the
    /// MessageLoop `channel.method`, or the Goomerang message kind.
    pub async fn request(
        &mut self,
        target: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        match self {
            Client::Stomp(c) => c.request(target, payload, timeout).await,
            Client::MessageLoop(c) => c.request(target, payload, timeout).await,
            Client::Goomerang(c) => c.request(target, payload, timeout).await,
            Client::Mqtt(c) => c.request(target, payload, timeout).await,
            Client::Loom(_) | Client::Chanserv(_) => Err(ClientError::Unsupported {
                protocol: self.protocol(),
                what: "receive replies",
            }),
        }
    }

    /// Answers `request` (a message that carries `reply-to`) with `payload`. Only STOMP (`reply-to`) and MQTT (the
    /// response topic) see it.
    pub async fn reply(&mut self, request: &Message, payload: Bytes) -> Result<(), ClientError> {
        match self {
            Client::Stomp(c) => c.reply(request, payload).await,
            Client::Mqtt(c) => c.reply(request, payload).await,
            _ => Err(ClientError::Unsupported {
                protocol: self.protocol(),
                what: "see reply-to",
            }),
        }
    }

    /// Says goodbye where the protocol has a goodbye, and closes.
    pub async fn close(self) -> Result<(), ClientError> {
        match self {
            Client::Stomp(c) => c.close().await,
            Client::MessageLoop(c) => c.close().await,
            Client::Goomerang(c) => c.close().await,
            Client::Loom(c) => c.close().await,
            Client::Chanserv(c) => c.close().await,
            Client::Mqtt(c) => c.close().await,
        }
    }
}

/// Resolves `host:port` (names allowed) to the first socket address.
pub async fn resolve(address: &str) -> Result<std::net::SocketAddr, ClientError> {
    tokio::net::lookup_host(address)
        .await
        .map_err(|_| ClientError::Address(address.to_owned()))?
        .next()
        .ok_or_else(|| ClientError::Address(address.to_owned()))
}
