//! Loom v4 client over raw QUIC (ALPN `loom/1`), with gatewayd's Loom codec for the wire format. Each room a
//! client publishes to gets one producer stream (hello, then messages); [`LoomClient::subscribe`] opens a
//! consumer stream whose reader task acknowledges every message after handing it on (Loom is stop-and-wait:
//! the server sends the next message only after the ack). Rooms are anycast groups: subscribers of one room
//! share its messages.
//!
//! Every stream's hello carries the token of the client's [`Credentials`]. Loom has no error frame: gatewayd refuses
//! a stream (bad token, room not allowed) with FIN and STOP_SENDING, which becomes [`ClientError::Refused`] when
//! the client notices it: a consumer always does, a producer only when a write fails (a short producer stream
//! may be read whole before it is refused, and then looks accepted).
//!
//! gatewayd's default Loom certificate is a fresh self-signed one, so the client accepts any server
//! certificate, as Loom clients with `InsecureSkipVerify` do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use protocols::loom::{
    ConsumerFrame, ConsumerKey, Delivery, Hello, Limits, MessageDecoder, MessageEvent, Role,
};

use super::tls;
use super::{
    resolve, ClientError, Credentials, Inbox, InboxSender, Incoming, Message, Outgoing,
    HANDSHAKE_TIMEOUT,
};

/// Buffered producer bytes that trigger a write before [`LoomClient::flush`].
const WRITE_HIGH_WATER: usize = 64 << 10;
/// STOP_SENDING code of a refused hello (bad token, room not allowed): `QUIC_REJECTED` in gatewayd.
const REJECTED: u32 = 0x01;

pub struct LoomClient {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    producers: HashMap<String, Producer>,
    inbox: Inbox,
    inbox_tx: Option<InboxSender>,
    /// The hello token of every stream (empty: anonymous).
    token: Bytes,
    /// Keys for messages published without one, so they spread over a room's consumers.
    next_key: u64,
}

struct Producer {
    stream: quinn::SendStream,
    /// Ends (FIN) once gatewayd has read the whole producer stream.
    done: quinn::RecvStream,
    out: BytesMut,
}

impl Producer {
    /// Writes everything encoded so far to the stream.
    async fn write_out(&mut self) -> Result<(), ClientError> {
        let bytes = self.out.split().freeze();
        self.stream.write_chunk(bytes).await.map_err(write_error)
    }
}

fn quic_error(error: impl std::fmt::Display) -> ClientError {
    ClientError::Quic(error.to_string())
}

/// A failed write; STOP_SENDING means gatewayd refused the stream.
fn write_error(error: quinn::WriteError) -> ClientError {
    match error {
        quinn::WriteError::Stopped(code) => stopped(code),
        other => quic_error(other),
    }
}

/// What STOP_SENDING with `code` on a stream's client half means.
fn stopped(code: quinn::VarInt) -> ClientError {
    if code == quinn::VarInt::from_u32(REJECTED) {
        ClientError::Refused(
            "gatewayd refused the Loom stream (token not valid or room not allowed)".into(),
        )
    } else {
        ClientError::Refused(format!("gatewayd stopped the Loom stream with code {code}"))
    }
}

/// Why a consumer stream ended: a refusal comes with STOP_SENDING on the client's half, a plain end without.
async fn ended(send: &mut quinn::SendStream) -> ClientError {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, send.stopped()).await {
        Ok(Ok(Some(code))) => stopped(code),
        _ => ClientError::Closed,
    }
}

