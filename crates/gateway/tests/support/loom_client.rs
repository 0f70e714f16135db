//! A minimal Loom v4 client for over-the-socket tests, written from docs/protocols/loom.md ("Wire format") with its
//! own tiny encoder and decoder (it deliberately does not use gatewayd's codec). It speaks raw QUIC (ALPN `loom/1`) and
//! HTTP/3 (`POST /stream`) with quinn and h3, and trusts any server certificate, like Loom clients with
//! `InsecureSkipVerify` against the self-signed development certificate.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use clients::tls::AnyCertificate;
use h3::client::RequestStream;

pub const PRODUCER: u8 = b'P';
pub const CONSUMER: u8 = b'C';

/// Go `binary.PutUvarint`: 7 bits per byte, least significant first.
pub fn uvarint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    panic!("uvarint longer than 10 bytes from the server");
}

/// `LOOM`, version 4, role, then name, room and token, each length-prefixed.
pub fn hello(role: u8, name: &[u8], room: &[u8], token: &[u8]) -> Vec<u8> {
    let mut out = b"LOOM\x04".to_vec();
    out.push(role);
    for field in [name, room, token] {
        uvarint(field.len() as u64, &mut out);
        out.extend_from_slice(field);
    }
    out
}

/// A producer message: key, declared size (the body length), msg id 0, chunks of at most `chunk` bytes, EOM.
pub fn message(key: &[u8], body: &[u8], chunk: usize) -> Vec<u8> {
    message_declaring(key, body.len() as u64, body, chunk)
}

/// [`message`] announcing `declared_size` (0 = unknown) whatever the body's length.
pub fn message_declaring(key: &[u8], declared_size: u64, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 3 + key.len() + 24);
    uvarint(key.len() as u64, &mut out);
    out.extend_from_slice(key);
    uvarint(declared_size, &mut out);
    uvarint(0, &mut out);
    for part in body.chunks(chunk.max(1)) {
        uvarint(part.len() as u64, &mut out);
        out.extend_from_slice(part);
    }
    out.push(0);
    out
}

/// Ack frame: type 1, msg id.
pub fn ack(msg_id: u64) -> Vec<u8> {
    let mut out = Vec::new();
    uvarint(1, &mut out);
    uvarint(msg_id, &mut out);
    out
}

/// A message as a consumer receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub key: Vec<u8>,
    pub declared_size: u64,
    pub id: u64,
    pub body: Vec<u8>,
    pub largest_chunk: usize,
}

/// Largest key the Go consumer accepts (`Loom-go` `maxKey`).
const MAX_KEY: usize = 256;
/// Largest chunk the Go consumer accepts (`maxChunk`, 64 KiB): a bigger one is `io.ErrUnexpectedEOF` there.
const MAX_CHUNK: usize = 64 << 10;

/// One whole message from the front of `buf` and the bytes it took, or `None` if incomplete. As strict as the
/// Go consumer: a key outside 1..=256 bytes, a chunk over 64 KiB or a message id of 0 fails the test.
pub fn parse_message(buf: &[u8]) -> Option<(Msg, usize)> {
    let mut pos = 0;
    let key_len = read_uvarint(buf, &mut pos)? as usize;
    assert!(
        (1..=MAX_KEY).contains(&key_len),
        "gatewayd sent a key of {key_len} bytes"
    );
    let key = buf.get(pos..pos + key_len)?.to_vec();
    pos += key_len;
    let declared_size = read_uvarint(buf, &mut pos)?;
    let id = read_uvarint(buf, &mut pos)?;
    assert_ne!(id, 0, "gatewayd sent message id 0");
    // Chunk positions first, the body copied once complete: a long message costs one copy however it arrives.
    let mut chunks = Vec::new();
    let mut largest_chunk = 0;
    loop {
        let len = read_uvarint(buf, &mut pos)? as usize;
        if len == 0 {
            break;
        }
        assert!(len <= MAX_CHUNK, "gatewayd sent a chunk of {len} bytes");
        buf.get(pos..pos + len)?;
        chunks.push(pos..pos + len);
        largest_chunk = largest_chunk.max(len);
        pos += len;
    }
    let mut body = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
    for chunk in chunks {
        body.extend_from_slice(&buf[chunk]);
    }
    let msg = Msg {
        key,
        declared_size,
        id,
        body,
        largest_chunk,
    };
    Some((msg, pos))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Quic,
    H3,
}

type H3Send = RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type H3Recv = RequestStream<h3_quinn::RecvStream, Bytes>;

/// One QUIC connection to gatewayd's Loom port.
pub struct Client {
    _endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    h3: Option<h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>>,
}

/// A client certificate and its key, for mTLS.
pub type ClientCertificate = (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A raw QUIC connection offering `alpn`.
pub async fn connect_alpn(addr: SocketAddr, alpn: &[u8]) -> (quinn::Endpoint, quinn::Connection) {
    connect_alpn_as(addr, alpn, None).await
}

/// A raw QUIC connection offering `alpn`, presenting `certificate` when given.
pub async fn connect_alpn_as(
    addr: SocketAddr,
    alpn: &[u8],
    certificate: Option<ClientCertificate>,
) -> (quinn::Endpoint, quinn::Connection) {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCertificate::default()));
    let mut tls = match certificate {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = endpoint
        .connect(addr, "localhost")
        .expect("connect")
        .await
        .expect("handshake");
    (endpoint, conn)
}

impl Client {
    pub async fn connect(addr: SocketAddr, transport: Transport) -> Client {
        Client::connect_as(addr, transport, None).await
    }

