//! MQTT 5.0 client over TCP, with `mqttbytes` packets: CONNECT (a client id unique to the connection, the token
//! as password, no keep-alive), publishes whose headers travel as user properties, content type and correlation id
//! as those properties, and whose key is left out (MQTT has none), and subscriptions confirmed by SUBACK. QoS 0 by default; [`MqttClient::at_least_once`] publishes
//! and subscribes at QoS 1, with at most the server's Receive Maximum publishes awaiting their PUBACK (the reader
//! task returns the window as PUBACKs arrive) and received QoS 1 publishes acknowledged by the reader task. Topics are gatewayd's dotted names, written as MQTT names (`orders.eu` is
//! `orders/eu`; `*` is `+`, `#` and `>` are `#`). A request carries a response topic of the connection's own
//! (`gatewayctl/replies/<128 random bits>`, subscribed before the first request) and its correlation data; a
//! reply goes to the request's response topic with the request's correlation data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use core_bus::Topic;
use mqttbytes::v5::{self, Packet, PublishProperties};
use mqttbytes::QoS;
use protocols::mqtt::bridge::empty_properties;
use protocols::mqtt::names::{topic_from_mqtt, topic_to_mqtt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

use super::{
    resolve, ClientError, Credentials, Inbox, InboxSender, Incoming, Message, Outgoing,
    HANDSHAKE_TIMEOUT,
};

/// Largest packet accepted from the server.
const MAX_PACKET: usize = 64 << 20;
/// QoS 1 publishes awaiting their PUBACK when the server's CONNACK names no smaller Receive Maximum.
const MAX_IN_FLIGHT: u16 = 1024;

/// Numbers the connections of this process, for unique client ids.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// The write half, shared with the reader task, which writes the PUBACKs of received QoS 1 publishes.
type Writer = Arc<Mutex<OwnedWriteHalf>>;

pub struct MqttClient {
    writer: Writer,
    inbox: Inbox,
    out: BytesMut,
    next_pkid: u16,
    qos: QoS,
    /// One permit per QoS 1 publish that may be in flight; the reader task adds one per PUBACK and closes it
    /// when the connection ends.
    window: Arc<Semaphore>,
    /// The window's size: the server's Receive Maximum, at most [`MAX_IN_FLIGHT`].
    window_size: u16,
    /// Where replies to this connection's requests go (an MQTT name).
    reply_topic: String,
    /// Whether `reply_topic` is subscribed yet.
    replies_subscribed: bool,
    next_request: u64,
}

fn wire(error: mqttbytes::Error) -> ClientError {
    ClientError::Protocol(format!("{error:?}"))
}

/// The MQTT name of a dotted topic.
fn mqtt_name(topic: &str) -> Result<String, ClientError> {
    topic_to_mqtt(&Topic::from_dotted(topic.as_bytes()))
        .ok_or_else(|| ClientError::Protocol(format!("{topic:?} has no MQTT name")))
}

/// The MQTT filter of a dotted pattern.
fn mqtt_filter(pattern: &str) -> String {
    pattern
        .split('.')
        .map(|token| match token {
            "*" => "+",
            "#" | ">" => "#",
            other => other,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The MQTT 5 CONNECT packet [`MqttClient::connect`] sends: a client id unique to this process and connection,
/// no keep-alive, `credentials.login` as user name and the token as password.
pub fn connect_packet(credentials: &Credentials) -> Result<BytesMut, ClientError> {
    let mut connect = v5::Connect::new(format!(
        "gatewayctl-{}-{}",
        std::process::id(),
        CONNECTIONS.fetch_add(1, Ordering::Relaxed)
    ));
    connect.keep_alive = 0;
    if let Some(token) = &credentials.token {
        connect.set_login(credentials.login.clone().unwrap_or_default(), token.clone());
    }
    let mut out = BytesMut::new();
    connect.write(&mut out).map_err(wire)?;
    Ok(out)
}

impl MqttClient {
    /// Connects; `credentials.token` is the CONNECT password and `credentials.login` its user name.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
    ) -> Result<MqttClient, ClientError> {
        let stream = TcpStream::connect(resolve(address).await?).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut out = connect_packet(credentials)?;
        writer.write_all(&out).await?;
        out.clear();
        let mut buf = BytesMut::new();
        let connack = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_packet(&mut reader, &mut buf))
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        let receive_maximum = match connack {
            Packet::ConnAck(ack) if ack.code == v5::ConnectReturnCode::Success => ack
                .properties
                .and_then(|properties| properties.receive_max)
                .unwrap_or(u16::MAX),
            Packet::ConnAck(ack) => {
                return Err(ClientError::Refused(format!("CONNACK {:?}", ack.code)))
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected CONNACK, got {other:?}"
                )))
            }
        };
        let window_size = receive_maximum.clamp(1, MAX_IN_FLIGHT);
        let window = Arc::new(Semaphore::new(usize::from(window_size)));
        let writer = Arc::new(Mutex::new(writer));
        let (tx, inbox) = Inbox::new();
        let reply_topic = format!("gatewayctl/replies/{:032x}", rand::random::<u128>());
        let reader = Reader {
            reader,
            buf,
            writer: writer.clone(),
            window: window.clone(),
            reply_topic: reply_topic.clone(),
        };
        tokio::spawn(reader.run(tx));
        Ok(MqttClient {
            writer,
            inbox,
            out,
            next_pkid: 1,
            qos: QoS::AtMostOnce,
            window,
            window_size,
            reply_topic,
            replies_subscribed: false,
            next_request: 0,
        })
    }

    /// Publishes and subscribes at QoS 1 from now on.
    pub fn at_least_once(mut self) -> MqttClient {
        self.qos = QoS::AtLeastOnce;
        self
    }

    /// The packet id after the last one.
    fn pkid(&mut self) -> u16 {
        let pkid = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        pkid
    }

    /// Buffers a PUBLISH; [`MqttClient::flush`] writes it. At QoS 1 it first waits for room in the window,
    /// writing out what is buffered if there is none.
    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let mut publish = v5::Publish::from_bytes(
            mqtt_name(&message.topic)?,
            self.qos,
            message.payload.clone(),
        );
        if self.qos == QoS::AtLeastOnce {
            let permit = match self.window.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    self.flush().await?;
                    self.window
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| ClientError::Closed)?
                }
            };
            permit.forget();
            publish.pkid = self.pkid();
        }
        if !message.headers.is_empty()
            || message.content_type.is_some()
            || message.correlation_id.is_some()
        {
            publish.properties = Some(PublishProperties {
                content_type: message.content_type.clone(),
                correlation_data: message
                    .correlation_id
                    .as_ref()
                    .map(|id| Bytes::from(id.clone().into_bytes())),
                user_properties: message.headers.clone(),
                ..empty_properties()
            });
        }
        publish.write(&mut self.out).map_err(wire)?;
        if self.out.len() >= 64 << 10 {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.writer.lock().await.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Subscribes (at the client's QoS) and waits for the SUBACK.
    pub async fn subscribe(&mut self, pattern: &str) -> Result<(), ClientError> {
        self.subscribe_filter(mqtt_filter(pattern)).await
    }

    async fn subscribe_filter(&mut self, filter: String) -> Result<(), ClientError> {
        let pkid = self.pkid();
        let mut subscribe = v5::Subscribe::new(filter, self.qos);
        subscribe.pkid = pkid;
        subscribe.write(&mut self.out).map_err(wire)?;
        self.flush().await?;
        self.inbox
            .confirmation(&pkid.to_string(), HANDSHAKE_TIMEOUT)
            .await
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.inbox.next_message().await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.inbox.next_with(|message| message.payload).await
    }

    /// Publishes `payload` to `topic` with this connection's response topic and a fresh correlation data, and
    /// waits for the reply.
    pub async fn request(
        &mut self,
        topic: &str,
        payload: Bytes,
        timeout: std::time::Duration,
    ) -> Result<Message, ClientError> {
        if !self.replies_subscribed {
            self.subscribe_filter(self.reply_topic.clone()).await?;
            self.replies_subscribed = true;
        }
        self.next_request += 1;
        let correlation = format!("req-{}-{}", std::process::id(), self.next_request);
        let mut publish = v5::Publish::from_bytes(mqtt_name(topic)?, QoS::AtMostOnce, payload);
        publish.properties = Some(PublishProperties {
            response_topic: Some(self.reply_topic.clone()),
            correlation_data: Some(Bytes::from(correlation.clone().into_bytes())),
            ..empty_properties()
        });
        publish.write(&mut self.out).map_err(wire)?;
        self.flush().await?;
        self.inbox.reply(&correlation, timeout).await
    }

    /// Publishes `payload` to the request's response topic with its correlation data.
    pub async fn reply(&mut self, request: &Message, payload: Bytes) -> Result<(), ClientError> {
        let Some(reply_to) = &request.reply_to else {
            return Err(ClientError::Protocol(
                "the request has no response topic".into(),
            ));
        };
        let mut publish = v5::Publish::from_bytes(reply_to.clone(), QoS::AtMostOnce, payload);
        publish.properties = Some(PublishProperties {
            correlation_data: request
                .correlation_id
                .as_ref()
                .map(|id| Bytes::from(id.clone().into_bytes())),
            ..empty_properties()
        });
        publish.write(&mut self.out).map_err(wire)?;
        self.flush().await
    }

    /// Waits for the PUBACKs of the QoS 1 publishes in flight (within [`HANDSHAKE_TIMEOUT`]), then DISCONNECT
    /// (normal) and close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.flush().await?;
        if self.qos == QoS::AtLeastOnce {
            tokio::time::timeout(
                HANDSHAKE_TIMEOUT,
                self.window.acquire_many(u32::from(self.window_size)),
            )
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))?
            .map_err(|_| ClientError::Closed)?
            .forget();
        }
        let mut writer = self.writer.lock().await;
        writer.write_all(&[0xE0, 0]).await?;
        writer.shutdown().await?;
        Ok(())
    }
}

