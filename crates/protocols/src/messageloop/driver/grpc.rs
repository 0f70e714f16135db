//! One gRPC stream's session loop, from the open stream on: decoded messages in (up to [`BATCH`](super::BATCH)
//! already received handed to the session before its replies are sent), envelopes out through the stream's lane (a
//! client that does not read is cut after the write deadline), deliveries drained in batches.
//! A disconnect is sent as a `DISCONNECT_ERROR` envelope carrying the code, after which the stream ends with
//! status OK; input that cannot be read ends it with an error status.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::accept::waits::{earliest, room, until, Stall};
use crate::accept::Deadlines;
use crate::messageloop::codec::generation::{Encoding, GenerationSetting};
use crate::messageloop::codec::grpc_codec::Decoded;
use crate::messageloop::codec::{Frame, WsCodec};
use crate::messageloop::codes::DisconnectCode;
use crate::messageloop::listener::grpc::NAME;
use crate::messageloop::message::{Error, Outbound, OutboundBody};
use crate::messageloop::proxy::Proxies;
use crate::messageloop::session::{uuid4, Now, Session};
use crate::messageloop::settings::Settings;
use crate::messageloop::wire::{DecodeError, Wire};
use crate::{CloseCause, ConnectionGuard};

/// One item of a stream's lane to the client: the envelopes one turn of the session loop sends, each encoded, or
/// the status that ends the stream. A turn's envelopes travel together so that tonic takes them in one go and
/// writes them together (one HTTP/2 DATA frame while they fit the frame size), waking the connection's writer once
/// per turn rather than once per envelope. Boxed, so that a channel slot is a pointer: a channel allocates a block
/// of 32 slots when it is made, which unboxed (32 bytes a slot) costs every idle stream 0.75 KiB more.
pub(crate) type Reply = Box<Result<Vec<Bytes>, Status>>;

/// What a stream takes from its listener when it opens.
pub(crate) struct Handover {
    pub shutdown: CancellationToken,
    pub deadlines: Deadlines,
    /// `limits.max_message_size`, fixed when the listener started.
    pub max_message_size: usize,
}

/// One open stream: the client's messages, the lane to the client, its registration and address.
pub(crate) struct OpenStream {
    pub inbound: Streaming<Decoded>,
    pub tx: mpsc::Sender<Reply>,
    pub guard: ConnectionGuard,
    pub peer: SocketAddr,
}

/// Runs the session of one stream until the session, the client or shutdown ends it, then sends the
/// disconnect notice when the session set a code.
pub(crate) async fn run<W: Wire>(handover: Handover, settings: Arc<Settings>, stream: OpenStream) {
    let OpenStream {
        inbound,
        tx,
        guard,
        peer,
    } = stream;
    let mut session = Session::new(settings.context.clone(), guard.id(), Now::current());
    session.set_generation(Some(W::GENERATION));
    let backends = Backends {
        proxies: &settings.proxies,
        peer,
    };
    // The stream's generation is fixed by the service it called; a G2 publication or ack is written directly, and a
    // delivery's encoding is shared with the other protobuf subscribers of its generation.
    let codec = WsCodec::new(Encoding::Protobuf, GenerationSetting::Fixed(W::GENERATION));
    let lane = Lane {
        tx: &tx,
        codec: &codec,
    };
    session_loop(&handover, &mut session, inbound, lane, &guard, backends).await;
    if let Some(code) = session.disconnect() {
        let notice = Outbound {
            id: uuid4(),
            time_ms: Now::current().unix_ms,
            body: OutboundBody::Error(Box::new(Error::disconnect(code))),
        };
        if let Some(bytes) = encode(&codec, &notice) {
            let _ = tx.send(Box::new(Ok(vec![bytes]))).await;
        }
    }
}

/// The way to the client: the codec of the stream's generation and the channel to tonic's response stream.
struct Lane<'a> {
    tx: &'a mpsc::Sender<Reply>,
    codec: &'a WsCodec,
}

/// `outbound` in protobuf; `None` when the stream's generation has no form for it.
fn encode(codec: &WsCodec, outbound: &Outbound) -> Option<Bytes> {
    match codec.encode(outbound) {
        Ok(Frame::Binary(bytes)) => Some(bytes),
        Ok(Frame::Text(_)) | Err(_) => None,
    }
}

/// Where a stream's backend proxy calls go, and the client address they name.
struct Backends<'a> {
    proxies: &'a Proxies,
    peer: SocketAddr,
}

