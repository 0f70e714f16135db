//! A minimal chanserv client over AstraNet for over-the-socket tests, written from
//! docs/protocols/chanserv.md ("Wire format") with its own codec (it does not use gatewayd's chanserv module):
//! AstraNet ops (29-byte big-endian header), HANDSHAKE / SERVICE lookup, DIAL → SYN → ACK, DATA with REWIND
//! credit, FIN2, PING/PONG; chanserv frames (u64 little-endian length) and the `lz4!` compressed form with a
//! small LZ4 block decoder. Blocking std sockets; every wait has a deadline.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x04;
pub const SYN_ACK: u8 = 0x06;
pub const FIN2: u8 = 0x10;
pub const DATA: u8 = 0x80;
pub const REWIND: u8 = 0x82;
pub const PING: u8 = 0xA0;
pub const PONG: u8 = 0xA1;
pub const DIAL: u8 = 0xBE;
pub const HANDSHAKE: u8 = 0xBF;
pub const SERVICE: u8 = 0xC0;

pub const HEADER_LEN: usize = 29;
pub const WINDOW: usize = 65_536;
/// How long any expected event may take.
pub const WAIT: Duration = Duration::from_secs(10);
/// The Go reader's `FrameSizeLimit`: a longer frame is `ErrWrongSize`.
pub const GO_FRAME_LIMIT: u64 = 100 * 1024 * 1024;

/// One AstraNet op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub cmd: u8,
    pub dst_host: u64,
    pub src_host: u64,
    pub dst_port: u32,
    pub src_port: u32,
    pub payload: Vec<u8>,
}

impl Op {
    pub fn new(cmd: u8, dst: (u64, u32), src: (u64, u32), payload: &[u8]) -> Op {
        Op {
            cmd,
            dst_host: dst.0,
            src_host: src.0,
            dst_port: dst.1,
            src_port: src.1,
            payload: payload.to_vec(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.push(self.cmd);
        out.extend_from_slice(&self.dst_host.to_be_bytes());
        out.extend_from_slice(&self.src_host.to_be_bytes());
        out.extend_from_slice(&self.dst_port.to_be_bytes());
        out.extend_from_slice(&self.src_port.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Takes one whole op off the front of `buf`.
    pub fn decode(buf: &mut Vec<u8>) -> Option<Op> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let u64_at = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().unwrap());
        let len = u32_at(25) as usize;
        if buf.len() < HEADER_LEN + len {
            return None;
        }
        let op = Op {
            cmd: buf[0],
            dst_host: u64_at(1),
            src_host: u64_at(9),
            dst_port: u32_at(17),
            src_port: u32_at(21),
            payload: buf[HEADER_LEN..HEADER_LEN + len].to_vec(),
        };
        buf.drain(..HEADER_LEN + len);
        Some(op)
    }
}

/// Takes one whole frame off the front of `buf`.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = u64::from_le_bytes(buf.get(..8)?.try_into().unwrap()) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    let payload = buf[8..8 + len].to_vec();
    buf.drain(..8 + len);
    Some(payload)
}

/// The Go frame-channel reader's rule: longer than 12 bytes and starting with `lz4!` is compressed.
pub fn decode_item(frame: &[u8]) -> Vec<u8> {
    if frame.len() <= 12 || &frame[..4] != b"lz4!" {
        return frame.to_vec();
    }
    let size = u64::from_le_bytes(frame[4..12].try_into().unwrap()) as usize;
    let out = lz4_block_decode(&frame[12..], size);
    assert_eq!(out.len(), size, "lz4 block decodes to its announced size");
    out
}

/// Decodes a raw LZ4 block (sequences of token, literals, 2-byte offset, match length).
pub fn lz4_block_decode(src: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    let extend = |i: &mut usize, mut n: usize| loop {
        let b = src[*i];
        *i += 1;
        n += b as usize;
        if b != 255 {
            return n;
        }
    };
    loop {
        let token = src[i];
        i += 1;
        let mut literals = (token >> 4) as usize;
        if literals == 15 {
            literals = extend(&mut i, literals);
        }
        out.extend_from_slice(&src[i..i + literals]);
        i += literals;
        if i >= src.len() {
            return out;
        }
        let offset = u16::from_le_bytes([src[i], src[i + 1]]) as usize;
        i += 2;
        let mut length = (token & 15) as usize;
        if length == 15 {
            length = extend(&mut i, length);
        }
        let start = out.len() - offset;
        for k in 0..length + 4 {
            out.push(out[start + k]);
        }
    }
}

/// Decodes an 11-character unpadded base64url host id.
pub fn host_from_text(text: &str) -> u64 {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_eq!(text.len(), 11, "host id {text:?}");
    let mut bits: u128 = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u128;
        bits = (bits << 6) | v;
    }
    // 66 bits for 64: the last character carries two padding bits.
    (bits >> 2) as u64
}

