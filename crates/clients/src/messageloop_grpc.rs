//! MessageLoop G2 client over gRPC: one bidirectional `MessageLoopService/MessageLoop` stream (tonic's generated
//! client) carrying the same protobuf envelopes as the WebSocket client's binary frames, read into events by
//! [`messageloop`](super::messageloop)'s own reading of an envelope. Publish, subscribe and receive, for
//! `gatewayctl bench --ml-grpc`.

use futures::FutureExt;
use protocols::messageloop::pb::messageloop::client::v2 as pb;
use protocols::messageloop::pb::messageloop::client::v2::message_loop_service_client::MessageLoopServiceClient;
use protocols::messageloop::pb::messageloop::shared::v2 as shared;
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::Streaming;

use super::messageloop::{connect_envelope, subscribe_envelope, to_incoming};
use super::{
    send_until_error, ClientError, Credentials, Inbox, InboxSender, Message, Outgoing,
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

pub struct MessageLoopGrpcClient {
    /// The request stream; dropping it ends the stream.
    tx: mpsc::Sender<pb::InboundMessage>,
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
            let mut service = MessageLoopServiceClient::new(channel);
            let (tx, rx) = mpsc::channel(QUEUED);
            let requests = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|message| (message, rx))
            });
            let responses = service
                .message_loop(requests)
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
        self.next_id += 1;
        let id = self.next_id.to_string();
        let message = pb::InboundMessage {
            id: id.clone(),
            time: 0,
            envelope: Some(envelope),
        };
        self.tx
            .send(message)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(id)
    }

    /// Publishes `message.payload` as binary data (headers as metadata); the ack is drained by the reader.
    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let metadata = (!message.headers.is_empty()).then(|| shared::Metadata {
            entries: message.headers.iter().cloned().collect(),
        });
        self.send(In::Publish(pb::Publish {
            channel: message.topic.clone(),
            payload: Some(shared::Payload {
                content_type: message.content_type.clone().unwrap_or_default(),
                data: Some(shared::payload::Data::Binary(message.payload.clone())),
            }),
            metadata,
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

    pub async fn next_payload(&mut self) -> Result<bytes::Bytes, ClientError> {
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

async fn read_loop(mut responses: Streaming<pb::OutboundMessage>, tx: InboxSender) {
    loop {
        let mut events = Vec::new();
        let mut next = responses.message().await;
        loop {
            match next {
                Ok(Some(message)) => to_incoming(message, &mut events),
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
