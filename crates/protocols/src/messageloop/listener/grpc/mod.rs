//! `messageloop.grpc`: the bidi `MessageLoop` method of each generation's service
//! (`/messageloop.client.v2.MessageLoopService/MessageLoop`, `…client.v1…`, `/messageloop.v1.MessagingService/…`)
//! on one HTTP/2 listener, cleartext (h2c) or TLS. One stream is one session, run by [`driver::grpc`](crate::messageloop::driver::grpc). The three
//! services are served here ([`MessageLoop`]) rather than by the generated servers, so that a stream's replies
//! reach tonic as the bytes the session's codec encoded. Each connection is served by hyper in one task together
//! with its streams and their sessions ([`serve`]).
//!
//! Each stream takes the [`Settings`] in effect when it opens (`messageloop::reload` swaps them); tonic's decoding
//! limit is fixed when the server is built, so `limits.max_message_size` needs a restart here.
//!
//! The listener and each connection's task live here; the three services and a stream's opening in `service`,
//! the accepted socket (TLS or not, the preface read, the listener slot held) in `conn`.

mod conn;
mod service;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::codegen::http;
use tonic::transport::server::Connected;

use crate::accept;
use crate::messageloop::config::Config;
use crate::messageloop::settings::Settings;
use crate::messageloop::wire::{G0Wire, G1Wire, G2Wire};
use crate::{RunningListener, Services};
use conn::{Accepting, Conn};
use service::MessageLoop;

pub const NAME: &str = "messageloop.grpc";
/// Turns of outbound envelopes buffered per stream (a turn: what the session sent after one batch of deliveries or
/// client messages, at most [`BATCH`](crate::messageloop::driver::BATCH)). Small, so that a slow reader fills its bus queue (and stalls its publishers)
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

pub(super) async fn start(
    config: &Config,
    services: &Services,
    settings: Arc<ArcSwap<Settings>>,
) -> anyhow::Result<RunningListener> {
    let tls = crate::tls::optional_acceptor(config.grpc.tls.as_ref(), &[b"h2"])
        .context("messageloop.grpc.tls")?;
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
    let routes = tonic::service::Routes::new(MessageLoop::<G2Wire>::new(shared.clone()))
        .add_service(MessageLoop::<G1Wire>::new(shared.clone()))
        .add_service(MessageLoop::<G0Wire>::new(shared.clone()))
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
