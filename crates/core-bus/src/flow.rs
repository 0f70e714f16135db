//! Back-pressure from subscribers to publishers. A bounded buffer (a fanout subscriber's queue, an anycast group's
//! retention buffer under `block`) that passes its bound (the high-water mark) makes every publish that adds to it
//! return a [`Backpressure`]; the publishing connection's driver awaits it before reading more input, and it
//! resolves when every buffer it names has drained to half its bound (the low-water mark), has closed, or after
//! `bus.max_publisher_stall_ms`. A buffer that stays over its bound for longer than that, or that reaches twice its
//! bound (publishes that cannot be stalled: the cluster backend, many publishers at once), gets its policy.
//! Publishers of other topics never wait on it.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::Notify;

use crate::anycast::Group;
use crate::envelope::{ConnectionId, Origin};
use crate::metrics::BusMetrics;
use crate::queue::Queue;

/// What publishers wait on: one buffer that was over its bound.
#[derive(Clone)]
pub(crate) enum Holder {
    Subscriber(Arc<Queue>),
    Group(Arc<Group>),
}

impl Holder {
    fn room(&self) -> &Notify {
        match self {
            Holder::Subscriber(mailbox) => mailbox.room(),
            Holder::Group(group) => group.room(),
        }
    }

    fn is_over(&self) -> bool {
        match self {
            Holder::Subscriber(mailbox) => mailbox.is_over(),
            Holder::Group(group) => group.is_over(),
        }
    }

    async fn drained(&self) {
        loop {
            let mut notified = pin!(self.room().notified());
            notified.as_mut().enable();
            if !self.is_over() {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Holder::Subscriber(mailbox) => write!(f, "Subscriber({})", mailbox.owner.connection),
            Holder::Group(group) => write!(f, "Group({})", group.key()),
        }
    }
}

/// The bus's side of flow control: the stall bound, who is stalled now, and the stall metrics.
pub(crate) struct Flow {
    pub(crate) max_stall: Duration,
    /// Connections waiting on a [`Backpressure`] now: when the oldest wait began and how many waits (Loom runs
    /// one per producer stream).
    stalled: DashMap<ConnectionId, (Instant, usize)>,
    /// Counts each stall when it ends.
    metrics: Arc<BusMetrics>,
}

impl Flow {
    pub(crate) fn new(max_stall: Duration, metrics: Arc<BusMetrics>) -> Flow {
        Flow {
            max_stall,
            stalled: DashMap::new(),
            metrics,
        }
    }

    fn begin(&self, connection: ConnectionId) {
        self.stalled
            .entry(connection)
            .and_modify(|(_, n)| *n += 1)
            .or_insert((Instant::now(), 1));
    }

    fn end(&self, publisher: Origin, waited: Duration) {
        self.stalled
            .remove_if_mut(&publisher.connection, |_, (_, n)| {
                *n -= 1;
                *n == 0
            });
        self.metrics.stalled(publisher.protocol, waited);
    }

    /// The connections stalled now and for how long.
    pub(crate) fn stalled(&self) -> Vec<(ConnectionId, Duration)> {
        self.stalled
            .iter()
            .map(|e| (*e.key(), e.value().0.elapsed()))
            .collect()
    }
}

/// What the admin API shows about one connection's part in flow control.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FlowStatus {
    /// The connection is a publisher that stopped reading to wait for a subscriber: for this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalled_ms: Option<u64>,
    /// The connection is a subscriber over its queue bound, stalling its publishers: for this long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stalling_ms: Option<u64>,
}

/// Returned by a publish that filled a subscriber queue or a `block` group past its bound: the publishing
/// connection should read nothing more from its client until [`Backpressure::ready`] resolves (deliveries to it go
/// on). It resolves when the buffers drained to their low-water mark, closed, or after `bus.max_publisher_stall_ms`.
#[derive(Clone)]
pub struct Backpressure {
    holders: Vec<Holder>,
    publisher: Origin,
    flow: Arc<Flow>,
}

impl std::fmt::Debug for Backpressure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backpressure")
            .field("holders", &self.holders)
            .field("publisher", &self.publisher)
            .finish()
    }
}

impl Backpressure {
    pub(crate) fn new(holders: Vec<Holder>, publisher: Origin, flow: Arc<Flow>) -> Backpressure {
        Backpressure {
            holders,
            publisher,
            flow,
        }
    }

    /// Waits until the publisher may read again. Cancel-safe: dropping the future ends the stall.
    pub async fn ready(self) {
        if self.holders.iter().all(|h| !h.is_over()) {
            return;
        }
        let stall = Stall::begin(&self);
        let deadline = tokio::time::Instant::from_std(stall.started + self.flow.max_stall);
        for holder in &self.holders {
            if tokio::time::timeout_at(deadline, holder.drained())
                .await
                .is_err()
            {
                break;
            }
        }
        drop(stall);
    }
}

/// One stall in progress: registered for the admin API, counted when it ends.
struct Stall<'a> {
    backpressure: &'a Backpressure,
    started: Instant,
}

impl<'a> Stall<'a> {
    fn begin(backpressure: &'a Backpressure) -> Stall<'a> {
        backpressure.flow.begin(backpressure.publisher.connection);
        Stall {
            backpressure,
            started: Instant::now(),
        }
    }
}

impl Drop for Stall<'_> {
    fn drop(&mut self) {
        let b = self.backpressure;
        b.flow.end(b.publisher, self.started.elapsed());
    }
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("max_stall", &self.max_stall)
            .finish()
    }
}
