//! The life of one Loom stream, the same over raw QUIC and HTTP/3: read the hello, admit it, then run the
//! producer (bytes → its [`super::session`], which publishes, honouring the back-pressure it hands back; a message
//! over `max_message_bytes` → piped to one Loom consumer of the room, see [`super::relay`]) or the consumer
//! (mailbox deliveries and cut-through messages → its session → bytes, one message in flight until its ack). The
//! driver never calls the bus itself. The transports implement [`Inbound`]/[`Outbound`] and turn the [`Outcome`]
//! into their own goodbye.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Origin, Protocol, Topic};

use super::codec::delivery;
use super::codec::hello::Role;
use super::reject::Rejection;
use super::relay::{Broken, Pipe, Relay, Streamed};
use super::session::{self, Admitted, ConsumerSession, MsgIds, Produced, ProducerSession};
use super::settings::Settings;
use crate::{ConnectionGuard, Services};

/// The transport failed under the stream (reset, connection closed).
#[derive(Debug)]
pub(super) struct Gone;

/// The client→server half of a stream.
pub(super) trait Inbound: Send {
    /// Appends the next bytes that arrive to `buf`; `Ok(false)` once the client finished its half.
    fn read_more(&mut self, buf: &mut BytesMut) -> impl Future<Output = Result<bool, Gone>> + Send;
}

/// The server→client half of a stream.
pub(super) trait Outbound: Send {
    /// Writes `segments` in order.
    fn write(&mut self, segments: Vec<Bytes>) -> impl Future<Output = Result<(), Gone>> + Send;
}

/// How a stream ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// The client finished its half at a message boundary.
    Clean,
    /// Refused (hello, auth, limit) or cut off (framing error).
    Rejected(Rejection),
    /// The transport went away.
    Gone,
    /// A cut-through message could not be finished: the consumer's half must be reset, so that the client does
    /// not take what it got for a whole message.
    Cut,
}

/// What every stream of one listener shares.
pub(super) struct Shared {
    pub services: Services,
    pub ids: Arc<MsgIds>,
    /// The consumer streams that messages over `max_message_bytes` are cut through to.
    pub relay: Arc<Relay>,
    /// Taken by each stream when it opens; replaced on reload, so open streams keep theirs.
    pub settings: ArcSwap<Settings>,
}

/// What every stream of one QUIC connection shares.
pub(super) struct Conn {
    pub guard: ConnectionGuard,
    pub consumers: AtomicUsize,
    /// The names of the client certificate the TLS handshake verified (listeners with `tls.client_ca_file`).
    pub certificate: Option<Vec<String>>,
}

impl Conn {
    pub fn new(guard: ConnectionGuard) -> Self {
        Conn {
            guard,
            consumers: AtomicUsize::new(0),
            certificate: None,
        }
    }

    fn origin(&self) -> Origin {
        Origin {
            protocol: Protocol::Loom,
            connection: self.guard.id(),
        }
    }
}

/// One counted consumer stream of a connection.
struct ConsumerSlot<'a>(&'a Conn);

impl<'a> ConsumerSlot<'a> {
    fn take(conn: &'a Conn, max: usize) -> Option<Self> {
        let taken = conn
            .consumers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        conn.guard.set_subscriptions(taken + 1);
        Some(ConsumerSlot(conn))
    }
}

impl Drop for ConsumerSlot<'_> {
    fn drop(&mut self) {
        let before = self.0.consumers.fetch_sub(1, Ordering::AcqRel);
        self.0.guard.set_subscriptions(before.saturating_sub(1));
    }
}

/// Reads and admits the hello. Refused consumers are answered only after the reject delay, which slows down
/// clients that reconnect in a tight loop.
pub(super) async fn open<I: Inbound>(
    input: &mut I,
    buf: &mut BytesMut,
    settings: &Settings,
    conn: &Conn,
) -> Result<Admitted, Outcome> {
    let deadline = tokio::time::Instant::now() + settings.deadlines.pre_auth();
    let hello = loop {
        match session::read_hello(buf, &settings.limits) {
            Ok(Some(hello)) => break hello,
            Ok(None) => {}
            Err(rejection) => return Err(Outcome::Rejected(rejection)),
        }
        let Ok(read) = tokio::time::timeout_at(deadline, input.read_more(buf)).await else {
            tracing::debug!("loom hello not finished before the pre-auth deadline");
            return Err(Outcome::Gone);
        };
        match read {
            Ok(true) => {}
            Ok(false) => match session::finish_hello(buf, &settings.limits) {
                Ok(hello) => break hello,
                Err(rejection) => return Err(Outcome::Rejected(rejection)),
            },
            Err(Gone) => return Err(Outcome::Gone),
        }
    };
    let certificate = conn.certificate.as_deref();
    match session::admit(
        &hello,
        &settings.auth,
        settings.topic_prefix.as_ref(),
        certificate,
    ) {
        Ok(admitted) => {
            conn.guard.set_identity(&admitted.identity.name);
            tracing::debug!(?hello, topic = %admitted.topic, "loom stream admitted");
            Ok(admitted)
        }
        Err(rejection) => {
            tracing::debug!(?hello, %rejection, "loom stream refused");
            if hello.role == Role::Consumer {
                tokio::time::sleep(settings.reject_delay).await;
            }
            Err(Outcome::Rejected(rejection))
        }
    }
}

