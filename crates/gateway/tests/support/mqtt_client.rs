//! A raw MQTT client for the tests: builds packets byte by byte (so tests can also send broken ones), reads
//! whole packets back, and reports a close.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One packet read back: its first byte and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub first: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Packet(Packet),
    Closed,
    Nothing,
}

fn varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            return;
        }
    }
}

fn string(text: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text);
}

/// A whole packet from its first byte and body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// CONNECT at `level` (4 or 5) with clean session, keep-alive `keep_alive` and an optional password.
pub fn connect(level: u8, client_id: &str, keep_alive: u16, password: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.push(level);
    let flags = 0x02 | if password.is_some() { 0xC0 } else { 0 };
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if level == 5 {
        body.push(0);
    }
    string(client_id.as_bytes(), &mut body);
    if let Some(password) = password {
        string(b"user", &mut body);
        string(password.as_bytes(), &mut body);
    }
    packet(0x10, &body)
}

/// A 3.1.1 CONNECT with clean session 0: the session outlives the connection.
pub fn connect_persistent(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.extend_from_slice(&[4, 0x00, 0, 60]);
    string(client_id.as_bytes(), &mut body);
    packet(0x10, &body)
}

/// PUBLISH at QoS 0 (3.1.1 layout; `level` 5 adds an empty property list).
pub fn publish(level: u8, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic.as_bytes(), &mut body);
    if level == 5 {
        body.push(0);
    }
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// SUBSCRIBE one filter at `qos`.
pub fn subscribe(level: u8, pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    if level == 5 {
        body.push(0);
    }
    string(filter.as_bytes(), &mut body);
    body.push(qos);
    packet(0x82, &body)
}

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn open(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).expect("connect to gatewayd");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Opens a socket and connects at `level`; panics unless CONNACK says success.
    pub fn connect(address: SocketAddr, level: u8, client_id: &str) -> Client {
        let mut client = Client::open(address);
        client.send(&connect(level, client_id, 60, None));
        let connack = client.expect_packet(Duration::from_secs(5));
        assert_eq!(connack.kind(), 2, "{connack:?}");
        assert_eq!(connack.body.get(1), Some(&0), "{connack:?}");
        client
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to gatewayd");
    }

    /// Like `send`, but the server may have closed already.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    pub fn receive(&mut self, wait: Duration) -> Received {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(packet) = self.parse() {
                return Received::Packet(packet);
            }
            let now = Instant::now();
            if now >= deadline {
                return Received::Nothing;
            }
            self.stream
                .set_read_timeout(Some(deadline - now))
                .expect("read timeout");
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Received::Nothing
                }
                Err(_) => return Received::Closed,
            }
        }
    }

    pub fn expect_packet(&mut self, wait: Duration) -> Packet {
        match self.receive(wait) {
            Received::Packet(packet) => packet,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// Reads until the server closes; panics on a packet or if it stays open past `wait`.
    pub fn expect_closed(&mut self, wait: Duration) {
        match self.receive(wait) {
            Received::Closed => {}
            other => panic!("expected the server to close, got {other:?}"),
        }
    }

    fn parse(&mut self) -> Option<Packet> {
        let first = *self.buf.first()?;
        let mut length = 0usize;
        let mut shift = 0;
        let mut index = 1;
        loop {
            let byte = *self.buf.get(index)?;
            length |= usize::from(byte & 0x7f) << shift;
            index += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if self.buf.len() < index + length {
            return None;
        }
        let body = self.buf[index..index + length].to_vec();
        self.buf.drain(..index + length);
        Some(Packet { first, body })
    }
}

/// The topic and payload of a QoS 0 PUBLISH body at `level`.
pub fn publish_parts(level: u8, packet: &Packet) -> (String, Vec<u8>) {
    assert_eq!(packet.kind(), 3, "{packet:?}");
    let len = usize::from(u16::from_be_bytes([packet.body[0], packet.body[1]]));
    let topic = String::from_utf8(packet.body[2..2 + len].to_vec()).expect("utf-8 topic");
    let mut rest = 2 + len;
    if (packet.first >> 1) & 3 > 0 {
        rest += 2;
    }
    if level == 5 {
        // The property length is a varint; the tests' properties stay under 128 bytes.
        rest += 1 + usize::from(packet.body[rest]);
    }
    (topic, packet.body[rest..].to_vec())
}
