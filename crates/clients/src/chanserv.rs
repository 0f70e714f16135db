//! chanserv client over AstraNet (plain TCP), with gatewayd's AstraNet op and chanserv frame codecs. One task
//! owns the link: it answers HANDSHAKE and PING, learns the advertised service, and multiplexes the virtual
//! streams (DIAL → SYN → ACK, DATA with REWIND credit, FIN2). A publish is one `LookupAndPost` of
//! `PUB <topic>\n<payload>` whose answer header is the broker's [`PublishReply`] (`ok…` or `err <reason>`); a subscribe posts the selector and
//! dials every source the server announces, each frame of a source being one message.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use protocols::chanserv::astranet::op::decode as decode_op;
use protocols::chanserv::astranet::{Addr, HostId, Op, Opcode};
use protocols::chanserv::codec::frame::{self, FrameDecoder};
use protocols::chanserv::codec::selector::PublishReply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::{
    resolve, ClientError, Credentials, Inbox, InboxSender, Incoming, Message, Outgoing,
    HANDSHAKE_TIMEOUT,
};

/// Largest frame accepted from the server.
const FRAME_LIMIT: u64 = 64 << 20;
/// First local port; AstraNet clients count up from here.
const PORT_BASE: u32 = 1 << 24;
/// The most request bytes one DATA op carries: a request over the op payload limit (64 KiB) is split, as the Go
/// client's stream writes are.
const DATA_CHUNK: usize = 32 << 10;

pub struct ChanservClient {
    commands: mpsc::Sender<Command>,
    inbox: Inbox,
    /// `AUTH <token>\n`, put in front of every request when there is a token.
    auth: Bytes,
}

enum Command {
    Publish {
        body: Bytes,
        answer: oneshot::Sender<Result<String, ClientError>>,
    },
    Subscribe {
        body: Bytes,
        answer: oneshot::Sender<Result<(), ClientError>>,
    },
}