    /// [`Client::connect`] presenting a client certificate when given.
    pub async fn connect_as(
        addr: SocketAddr,
        transport: Transport,
        certificate: Option<ClientCertificate>,
    ) -> Client {
        match transport {
            Transport::Quic => {
                let (endpoint, conn) = connect_alpn_as(addr, b"loom/1", certificate).await;
                Client {
                    _endpoint: endpoint,
                    conn,
                    h3: None,
                }
            }
            Transport::H3 => {
                let (endpoint, conn) = connect_alpn_as(addr, b"h3", certificate).await;
                let (mut driver, send_request) =
                    h3::client::new(h3_quinn::Connection::new(conn.clone()))
                        .await
                        .expect("h3 client");
                tokio::spawn(async move {
                    let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Client {
                    _endpoint: endpoint,
                    conn,
                    h3: Some(send_request),
                }
            }
        }
    }

    /// A Loom stream (QUIC bidi stream, or `POST /stream`) whose first bytes are `first`.
    pub async fn open(&self, first: &[u8]) -> Stream {
        self.request("POST", "/stream", first).await
    }

    /// Like [`Client::open`] with another HTTP method and path (ignored on raw QUIC).
    pub async fn request(&self, method: &str, path: &str, first: &[u8]) -> Stream {
        match &self.h3 {
            None => {
                let (mut send, recv) = self.conn.open_bi().await.expect("open_bi");
                // A refused stream may be stopped before all of `first` is written; tests look at that later.
                let _ = send.write_all(first).await;
                Stream {
                    send: Half::Quic(send),
                    recv: RecvHalf::Quic(recv),
                    buf: Vec::new(),
                    status: None,
                }
            }
            Some(send_request) => {
                let request = http::Request::builder()
                    .method(method)
                    .uri(format!("https://localhost{path}"))
                    .body(())
                    .unwrap();
                let mut stream = send_request
                    .clone()
                    .send_request(request)
                    .await
                    .expect("h3 request");
                if !first.is_empty() {
                    let _ = stream.send_data(Bytes::copy_from_slice(first)).await;
                }
                let (send, recv) = stream.split();
                Stream {
                    send: Half::H3(Box::new(send)),
                    recv: RecvHalf::H3(recv),
                    buf: Vec::new(),
                    status: None,
                }
            }
        }
    }
}

enum Half {
    Quic(quinn::SendStream),
    H3(Box<H3Send>),
}

enum RecvHalf {
    Quic(quinn::RecvStream),
    H3(H3Recv),
}

/// One Loom session.
pub struct Stream {
    send: Half,
    recv: RecvHalf,
    buf: Vec<u8>,
    status: Option<u16>,
}

impl Stream {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.send {
            Half::Quic(send) => send.write_all(bytes).await.map_err(|e| e.to_string()),
            Half::H3(send) => send
                .send_data(Bytes::copy_from_slice(bytes))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Ends the client→server half.
    pub async fn finish(&mut self) {
        match &mut self.send {
            Half::Quic(send) => {
                let _ = send.finish();
            }
            Half::H3(send) => {
                let _ = send.finish().await;
            }
        }
    }

    /// HTTP/3 response status (waits for the response headers); `None` on raw QUIC.
    pub async fn status(&mut self) -> Option<u16> {
        if let (None, RecvHalf::H3(recv)) = (self.status, &mut self.recv) {
            let response = recv.recv_response().await.ok()?;
            self.status = Some(response.status().as_u16());
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            if self.status == Some(200) && content_type.is_some() {
                assert_eq!(content_type.as_deref(), Some("application/octet-stream"));
            }
        }
        self.status
    }

    /// Appends received bytes; `Ok(false)` at the end of the server→client half.
    async fn read_some(&mut self) -> Result<bool, String> {
        if matches!(self.recv, RecvHalf::H3(_)) {
            self.status().await.ok_or("no response")?;
        }
        match &mut self.recv {
            RecvHalf::Quic(recv) => match recv.read_chunk(1 << 16, true).await {
                Ok(Some(chunk)) => {
                    self.buf.extend_from_slice(&chunk.bytes);
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(e.to_string()),
            },
            RecvHalf::H3(recv) => match recv.recv_data().await {
                Ok(Some(mut data)) => {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let n = chunk.len();
                        self.buf.extend_from_slice(chunk);
                        data.advance(n);
                    }
                    Ok(true)
                }
                Ok(None) => Ok(false),
                Err(e) => Err(e.to_string()),
            },
        }
    }

    /// The next message; `Ok(None)` when the server finished its half between messages.
    pub async fn next(&mut self) -> Result<Option<Msg>, String> {
        loop {
            if let Some((msg, used)) = parse_message(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(msg));
            }
            if !self.read_some().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(format!(
                        "stream ended inside a message ({} bytes)",
                        self.buf.len()
                    ))
                };
            }
        }
    }

    /// Waits until at least `n` bytes of the server→client half arrived (kept for [`Stream::next`]).
    pub async fn received(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            if !self.read_some().await? {
                return Err(format!("stream ended after {} bytes", self.buf.len()));
            }
        }
        Ok(())
    }

    /// Abandons the client→server half: RESET_STREAM with `code` (raw QUIC), a stopped request (HTTP/3).
    pub fn reset(&mut self, code: u32) {
        match &mut self.send {
            Half::Quic(send) => {
                let _ = send.reset(quinn::VarInt::from_u32(code));
            }
            Half::H3(send) => send.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED),
        }
    }

    /// Everything the server sends until it finishes its half.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, String> {
        while self.read_some().await? {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// The STOP_SENDING code the server sent for our half (raw QUIC only).
    pub async fn stopped(&mut self) -> Option<u64> {
        match &mut self.send {
            Half::Quic(send) => send.stopped().await.ok().flatten().map(u64::from),
            Half::H3(_) => None,
        }
    }
}
