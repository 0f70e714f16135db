//! One subscriber's bounded queue: the deliveries for all of a connection's subscriptions and group memberships,
//! in order. A fanout delivery that finds it at its bound stalls its publisher (`flow`); the slow-consumer policy
//! applies once it has stayed over its bound for the stall bound, or reached twice its bound. Group deliveries are
//! bounded by the member's credit instead.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ack::AckHandle;
use crate::config::{QueueLimits, SlowConsumerPolicy};
use crate::envelope::{now_ms, Envelope, Origin};
use crate::level::{below_low_water, Admit, Level};
use crate::metrics::{record_drop, DropReason};

/// Identifies one subscription or group membership, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub u64);

impl SubscriptionId {
    pub(crate) fn next() -> SubscriptionId {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SubscriptionId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// One message handed to a subscriber.
#[derive(Debug)]
pub struct Delivery {
    pub envelope: Arc<Envelope>,
    pub subscription: SubscriptionId,
    /// Present for group deliveries that must be settled (acked or nacked).
    pub ack: Option<AckHandle>,
    /// The message was delivered before and requeued (nack, member leave or disconnect).
    pub redelivered: bool,
    /// When the message expires in this queue: its own expiry, or a group's `ttl_ms` when earlier.
    pub(crate) expires_at_ms: Option<u64>,
}

/// Why a mailbox stopped receiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("slow consumer: the subscriber queue was full")]
    SlowConsumer,
}

/// Options of one mailbox; [`Bus::mailbox`](crate::Bus::mailbox) takes the bus config's.
#[derive(Debug, Clone, Copy)]
pub struct MailboxOptions {
    pub limits: QueueLimits,
    pub policy: SlowConsumerPolicy,
    /// Whether a publisher waits for this queue when it is over its bound (flow control), or the slow-consumer
    /// policy applies at once: an observer (`gatewayctl tap`) must never slow publishers down.
    pub stall_publishers: bool,
}

/// A queued delivery; only fanout deliveries count against the queue limits.
struct Queued {
    delivery: Delivery,
    /// Bytes charged to the queue limits; zero for group deliveries.
    fanout_bytes: usize,
    fanout: bool,
}

struct QueueState {
    items: VecDeque<Queued>,
    fanout_bytes: usize,
    fanout_len: usize,
    closed: Option<Closed>,
    level: Level,
}

/// One subscriber's queue: the part of a mailbox the bus holds in its index and pushes into.
pub(crate) struct Queue {
    pub(crate) owner: Origin,
    options: MailboxOptions,
    queue: Mutex<QueueState>,
    waker: AtomicWaker,
    /// Publishers stalled on this queue wait here for it to drain to its low-water mark or close.
    room: Notify,
}

/// What one push did.
pub(crate) enum Pushed {
    Queued,
    /// Queued over the bound: the publisher should stall on this queue.
    Stall,
    Dropped(DropReason),
    Closed,
}

impl Queue {
    pub(crate) fn new(owner: Origin, options: MailboxOptions) -> Queue {
        Queue {
            owner,
            options,
            queue: Mutex::new(QueueState {
                items: VecDeque::new(),
                fanout_bytes: 0,
                fanout_len: 0,
                closed: None,
                level: Level::default(),
            }),
            waker: AtomicWaker::new(),
            room: Notify::new(),
        }
    }

    /// Queues a fanout delivery; a queue at its bound takes it and asks for a stall until it has been over its
    /// bound for `max_stall` (or reaches twice its bound), then applies the slow-consumer policy.
    pub(crate) fn push_fanout(
        &self,
        envelope: &Arc<Envelope>,
        size: usize,
        subscription: SubscriptionId,
        max_stall: Duration,
    ) -> Pushed {
        let limits = self.options.limits;
        let max_stall = if self.options.stall_publishers {
            max_stall
        } else {
            Duration::ZERO
        };
        let mut queue = self.queue.lock();
        if queue.closed.is_some() {
            return Pushed::Closed;
        }
        let mut stall = false;
        if queue.fanout_len >= limits.max_messages || queue.fanout_bytes + size > limits.max_bytes {
            let hard = queue.fanout_len >= limits.max_messages.saturating_mul(2)
                || queue.fanout_bytes + size > limits.max_bytes.saturating_mul(2);
            match (queue.level.admit(hard, max_stall), self.options.policy) {
                (Admit::Stall, _) => stall = true,
                (_, SlowConsumerPolicy::Disconnect) => {
                    queue.closed = Some(Closed::SlowConsumer);
                    queue.items.clear();
                    drop(queue);
                    self.waker.wake();
                    self.room.notify_waiters();
                    return Pushed::Dropped(DropReason::SlowConsumerDisconnect);
                }
                (_, SlowConsumerPolicy::DropNewest) => {
                    return Pushed::Dropped(DropReason::QueueFullDropNewest)
                }
                (_, SlowConsumerPolicy::DropOldest) => {
                    while queue.fanout_len > 0
                        && (queue.fanout_len >= limits.max_messages
                            || queue.fanout_bytes + size > limits.max_bytes)
                    {
                        let Some(oldest) = queue.items.iter().position(|q| q.fanout) else {
                            break;
                        };
                        if let Some(evicted) = queue.items.remove(oldest) {
                            queue.fanout_len -= 1;
                            queue.fanout_bytes -= evicted.fanout_bytes;
                            crate::metrics::record_drop(
                                DropReason::QueueFullDropOldest,
                                self.owner.protocol,
                            );
                        }
                    }
                }
            }
        }
        let was_empty = queue.items.is_empty();
        queue.fanout_len += 1;
        queue.fanout_bytes += size;
        let delivery = Delivery {
            envelope: envelope.clone(),
            subscription,
            ack: None,
            redelivered: false,
            expires_at_ms: envelope.expires_at_ms,
        };
        queue.items.push_back(Queued {
            delivery,
            fanout_bytes: size,
            fanout: true,
        });
        drop(queue);
        if was_empty {
            self.waker.wake();
        }
        if stall {
            Pushed::Stall
        } else {
            Pushed::Queued
        }
    }

