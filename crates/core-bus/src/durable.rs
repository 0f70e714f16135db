//! Durable bindings: a pattern bound to the anycast group of an exact topic, its queue, that lives without any
//! connection (STOMP durable topic subscriptions, `$durable.…`). A binding is an entry of its pattern in the index
//! like a fanout subscription, so it gets what a fanout subscription on this node would get (local publishes and,
//! in cluster mode, other nodes' publishes the backend hands this node's fanout). Each message it matches goes into
//! the queue's group as a copy: topic changed to the queue, [`SOURCE_TOPIC_HEADER`] first with the original topic,
//! a fresh id, no position. The group is not collected while bound; binding and unbinding happen under the index
//! writer lock, and unbinding drops what the group kept.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::anycast::{Group, Offered};
use crate::envelope::{Envelope, MessageId, Protocol};
use crate::names::SubscribeError;
use crate::queue::SubscriptionId;
use crate::topic::{Pattern, Topic};

/// Header of a queued copy holding the canonical topic the message was published to; a header of that name set by
/// the publisher is left out of the copy.
pub const SOURCE_TOPIC_HEADER: &str = "x-gatewayd-source-topic";

/// Who made a durable binding: only the same owner may rebind or unbind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableOwner {
    /// Whom the binding's messages count for where a subscriber's protocol is counted ([`crate::Bus::fanout_protocols`]).
    pub protocol: Protocol,
    /// The identity (login) that made it.
    pub identity: String,
}

/// A durable queue of another owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the durable queue belongs to another owner")]
pub struct NotOwner;

/// Why [`crate::Bus::bind_durable`] bound nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurableError {
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    #[error("{max} durable queues exist already")]
    Full { max: usize },
    #[error(transparent)]
    NotOwner(#[from] NotOwner),
}

/// One binding as the index holds it: where its copies go.
pub(crate) struct Binding {
    queue: Topic,
    group: Arc<Group>,
    protocol: Protocol,
    /// Cleared, under the group's lock, when the binding goes: no copy reaches the group after its purge.
    bound: AtomicBool,
}

impl Binding {
    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub(crate) fn group(&self) -> &Arc<Group> {
        &self.group
    }

    /// Puts a copy of `envelope` into the queue's group; `None` once the binding is gone.
    pub(crate) fn offer(
        &self,
        envelope: &Envelope,
        max_stall: std::time::Duration,
    ) -> Option<Offered> {
        let copy = Arc::new(self.copy(envelope));
        self.group.offer_while(&self.bound, copy, max_stall)
    }

    /// The envelope for the queue: [`SOURCE_TOPIC_HEADER`] first, and any such header a publisher set left out.
    fn copy(&self, envelope: &Envelope) -> Envelope {
        let mut copy = envelope.clone();
        let source = Bytes::from(envelope.topic.as_str().to_owned());
        copy.headers = std::iter::once((SOURCE_TOPIC_HEADER, source))
            .chain(
                envelope
                    .headers
                    .iter()
                    .filter(|(name, _)| *name != SOURCE_TOPIC_HEADER)
                    .map(|(name, value)| (name, value.clone())),
            )
            .collect();
        copy.topic = self.queue.clone();
        copy.id = MessageId::next();
        copy.position = None;
        copy
    }
}

struct Entry {
    /// The binding's id in the index.
    id: SubscriptionId,
    pattern: Pattern,
    owner: DurableOwner,
    binding: Arc<Binding>,
}

/// A binding taken out of the index: its pattern and id there, to remove, and its group, to purge.
pub(crate) struct Unbound {
    pub(crate) id: SubscriptionId,
    pub(crate) pattern: Pattern,
    pub(crate) binding: Arc<Binding>,
}

impl Unbound {
    /// Stops the binding's copies and drops what its group kept.
    pub(crate) fn purge(&self) {
        self.binding.group.close_and_purge(&self.binding.bound);
    }
}

/// What [`Durables::bind`] decided.
pub(crate) enum Bind {
    /// The owner's binding of this pattern exists already.
    Kept,
    /// A new binding, to enter into the index under `id`, replacing `replaced` (bound to another pattern).
    New {
        id: SubscriptionId,
        binding: Arc<Binding>,
        replaced: Option<Unbound>,
    },
}

/// The durable bindings, by queue; changed under the index writer lock only.
#[derive(Default)]
pub(crate) struct Durables(Mutex<HashMap<Topic, Entry>>);

impl Durables {
    /// Binds `pattern` to `queue`'s `group` for `owner`. A binding of another owner is refused; one of another
    /// pattern is replaced (the JMS rule for a durable subscription that changes topic); no new one is made once
    /// there are `max`.
    pub(crate) fn bind(
        &self,
        queue: &Topic,
        pattern: &Pattern,
        owner: &DurableOwner,
        max: usize,
        group: impl FnOnce() -> Arc<Group>,
    ) -> Result<Bind, DurableError> {
        let mut entries = self.0.lock();
        match entries.get(queue) {
            Some(entry) if entry.owner != *owner => return Err(NotOwner.into()),
            Some(entry) if entry.pattern == *pattern => return Ok(Bind::Kept),
            Some(_) => {}
            None if entries.len() >= max => return Err(DurableError::Full { max }),
            None => {}
        }
        let replaced = entries.remove(queue).map(Entry::unbound);
        let id = SubscriptionId::next();
        let binding = Arc::new(Binding {
            queue: queue.clone(),
            group: group(),
            protocol: owner.protocol,
            bound: AtomicBool::new(true),
        });
        let entry = Entry {
            id,
            pattern: pattern.clone(),
            owner: owner.clone(),
            binding: binding.clone(),
        };
        entries.insert(queue.clone(), entry);
        Ok(Bind::New {
            id,
            binding,
            replaced,
        })
    }

    /// Takes `owner`'s binding of `queue` out; none is `Ok(None)`.
    pub(crate) fn unbind(
        &self,
        queue: &Topic,
        owner: &DurableOwner,
    ) -> Result<Option<Unbound>, NotOwner> {
        let mut entries = self.0.lock();
        match entries.get(queue) {
            Some(entry) if entry.owner != *owner => Err(NotOwner),
            Some(_) => Ok(entries.remove(queue).map(Entry::unbound)),
            None => Ok(None),
        }
    }

    /// Whether a binding feeds the group on `queue` (which must then stay).
    pub(crate) fn feeds(&self, queue: &Topic) -> bool {
        self.0.lock().contains_key(queue)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }
}

impl Entry {
    fn unbound(self) -> Unbound {
        Unbound {
            id: self.id,
            pattern: self.pattern,
            binding: self.binding,
        }
    }
}
