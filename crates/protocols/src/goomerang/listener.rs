//! The Goomerang WebSocket listener `goomerang.ws`: TCP (optionally TLS), the shared WebSocket upgrade on
//! `/ws` and `/wss`, and one task per connection that feeds binary messages to its [`Session`] in order
//! and writes the session's deliveries back, a batch per flush.
//!
//! Text messages are ignored (and counted as malformed), pings are answered by tungstenite, and every close
//! gatewayd starts uses code 1000 (reference §1.5): a client close is echoed and then gatewayd closes TCP;
//! on shutdown, a message over the size limit or a slow consumer, gatewayd sends close 1000 with a reason and
//! waits at most [`ECHO_TIMEOUT`](super::close::ECHO_TIMEOUT) for the echo.
//!
//! Credentials (optional unless `auth.required`): a verified TLS client certificate, or a token on the upgrade
//! (`Authorization: Bearer`, or `?access_token=`); a refused upgrade gets HTTP 401.
//!
//! Each accepted connection takes the [`Settings`] in effect at that moment ([`super::reload`] swaps them).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Closed, Delivery, Origin, Protocol};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::close::{CloseHandshake, CloseReason, PeerClose};
use super::config::Config;
use super::reload::Reloader;
use super::session::{Inbound, Session};
use super::settings::Settings;
use crate::accept::{self, Accepted, Watched};
use crate::ws;
use crate::{tls, CloseCause, ConnectionGuard, RunningListener, Services, Started};

/// The listener's name in `/api/listeners` and the connection registry.
pub const LISTENER_NAME: &str = "goomerang.ws";
/// Upgrade paths: the Go client dials `/ws` without TLS and `/wss` with it; both are served on either.
pub const PATHS: [&str; 2] = ["/ws", "/wss"];
const BATCH: usize = 64;

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
    let tls = match &config.tls {
        Some(tls) => Some(TlsAcceptor::from(
            tls::server_config(tls, &[b"http/1.1"]).context("goomerang.tls")?,
        )),
        None => None,
    };
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
        reload: Some(Box::new(Reloader::new(shared, config))),
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
    Some(async move {
        match &shared.tls {
            None => upgrade(accepted, None, guard, &shared.services, &settings).await,
            // Boxed so that plain connections, the common case, do not carry the size of a TLS connection's
            // state in their task.
            Some(acceptor) => {
                Box::pin(upgrade_tls(
                    acceptor,
                    accepted,
                    guard,
                    &shared.services,
                    &settings,
                ))
                .await
            }
        }
    })
}

async fn upgrade_tls(
    acceptor: &TlsAcceptor,
    accepted: Accepted,
    guard: ConnectionGuard,
    services: &Services,
    settings: &Settings,
) {
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
        Err(error) => tracing::debug!(%peer, %error, "goomerang: TLS handshake"),
    }
}

/// The WebSocket upgrade, refused with 401 when the client's token or certificate (`certificate`: the
/// common name of a verified TLS client certificate) does not authenticate it.
async fn upgrade<S>(
    accepted: Accepted<S>,
    certificate: Option<Vec<String>>,
    guard: ConnectionGuard,
    services: &Services,
    settings: &Settings,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Accepted {
        stream,
        peer,
        pre_auth_deadline,
    } = accepted;
    let shutdown = services.shutdown.clone();
    let stream = Watched::new(stream, &settings.deadlines);
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
    let (mut ws, identity) =
        match accept::handshake(LISTENER_NAME, upgrade, pre_auth_deadline, &shutdown).await {
            Ok((ws, _, identity)) => (ws, identity),
            Err(error) => {
                tracing::debug!(%peer, %error, "goomerang: upgrade");
                return;
            }
        };
    // The upgrade request was not a Goomerang frame.
    ws.get_mut().frame_finished(false);
    let origin = Origin {
        protocol: Protocol::Goomerang,
        connection: guard.id(),
    };
    guard.set_identity(&identity.name);
    let session = match Session::new(&services.bus, origin, identity, settings.session.clone()) {
        Ok(session) => session,
        Err(error) => {
            tracing::warn!(%peer, %error, "goomerang: cannot set up the session");
            return;
        }
    };
    tracing::debug!(%peer, connection = %guard.id(), "goomerang: connected");
    Connection {
        ws,
        session,
        guard,
        shutdown,
        batch: Vec::new(),
        handshake: CloseHandshake::new(),
        stalled: None,
        write_deadline: settings.deadlines.write(),
        idle: settings.idle_timeout.map(Idle::new),
    }
    .run()
    .await;
    tracing::debug!(%peer, "goomerang: disconnected");
}

/// What the connection loop does next.
enum Step {
    Continue,
    /// gatewayd closes the connection with code 1000 for this reason.
    Close(CloseReason),
    /// The connection is over (peer gone, close handshake done, or IO failed): drop the socket.
    Done,
}

struct Connection<S> {
    ws: WebSocketStream<Watched<S>>,
    session: Session,
    guard: ConnectionGuard,
    shutdown: CancellationToken,
    batch: Vec<Delivery>,
    handshake: CloseHandshake,
    /// A stalled publish: nothing more is read from the client until it resolves; deliveries go on.
    stalled: Option<futures::future::BoxFuture<'static, ()>>,
    /// Longest time one batch of deliveries may take to write before the connection is dropped.
    write_deadline: Duration,
    idle: Option<Idle>,
}

