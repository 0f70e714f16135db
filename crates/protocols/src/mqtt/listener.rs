//! The MQTT listeners `mqtt.tcp`, `mqtt.tls` and `mqtt.ws`: each binds its address, accepts on the shared
//! [`accept`] path (TLS handshake or WebSocket upgrade with subprotocol `mqtt` first, under the pre-auth
//! deadline, which also bounds CONNECT), registers each connection and runs its [`Connection`] until
//! [`Services::shutdown`]. The listeners share one retained store, one session store and one reloader.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::{Origin, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::config::Config;
use super::driver::{Connection, StreamTransport, WsTransport};
use super::reload::Reloader;
use super::retained::Retained;
use super::session::{Session, Shared};
use super::settings::{Live, Transport};
use super::store::SessionStore;
use crate::accept::{self, Accepted, ReadAhead, Run, Watched};
use crate::ws::{self, WsAcceptOptions};
use crate::{RunningListener, Services, Started};

/// The WebSocket subprotocol of MQTT (§6 of 5.0).
const SUBPROTOCOL: &str = "mqtt";
/// How often sessions past their expiry are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How a listener turns an accepted socket into a transport.
#[derive(Clone)]
enum Upgrade {
    Plain,
    Tls(TlsAcceptor),
    WebSocket(Arc<WsAcceptOptions>),
}

/// What every connection of one listener shares.
#[derive(Clone)]
struct Listener {
    name: &'static str,
    live: Arc<ArcSwap<Live>>,
    upgrade: Upgrade,
    services: Services,
    shared: Shared,
}

/// Starts the enabled MQTT listeners.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    if !config.enabled() {
        return Ok(Started::nothing());
    }
    let shared = Shared {
        bus: services.bus.clone(),
        retained: Retained::new(config.max_retained_messages, config.max_retained_bytes),
        sessions: SessionStore::new(config.max_stored_sessions),
    };
    let mut listeners = Vec::new();
    for transport in Transport::ALL {
        if transport.enabled(config) {
            let live = Live::new(config, transport)?;
            listeners.push((transport, Arc::new(ArcSwap::from_pointee(live))));
        }
    }
    let reloader = Reloader {
        started: config.clone(),
        listeners: listeners.clone(),
        shared: shared.clone(),
    };
    let mut running = Vec::new();
    for (transport, live) in listeners {
        let (address, upgrade) = match transport {
            Transport::Tcp => (config.tcp.address, Upgrade::Plain),
            Transport::Tls => {
                let acceptor = crate::tls::acceptor(&config.tls.tls, &[]).context("mqtt.tls")?;
                (config.tls.address, Upgrade::Tls(acceptor))
            }
            Transport::Ws => {
                let options = WsAcceptOptions {
                    paths: vec![config.ws.path.clone()],
                    // A message may hold one whole packet plus the start of the next.
                    max_message_bytes: config.max_packet_size.saturating_mul(2),
                    ..WsAcceptOptions::default()
                };
                (config.ws.address, Upgrade::WebSocket(Arc::new(options)))
            }
        };
        let listener = Listener {
            name: transport.name(),
            live,
            upgrade,
            services: services.clone(),
            shared: shared.clone(),
        };
        running.push(listen(address, transport, listener).await?);
    }
    tokio::spawn(sweep(shared.sessions, services.shutdown.clone()));
    Ok(Started {
        listeners: running,
        reload: Some(Box::new(reloader)),
    })
}

/// Drops expired sessions until shutdown.
async fn sweep(sessions: SessionStore, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SWEEP_EVERY) => sessions.sweep(),
        }
    }
}

