//! The tokio loop of one MQTT connection: reads bytes into the [`Session`], takes deliveries from its mailbox in
//! batches while the client's in-flight window has room, writes what the session queued with one write, and
//! keeps the deadlines: CONNECT by the pre-auth deadline, 1.5 × keep-alive of silence after it, unfinished
//! packets and blocked writes through [`Watched`]. A publish the bus holds back stalls reading (deliveries go
//! on). When the connection ends, its will is published (after its delay, unless the client id came back) and
//! its session kept when it has an expiry. [`Transport`] hides whether packets travel on a byte stream or in
//! WebSocket binary messages.

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::BytesMut;
use core_bus::{Bus, Closed};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::retained::Retained;
use super::session::{Flow, Session, Will};
use super::store::SessionStore;
use crate::accept::waits::{next_batch, room, until, Stall};
use crate::accept::{self, Deadlines, ReadSize, Watched};
use crate::ws;
use crate::{CloseCause, ConnectionGuard};

/// Read size on byte streams while data keeps coming.
const READ_CHUNK: usize = 8 << 10;
/// How long a CONNECT waits for the connection that held its client id to end; past it, the new one goes on
/// without the old session.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);

/// Moves MQTT bytes: a byte stream (TCP, TLS) or WebSocket binary messages.
pub(crate) trait Transport {
    /// Appends received bytes to `buf`; `Ok(0)` at the end of input.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes `bytes` and flushes.
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The session took whole packets; `unfinished_left` says the next one has started.
    fn packets_finished(&mut self, unfinished_left: bool);
    /// Ends the write side and waits briefly for the peer to close.
    async fn close(self);
}

/// MQTT on a byte stream.
pub(crate) struct StreamTransport<S> {
    stream: Watched<S>,
    read_size: ReadSize,
}

impl<S> StreamTransport<S> {
    /// Straight on the socket.
    pub(crate) fn plain(stream: S, deadlines: &Deadlines) -> Self {
        StreamTransport {
            stream: Watched::new(stream, deadlines),
            read_size: ReadSize::new(READ_CHUNK),
        }
    }

    /// On a TLS stream (see [`ReadSize::behind_tls`]).
    pub(crate) fn tls(stream: S, deadlines: &Deadlines) -> Self {
        StreamTransport {
            stream: Watched::new(stream, deadlines),
            read_size: ReadSize::behind_tls(READ_CHUNK),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for StreamTransport<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        self.read_size.read(&mut self.stream, buf).await
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    fn packets_finished(&mut self, unfinished_left: bool) {
        self.stream.frame_finished(unfinished_left);
    }

    async fn close(mut self) {
        accept::linger(&mut self.stream).await;
    }
}

/// MQTT over WebSocket (§6 of 5.0): binary messages whose bytes are concatenated, so a packet may span messages
/// and a message may hold several. A text message is a protocol error.
pub(crate) struct WsTransport<S> {
    ws: WebSocketStream<Watched<S>>,
}

impl<S> WsTransport<S> {
    pub(crate) fn new(ws: WebSocketStream<Watched<S>>) -> Self {
        WsTransport { ws }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WsTransport<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Err(WsError::Capacity(error))) => return Err(io::Error::other(error)),
                Some(Err(error)) => return Err(io::Error::other(error)),
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket takes binary messages only",
                    ))
                }
                Some(Ok(Message::Binary(data))) if !data.is_empty() => {
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                Some(Ok(_)) => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .map_err(io::Error::other)
    }

    fn packets_finished(&mut self, unfinished_left: bool) {
        self.ws.get_mut().frame_finished(unfinished_left);
    }

    async fn close(mut self) {
        ws::close_and_linger(&mut self.ws, None).await;
    }
}

/// What a connection runs with besides its transport and session.
pub(crate) struct Connection {
    pub(crate) session: Session,
    pub(crate) guard: ConnectionGuard,
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when another connection takes this client id over.
    pub(crate) kick: CancellationToken,
    pub(crate) deadlines: Deadlines,
    pub(crate) write_batch: usize,
    /// CONNECT must have been accepted by then.
    pub(crate) login_by: Instant,
    pub(crate) bus: Bus,
    pub(crate) retained: Retained,
    pub(crate) sessions: SessionStore,
}

/// Hands `buf` to the session and tells the transport whether packets were finished.
fn receive<T: Transport>(session: &mut Session, buf: &mut BytesMut, transport: &mut T) -> Flow {
    let before = buf.len();
    let flow = session.handle_input(buf);
    if buf.len() < before {
        transport.packets_finished(!buf.is_empty());
    }
    flow
}

