//! `messageloop.grpc`: the bidi `MessageLoop` method of each generation's service
//! (`/messageloop.client.v2.MessageLoopService/MessageLoop`, `…client.v1…`, `/messageloop.v1.MessagingService/…`)
//! on one HTTP/2 listener, cleartext (h2c) or TLS. One stream is one session; a disconnect is sent as a
//! `DISCONNECT_ERROR` envelope carrying the code, after which the stream ends with status OK.
//!
//! Each stream takes the [`Settings`] in effect when it opens (`messageloop::reload` swaps them); tonic's decoding
//! limit is fixed when the server is built, so `limits.max_message_size` needs a restart here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use futures::Stream;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use crate::accept::{self, Accepted, Watched};
use crate::messageloop::codes::DisconnectCode;
use crate::messageloop::config::Config;
use crate::messageloop::message::{Error, Outbound, OutboundBody};
use crate::messageloop::pb::messageloop::client::{v1 as g1, v2 as g2};
use crate::messageloop::pb::messageloop::v1 as g0;
use crate::messageloop::proxy::Proxies;
use crate::messageloop::session::{uuid4, Now, Session};
use crate::messageloop::settings::Settings;
use crate::messageloop::wire::{DecodeError, G0Wire, G1Wire, G2Wire, Wire};
use crate::{CloseCause, RunningListener, Services, Slot};

pub const NAME: &str = "messageloop.grpc";
/// Deliveries taken from the mailbox per batch.
const BATCH: usize = 64;
/// Outbound envelopes buffered per stream. Small, so that a slow reader fills its bus queue (and stalls its
/// publishers) instead of this lane: an envelope can be a publication of a whole batch.
const LANE: usize = 8;
/// Streams (sessions) open at once on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
const MAX_STREAMS: u32 = 100;

struct Shared {
    /// Read once per stream; replaced on reload.
    settings: Arc<ArcSwap<Settings>>,
    services: Services,
    /// Fixed at start, like the decoding limit tonic enforces.
    max_message_size: usize,
}

/// The service of all three generations; tonic routes by path.
#[derive(Clone)]
struct MessageLoop(Arc<Shared>);

type OutStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl g2::message_loop_service_server::MessageLoopService for MessageLoop {
    type MessageLoopStream = OutStream<g2::OutboundMessage>;

    async fn message_loop(
        &self,
        request: Request<Streaming<g2::InboundMessage>>,
    ) -> Result<Response<Self::MessageLoopStream>, Status> {
        open::<G2Wire>(&self.0, request)
    }
}

#[tonic::async_trait]
impl g1::message_loop_service_server::MessageLoopService for MessageLoop {
    type MessageLoopStream = OutStream<g1::OutboundMessage>;

    async fn message_loop(
        &self,
        request: Request<Streaming<g1::InboundMessage>>,
    ) -> Result<Response<Self::MessageLoopStream>, Status> {
        open::<G1Wire>(&self.0, request)
    }
}

#[tonic::async_trait]
impl g0::messaging_service_server::MessagingService for MessageLoop {
    type MessageLoopStream = OutStream<g0::OutboundMessage>;

    async fn message_loop(
        &self,
        request: Request<Streaming<g0::InboundMessage>>,
    ) -> Result<Response<Self::MessageLoopStream>, Status> {
        open::<G0Wire>(&self.0, request)
    }
}

