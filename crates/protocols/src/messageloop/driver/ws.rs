//! One WebSocket connection's session loop, from the upgrade on: JSON in text frames, protobuf in binary frames,
//! up to [`BATCH`](super::BATCH) messages already received handed to the session before its replies are written
//! (after a full batch the loop yields to the worker's other tasks), deliveries drained in batches and written
//! with one flush, disconnects as close frames whose status is the MessageLoop code.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use core_bus::metrics::{record_drop, DropReason};
use core_bus::Protocol;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use crate::accept::waits::{earliest, room, until, Stall};
use crate::accept::Watched;
use crate::messageloop::codec::{EncodeError, Frame, WsCodec};
use crate::messageloop::codes::DisconnectCode;
use crate::messageloop::message::Inbound;
use crate::messageloop::session::{Now, Session};
use crate::messageloop::settings::Settings;
use crate::messageloop::wire::DecodeError;
use crate::{CloseCause, ConnectionGuard};

/// One accepted connection before its session starts.
pub(crate) struct Connection {
    pub peer: SocketAddr,
    pub guard: ConnectionGuard,
    /// The pre-auth deadline: the upgrade and Connect must be done by then.
    pub login_by: Instant,
}

/// Runs the session of one upgraded connection until the session, the client or shutdown ends it. `max` is
/// `limits.max_message_size`, the cap on each envelope written. Not an `async fn`: one keeps its arguments in the
/// future beside the locals they are moved into (rust-lang/rust#62958), which would hold the WebSocket twice for
/// the connection's life.
pub(crate) fn run<S>(
    mut ws: WebSocketStream<Watched<S>>,
    mut codec: WsCodec,
    connection: Connection,
    settings: Arc<Settings>,
    shutdown: CancellationToken,
    max: usize,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Connection {
        peer,
        guard,
        login_by,
    } = connection;
    async move {
        let mut session = Session::new(settings.context.clone(), guard.id(), Now::current());
        let mut batch = Vec::new();
        let mut identified = false;
        let mut stalled: Option<Stall> = None;
        let mut answers = super::Answers::default();
        let mut busy = false;
        loop {
            if write_outbox(&mut ws, &codec, &mut session, max)
                .await
                .is_err()
            {
                return;
            }
            if std::mem::take(&mut busy) {
                // A full batch was read, so more is probably waiting, and the subscribers its publishes woke are
                // queued behind this task on this worker (tokio runs a woken task there once this one returns,
                // which a busy socket would put off for 128 reads): with the replies written, let them run first.
                tokio::task::yield_now().await;
            }
            if let Some(code) = session.disconnect() {
                guard.closing(code.cause());
                close(&mut ws, code.ws_close_code(), code.reason()).await;
                return;
            }
            for call in session.take_proxy_calls() {
                settings.proxies.spawn(call, Some(peer), answers.sender());
            }
            // A stalled publish: read nothing more until the subscribers drained, deliveries go on.
            super::track(&mut session, &guard, &mut identified, &mut stalled);
            let deadline = session.poll_timeout().map(Instant::from);
            let login = (!identified).then_some(login_by);
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let code = DisconnectCode::ForceDisconnect;
                    guard.closing(code.cause());
                    close(&mut ws, code.ws_close_code(), code.reason()).await;
                    return;
                }
                () = room(stalled.as_mut()), if stalled.is_some() => stalled = None,
                Some(answer) = answers.next() => session.on_proxy_answer(answer, Now::current()),
                message = ws.next(), if stalled.is_none() && !session.waiting_for_backend() => {
                    let mut message = message;
                    let mut taken = 0;
                    // The batch arrived together: one reading of the clock for all of it.
                    let now = Now::current();
                    loop {
                        let read = on_message(&mut ws, &mut codec, &mut session, &guard, peer, message, now);
                        if let Read::End = read.await {
                            return;
                        }
                        taken += 1;
                        // Replies are flushed once for the whole batch.
                        if super::batch_ends(&session, taken) {
                            busy = taken == super::BATCH;
                            break;
                        }
                        match ws.next().now_or_never() {
                            Some(next) => message = next,
                            None => break,
                        }
                    }
                },
                received = session.mailbox().recv_batch(&mut batch, super::BATCH) => match received {
                    Ok(_) => session.handle_deliveries(batch.drain(..), Now::current()),
                    Err(_) => {
                        let code = DisconnectCode::SlowConsumer;
                        guard.closing(code.cause());
                    close(&mut ws, code.ws_close_code(), code.reason()).await;
                        return;
                    }
                },
                () = until(earliest(login, deadline)) => {
                    if login.is_some_and(|at| at <= Instant::now()) {
                        let code = DisconnectCode::Stale;
                        guard.closing(code.cause());
                        close(&mut ws, code.ws_close_code(), code.reason()).await;
                        return;
                    }
                    // The session looks at each of its own deadlines.
                    session.handle_timeout(Now::current());
                }
            }
        }
    }
}

