//! [`Durables`]: the backing queues of durable topic subscriptions and the tasks that feed them.
//!
//! The core bus has no subscription that outlives its connection, so the STOMP listeners own one
//! forwarder task per durable queue: a mailbox of its own subscribes the topic pattern and every
//! message it receives is published again, unchanged but for its topic, into the queue's anycast
//! group (`$durable.…`, [`GroupPolicy::QUEUE`] unless a bus rule applies), where it is kept until
//! a subscriber joins. The task stops when the queue is deleted or the daemon shuts down.
//!
//! The copy carries its original topic in the [`SOURCE_TOPIC`] header so that MESSAGE can name
//! `/topic/<original>`; the session strips it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use core_bus::config::{GroupPolicy, SlowConsumerPolicy};
use core_bus::{
    Bus, ConnectionId, Credit, Envelope, Mailbox, MailboxOptions, MessageId, Origin, Pattern,
    Protocol, SubscribeError, Topic,
};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

/// Header of a forwarded copy holding the canonical topic it was published to.
pub const SOURCE_TOPIC: &str = "x-gatewayd-source-topic";
/// Deliveries moved per wake-up.
const BATCH: usize = 256;

struct Feed {
    source: Pattern,
    /// The identity name that made the queue; only it may use or delete it.
    owner: String,
    /// Cleared (under the lock) when the queue is deleted: no publish can follow.
    live: Arc<Mutex<bool>>,
    stop: CancellationToken,
}

/// Why [`Durables::feed`] made no queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error("{max} durable queues exist already")]
    Full { max: usize },
    #[error("the durable queue belongs to another identity")]
    NotOwner,
}

/// The durable queues of all STOMP listeners; clones share them.
#[derive(Clone)]
pub struct Durables {
    shutdown: CancellationToken,
    feeds: Arc<Mutex<HashMap<Topic, Feed>>>,
}

