//! The Goomerang WebSocket listener `goomerang.ws`: binds, accepts under the shared budget and deadlines, TLS
//! (optional), the shared WebSocket upgrade on `/ws` and `/wss`, and one task per connection that hands the
//! upgraded socket to `driver::run`.
//!
//! Credentials (optional unless `auth.required`): a verified TLS client certificate, or a token on the upgrade
//! (`Authorization: Bearer`, or `?access_token=`); a refused upgrade gets HTTP 401.
//!
//! Each accepted connection takes the `Settings` in effect at that moment (`reload` swaps them).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::config::Config;
use super::driver;
use super::reload;
use super::settings::Settings;
use crate::accept::{self, Accepted, Run};
use crate::ws;
use crate::{tls, ConnectionGuard, RunningListener, Services, Started};

/// The listener's name in `/api/listeners` and the connection registry.
pub const LISTENER_NAME: &str = "goomerang.ws";
/// Upgrade paths: the Go client dials `/ws` without TLS and `/wss` with it; both are served on either.
pub const PATHS: [&str; 2] = ["/ws", "/wss"];

/// What every connection of the listener shares.
pub(super) struct Shared {
    services: Services,
    /// Read once per accepted connection; replaced on reload.
    pub(super) settings: ArcSwap<Settings>,
    tls: Option<TlsAcceptor>,
}

/// Binds the listener if `config.enabled`, and serves until [`Services::shutdown`] is cancelled.
pub async fn start(config: &Config, services: &Services) -> anyhow::Result<Started<Config>> {
    if !config.enabled {
        return Ok(Started::nothing());
    }
    let settings = Settings::new(config)?;
    let tls =
        tls::optional_acceptor(config.tls.as_ref(), &[b"http/1.1"]).context("goomerang.tls")?;
    let listener = TcpListener::bind(config.address)
        .await
        .with_context(|| format!("goomerang: cannot bind {}", config.address))?;
    let local_addr = listener.local_addr()?;
    let transport = if tls.is_some() { "wss" } else { "ws" };
    let shared = Arc::new(Shared {
        services: services.clone(),
        settings: ArcSwap::from_pointee(settings),
        tls,
    });
    let accepting = shared.clone();
    let pre_auth = shared.clone();
    let task = tokio::spawn(accept::run(
        listener,
        LISTENER_NAME,
        services.shutdown.clone(),
        move || pre_auth.settings.load().deadlines.pre_auth(),
        move |accepted| admit(accepted, &accepting),
    ));
    Ok(Started {
        listeners: vec![RunningListener {
            name: LISTENER_NAME.to_owned(),
            protocol: Protocol::Goomerang,
            transport,
            local_addr,
            task,
        }],
        reload: Some(Box::new(reload::reloader(shared, config))),
    })
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(accepted: Accepted, shared: &Arc<Shared>) -> Option<impl Future<Output = ()>> {
    let settings = shared.settings.load_full();
    let guard = match shared.services.connections.register(
        Protocol::Goomerang,
        LISTENER_NAME,
        accepted.peer,
        settings.max_connections,
    ) {
        Ok(guard) => guard,
        Err(error) => {
            tracing::warn!(peer = %accepted.peer, %error, "goomerang: connection refused");
            return None;
        }
    };
    let shared = shared.clone();
    // The TLS handshake and the upgrade, then the connection's loop: the task holds nothing of the upgrade while
    // the loop runs.
    Some(accept::upgrade_then_run(async move {
        let services = &shared.services;
        match &shared.tls {
            None => upgrade(accepted, None, guard, services, &settings).await,
            Some(acceptor) => upgrade_tls(acceptor, accepted, guard, services, &settings).await,
        }
    }))
}

/// The TLS handshake, then [`upgrade`]; `None` when either failed.
async fn upgrade_tls(
    acceptor: &TlsAcceptor,
    accepted: Accepted,
    guard: ConnectionGuard,
    services: &Services,
    settings: &Settings,
) -> Option<Run> {
    let Accepted {
        stream,
        peer,
        pre_auth_deadline,
    } = accepted;
    let handshake = accept::handshake(
        LISTENER_NAME,
        acceptor.accept(stream),
        pre_auth_deadline,
        &services.shutdown,
    );
    match handshake.await {
        Ok(stream) => {
            let certificate = tls::peer_names(stream.get_ref().1);
            let accepted = Accepted {
                stream,
                peer,
                pre_auth_deadline,
            };
            upgrade(accepted, certificate, guard, services, settings).await
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "goomerang: TLS handshake");
            None
        }
    }
}

/// The WebSocket upgrade, refused with 401 when the client's token or certificate (`certificate`: the
/// common name of a verified TLS client certificate) does not authenticate it; then the connection's loop (boxed)
/// to run, `None` when the upgrade failed.
async fn upgrade<S>(
    accepted: Accepted<S>,
    certificate: Option<Vec<String>>,
    guard: ConnectionGuard,
    services: &Services,
    settings: &Settings,
) -> Option<Run>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Accepted {
        stream,
        peer,
        pre_auth_deadline,
    } = accepted;
    let stream = ws::watched(stream, &settings.deadlines);
    let upgrade = ws::accept_authorized(
        stream,
        &settings.ws,
        |_| None,
        |request| {
            settings
                .auth
                .authenticate_upgrade(certificate.as_deref(), request)
                .map_err(|error| {
                    tracing::debug!(%peer, %error, "goomerang: upgrade refused");
                    StatusCode::UNAUTHORIZED
                })
        },
    );
    match accept::handshake(
        LISTENER_NAME,
        upgrade,
        pre_auth_deadline,
        &services.shutdown,
    )
    .await
    {
        Ok((ws, _, identity)) => {
            driver::run(ws, identity, peer, guard, services, settings).map(|run| run as Run)
        }
        Err(error) => {
            tracing::debug!(%peer, %error, "goomerang: upgrade");
            None
        }
    }
}
