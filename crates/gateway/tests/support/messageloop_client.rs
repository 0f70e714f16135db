//! Test clients for MessageLoop, written from the wire reference rather than from gatewayd's code: a blocking
//! WebSocket client that speaks protojson as `serde_json` values, the same client with protobuf frames using
//! this file's own prost message definitions (G2 subset), and a gRPC client on the generated message types.
//!
//! Both read every server message as strictly as the real SDKs (`protocols::messageloop::conformance`, on the
//! repository's `.proto` descriptors): the WebSocket client works out which generations the messages it sent
//! belong to (each must read strictly as that generation's envelope; a Connect version of major 2 is G2, of
//! major 0 or 1 G0 or G1) and fails on a reply those generations cannot read. G0's SDK rejects unknown keys;
//! G1's and G2's drop them, so while the client may still be G0 or G1 a reply must read strictly as G0 and
//! with G1 types, and once one generation is left, strictly as it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use clients::tls::AnyCertificate;
use protocols::messageloop::conformance::{
    check_json, check_protobuf, inbound_name, outbound_name, UnknownKeys,
};
use protocols::messageloop::Generation;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// How long a test waits for one frame.
pub const WAIT: Duration = Duration::from_secs(10);

/// What a read returned.
#[derive(Debug)]
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
    /// Close status and reason.
    Closed(u16, String),
}

/// A byte stream under the WebSocket: plain TCP or TLS.
pub trait Io: Read + Write + Send {}
impl<T: Read + Write + Send> Io for T {}

/// A blocking WebSocket connection to `messageloop.ws`.
pub struct Ws {
    socket: WebSocket<Box<dyn Io>>,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// The JSON messages sent so far, to tell the generation.
    sent: Vec<Value>,
}

/// The generations whose client sends `sent`: every message must read strictly as the generation's envelope
/// (messages no generation reads, hostile input, are left out), and a Connect's version settles G2 against the
/// others.
fn generations_of(sent: &[Value]) -> Vec<Generation> {
    let mut left = vec![Generation::G0, Generation::G1, Generation::G2];
    for message in sent {
        let reads: Vec<Generation> = left
            .iter()
            .copied()
            .filter(|generation| {
                check_json(inbound_name(*generation), message, UnknownKeys::Reject).is_ok()
            })
            .collect();
        if !reads.is_empty() {
            left = reads;
        }
        if let Some(version) = message
            .get("connect")
            .and_then(|connect| connect.get("version"))
            .and_then(Value::as_str)
        {
            let major = version
                .split('.')
                .next()
                .and_then(|m| m.parse::<u64>().ok());
            left.retain(|generation| {
                (*generation == Generation::G2) == !matches!(major, Some(0 | 1))
            });
        }
    }
    left
}

/// Fails unless `reply` reads as every generation of `generations` reads it (see the module doc).
fn check_reply(generations: &[Generation], reply: &Value) {
    let g0_possible = generations.contains(&Generation::G0);
    for generation in generations {
        let unknown = if *generation == Generation::G0 || !g0_possible {
            UnknownKeys::Reject
        } else {
            UnknownKeys::Discard
        };
        if let Err(err) = check_json(outbound_name(*generation), reply, unknown) {
            panic!("a {generation} client cannot read {reply}: {err}");
        }
    }
}

impl Ws {
    /// Opens `ws://addr/ws`, offering `subprotocols` (comma-joined) when non-empty.
    pub fn connect(addr: SocketAddr, subprotocols: &[&str]) -> Ws {
        let tcp = TcpStream::connect(addr).expect("tcp connect");
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        Ws::handshake_over(Box::new(tcp), &format!("ws://{addr}/ws"), subprotocols)
    }

    /// Opens `wss://addr/ws` trusting any server certificate (the test server's is self-signed).
    pub fn connect_tls(addr: SocketAddr, subprotocols: &[&str]) -> Ws {
        let connection = trusting_tls_client();
        let tcp = TcpStream::connect(addr).expect("tcp connect");
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let tls = rustls::StreamOwned::new(connection, tcp);
        Ws::handshake_over(Box::new(tls), &format!("wss://{addr}/ws"), subprotocols)
    }