/// Parses a source address `"<host11>:<port>"`.
pub fn parse_addr(text: &str) -> (u64, u32) {
    let (host, port) = text.rsplit_once(':').expect("host:port");
    (host_from_text(host), port.parse().expect("port"))
}

/// The client end of one stream.
#[derive(Debug, Default)]
pub struct Stream {
    pub remote: (u64, u32),
    pub syn: bool,
    pub syn_ack: bool,
    pub buf: Vec<u8>,
    pub fin: bool,
    /// Total DATA bytes received.
    pub received: usize,
    /// Hold REWINDs back (to exhaust the window).
    pub hold_rewind: bool,
    pub unrewound: u32,
}

pub struct Client {
    sock: TcpStream,
    pub host: u64,
    pub server: u64,
    pub raddr: String,
    /// (name, port) from SERVICE.
    pub service: Option<(String, u32)>,
    rx: Vec<u8>,
    next_port: u32,
    pub streams: HashMap<u32, Stream>,
    pub pings: usize,
    pub pongs: usize,
    /// Every opcode received, in order.
    pub seen: Vec<u8>,
    pub closed: bool,
}

impl Client {
    /// Connects without sending anything.
    pub fn connect_raw(addr: SocketAddr, host: u64) -> Client {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Client {
            sock,
            host,
            server: 0,
            raddr: String::new(),
            service: None,
            rx: Vec::new(),
            next_port: 1 << 24,
            streams: HashMap::new(),
            pings: 0,
            pongs: 0,
            seen: Vec::new(),
            closed: false,
        }
    }

    /// Connects, exchanges HANDSHAKEs and waits for the SERVICE advertisement.
    pub fn connect(addr: SocketAddr) -> Client {
        let host = 0x1122_3344_5566_7788 ^ (std::process::id() as u64) << 8 ^ rand_ish();
        let mut client = Client::connect_raw(addr, host & (u64::MAX >> 1));
        client.handshake();
        client.until("SERVICE", |c| c.service.is_some());
        client
    }

    pub fn handshake(&mut self) {
        let body = format!("{{\"RAddr\":\"{}\"}}", self.sock.peer_addr().unwrap());
        self.send(&Op::new(HANDSHAKE, (0, 0), (self.host, 0), body.as_bytes()));
    }

    pub fn send(&mut self, op: &Op) {
        self.send_raw(&op.encode());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        if self.sock.write_all(bytes).is_err() {
            self.closed = true;
        }
    }

    /// Reads what arrives within one short read timeout and handles every whole op.
    pub fn pump(&mut self) {
        let mut chunk = [0u8; 65_536];
        match self.sock.read(&mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => self.closed = true,
        }
        while let Some(op) = Op::decode(&mut self.rx) {
            self.handle(op);
        }
    }

