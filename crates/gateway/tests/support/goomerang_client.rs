//! A Goomerang test client over tokio-tungstenite: sends the frames the Go client sends (built with the
//! codec's `encode_command`), receives and decodes the frames gatewayd sends, and drives the WebSocket
//! details the tests check (fragmentation, ping, the close handshake).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message as _;
use protocols::goomerang::bridge::command_headers;
use protocols::goomerang::codec::proto::Frame;
use protocols::goomerang::{encode_command, Command, FrameHeaders};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long any expected frame may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct GoomerangClient {
    ws: WebSocketStream<TcpStream>,
}

/// What the server sent when the client expected a data frame.
#[derive(Debug)]
pub enum Received {
    Frame(Frame),
    Close(Option<CloseFrame>),
    /// The connection ended without a close frame.
    Eof,
}

impl GoomerangClient {
    /// Connects to `ws://<addr>/ws`, as the Go client does without TLS.
    pub async fn connect(addr: SocketAddr) -> GoomerangClient {
        Self::connect_path(addr, "/ws").await.expect("upgrade")
    }

    /// Connects to `ws://<addr><path>`.
    pub async fn connect_path(
        addr: SocketAddr,
        path: &str,
    ) -> Result<GoomerangClient, tokio_tungstenite::tungstenite::Error> {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), stream).await?;
        Ok(GoomerangClient { ws })
    }

    /// Connects to `ws://<addr><path>` with extra upgrade `headers` (such as `Authorization`).
    pub async fn connect_with_headers(
        addr: SocketAddr,
        path: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<GoomerangClient, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}{path}").into_client_request()?;
        for (name, value) in headers {
            let value = value.parse().expect("header value");
            request.headers_mut().insert(*name, value);
        }
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
        Ok(GoomerangClient { ws })
    }

    /// Sends `command` as one binary message.
    pub async fn send(&mut self, command: &Command) {
        self.send_raw(encode_command(command, SystemTime::now()))
            .await;
    }

    pub async fn send_raw(&mut self, bytes: impl Into<Bytes>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    /// Sends `bytes` as one binary message split into WebSocket fragments of at most `chunk` bytes (a
    /// binary frame, then continuation frames), like gorilla's 4096-byte write buffer does.
    pub async fn send_fragmented(&mut self, bytes: &[u8], chunk: usize) {
        let pieces: Vec<&[u8]> = bytes.chunks(chunk).collect();
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Data(Data::Binary)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = WsFrame::message(Bytes::copy_from_slice(piece), opcode, i == last);
            self.ws.feed(Message::Frame(frame)).await.expect("feed");
        }
        self.ws.flush().await.expect("flush");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send text");
    }

    pub async fn subscribe(&mut self, topic: &str) {
        self.send(&Command::Subscribe {
            topic: topic.into(),
        })
        .await;
    }

    pub async fn unsubscribe(&mut self, topic: &str) {
        self.send(&Command::Unsubscribe {
            topic: topic.into(),
        })
        .await;
    }

    /// Publishes `message` of `kind` with user headers (sent with the `message-` prefix, as the Go client does).
    pub async fn publish(
        &mut self,
        topic: &str,
        kind: &str,
        message: Bytes,
        user: &[(&str, &str)],
    ) {
        let user: FrameHeaders = user.iter().copied().collect();
        self.send(&Command::Publish {
            topic: topic.into(),
            kind: kind.into(),
            message,
            headers: command_headers(&user),
        })
        .await;
    }

    pub async fn broadcast(&mut self, kind: &str, message: Bytes) {
        self.send(&Command::Broadcast {
            kind: kind.into(),
            message,
            headers: FrameHeaders::new(),
        })
        .await;
    }

    /// The next data frame, close or end of the connection (pings and pongs skipped).
    pub async fn receive(&mut self) -> Received {
        let next = async {
            loop {
                match self.ws.next().await {
                    None => return Received::Eof,
                    Some(Err(_)) => return Received::Eof,
                    Some(Ok(Message::Binary(bytes))) => {
                        return Received::Frame(Frame::decode(bytes).expect("a Goomerang frame"))
                    }
                    Some(Ok(Message::Close(close))) => {
                        // Send tungstenite's queued echo at once, as the Go client does.
                        let _ = self.ws.flush().await;
                        return Received::Close(close);
                    }
                    Some(Ok(Message::Text(text))) => panic!("gatewayd sent a text message: {text}"),
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(TIMEOUT, next)
            .await
            .expect("timed out waiting for a frame")
    }

    /// The next data frame; panics on close or end of connection.
    pub async fn recv_frame(&mut self) -> Frame {
        match self.receive().await {
            Received::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next server message of any kind, including pongs.
    pub async fn recv_message(&mut self) -> Message {
        tokio::time::timeout(TIMEOUT, self.ws.next())
            .await
            .expect("timed out")
            .expect("connection open")
            .expect("message")
    }

    pub async fn ping(&mut self, payload: &'static [u8]) {
        self.ws
            .send(Message::Ping(Bytes::from_static(payload)))
            .await
            .expect("ping");
    }

    /// Sends close 1000 and returns the server's close frame; then expects the server to close TCP.
    pub async fn close(mut self) -> Option<CloseFrame> {
        self.ws
            .send(Message::Close(Some(CloseFrame {
                code: 1000.into(),
                reason: "".into(),
            })))
            .await
            .expect("send close");
        let echo = match self.receive().await {
            Received::Close(echo) => echo,
            other => panic!("expected the close echo, got {other:?}"),
        };
        let end = tokio::time::timeout(TIMEOUT, self.ws.next())
            .await
            .expect("server closed TCP");
        assert!(
            matches!(end, None | Some(Err(_))),
            "after the close handshake: {end:?}"
        );
        echo
    }
}

/// Headers of a received frame as pairs.
pub fn headers(frame: &Frame) -> Vec<(String, String)> {
    frame
        .headers
        .iter()
        .map(|entry| (entry.key.clone(), entry.value.clone()))
        .collect()
}

/// `goomerang.example.MessageV1 { message = text }` (field 1, string).
pub fn message_v1(text: &str) -> Bytes {
    let mut bytes = Vec::with_capacity(text.len() + 4);
    bytes.push(0x0a);
    let mut len = text.len();
    while len >= 0x80 {
        bytes.push((len as u8) | 0x80);
        len >>= 7;
    }
    bytes.push(len as u8);
    bytes.extend_from_slice(text.as_bytes());
    Bytes::from(bytes)
}
