//! STOMP 1.2 client over TCP: CONNECT, SEND, SUBSCRIBE (with a RECEIPT so a subscription is live when
//! [`StompClient::subscribe`] returns), request/reply through a `/temp-queue/` `reply-to`, and answering a
//! request's `reply-to`. Frames are written with 1.2 header escaping and always a `content-length`, so
//! bodies may hold any bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocols::stomp::{Command, Decoded, Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::stomp_connect::connect_frame;
use super::{
    resolve, send_until_error, ClientError, Credentials, Inbox, InboxSender, Incoming, Message,
    Outgoing, HANDSHAKE_TIMEOUT,
};
use wire::{decoder, encode, encode_send, send_head};

mod wire;

/// Buffered SEND bytes that trigger a write before [`StompClient::flush`].
const WRITE_HIGH_WATER: usize = 64 << 10;
/// Prefix of the subscription id gatewayd gives a temp-queue inbox.
const TEMP_QUEUE: &str = "/temp-queue/";

static NEXT_INBOX: AtomicU64 = AtomicU64::new(0);

/// One STOMP connection.
pub struct StompClient {
    writer: OwnedWriteHalf,
    out: BytesMut,
    inbox: Inbox,
    next_id: u64,
    /// The temp-queue name of this connection's reply inbox, once a request created it.
    reply_queue: String,
    /// The topic last published to, its destination and the start of a SEND there.
    sent_to: (String, String, Vec<u8>),
}

impl StompClient {
    /// Connects and logs in: `credentials.login` goes in CONNECT's `login` header, the token in `passcode`.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
    ) -> Result<StompClient, ClientError> {
        let connect = connect_frame(credentials)?;
        let stream = TcpStream::connect(resolve(address).await?).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(connect.as_bytes()).await?;
        let out = BytesMut::new();
        let mut buf = BytesMut::with_capacity(64 << 10);
        let mut decoder = decoder();
        let read = read_frame(&mut decoder, &mut reader, &mut buf);
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, read)
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        match connected.command {
            Command::Connected => {}
            Command::Error => return Err(ClientError::Refused(error_text(&connected))),
            other => {
                return Err(ClientError::Protocol(format!(
                    "{} before CONNECTED",
                    other.as_str()
                )))
            }
        }
        let (tx, inbox) = Inbox::new();
        tokio::spawn(read_loop(decoder, reader, buf, tx));
        let inbox_id = NEXT_INBOX.fetch_add(1, Ordering::Relaxed);
        Ok(StompClient {
            writer,
            out,
            inbox,
            next_id: 0,
            reply_queue: format!("{TEMP_QUEUE}ctl-{}-{inbox_id}", std::process::id()),
            sent_to: (String::new(), String::new(), Vec::new()),
        })
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        if self.sent_to.0 != message.topic || self.sent_to.2.is_empty() {
            let destination = destination(&message.topic);
            let head = send_head(&destination);
            self.sent_to = (message.topic.clone(), destination, head);
        }
        let destination = ("destination", self.sent_to.1.as_str());
        if message.key.is_none()
            && message.content_type.is_none()
            && message.correlation_id.is_none()
            && message.headers.is_empty()
        {
            // The common case: the destination is the only header.
            encode_send(&mut self.out, &self.sent_to.2, &message.payload);
        } else {
            let key = message.key.as_ref().map(|k| String::from_utf8_lossy(k));
            let mut headers: Vec<(&str, &str)> = Vec::with_capacity(message.headers.len() + 4);
            headers.push(destination);
            if let Some(content_type) = &message.content_type {
                headers.push(("content-type", content_type));
            }
            if let Some(key) = &key {
                headers.push(("JMSXGroupID", key));
            }
            if let Some(correlation_id) = &message.correlation_id {
                headers.push(("correlation-id", correlation_id));
            }
            headers.extend(
                message
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
            encode(&mut self.out, "SEND", &headers, &message.payload);
        }
        if self.out.len() >= WRITE_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let id = self.fresh_id("sub");
        let receipt = self.fresh_id("receipt");
        let destination = destination(topic);
        encode(
            &mut self.out,
            "SUBSCRIBE",
            &[
                ("id", &id),
                ("destination", &destination),
                ("ack", "auto"),
                ("receipt", &receipt),
            ],
            &[],
        );
        self.flush().await?;
        self.inbox.confirmation(&receipt, HANDSHAKE_TIMEOUT).await
    }

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.inbox.next_with(|message| message.payload).await
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.inbox.next_message().await
    }

    /// SENDs `payload` to `target` with `reply-to` = this connection's temp queue and a fresh
    /// `correlation-id`, and waits for the MESSAGE on the temp queue with that correlation id.
    pub async fn request(
        &mut self,
        target: &str,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, ClientError> {
        let correlation = self.fresh_id(&format!("req-{}", std::process::id()));
        let destination = destination(target);
        let reply_queue = self.reply_queue.clone();
        encode(
            &mut self.out,
            "SEND",
            &[
                ("destination", &destination),
                ("reply-to", &reply_queue),
                ("correlation-id", &correlation),
            ],
            &payload,
        );
        self.flush().await?;
        self.inbox.reply(&correlation, timeout).await
    }

    /// SENDs `payload` to the request's `reply-to` with its `correlation-id`.
    pub async fn reply(&mut self, request: &Message, payload: Bytes) -> Result<(), ClientError> {
        let Some(reply_to) = &request.reply_to else {
            return Err(ClientError::Protocol("the request has no reply-to".into()));
        };
        let mut headers = vec![("destination", reply_to.as_str())];
        if let Some(correlation) = &request.correlation_id {
            headers.push(("correlation-id", correlation));
        }
        encode(&mut self.out, "SEND", &headers, &payload);
        self.flush().await
    }

    /// DISCONNECT with a receipt, so everything sent before is processed, then close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let receipt = self.fresh_id("bye");
        encode(&mut self.out, "DISCONNECT", &[("receipt", &receipt)], &[]);
        self.flush().await?;
        let _ = self.inbox.confirmation(&receipt, HANDSHAKE_TIMEOUT).await;
        Ok(())
    }

    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }
}

