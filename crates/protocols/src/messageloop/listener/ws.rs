//! `messageloop.ws`: accepts WebSocket connections (optionally over TLS) on the shared [`accept`](mod@accept) path,
//! with the upgrade and Connect under the pre-auth deadline and the socket [`Watched`](accept::Watched) (unfinished
//! frames, blocked writes), negotiates the subprotocol and hands the upgraded connection to its session loop
//! ([`driver::ws`]).
//!
//! Each accepted connection takes the [`Settings`] in effect at that moment (`messageloop::reload` swaps them).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::Protocol;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::accept::{self, Accepted, Run};
use crate::messageloop::codec::WsCodec;
use crate::messageloop::config::Config;
use crate::messageloop::driver::{self, ws::Connection};
use crate::messageloop::settings::Settings;
use crate::messageloop::subprotocol::negotiate;
use crate::ws::{accept, watched, WsAcceptOptions};
use crate::{RunningListener, Services};

pub const NAME: &str = "messageloop.ws";

struct Shared {
    /// Read once per accepted connection; replaced on reload.
    settings: Arc<ArcSwap<Settings>>,
    path: String,
    services: Services,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

pub(super) async fn start(
    config: &Config,
    services: &Services,
    settings: Arc<ArcSwap<Settings>>,
) -> anyhow::Result<RunningListener> {
    let tls = crate::tls::optional_acceptor(config.ws.tls.as_ref(), &[b"http/1.1"])
        .context("messageloop.ws.tls")?;
    let listener = TcpListener::bind(config.ws.address)
        .await
        .with_context(|| format!("messageloop.ws.address {}", config.ws.address))?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        settings,
        path: config.ws.path.clone(),
        services: services.clone(),
        tls,
    });
    let transport = if shared.tls.is_some() { "wss" } else { "ws" };
    let accepting = shared.clone();
    let pre_auth = shared.clone();
    let task = tokio::spawn(accept::run(
        listener,
        NAME,
        services.shutdown.clone(),
        move || pre_auth.settings.load().deadlines.pre_auth(),
        move |accepted| admit(accepted, &accepting),
    ));
    Ok(RunningListener {
        name: NAME.to_owned(),
        protocol: Protocol::MessageLoop,
        transport,
        local_addr,
        task,
    })
}

/// Registers a socket just accepted, or refuses it when the listener is full.
fn admit(accepted: Accepted, shared: &Arc<Shared>) -> Option<impl Future<Output = ()>> {
    let settings = shared.settings.load_full();
    let Ok(guard) = shared.services.connections.register(
        Protocol::MessageLoop,
        NAME,
        accepted.peer,
        settings.limits.max_connections,
    ) else {
        tracing::debug!(peer = %accepted.peer, listener = NAME, "connection limit reached");
        return None;
    };
    let shared = shared.clone();
    let Accepted {
        stream,
        peer,
        pre_auth_deadline,
    } = accepted;
    let connection = Connection {
        peer,
        guard,
        login_by: pre_auth_deadline,
    };
    // The TLS handshake and the upgrade, then the session's loop: the task holds nothing of the upgrade while the
    // loop runs.
    Some(accept::upgrade_then_run(async move {
        let Some(acceptor) = &shared.tls else {
            return upgrade(stream, connection, &shared, settings).await;
        };
        let shutdown = &shared.services.shutdown;
        match accept::handshake(NAME, acceptor.accept(stream), pre_auth_deadline, shutdown).await {
            Ok(stream) => upgrade(stream, connection, &shared, settings).await,
            Err(error) => {
                tracing::debug!(%peer, %error, "tls handshake");
                None
            }
        }
    }))
}

/// The WebSocket upgrade under the pre-auth deadline: the session's loop to run, or `None` (logged) when the
/// upgrade failed.
async fn upgrade<S>(
    stream: S,
    connection: Connection,
    shared: &Shared,
    settings: Arc<Settings>,
) -> Option<Run>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Connection { peer, login_by, .. } = connection;
    let setting = settings.generation;
    let options = WsAcceptOptions {
        paths: vec![shared.path.clone()],
        max_message_bytes: settings.limits.max_message_size,
        ..WsAcceptOptions::default()
    };
    let shutdown = shared.services.shutdown.clone();
    let stream = watched(stream, &settings.deadlines);
    let upgrade = accept(stream, &options, |offered| {
        negotiate(offered.iter().map(String::as_str), setting).subprotocol
    });
    let (mut ws, accepted) = match accept::handshake(NAME, upgrade, login_by, &shutdown).await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%peer, %error, "websocket upgrade");
            return None;
        }
    };
    // The upgrade request was not a MessageLoop frame.
    ws.get_mut().frame_finished(false);
    let encoding = negotiate(accepted.offered.iter().map(String::as_str), setting).encoding;
    let codec = WsCodec::new(encoding, setting);
    let max = options.max_message_bytes;
    Some(Box::pin(driver::ws::run(
        ws, codec, connection, settings, shutdown, max,
    )))
}