/// The session loop of one stream; returns when the session or the client ends it.
async fn session_loop(
    handover: &Handover,
    session: &mut Session,
    mut inbound: Streaming<Decoded>,
    lane: Lane<'_>,
    guard: &ConnectionGuard,
    backends: Backends<'_>,
) {
    let tx = lane.tx;
    let shutdown = handover.shutdown.clone();
    let deadlines = handover.deadlines;
    let write_deadline = deadlines.write();
    let login_by = tokio::time::Instant::now() + deadlines.pre_auth();
    let mut batch = Vec::new();
    let mut identified = false;
    let mut stalled: Option<Stall> = None;
    let mut answers = super::Answers::default();
    loop {
        let mut turn = Vec::new();
        for outbound in session.poll_transmit() {
            let Some(bytes) = encode(lane.codec, &outbound) else {
                continue;
            };
            if bytes.len() > handover.max_message_size {
                super::drop_too_large(
                    "messageloop.grpc",
                    &outbound,
                    bytes.len(),
                    handover.max_message_size,
                );
                continue;
            }
            turn.push(bytes);
        }
        if !turn.is_empty() {
            // A lane with room takes the turn at once (no timer); a client that does not read (flow control
            // shut) is cut after the write deadline.
            let reply = match tx.try_send(Box::new(Ok(turn))) {
                Ok(()) => None,
                Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(reply)) => Some(reply),
            };
            if let Some(reply) = reply {
                match timeout(write_deadline, tx.send(reply)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::debug!(
                            listener = NAME,
                            "client did not read before the write deadline"
                        );
                        return guard.closing(CloseCause::Deadline);
                    }
                }
            }
        }
        if let Some(code) = session.disconnect() {
            return guard.closing(code.cause());
        }
        for call in session.take_proxy_calls() {
            backends
                .proxies
                .spawn(call, Some(backends.peer), answers.sender());
        }
        // A stalled publish: read nothing more until the subscribers drained, deliveries go on.
        super::track(session, guard, &mut identified, &mut stalled);
        let deadline = session.poll_timeout().map(tokio::time::Instant::from);
        let login = (!identified).then_some(login_by);
        tokio::select! {
            _ = shutdown.cancelled() => {
                session.close_with(DisconnectCode::ForceDisconnect);
                return guard.closing(CloseCause::Shutdown);
            }
            _ = tx.closed() => return,
            () = room(stalled.as_mut()), if stalled.is_some() => stalled = None,
            Some(answer) = answers.next() => session.on_proxy_answer(answer, Now::current()),
            message = inbound.message(), if stalled.is_none() && !session.waiting_for_backend() => {
                // The batch arrived together: one reading of the clock for all of it.
                let now = Now::current();
                let mut message = message;
                let mut taken = 0;
                loop {
                    match message {
                        Ok(Some(message)) => match *message {
                            Ok(message) => session.handle_input(message, now),
                            Err(DecodeError::Malformed(_)) => session.on_undecodable(now),
                            Err(DecodeError::Empty { .. }) => session.on_empty(now),
                        },
                        Ok(None) => return,
                        // The client reset the stream or dropped the connection: nothing to answer.
                        Err(status) if went_away(&status) => return,
                        Err(status) => {
                            tracing::debug!(%status, listener = NAME, "stream ended with an error");
                            let refusal = refusal(&status, handover.max_message_size);
                            let _ = timeout(write_deadline, tx.send(Box::new(Err(refusal)))).await;
                            return guard.closing(CloseCause::ProtocolError);
                        }
                    }
                    taken += 1;
                    if super::batch_ends(session, taken) {
                        break;
                    }
                    match inbound.message().now_or_never() {
                        Some(next) => message = next,
                        None => break,
                    }
                }
            }
            received = session.mailbox().recv_batch(&mut batch, super::BATCH) => match received {
                Ok(_) => session.handle_deliveries(batch.drain(..), Now::current()),
                Err(_) => session.close_with(DisconnectCode::SlowConsumer),
            },
            () = until(earliest(login, deadline)) => {
                if login.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    session.close_with(DisconnectCode::Stale);
                    return guard.closing(CloseCause::Deadline);
                }
                // The session looks at each of its own deadlines.
                session.handle_timeout(Now::current());
            }
        }
    }
}

/// Whether a stream's input ended because the client went away (a stream reset, a connection closed or broken
/// under it) rather than because of what it sent. Everything a client sends that cannot be read is
/// `RESOURCE_EXHAUSTED`/`OUT_OF_RANGE` (over the limit) or `INTERNAL` (undecodable, an HTTP/2 protocol error).
fn went_away(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Cancelled | tonic::Code::Unknown | tonic::Code::Unavailable
    )
}

/// The status a stream ends with when its input cannot be read: a message over `limits.max_message_size` is
/// `RESOURCE_EXHAUSTED`, one that does not decode `INVALID_ARGUMENT`.
fn refusal(status: &Status, max: usize) -> Status {
    match status.code() {
        // tonic's decoder reports a message over its limit as OUT_OF_RANGE.
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Status::resource_exhausted(
            format!("message over messageloop.limits.max_message_size ({max} bytes)"),
        ),
        _ => Status::invalid_argument(format!("undecodable message: {}", status.message())),
    }
}
