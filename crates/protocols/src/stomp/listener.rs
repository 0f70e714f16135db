//! The STOMP listeners: `stomp.tcp`, `stomp.tls` and `stomp.ws`. Each binds its address, accepts
//! connections (TLS handshake or WebSocket upgrade first), registers them, and runs one
//! [`connection::run`] task per connection until [`Services::shutdown`] is cancelled and every
//! connection has said goodbye. Each accept reads the listener's current [`Live`] settings, which
//! a [`reload`](mod@super::reload) may have swapped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use core_bus::{Origin, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::connection::{self, StreamTransport, Timing, WsTransport};
use super::forwarder::Durables;
use super::reload::{self, Live, Reloader, Transport};
use super::session::Session;
use crate::ws::{self, WsAcceptOptions};
use crate::{ConnectionGuard, RunningListener, Services};

/// WebSocket subprotocols, best first.
const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// How a listener turns an accepted socket into a transport.
#[derive(Clone)]
enum Upgrade {
    Plain,
    Tls(TlsAcceptor),
    WebSocket(Arc<WsAcceptOptions>),
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
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Vec<RunningListener>> {
    let durables = Durables::new(services.shutdown.clone());
    let swaps: Vec<(Transport, Arc<ArcSwap<Live>>)> = reload::build(config, &durables)?
        .into_iter()
        .filter(|(transport, _)| transport.enabled(config))
        .map(|(transport, live)| (transport, Arc::new(ArcSwap::new(live))))
        .collect();
    let reloader = Arc::new(Reloader::new(config.clone(), durables, swaps.clone()));
    let mut running = Vec::new();
    for (transport, live) in swaps {
        let (address, upgrade, kind) = match transport {
            Transport::Tcp => (config.tcp.address, Upgrade::Plain, "tcp"),
            Transport::Tls => {
                let server =
                    crate::tls::server_config(&config.tls.tls, &[]).context("stomp.tls")?;
                (
                    config.tls.address,
                    Upgrade::Tls(TlsAcceptor::from(server)),
                    "tls",
                )
            }
            Transport::Ws => {
                let options = WsAcceptOptions {
                    paths: vec![config.ws.path.clone()],
                    max_message_bytes: config.ws.max_message_bytes,
                    ..WsAcceptOptions::default()
                };
                (
                    config.ws.address,
                    Upgrade::WebSocket(Arc::new(options)),
                    "ws",
                )
            }
        };
        let shared = Shared {
            name: transport.name(),
            live,
            upgrade,
            services: services.clone(),
        };
        let mut listener = listen(address, kind, shared).await?;
        listener.reload = Some(Box::new(reload::Handle(reloader.clone())));
        running.push(listener);
    }
    Ok(running)
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
    let task = tokio::spawn(accept_loop(listener, shared));
    Ok(RunningListener {
        name,
        protocol: Protocol::Stomp,
        transport,
        local_addr,
        task,
        reload: None,
    })
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let shutdown = shared.services.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer, shared.clone()));
                }
                Err(error) => {
                    tracing::warn!(listener = shared.name, %error, "stomp: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let live = shared.live.load_full();
    let guard = match shared.services.connections.register(
        Protocol::Stomp,
        shared.name,
        peer,
        live.limits.max_connections,
    ) {
        Ok(guard) => guard,
        Err(full) => {
            tracing::warn!(listener = shared.name, %peer, "stomp: {full}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
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
    };
    // Handshakes are boxed, so a connection task holds only what its own transport needs once it is up.
    match &shared.upgrade {
        Upgrade::Plain => connection.run(StreamTransport::new(stream)).await,
        Upgrade::Tls(acceptor) => Box::pin(over_tls(acceptor, stream, peer, connection)).await,
        Upgrade::WebSocket(options) => {
            let upgrade = upgrade_websocket(options, stream, peer, connection.timing.login_timeout);
            if let Some(socket) = Box::pin(upgrade).await {
                connection.run(WsTransport::new(socket)).await
            }
        }
    }
}

/// What a connection runs with once its transport is up.
struct Connection {
    session: Session,
    guard: ConnectionGuard,
    shutdown: CancellationToken,
    timing: Timing,
}

impl Connection {
    /// The connection's loop, boxed (see [`connection::run`]): awaiting it adds only a pointer to the caller.
    fn run(self, transport: impl connection::Transport) -> impl Future<Output = ()> {
        connection::run(
            transport,
            self.session,
            self.guard,
            self.shutdown,
            self.timing,
        )
    }
}

async fn over_tls(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    connection: Connection,
) {
    match timeout(connection.timing.login_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => connection.run(StreamTransport::new(tls)).await,
        Ok(Err(error)) => tracing::debug!(%peer, %error, "stomp: TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "stomp: TLS handshake timed out"),
    }
}

/// The WebSocket upgrade; `None` (logged) when it fails or takes longer than `limit`.
async fn upgrade_websocket(
    options: &WsAcceptOptions,
    stream: TcpStream,
    peer: SocketAddr,
    limit: Duration,
) -> Option<WebSocketStream<TcpStream>> {
    let choose = |offered: &[String]| {
        SUBPROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
            .map(|p| (*p).to_owned())
    };
    match timeout(limit, ws::accept(stream, options, choose)).await {
        Ok(Ok((socket, _))) => Some(socket),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "stomp: WebSocket upgrade failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "stomp: WebSocket upgrade timed out");
            None
        }
    }
}
