//! `messageloop.grpc`: the bidi `MessageLoop` method of each generation's service
//! (`/messageloop.client.v2.MessageLoopService/MessageLoop`, `…client.v1…`, `/messageloop.v1.MessagingService/…`)
//! on one HTTP/2 listener, cleartext (h2c) or TLS. One stream is one session, run by [`driver::grpc`]. The three
//! services are served here ([`MessageLoop`]) rather than by the generated servers, so that a stream's replies
//! reach tonic as the bytes the session's codec encoded. Each connection is served by hyper in one task together
//! with its streams and their sessions ([`serve`]).
//!
//! Each stream takes the [`Settings`] in effect when it opens (`messageloop::reload` swaps them); tonic's decoding
//! limit is fixed when the server is built, so `limits.max_message_size` needs a restart here.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::Bytes;
use core_bus::Protocol;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::server::{NamedService, StreamingService};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Request, Response, Status, Streaming};

use crate::accept::{self, Accepted, ReadAhead, Watched};
use crate::messageloop::codec::grpc_codec::{Decoded, EncodedReplyCodec};
use crate::messageloop::config::Config;
use crate::messageloop::driver::{
    self,
    grpc::{Handover, OpenStream, Reply},
};
use crate::messageloop::pb::messageloop::client::{v1 as g1, v2 as g2};
use crate::messageloop::pb::messageloop::v1 as g0;
use crate::messageloop::settings::Settings;
use crate::messageloop::wire::{G0Wire, G1Wire, G2Wire, Wire};
use crate::{RunningListener, Services, Slot};

pub const NAME: &str = "messageloop.grpc";
/// Turns of outbound envelopes buffered per stream (a turn: what the session sent after one batch of deliveries or
/// client messages, at most [`driver::BATCH`]). Small, so that a slow reader fills its bus queue (and stalls its publishers)
/// instead of this lane: a WebSocket connection holds one turn in its write buffer, a gRPC stream two here.
const LANE: usize = 2;
/// Connections whose TLS handshake and HTTP/2 preface are done, waiting to be served.
const READY: usize = 8;
/// Streams (sessions) open at once on one connection (HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`).
const MAX_STREAMS: u32 = 100;

struct Shared {
    /// Read once per stream; replaced on reload.
    settings: Arc<ArcSwap<Settings>>,
    services: Services,
    /// Fixed at start, like the decoding limit tonic enforces.
    max_message_size: usize,
}

/// A generation's gRPC service, as gatewayd serves it: tonic's `Grpc` runs the one streaming method, with requests
/// decoded into neutral messages and replies written as the session's codec encoded them ([`EncodedReplyCodec`]),
/// in place of the generated server, whose replies are prost messages built and encoded for each stream.
trait GrpcService: Wire<Inbound: prost::Message + Default> + Send + 'static {
    /// The service's full name, the first segment of its paths.
    const NAME: &'static str;
}

impl GrpcService for G2Wire {
    const NAME: &'static str = g2::message_loop_service_server::SERVICE_NAME;
}

impl GrpcService for G1Wire {
    const NAME: &'static str = g1::message_loop_service_server::SERVICE_NAME;
}

impl GrpcService for G0Wire {
    const NAME: &'static str = g0::messaging_service_server::SERVICE_NAME;
}

/// The method every generation's service has: the session's bidirectional stream.
const METHOD: &str = "MessageLoop";

/// One generation's service on the listener's router (tonic routes by the service's name).
struct MessageLoop<W>(Arc<Shared>, PhantomData<fn() -> W>);

impl<W> Clone for MessageLoop<W> {
    fn clone(&self) -> Self {
        MessageLoop(self.0.clone(), PhantomData)
    }
}

impl<W: GrpcService> NamedService for MessageLoop<W> {
    const NAME: &'static str = W::NAME;
}

