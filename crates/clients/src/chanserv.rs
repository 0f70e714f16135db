//! chanserv client over AstraNet (plain TCP): one task drives the client end of gatewayd's own AstraNet link
//! ([`Link::client`]: socket bytes and timers in, ops out) and runs the chanserv requests on its streams. A publish
//! is one `LookupAndPost` of `PUB <topic>\n<payload>` whose answer header is the broker's [`PublishReply`] (`ok…` or
//! `err <reason>`); a subscribe posts the selector and dials every source the server announces, each frame of a
//! source being one message.

use std::collections::HashMap;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use protocols::chanserv::astranet::{
    Addr, CloseReason, Event, HostId, Link, LinkConfig, Recv, StreamId,
};
use protocols::chanserv::channel::Outbox;
use protocols::chanserv::codec::frame::{self, FrameDecoder};
use protocols::chanserv::codec::selector::PublishReply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::{
    resolve, send_until_error, ClientError, Credentials, Inbox, InboxSender, Incoming, Message,
    Outgoing, HANDSHAKE_TIMEOUT,
};

/// Largest frame accepted from the server.
const FRAME_LIMIT: u64 = 64 << 20;

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
        let mut driver = Driver::new(tcp)?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, driver.handshake())
            .await
            .map_err(|_| ClientError::Timeout(HANDSHAKE_TIMEOUT))??;
        let (commands, rx) = mpsc::channel(1024);
        let (tx, inbox) = Inbox::new();
        tokio::spawn(driver.run(rx, tx));
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

    pub async fn next_payload(&mut self) -> Result<Bytes, ClientError> {
        self.inbox.next_with(|message| message.payload).await
    }

    pub async fn close(self) -> Result<(), ClientError> {
        Ok(())
    }
}

/// What a stream of ours is for.
enum Role {
    /// The master of a publish: its first frame is the answer header, the second the address of its empty source.
    Publish(Option<oneshot::Sender<Result<String, ClientError>>>),
    /// The master of a subscribe: (header, address) frame pairs announce sources.
    Subscribe { header: Option<String> },
    /// A source: every frame is one message on `topic`.
    Source { topic: Option<String> },
}

struct Stream {
    role: Role,
    /// Received bytes not yet a whole frame.
    buf: BytesMut,
    /// The request frame, written as the stream's credit allows.
    request: Outbox,
}

/// The connection's task: the socket, the link on it and the chanserv streams.
struct Driver {
    tcp: TcpStream,
    link: Link,
    /// Where the server's chanserv service listens, once advertised.
    service: Option<Addr>,
    streams: HashMap<StreamId, Stream>,
    read_buf: Vec<u8>,
    frames: FrameDecoder,
}

impl Driver {
    fn new(tcp: TcpStream) -> Result<Driver, ClientError> {
        let host =
            HostId(u64::from(std::process::id()) << 24 | u64::from(rand::random::<u32>() >> 8) | 1);
        let link = Link::client(
            LinkConfig::new(host),
            Some(tcp.peer_addr()?),
            Instant::now(),
        );
        Ok(Driver {
            tcp,
            link,
            service: None,
            streams: HashMap::new(),
            read_buf: vec![0; 64 << 10],
            frames: FrameDecoder::new(FRAME_LIMIT),
        })
    }

