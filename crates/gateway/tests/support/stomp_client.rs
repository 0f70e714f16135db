//! A blocking STOMP test client with the seed Go `stomp.Peer`'s wire habits
//! (docs/protocols/stomp.md, "Clients it is tested with"): CONNECT with login and passcode only (no
//! accept-version, so a 1.0 session), LF line ends, `content-length` first and then the other
//! headers sorted by name, no escaping, no EOL after the NUL, UNSUBSCRIBE by destination, and no
//! DISCONNECT (it just drops the socket). It can also write raw bytes for the bad-input cases, and it
//! gives the one-token STOMP auth config text that auth_file.rs and stomp.rs share.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A STOMP frame as the seed models it: a header map where the first copy wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame {
            command: command.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Frame {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: &[u8]) -> Frame {
        self.body = body.to_vec();
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The seed writer's output.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        let mut headers = self.headers.clone();
        headers.sort();
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}:{value}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

/// The seed's `frames` builders.
pub mod frames {
    use super::Frame;

    pub fn connect(login: &str, passcode: &str) -> Frame {
        Frame::new("CONNECT")
            .header("login", login)
            .header("passcode", passcode)
    }

    pub fn send_string(destination: &str, body: &str) -> Frame {
        Frame::new("SEND")
            .header("destination", destination)
            .body(body.as_bytes())
    }

    pub fn subscribe(destination: &str, ack: &str, id: &str) -> Frame {
        let mut frame = Frame::new("SUBSCRIBE").header("destination", destination);
        if !ack.is_empty() {
            frame = frame.header("ack", ack);
        }
        if !id.is_empty() {
            frame = frame.header("id", id);
        }
        frame
    }

    pub fn unsubscribe(destination: &str, id: &str) -> Frame {
        let mut frame = Frame::new("UNSUBSCRIBE").header("destination", destination);
        if !id.is_empty() {
            frame = frame.header("id", id);
        }
        frame
    }
}

/// What one receive saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Frame(Frame),
    /// The server closed the connection.
    Closed,
    /// Nothing within the wait.
    Nothing,
}

pub struct Peer {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Heart-beat EOLs skipped so far (the one EOL gatewayd writes after each frame's NUL excluded).
    pub heart_beats: usize,
    after_frame: bool,
}

impl Peer {
    pub fn open(address: SocketAddr) -> Peer {
        let stream = TcpStream::connect(address).expect("connect to gatewayd");
        stream.set_nodelay(true).expect("nodelay");
        Peer {
            stream,
            buf: Vec::new(),
            heart_beats: 0,
            after_frame: false,
        }
    }

    /// Opens a socket and completes the seed's CONNECT.
    pub fn connect(address: SocketAddr) -> Peer {
        let mut peer = Peer::open(address);
        peer.send(&frames::connect("guest", "guest"));
        let connected = peer.expect_frame(Duration::from_secs(5));
        assert_eq!(connected.command, "CONNECTED", "{connected:?}");
        peer
    }

    pub fn send(&mut self, frame: &Frame) {
        self.send_raw(&frame.to_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to gatewayd");
    }

    /// Like `send_raw`, but the server may already have closed.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next frame within `wait` (heart-beats are skipped and counted).
    pub fn receive(&mut self, wait: Duration) -> Received {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(frame) = self.parse() {
                return Received::Frame(frame);
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

    /// The MESSAGE frames received until the connection has been quiet for `quiet`, the first within `first`;
    /// panics on any other frame.
    pub fn messages(&mut self, first: Duration, quiet: Duration) -> Vec<Frame> {
        let mut messages = Vec::new();
        while let Received::Frame(frame) =
            self.receive(if messages.is_empty() { first } else { quiet })
        {
            assert_eq!(frame.command, "MESSAGE", "{frame:?}");
            messages.push(frame);
        }
        messages
    }

    pub fn expect_frame(&mut self, wait: Duration) -> Frame {
        match self.receive(wait) {
            Received::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until the server closes; panics on a frame or if it stays open past `wait`.
    pub fn expect_closed(&mut self, wait: Duration) {
        match self.receive(wait) {
            Received::Closed => {}
            other => panic!("expected the server to close, got {other:?}"),
        }
    }

    /// The seed's `Shutdown()`: drop the socket, no DISCONNECT.
    pub fn shutdown(self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// One frame from the front of the buffer, if complete.
    fn parse(&mut self) -> Option<Frame> {
        while matches!(self.buf.first(), Some(b'\n')) {
            self.buf.remove(0);
            if !std::mem::take(&mut self.after_frame) {
                self.heart_beats += 1;
            }
        }
        let head_end = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split('\n');
        let command = lines.next()?.to_owned();
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':')?;
            headers.push((name.to_owned(), value.to_owned()));
        }
        let frame_head = Frame {
            command,
            headers,
            body: Vec::new(),
        };
        let body_start = head_end + 2;
        let (body_end, next) = match frame_head.get("content-length") {
            Some(length) => {
                let length: usize = length.parse().ok()?;
                let end = body_start + length;
                if self.buf.len() <= end {
                    return None;
                }
                assert_eq!(self.buf[end], 0, "NUL after the content-length body");
                (end, end + 1)
            }
            None => {
                let nul = self.buf[body_start..].iter().position(|&b| b == 0)?;
                (body_start + nul, body_start + nul + 1)
            }
        };
        let body = self.buf[body_start..body_end].to_vec();
        self.buf.drain(..next);
        self.after_frame = true;
        Some(Frame { body, ..frame_head })
    }
}

/// Config text requiring STOMP auth, with the one login `app` (identity `app`) and passcode `token`.
pub fn app_token_auth(token: &str) -> String {
    format!(
        r#"
[stomp.auth]
required = true

[[stomp.auth.tokens]]
login = "app"
token = "{token}"
identity = {{ name = "app" }}
"#
    )
}