    /// Group deliveries are bounded by the member's credit, not by the queue limits.
    pub(crate) fn push_group(&self, delivery: Delivery) -> Result<(), Delivery> {
        let mut queue = self.queue.lock();
        if queue.closed.is_some() {
            return Err(delivery);
        }
        let was_empty = queue.items.is_empty();
        queue.items.push_back(Queued {
            delivery,
            fanout_bytes: 0,
            fanout: false,
        });
        drop(queue);
        if was_empty {
            self.waker.wake();
        }
        Ok(())
    }

    pub(crate) fn depth(&self) -> usize {
        self.queue.lock().items.len()
    }

    pub(crate) fn room(&self) -> &Notify {
        &self.room
    }

    /// Open and over its bound: publishers that stalled on it keep waiting.
    pub(crate) fn is_over(&self) -> bool {
        let queue = self.queue.lock();
        queue.closed.is_none() && queue.level.is_over()
    }

    /// Since when this open queue has been over its bound, stalling its publishers.
    pub(crate) fn over_since(&self) -> Option<Instant> {
        let queue = self.queue.lock();
        queue
            .closed
            .is_none()
            .then(|| queue.level.over_since())
            .flatten()
    }

    /// Wakes stalled publishers for good: the mailbox is gone.
    pub(crate) fn release(&self) {
        self.queue.lock().level.drained();
        self.room.notify_waiters();
    }

    /// Moves up to `max` ready deliveries of the subscriptions `live` accepts into `out` without waiting, and
    /// returns how many were added; deliveries of ended subscriptions are discarded and expired ones counted.
    /// Wakes the publishers stalled on this queue once it is at its low-water mark.
    pub(crate) fn pop_batch(
        &self,
        out: &mut Vec<Delivery>,
        max: usize,
        live: impl Fn(SubscriptionId) -> bool,
    ) -> Result<usize, Closed> {
        let mut queue = self.queue.lock();
        if let Some(closed) = queue.closed {
            return Err(closed);
        }
        let mut added = 0;
        let now = now_ms();
        // Expired group deliveries are settled once the queue's lock is released (settling may hand the next
        // message to this very queue).
        let mut expired = Vec::new();
        while added < max {
            let Some(Queued {
                delivery,
                fanout_bytes,
                fanout,
            }) = queue.items.pop_front()
            else {
                break;
            };
            if fanout {
                queue.fanout_len -= 1;
                queue.fanout_bytes -= fanout_bytes;
            }
            if !live(delivery.subscription) {
                continue;
            }
            if delivery.expires_at_ms.is_some_and(|at| now > at) {
                record_drop(DropReason::Expired, self.owner.protocol);
                expired.extend(delivery.ack);
                continue;
            }
            out.push(delivery);
            added += 1;
        }
        let limits = self.options.limits;
        let resume = queue.level.is_over()
            && below_low_water(
                queue.fanout_len,
                queue.fanout_bytes,
                limits.max_messages,
                limits.max_bytes,
            )
            && queue.level.drained();
        drop(queue);
        // Settled, so a group member's window gets its place back.
        for ack in expired {
            ack.ack();
        }
        if resume {
            self.room.notify_waiters();
        }
        Ok(added)
    }

    /// Wakes `waker` at the next push into an empty queue, or when the queue closes.
    pub(crate) fn register(&self, waker: &Waker) {
        self.waker.register(waker);
    }
}
