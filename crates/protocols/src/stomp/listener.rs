//! The STOMP listeners: `stomp.tcp`, `stomp.tls` and `stomp.ws`. Each binds its address, accepts
//! connections on the shared [`accept`] path (TLS handshake or WebSocket upgrade first, under the
//! pre-auth deadline), registers them, and runs one
//! [`driver::run`] task per connection until [`Services::shutdown`] is cancelled and every
//! connection has said goodbye. Each accept reads the listener's current [`Live`] settings, which
//! a [`reload`](mod@super::reload) may have swapped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use core_bus::{Origin, Protocol};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::driver::{self, StreamTransport, Timing, WsTransport};
use super::reload::Reloader;
use super::session::Session;
use super::settings::{self, Live, Transport};
use crate::accept::{self, Accepted, ReadAhead, Run, Watched};
use crate::ws::{self, WsAcceptOptions};
use crate::{ConnectionGuard, RunningListener, Services, Started};

/// WebSocket subprotocols, best first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// How a listener turns an accepted socket into a transport.
#[derive(Clone)]
enum Upgrade {
    Plain,
    Tls(TlsAcceptor),
    /// WebSocket, under TLS (`wss://`) when an acceptor is given.
    WebSocket(Arc<WsAcceptOptions>, Option<TlsAcceptor>),
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct Shared {
    name: &'static str,
    /// Read on every accept; swapped by a reload.
    live: Arc<ArcSwap<Live>>,
    upgrade: Upgrade,
    services: Services,
}

/// Starts the enabled STOMP listeners. They share the durable subscriptions and one reloader.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    let swaps: Vec<(Transport, Arc<ArcSwap<Live>>)> = settings::build(config)?
        .into_iter()
        .filter(|(transport, _)| transport.enabled(config))
        .map(|(transport, live)| (transport, Arc::new(ArcSwap::new(live))))
        .collect();
    if swaps.is_empty() {
        return Ok(Started::nothing());
    }
    let reloader = Reloader::new(config.clone(), swaps.clone());
    let mut running = Vec::new();
    for (transport, live) in swaps {
        let (address, upgrade, kind) = match transport {
            Transport::Tcp => (config.tcp.address, Upgrade::Plain, "tcp"),
            Transport::Tls => {
                let acceptor = crate::tls::acceptor(&config.tls.tls, &[]).context("stomp.tls")?;
                (config.tls.address, Upgrade::Tls(acceptor), "tls")
            }
            Transport::Ws => {
                let options = WsAcceptOptions {
                    paths: vec![config.ws.path.clone()],
                    max_message_bytes: config.ws.max_message_bytes,
                    ..WsAcceptOptions::default()
                };
                let tls = crate::tls::optional_acceptor(config.ws.tls.as_ref(), &[b"http/1.1"])
                    .context("stomp.ws.tls")?;
                let kind = if tls.is_some() { "wss" } else { "ws" };
                (
                    config.ws.address,
                    Upgrade::WebSocket(Arc::new(options), tls),
                    kind,
                )
            }
        };
        let shared = Shared {
            name: transport.name(),
            live,
            upgrade,
            services: services.clone(),
        };
        running.push(listen(address, kind, shared).await?);
    }
    Ok(Started {
        listeners: running,
        reload: Some(Box::new(reloader)),
    })
}

async fn listen(
    address: SocketAddr,
    transport: &'static str,
    shared: Shared,
) -> anyhow::Result<RunningListener> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("{}.address {address}", shared.name))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(listener = shared.name, address = %local_addr, "stomp listener bound");
    let name = shared.name.to_owned();
    let shutdown = shared.services.shutdown.clone();
    let live = shared.live.clone();
    let task = tokio::spawn(accept::run(
        listener,
        shared.name,
        shutdown,
        move || live.load().timing.deadlines.pre_auth(),
        move |accepted| admit(accepted, &shared),
    ));
    Ok(RunningListener {
        name,
        protocol: Protocol::Stomp,
        transport,
        local_addr,
        task,
    })
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(accepted: Accepted, shared: &Shared) -> Option<impl Future<Output = ()>> {
    let live = shared.live.load_full();
    let guard = match shared.services.connections.register(
        Protocol::Stomp,
        shared.name,
        accepted.peer,
        live.limits.max_connections,
    ) {
        Ok(guard) => guard,
        Err(full) => {
            tracing::warn!(listener = shared.name, peer = %accepted.peer, "stomp: {full}");
            return None;
        }
    };
    let connection = Connection {
        session: Session::new(
            live.settings.clone(),
            shared.services.bus.clone(),
            Origin {
                protocol: Protocol::Stomp,
                connection: guard.id(),
            },
        ),
        guard,
        shutdown: shared.services.shutdown.clone(),
        timing: live.timing,
        login_by: accepted.pre_auth_deadline,
        listener: shared.name,
    };
    Some(serve(accepted, shared.upgrade.clone(), connection))
}

