//! MessageLoop G2 client over WebSocket, in either [`Encoding`]: protobuf in binary frames (subprotocol
//! `messageloop+proto`) or the proto3 JSON mapping in text frames (`messageloop+json`), one envelope per frame. It
//! uses the generated `messageloop.client.v2` messages: Connect/Connected, Subscribe/SubscribeAck, Publish (acks
//! are drained by the reader), Publication, RpcRequest/RpcReply, and a Ping while waiting so the server's idle
//! timeout never fires. In protobuf, a publication or a publish ack is read short (`lean`). Payloads are sent as
//! `binary` (base64 in JSON); `json` and `text` deliveries become bytes.

mod lean;

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, SinkExt};
use prost::Message as _;
use protocols::messageloop::codec::publication_read::{
    self, PlainBody, PlainOutbound, PlainPayload,
};
use protocols::messageloop::codec::{direct_pb, json, publish_json};
use protocols::messageloop::pb::messageloop::client::v2 as pb;
use protocols::messageloop::pb::messageloop::shared::v2 as shared;
use tokio::time::Sleep;
use tokio_rustls::TlsConnector;
use tokio_websockets::{CloseCode, Message as WsMessage};

use super::ws::{self, Sink, WsError};
use super::{
    ClientError, Credentials, Event, Inbox, Incoming, Message, Outgoing, Reading, HANDSHAKE_TIMEOUT,
};

use pb::inbound_message::Envelope as In;
use pb::outbound_message::Envelope as Out;

/// How often a waiting client pings (the server's default idle timeout is 300 s).
const PING_EVERY: Duration = Duration::from_secs(60);
/// Frames fed before a flush is forced.
const FEED_HIGH_WATER: usize = 64;

/// How envelopes travel on the WebSocket; the server answers in the same encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf in binary frames (subprotocol `messageloop+proto`).
    Protobuf,
    /// The proto3 JSON mapping in text frames (subprotocol `messageloop+json`).
    Json,
}

impl Encoding {
    fn subprotocol(self) -> &'static str {
        match self {
            Encoding::Protobuf => "messageloop+proto",
            Encoding::Json => "messageloop+json",
        }
    }

    /// One envelope as one frame.
    fn frame(self, message: &pb::InboundMessage) -> Result<WsMessage, ClientError> {
        Ok(match self {
            Encoding::Protobuf => WsMessage::binary(message.encode_to_vec()),
            Encoding::Json => WsMessage::text(
                json::to_string(message).map_err(|error| ClientError::Encode(error.to_string()))?,
            ),
        })
    }
}

pub struct MessageLoopClient {
    sink: Sink,
    encoding: Encoding,
    inbox: Inbox,
    next_id: u64,
    pending: usize,
    /// When to ping next, made at the first wait and kept for the client's life: a timer made for each wait was
    /// registered and removed under the runtime's timer lock for every message a subscriber took.
    ping: Option<Pin<Box<Sleep>>>,
}

