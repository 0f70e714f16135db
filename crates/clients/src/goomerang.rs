//! Goomerang client over WebSocket: protobuf `Frame`s built with gatewayd's Goomerang codec (which encodes
//! commands exactly as the Go client does). Publishes carry the payload as message kind [`RAW_KIND`] (bytes
//! verbatim, so other protocols see them unchanged); received messages wrapped as
//! `google.protobuf.BytesValue` are unwrapped. A request is a `SendSync`; its reply is the frame with the same
//! uuid and `is_sync` set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::SinkExt;
use prost::Message as _;
use protocols::goomerang::bridge::{command_headers, WrapperKind, CONTENT_TYPE_HEADER};
use protocols::goomerang::codec::headers::FrameHeaders;
use protocols::goomerang::codec::proto::Frame;
use protocols::goomerang::{encode_command, encode_publish, Command};
use tokio_rustls::TlsConnector;
use tokio_websockets::{CloseCode, Message as WsMessage};

use super::ws::{self, Sink, WsError};
use super::{ClientError, Credentials, Event, Inbox, Incoming, Message, Outgoing, Reading};

/// The message kind gatewayctl publishes and requests with: the payload bytes as they are.
pub const RAW_KIND: &str = "gatewayctl.Raw";

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(0);

pub struct GoomerangClient {
    sink: Sink,
    inbox: Inbox,
    /// Frames fed but not flushed.
    pending: usize,
}

/// Frames fed before a flush is forced.
const FEED_HIGH_WATER: usize = 64;

impl GoomerangClient {
    /// Connects (over TLS with `tls`); `credentials.token` goes on the upgrade as `Authorization: Bearer`
    /// (Goomerang has no login). A reader task reads the socket.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
        tls: Option<&TlsConnector>,
    ) -> Result<GoomerangClient, ClientError> {
        Self::connect_reading(address, credentials, tls, Reading::Task).await
    }

    /// [`GoomerangClient::connect`], the socket read as `reading` says.
    pub async fn connect_reading(
        address: &str,
        credentials: &Credentials,
        tls: Option<&TlsConnector>,
        reading: Reading,
    ) -> Result<GoomerangClient, ClientError> {
        let bearer = credentials.token.as_deref();
        let (sink, stream) = ws::dial(address, "/ws", None, bearer, tls).await?;
        let inbox = Inbox::reading(ws::batches(stream, events), reading);
        Ok(GoomerangClient {
            sink,
            inbox,
            pending: 0,
        })
    }

    async fn send(&mut self, command: &Command) -> Result<(), ClientError> {
        self.feed(encode_command(command, SystemTime::now())).await
    }

    /// Feeds one encoded frame, flushing every [`FEED_HIGH_WATER`] frames.
    async fn feed(&mut self, bytes: Bytes) -> Result<(), ClientError> {
        self.sink.feed(WsMessage::binary(bytes)).await?;
        self.pending += 1;
        if self.pending >= FEED_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let user: FrameHeaders = message
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.feed(encode_publish(
            &message.topic,
            RAW_KIND,
            &message.payload,
            &command_headers(&user),
            SystemTime::now(),
        ))
        .await
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        self.pending = 0;
        Ok(self.sink.flush().await?)
    }

    /// Goomerang does not confirm subscriptions; this returns once the command is written.
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        self.send(&Command::Subscribe {
            topic: topic.into(),
        })
        .await?;
        self.flush().await
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.inbox.next_message().await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.inbox.next_with(|message| message.payload).await
    }

    /// `SendSync` of `payload` as message kind `kind` (the request goes to `$rpc.goomerang.<kind>`).
    pub async fn request(
        &mut self,
        kind: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let uuid = format!(
            "gatewayctl-{}-{}",
            std::process::id(),
            NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
        );
        self.send(&Command::SendSync {
            uuid: uuid.clone(),
            kind: kind.into(),
            payload,
            headers: FrameHeaders::new(),
        })
        .await?;
        self.flush().await?;
        self.inbox.reply(&uuid, timeout).await
    }

    /// A close frame with code 1000, the only code Goomerang uses.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let close = WsMessage::close(Some(CloseCode::NORMAL_CLOSURE), "");
        self.sink.send(close).await?;
        Ok(())
    }
}

/// The events of one batch of messages from the server.
fn events(batch: Vec<Result<WsMessage, WsError>>) -> Vec<Event> {
    batch
        .into_iter()
        .filter_map(|next| match next {
            Ok(message) if message.is_binary() => {
                Some(match Frame::decode(Bytes::from(message.into_payload())) {
                    Ok(frame) => Ok(to_incoming(frame)),
                    Err(error) => Err(ClientError::Protocol(format!("bad frame: {error}"))),
                })
            }
            Ok(message) => message.as_close().map(|(_, reason)| {
                Err(if reason.is_empty() {
                    ClientError::Closed
                } else {
                    ClientError::Refused(reason.to_owned())
                })
            }),
            Err(error) => Some(Err(error.into())),
        })
        .collect()
}

fn to_incoming(frame: Frame) -> Incoming {
    let mut headers: Vec<(String, String)> = frame
        .headers
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect();
    let content_type = headers
        .iter()
        .position(|(k, _)| k == CONTENT_TYPE_HEADER)
        .map(|at| headers.remove(at).1);
    let (payload, kind) = if frame.kind == WrapperKind::BYTES_VALUE {
        (
            Bytes::decode(frame.payload.clone()).unwrap_or(frame.payload),
            None,
        )
    } else {
        (frame.payload, Some(frame.kind))
    };
    let message = Message {
        payload,
        content_type,
        headers,
        correlation_id: (!frame.uuid.is_empty()).then(|| frame.uuid.clone()),
        kind,
        ..Message::default()
    };
    if frame.is_sync && !frame.uuid.is_empty() {
        Incoming::Reply {
            correlation: frame.uuid,
            message,
        }
    } else {
        Incoming::Message(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::goomerang::codec::proto::HeaderEntry;

    #[test]
    fn wrapped_foreign_bodies_are_unwrapped_and_sync_replies_recognised() {
        let frame = Frame {
            uuid: "u-1".into(),
            kind: WrapperKind::BYTES_VALUE.into(),
            is_sync: true,
            payload: Bytes::from(Bytes::from_static(b"pong").encode_to_vec()),
            headers: vec![HeaderEntry {
                key: "content-type".into(),
                value: "text/plain".into(),
            }],
            ..Default::default()
        };
        match to_incoming(frame) {
            Incoming::Reply {
                correlation,
                message,
            } => {
                assert_eq!(correlation, "u-1");
                assert_eq!(&message.payload[..], b"pong");
                assert_eq!(message.content_type.as_deref(), Some("text/plain"));
            }
            other => panic!("{other:?}"),
        }
    }
}