async fn listen(
    address: SocketAddr,
    transport: Transport,
    listener: Listener,
) -> anyhow::Result<RunningListener> {
    let socket = TcpListener::bind(address)
        .await
        .with_context(|| format!("{}.address {address}", listener.name))?;
    let local_addr = socket.local_addr()?;
    tracing::info!(listener = listener.name, address = %local_addr, "mqtt listener bound");
    let name = listener.name;
    let shutdown = listener.services.shutdown.clone();
    let live = listener.live.clone();
    let task = tokio::spawn(accept::run(
        socket,
        name,
        shutdown,
        move || live.load().deadlines.pre_auth(),
        move |accepted| admit(accepted, &listener),
    ));
    Ok(RunningListener {
        name: name.to_owned(),
        protocol: Protocol::Mqtt,
        transport: transport.kind(),
        local_addr,
        task,
    })
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(accepted: Accepted, listener: &Listener) -> Option<impl Future<Output = ()>> {
    let live = listener.live.load_full();
    let guard = match listener.services.connections.register(
        Protocol::Mqtt,
        listener.name,
        accepted.peer,
        live.max_connections,
    ) {
        Ok(guard) => guard,
        Err(full) => {
            tracing::warn!(listener = listener.name, peer = %accepted.peer, "mqtt: {full}");
            return None;
        }
    };
    let origin = Origin {
        protocol: Protocol::Mqtt,
        connection: guard.id(),
    };
    let kick = CancellationToken::new();
    let shared = listener.shared.clone();
    let connection = Connection {
        session: Session::new(live.settings.clone(), shared.clone(), origin, kick.clone()),
        guard,
        shutdown: listener.services.shutdown.clone(),
        kick,
        deadlines: live.deadlines,
        write_batch: live.write_batch,
        login_by: accepted.pre_auth_deadline,
        bus: shared.bus,
        retained: shared.retained,
        sessions: shared.sessions,
    };
    Some(serve(
        accepted,
        listener.upgrade.clone(),
        connection,
        listener.name,
    ))
}

/// The connection's task, boxed (`name`: the listener's, for the handshake metrics): a plain connection's is its
/// loop itself; the others' is their handshake, then the loop it hands back ([`accept::upgrade_then_run`]).
fn serve(accepted: Accepted, upgrade: Upgrade, connection: Connection, name: &'static str) -> Run {
    let Accepted { stream, peer, .. } = accepted;
    let deadlines = connection.deadlines;
    match upgrade {
        Upgrade::Plain => Box::pin(connection.run(StreamTransport::plain(stream, &deadlines))),
        Upgrade::Tls(acceptor) => Box::pin(accept::upgrade_then_run(over_tls(
            acceptor, stream, peer, connection, name,
        ))),
        Upgrade::WebSocket(options) => Box::pin(accept::upgrade_then_run(over_websocket(
            options, stream, connection, name,
        ))),
    }
}

/// The WebSocket upgrade, then the connection's loop (boxed) to run; `None` when the upgrade failed.
async fn over_websocket(
    options: Arc<WsAcceptOptions>,
    stream: TcpStream,
    connection: Connection,
    name: &'static str,
) -> Option<Run> {
    let socket = upgrade_websocket(&options, stream, &connection, name).await?;
    Some(Box::pin(connection.run(WsTransport::new(socket))))
}

/// The TLS handshake under the pre-auth deadline (the client certificate's names go to the session), then the
/// connection's loop (boxed) to run; `None` when the handshake failed.
async fn over_tls(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    mut connection: Connection,
    name: &'static str,
) -> Option<Run> {
    let handshake = accept::handshake(
        name,
        acceptor.accept(stream),
        connection.login_by,
        &connection.shutdown,
    );
    match handshake.await {
        Ok(tls) => {
            if let Some(names) = crate::tls::peer_names(tls.get_ref().1) {
                connection.session.set_certificate(names);
            }
            let deadlines = connection.deadlines;
            Some(Box::pin(
                connection.run(StreamTransport::tls(tls, &deadlines)),
            ))
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "mqtt: TLS handshake");
            None
        }
    }
}

/// The WebSocket upgrade (subprotocol `mqtt` when offered); `None` (logged) when it fails or does not finish
/// by the pre-auth deadline.
async fn upgrade_websocket(
    options: &WsAcceptOptions,
    stream: TcpStream,
    connection: &Connection,
    name: &'static str,
) -> Option<tokio_tungstenite::WebSocketStream<Watched<ReadAhead<TcpStream>>>> {
    let choose = |offered: &[String]| {
        offered
            .iter()
            .any(|p| p == SUBPROTOCOL)
            .then(|| SUBPROTOCOL.to_owned())
    };
    let stream = ws::watched(stream, &connection.deadlines);
    let upgrade = ws::accept(stream, options, choose);
    match accept::handshake(name, upgrade, connection.login_by, &connection.shutdown).await {
        Ok((mut socket, _)) => {
            // The upgrade request was not an MQTT packet.
            socket.get_mut().frame_finished(false);
            Some(socket)
        }
        Err(error) => {
            tracing::debug!(%error, "mqtt: WebSocket upgrade");
            None
        }
    }
}
