//! The one accept path of every TCP listener: [`run`] accepts with back-off on errors (out of file descriptors
//! and the like), lets the listener admit each socket at once (so it counts against `max_connections` from
//! accept), and runs every connection, handshake included, in its own task, so one slow client never holds up
//! another. [`handshake`] bounds each handshake step (TLS, WebSocket upgrade, HTTP/2 preface, protocol login) by
//! the connection's pre-auth deadline and by shutdown; [`Watched`] gives a frame that was started but not
//! finished its deadline and counts it against the process-wide [`budget`]. The deadlines are the [`Deadlines`]
//! settings every protocol shares. Every accepted socket gets TCP keep-alive ([`keep_alive`]), so a peer that
//! vanished without a FIN (a pulled cable, a dead NAT entry) is found even on a connection that never writes.
//! [`waits`] holds what the connection loops await in `select!` arms that may have nothing to wait for.
//! [`upgrade_then_run`] is the task of a connection whose loop starts after an upgrade (TLS, WebSocket).

pub mod budget;
mod deadlines;
mod linger;
mod read_ahead;
mod read_size;
pub mod waits;
mod watched;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures::future::OptionFuture;
use futures::FutureExt;
use metrics::counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use deadlines::Deadlines;
pub use linger::{linger, LINGER};
pub use read_ahead::ReadAhead;
pub use read_size::ReadSize;
pub use watched::Watched;

/// A connection's loop, handed back by its upgrade.
pub type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A connection's task: its `upgrade`, boxed, then the loop the upgrade hands back (`None`: the upgrade failed,
/// and said why). The task holds one box at a time and nothing else. An `async` block awaiting the two would keep
/// everything the upgrade was given beside the loop for the connection's whole life, since a future keeps every
/// value it captured.
pub fn upgrade_then_run<U>(upgrade: U) -> impl Future<Output = ()> + Send
where
    U: Future<Output = Option<Run>> + Send + 'static,
{
    Box::pin(upgrade).then(OptionFuture::from).map(drop)
}

/// First pause after a failed `accept()`; it doubles while failures go on.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause between two `accept()` attempts that fail.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Idle time before the first keep-alive probe.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between two unanswered probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// Unanswered probes after which the kernel resets the connection: a dead peer is found within
/// 60 s + 4 × 15 s = 2 minutes of silence.
const KEEPALIVE_RETRIES: u32 = 4;

/// Turns TCP keep-alive on for an accepted socket (`SO_KEEPALIVE` with the idle, interval and retry counts
/// above). A failure is logged and the connection kept: keep-alive is a safety net, not a condition.
fn keep_alive(stream: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(error) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(%error, "cannot turn TCP keep-alive on");
    }
}

/// A socket just accepted (or, once wrapped in TLS, the stream on it).
pub struct Accepted<S = TcpStream> {
    pub stream: S,
    pub peer: SocketAddr,
    /// When the pre-auth deadline runs out for this connection.
    pub pre_auth_deadline: Instant,
}

/// Accepts on `listener` until `shutdown`, then waits for every connection to end. `admit` decides at once
/// whether to take a socket (the connection limit) and returns the connection's future; dropping the socket
/// refuses it. `pre_auth` is read per accept, so a reload applies to the next connection.
pub async fn run<A, F>(
    listener: TcpListener,
    name: &'static str,
    shutdown: CancellationToken,
    pre_auth: impl Fn() -> Duration,
    mut admit: A,
) where
    A: FnMut(Accepted) -> Option<F>,
    F: Future<Output = ()> + Send + 'static,
{
    // Counts the connection tasks without keeping an entry per task (a join set's is 56 bytes).
    let connections = TaskTracker::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = FIRST_BACKOFF;
                    let _ = stream.set_nodelay(true);
                    keep_alive(&stream);
                    let pre_auth_deadline = Instant::now() + pre_auth();
                    let accepted = Accepted { stream, peer, pre_auth_deadline };
                    if let Some(connection) = admit(accepted) {
                        connections.spawn(connection);
                    }
                }
                Err(error) => {
                    tracing::warn!(listener = name, %error, ?backoff, "accept failed; pausing");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Why a handshake step did not finish.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError<E> {
    #[error("{0}")]
    Failed(E),
    #[error("handshake not finished before the pre-auth deadline")]
    TimedOut,
    #[error("shutting down")]
    Shutdown,
}

/// Runs one handshake step until `deadline`, giving up at shutdown.
pub async fn handshake<T, E>(
    listener: &'static str,
    step: impl Future<Output = Result<T, E>>,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<T, HandshakeError<E>> {
    let outcome = tokio::select! {
        () = shutdown.cancelled() => Err(HandshakeError::Shutdown),
        done = timeout_at(deadline, step) => match done {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(HandshakeError::Failed(error)),
            Err(_) => Err(HandshakeError::TimedOut),
        },
    };
    let reason = match &outcome {
        Err(HandshakeError::Failed(_)) => "failed",
        Err(HandshakeError::TimedOut) => "timeout",
        Ok(_) | Err(HandshakeError::Shutdown) => return outcome,
    };
    counter!(HANDSHAKE_FAILURES, "listener" => listener, "reason" => reason).increment(1);
    outcome
}

/// Handshake steps (TLS, WebSocket upgrade, HTTP/2 preface, QUIC) that failed or ran past the pre-auth deadline,
/// by listener and reason (`failed`, `timeout`).
pub const HANDSHAKE_FAILURES: &str = "gatewayd_handshake_failures_total";

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn an_upgraded_connections_task_runs_its_loop_and_keeps_nothing_the_upgrade_held() {
        let ran = Arc::new(AtomicBool::new(false));
        let held = [7u8; 4096];
        let flag = ran.clone();
        let task = upgrade_then_run(async move {
            let run: Run = Box::pin(async move { flag.store(held[0] == 7, Ordering::SeqCst) });
            Some(run)
        });
        assert!(
            std::mem::size_of_val(&task) <= 64,
            "the task holds {} bytes",
            std::mem::size_of_val(&task)
        );
        task.await;
        assert!(ran.load(Ordering::SeqCst), "the loop ran");
        upgrade_then_run(async { None }).await;
    }
}
