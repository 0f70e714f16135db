//! The chanserv TCP listener (`chanserv.tcp`): accepts connections on the shared [`accept`] path and runs one tokio task per connection that
//! drives a [`Session`] — socket bytes in, timers from [`Session::poll_timeout`], bus deliveries while the
//! sources have room, and everything the session has to send written as one coalesced buffer per turn.
//!
//! The process gets one random AstraNet host id and one port counter, shared by every connection, like one Go
//! AstraNet node. On shutdown the listener stops accepting and every connection closes its streams (FIN2) before
//! its socket.
//!
//! Reload swaps the [`Settings`] each new connection takes (identity and ACLs, service name, compression, frame and
//! connection limits, timeouts) and keeps the host id and port counter; open connections keep theirs. The address needs a
//! restart.

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

use super::astranet::{HostId, LinkConfig, PortCounter};
use super::config::ChanservConfig;
use super::session::{Session, SessionConfig};
use crate::accept::{self, Accepted, Deadlines};
use crate::auth::{Authenticator, Identity};
use crate::{ConnectionGuard, Reload, RunningListener, Services};

/// Config path of the listener.
pub const LISTENER_NAME: &str = "chanserv.tcp";

/// What a connection takes from the config when it is accepted; replaced whole on reload.
struct Settings {
    link: LinkConfig,
    session: SessionConfig,
    identity: Identity,
    max_connections: usize,
    deadlines: Deadlines,
}

impl Settings {
    /// Checks `config` and builds the settings from it, on the node's `host` and port counter.
    fn new(config: &ChanservConfig, host: HostId, ports: PortCounter) -> anyhow::Result<Settings> {
        config.validate()?;
        let auth = Arc::new(Authenticator::new(config.auth.clone()).context("chanserv.auth")?);
        let mut link = LinkConfig::new(host);
        link.service = config.service()?;
        link.ports = ports;
        link.handshake_timeout = config.deadlines.pre_auth();
        link.stall_timeout = config.deadlines.idle_frame();
        Ok(Settings {
            link,
            session: SessionConfig {
                compression: config.compression.into(),
                frame_limit: config.max_frame_bytes,
                max_sources_per_request: config.max_sources_per_request,
                max_subscriptions: config.limits.max_subscriptions_per_connection,
                auth: auth.clone(),
                timeouts: config.timeouts.into(),
            },
            identity: auth.anonymous().clone(),
            max_connections: config.limits.max_connections,
            deadlines: config.deadlines,
        })
    }
}

/// Applies a new `[chanserv]` section to the running listener.
struct Reloader {
    settings: Arc<ArcSwap<Settings>>,
    /// The section the listener was started with: what only a restart changes is compared against it.
    started: ChanservConfig,
}

impl Reload for Reloader {
    fn reload(&self, section: &toml::Value) -> Result<Vec<String>, String> {
        let next: ChanservConfig = section
            .clone()
            .try_into()
            .map_err(|error| format!("chanserv: {error}"))?;
        let current = self.settings.load();
        let settings = Settings::new(&next, current.link.host, current.link.ports.clone())
            .map_err(|error| format!("{error:#}"))?;
        self.settings.store(Arc::new(settings));
        let started = &self.started;
        let restart = [
            ("chanserv.enabled", started.enabled != next.enabled),
            ("chanserv.address", started.address != next.address),
        ];
        Ok(crate::restart_needed(&restart))
    }
}

/// Binds `config.address` and starts accepting.
pub async fn start(
    config: &ChanservConfig,
    services: &Services,
) -> anyhow::Result<RunningListener> {
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
    Ok(RunningListener {
        name: LISTENER_NAME.to_owned(),
        protocol: Protocol::Chanserv,
        transport: "tcp",
        local_addr,
        task,
        reload: Some(Box::new(Reloader {
            settings,
            started: config.clone(),
        })),
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