impl Connection {
    /// Runs the connection until it closes. Not an `async fn`: one keeps its arguments in the future beside the
    /// locals they are moved into (rust-lang/rust#62958), which would hold the connection twice for its whole life.
    pub(crate) fn run<T: Transport>(self, mut transport: T) -> impl Future<Output = ()> {
        let Connection {
            mut session,
            guard,
            shutdown,
            kick,
            deadlines,
            write_batch,
            login_by,
            bus,
            retained,
            sessions,
        } = self;
        async move {
            let write_timeout = deadlines.write();
            let mut last_read = Instant::now();
            let mut buf = BytesMut::new();
            let mut batch = Vec::new();
            let mut flow = Flow::Continue;
            let mut identified = false;
            let mut paused: Option<Stall> = None;
            // Set while a CONNECT waits for the previous holder of its client id to end.
            let mut handover: Option<Stall> = None;
            let mut lost = false;
            loop {
                if !session.poll_transmit().is_empty() {
                    let written =
                        timeout(write_timeout, transport.send(session.poll_transmit())).await;
                    if !matches!(written, Ok(Ok(()))) {
                        if written.is_err() {
                            guard.closing(CloseCause::Deadline);
                        }
                        lost = true;
                        break;
                    }
                    session.poll_transmit().clear();
                }
                if !identified {
                    if let Some(identity) = session.identity() {
                        guard.set_identity(&identity.name);
                        identified = true;
                    }
                }
                guard.set_subscriptions(session.subscription_count());
                if flow == Flow::Close {
                    break;
                }
                if paused.is_none() {
                    paused = session
                        .take_backpressure()
                        .map(|b| Box::pin(b.ready()) as _);
                }
                if handover.is_none() {
                    handover = session.handover().map(|released| {
                        Box::pin(async move {
                            let _ = timeout(HANDOVER_WAIT, released.cancelled_owned()).await;
                        }) as _
                    });
                }
                // While paused nothing is read, so the client's silence proves nothing.
                let dead_at = if paused.is_some() {
                    None
                } else if session.is_connected() {
                    session.keep_alive().map(|grace| last_read + grace)
                } else {
                    Some(login_by)
                };
                let deliveries = session.wants_deliveries();
                tokio::select! {
                    () = shutdown.cancelled() => {
                        guard.closing(CloseCause::Shutdown);
                        flow = session.shutdown();
                    }
                    () = kick.cancelled(), if session.is_connected() => flow = session.taken_over(),
                    () = room(handover.as_mut()), if handover.is_some() => {
                        handover = None;
                        flow = session.handed_over();
                        if flow == Flow::Continue {
                            flow = receive(&mut session, &mut buf, &mut transport);
                        }
                    }
                    () = room(paused.as_mut()), if paused.is_some() => {
                        paused = None;
                        last_read = Instant::now();
                        flow = receive(&mut session, &mut buf, &mut transport);
                    }
                    read = transport.read(&mut buf), if paused.is_none() && handover.is_none() => match read {
                        Ok(n) if n > 0 => {
                            last_read = Instant::now();
                            flow = receive(&mut session, &mut buf, &mut transport);
                        }
                        Ok(_) => {
                            lost = true;
                            break;
                        }
                        Err(error) => {
                            if error.kind() == io::ErrorKind::TimedOut {
                                guard.closing(CloseCause::Deadline);
                            }
                            lost = true;
                            break;
                        }
                    },
                    received = next_batch(session.mailbox_mut(), &mut batch, write_batch), if deliveries => {
                        match received {
                            Ok(_) => {
                                session.handle_deliveries(batch.drain(..));
                            }
                            Err(closed) => {
                                if closed == Closed::SlowConsumer {
                                    guard.closing(CloseCause::SlowConsumer);
                                }
                                flow = session.mailbox_closed(closed);
                            }
                        }
                    }
                    () = until(dead_at) => {
                        guard.closing(CloseCause::Deadline);
                        if session.is_connected() {
                            flow = session.handle_timeout();
                        } else {
                            tracing::debug!("mqtt: no CONNECT before the pre-auth deadline");
                            break;
                        }
                    }
                }
            }
            tracing::debug!(lost, "mqtt: connection closing");
            if let Some(will) = session.finish() {
                publish_will(will, bus, retained, sessions, shutdown);
            }
            Box::pin(transport.close()).await;
        }
    }
}

/// Publishes a will now, or after its delay unless the client id is connected again by then (or the daemon
/// stops first).
fn publish_will(
    will: Will,
    bus: Bus,
    retained: Retained,
    sessions: SessionStore,
    shutdown: CancellationToken,
) {
    let publish = move |will: Will| {
        if will.retain {
            retained.store(std::sync::Arc::new(will.envelope.clone()));
        }
        bus.publish(will.envelope);
    };
    if will.delay.is_zero() {
        publish(will);
        return;
    }
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(will.delay) => {
                if !sessions.is_live(&will.client_id) {
                    publish(will);
                }
            }
        }
    });
}
