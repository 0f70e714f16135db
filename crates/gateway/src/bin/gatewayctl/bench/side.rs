//! The two ends of a benchmark run, over gatewayd (any protocol; MQTT at QoS 0 or 1, MessageLoop in protobuf or
//! JSON over WebSocket, or over gRPC), over another MQTT broker (gatewayd's MQTT client, for the same-run
//! comparison) or over NATS core (likewise): publishers that write stamped payloads and subscribers that read them.

use anyhow::Context as _;
use bytes::Bytes;
use clients::goomerang::GoomerangClient;
use clients::messageloop::{Encoding, MessageLoopClient};
use clients::messageloop_grpc::MessageLoopGrpcClient;
use clients::mqtt::MqttClient;
use clients::{Client, ClientError, Credentials, Outgoing, Protocol, Reading};
use futures::StreamExt;

/// Where a side connects. An MQTT broker other than gatewayd is a `Gateway` endpoint with the MQTT protocol:
/// the same client speaks to both.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Gateway(Gateway),
    /// MessageLoop over gRPC: one G2 stream per publisher and subscriber.
    MessageLoopGrpc {
        address: String,
        credentials: Credentials,
    },
    Nats {
        url: String,
    },
}

/// A gatewayd listener (or another MQTT broker) and how its clients speak.
#[derive(Clone, Debug)]
pub struct Gateway {
    pub protocol: Protocol,
    pub address: String,
    pub credentials: Credentials,
    /// MQTT only: publish and subscribe at QoS 1.
    pub at_least_once: bool,
    /// MessageLoop only: how envelopes are encoded.
    pub encoding: Encoding,
}

impl Gateway {
    /// A connected client, for the side's `role` (named in the error), reading its socket as `reading` says.
    async fn client(&self, role: &str, reading: Reading) -> anyhow::Result<Client> {
        let Gateway {
            protocol, address, ..
        } = self;
        connect(self, reading)
            .await
            .with_context(|| format!("{protocol} {role} at {address}"))
    }
}

impl Endpoint {
    /// The protocol's name; `messageloop-json` for MessageLoop in JSON.
    pub fn name(&self) -> String {
        match self {
            Endpoint::Gateway(Gateway {
                protocol: Protocol::MessageLoop,
                encoding: Encoding::Json,
                ..
            }) => "messageloop-json".to_owned(),
            Endpoint::Gateway(gateway) => gateway.protocol.to_string(),
            Endpoint::MessageLoopGrpc { .. } => "messageloop-grpc".to_owned(),
            Endpoint::Nats { .. } => "nats".to_owned(),
        }
    }

    /// Whether every subscriber gets every message (Loom rooms share them).
    pub fn is_fanout(&self) -> bool {
        match self {
            Endpoint::Gateway(gateway) => gateway.protocol.is_fanout(),
            Endpoint::MessageLoopGrpc { .. } | Endpoint::Nats { .. } => true,
        }
    }

    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        Ok(match self {
            Endpoint::Gateway(gateway) => {
                Publisher::Gateway(gateway.client("publisher", Reading::Task).await?)
            }
            Endpoint::MessageLoopGrpc {
                address,
                credentials,
            } => Publisher::Grpc(grpc(address, credentials, "publisher").await?),
            Endpoint::Nats { url } => Publisher::Nats(nats(url).await?),
        })
    }

    pub async fn subscriber(&self, topic: &str) -> anyhow::Result<Subscriber> {
        Ok(match self {
            Endpoint::Gateway(gateway) => {
                // A subscriber only receives: the MessageLoop and Goomerang clients read in its task.
                let mut client = gateway.client("subscriber", Reading::Direct).await?;
                client.subscribe(topic).await?;
                Subscriber::Gateway(client)
            }
            Endpoint::MessageLoopGrpc {
                address,
                credentials,
            } => {
                let mut client = grpc(address, credentials, "subscriber").await?;
                client.subscribe(topic).await?;
                Subscriber::Grpc(client)
            }
            Endpoint::Nats { url } => {
                let client = nats(url).await?;
                let subscriber = client.subscribe(topic.to_owned()).await?;
                client.flush().await?;
                Subscriber::Nats {
                    _client: client,
                    subscriber,
                }
            }
        })
    }
}