/// `orders.eu` → `/topic/orders.eu`; a name that starts with `/` is already a destination.
pub fn destination(topic: &str) -> String {
    if topic.starts_with('/') {
        topic.to_owned()
    } else {
        format!("/topic/{topic}")
    }
}

fn error_text(frame: &Frame) -> String {
    let message = frame.header("message").map(|m| String::from_utf8_lossy(m));
    let message = message.as_deref().unwrap_or("ERROR");
    let body = String::from_utf8_lossy(&frame.body);
    if body.trim().is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", body.trim())
    }
}

/// Reads frames until the connection ends, handing the inbox every frame of one read at once.
async fn read_loop(
    mut decoder: Decoder,
    mut reader: OwnedReadHalf,
    mut buf: BytesMut,
    tx: InboxSender,
) {
    // Sized as the last batch was, so a steady stream does not grow each batch from empty.
    let mut batch = 0;
    loop {
        let mut events = Vec::with_capacity(batch);
        loop {
            match next_frame(&mut decoder, &mut buf) {
                Ok(Some(frame)) => events.extend(to_incoming(frame).map(Ok)),
                Ok(None) => break,
                Err(error) => {
                    events.push(Err(error));
                    break;
                }
            }
        }
        batch = events.len();
        if send_until_error(&tx, events).await.is_break() {
            return;
        }
        if let Err(error) = read_more(&mut reader, &mut buf).await {
            let _ = tx.send(Err(error)).await;
            return;
        }
    }
}

fn to_incoming(frame: Frame) -> Option<Incoming> {
    match frame.command {
        Command::Message => {
            let (message, to_temp_queue) = to_message(frame);
            match (&message.correlation_id, to_temp_queue) {
                (Some(correlation), true) => Some(Incoming::Reply {
                    correlation: correlation.clone(),
                    message,
                }),
                _ => Some(Incoming::Message(message)),
            }
        }
        Command::Receipt => frame
            .header("receipt-id")
            .map(|id| Incoming::Confirmed(String::from_utf8_lossy(id).into_owned())),
        Command::Error => Some(Incoming::Refused(error_text(&frame))),
        _ => None,
    }
}