pub(super) async fn start(
    config: &Config,
    services: &Services,
    settings: Arc<ArcSwap<Settings>>,
) -> anyhow::Result<RunningListener> {
    let tls = match &config.grpc.tls {
        Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(tls, &[b"h2"]).context("messageloop.grpc.tls")?,
        )),
        None => None,
    };
    let listener = TcpListener::bind(config.grpc.address)
        .await
        .with_context(|| format!("messageloop.grpc.address {}", config.grpc.address))?;
    let local_addr = listener.local_addr()?;
    let max = config.limits.max_message_size;
    let shared = Arc::new(Shared {
        settings,
        services: services.clone(),
        max_message_size: max,
    });
    let service = MessageLoop(shared.clone());
    let idle_frame = config.deadlines.idle_frame();
    let router = tonic::transport::Server::builder()
        // A client that leaves a frame unfinished cannot answer the ping either.
        .http2_keepalive_interval(Some(idle_frame))
        .http2_keepalive_timeout(Some(idle_frame))
        .max_concurrent_streams(MAX_STREAMS)
        .add_service(
            g2::message_loop_service_server::MessageLoopServiceServer::new(service.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            g1::message_loop_service_server::MessageLoopServiceServer::new(service.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            g0::messaging_service_server::MessagingServiceServer::new(service)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    let shutdown = services.shutdown.clone();
    let (ready, incoming) = mpsc::channel(LANE);
    let accepting = Accepting {
        shared: shared.clone(),
        tls: tls.map(Arc::new),
        ready,
    };
    let pre_auth = shared.clone();
    let accept_loop = tokio::spawn(accept::run(
        listener,
        NAME,
        shutdown.clone(),
        move || pre_auth.settings.load().deadlines.pre_auth(),
        move |accepted| accepting.admit(accepted),
    ));
    let incoming = futures::stream::unfold(incoming, |mut incoming| async move {
        let conn = incoming.recv().await?;
        Some((Ok::<_, std::io::Error>(conn), incoming))
    });
    let task = tokio::spawn(async move {
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::warn!(%error, listener = NAME, "grpc server ended");
        }
        let _ = accept_loop.await;
    });
    Ok(RunningListener {
        name: NAME.to_owned(),
        protocol: Protocol::MessageLoop,
        transport: "grpc",
        local_addr,
        task,
    })
}

/// What the accept path needs to hand connections to tonic.
struct Accepting {
    shared: Arc<Shared>,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    /// Connections whose TLS handshake and HTTP/2 preface are done, for tonic.
    ready: mpsc::Sender<Conn>,
}

impl Accepting {
    /// Takes one of the listener's connection slots at accept, or refuses the socket.
    fn admit(&self, accepted: Accepted) -> Option<impl Future<Output = ()>> {
        let settings = self.shared.settings.load_full();
        let slot = match self.shared.services.connections.reserve(
            Protocol::MessageLoop,
            NAME,
            settings.limits.max_connections,
        ) {
            Ok(slot) => slot,
            Err(full) => {
                tracing::debug!(peer = %accepted.peer, listener = NAME, "{full}");
                return None;
            }
        };
        let (tls, ready) = (self.tls.clone(), self.ready.clone());
        let shutdown = self.shared.services.shutdown.clone();
        Some(async move {
            let peer = accepted.peer;
            let info = TcpConnectInfo {
                local_addr: accepted.stream.local_addr().ok(),
                remote_addr: Some(peer),
            };
            let deadline = accepted.pre_auth_deadline;
            let io = match tls {
                None => Io::Plain(accepted.stream),
                Some(acceptor) => {
                    match accept::handshake(
                        NAME,
                        acceptor.accept(accepted.stream),
                        deadline,
                        &shutdown,
                    )
                    .await
                    {
                        Ok(stream) => Io::Tls(Box::new(stream)),
                        Err(error) => {
                            tracing::debug!(%peer, %error, listener = NAME, "TLS handshake");
                            return;
                        }
                    }
                }
            };
            let mut io = Watched::writes_only(io, &settings.deadlines);
            if let Err(error) =
                accept::handshake(NAME, read_preface(&mut io), deadline, &shutdown).await
            {
                tracing::debug!(%peer, %error, listener = NAME, "HTTP/2 preface");
                return;
            }
            let conn = Conn {
                io,
                replay: PREFACE.len(),
                info,
                _slot: slot,
            };
            let _ = ready.send(conn).await;
        })
    }
}

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the client's connection preface: a client that does not send it is not an HTTP/2 client.
async fn read_preface(io: &mut Watched<Io>) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    io.read_exact(&mut preface).await?;
    if &preface != PREFACE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an HTTP/2 connection preface",
        ));
    }
    Ok(())
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// One accepted connection with its addresses for `Request::remote_addr`. It holds its listener slot until hyper
/// drops it.
struct Conn {
    io: Watched<Io>,
    /// How many bytes of [`PREFACE`], read by the accept path, are still to be given to hyper.
    replay: usize,
    info: TcpConnectInfo,
    _slot: Slot,
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.replay > 0 {
            let start = PREFACE.len() - this.replay;
            let n = this.replay.min(buf.remaining());
            buf.put_slice(&PREFACE[start..start + n]);
            this.replay -= n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Registers the stream's connection and starts its session task.
fn open<W: Wire>(
    shared: &Arc<Shared>,
    request: Request<Streaming<W::Inbound>>,
) -> Result<Response<OutStream<W::Outbound>>, Status>
where
    W::Outbound: prost::Message,
{
    let peer = request
        .remote_addr()
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let settings = shared.settings.load_full();
    // The connection holds the listener slot; its streams are at most `MAX_STREAMS`.
    let guard = shared
        .services
        .connections
        .register_stream(Protocol::MessageLoop, NAME, peer);
    let (tx, rx) = mpsc::channel(LANE);
    let shared = shared.clone();
    let inbound = request.into_inner();
    tokio::spawn(async move {
        let mut session = Session::new(settings.context.clone(), guard.id(), Now::current());
        session.set_generation(Some(W::GENERATION));
        let backends = Backends {
            proxies: &settings.proxies,
            peer,
        };
        run::<W>(&shared, &mut session, inbound, &tx, &guard, backends).await;
        if let Some(code) = session.disconnect() {
            let notice = Outbound {
                id: uuid4(),
                time_ms: Now::current().unix_ms,
                body: OutboundBody::Error(Error::disconnect(code)),
            };
            if let Ok(message) = W::outbound(&notice) {
                let _ = tx.send(Ok(Box::new(message))).await;
            }
        }
    });
    // Boxed in the lane: a channel holds a block of 32 entries from the start, and an unboxed message is
    // 280 bytes.
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|message| (message.map(|boxed| *boxed), rx))
    });
    Ok(Response::new(Box::pin(stream)))
}