/// Reads the next whole packet into `buf` and decodes it.
async fn next_packet(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Packet, ClientError> {
    loop {
        match v5::read(buf, MAX_PACKET) {
            Ok(packet) => return Ok(packet),
            Err(mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(error) => return Err(wire(error)),
        }
        if reader.read_buf(buf).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// The reader task of one connection.
struct Reader {
    reader: tokio::net::tcp::OwnedReadHalf,
    buf: BytesMut,
    writer: Writer,
    window: Arc<Semaphore>,
    /// A PUBLISH on this topic with correlation data is a reply.
    reply_topic: String,
}

impl Reader {
    /// Reads the server's packets into `tx` until the connection ends, then closes the window.
    async fn run(mut self, tx: InboxSender) {
        let mut acks = BytesMut::new();
        loop {
            let event = self.next(&mut acks).await;
            let stop = matches!(event, Some(Err(_)));
            let sent = match event {
                Some(event) => tx.send(event).await.is_ok(),
                None => true,
            };
            if !sent || stop {
                break;
            }
        }
        self.window.close();
    }

    /// The next event (`None` for a packet that makes none). The PUBACKs of received QoS 1 publishes collect in
    /// `acks` and are written whenever reading would wait for the socket.
    async fn next(&mut self, acks: &mut BytesMut) -> Option<Result<Incoming, ClientError>> {
        let packet = loop {
            match v5::read(&mut self.buf, MAX_PACKET) {
                Ok(packet) => break packet,
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(error) => return Some(Err(wire(error))),
            }
            if !acks.is_empty() {
                if let Err(error) = self.writer.lock().await.write_all(acks).await {
                    return Some(Err(error.into()));
                }
                acks.clear();
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return Some(Err(ClientError::Closed)),
                Ok(_) => {}
                Err(error) => return Some(Err(error.into())),
            }
        };
        match packet {
            Packet::Publish(publish) => {
                if publish.qos == QoS::AtLeastOnce {
                    if let Err(error) = v5::PubAck::new(publish.pkid).write(acks) {
                        return Some(Err(wire(error)));
                    }
                }
                if publish.topic != self.reply_topic {
                    return Some(Ok(Incoming::Message(to_message(publish))));
                }
                let message = to_message(publish);
                let correlation = message.correlation_id.clone()?;
                Some(Ok(Incoming::Reply {
                    correlation,
                    message,
                }))
            }
            Packet::PubAck(_) => {
                self.window.add_permits(1);
                None
            }
            Packet::SubAck(ack) => Some(Ok(
                match ack.return_codes.iter().find(|code| (**code as u8) >= 0x80) {
                    Some(refused) => Incoming::Refused(format!("SUBACK {refused:?}")),
                    None => Incoming::Confirmed(ack.pkid.to_string()),
                },
            )),
            Packet::Disconnect(disconnect) => Some(Err(ClientError::Refused(format!(
                "DISCONNECT {:?}",
                disconnect.reason_code
            )))),
            _ => None,
        }
    }
}

fn to_message(publish: v5::Publish) -> Message {
    let topic = topic_from_mqtt(&publish.topic)
        .ok()
        .and_then(|topic| topic.to_dotted())
        .or(Some(publish.topic.clone()));
    let properties = publish.properties.unwrap_or_else(empty_properties);
    Message {
        topic,
        payload: publish.payload,
        content_type: properties.content_type,
        headers: properties.user_properties,
        reply_to: properties.response_topic,
        correlation_id: properties
            .correlation_data
            .map(|data: Bytes| String::from_utf8_lossy(&data).into_owned()),
        ..Message::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_become_mqtt_names() {
        assert_eq!(mqtt_name("orders.eu").unwrap(), "orders/eu");
        assert_eq!(mqtt_filter("orders.*.>"), "orders/+/#");
        assert_eq!(mqtt_filter("a.#"), "a/#");
    }
}