impl Durables {
    /// Forwarders stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Durables {
        Durables {
            shutdown,
            feeds: Arc::default(),
        }
    }

    /// Makes sure `queue` exists, owned by `owner`, and is fed from `source` from now on. A queue
    /// of another owner is refused; one fed from another pattern is deleted first (the JMS rule for
    /// a durable subscription that changes topic). No new queue is made once there are `max`. Must
    /// run inside a tokio runtime.
    pub fn feed(
        &self,
        bus: &Bus,
        queue: &Topic,
        source: Pattern,
        max: usize,
        owner: &str,
    ) -> Result<(), FeedError> {
        let mut feeds = self.feeds.lock();
        match feeds.get(queue) {
            Some(feed) if feed.owner != owner => return Err(FeedError::NotOwner),
            Some(feed) if feed.source == source => return Ok(()),
            Some(_) => {
                if let Some(old) = feeds.remove(queue) {
                    stop_and_purge(bus, queue, old);
                }
            }
            None if feeds.len() >= max => return Err(FeedError::Full { max }),
            None => {}
        }
        let mut mailbox = bus.mailbox_with(
            origin(),
            MailboxOptions {
                limits: bus.config().subscriber_queue,
                policy: SlowConsumerPolicy::DropOldest,
                stall_publishers: true,
            },
        );
        mailbox.subscribe(source.clone())?;
        bus.declare_group(queue, GroupPolicy::QUEUE);
        let live = Arc::new(Mutex::new(true));
        let stop = self.shutdown.child_token();
        tokio::spawn(forward(
            bus.clone(),
            mailbox,
            queue.clone(),
            live.clone(),
            stop.clone(),
        ));
        tracing::debug!(queue = %queue, source = %source, "stomp: durable subscription created");
        let owner = owner.to_owned();
        let feed = Feed {
            source,
            owner,
            live,
            stop,
        };
        feeds.insert(queue.clone(), feed);
        Ok(())
    }

    /// Deletes `queue` if `owner` made it: no more forwarding, kept messages dropped. Unknown
    /// queues are ignored.
    pub fn delete(&self, bus: &Bus, queue: &Topic, owner: &str) -> Result<(), FeedError> {
        let feed = {
            let mut feeds = self.feeds.lock();
            match feeds.get(queue) {
                Some(feed) if feed.owner != owner => return Err(FeedError::NotOwner),
                Some(_) => feeds.remove(queue),
                None => None,
            }
        };
        if let Some(feed) = feed {
            stop_and_purge(bus, queue, feed);
            tracing::debug!(queue = %queue, "stomp: durable subscription deleted");
        }
        Ok(())
    }

    /// Number of durable queues.
    pub fn len(&self) -> usize {
        self.feeds.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn origin() -> Origin {
    Origin {
        protocol: Protocol::Stomp,
        connection: ConnectionId::next(),
    }
}

fn stop_and_purge(bus: &Bus, queue: &Topic, feed: Feed) {
    *feed.live.lock() = false;
    feed.stop.cancel();
    // Take everything the group kept with an auto-ack member, then leave.
    let mut purger: Mailbox = bus.mailbox(origin());
    if let Ok(id) = purger.join_group(queue, Credit::AutoAck, GroupPolicy::QUEUE) {
        let mut sink = Vec::new();
        while matches!(purger.try_recv_batch(&mut sink, BATCH), Ok(n) if n > 0) {
            sink.clear();
        }
        purger.unsubscribe(id);
    }
}

/// The envelope for `queue`: [`SOURCE_TOPIC`] first, and any such header a publisher set left out.
fn copy(envelope: &Envelope, queue: &Topic) -> Envelope {
    let mut copy = envelope.clone();
    let source = Bytes::from(envelope.topic.as_str().to_owned());
    copy.headers = std::iter::once((SOURCE_TOPIC, source))
        .chain(
            envelope
                .headers
                .iter()
                .filter(|(name, _)| *name != SOURCE_TOPIC)
                .map(|(name, value)| (name, value.clone())),
        )
        .collect();
    copy.topic = queue.clone();
    copy.id = MessageId::next();
    copy.position = None;
    copy
}

async fn forward(
    bus: Bus,
    mut mailbox: Mailbox,
    queue: Topic,
    live: Arc<Mutex<bool>>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            received = mailbox.recv_batch(&mut batch, BATCH) => {
                if let Err(closed) = received {
                    tracing::warn!(queue = %queue, ?closed, "stomp: durable forwarder lost its subscription");
                    return;
                }
            }
        }
        for delivery in batch.drain(..) {
            let wait = {
                let live = live.lock();
                if !*live {
                    return;
                }
                bus.declare_group(&queue, GroupPolicy::QUEUE);
                bus.publish(copy(&delivery.envelope, &queue)).backpressure
            };
            if let Some(wait) = wait {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = wait.ready() => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core_bus::config::BusConfig;

    fn publish(bus: &Bus, topic: &str, body: &'static [u8]) {
        let mut envelope = Envelope::new(Topic::from_dotted(topic.as_bytes()), body, origin());
        envelope.headers.push(SOURCE_TOPIC, "forged");
        envelope.headers.push("kept", "yes");
        bus.publish(envelope);
    }

    async fn retained(bus: &Bus, queue: &Topic, want: usize) -> bool {
        for _ in 0..200 {
            let stats = bus.topics();
            let kept = stats
                .iter()
                .find(|t| t.topic == queue.as_str())
                .and_then(|t| t.group.as_ref())
                .map_or(0, |g| g.retained);
            if kept == want {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn messages_are_kept_while_nobody_consumes_and_deleted_with_the_queue() {
        let bus = Bus::new(BusConfig::default());
        let durables = Durables::new(CancellationToken::new());
        let queue = super::super::durable::queue("c1", "news");
        let source = Pattern::parse("news.#").unwrap();
        durables.feed(&bus, &queue, source.clone(), 1, "a").unwrap();
        durables.feed(&bus, &queue, source.clone(), 1, "a").unwrap();
        assert_eq!(durables.len(), 1, "feeding twice keeps one forwarder");
        assert_eq!(
            durables.feed(&bus, &queue, source.clone(), 1, "b"),
            Err(FeedError::NotOwner)
        );
        let other = super::super::durable::queue("c1", "more");
        assert_eq!(
            durables.feed(&bus, &other, source, 1, "a"),
            Err(FeedError::Full { max: 1 })
        );
        publish(&bus, "news.a", b"1");
        publish(&bus, "other", b"x");
        publish(&bus, "news.b.c", b"2");
        assert!(retained(&bus, &queue, 2).await);

        let mut consumer = bus.mailbox(origin());
        consumer
            .join_group(&queue, Credit::AutoAck, GroupPolicy::QUEUE)
            .unwrap();
        let first = consumer.recv().await.unwrap();
        assert_eq!(&first.envelope.payload[..], b"1");
        assert_eq!(first.envelope.topic, queue);
        assert_eq!(
            first.envelope.headers.get_str(SOURCE_TOPIC),
            Some(Topic::from_dotted(b"news.a").as_str())
        );
        assert_eq!(
            first.envelope.headers.len(),
            2,
            "a forged source is left out"
        );
        assert_eq!(first.envelope.headers.get_str("kept"), Some("yes"));
        drop(consumer);

        assert_eq!(durables.delete(&bus, &queue, "b"), Err(FeedError::NotOwner));
        assert_eq!(durables.len(), 1, "another owner deletes nothing");
        durables.delete(&bus, &queue, "a").unwrap();
        assert!(durables.is_empty());
        assert!(retained(&bus, &queue, 0).await);
        publish(&bus, "news.a", b"3");
        assert!(
            retained(&bus, &queue, 0).await,
            "no forwarding after delete"
        );
    }

    #[tokio::test]
    async fn a_new_source_replaces_the_queue() {
        let bus = Bus::new(BusConfig::default());
        let durables = Durables::new(CancellationToken::new());
        let queue = super::super::durable::queue("c1", "sub");
        durables
            .feed(&bus, &queue, Pattern::parse("a").unwrap(), 1, "o")
            .unwrap();
        publish(&bus, "a", b"1");
        assert!(retained(&bus, &queue, 1).await);
        durables
            .feed(&bus, &queue, Pattern::parse("b").unwrap(), 1, "o")
            .unwrap();
        assert!(retained(&bus, &queue, 0).await);
        publish(&bus, "a", b"2");
        publish(&bus, "b", b"3");
        assert!(retained(&bus, &queue, 1).await);
    }
}