impl MessageLoopClient {
    /// Connects in `encoding` (over TLS with `tls`) and sends Connect with `credentials.token` as its `token`
    /// (the login is not carried: gatewayd passes `client_id` as the login). A reader task reads the socket.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
        encoding: Encoding,
        tls: Option<&TlsConnector>,
    ) -> Result<MessageLoopClient, ClientError> {
        Self::connect_reading(address, credentials, encoding, tls, Reading::Task).await
    }

    /// [`MessageLoopClient::connect`], the socket read as `reading` says.
    pub async fn connect_reading(
        address: &str,
        credentials: &Credentials,
        encoding: Encoding,
        tls: Option<&TlsConnector>,
        reading: Reading,
    ) -> Result<MessageLoopClient, ClientError> {
        let subprotocol = Some(encoding.subprotocol());
        let (sink, stream) = ws::dial(address, "/ws", subprotocol, None, tls).await?;
        let inbox = Inbox::reading(ws::batches(stream, events), reading);
        let mut client = MessageLoopClient {
            sink,
            encoding,
            inbox,
            next_id: 0,
            pending: 0,
            ping: None,
        };
        let id = client.send(connect_envelope(credentials)).await?;
        client.flush().await?;
        client.inbox.confirmation(&id, HANDSHAKE_TIMEOUT).await?;
        Ok(client)
    }

    /// The id of the next envelope.
    fn take_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Feeds one frame, flushing every [`FEED_HIGH_WATER`] frames.
    async fn feed(&mut self, frame: WsMessage) -> Result<(), ClientError> {
        self.sink.feed(frame).await?;
        self.pending += 1;
        if self.pending >= FEED_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    /// Feeds one envelope and returns its id.
    async fn send(&mut self, envelope: In) -> Result<String, ClientError> {
        let id = self.take_id();
        let message = pb::InboundMessage {
            id: id.clone(),
            time: 0,
            envelope: Some(envelope),
        };
        self.feed(self.encoding.frame(&message)?).await?;
        Ok(id)
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        if message.headers.is_empty() {
            // Written directly: the bytes the JSON mapping or prost gives for the envelope built below.
            let id = self.take_id();
            let content_type = message.content_type.as_deref().unwrap_or("");
            let (topic, payload) = (&message.topic, &message.payload);
            let frame = match self.encoding {
                Encoding::Json => {
                    WsMessage::text(publish_json::write(&id, topic, content_type, payload))
                }
                Encoding::Protobuf => {
                    WsMessage::binary(direct_pb::publish(&id, topic, content_type, payload))
                }
            };
            return self.feed(frame).await;
        }
        self.send(In::Publish(pb::Publish {
            channel: message.topic.clone(),
            payload: Some(binary_payload(
                message.payload.clone(),
                message.content_type.clone(),
            )),
            metadata: metadata(&message.headers),
            ..Default::default()
        }))
        .await
        .map(drop)
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.pending = 0;
        Ok(self.sink.flush().await?)
    }

    /// Subscribes (ephemeral: no presence tracking) and waits for the SubscribeAck.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let id = self.send(subscribe_envelope(topic)).await?;
        self.flush().await?;
        self.inbox.confirmation(&id, HANDSHAKE_TIMEOUT).await
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.next_with(std::convert::identity).await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.next_with(|message| message.payload).await
    }

    /// What `pick` takes from the next message, pinging gatewayd every [`PING_EVERY`] while it waits (the
    /// server's idle timeout counts what the client sends, not what it receives).
    async fn next_with<T>(&mut self, pick: fn(Message) -> T) -> Result<T, ClientError> {
        // One already received needs no look at the timer.
        if let Some(message) = self.inbox.next_with(pick).now_or_never() {
            return message;
        }
        loop {
            let ping = self
                .ping
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(PING_EVERY)));
            tokio::select! {
                message = self.inbox.next_with(pick) => return message,
                () = ping.as_mut() => ping.as_mut().reset(tokio::time::Instant::now() + PING_EVERY),
            }
            self.send(In::Ping(pb::Ping {})).await?;
            self.flush().await?;
        }
    }

    /// `rpc_request` on `target` = `<channel>.<method>` (split at the last dot); the reply is the
    /// `rpc_reply` whose `request_id` is the request's id.
    pub async fn request(
        &mut self,
        target: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let (channel, method) = target.rsplit_once('.').ok_or_else(|| {
            ClientError::Address(format!(
                "{target} (MessageLoop requests go to <channel>.<method>)"
            ))
        })?;
        let id = self
            .send(In::RpcRequest(pb::RpcRequest {
                channel: channel.into(),
                method: method.into(),
                payload: Some(binary_payload(payload, None)),
                metadata: None,
            }))
            .await?;
        self.flush().await?;
        self.inbox.reply(&id, timeout).await
    }

    /// Sends a close frame and waits (within [`HANDSHAKE_TIMEOUT`]) until the server has closed too, so it has
    /// read every publish sent before: closing the socket with acknowledgements still unread would reset the
    /// connection and lose what the server had not read yet.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.sink.send(WsMessage::close(None, "")).await?;
        let closed = async { while self.inbox.next().await.is_ok() {} };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, closed)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))
    }
}

