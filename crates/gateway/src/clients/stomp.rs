//! STOMP 1.2 client over TCP: CONNECT, SEND, SUBSCRIBE (with a RECEIPT so a subscription is live when
//! [`StompClient::subscribe`] returns), request/reply through a `/temp-queue/` `reply-to`, and answering a
//! request's `reply-to`. Frames are written with 1.2 header escaping and always a `content-length`, so
//! bodies may hold any bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::stomp_connect::connect_frame;
use super::{
    resolve, ClientError, Credentials, Inbox, InboxSender, Incoming, Message, Outgoing,
    HANDSHAKE_TIMEOUT,
};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 64 << 20;
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
}

/// A server frame: command, headers (unescaped, in order) and body.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
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
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut reader, &mut buf))
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        match connected.command.as_str() {
            "CONNECTED" => {}
            "ERROR" => return Err(ClientError::Refused(error_text(&connected))),
            other => return Err(ClientError::Protocol(format!("{other} before CONNECTED"))),
        }
        let (tx, inbox) = Inbox::new();
        tokio::spawn(read_loop(reader, buf, tx));
        let inbox_id = NEXT_INBOX.fetch_add(1, Ordering::Relaxed);
        Ok(StompClient {
            writer,
            out,
            inbox,
            next_id: 0,
            reply_queue: format!("{TEMP_QUEUE}ctl-{}-{inbox_id}", std::process::id()),
        })
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let destination = destination(&message.topic);
        let key = message
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(message.headers.len() + 2);
        headers.push(("destination", &destination));
        if let Some(key) = &key {
            headers.push(("JMSXGroupID", key));
        }
        headers.extend(
            message
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        encode(&mut self.out, "SEND", &headers, &message.payload);
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
    let message = frame.header("message").unwrap_or("ERROR");
    let body = String::from_utf8_lossy(&frame.body);
    if body.trim().is_empty() {
        message.to_owned()
    } else {
        format!("{message}: {}", body.trim())
    }
}

async fn read_loop(mut reader: OwnedReadHalf, mut buf: BytesMut, tx: InboxSender) {
    loop {
        let event = match read_frame(&mut reader, &mut buf).await {
            Ok(frame) => match to_incoming(frame) {
                Some(event) => Ok(event),
                None => continue,
            },
            Err(error) => Err(error),
        };
        let stop = event.is_err();
        if tx.send(event).await.is_err() || stop {
            return;
        }
    }
}

fn to_incoming(frame: Frame) -> Option<Incoming> {
    match frame.command.as_str() {
        "MESSAGE" => {
            let to_temp_queue = frame
                .header("subscription")
                .is_some_and(|s| s.starts_with(TEMP_QUEUE));
            let message = to_message(frame);
            match (&message.correlation_id, to_temp_queue) {
                (Some(correlation), true) => Some(Incoming::Reply {
                    correlation: correlation.clone(),
                    message,
                }),
                _ => Some(Incoming::Message(message)),
            }
        }
        "RECEIPT" => frame
            .header("receipt-id")
            .map(|id| Incoming::Confirmed(id.to_owned())),
        "ERROR" => Some(Incoming::Refused(error_text(&frame))),
        _ => None,
    }
}

/// Headers the server owns; the rest are user headers.
const FRAME_HEADERS: [&str; 11] = [
    "subscription",
    "destination",
    "message-id",
    "ack",
    "redelivered",
    "content-type",
    "content-length",
    "JMSXGroupID",
    "reply-to",
    "correlation-id",
    "receipt-id",
];

fn to_message(frame: Frame) -> Message {
    let owned = |name: &str| frame.header(name).map(str::to_owned);
    Message {
        topic: owned("destination"),
        key: frame
            .header("JMSXGroupID")
            .map(|k| Bytes::copy_from_slice(k.as_bytes())),
        content_type: owned("content-type"),
        reply_to: owned("reply-to"),
        correlation_id: owned("correlation-id"),
        headers: frame
            .headers
            .iter()
            .filter(|(k, _)| !FRAME_HEADERS.contains(&k.as_str()))
            .cloned()
            .collect(),
        payload: frame.body,
    }
}

/// Reads until one whole frame is buffered and returns it.
async fn read_frame(reader: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Frame, ClientError> {
    loop {
        if let Some(frame) = parse(buf)? {
            return Ok(frame);
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 << 10);
        }
        if reader.read_buf(buf).await? == 0 {
            return Err(ClientError::Closed);
        }
    }
}

