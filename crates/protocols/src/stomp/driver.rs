//! The tokio loop of one STOMP connection: reads bytes into the [`Session`], drains the mailbox in
//! batches, writes everything queued with one write, keeps the negotiated heart-beats and the
//! deadlines (pre-auth until CONNECTED, unfinished frames and blocked writes through [`Watched`]),
//! and closes as docs/protocols/stomp.md, "Errors" says (flush, shut the write side, drain input
//! for up to a second). [`Transport`] hides whether frames travel on a byte stream or as WebSocket
//! messages.

use std::future::Future;
use std::io;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use core_bus::Closed;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::frame::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::outbox::Outbox;
use super::session::{Flow, Session};
use crate::accept::waits::{earliest, next_batch, room, until, Stall};
use crate::accept::{self, Deadlines, ReadSize, Watched};
use crate::ws;
use crate::{CloseCause, ConnectionGuard};

/// Read size on byte streams while data keeps coming.
const READ_CHUNK: usize = 64 << 10;
/// A read at least this large yields to the other tasks of the worker before the next one.
const BUSY_READ: usize = 4 << 10;

/// Moves STOMP bytes: a byte stream (TCP, TLS) or WebSocket messages.
pub(crate) trait Transport {
    /// Appends received bytes to `buf`; `Ok(0)` at the end of input.
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
    /// Writes the frames and flushes once.
    async fn send(&mut self, frames: &mut Outbox) -> io::Result<()>;
    async fn heart_beat(&mut self) -> io::Result<()>;
    /// The session finished at least one frame; `unfinished_left` says the next one has started.
    fn frames_finished(&mut self, unfinished_left: bool);
    /// Flushes, ends the write side, and waits briefly for the peer to close.
    async fn close(self);
}

/// STOMP on a byte stream.
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

    async fn send(&mut self, frames: &mut Outbox) -> io::Result<()> {
        self.stream.write_all(frames.as_bytes()).await?;
        self.stream.flush().await
    }

    async fn heart_beat(&mut self) -> io::Result<()> {
        self.stream.write_all(b"\n").await?;
        self.stream.flush().await
    }

    fn frames_finished(&mut self, unfinished_left: bool) {
        self.stream.frame_finished(unfinished_left);
    }

    async fn close(mut self) {
        accept::linger(&mut self.stream).await;
    }
}

/// STOMP over WebSocket: each outbound frame is one message (text when it is UTF-8, binary
/// otherwise); inbound messages are concatenated, so frames may span messages and a message
/// may hold several frames.
pub(crate) struct WsTransport<S> {
    ws: WebSocketStream<Watched<S>>,
}

impl<S> WsTransport<S> {
    pub(crate) fn new(ws: WebSocketStream<Watched<S>>) -> Self {
        WsTransport { ws }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsTransport<S> {
    /// Answers a message over `stomp.ws.max_message_bytes` (or a frame header declaring one) with close
    /// 1009, and waits briefly for the client's close so the frame is not lost to a reset.
    async fn refuse_too_big(&mut self) {
        let frame = CloseFrame {
            code: CloseCode::Size,
            reason: Utf8Bytes::from_static("message too big"),
        };
        ws::close_and_linger(&mut self.ws, Some(frame)).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport for WsTransport<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.is_empty() {
            // Given back while waiting, so a quiet connection keeps no room from its last message.
            *buf = BytesMut::new();
        }
        loop {
            let data = match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Err(WsError::Capacity(error))) => {
                    // Boxed: it runs at most once per connection.
                    Box::pin(self.refuse_too_big()).await;
                    return Err(io::Error::other(error));
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
                Some(Ok(Message::Text(text))) => Bytes::from(text),
                Some(Ok(Message::Binary(data))) => data,
                Some(Ok(_)) => continue,
            };
            if !data.is_empty() {
                buf.extend_from_slice(&data);
                return Ok(data.len());
            }
        }
    }

    async fn send(&mut self, frames: &mut Outbox) -> io::Result<()> {
        for frame in frames.split_frames() {
            let message = match Utf8Bytes::try_from(frame.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(frame),
            };
            self.ws.feed(message).await.map_err(io::Error::other)?;
        }
        self.ws.flush().await.map_err(io::Error::other)
    }

    async fn heart_beat(&mut self) -> io::Result<()> {
        self.ws
            .send(Message::Text(Utf8Bytes::from_static("\n")))
            .await
            .map_err(io::Error::other)
    }

    fn frames_finished(&mut self, unfinished_left: bool) {
        self.ws.get_mut().frame_finished(unfinished_left);
    }

    async fn close(mut self) {
        ws::close_and_linger(&mut self.ws, None).await;
    }
}

/// Timers of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub deadlines: Deadlines,
    pub write_batch: usize,
}

/// A transport error's cause: a deadline of the accept path ([`crate::accept::Watched`] reports `TimedOut`), else
/// the client.
fn cause_of(error: &io::Error) -> CloseCause {
    if error.kind() == io::ErrorKind::TimedOut {
        CloseCause::Deadline
    } else {
        CloseCause::Client
    }
}