/// The Connect envelope of a gatewayctl client: `credentials.token` as its `token` (the login is not carried:
/// gatewayd passes `client_id` as the login).
pub(crate) fn connect_envelope(credentials: &Credentials) -> In {
    In::Connect(pb::Connect {
        client_id: format!("gatewayctl-{}", std::process::id()),
        client_type: "gatewayctl".into(),
        version: "2.0.0".into(),
        token: credentials.token.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// The Subscribe envelope of one ephemeral subscription (no presence tracking) to `topic`.
pub(crate) fn subscribe_envelope(topic: &str) -> In {
    In::Subscribe(pb::Subscribe {
        subscriptions: vec![pb::Subscription {
            channel: topic.into(),
            ephemeral: true,
            ..Default::default()
        }],
    })
}

pub(crate) fn binary_payload(bytes: Bytes, content_type: Option<String>) -> shared::Payload {
    shared::Payload {
        content_type: content_type.unwrap_or_default(),
        data: Some(shared::payload::Data::Binary(bytes)),
    }
}

pub(crate) fn metadata(headers: &[(String, String)]) -> Option<shared::Metadata> {
    (!headers.is_empty()).then(|| shared::Metadata {
        entries: headers.iter().cloned().collect::<HashMap<_, _>>(),
    })
}

/// The events of one batch of messages from the server.
fn events(batch: Vec<Result<WsMessage, WsError>>) -> Vec<Event> {
    let mut events = Vec::with_capacity(batch.len());
    for next in batch {
        match next {
            Ok(frame) => frame_events(frame, &mut events),
            Err(error) => events.push(Err(error.into())),
        }
    }
    events
}

/// Appends what one frame from the server says: an envelope in protobuf (binary frame) or JSON (text frame), or the
/// close.
fn frame_events(frame: WsMessage, events: &mut Vec<Event>) {
    if frame.is_binary() {
        return binary_events(frame.into_payload().into(), events);
    }
    if let Some(closed) = close_error(&frame) {
        return events.push(Err(closed));
    }
    let Some(text) = frame.as_text() else { return };
    // A plain publication or publish ack is read directly, each message's channel and payload copied out of the
    // frame; whatever else the server sends, through the JSON mapping.
    let decoded = match publication_read::read(text) {
        Some(PlainOutbound {
            body: PlainBody::Publication(messages),
            ..
        }) => {
            return events.extend(messages.into_iter().map(|m| {
                delivered(
                    m.channel.to_owned(),
                    m.payload.map(PlainPayload::generated),
                    Vec::new(),
                )
            }))
        }
        Some(PlainOutbound {
            body: PlainBody::PublishAck { .. },
            ..
        }) => return,
        None => json::from_slice::<pb::OutboundMessage>(text.as_bytes()).map_err(|e| e.to_string()),
    };
    match decoded {
        Ok(message) => to_incoming(message, events),
        Err(error) => events.push(Err(ClientError::Protocol(format!("bad envelope: {error}")))),
    }
}

/// The close the server sent, as the client's error: its code and reason, or [`ClientError::Closed`] for a close
/// without a code.
fn close_error(frame: &WsMessage) -> Option<ClientError> {
    frame.as_close().map(|(code, reason)| {
        if code == CloseCode::NO_STATUS_RECEIVED {
            ClientError::Closed
        } else {
            ClientError::Refused(format!("closed {}: {reason}", u16::from(code)))
        }
    })
}

/// Appends what one envelope from the server in protobuf means: a publication or a publish ack is read short;
/// whatever else the server sends, in full.
pub(crate) fn binary_events(bytes: Bytes, events: &mut Vec<Event>) {
    match lean::read(&bytes) {
        lean::Read::Publication(messages) => events.extend(messages.into_iter().map(|m| {
            let (channel, payload, headers) = m.into_parts();
            delivered(channel, payload, headers)
        })),
        lean::Read::PublishAck => {}
        lean::Read::Other => match pb::OutboundMessage::decode(bytes) {
            Ok(message) => to_incoming(message, events),
            Err(error) => events.push(Err(ClientError::Protocol(format!("bad envelope: {error}")))),
        },
    }
}

/// Appends what one envelope from the server means to the client (nothing for acks it does not wait for).
fn to_incoming(message: pb::OutboundMessage, events: &mut Vec<Event>) {
    let id = message.id;
    let incoming = match message.envelope {
        Some(Out::Connected(_)) | Some(Out::SubscribeAck(_)) => Incoming::Confirmed(id),
        Some(Out::Publication(publication)) => {
            let messages = publication.messages.into_iter();
            return events.extend(
                messages.map(|m| delivered(m.channel, m.payload, metadata_headers(m.metadata))),
            );
        }
        Some(Out::RpcReply(reply)) => match reply.error {
            Some(error) => Incoming::Refused(error_text(&error)),
            None => Incoming::Reply {
                correlation: reply.request_id,
                message: received(None, reply.payload, metadata_headers(reply.metadata)),
            },
        },
        Some(Out::Error(error)) => Incoming::Refused(error_text(&error)),
        _ => return,
    };
    events.push(Ok(incoming));
}

fn error_text(error: &shared::Error) -> String {
    format!("{} {}", error.code, error.message)
}

/// The event of one message of a publication.
fn delivered(
    channel: String,
    payload: Option<shared::Payload>,
    headers: Vec<(String, String)>,
) -> Event {
    Ok(Incoming::Message(received(Some(channel), payload, headers)))
}

/// A message's metadata entries as headers, sorted by name.
fn metadata_headers(metadata: Option<shared::Metadata>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = metadata
        .map(|m| m.entries.into_iter().collect())
        .unwrap_or_default();
    headers.sort();
    headers
}

/// `headers` sorted by name.
fn received(
    channel: Option<String>,
    payload: Option<shared::Payload>,
    headers: Vec<(String, String)>,
) -> Message {
    let (content_type, form, bytes) = match payload {
        Some(payload) => {
            let (form, bytes) = match payload.data {
                Some(shared::payload::Data::Binary(bytes)) => (Some("binary"), bytes),
                Some(shared::payload::Data::Text(text)) => (Some("text"), Bytes::from(text)),
                Some(shared::payload::Data::Json(object)) => (
                    Some("json"),
                    Bytes::from(struct_to_json(object).to_string()),
                ),
                None => (None, Bytes::new()),
            };
            let content_type = Some(payload.content_type).filter(|c| !c.is_empty());
            (content_type, form, bytes)
        }
        None => (None, None, Bytes::new()),
    };
    Message {
        topic: channel,
        payload: bytes,
        content_type,
        headers,
        payload_form: form,
        ..Message::default()
    }
}

fn struct_to_json(object: prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        object
            .fields
            .into_iter()
            .map(|(k, v)| (k, value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.into_iter().map(value_to_json).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_replies_and_errors_become_events() {
        let publication = pb::OutboundMessage {
            id: String::new(),
            time: 0,
            envelope: Some(Out::Publication(pb::Publication {
                messages: vec![pb::Message {
                    channel: "a.b".into(),
                    payload: Some(shared::Payload {
                        content_type: "text/plain".into(),
                        data: Some(shared::payload::Data::Text("hi".into())),
                    }),
                    ..Default::default()
                }],
            })),
        };
        let incoming = |message| {
            let mut events = Vec::new();
            to_incoming(message, &mut events);
            events
        };
        match incoming(publication).as_slice() {
            [Ok(Incoming::Message(m))] => {
                assert_eq!(m.topic.as_deref(), Some("a.b"));
                assert_eq!(&m.payload[..], b"hi");
            }
            other => panic!("{other:?}"),
        }
        let error = pb::OutboundMessage {
            id: "3".into(),
            time: 0,
            envelope: Some(Out::Error(shared::Error {
                code: "NO_PROXY".into(),
                message: "no responder".into(),
                ..Default::default()
            })),
        };
        assert!(matches!(
            incoming(error).as_slice(),
            [Ok(Incoming::Refused(text))] if text.starts_with("NO_PROXY")
        ));
    }

    #[test]
    fn json_frames_are_text_with_binary_payloads_in_base64() {
        let publish = pb::InboundMessage {
            id: "1".into(),
            time: 0,
            envelope: Some(In::Publish(pb::Publish {
                channel: "a.b".into(),
                payload: Some(binary_payload(Bytes::from_static(b"\0\xffhi"), None)),
                ..Default::default()
            })),
        };
        let frame = Encoding::Json.frame(&publish).unwrap();
        let Some(text) = frame.as_text() else {
            panic!("{frame:?}")
        };
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["publish"]["payload"]["binary"], "AP9oaQ==");
        assert_eq!(
            json::from_slice::<pb::InboundMessage>(text.as_bytes()).unwrap(),
            publish
        );

        let delivery = r#"{"id":"x","publication":{"messages":[{"channel":"a.b","payload":{"binary":"AP9oaQ=="}}]}}"#;
        let events = |frame| {
            let mut events = Vec::new();
            frame_events(frame, &mut events);
            events
        };
        match events(WsMessage::text(delivery)).as_slice() {
            [Ok(Incoming::Message(m))] => {
                assert_eq!(m.topic.as_deref(), Some("a.b"));
                assert_eq!(&m.payload[..], b"\0\xffhi");
                assert_eq!(m.payload_form, Some("binary"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            events(WsMessage::text("{")).as_slice(),
            [Err(ClientError::Protocol(_))]
        ));
    }

    #[test]
    fn protobuf_frames_are_binary() {
        let ping = pb::InboundMessage {
            id: "2".into(),
            time: 0,
            envelope: Some(In::Ping(pb::Ping {})),
        };
        let frame = Encoding::Protobuf.frame(&ping).unwrap();
        assert!(frame.is_binary(), "{frame:?}");
        let bytes = Bytes::from(frame.into_payload());
        assert_eq!(pb::InboundMessage::decode(bytes).unwrap(), ping);
    }

    #[test]
    fn json_payloads_come_back_as_json_text() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            "n".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(2.0)),
            },
        );
        let json = struct_to_json(prost_types::Struct { fields });
        assert_eq!(json, serde_json::json!({"n": 2.0}));
    }
}