/// The message a MESSAGE frame carries, and whether it came through a temp-queue subscription.
/// The first of repeated headers counts; headers the server owns are not user headers.
fn to_message(frame: Frame) -> (Message, bool) {
    let mut message = Message::default();
    let mut to_temp_queue = None;
    for header in frame.headers.iter() {
        let value = header.value;
        let first = |field: &mut Option<String>| {
            field.get_or_insert_with(|| String::from_utf8_lossy(value).into_owned());
        };
        match header.name {
            b"subscription" => {
                to_temp_queue.get_or_insert(value.starts_with(TEMP_QUEUE.as_bytes()));
            }
            b"destination" => first(&mut message.topic),
            b"content-type" => first(&mut message.content_type),
            b"reply-to" => first(&mut message.reply_to),
            b"correlation-id" => first(&mut message.correlation_id),
            b"JMSXGroupID" => {
                message
                    .key
                    .get_or_insert_with(|| Bytes::copy_from_slice(value));
            }
            b"message-id" => first(&mut message.id),
            b"ack" | b"redelivered" | b"content-length" | b"receipt-id" => {}
            name => message.headers.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )),
        }
    }
    message.payload = frame.body;
    (message, to_temp_queue.unwrap_or(false))
}

/// The next frame at the front of `buf` (heart-beats skipped), or `None` until one is complete.
fn next_frame(decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Option<Frame>, ClientError> {
    loop {
        match decoder.decode(buf) {
            Ok(Some(Decoded::Frame(frame))) => return Ok(Some(frame)),
            Ok(Some(Decoded::HeartBeat)) => {}
            Ok(None) => return Ok(None),
            Err(error) => return Err(ClientError::Protocol(error.to_string())),
        }
    }
}

/// Reads until one whole frame is buffered and returns it.
async fn read_frame(
    decoder: &mut Decoder,
    reader: &mut OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Frame, ClientError> {
    loop {
        if let Some(frame) = next_frame(decoder, buf)? {
            return Ok(frame);
        }
        read_more(reader, buf).await?;
    }
}

/// Appends what the next read brings to `buf`; `Err(Closed)` at the end of the stream.
async fn read_more(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<(), ClientError> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 << 10);
    }
    if reader.read_buf(buf).await? == 0 {
        return Err(ClientError::Closed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_on_the_temp_queue_are_told_apart() {
        let mut buf = BytesMut::new();
        encode(
            &mut buf,
            "MESSAGE",
            &[
                ("subscription", "/temp-queue/ctl-1"),
                ("correlation-id", "c-1"),
                ("correlation-id", "c-2"),
                ("trace", "t"),
                ("message-id", "m"),
            ],
            b"pong",
        );
        let frame = next_frame(&mut decoder(), &mut buf).unwrap().unwrap();
        match to_incoming(frame) {
            Some(Incoming::Reply {
                correlation,
                message,
            }) => {
                assert_eq!(correlation, "c-1");
                assert_eq!(message.headers, vec![("trace".into(), "t".into())]);
                assert_eq!(&message.payload[..], b"pong");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn messages_carry_their_metadata() {
        let mut buf = BytesMut::new();
        encode(
            &mut buf,
            "MESSAGE",
            &[
                ("subscription", "sub-1"),
                ("destination", "/topic/a:b"),
                ("content-type", "text/plain"),
                ("JMSXGroupID", "k"),
                ("reply-to", "/reply-queue/1.x"),
            ],
            b"hi",
        );
        let frame = next_frame(&mut decoder(), &mut buf).unwrap().unwrap();
        match to_incoming(frame) {
            Some(Incoming::Message(message)) => {
                assert_eq!(message.topic.as_deref(), Some("/topic/a:b"));
                assert_eq!(message.content_type.as_deref(), Some("text/plain"));
                assert_eq!(message.key.as_deref(), Some(&b"k"[..]));
                assert_eq!(message.reply_to.as_deref(), Some("/reply-queue/1.x"));
                assert!(message.headers.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
