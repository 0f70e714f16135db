//! MessageLoop G2 client over gRPC: one bidirectional `MessageLoopService/MessageLoop` stream carrying the same
//! protobuf envelopes as the WebSocket client's binary frames, written and read by [`codec`] as that client writes
//! and reads them. Publish, subscribe and receive, for `gatewayctl bench --ml-grpc`.

mod codec;

use bytes::Bytes;
use futures::FutureExt;
use prost::Message as _;
use protocols::messageloop::codec::direct_pb;
use protocols::messageloop::pb::messageloop::client::v2 as pb;
use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;
use tonic::Streaming;

use self::codec::EventsCodec;
use super::messageloop::{binary_payload, connect_envelope, metadata, subscribe_envelope};
use super::{
    send_until_error, ClientError, Credentials, Event, Inbox, InboxSender, Message, Outgoing,
    HANDSHAKE_TIMEOUT,
};

use pb::inbound_message::Envelope as In;

/// Envelopes queued for the stream before a publisher waits.
const QUEUED: usize = 1024;
/// Most envelopes one wake-up of the reader takes.
const BATCH: usize = 256;
/// The largest HTTP/2 frame the server may send (SETTINGS_MAX_FRAME_SIZE; HTTP/2's default is 16 KiB). h2 writes
/// each DATA frame in a system call of its own, and tonic makes frames of up to 32 KiB of replies.
const MAX_FRAME: u32 = 64 << 10;
/// The one method this client calls.
const METHOD: &str = "/messageloop.client.v2.MessageLoopService/MessageLoop";

pub struct MessageLoopGrpcClient {
    /// The request stream of encoded `InboundMessage`s; dropping it ends the stream.
    tx: mpsc::Sender<Bytes>,
    inbox: Inbox,
    next_id: u64,
}

impl MessageLoopGrpcClient {
    /// Opens a stream to `address` (`host:port`, plain HTTP/2) and sends Connect with `credentials.token`.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
    ) -> Result<MessageLoopGrpcClient, ClientError> {
        let open = async {
            let refused = |error: tonic::transport::Error| {
                ClientError::Refused(format!("gRPC connect: {error}"))
            };
            let channel = Endpoint::from_shared(format!("http://{address}"))
                .map_err(refused)?
                .max_frame_size(MAX_FRAME)
                .connect()
                .await
                .map_err(refused)?;
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.map_err(refused)?;
            let (tx, rx) = mpsc::channel(QUEUED);
            let requests = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|message| (message, rx))
            });
            let responses = grpc
                .streaming(
                    tonic::Request::new(requests),
                    PathAndQuery::from_static(METHOD),
                    EventsCodec,
                )
                .await
                .map_err(|status| ClientError::Refused(status.to_string()))?
                .into_inner();
            Ok::<_, ClientError>((tx, responses))
        };
        let (tx, responses) = tokio::time::timeout(HANDSHAKE_TIMEOUT, open)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        let (events, inbox) = Inbox::new();
        tokio::spawn(read_loop(responses, events));
        let mut client = MessageLoopGrpcClient {
            tx,
            inbox,
            next_id: 0,
        };
        let id = client.send(connect_envelope(credentials)).await?;
        client.inbox.confirmation(&id, HANDSHAKE_TIMEOUT).await?;
        Ok(client)
    }

    /// Queues one envelope and returns its id.
    async fn send(&mut self, envelope: In) -> Result<String, ClientError> {
        let id = self.take_id();
        let message = pb::InboundMessage {
            id: id.clone(),
            time: 0,
            envelope: Some(envelope),
        };
        self.queue(message.encode_to_vec().into()).await?;
        Ok(id)
    }

    /// The id of the next envelope.
    fn take_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Queues one encoded `InboundMessage` for the request stream.
    async fn queue(&mut self, encoded: Bytes) -> Result<(), ClientError> {
        self.tx.send(encoded).await.map_err(|_| ClientError::Closed)
    }

    /// Publishes `message.payload` as binary data (headers as metadata); the ack is drained by the reader.
    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        if message.headers.is_empty() {
            // Written directly: the bytes prost gives for the envelope built below.
            let id = self.take_id();
            let content_type = message.content_type.as_deref().unwrap_or("");
            let encoded = direct_pb::publish(&id, &message.topic, content_type, &message.payload);
            return self.queue(encoded.into()).await;
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

    /// Subscribes (ephemeral) and waits for the SubscribeAck.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let id = self.send(subscribe_envelope(topic)).await?;
        self.inbox.confirmation(&id, HANDSHAKE_TIMEOUT).await
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.inbox.next_message().await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.inbox.next_with(|message| message.payload).await
    }

    /// Ends the request stream and waits (within [`HANDSHAKE_TIMEOUT`]) until the server has ended its own, so it
    /// has read every publish sent before.
    pub async fn close(self) -> Result<(), ClientError> {
        let MessageLoopGrpcClient { tx, mut inbox, .. } = self;
        drop(tx);
        let closed = async { while inbox.next().await.is_ok() {} };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, closed)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))
    }
}

async fn read_loop(mut responses: Streaming<Vec<Event>>, tx: InboxSender) {
    loop {
        let mut events = Vec::new();
        let mut next = responses.message().await;
        loop {
            match next {
                Ok(Some(mut more)) => events.append(&mut more),
                Ok(None) => {
                    let _ = send_until_error(&tx, events).await;
                    let _ = tx.send(Err(ClientError::Closed)).await;
                    return;
                }
                Err(status) => {
                    events.push(Err(ClientError::Refused(status.to_string())));
                    let _ = send_until_error(&tx, events).await;
                    return;
                }
            }
            if events.len() >= BATCH {
                break;
            }
            match responses.message().now_or_never() {
                Some(more) => next = more,
                None => break,
            }
        }
        if send_until_error(&tx, events).await.is_break() {
            return;
        }
    }
}