impl<W, B> tower_service::Service<http::Request<B>> for MessageLoop<W>
where
    W: GrpcService,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = path
            .strip_prefix('/')
            .and_then(|path| path.strip_prefix(W::NAME))
            .and_then(|path| path.strip_prefix('/'));
        let ours = method == Some(METHOD);
        if !ours {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let shared = self.0.clone();
        Box::pin(async move {
            let max = Some(shared.max_message_size);
            let mut grpc = tonic::server::Grpc::new(EncodedReplyCodec::<W>::default())
                .apply_max_message_size_config(max, max);
            Ok(grpc
                .streaming(Open::<W>(shared, PhantomData), request)
                .await)
        })
    }
}

/// Opens a stream's session when tonic has its request.
struct Open<W>(Arc<Shared>, PhantomData<fn() -> W>);

impl<W: GrpcService> StreamingService<Decoded> for Open<W> {
    type Response = Bytes;
    type ResponseStream = Replies;
    type Future = Ready<Result<Response<Replies>, Status>>;

    fn call(&mut self, request: Request<Streaming<Decoded>>) -> Self::Future {
        ready(open::<W>(&self.0, request))
    }
}

/// A stream's replies as tonic takes them: the envelopes of each turn in its lane, one after the other. tonic
/// encodes what is ready before it writes, so a turn goes out together (one DATA frame while it fits the frame
/// size).
struct Replies {
    lane: mpsc::Receiver<Reply>,
    /// What is left of the turn being taken.
    turn: std::vec::IntoIter<Bytes>,
}

impl Replies {
    fn new(lane: mpsc::Receiver<Reply>) -> Replies {
        Replies {
            lane,
            turn: Vec::new().into_iter(),
        }
    }
}

impl Stream for Replies {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let replies = self.get_mut();
        loop {
            if let Some(bytes) = replies.turn.next() {
                return Poll::Ready(Some(Ok(bytes)));
            }
            let Some(reply) = ready!(replies.lane.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            match *reply {
                Ok(turn) => replies.turn = turn.into_iter(),
                Err(status) => return Poll::Ready(Some(Err(status))),
            }
        }
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
    let idle_frame = config.deadlines.idle_frame();
    let routes = tonic::service::Routes::new(MessageLoop::<G2Wire>(shared.clone(), PhantomData))
        .add_service(MessageLoop::<G1Wire>(shared.clone(), PhantomData))
        .add_service(MessageLoop::<G0Wire>(shared.clone(), PhantomData))
        .prepare();
    let shutdown = services.shutdown.clone();
    let (ready, mut incoming) = mpsc::channel(READY);
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
    let task = tokio::spawn(async move {
        let connections = tokio_util::task::TaskTracker::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                conn = incoming.recv() => match conn {
                    Some(conn) => {
                        connections.spawn(serve(conn, routes.clone(), idle_frame, shutdown.clone()));
                    }
                    None => break,
                },
            }
        }
        connections.close();
        connections.wait().await;
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

/// A future run in its connection's task.
type Spawned = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What hyper spawns for a connection's streams (their response bodies) and the streams' sessions, run in the
/// connection's own task ([`serve`]) rather than spread over the runtime's workers: a delivery then wakes no task
/// on another core between its session, its response body and its connection (about a tenth of gatewayd's CPU per
/// gRPC delivery at 16 B).
#[derive(Clone)]
struct ConnectionExecutor(mpsc::UnboundedSender<Spawned>);

impl ConnectionExecutor {
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        let _ = self.0.send(Box::pin(future));
    }
}

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for ConnectionExecutor {
    fn execute(&self, future: F) {
        self.spawn(future);
    }
}

/// Serves one HTTP/2 connection (h2 only: the preface was read at accept) with everything it spawns, in one task,
/// until the connection ends and its sessions with it. Shutdown closes it gracefully: open streams end, new ones
/// are refused.
async fn serve(
    conn: Conn,
    routes: tonic::service::Routes,
    idle_frame: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    let (tx, mut spawned) = mpsc::unbounded_channel();
    let executor = ConnectionExecutor(tx);
    let info = conn.connect_info();
    let with_info = executor.clone();
    let service =
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(info.clone());
            request.extensions_mut().insert(with_info.clone());
            let mut routes = routes.clone();
            async move { tower_service::Service::call(&mut routes, request).await }
        });
    let mut builder = hyper::server::conn::http2::Builder::new(executor);
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS)
        // A client that leaves a frame unfinished cannot answer the ping either.
        .keep_alive_interval(Some(idle_frame))
        .keep_alive_timeout(idle_frame);
    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(conn), service);
    let mut connection = std::pin::pin!(connection);
    let mut tasks = futures::stream::FuturesUnordered::new();
    let mut open = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            result = connection.as_mut(), if open => {
                if let Err(error) = result {
                    tracing::debug!(%error, listener = NAME, "connection ended");
                }
                open = false;
            }
            Some(future) = spawned.recv() => tasks.push(future),
            Some(()) = tasks.next(), if !tasks.is_empty() => {}
            else => break,
        }
        if !open {
            // What the connection spawned just before it ended still runs to its end.
            while let Ok(future) = spawned.try_recv() {
                tasks.push(future);
            }
            if tasks.is_empty() {
                break;
            }
        }
    }
}