/// The idle timeout of one connection: when the client was last heard from, and whether it was pinged since.
struct Idle {
    timeout: Duration,
    heard: Instant,
    pinged: bool,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        Idle {
            timeout,
            heard: Instant::now(),
            pinged: false,
        }
    }

    /// When to look again: the ping at half the timeout, then the timeout.
    fn next_check(&self) -> Instant {
        if self.pinged {
            self.heard + self.timeout
        } else {
            self.heard + self.timeout / 2
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(mut self) {
        let reason = loop {
            let mut stall = self.stalled.take();
            let check = self.idle.as_ref().map(Idle::next_check);
            let step = tokio::select! {
                _ = self.shutdown.cancelled() => Step::Close(CloseReason::Shutdown),
                () = sleep_until_some(check) => self.on_quiet().await,
                () = async {
                    if let Some(stall) = stall.as_mut() {
                        stall.await;
                    }
                }, if stall.is_some() => {
                    stall = None;
                    Step::Continue
                }
                message = self.ws.next(), if stall.is_none() => self.on_client(message).await,
                received = self.session.mailbox().recv_batch(&mut self.batch, BATCH) => {
                    self.on_deliveries(received).await
                }
            };
            if stall.is_some() {
                self.stalled = stall;
            }
            match step {
                Step::Continue => {}
                Step::Close(reason) => {
                    self.guard.closing(match reason {
                        CloseReason::MessageTooBig => CloseCause::ProtocolError,
                        CloseReason::Shutdown => CloseCause::Shutdown,
                        CloseReason::SlowConsumer => CloseCause::SlowConsumer,
                        CloseReason::IdleTimeout => CloseCause::Deadline,
                    });
                    break reason;
                }
                Step::Done => return,
            }
        };
        // Boxed: it runs once, so its state need not enlarge the connection task for its whole life.
        Box::pin(self.close(reason)).await;
    }

    /// The client has been quiet until the idle check: ping it once, then close.
    async fn on_quiet(&mut self) -> Step {
        let Some(idle) = self.idle.as_mut() else {
            return Step::Continue;
        };
        if idle.pinged {
            return Step::Close(CloseReason::IdleTimeout);
        }
        idle.pinged = true;
        match tokio::time::timeout(
            self.write_deadline,
            self.ws.send(Message::Ping(Default::default())),
        )
        .await
        {
            Ok(Ok(())) => Step::Continue,
            _ => Step::Done,
        }
    }

    async fn on_client(&mut self, message: Option<Result<Message, WsError>>) -> Step {
        let message = match message {
            None => return Step::Done,
            Some(Ok(message)) => {
                self.ws.get_mut().frame_finished(false);
                if let Some(idle) = self.idle.as_mut() {
                    idle.heard = Instant::now();
                    idle.pinged = false;
                }
                message
            }
            Some(Err(WsError::Capacity(error))) => {
                tracing::debug!(%error, "goomerang: closing the connection");
                return Step::Close(CloseReason::MessageTooBig);
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "goomerang: read failed");
                if matches!(&error, WsError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut) {
                    self.guard.closing(CloseCause::Deadline);
                }
                return Step::Done;
            }
        };
        match message {
            Message::Binary(bytes) => {
                let inbound = self.session.on_message(bytes);
                self.guard
                    .set_subscriptions(self.session.subscription_count());
                match inbound {
                    Inbound::Continue => Step::Continue,
                    Inbound::Close(reason) => Step::Close(reason),
                    Inbound::Wait(backpressure) => {
                        self.stalled = Some(Box::pin(backpressure.ready()));
                        Step::Continue
                    }
                }
            }
            Message::Text(_) => {
                tracing::debug!("goomerang: text message ignored");
                record_drop(DropReason::Malformed, Protocol::Goomerang);
                Step::Continue
            }
            Message::Close(_) => {
                // tungstenite has queued the echo (the client's own code, 1000 for every Go client);
                // flushing sends it, and dropping the socket afterwards closes TCP as the client expects.
                if let PeerClose::EchoThenCloseTcp(_) = self.handshake.on_peer_close() {
                    let _ = self.ws.flush().await;
                }
                Step::Done
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Step::Continue,
        }
    }

    async fn on_deliveries(&mut self, received: Result<usize, Closed>) -> Step {
        if let Err(Closed::SlowConsumer) = received {
            return Step::Close(CloseReason::SlowConsumer);
        }
        let now = SystemTime::now();
        let write = async {
            for delivery in self.batch.drain(..) {
                if let Some(frame) = self.session.on_delivery(delivery, now) {
                    self.ws.feed(Message::Binary(frame)).await?;
                }
            }
            self.ws.flush().await
        };
        match tokio::time::timeout(self.write_deadline, write).await {
            Ok(Ok(())) => Step::Continue,
            Ok(Err(error)) => {
                tracing::debug!(%error, "goomerang: write failed");
                Step::Done
            }
            Err(_) => {
                tracing::debug!("goomerang: write timed out");
                self.guard.closing(CloseCause::Deadline);
                Step::Done
            }
        }
    }

    /// Sends close 1000 with `reason`, then reads until the client's echo (or its deadline) and drops
    /// the socket.
    async fn close(mut self, reason: CloseReason) {
        let Some(frame) = self.handshake.initiate(reason, Instant::now()) else {
            return;
        };
        let close = WsCloseFrame {
            code: CloseCode::from(frame.code()),
            reason: frame.reason().into(),
        };
        if self.ws.send(Message::Close(Some(close))).await.is_err() {
            return;
        }
        let Some(deadline) = self.handshake.deadline() else {
            return;
        };
        loop {
            let read = tokio::time::timeout_at(deadline.into(), self.ws.next()).await;
            match read {
                Ok(Some(Ok(Message::Close(_)))) => {
                    self.handshake.on_peer_close();
                    return;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return,
                Err(_) => {
                    self.handshake.on_timeout(Instant::now());
                    return;
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