    /// Runs the link until the server has advertised its service.
    async fn handshake(&mut self) -> Result<(), ClientError> {
        while self.service.is_none() {
            self.write().await?;
            self.read().await?;
            for event in self.events() {
                event?;
            }
        }
        Ok(())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, inbox: InboxSender) {
        let result: Result<(), ClientError> = async {
            loop {
                self.write().await?;
                tokio::select! {
                    command = commands.recv() => match command {
                        Some(command) => self.command(command)?,
                        None => return Ok(()),
                    },
                    read = self.read() => read?,
                }
                if send_until_error(&inbox, self.events()).await.is_break() {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(error) = result {
            let _ = inbox.send(Err(error)).await;
        }
    }

    /// Writes everything the link has to send.
    async fn write(&mut self) -> Result<(), ClientError> {
        while let Some(bytes) = self.link.poll_transmit(Instant::now()) {
            self.tcp.write_all(&bytes).await?;
        }
        Ok(())
    }

    /// Hands the link the next bytes from the server, or runs its timers when they are due first. Cancel-safe.
    async fn read(&mut self) -> Result<(), ClientError> {
        let timer = self.link.poll_timeout().map(tokio::time::Instant::from_std);
        let due = async {
            match timer {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = self.tcp.read(&mut self.read_buf) => match read? {
                0 => self.link.handle_eof(),
                n => self.link.handle_input(&self.read_buf[..n], Instant::now()),
            },
            () = due => self.link.handle_timeout(Instant::now()),
        }
        Ok(())
    }

    /// Acts on the link's events: the messages they brought, up to the first error.
    fn events(&mut self) -> Vec<Result<Incoming, ClientError>> {
        let mut out = Vec::new();
        while let Some(event) = self.link.poll_event() {
            if let Err(error) = self.on_event(event, &mut out) {
                out.push(Err(error));
                break;
            }
        }
        out
    }

    fn on_event(
        &mut self,
        event: Event,
        out: &mut Vec<Result<Incoming, ClientError>>,
    ) -> Result<(), ClientError> {
        match event {
            Event::Service { addr } => self.service = Some(addr),
            Event::Writable { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    // An error means the stream is gone; its own event says so.
                    let _ = s.request.flush(&mut self.link, stream);
                }
            }
            Event::Readable { stream } => self.readable(stream, out)?,
            Event::Aborted { stream } => self.close(stream),
            Event::Closed(CloseReason::PeerClosed) => return Err(ClientError::Closed),
            Event::Closed(reason) => return Err(protocol(reason)),
            // A client link binds no port, so it accepts nothing.
            Event::Connected { .. } | Event::Accepted { .. } | Event::BindExpired { .. } => {}
        }
        Ok(())
    }

    fn command(&mut self, command: Command) -> Result<(), ClientError> {
        let Some(service) = self.service else {
            return Ok(());
        };
        let (role, body) = match command {
            Command::Publish { body, answer } => (Role::Publish(Some(answer)), body),
            Command::Subscribe { body, answer } => {
                let _ = answer.send(Ok(()));
                (Role::Subscribe { header: None }, body)
            }
        };
        let mut request = Outbox::new();
        request.push_frame(&body).map_err(protocol)?;
        self.dial(service, role, request)
    }

    fn dial(&mut self, remote: Addr, role: Role, request: Outbox) -> Result<(), ClientError> {
        let stream = self.link.dial(remote).map_err(protocol)?;
        let buf = BytesMut::new();
        self.streams.insert(stream, Stream { role, buf, request });
        Ok(())
    }

    /// Reads what the stream has, handles its whole frames, and closes it if the server closed it.
    fn readable(
        &mut self,
        stream: StreamId,
        out: &mut Vec<Result<Incoming, ClientError>>,
    ) -> Result<(), ClientError> {
        let ended = loop {
            match self.link.recv(stream) {
                Ok(Recv::Data(data)) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.buf.extend_from_slice(&data);
                    }
                }
                Ok(Recv::Pending) => break false,
                Ok(Recv::Finished) | Err(_) => break true,
            }
        };
        while let Some(s) = self.streams.get_mut(&stream) {
            let Some(frame) = self.frames.decode(&mut s.buf).map_err(protocol)? else {
                break;
            };
            self.on_frame(stream, frame, out)?;
        }
        if ended {
            self.close(stream);
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        stream: StreamId,
        frame: Bytes,
        out: &mut Vec<Result<Incoming, ClientError>>,
    ) -> Result<(), ClientError> {
        let Some(s) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        let text = || String::from_utf8_lossy(&frame).into_owned();
        match &mut s.role {
            Role::Publish(answer) => match answer.take() {
                Some(answer) => {
                    let _ = answer.send(Ok(text()));
                }
                // The answer's source has an empty channel: open it as the Go client does, and close both.
                None => {
                    let source = source_addr(&text())?;
                    self.close(stream);
                    let discard = self.link.dial(source).map_err(protocol)?;
                    self.link
                        .finish(discard, Instant::now())
                        .map_err(protocol)?;
                }
            },
            Role::Subscribe { header } => match header.take() {
                None => *header = Some(text()),
                Some(announced) => {
                    let topic = announced
                        .lines()
                        .find_map(|l| l.strip_prefix("topic="))
                        .map(str::to_owned);
                    let source = source_addr(&text())?;
                    self.dial(source, Role::Source { topic }, Outbox::new())?;
                }
            },
            Role::Source { topic } => {
                let message = Message {
                    topic: topic.clone(),
                    payload: frame::decode_item(frame, FRAME_LIMIT).map_err(protocol)?,
                    ..Message::default()
                };
                out.push(Ok(Incoming::Message(message)));
            }
        }
        Ok(())
    }

    /// Forgets the stream (a publish still waiting for its answer gets `Closed`) and closes our side of it.
    fn close(&mut self, stream: StreamId) {
        if let Some(Stream {
            role: Role::Publish(Some(answer)),
            ..
        }) = self.streams.remove(&stream)
        {
            let _ = answer.send(Err(ClientError::Closed));
        }
        let _ = self.link.finish(stream, Instant::now());
    }
}

/// A source address as the server announces it: `<11-character base64url host>:<port>`.
fn source_addr(text: &str) -> Result<Addr, ClientError> {
    text.trim().parse().map_err(protocol)
}

fn protocol(error: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(error.to_string())
}