/// One frame from the front of `buf` (heart-beat EOLs skipped), or `None` until it is complete.
fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, ClientError> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\n' || **b == b'\r')
        .count();
    buf.advance(skip);
    let Some(head_end) = head_end(buf) else {
        if buf.len() > MAX_FRAME {
            return Err(ClientError::Protocol("frame header too long".into()));
        }
        return Ok(None);
    };
    let (head_len, body_start) = head_end;
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ClientError::Protocol("frame header is not UTF-8".into()))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let command = lines.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    let mut length = None;
    for line in lines {
        let Some((key, value)) = line.split_once(':') else {
            return Err(ClientError::Protocol(format!("bad header line {line:?}")));
        };
        let (key, value) = (unescape(key)?, unescape(value)?);
        if key == "content-length" && length.is_none() {
            let parsed: usize = value
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad content-length {value:?}")))?;
            if parsed > MAX_FRAME {
                return Err(ClientError::Protocol("frame too large".into()));
            }
            length = Some(parsed);
        }
        headers.push((key, value));
    }
    let body_len = match length {
        Some(length) => {
            if buf.len() < body_start + length + 1 {
                return Ok(None);
            }
            if buf[body_start + length] != 0 {
                return Err(ClientError::Protocol("frame does not end with NUL".into()));
            }
            length
        }
        None => match buf[body_start..].iter().position(|b| *b == 0) {
            Some(at) => at,
            None if buf.len() > MAX_FRAME => {
                return Err(ClientError::Protocol("frame too large".into()))
            }
            None => return Ok(None),
        },
    };
    buf.advance(body_start);
    let body = buf.split_to(body_len).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        command,
        headers,
        body,
    }))
}

/// Where the header block ends (before its blank line) and where the body starts.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(offset) = buf.get(at..)?.iter().position(|b| *b == b'\n') {
        let eol = at + offset;
        match buf.get(eol + 1..) {
            Some([b'\n', ..]) => return Some((eol, eol + 2)),
            Some([b'\r', b'\n', ..]) => return Some((eol, eol + 3)),
            _ => at = eol + 1,
        }
    }
    None
}

fn unescape(text: &str) -> Result<String, ClientError> {
    if !text.contains('\\') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('r') => '\r',
            Some('c') => ':',
            Some('\\') => '\\',
            other => return Err(ClientError::Protocol(format!("bad escape \\{other:?}"))),
        });
    }
    Ok(out)
}

fn put_escaped(out: &mut BytesMut, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'\n' => out.put_slice(b"\\n"),
            b'\r' => out.put_slice(b"\\r"),
            b':' => out.put_slice(b"\\c"),
            b'\\' => out.put_slice(b"\\\\"),
            other => out.put_u8(other),
        }
    }
}

/// Appends one client frame with escaped headers, a `content-length` and the closing NUL.
fn encode(out: &mut BytesMut, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    out.reserve(command.len() + body.len() + 64);
    out.put_slice(command.as_bytes());
    out.put_u8(b'\n');
    for (key, value) in headers {
        put_escaped(out, key);
        out.put_u8(b':');
        put_escaped(out, value);
        out.put_u8(b'\n');
    }
    if command == "SEND" {
        out.put_slice(b"content-length:");
        out.put_slice(body.len().to_string().as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(body);
    out.put_u8(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out, command, headers, body);
        out
    }

    #[test]
    fn parses_what_it_encodes_with_escapes_and_nul_bodies() {
        let mut buf = frame_bytes("SEND", &[("a:b", "line\nnext\\")], b"x\0y");
        let frame = parse(&mut buf).unwrap().unwrap();
        assert_eq!(frame.command, "SEND");
        assert_eq!(frame.header("a:b"), Some("line\nnext\\"));
        assert_eq!(frame.header("content-length"), Some("3"));
        assert_eq!(&frame.body[..], b"x\0y");
        assert!(buf.is_empty());
    }

    #[test]
    fn waits_for_the_whole_frame_at_every_split() {
        let whole = frame_bytes("SEND", &[("destination", "/topic/a")], b"hello");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(parse(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(&parse(&mut buf).unwrap().unwrap().body[..], b"hello");
        }
    }

    #[test]
    fn heart_beats_and_frames_without_content_length() {
        let mut buf =
            BytesMut::from(&b"\n\r\nRECEIPT\r\nreceipt-id:r-1\r\n\r\n\0MESSAGE\n\nbody\0"[..]);
        let receipt = parse(&mut buf).unwrap().unwrap();
        assert_eq!(receipt.header("receipt-id"), Some("r-1"));
        let message = parse(&mut buf).unwrap().unwrap();
        assert_eq!(&message.body[..], b"body");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for input in [
            &b"MESSAGE\ncontent-length:x\n\n\0"[..],
            b"MESSAGE\ncontent-length:1\n\nab",
            b"MESSAGE\nnocolon\n\n\0",
            b"MESSAGE\nbad:\\q\n\n\0",
        ] {
            assert!(parse(&mut BytesMut::from(input)).is_err(), "{input:?}");
        }
    }

    #[test]
    fn replies_on_the_temp_queue_are_told_apart() {
        let mut buf = frame_bytes(
            "MESSAGE",
            &[
                ("subscription", "/temp-queue/ctl-1"),
                ("correlation-id", "c-1"),
                ("trace", "t"),
            ],
            b"pong",
        );
        let frame = parse(&mut buf).unwrap().unwrap();
        match to_incoming(frame) {
            Some(Incoming::Reply {
                correlation,
                message,
            }) => {
                assert_eq!(correlation, "c-1");
                assert_eq!(message.headers, vec![("trace".into(), "t".into())]);
            }
            other => panic!("{other:?}"),
        }
    }
}