impl LoomClient {
    /// Opens the QUIC connection; `credentials.token` goes in each stream's hello (Loom has no login).
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
    ) -> Result<LoomClient, ClientError> {
        let addr = resolve(address).await?;
        let mut tls = tls::trust_any(&[&rustls::version::TLS13]).map_err(quic_error)?;
        tls.alpn_protocols = vec![b"loom/1".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(quic_error)?;
        let local: SocketAddr = if addr.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = quinn::Endpoint::client(local)?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connecting = endpoint.connect(addr, "localhost").map_err(quic_error)?;
        let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))?
            .map_err(quic_error)?;
        let (tx, inbox) = Inbox::new();
        Ok(LoomClient {
            endpoint,
            connection,
            producers: HashMap::new(),
            inbox,
            inbox_tx: Some(tx),
            token: Bytes::from(credentials.token.clone().unwrap_or_default()),
            next_key: 0,
        })
    }

    async fn open(
        &self,
        role: Role,
        room: &str,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        let (mut send, recv) = self.connection.open_bi().await.map_err(quic_error)?;
        let hello = Hello {
            role,
            name: Bytes::from_static(b"gatewayctl"),
            room: Bytes::copy_from_slice(room.as_bytes()),
            token: self.token.clone(),
        };
        let mut out = BytesMut::new();
        hello.encode(&mut out);
        send.write_all(&out).await.map_err(write_error)?;
        Ok((send, recv))
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let key = match &message.key {
            Some(key) => {
                ConsumerKey::new(key.clone()).map_err(|e| ClientError::Protocol(e.to_string()))?
            }
            None => {
                self.next_key += 1;
                ConsumerKey::derive(&Bytes::new(), self.next_key)
            }
        };
        if !self.producers.contains_key(&message.topic) {
            let (stream, done) = self.open(Role::Producer, &message.topic).await?;
            self.producers.insert(
                message.topic.clone(),
                Producer {
                    stream,
                    done,
                    out: BytesMut::new(),
                },
            );
        }
        let Some(producer) = self.producers.get_mut(&message.topic) else {
            return Err(ClientError::Closed);
        };
        Delivery {
            key,
            declared_size: message.payload.len() as u64,
            msg_id: 0,
            body: message.payload.clone(),
        }
        .encode(&mut producer.out);
        if producer.out.len() >= WRITE_HIGH_WATER {
            producer.write_out().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        for producer in self.producers.values_mut() {
            if !producer.out.is_empty() {
                producer.write_out().await?;
            }
        }
        Ok(())
    }

    /// Joins room `topic` as a consumer. Loom confirms nothing; this returns once the hello is written.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let Some(tx) = self.inbox_tx.clone() else {
            return Err(ClientError::Closed);
        };
        let (send, recv) = self.open(Role::Consumer, topic).await?;
        tokio::spawn(consume(topic.to_owned(), send, recv, tx));
        Ok(())
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.next_with(std::convert::identity).await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.next_with(|message| message.payload).await
    }

    async fn next_with<T>(&mut self, pick: fn(Message) -> T) -> Result<T, ClientError> {
        // Only consumer tasks hold senders from here on, so the inbox ends when they all have.
        self.inbox_tx = None;
        self.inbox.next_with(pick).await
    }

    /// Finishes the producer streams, waits until gatewayd has read each of them to the end (it answers with
    /// FIN; closing before that would discard what it has not read yet), and closes the connection.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.flush().await?;
        for producer in self.producers.values_mut() {
            producer.stream.finish().map_err(quic_error)?;
        }
        for producer in self.producers.values_mut() {
            while producer
                .done
                .read_chunk(64 << 10, true)
                .await
                .map_err(quic_error)?
                .is_some()
            {}
        }
        self.connection.close(0u32.into(), b"bye");
        self.endpoint.wait_idle().await;
        Ok(())
    }
}

/// Reads one consumer stream: each whole message goes to the inbox, then is acknowledged.
async fn consume(
    room: String,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    tx: InboxSender,
) {
    let result = consume_inner(&room, &mut send, &mut recv, &tx).await;
    let _ = tx
        .send(Err(result.err().unwrap_or(ClientError::Closed)))
        .await;
}

async fn consume_inner(
    room: &str,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    tx: &InboxSender,
) -> Result<(), ClientError> {
    let limits = Limits::default();
    let mut decoder = MessageDecoder::new(&limits);
    let mut buf = BytesMut::new();
    let mut current: Option<(Bytes, u64, BytesMut)> = None;
    let mut ack = BytesMut::new();
    loop {
        while let Some(event) = decoder
            .decode(&mut buf)
            .map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            match event {
                MessageEvent::Start(header) => {
                    current = Some((header.key, header.msg_id, BytesMut::new()))
                }
                MessageEvent::Chunk(chunk) => {
                    if let Some((_, _, body)) = current.as_mut() {
                        if body.len() + chunk.len() > limits.max_streamed_message_bytes as usize {
                            return Err(ClientError::Protocol("message too large".into()));
                        }
                        body.extend_from_slice(&chunk);
                    }
                }
                MessageEvent::End => {
                    let Some((key, msg_id, body)) = current.take() else {
                        continue;
                    };
                    let message = Message {
                        topic: Some(room.to_owned()),
                        payload: body.freeze(),
                        key: Some(key),
                        id: Some(msg_id.to_string()),
                        ..Message::default()
                    };
                    if tx.send(Ok(Incoming::Message(message))).await.is_err() {
                        return Ok(());
                    }
                    ConsumerFrame::Ack { msg_id }.encode(&mut ack);
                    send.write_all(&ack).await.map_err(quic_error)?;
                    ack.clear();
                }
            }
        }
        match recv.read_chunk(64 << 10, true).await.map_err(quic_error)? {
            Some(chunk) => buf.extend_from_slice(&chunk.bytes),
            None => return Err(ended(send).await),
        }
    }
}