    fn handle(&mut self, op: Op) {
        self.seen.push(op.cmd);
        let me = (self.host, op.dst_port);
        let them = (op.src_host, op.src_port);
        match op.cmd {
            HANDSHAKE => {
                self.server = op.src_host;
                self.raddr = String::from_utf8_lossy(&op.payload).into_owned();
            }
            SERVICE => self.service = Some((String::from_utf8(op.payload).unwrap(), op.src_port)),
            PING => {
                self.pings += 1;
                self.send(&Op::new(PONG, (0, 0), (0, 0), &[]));
            }
            PONG => self.pongs += 1,
            SYN => {
                if let Some(s) = self.streams.get_mut(&op.dst_port) {
                    s.remote = them;
                    s.syn = true;
                    self.send(&Op::new(ACK, them, me, &[]));
                }
            }
            SYN_ACK => {
                if let Some(s) = self.streams.get_mut(&op.dst_port) {
                    s.syn_ack = true;
                }
            }
            DATA => {
                let Some(s) = self.streams.get_mut(&op.dst_port) else {
                    return;
                };
                let n = op.payload.len() as u32;
                s.buf.extend_from_slice(&op.payload);
                s.received += op.payload.len();
                if s.hold_rewind {
                    s.unrewound += n;
                } else {
                    self.send(&Op::new(REWIND, them, me, &n.to_be_bytes()));
                }
            }
            FIN2 => {
                if let Some(s) = self.streams.get_mut(&op.dst_port) {
                    s.fin = true;
                }
            }
            _ => {}
        }
    }