/// Whether the connection goes on after one message from the client.
enum Read {
    Continue,
    End,
}

/// Hands one WebSocket message from the client to the session; a close, the end of the stream, a read error or a
/// message over the size limit ends the connection.
async fn on_message<S>(
    ws: &mut WebSocketStream<Watched<S>>,
    codec: &mut WsCodec,
    session: &mut Session,
    guard: &ConnectionGuard,
    peer: SocketAddr,
    message: Option<Result<WsMessage, WsError>>,
    now: Now,
) -> Read
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(Ok(_)) = &message {
        ws.get_mut().frame_finished(false);
    }
    match message {
        Some(Ok(WsMessage::Text(text))) => {
            let decoded = codec.decode_text(&text);
            on_frame(decoded, codec, session, now)
        }
        Some(Ok(WsMessage::Binary(bytes))) => {
            let decoded = codec.decode(&bytes);
            on_frame(decoded, codec, session, now)
        }
        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {}
        Some(Ok(WsMessage::Close(_))) | None => return Read::End,
        Some(Err(WsError::Capacity(error))) => {
            tracing::debug!(%peer, %error, "frame over the size limit");
            record_drop(DropReason::TooLarge, Protocol::MessageLoop);
            guard.closing(CloseCause::ProtocolError);
            close(ws, u16::from(CloseCode::Size), "message too big").await;
            return Read::End;
        }
        Some(Err(error)) => {
            if matches!(&error, WsError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut) {
                guard.closing(CloseCause::Deadline);
            }
            return Read::End;
        }
    }
    Read::Continue
}

/// Hands one decoded frame to the session.
fn on_frame(
    decoded: Result<Inbound, DecodeError>,
    codec: &WsCodec,
    session: &mut Session,
    now: Now,
) {
    match decoded {
        Ok(inbound) => {
            session.set_generation(codec.generation());
            session.handle_input(inbound, now);
        }
        Err(DecodeError::Malformed(_)) => session.on_undecodable(now),
        Err(DecodeError::Empty { .. }) => session.on_empty(now),
    }
}

/// Writes everything the session queued and flushes once. Envelopes over the size cap or without a form
/// in the client's generation are left out.
async fn write_outbox<S>(
    ws: &mut WebSocketStream<S>,
    codec: &WsCodec,
    session: &mut Session,
    max: usize,
) -> Result<(), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outbox = session.poll_transmit();
    if outbox.is_empty() {
        return Ok(());
    }
    for outbound in &outbox {
        let message = match codec.encode(outbound) {
            Ok(Frame::Text(text)) if text.len() <= max => WsMessage::text(text),
            Ok(Frame::Binary(bytes)) if bytes.len() <= max => WsMessage::binary(bytes),
            Ok(Frame::Text(text)) => {
                super::drop_too_large("messageloop.ws", outbound, text.len(), max);
                continue;
            }
            Ok(Frame::Binary(bytes)) => {
                super::drop_too_large("messageloop.ws", outbound, bytes.len(), max);
                continue;
            }
            Err(EncodeError::Unrepresentable(_)) => continue,
            Err(EncodeError::Json(_)) => {
                record_drop(DropReason::Unroutable, Protocol::MessageLoop);
                continue;
            }
        };
        ws.feed(message).await?;
    }
    ws.flush().await
}

/// Sends the close frame and waits (briefly) for the client's, so the frame is not cut off by a reset. Boxed: it
/// runs once per connection, so its state need not enlarge every connection task for its whole life.
fn close<'a, S>(
    ws: &'a mut WebSocketStream<S>,
    code: u16,
    reason: &'a str,
) -> Pin<Box<impl Future<Output = ()> + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    Box::pin(async move {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    })
}
