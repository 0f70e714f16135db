//! The tokio life of one chanserv connection: drives its [`Session`] — socket bytes in, timers from
//! [`Session::poll_timeout`], bus deliveries while the sources have room ([`Session::poll_deliveries`]), and
//! everything the session has to send written as one coalesced buffer per turn ([`Session::poll_transmit`]). A
//! publish's back-pressure, handed back by the session, pauses reading. The driver never calls the bus itself.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use core_bus::{Origin, Protocol};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::session::Session;
use super::settings::Settings;
use crate::accept::waits::{room, until, Stall};
use crate::accept::ReadSize;
use crate::{CloseCause, ConnectionGuard, Services};

/// Read size while input keeps coming ([`ReadSize`]: a quiet connection reads into, and holds, a small buffer).
const READ_CHUNK: usize = 64 << 10;

/// Sets up the session of one connection, then drives it until the link closes, the peer goes away, or the daemon
/// shuts down. Not an `async fn`: one keeps its arguments in the future beside the locals they are moved into
/// (rust-lang/rust#62958), which would hold them twice for the connection's whole life.
pub(super) fn run(
    socket: TcpStream,
    peer: SocketAddr,
    guard: ConnectionGuard,
    settings: Arc<Settings>,
    services: Services,
) -> impl Future<Output = ()> {
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
    async move {
        let mut input = BytesMut::new();
        let mut read_size = ReadSize::new(READ_CHUNK);
        let mut blocked: Option<Stall> = None;
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
                        guard.closing(CloseCause::Deadline);
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
                    guard.closing(CloseCause::Shutdown);
                    session.shutdown(Instant::now());
                    if let Some(bytes) = session.poll_transmit(Instant::now()) {
                        let _ = timeout(write_deadline, writer.write_all(&bytes)).await;
                    }
                    let _ = timeout(write_deadline, writer.shutdown()).await;
                    break;
                }
                read = read_size.read(&mut reader, &mut input), if blocked.is_none() => match read {
                    Ok(0) => session.handle_eof(Instant::now()),
                    Ok(_) => {
                        session.handle_input(&input, Instant::now());
                        input.clear();
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "chanserv: read failed");
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            guard.closing(CloseCause::Deadline);
                        }
                        session.handle_eof(Instant::now());
                    }
                },
                () = room(blocked.as_mut()), if blocked.is_some() => {
                    blocked = None;
                }
                () = until(wake), if wake.is_some() => session.handle_timeout(Instant::now()),
                _ = poll_fn(|cx| session.poll_deliveries(cx, Instant::now())) => {}
            }
        }
        tracing::debug!(%peer, stats = ?session.link().stats(), "chanserv: connection closed");
    }
}