/// What the accept path needs to hand connections to [`serve`].
struct Accepting {
    shared: Arc<Shared>,
    tls: Option<Arc<tokio_rustls::TlsAcceptor>>,
    /// Connections whose TLS handshake and HTTP/2 preface are done, to be served.
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
            let mut io = Watched::writes_only(ReadAhead::new(io, READ_AHEAD), &settings.deadlines);
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

/// How much a busy connection reads per system call. h2 reads into a buffer of 8 KiB, which makes a publisher's
/// turn (and so the batch its subscribers write) about 8 messages of 1 KiB; read ahead, a turn takes what one
/// 64 KiB read brought.
const READ_AHEAD: usize = 64 << 10;

/// The first bytes of every HTTP/2 connection (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads the client's connection preface: a client that does not send it is not an HTTP/2 client.
async fn read_preface(io: &mut Watched<ReadAhead<Io>>) -> std::io::Result<()> {
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
    io: Watched<ReadAhead<Io>>,
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Io::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(stream) => stream.is_write_vectored(),
            Io::Tls(stream) => stream.is_write_vectored(),
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

    /// hyper writes a DATA frame's header and its payload in one call when the connection takes vectored writes;
    /// otherwise it copies payloads of up to 1 KiB and writes larger ones on their own.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
    request: Request<Streaming<Decoded>>,
) -> Result<Response<Replies>, Status> {
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
    let executor = request.extensions().get::<ConnectionExecutor>().cloned();
    let inbound = request.into_inner();
    let session = async move {
        let handover = Handover {
            shutdown: shared.services.shutdown.clone(),
            deadlines: shared.settings.load().deadlines,
            max_message_size: shared.max_message_size,
        };
        let stream = OpenStream {
            inbound,
            tx,
            guard,
            peer,
        };
        driver::grpc::run::<W>(handover, settings, stream).await;
    };
    match executor {
        Some(executor) => executor.spawn(session),
        None => {
            tokio::spawn(session);
        }
    }
    Ok(Response::new(Replies::new(rx)))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// The envelopes of a turn reach tonic one by one and in order, then the next turn's, then the status that
    /// ends the stream; the stream ends when the session drops its lane.
    #[tokio::test]
    async fn replies_take_each_turn_in_order() {
        let (tx, rx) = mpsc::channel(3);
        let mut replies = Replies::new(rx);
        let turns = [
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
            vec![Bytes::from_static(b"c")],
        ];
        for turn in turns {
            tx.try_send(Box::new(Ok(turn))).unwrap();
        }
        tx.try_send(Box::new(Err(Status::internal("end")))).unwrap();
        drop(tx);
        let mut taken = Vec::new();
        while let Some(reply) = replies.next().await {
            taken.push(reply.map_err(|status| status.message().to_owned()));
        }
        let expected: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b"a")),
            Ok(Bytes::from_static(b"b")),
            Ok(Bytes::from_static(b"c")),
            Err("end".to_owned()),
        ];
        assert_eq!(taken, expected);
    }
}
