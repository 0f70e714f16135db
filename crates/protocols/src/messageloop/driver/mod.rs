//! The tokio loops that drive one [`super::session::Session`] each: [`ws`] for a WebSocket
//! connection, [`grpc`] for one gRPC stream. They take over from the listener once the connection is
//! upgraded or the stream open, feed the session what the client sends, the mailbox's deliveries, the
//! backends' answers and its timeouts, write what it has to send (envelopes over `limits.max_message_size`
//! left out), and end the connection with its disconnect code.

pub(super) mod grpc;
pub(super) mod ws;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::message::Outbound;
use super::proxy::ProxyAnswer;
use super::session::Session;
use crate::accept::waits::Stall;
use crate::ConnectionGuard;

/// Deliveries taken from the mailbox per turn of a session loop, and most client messages already received handed
/// to the session before its replies are sent. Each turn costs one write (for gRPC, one pass through the stream's
/// lane) and one wake of the connection: at 16 B, turns of 256 took 8 % (WebSocket) and a fifth (gRPC) less CPU per
/// delivery than turns of 64 (docs/benchmarks.md, session 27).
pub(super) const BATCH: usize = 256;

/// Where the backends' answers to one session's proxy calls come back. The channel is made at the first call:
/// a tokio channel allocates room for 32 answers (several KiB) when it is made, and most sessions never call a
/// backend.
#[derive(Default)]
struct Answers(Option<(UnboundedSender<ProxyAnswer>, UnboundedReceiver<ProxyAnswer>)>);

impl Answers {
    /// Where the next call's answer goes.
    fn sender(&mut self) -> UnboundedSender<ProxyAnswer> {
        self.0.get_or_insert_with(unbounded_channel).0.clone()
    }

    /// The next answer; pends forever before the first call.
    async fn next(&mut self) -> Option<ProxyAnswer> {
        match &mut self.0 {
            Some((_, answered)) => answered.recv().await,
            None => std::future::pending().await,
        }
    }
}

/// After each write: names the connection's identity once it is known, counts its subscriptions, and takes the
/// publish the session stalled on, if there is one and none is held yet (nothing more is read until it has room).
fn track(
    session: &mut Session,
    guard: &ConnectionGuard,
    identified: &mut bool,
    stalled: &mut Option<Stall>,
) {
    if !*identified {
        if let Some(identity) = session.identity() {
            guard.set_identity(&identity.name);
            *identified = true;
        }
    }
    guard.set_subscriptions(session.subscription_count());
    if stalled.is_none() {
        *stalled = session
            .take_backpressure()
            .map(|b| Box::pin(b.ready()) as _);
    }
}

/// Whether a driver stops taking the client's messages already received, after `taken` of them, and sends the
/// session's replies: messages reach the session before its replies are sent, up to [`BATCH`] of them, but not
/// past one that stalled a publish, ended the session or waits for the backend.
fn batch_ends(session: &Session, taken: usize) -> bool {
    taken == BATCH
        || session.is_stalled()
        || session.disconnect().is_some()
        || session.waiting_for_backend()
}

/// Counts and logs an envelope left out because its encoding is over `limits.max_message_size`, naming the
/// receiving listener and, for deliveries, the channels and the publisher's message ids.
fn drop_too_large(listener: &str, outbound: &Outbound, size: usize, max: usize) {
    core_bus::metrics::record_drop(
        core_bus::metrics::DropReason::TooLarge,
        core_bus::Protocol::MessageLoop,
    );
    let channels: Vec<&str> = outbound
        .body
        .messages()
        .unwrap_or_default()
        .iter()
        .map(|m| m.channel.as_str())
        .collect();
    tracing::debug!(
        listener,
        size,
        max,
        ?channels,
        "messageloop: envelope over max_message_size not delivered"
    );
}