/// Has the session publish every message of a producer stream; after a publish that reports backpressure, reads
/// nothing more until the room has space again, so QUIC flow control pushes back on the producer. A message over
/// `max_message_bytes` is piped to one Loom consumer of the room instead; while its pipe is full, nothing more is
/// read either.
pub(super) async fn produce<I: Inbound>(
    input: &mut I,
    buf: &mut BytesMut,
    topic: Topic,
    shared: &Shared,
    settings: &Settings,
    conn: &Conn,
) -> Outcome {
    let mut session = ProducerSession::new(
        shared.services.bus.clone(),
        topic.clone(),
        conn.origin(),
        &settings.limits,
    );
    // The message being cut through; dropping it fails the message at its consumer. The session yields chunks
    // and ends only after the start that sets it (or after the consumer was found gone, which ends the stream).
    let mut pipe: Option<Pipe> = None;
    let mut eof = false;
    loop {
        let produced = match session.handle_input(buf, eof) {
            Err(rejection) => {
                if let Rejection::TooLarge { .. } = rejection {
                    record_drop(DropReason::TooLarge, Protocol::Loom);
                }
                return Outcome::Rejected(rejection);
            }
            Ok(Some(produced)) => produced,
            Ok(None) if eof => return Outcome::Clean,
            Ok(None) => match input.read_more(buf).await {
                Ok(more) => {
                    eof = !more;
                    continue;
                }
                Err(Gone) => return Outcome::Gone,
            },
        };
        let passed = match produced {
            Produced::Published => {
                if let Some(backpressure) = session.take_backpressure() {
                    backpressure.ready().await;
                }
                Ok(())
            }
            Produced::Streamed(start) => {
                let Some(offer) = shared.relay.pick(&topic, &start.key) else {
                    record_drop(DropReason::TooLarge, Protocol::Loom);
                    return Outcome::Rejected(Rejection::TooLarge {
                        limit: settings.limits.max_message_bytes,
                    });
                };
                session.bypass_bus();
                match offer.hand(start.key, start.declared_size).await {
                    Ok(mut opened) => {
                        let sent = opened.send(start.held).await;
                        pipe = Some(opened);
                        sent
                    }
                    Err(gone) => Err(gone),
                }
            }
            Produced::Chunk(chunk) => match pipe.as_mut() {
                Some(pipe) => pipe.send(chunk).await,
                None => Ok(()),
            },
            Produced::End => match pipe.take() {
                Some(pipe) => pipe.finish().await,
                None => Ok(()),
            },
        };
        if passed.is_err() {
            return Outcome::Rejected(Rejection::ConsumerGone);
        }
    }
}

/// Has the session join the room's anycast group with a window of one and feeds the consumer, one message per
/// ack. Ends when the client finishes its half (clean), sends a corrupt frame (rejected) or goes away; leaving the
/// group hands an unacked message to another consumer.
pub(super) async fn consume<I: Inbound, O: Outbound>(
    input: &mut I,
    buf: &mut BytesMut,
    output: &mut O,
    topic: Topic,
    shared: &Shared,
    settings: &Settings,
    conn: &Conn,
) -> Outcome {
    let Some(_slot) = ConsumerSlot::take(conn, settings.max_consumers) else {
        tokio::time::sleep(settings.reject_delay).await;
        return Outcome::Rejected(Rejection::TooManyConsumers);
    };
    let joined = ConsumerSession::join(
        &shared.services.bus,
        conn.origin(),
        topic.clone(),
        shared.ids.clone(),
    );
    let mut session = match joined {
        Ok(session) => session,
        Err(rejection) => return Outcome::Rejected(rejection),
    };
    let mut seat = shared.relay.join(&topic);
    loop {
        if let Err(rejection) = session.handle_input(buf) {
            return Outcome::Rejected(rejection);
        }
        tokio::select! {
            read = input.read_more(buf) => match read {
                Ok(true) => {}
                Ok(false) => return Outcome::Clean,
                Err(Gone) => return Outcome::Gone,
            },
            delivery = session.mailbox_mut().recv(), if session.ready() => {
                let Ok(delivery) = delivery else {
                    return Outcome::Gone;
                };
                session.handle_deliveries(delivery);
                while let Some(message) = session.poll_transmit() {
                    if write(output, message.segments(), settings).await.is_err() {
                        return Outcome::Gone;
                    }
                }
            }
            streamed = seat.next(), if session.ready() => {
                let Some(streamed) = streamed else {
                    return Outcome::Gone;
                };
                if let Err(outcome) = relay(streamed, &mut session, output, settings).await {
                    return outcome;
                }
            }
        }
    }
}

/// Writes a cut-through message to the consumer as its body arrives: header, chunks of at most 64 KiB, EOM. Ends
/// the stream with [`Outcome::Cut`] when the producer's side fails or sends nothing for `idle_frame_ms`.
async fn relay<O: Outbound>(
    mut streamed: Streamed,
    session: &mut ConsumerSession,
    output: &mut O,
    settings: &Settings,
) -> Result<(), Outcome> {
    let (header, writing) = session.start_streamed(&streamed.key, streamed.declared_size);
    write(output, vec![header.encode()], settings).await?;
    loop {
        let next = tokio::time::timeout(settings.deadlines.idle_frame(), streamed.next()).await;
        let segments = match next {
            Ok(Ok(Some(body))) => delivery::chunks(&body),
            Ok(Ok(None)) => break,
            Ok(Err(Broken)) | Err(_) => {
                tracing::debug!("loom cut-through message failed before its end");
                return Err(Outcome::Cut);
            }
        };
        write(output, segments, settings).await?;
    }
    write(output, vec![Bytes::from_static(delivery::EOM)], settings).await?;
    session.written(writing);
    streamed.delivered();
    Ok(())
}

/// One write to the consumer within `write_ms`.
async fn write<O: Outbound>(
    output: &mut O,
    segments: Vec<Bytes>,
    settings: &Settings,
) -> Result<(), Outcome> {
    match tokio::time::timeout(settings.deadlines.write(), output.write(segments)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Outcome::Gone),
    }
}
