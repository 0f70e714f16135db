//! The chanserv TCP listener (`chanserv.tcp`): accepts connections on the shared [`accept`] path and runs one tokio task per connection that
//! drives a [`Session`] — socket bytes in, timers from [`Session::poll_timeout`], bus deliveries while the
//! sources have room, and everything the session has to send written as one coalesced buffer per turn.
//!
//! The process gets one random AstraNet host id and one port counter, shared by every connection, like one Go
//! AstraNet node. On shutdown the listener stops accepting and every connection closes its streams (FIN2) before
//! its socket.
//!
//! Each accepted connection takes the [`Settings`] in effect at that moment ([`super::reload`] swaps them).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use bytes::BytesMut;
use core_bus::{Origin, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::astranet::{HostId, PortCounter};
use super::config::Config;
use super::reload::Reloader;
use super::session::Session;
use super::settings::Settings;
use crate::accept::{self, Accepted};
use crate::{CloseCause, ConnectionGuard, RunningListener, Services, Started};

/// Config path of the listener.
pub const LISTENER_NAME: &str = "chanserv.tcp";

/// Binds `config.address` and starts accepting.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    if !config.enabled {
        return Ok(Started::nothing());
    }
    let settings = Settings::new(config, random_host(), PortCounter::new())?;
    let listener = TcpListener::bind(config.address)
        .await
        .with_context(|| format!("chanserv.address {}", config.address))?;
    let local_addr = listener.local_addr()?;
    tracing::info!(
        address = %local_addr,
        host = %settings.link.host,
        service = settings.link.service.as_str(),
        "chanserv listener bound"
    );
    let settings = Arc::new(ArcSwap::from_pointee(settings));
    let (accepting, pre_auth, for_admit) = (settings.clone(), settings.clone(), services.clone());
    let task = tokio::spawn(accept::run(
        listener,
        LISTENER_NAME,
        services.shutdown.clone(),
        move || pre_auth.load().deadlines.pre_auth(),
        move |accepted| admit(accepted, &accepting, &for_admit),
    ));
    Ok(Started {
        listeners: vec![RunningListener {
            name: LISTENER_NAME.to_owned(),
            protocol: Protocol::Chanserv,
            transport: "tcp",
            local_addr,
            task,
        }],
        reload: Some(Box::new(Reloader::new(settings, config))),
    })
}

/// A random non-zero node id below 2^63, as AstraNet draws them.
fn random_host() -> HostId {
    loop {
        let id = rand::random::<u64>() >> 1;
        if id != 0 {
            return HostId(id);
        }
    }
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(
    accepted: Accepted,
    settings: &ArcSwap<Settings>,
    services: &Services,
) -> Option<impl Future<Output = ()>> {
    let settings = settings.load_full();
    let registered = services.connections.register(
        Protocol::Chanserv,
        LISTENER_NAME,
        accepted.peer,
        settings.max_connections,
    );
    match registered {
        Ok(guard) => Some(serve(
            accepted.stream,
            accepted.peer,
            guard,
            settings,
            services.clone(),
        )),
        Err(e) => {
            tracing::warn!(peer = %accepted.peer, error = %e, "chanserv: connection refused");
            None
        }
    }
}

/// Drives one connection until the link closes, the peer goes away, or the daemon shuts down.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    guard: ConnectionGuard,
    settings: Arc<Settings>,
    services: Services,
) {
    guard.set_identity(&settings.identity.name);
    let origin = Origin {
        protocol: Protocol::Chanserv,
        connection: guard.id(),
    };
    let mut session = Session::new(
        settings.link.clone(),
        settings.session.clone(),
        services.bus.clone(),
        origin,
        settings.identity.clone(),
        Some(peer),
        Instant::now(),
    );
    let write_deadline = settings.deadlines.write();
    let (mut reader, mut writer) = socket.into_split();
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut blocked: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    loop {
        if let Some(bytes) = session.poll_transmit(Instant::now()) {
            match timeout(write_deadline, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "chanserv: write failed");
                    break;
                }
                Err(_) => {
                    tracing::debug!(%peer, "chanserv: client did not read before the write deadline");
                    guard.closing(CloseCause::Deadline);
                    break;
                }
            }
        }
        guard.set_subscriptions(session.subscription_count());
        if session.is_closed() {
            break;
        }
        if let Some(backpressure) = session.take_backpressure() {
            blocked = Some(Box::pin(backpressure.ready()));
        }
        let wake = session.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = services.shutdown.cancelled() => {
                guard.closing(CloseCause::Shutdown);
                session.shutdown(Instant::now());
                if let Some(bytes) = session.poll_transmit(Instant::now()) {
                    let _ = timeout(write_deadline, writer.write_all(&bytes)).await;
                }
                let _ = timeout(write_deadline, writer.shutdown()).await;
                break;
            }
            read = reader.read_buf(&mut input), if blocked.is_none() => match read {
                Ok(0) => session.handle_eof(Instant::now()),
                Ok(_) => {
                    session.handle_input(&input, Instant::now());
                    input.clear();
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "chanserv: read failed");
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        guard.closing(CloseCause::Deadline);
                    }
                    session.handle_eof(Instant::now());
                }
            },
            _ = async {
                if let Some(ready) = blocked.as_mut() {
                    ready.await;
                }
            }, if blocked.is_some() => {
                blocked = None;
            }
            _ = sleep_until(wake), if wake.is_some() => session.handle_timeout(Instant::now()),
            _ = poll_fn(|cx| session.poll_deliveries(cx, Instant::now())) => {}
        }
    }
    tracing::debug!(%peer, stats = ?session.link().stats(), "chanserv: connection closed");
}

async fn sleep_until(wake: Option<tokio::time::Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