/// The connection's task, boxed: a plain connection's is its loop itself; the others' is their upgrade, then the
/// loop it hands back ([`accept::upgrade_then_run`]).
fn serve(accepted: Accepted, upgrade: Upgrade, connection: Connection) -> Run {
    let Accepted { stream, peer, .. } = accepted;
    let deadlines = connection.timing.deadlines;
    match upgrade {
        Upgrade::Plain => connection.run(StreamTransport::plain(stream, &deadlines)),
        Upgrade::Tls(acceptor) => Box::pin(accept::upgrade_then_run(async move {
            over_tls(&acceptor, stream, peer, connection).await
        })),
        Upgrade::WebSocket(options, None) => Box::pin(accept::upgrade_then_run(async move {
            over_websocket(&options, stream, peer, connection).await
        })),
        Upgrade::WebSocket(options, Some(acceptor)) => {
            Box::pin(accept::upgrade_then_run(async move {
                websocket_over_tls(&options, &acceptor, stream, peer, connection).await
            }))
        }
    }
}

/// What a connection runs with once its transport is up.
struct Connection {
    session: Session,
    guard: ConnectionGuard,
    shutdown: CancellationToken,
    timing: Timing,
    /// The pre-auth deadline: CONNECT must have been answered by then.
    login_by: Instant,
    /// The listener's name, for metrics.
    listener: &'static str,
}

impl Connection {
    /// The connection's loop, boxed (see [`driver::run`]): awaiting it adds only a pointer to the caller.
    fn run<T: driver::Transport>(self, transport: T) -> Pin<Box<impl Future<Output = ()>>> {
        driver::run(
            transport,
            self.session,
            self.guard,
            self.shutdown,
            self.timing,
            self.login_by,
        )
    }
}

async fn over_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut connection: Connection,
) -> Option<Run> {
    let tls = tls_handshake(acceptor, stream, peer, &mut connection).await?;
    let deadlines = connection.timing.deadlines;
    Some(connection.run(StreamTransport::tls(tls, &deadlines)))
}

/// `ws://`: the WebSocket upgrade, then the connection's loop (boxed) to run; `None` when the upgrade failed.
async fn over_websocket(
    options: &WsAcceptOptions,
    stream: TcpStream,
    peer: SocketAddr,
    connection: Connection,
) -> Option<Run> {
    let socket = upgrade_websocket(options, stream, peer, &connection).await?;
    Some(connection.run(WsTransport::new(socket)))
}

/// `wss://`: the TLS handshake, then the WebSocket upgrade, both under the pre-auth deadline, then the connection's
/// loop (boxed) to run; `None` when either failed.
async fn websocket_over_tls(
    options: &WsAcceptOptions,
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut connection: Connection,
) -> Option<Run> {
    let tls = tls_handshake(acceptor, stream, peer, &mut connection).await?;
    let socket = upgrade_websocket(options, tls, peer, &connection).await?;
    Some(connection.run(WsTransport::new(socket)))
}

/// The TLS handshake under the pre-auth deadline; the client certificate's names go to the session. `None`
/// (logged) when it fails.
async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    connection: &mut Connection,
) -> Option<TlsStream<TcpStream>> {
    let handshake = accept::handshake(
        connection.listener,
        acceptor.accept(stream),
        connection.login_by,
        &connection.shutdown,
    );
    match handshake.await {
        Ok(tls) => {
            if let Some(names) = crate::tls::peer_names(tls.get_ref().1) {
                connection.session.set_certificate(names);
            }
            Some(tls)
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "stomp: TLS handshake");
            None
        }
    }
}

/// The WebSocket upgrade; `None` (logged) when it fails, or has not finished by the pre-auth deadline or shutdown.
async fn upgrade_websocket<S: AsyncRead + AsyncWrite + Unpin>(
    options: &WsAcceptOptions,
    stream: S,
    peer: SocketAddr,
    connection: &Connection,
) -> Option<WebSocketStream<Watched<ReadAhead<S>>>> {
    let choose = |offered: &[String]| {
        SUBPROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
            .map(|p| (*p).to_owned())
    };
    let stream = ws::watched(stream, &connection.timing.deadlines);
    let upgrade = ws::accept(stream, options, choose);
    match accept::handshake(
        connection.listener,
        upgrade,
        connection.login_by,
        &connection.shutdown,
    )
    .await
    {
        Ok((mut socket, _)) => {
            // The upgrade request was not a STOMP frame.
            socket.get_mut().frame_finished(false);
            Some(socket)
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "stomp: WebSocket upgrade");
            None
        }
    }
}