    fn handshake_over(stream: Box<dyn Io>, url: &str, subprotocols: &[&str]) -> Ws {
        let mut request = url.into_client_request().unwrap();
        if !subprotocols.is_empty() {
            request.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&subprotocols.join(", ")).unwrap(),
            );
        }
        let (socket, response) = tungstenite::client(request, stream).expect("websocket handshake");
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ws {
            socket,
            subprotocol,
            sent: Vec::new(),
        }
    }

    pub fn send_text(&mut self, text: &str) {
        if let Ok(message) = serde_json::from_str(text) {
            self.sent.push(message);
        }
        self.socket.send(Message::text(text)).expect("send text");
    }

    pub fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::binary(bytes))
            .expect("send binary");
    }

    /// Sends one JSON envelope as a text frame.
    pub fn send(&mut self, envelope: Value) {
        self.send_text(&envelope.to_string());
    }

    /// The next data frame or the close. Data frames are checked as the client's generations read them;
    /// binary frames as G2, the only generation these tests speak in WebSocket protobuf.
    pub fn read(&mut self) -> Received {
        loop {
            match self.socket.read() {
                Ok(Message::Text(text)) => {
                    let reply: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|err| panic!("server sent {text:?}, not JSON: {err}"));
                    check_reply(&generations_of(&self.sent), &reply);
                    return Received::Text(text.to_string());
                }
                Ok(Message::Binary(bytes)) => {
                    if let Err(err) = check_protobuf(outbound_name(Generation::G2), &bytes) {
                        panic!("a G2 client cannot read {bytes:?}: {err}");
                    }
                    return Received::Binary(bytes.to_vec());
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f: CloseFrame| {
                        (u16::from(f.code), f.reason.to_string())
                    });
                    return Received::Closed(code, reason);
                }
                Ok(_) => continue,
                Err(error) => panic!("websocket read: {error}"),
            }
        }
    }

    /// The next JSON envelope (a text frame).
    pub fn recv(&mut self) -> Value {
        match self.read() {
            Received::Text(text) => serde_json::from_str(&text).expect("json envelope"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// Reads JSON envelopes until one has key `kind`, skipping others (presence frames and the like).
    pub fn recv_kind(&mut self, kind: &str) -> Value {
        for _ in 0..50 {
            let envelope = self.recv();
            if envelope.get(kind).is_some() {
                return envelope;
            }
        }
        panic!("no {kind} envelope");
    }

    /// Reads until the close frame and returns its status and reason, with the text frames before it.
    pub fn expect_close(&mut self) -> (u16, String, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            match self.read() {
                Received::Closed(code, reason) => return (code, reason, before),
                Received::Text(text) => before.push(serde_json::from_str(&text).unwrap()),
                Received::Binary(_) => {}
            }
        }
    }

    /// Connect (G2 JSON unless `version` says otherwise) and wait for Connected.
    pub fn handshake(&mut self, version: &str, token: &str) -> Value {
        self.send(serde_json::json!({
            "id": "c1",
            "connect": {"client_id": "rust-test", "client_type": "sdk", "version": version, "token": token}
        }));
        let connected = self.recv_kind("connected");
        assert_eq!(connected["id"], "c1");
        connected
    }

    pub fn subscribe(&mut self, id: &str, channels: &[&str]) -> Value {
        let subscriptions: Vec<Value> = channels
            .iter()
            .map(|c| serde_json::json!({"channel": c}))
            .collect();
        self.send(serde_json::json!({"id": id, "subscribe": {"subscriptions": subscriptions}}));
        let ack = self.recv_kind("subscribe_ack");
        assert_eq!(ack["id"], id);
        ack
    }

    pub fn close(mut self) {
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }
}

/// G2 protobuf messages (field numbers as in `crates/protocols/proto/messageloop/g2/client.proto`), the subset the tests use.
pub mod g2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InboundMessage {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "3")]
        pub connect: Option<Connect>,
        #[prost(message, optional, tag = "4")]
        pub subscribe: Option<Subscribe>,
        #[prost(message, optional, tag = "6")]
        pub publish: Option<Publish>,
        #[prost(message, optional, tag = "11")]
        pub ping: Option<Empty>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Connect {
        #[prost(string, tag = "1")]
        pub client_id: String,
        #[prost(string, tag = "2")]
        pub client_type: String,
        #[prost(string, tag = "3")]
        pub token: String,
        #[prost(string, tag = "4")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Subscription {
        #[prost(string, tag = "1")]
        pub channel: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Subscribe {
        #[prost(message, repeated, tag = "1")]
        pub subscriptions: Vec<Subscription>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        #[prost(string, tag = "1")]
        pub content_type: String,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub binary: Option<Vec<u8>>,
        #[prost(string, optional, tag = "4")]
        pub text: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Publish {
        #[prost(string, tag = "1")]
        pub channel: String,
        #[prost(message, optional, tag = "2")]
        pub payload: Option<Payload>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OutboundMessage {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(uint64, tag = "2")]
        pub time: u64,
        #[prost(message, optional, tag = "3")]
        pub error: Option<Error>,
        #[prost(message, optional, tag = "4")]
        pub connected: Option<Connected>,
        #[prost(message, optional, tag = "5")]
        pub subscribe_ack: Option<Empty>,
        #[prost(message, optional, tag = "7")]
        pub publish_ack: Option<PublishAck>,
        #[prost(message, optional, tag = "8")]
        pub publication: Option<Publication>,
        #[prost(message, optional, tag = "15")]
        pub presence: Option<Empty>,
        #[prost(message, optional, tag = "18")]
        pub pong: Option<Empty>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Error {
        #[prost(string, tag = "1")]
        pub code: String,
        #[prost(string, tag = "2")]
        pub r#type: String,
        #[prost(string, tag = "3")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Connected {
        #[prost(string, tag = "1")]
        pub session_id: String,
        #[prost(string, tag = "4")]
        pub stream_epoch: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Position {
        #[prost(string, tag = "1")]
        pub stream_epoch: String,
        #[prost(uint64, optional, tag = "2")]
        pub offset: Option<u64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PublishAck {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(message, optional, tag = "2")]
        pub position: Option<Position>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(string, tag = "1")]
        pub id: String,
        #[prost(string, tag = "2")]
        pub channel: String,
        #[prost(message, optional, tag = "3")]
        pub position: Option<Position>,
        #[prost(message, optional, tag = "4")]
        pub payload: Option<Payload>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Publication {
        #[prost(message, repeated, tag = "1")]
        pub messages: Vec<Message>,
    }
}

impl Ws {
    pub fn send_proto(&mut self, message: &g2::InboundMessage) {
        self.send_binary(prost::Message::encode_to_vec(message));
    }

    /// The next protobuf envelope (a binary frame).
    pub fn recv_proto(&mut self) -> g2::OutboundMessage {
        match self.read() {
            Received::Binary(bytes) => {
                <g2::OutboundMessage as prost::Message>::decode(bytes.as_slice()).expect("protobuf")
            }
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

/// gRPC plumbing: a bidi stream on one generation's service, each server message checked strictly as that
/// generation's envelope before it is decoded.
/// A TLS client for `localhost` that accepts any server certificate (test servers' are self-signed).
pub fn trusting_tls_client() -> rustls::ClientConnection {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::default()))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    rustls::ClientConnection::new(Arc::new(config), name).unwrap()
}

pub mod grpc {
    use std::marker::PhantomData;
    use std::net::SocketAddr;

    use bytes::Buf;
    use protocols::messageloop::conformance::{check_protobuf, outbound_name};
    use protocols::messageloop::Generation;
    use tokio::sync::mpsc;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::http::uri::PathAndQuery;
    use tonic::{Status, Streaming};

    pub use protocols::messageloop::pb::messageloop::client::v1 as g1;
    pub use protocols::messageloop::pb::messageloop::client::v2 as g2;
    pub use protocols::messageloop::pb::messageloop::v1 as g0;

    /// One open stream.
    pub struct Stream<In, Out> {
        pub tx: mpsc::Sender<In>,
        pub rx: Streaming<Out>,
    }

    impl<In, Out> Stream<In, Out> {
        pub async fn send(&self, message: In) {
            self.tx.send(message).await.expect("stream open");
        }

        /// The next message; `None` when the stream ended with status OK.
        pub async fn next(&mut self) -> Option<Out> {
            tokio::time::timeout(super::WAIT, self.rx.message())
                .await
                .expect("grpc message in time")
                .expect("grpc status OK")
        }
    }

    /// protobuf in, protobuf out; what comes in must carry no field `generation` lacks.
    struct StrictCodec<In, Out> {
        generation: Generation,
        _types: PhantomData<(In, Out)>,
    }

    struct ProtoEncoder<In>(PhantomData<In>);

    impl<In: prost::Message> Encoder for ProtoEncoder<In> {
        type Item = In;
        type Error = Status;

        fn encode(&mut self, item: In, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.reserve(item.encoded_len());
            item.encode(dst)
                .map_err(|err| Status::internal(err.to_string()))
        }
    }

    struct StrictDecoder<Out> {
        generation: Generation,
        _type: PhantomData<Out>,
    }

    impl<Out: prost::Message + Default> Decoder for StrictDecoder<Out> {
        type Item = Out;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Out>, Status> {
            let bytes = src.copy_to_bytes(src.remaining());
            let generation = self.generation;
            if let Err(err) = check_protobuf(outbound_name(generation), &bytes) {
                panic!("a {generation} gRPC client cannot read {bytes:?}: {err}");
            }
            Out::decode(bytes)
                .map(Some)
                .map_err(|err| Status::internal(err.to_string()))
        }
    }

    impl<In, Out> Codec for StrictCodec<In, Out>
    where
        In: prost::Message + Send + 'static,
        Out: prost::Message + Default + Send + 'static,
    {
        type Encode = In;
        type Decode = Out;
        type Encoder = ProtoEncoder<In>;
        type Decoder = StrictDecoder<Out>;

        fn encoder(&mut self) -> ProtoEncoder<In> {
            ProtoEncoder(PhantomData)
        }

        fn decoder(&mut self) -> StrictDecoder<Out> {
            StrictDecoder {
                generation: self.generation,
                _type: PhantomData,
            }
        }
    }

    /// A gRPC client on one new connection to `addr`, ready for a call.
    async fn client(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("grpc connect");
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.expect("grpc ready");
        client
    }

    async fn open<In, Out>(addr: SocketAddr, generation: Generation) -> Stream<In, Out>
    where
        In: prost::Message + Send + Sync + 'static,
        Out: prost::Message + Default + Send + 'static,
    {
        let mut client = client(addr).await;
        let (tx, rx) = mpsc::channel::<In>(16);
        let outbound =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let codec = StrictCodec {
            generation,
            _types: PhantomData,
        };
        let path = PathAndQuery::from_static(generation.grpc_path());
        let rx = client
            .streaming(tonic::Request::new(outbound), path, codec)
            .await
            .expect("open stream")
            .into_inner();
        Stream { tx, rx }
    }

    /// The status of a unary call to `path` (a G2 Connect as its request), as a client sees it.
    pub async fn unary_status(addr: SocketAddr, path: &'static str) -> Status {
        let mut client = client(addr).await;
        let codec: StrictCodec<g2::InboundMessage, g2::OutboundMessage> = StrictCodec {
            generation: Generation::G2,
            _types: PhantomData,
        };
        let request = g2_inbound(
            "c",
            g2::inbound_message::Envelope::Connect(g2::Connect::default()),
        );
        let call = client.unary(
            tonic::Request::new(request),
            PathAndQuery::from_static(path),
            codec,
        );
        match tokio::time::timeout(super::WAIT, call)
            .await
            .expect("answer in time")
        {
            Ok(reply) => panic!("{path} answered {:?}", reply.into_inner()),
            Err(status) => status,
        }
    }

    /// A G2 message with `id` (time 0) carrying `envelope`.
    pub fn g2_inbound(id: &str, envelope: g2::inbound_message::Envelope) -> g2::InboundMessage {
        g2::InboundMessage {
            id: id.into(),
            time: 0,
            envelope: Some(envelope),
        }
    }

    /// A G2 Subscribe, with `id`, to the one `channel`.
    pub fn g2_subscribe(id: &str, channel: &str) -> g2::InboundMessage {
        let subscription = g2::Subscription {
            channel: channel.into(),
            ..Default::default()
        };
        g2_inbound(
            id,
            g2::inbound_message::Envelope::Subscribe(g2::Subscribe {
                subscriptions: vec![subscription],
            }),
        )
    }

    pub async fn open_g2(addr: SocketAddr) -> Stream<g2::InboundMessage, g2::OutboundMessage> {
        open(addr, Generation::G2).await
    }

    /// A G2 stream whose requests are `google.protobuf.BytesValue`s (prost's `Vec<u8>`): field 1 carries any bytes
    /// where an `InboundMessage` has its string `id`, so a request of bytes that are not UTF-8 does not decode.
    pub async fn open_g2_raw(addr: SocketAddr) -> Stream<Vec<u8>, g2::OutboundMessage> {
        open(addr, Generation::G2).await
    }

    /// A G2 stream that has sent an anonymous Connect (id `c`, version 2.0.0) and read its reply.
    pub async fn connected_g2(addr: SocketAddr) -> Stream<g2::InboundMessage, g2::OutboundMessage> {
        let mut stream = open_g2(addr).await;
        stream
            .send(g2_inbound(
                "c",
                g2::inbound_message::Envelope::Connect(g2::Connect {
                    version: "2.0.0".into(),
                    ..Default::default()
                }),
            ))
            .await;
        stream.next().await.expect("connected");
        stream
    }

    pub async fn open_g1(addr: SocketAddr) -> Stream<g1::InboundMessage, g1::OutboundMessage> {
        open(addr, Generation::G1).await
    }

    pub async fn open_g0(addr: SocketAddr) -> Stream<g0::InboundMessage, g0::OutboundMessage> {
        open(addr, Generation::G0).await
    }
}