/// Runs one connection until it closes. Boxed, so a connection task is only as large as its own transport
/// needs, whichever listener spawned it; an async block rather than an `async fn`, which would keep its arguments
/// in the future beside the locals they are moved into (rust-lang/rust#62958), holding the session and the
/// transport twice for the connection's life.
/// `login_by` is the connection's pre-auth deadline, counted from accept.
pub(crate) fn run<T: Transport>(
    mut transport: T,
    mut session: Session,
    guard: ConnectionGuard,
    shutdown: CancellationToken,
    timing: Timing,
    login_by: Instant,
) -> Pin<Box<impl Future<Output = ()>>> {
    Box::pin(async move {
        let write_timeout = timing.deadlines.write();
        let started = Instant::now();
        let mut last_read = started;
        let mut last_write = started;
        let mut buf = BytesMut::new();
        // Grows on the first delivery: an idle connection keeps no room for a batch.
        let mut batch = Vec::new();
        let mut flow = Flow::Continue;
        let mut identified = false;
        // Set while a publish is stalled (a subscriber queue or a `block` group over its bound): deliveries and
        // heart-beats go on, reading stops. One future per stall, so its bound counts from the publish.
        let mut paused: Option<Stall> = None;
        loop {
            if let Some(frames) = session.poll_transmit() {
                match timeout(write_timeout, transport.send(frames)).await {
                    Ok(Ok(())) => last_write = Instant::now(),
                    Ok(Err(error)) => return guard.closing(cause_of(&error)),
                    Err(_) => return guard.closing(CloseCause::Deadline),
                }
                frames.clear();
            }
            if !identified {
                if let Some(identity) = session.identity() {
                    guard.set_identity(&identity.name);
                    identified = true;
                }
            }
            guard.set_subscriptions(session.subscription_count());
            if flow == Flow::Close {
                if session.failed() {
                    guard.closing(CloseCause::ProtocolError);
                }
                break;
            }
            if paused.is_none() {
                paused = session
                    .take_backpressure()
                    .map(|b| Box::pin(b.ready()) as _);
            }
            let plan = session.heart_beat();
            let beat_at = plan.send_every.map(|period| last_write + period);
            // While paused we do not read, so the client's silence proves nothing.
            let dead_at = if paused.is_some() {
                None
            } else if session.is_connected() {
                plan.receive_timeout.map(|grace| last_read + grace)
            } else {
                Some(login_by)
            };
            tokio::select! {
                () = shutdown.cancelled() => {
                    guard.closing(CloseCause::Shutdown);
                    flow = session.shutdown();
                }
                () = room(paused.as_mut()), if paused.is_some() => {
                    paused = None;
                    last_read = Instant::now();
                    flow = feed(&mut session, &mut buf, &mut transport);
                }
                read = transport.read(&mut buf), if paused.is_none() => match read {
                    Ok(n) if n > 0 => {
                        last_read = Instant::now();
                        flow = feed(&mut session, &mut buf, &mut transport);
                        if n >= BUSY_READ {
                            // More is probably waiting, and the subscribers these publishes woke
                            // are queued behind this task on this worker (tokio runs a woken task
                            // there once this one returns, which a busy socket would put off for
                            // 128 reads): let them run first.
                            tokio::task::yield_now().await;
                        }
                    }
                    Ok(_) => return,
                    Err(error) => return guard.closing(cause_of(&error)),
                },
                received = next_batch(session.mailbox_mut(), &mut batch, timing.write_batch) => {
                    match received {
                        Ok(_) => session.handle_deliveries(batch.drain(..)),
                        Err(closed) => {
                            if closed == Closed::SlowConsumer {
                                guard.closing(CloseCause::SlowConsumer);
                            }
                            flow = session.mailbox_closed(closed);
                        }
                    }
                }
                () = until(earliest(beat_at, dead_at)) => {
                    if dead_at.is_some_and(|at| at <= Instant::now()) {
                        tracing::debug!(connected = session.is_connected(), "stomp: peer silent, closing");
                        return guard.closing(CloseCause::Deadline);
                    }
                    match timeout(write_timeout, transport.heart_beat()).await {
                        Ok(Ok(())) => last_write = Instant::now(),
                        Ok(Err(error)) => return guard.closing(cause_of(&error)),
                        Err(_) => return guard.closing(CloseCause::Deadline),
                    }
                }
            }
        }
        drop(session);
        // Boxed: it runs once, so its linger buffer need not enlarge the connection task for its whole life.
        Box::pin(transport.close()).await;
    })
}

/// Hands `buf` to the session and tells the transport whether frames were finished. One clock reading stamps every
/// message published from these bytes.
fn feed<T: Transport>(session: &mut Session, buf: &mut BytesMut, transport: &mut T) -> Flow {
    let before = buf.len();
    let flow = session.handle_input(buf, core_bus::now_ms());
    if buf.len() < before {
        transport.frames_finished(!buf.is_empty());
    }
    flow
}
