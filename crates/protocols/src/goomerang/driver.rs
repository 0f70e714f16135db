//! The tokio loop of one Goomerang connection, from the end of the WebSocket upgrade: [`run`] sets up the
//! connection's [`Session`], feeds it the client's binary messages in order (every message already received, up
//! to [`BATCH`], per turn of the loop; after a full batch it yields to the worker's other tasks) and writes the
//! session's deliveries back, a batch per flush.
//!
//! Text messages are ignored (and counted as malformed), pings are answered by tungstenite, and with an idle
//! timeout a quiet client is pinged once at half of it and closed at the end of it. Every close gatewayd starts
//! uses code 1000 ([`super::close`]): a client close is echoed and then gatewayd closes TCP; on shutdown, a message
//! over the size limit, a slow consumer or an idle client, gatewayd sends close 1000 with a reason and waits at
//! most [`ECHO_TIMEOUT`](super::close::ECHO_TIMEOUT) for the echo.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Closed, Delivery, Origin, Protocol};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::close::{CloseHandshake, CloseReason, PeerClose};
use super::session::{Inbound, Session};
use super::settings::Settings;
use crate::accept::waits::{room, until, Stall};
use crate::accept::Watched;
use crate::auth::Identity;
use crate::{CloseCause, ConnectionGuard, Services};

/// Most client messages handled, and most deliveries written, per turn of the connection loop (one write per turn:
/// 256 took 5 % less CPU per delivery than 64 at 16 B, docs/benchmarks.md, session 27).
const BATCH: usize = 256;

/// Sets up one upgraded connection of `identity` and hands back its loop, boxed, which runs until the connection
/// ends: the client leaves, the close handshake is over, IO fails or gatewayd closes it; `None` when its session
/// cannot be set up. A plain function rather than an `async fn` awaiting the loop: an `async fn` keeps its
/// arguments (the WebSocket among them) beside the connection they are moved into for the connection's whole life.
pub(super) fn run<S>(
    mut ws: WebSocketStream<Watched<S>>,
    identity: Identity,
    peer: SocketAddr,
    guard: ConnectionGuard,
    services: &Services,
    settings: &Settings,
) -> Option<Pin<Box<impl Future<Output = ()>>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
            return None;
        }
    };
    tracing::debug!(%peer, connection = %guard.id(), "goomerang: connected");
    let connection = Connection {
        ws,
        session,
        guard,
        shutdown: services.shutdown.clone(),
        batch: Vec::new(),
        handshake: CloseHandshake::new(),
        stalled: None,
        write_deadline: settings.deadlines.write(),
        idle: settings.idle_timeout.map(Idle::new),
    };
    Some(Box::pin(connection.run().map(move |()| {
        tracing::debug!(%peer, "goomerang: disconnected");
    })))
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
    stalled: Option<Stall>,
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
    /// The connection's loop. Not an `async fn`: one keeps `self` in the future beside the local it is moved
    /// into (rust-lang/rust#62958), which would hold the connection twice for its whole life.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self) -> impl Future<Output = ()> {
        async move {
            let reason = loop {
                let mut stall = self.stalled.take();
                let check = self.idle.as_ref().map(Idle::next_check);
                let step = tokio::select! {
                    _ = self.shutdown.cancelled() => Step::Close(CloseReason::Shutdown),
                    () = until(check.map(Into::into)) => self.on_quiet().await,
                    () = room(stall.as_mut()), if stall.is_some() => {
                        stall = None;
                        Step::Continue
                    }
                    message = self.ws.next(), if stall.is_none() => self.on_client_batch(message).await,
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

    /// Handles `first`, then the messages already received without waiting (up to [`BATCH`] in all), so a client
    /// that pipelines publishes costs one turn of the loop per batch; stops after one that stalled a publish or
    /// ends the connection.
    async fn on_client_batch(&mut self, first: Option<Result<Message, WsError>>) -> Step {
        // The batch arrived together: the client is heard from once, at its first message.
        if let (Some(Ok(_)), Some(idle)) = (&first, self.idle.as_mut()) {
            idle.heard = Instant::now();
            idle.pinged = false;
        }
        // And one clock reading stamps all of its publishes.
        let now_ms = core_bus::now_ms();
        let mut message = first;
        let mut taken = 0;
        loop {
            let step = self.on_client(message, now_ms).await;
            taken += 1;
            if self.stalled.is_some() || !matches!(step, Step::Continue) {
                return step;
            }
            if taken == BATCH {
                // More is probably waiting, and the subscribers these publishes woke are queued behind this task
                // on this worker (tokio runs a woken task there once this one returns, which a busy socket would
                // put off for 128 reads): let them run first.
                tokio::task::yield_now().await;
                return step;
            }
            match self.ws.next().now_or_never() {
                Some(next) => message = next,
                None => return Step::Continue,
            }
        }
    }

    async fn on_client(&mut self, message: Option<Result<Message, WsError>>, now_ms: u64) -> Step {
        let message = match message {
            None => return Step::Done,
            Some(Ok(message)) => {
                self.ws.get_mut().frame_finished(false);
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
                let inbound = self.session.handle_input(bytes, now_ms);
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
                if let Some(frame) = self.session.handle_delivery(delivery, now) {
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