    /// Pumps until `done` holds; panics after [`WAIT`].
    pub fn until(&mut self, what: &str, done: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(!self.closed, "connection closed while waiting for {what}");
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            self.pump();
        }
    }

    /// Pumps for `time` (to show that something does NOT happen).
    pub fn idle(&mut self, time: Duration) {
        let deadline = Instant::now() + time;
        while Instant::now() < deadline && !self.closed {
            self.pump();
        }
    }

    /// Waits until the server closes the TCP connection.
    pub fn wait_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !self.closed {
            assert!(
                Instant::now() < deadline,
                "server did not close the connection"
            );
            self.pump();
        }
    }

    /// Sends DIAL to `to` from a fresh local port; returns that port.
    pub fn dial(&mut self, to: (u64, u32)) -> u32 {
        self.next_port += 1;
        let port = self.next_port;
        self.streams.insert(
            port,
            Stream {
                remote: to,
                ..Stream::default()
            },
        );
        self.send(&Op::new(DIAL, to, (self.host, port), &[]));
        port
    }

    /// Dials and waits for SYN (then ACK is sent).
    pub fn open(&mut self, to: (u64, u32)) -> u32 {
        let port = self.dial(to);
        self.until("SYN", |c| c.streams[&port].syn);
        port
    }

    /// Writes stream bytes as one DATA op.
    pub fn write(&mut self, port: u32, bytes: &[u8]) {
        let remote = self.streams[&port].remote;
        self.send(&Op::new(DATA, remote, (self.host, port), bytes));
    }

    /// Writes a chanserv frame the way Go does: the length prefix and the body as two DATA ops.
    pub fn write_frame(&mut self, port: u32, body: &[u8]) {
        self.write(port, &(body.len() as u64).to_le_bytes());
        if !body.is_empty() {
            self.write(port, body);
        }
    }

    pub fn close(&mut self, port: u32) {
        let remote = self.streams[&port].remote;
        self.send(&Op::new(FIN2, remote, (self.host, port), &[]));
    }

    /// `LookupAndPost(service, body)`: dials the advertised service and writes the request. Returns the master.
    pub fn post(&mut self, body: &[u8]) -> u32 {
        let (_, port) = self.service.clone().expect("SERVICE seen");
        let master = self.open((self.server, port));
        self.write_frame(master, body);
        master
    }

    /// The next frame of a stream; `None` at EOF (FIN2 after the last byte).
    pub fn read_frame(&mut self, port: u32) -> Option<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.streams.get_mut(&port).expect("known stream");
            if let Some(frame) = take_frame(&mut s.buf) {
                return Some(frame);
            }
            if s.fin {
                assert!(s.buf.is_empty(), "stream ended inside a frame");
                return None;
            }
            assert!(!self.closed, "connection closed while reading a frame");
            assert!(Instant::now() < deadline, "timed out reading a frame");
            self.pump();
        }
    }

    /// The first master frame as the Go client's `LookupAndPost` reads it before returning: `Err("wrong frame
    /// size")` when its length is over the Go reader's limit (`ErrWrongSize`, what the call then returns),
    /// `Ok(None)` at EOF (an empty, closed source channel and a nil error), otherwise the frame (a source header).
    pub fn go_first_frame(&mut self, master: u32) -> Result<Option<Vec<u8>>, &'static str> {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.streams.get_mut(&master).expect("known stream");
            if let Some(prefix) = s.buf.get(..8) {
                let len = u64::from_le_bytes(prefix.try_into().unwrap());
                if len > GO_FRAME_LIMIT {
                    return Err("wrong frame size");
                }
                return Ok(self.read_frame(master));
            }
            if s.fin {
                assert!(s.buf.is_empty(), "unexpected EOF inside a length prefix");
                return Ok(None);
            }
            assert!(
                !self.closed,
                "connection closed while waiting for the first frame"
            );
            assert!(
                Instant::now() < deadline,
                "LookupAndPost still blocked: no first master frame"
            );
            self.pump();
        }
    }

    /// The next source announced on a master: (header, address); `None` when the master closes.
    pub fn next_source(&mut self, master: u32) -> Option<(String, (u64, u32))> {
        let header = self.read_frame(master)?;
        let addr = self
            .read_frame(master)
            .expect("address frame after a header");
        let addr = String::from_utf8(addr).unwrap();
        Some((String::from_utf8(header).unwrap(), parse_addr(&addr)))
    }

    /// The next item of a frame channel, decompressed.
    pub fn read_item(&mut self, port: u32) -> Option<Vec<u8>> {
        self.read_frame(port).map(|f| decode_item(&f))
    }

    /// Sends the REWIND credit held back on a stream and stops holding it.
    pub fn release_rewind(&mut self, port: u32) {
        let s = self.streams.get_mut(&port).unwrap();
        s.hold_rewind = false;
        let n = std::mem::take(&mut s.unrewound);
        let remote = s.remote;
        if n > 0 {
            self.send(&Op::new(
                REWIND,
                remote,
                (self.host, port),
                &n.to_be_bytes(),
            ));
        }
    }

    /// Publishes through a request (`PUB <topic>\n<payload>`) and returns the answer's header.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) -> String {
        let mut body = format!("PUB {topic}\n").into_bytes();
        body.extend_from_slice(payload);
        let master = self.post(&body);
        let (header, addr) = self.next_source(master).expect("publish answer");
        let channel = self.open(addr);
        assert_eq!(
            self.read_frame(channel),
            None,
            "the answer's channel is empty"
        );
        assert!(
            self.next_source(master).is_none(),
            "one answer, then the master closes"
        );
        self.close(master);
        self.close(channel);
        header
    }

    /// Subscribes and opens the first `n` announced sources: (master, [(header, channel)]).
    pub fn subscribe(&mut self, body: &str, n: usize) -> (u32, Vec<(String, u32)>) {
        let master = self.post(body.as_bytes());
        let mut sources = Vec::new();
        for _ in 0..n {
            let (header, addr) = self.next_source(master).expect("a source");
            let channel = self.open(addr);
            sources.push((header, channel));
        }
        (master, sources)
    }

    pub fn finished(&self, port: u32) -> bool {
        let s = &self.streams[&port];
        s.fin && s.buf.is_empty()
    }
}

fn rand_ish() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

#[test]
fn lz4_decoder_reads_the_documented_lz4_example() {
    let block = [
        0x4f, 0x61, 0x61, 0x61, 0x61, 0x01, 0x00, 0x1e, 0xb0, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61,
        0x61, 0x61, 0x61, 0x61, 0x61,
    ];
    assert_eq!(lz4_block_decode(&block, 64), vec![b'a'; 64]);
    assert_eq!(host_from_text("VHyWCWr39kI"), 0x547C_9609_6AF7_F642);
}