/// Where a stream's backend proxy calls go, and the client address they name.
struct Backends<'a> {
    proxies: &'a Proxies,
    peer: SocketAddr,
}

/// The session loop of one stream; returns when the session or the client ends it.
async fn run<W: Wire>(
    shared: &Shared,
    session: &mut Session,
    mut inbound: Streaming<W::Inbound>,
    tx: &mpsc::Sender<Result<Box<W::Outbound>, Status>>,
    guard: &crate::ConnectionGuard,
    backends: Backends<'_>,
) where
    W::Outbound: prost::Message,
{
    let shutdown = shared.services.shutdown.clone();
    let deadlines = shared.settings.load().deadlines;
    let write_deadline = deadlines.write();
    let login_by = tokio::time::Instant::now() + deadlines.pre_auth();
    let mut batch = Vec::with_capacity(BATCH);
    let mut identified = false;
    let mut stalled: Option<futures::future::BoxFuture<'static, ()>> = None;
    let (answers, mut answered) = mpsc::unbounded_channel();
    loop {
        for outbound in session.take_outbox() {
            let Ok(message) = W::outbound(&outbound) else {
                continue;
            };
            if message.encoded_len() > shared.max_message_size {
                super::drop_too_large(
                    "messageloop.grpc",
                    &outbound,
                    message.encoded_len(),
                    shared.max_message_size,
                );
                continue;
            }
            // A client that does not read (flow control shut) is cut after the write deadline.
            match timeout(write_deadline, tx.send(Ok(Box::new(message)))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(
                        listener = NAME,
                        "client did not read before the write deadline"
                    );
                    return guard.closing(CloseCause::Deadline);
                }
            }
        }
        if let Some(code) = session.disconnect() {
            return guard.closing(code.cause());
        }
        for call in session.take_proxy_calls() {
            backends
                .proxies
                .spawn(call, Some(backends.peer), answers.clone());
        }
        if !identified {
            if let Some(identity) = session.identity() {
                guard.set_identity(&identity.name);
                identified = true;
            }
        }
        guard.set_subscriptions(session.subscription_count());
        // A stalled publish: read nothing more until the subscribers drained, deliveries go on.
        if stalled.is_none() {
            stalled = session
                .take_backpressure()
                .map(|b| Box::pin(b.ready()) as _);
        }
        let deadline = session.next_deadline();
        tokio::select! {
            _ = shutdown.cancelled() => {
                session.close_with(DisconnectCode::ForceDisconnect);
                return guard.closing(CloseCause::Shutdown);
            }
            _ = tx.closed() => return,
            () = async {
                if let Some(stall) = stalled.as_mut() {
                    stall.await;
                }
            }, if stalled.is_some() => stalled = None,
            () = tokio::time::sleep_until(login_by), if !identified => {
                session.close_with(DisconnectCode::Stale);
                return guard.closing(CloseCause::Deadline);
            }
            Some(answer) = answered.recv() => session.on_proxy_answer(answer, Now::current()),
            message = inbound.message(), if stalled.is_none() && !session.waiting_for_backend() => {
                let now = Now::current();
                match message {
                    Ok(Some(message)) => match W::inbound(message) {
                        Ok(message) => session.on_inbound(message, now),
                        Err(DecodeError::Malformed(_)) => session.on_undecodable(now),
                        Err(DecodeError::Empty { .. }) => session.on_empty(now),
                    },
                    Ok(None) => return,
                    // The client reset the stream or dropped the connection: nothing to answer.
                    Err(status) if went_away(&status) => return,
                    Err(status) => {
                        tracing::debug!(%status, listener = NAME, "stream ended with an error");
                        let refusal = refusal(&status, shared.max_message_size);
                        let _ = timeout(write_deadline, tx.send(Err(refusal))).await;
                        return guard.closing(CloseCause::ProtocolError);
                    }
                }
            }
            received = session.mailbox().recv_batch(&mut batch, BATCH) => match received {
                Ok(_) => session.on_deliveries(batch.drain(..), Now::current()),
                Err(_) => session.close_with(DisconnectCode::SlowConsumer),
            },
            _ = sleep_until(deadline), if deadline.is_some() => session.tick(Now::current()),
        }
    }
}

/// Whether a stream's input ended because the client went away (a stream reset, a connection closed or broken
/// under it) rather than because of what it sent. Everything a client sends that cannot be read is
/// `RESOURCE_EXHAUSTED`/`OUT_OF_RANGE` (over the limit) or `INTERNAL` (undecodable, an HTTP/2 protocol error).
fn went_away(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
    )
}

/// The status a stream ends with when its input cannot be read: a message over `limits.max_message_size` is
/// `RESOURCE_EXHAUSTED`, one that does not decode `INVALID_ARGUMENT`.
fn refusal(status: &Status, max: usize) -> Status {
    match status.code() {
        // tonic's decoder reports a message over its limit as OUT_OF_RANGE.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Status::resource_exhausted(
            format!("message over messageloop.limits.max_message_size ({max} bytes)"),
        ),
        _ => Status::invalid_argument(format!("undecodable message: {}", status.message())),
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}
