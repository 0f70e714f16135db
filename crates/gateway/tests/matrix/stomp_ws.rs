//! A blocking STOMP 1.2 client over WebSocket (subprotocol `v12.stomp`) for the cross-protocol tests: one frame
//! per WebSocket message each way, as stompjs does. Frames are the STOMP test client's [`Frame`]; headers are
//! written and read unescaped (the tests use no `:`, CR or LF in values).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

use crate::stomp_client::Frame;

pub struct StompWs {
    socket: WebSocket<TcpStream>,
}

impl StompWs {
    /// Opens `ws://addr/ws` with `v12.stomp` and completes CONNECT (1.2, no heart-beats).
    pub fn connect(addr: SocketAddr) -> StompWs {
        let tcp = TcpStream::connect(addr).expect("tcp connect");
        tcp.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("read timeout");
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("url");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v12.stomp"),
        );
        let (socket, _) = tungstenite::client(request, tcp).expect("websocket handshake");
        let mut client = StompWs { socket };
        client.send(
            &Frame::new("CONNECT")
                .header("accept-version", "1.2")
                .header("host", "gatewayd")
                .header("heart-beat", "0,0"),
        );
        let connected = client.receive();
        assert_eq!(connected.command, "CONNECTED", "{connected:?}");
        client
    }

    /// Sends `frame` as one WebSocket message (binary when the body is not UTF-8).
    pub fn send(&mut self, frame: &Frame) {
        let mut bytes = format!("{}\n", frame.command).into_bytes();
        for (name, value) in &frame.headers {
            bytes.extend_from_slice(format!("{name}:{value}\n").as_bytes());
        }
        bytes.extend_from_slice(format!("content-length:{}\n\n", frame.body.len()).as_bytes());
        bytes.extend_from_slice(&frame.body);
        bytes.push(0);
        let message = match String::from_utf8(bytes) {
            Ok(text) => Message::text(text),
            Err(e) => Message::binary(e.into_bytes()),
        };
        self.socket.send(message).expect("websocket send");
    }

    /// The next frame (heart-beat messages skipped).
    pub fn receive(&mut self) -> Frame {
        loop {
            let data = match self.socket.read().expect("websocket read") {
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Close(close) => panic!("STOMP over WebSocket closed: {close:?}"),
                _ => continue,
            };
            if data.iter().all(|&b| b == b'\n' || b == b'\r') {
                continue;
            }
            return parse(&data);
        }
    }
}

fn parse(data: &[u8]) -> Frame {
    let head_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("frame head");
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split('\n');
    let mut frame = Frame::new(lines.next().expect("command"));
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
        frame = frame.header(name, value);
    }
    let body = &data[head_end + 2..];
    let body = match frame.get("content-length") {
        Some(length) => &body[..length.parse::<usize>().expect("content-length")],
        None => &body[..body.iter().position(|&b| b == 0).expect("NUL")],
    };
    frame.body(body)
}