/// A MessageLoop gRPC client, for the side's `role` (named in the error).
async fn grpc(
    address: &str,
    credentials: &Credentials,
    role: &str,
) -> anyhow::Result<MessageLoopGrpcClient> {
    MessageLoopGrpcClient::connect(address, credentials)
        .await
        .with_context(|| format!("messageloop gRPC {role} at {address}"))
}

/// A client of `gateway.protocol`; an MQTT one at QoS 1 when `at_least_once`, a MessageLoop one in `encoding`.
/// `reading` is for the MessageLoop and Goomerang clients; the others read with a task.
async fn connect(gateway: &Gateway, reading: Reading) -> Result<Client, ClientError> {
    let (address, credentials) = (gateway.address.as_str(), &gateway.credentials);
    match gateway.protocol {
        Protocol::Mqtt if gateway.at_least_once => {
            let client = MqttClient::connect(address, credentials).await?;
            Ok(Client::Mqtt(client.at_least_once()))
        }
        Protocol::MessageLoop => Ok(Client::MessageLoop(
            MessageLoopClient::connect_reading(
                address,
                credentials,
                gateway.encoding,
                None,
                reading,
            )
            .await?,
        )),
        Protocol::Goomerang => Ok(Client::Goomerang(
            GoomerangClient::connect_reading(address, credentials, None, reading).await?,
        )),
        protocol => Client::connect(protocol, address, credentials).await,
    }
}

/// Messages async-nats buffers for one subscription before it drops them (in the client, not the server). The
/// reference comparison is nats.go with unlimited pending, which loses nothing all-out; async-nats's default
/// (65,536) drops when this process's reader falls behind a burst, which would charge the client's loss to
/// nats-server. A million messages covers every shape of docs/benchmarks.md.
const NATS_SUBSCRIPTION_BUFFER: usize = 1 << 20;

async fn nats(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .client_capacity(65_536)
        .subscription_capacity(NATS_SUBSCRIPTION_BUFFER)
        .connect(url)
        .await
        .with_context(|| format!("NATS at {url}"))
}

pub enum Publisher {
    Gateway(Client),
    Grpc(MessageLoopGrpcClient),
    Nats(async_nats::Client),
}

impl Publisher {
    pub async fn publish(&mut self, topic: &str, payload: Bytes) -> anyhow::Result<()> {
        let message = || Outgoing {
            topic: topic.to_owned(),
            payload: payload.clone(),
            ..Outgoing::default()
        };
        match self {
            Publisher::Gateway(client) => client.publish(&message()).await?,
            Publisher::Grpc(client) => client.publish(&message()).await?,
            Publisher::Nats(client) => client.publish(topic.to_owned(), payload).await?,
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Publisher::Gateway(client) => client.flush().await?,
            // The stream's writer sends what is queued as it comes.
            Publisher::Grpc(_) => {}
            Publisher::Nats(client) => client.flush().await?,
        }
        Ok(())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        match self {
            Publisher::Gateway(client) => client.close().await?,
            Publisher::Grpc(client) => client.close().await?,
            Publisher::Nats(client) => client.flush().await?,
        }
        Ok(())
    }
}

pub enum Subscriber {
    Gateway(Client),
    Grpc(MessageLoopGrpcClient),
    Nats {
        /// Held so the connection stays open.
        _client: async_nats::Client,
        subscriber: async_nats::Subscriber,
    },
}

impl Subscriber {
    /// The next payload; an error when the connection ends.
    pub async fn next(&mut self) -> anyhow::Result<Bytes> {
        match self {
            Subscriber::Gateway(client) => Ok(client.next_payload().await?),
            Subscriber::Grpc(client) => Ok(client.next_payload().await?),
            Subscriber::Nats { subscriber, .. } => Ok(subscriber
                .next()
                .await
                .context("NATS subscription ended")?
                .payload),
        }
    }

    /// Says goodbye, so the connection ends now rather than when the server closes it (the client's reader task
    /// would otherwise keep the socket open, and a run against another server would find no file descriptors).
    pub async fn close(self) {
        match self {
            Subscriber::Gateway(client) => {
                let _ = client.close().await;
            }
            Subscriber::Grpc(client) => {
                let _ = client.close().await;
            }
            Subscriber::Nats { .. } => {}
        }
    }
}