impl ChanservClient {
    /// Connects; `credentials.token` is sent as an `AUTH <token>` line in front of every request.
    pub async fn connect(
        address: &str,
        credentials: &Credentials,
    ) -> Result<ChanservClient, ClientError> {
        let auth = match &credentials.token {
            Some(token) if token.contains('\n') => {
                return Err(ClientError::Credentials(
                    "the token holds a line break".into(),
                ))
            }
            Some(token) => Bytes::from(format!("AUTH {token}\n")),
            None => Bytes::new(),
        };
        let tcp = TcpStream::connect(resolve(address).await?).await?;
        tcp.set_nodelay(true)?;
        let host =
            HostId(u64::from(std::process::id()) << 24 | u64::from(rand::random::<u32>() >> 8) | 1);
        let mut link = Link::new(tcp, host);
        let hello = format!("{{\"RAddr\":\"{}\"}}", link.tcp.peer_addr()?);
        link.send(
            Op::new(
                Opcode::Handshake,
                Addr::default(),
                Addr::new(host, 0),
                Bytes::from(hello),
            )
            .map_err(|e| ClientError::Protocol(e.to_string()))?,
        );
        link.write().await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            while link.service.is_none() {
                link.read_some().await?;
            }
            Ok::<_, ClientError>(())
        })
        .await
        .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        let (commands, rx) = mpsc::channel(1024);
        let (tx, inbox) = Inbox::new();
        tokio::spawn(link.run(rx, tx));
        Ok(ChanservClient {
            commands,
            inbox,
            auth,
        })
    }

    pub async fn publish(&mut self, message: &Outgoing) -> Result<(), ClientError> {
        let mut body = BytesMut::with_capacity(
            self.auth.len() + message.topic.len() + 5 + message.payload.len(),
        );
        body.extend_from_slice(&self.auth);
        body.extend_from_slice(b"PUB ");
        body.extend_from_slice(message.topic.as_bytes());
        body.extend_from_slice(b"\n");
        body.extend_from_slice(&message.payload);
        let (answer, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish {
                body: body.freeze(),
                answer,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        let header = rx.await.map_err(|_| ClientError::Closed)??;
        match PublishReply::parse(header.as_bytes()) {
            Some(PublishReply::Ok { .. }) => Ok(()),
            _ => Err(ClientError::Refused(header.trim().to_owned())),
        }
    }

    /// Posts the selector; returns once the request is on its way (sources are dialled as announced).
    pub async fn subscribe(&mut self, topic: &str) -> Result<(), ClientError> {
        let (answer, rx) = oneshot::channel();
        self.commands
            .send(Command::Subscribe {
                body: [&self.auth[..], topic.as_bytes(), b"\n"].concat().into(),
                answer,
            })
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    pub async fn next_message(&mut self) -> Result<Message, ClientError> {
        self.inbox.next_message().await
    }

    pub async fn close(self) -> Result<(), ClientError> {
        Ok(())
    }
}

/// What a virtual stream is for.
enum Role {
    /// The request stream of a publish: the answer header comes first.
    PublishMaster(Option<oneshot::Sender<Result<String, ClientError>>>),
    /// The request stream of a subscribe: (header, address) pairs announce sources.
    SubscribeMaster { header: Option<String> },
    /// A source: every frame is one message on `topic`.
    Source { topic: Option<String> },
    /// A source we only close (the empty channel of a publish answer).
    Discard,
}

struct Stream {
    remote: Addr,
    role: Role,
    buf: BytesMut,
    /// Request body to write once the server has answered the DIAL.
    request: Option<Bytes>,
}

struct Link {
    tcp: TcpStream,
    host: HostId,
    server: HostId,
    service: Option<u32>,
    rx: BytesMut,
    tx: BytesMut,
    next_port: u32,
    streams: HashMap<u32, Stream>,
    frames: FrameDecoder,
}

impl Link {
    fn new(tcp: TcpStream, host: HostId) -> Link {
        Link {
            tcp,
            host,
            server: HostId::ANYONE,
            service: None,
            rx: BytesMut::with_capacity(64 << 10),
            tx: BytesMut::new(),
            next_port: PORT_BASE,
            streams: HashMap::new(),
            frames: FrameDecoder::new(FRAME_LIMIT),
        }
    }

    fn send(&mut self, op: Op) {
        op.encode(&mut self.tx);
    }

    async fn write(&mut self) -> Result<(), ClientError> {
        if !self.tx.is_empty() {
            self.tcp.write_all(&self.tx).await?;
            self.tx.clear();
        }
        Ok(())
    }

    /// Reads once and handles every whole op (answers go to `tx`, messages to `inbox`).
    async fn read_some(&mut self) -> Result<Vec<Incoming>, ClientError> {
        if self.tcp.read_buf(&mut self.rx).await? == 0 {
            return Err(ClientError::Closed);
        }
        let mut out = Vec::new();
        while let Some(op) =
            decode_op(&mut self.rx).map_err(|e| ClientError::Protocol(e.to_string()))?
        {
            self.handle(op, &mut out)?;
        }
        self.write().await?;
        Ok(out)
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, inbox: InboxSender) {
        let result: Result<(), ClientError> = async {
            loop {
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => self.command(command),
                        None => return Ok(()),
                    },
                    read = self.read_some() => {
                        let events = read?.into_iter().map(Ok).collect();
                        if inbox.send_all(events).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                self.write().await?;
            }
        }
        .await;
        if let Err(error) = result {
            let _ = inbox.send(Err(error)).await;
        }
    }

    fn command(&mut self, command: Command) {
        let Some(service) = self.service else {
            return;
        };
        let (role, body) = match command {
            Command::Publish { body, answer } => (Role::PublishMaster(Some(answer)), body),
            Command::Subscribe { body, answer } => {
                let _ = answer.send(Ok(()));
                (Role::SubscribeMaster { header: None }, body)
            }
        };
        self.dial(Addr::new(self.server, service), role, Some(body));
    }

    fn dial(&mut self, remote: Addr, role: Role, request: Option<Bytes>) {
        self.next_port = self.next_port.wrapping_add(1).max(PORT_BASE);
        let port = self.next_port;
        self.streams.insert(
            port,
            Stream {
                remote,
                role,
                buf: BytesMut::new(),
                request,
            },
        );
        self.send(Op::empty(Opcode::Dial, remote, Addr::new(self.host, port)));
    }

    fn handle(&mut self, op: Op, out: &mut Vec<Incoming>) -> Result<(), ClientError> {
        let me = Addr::new(self.host, op.dst.port);
        match op.opcode {
            Opcode::Handshake => self.server = op.src.host,
            Opcode::Service => self.service = Some(op.src.port),
            Opcode::Ping => self.send(Op::empty(Opcode::Pong, Addr::default(), Addr::default())),
            Opcode::Syn => {
                let Some(stream) = self.streams.get_mut(&op.dst.port) else {
                    return Ok(());
                };
                stream.remote = op.src;
                let remote = op.src;
                let request = stream.request.take();
                let discard = matches!(stream.role, Role::Discard);
                self.send(Op::empty(Opcode::Ack, remote, me));
                if let Some(body) = request {
                    let mut framed = BytesMut::with_capacity(body.len() + 8);
                    frame::encode(&body, &mut framed)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    let mut framed = framed.freeze();
                    while !framed.is_empty() {
                        let chunk = framed.split_to(framed.len().min(DATA_CHUNK));
                        self.send(
                            Op::new(Opcode::Data, remote, me, chunk)
                                .map_err(|e| ClientError::Protocol(e.to_string()))?,
                        );
                    }
                }
                if discard {
                    self.close(op.dst.port);
                }
            }
            Opcode::Data => {
                let Some(stream) = self.streams.get_mut(&op.dst.port) else {
                    return Ok(());
                };
                let credit = u32::try_from(op.payload().len()).unwrap_or(u32::MAX);
                stream.buf.extend_from_slice(op.payload());
                let remote = stream.remote;
                self.send(Op::with_u32(Opcode::Rewind, remote, me, credit));
                self.frames_of(op.dst.port, out)?;
            }
            Opcode::Fin1 | Opcode::Fin2 | Opcode::Err | Opcode::ForceClosed => {
                if let Some(stream) = self.streams.remove(&op.dst.port) {
                    if let Role::PublishMaster(Some(answer)) = stream.role {
                        let _ = answer.send(Err(ClientError::Closed));
                    }
                    if op.opcode == Opcode::Fin1 || op.opcode == Opcode::Fin2 {
                        self.send(Op::empty(Opcode::Fin2, stream.remote, me));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn close(&mut self, port: u32) {
        if let Some(stream) = self.streams.remove(&port) {
            self.send(Op::empty(
                Opcode::Fin2,
                stream.remote,
                Addr::new(self.host, port),
            ));
        }
    }

    /// Handles every whole frame buffered on stream `port`.
    fn frames_of(&mut self, port: u32, out: &mut Vec<Incoming>) -> Result<(), ClientError> {
        loop {
            let Some(stream) = self.streams.get_mut(&port) else {
                return Ok(());
            };
            let Some(frame) = self
                .frames
                .decode(&mut stream.buf)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            else {
                return Ok(());
            };
            let text = || String::from_utf8_lossy(&frame).into_owned();
            match &mut stream.role {
                Role::PublishMaster(answer) => {
                    if let Some(answer) = answer.take() {
                        let _ = answer.send(Ok(text()));
                    } else {
                        let source = parse_addr(&text())?;
                        self.close(port);
                        self.dial(source, Role::Discard, None);
                        return Ok(());
                    }
                }
                Role::SubscribeMaster { header } => match header.take() {
                    None => *header = Some(text()),
                    Some(announced) => {
                        let source = parse_addr(&text())?;
                        let topic = announced
                            .lines()
                            .find_map(|l| l.strip_prefix("topic="))
                            .map(str::to_owned);
                        self.dial(source, Role::Source { topic }, None);
                    }
                },
                Role::Source { topic } => {
                    let payload = frame::decode_item(frame, FRAME_LIMIT)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    out.push(Incoming::Message(Message {
                        topic: topic.clone(),
                        payload,
                        ..Message::default()
                    }));
                }
                Role::Discard => {}
            }
        }
    }
}

/// A source address as the server announces it: `<11-character base64url host>:<port>`.
fn parse_addr(text: &str) -> Result<Addr, ClientError> {
    let bad = || ClientError::Protocol(format!("bad source address {text:?}"));
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD.decode(host).map_err(|_| bad())?;
    let host: [u8; 8] = bytes.try_into().map_err(|_| bad())?;
    Ok(Addr::new(
        HostId(u64::from_be_bytes(host)),
        port.parse().map_err(|_| bad())?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_parse_from_their_text_form() {
        let addr = Addr::new(HostId(0x547C_9609_6AF7_F642), 16_777_219);
        assert_eq!(parse_addr(&addr.to_string()).unwrap(), addr);
        assert!(parse_addr("nope").is_err());
        assert!(parse_addr("AAAA:1").is_err());
    }
}
