//! The STOMP listeners: `stomp.tcp`, `stomp.tls` and `stomp.ws`. Each binds its address, accepts
//! connections (TLS handshake or WebSocket upgrade first), registers them, and runs one
//! [`connection::run`] task per connection until [`Services::shutdown`] is cancelled and every
//! connection has said goodbye.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use core_bus::{Origin, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::config::Config;
use super::connection::{self, StreamTransport, Timing, WsTransport};
use super::forwarder::Durables;
use super::session::{Session, Settings};
use crate::auth::Authenticator;
use crate::limits::ListenerLimits;
use crate::ws::{self, WsAcceptOptions};
use crate::{RunningListener, Services};

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
    limits: ListenerLimits,
    settings: Arc<Settings>,
    timing: Timing,
    upgrade: Upgrade,
    services: Services,
}

/// Starts the enabled STOMP listeners.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Vec<RunningListener>> {
    let auth = Arc::new(Authenticator::new(config.auth.clone()).context("stomp.auth")?);
    let ignore_credentials =
        !config.auth.required && config.auth.tokens.is_empty() && config.auth.jwt.is_none();
    let durables = Durables::new(services.shutdown.clone());
    let settings = |limits: &ListenerLimits| {
        Arc::new(Settings {
            limits: config.limits,
            transactions: config.transactions,
            heart_beat: config.heart_beat,
            unknown_destination: config.unknown_destination,
            default_prefetch: config.default_prefetch,
            max_subscriptions: limits.max_subscriptions_per_connection,
            auth: auth.clone(),
            ignore_credentials,
            server: format!("gatewayd/{}", env!("CARGO_PKG_VERSION")),
            durables: durables.clone(),
        })
    };
    let timing = Timing {
        login_timeout: Duration::from_secs(config.login_timeout_secs),
        write_timeout: Duration::from_secs(config.write_timeout_secs),
        write_batch: config.write_batch.max(1),
    };
    let mut running = Vec::new();
    if config.tcp.enabled {
        let shared = Shared {
            name: "stomp.tcp",
            limits: config.tcp.limits,
            settings: settings(&config.tcp.limits),
            timing,
            upgrade: Upgrade::Plain,
            services: services.clone(),
        };
        running.push(listen(config.tcp.address, "tcp", shared).await?);
    }
    if config.tls.enabled {
        let server = crate::tls::server_config(&config.tls.tls, &[]).context("stomp.tls")?;
        let shared = Shared {
            name: "stomp.tls",
            limits: config.tls.limits,
            settings: settings(&config.tls.limits),
            timing,
            upgrade: Upgrade::Tls(TlsAcceptor::from(server)),
            services: services.clone(),
        };
        running.push(listen(config.tls.address, "tls", shared).await?);
    }
    if config.ws.enabled {
        let options = WsAcceptOptions {
            paths: vec![config.ws.path.clone()],
            max_message_bytes: config.ws.max_message_bytes,
            ..WsAcceptOptions::default()
        };
        let shared = Shared {
            name: "stomp.ws",
            limits: config.ws.limits,
            settings: settings(&config.ws.limits),
            timing,
            upgrade: Upgrade::WebSocket(Arc::new(options)),
            services: services.clone(),
        };
        running.push(listen(config.ws.address, "ws", shared).await?);
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
    let guard = match shared.services.connections.register(
        Protocol::Stomp,
        shared.name,
        peer,
        shared.limits.max_connections,
    ) {
        Ok(guard) => guard,
        Err(full) => {
            tracing::warn!(listener = shared.name, %peer, "stomp: {full}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let origin = Origin {
        protocol: Protocol::Stomp,
        connection: guard.id(),
    };
    let session = Session::new(shared.settings.clone(), shared.services.bus.clone(), origin);
    let shutdown = shared.services.shutdown.clone();
    let timing = shared.timing;
    match &shared.upgrade {
        Upgrade::Plain => {
            connection::run(
                StreamTransport::new(stream),
                session,
                guard,
                shutdown,
                timing,
            )
            .await
        }
        Upgrade::Tls(acceptor) => {
            match timeout(timing.login_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    connection::run(StreamTransport::new(tls), session, guard, shutdown, timing)
                        .await
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "stomp: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "stomp: TLS handshake timed out"),
            }
        }
        Upgrade::WebSocket(options) => {
            let choose = |offered: &[String]| {
                SUBPROTOCOLS
                    .iter()
                    .find(|p| offered.iter().any(|o| o == *p))
                    .map(|p| (*p).to_owned())
            };
            match timeout(timing.login_timeout, ws::accept(stream, options, choose)).await {
                Ok(Ok((socket, _))) => {
                    connection::run(WsTransport::new(socket), session, guard, shutdown, timing)
                        .await
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "stomp: WebSocket upgrade failed"),
                Err(_) => tracing::debug!(%peer, "stomp: WebSocket upgrade timed out"),
            }
        }
    }
}
