//! The listeners' [`Deliveries`]: the delivered publication of each recent bus message, built once and shared by
//! every subscriber's session (with its encodings, see [`SharedPublication`]), so a message fanned out to many
//! connections is turned into a MessageLoop message, given its id and encoded once per wire form instead of once
//! per subscriber.
//!
//! A small direct-mapped table keyed by the envelope's id: a message takes the slot its id picks; a later one
//! picking the same slot replaces it. A subscriber that comes to a message after its slot was taken builds its own
//! copy (the same message, except for a fresh UUID id when the topic keeps no history). A session holding a
//! message's last reference only asks whether it was built and otherwise builds it for itself, outside the
//! table: no one else will ask for it ([`Deliveries::body`] makes that choice).

use std::sync::Arc;

use core_bus::{Envelope, MessageId, Position};
use parking_lot::Mutex;

use crate::messageloop::codec::shared::SharedPublication;
use crate::messageloop::message::{Message, OutboundBody};

/// Slots in the table: the messages that can be in flight to slower subscribers and still be shared.
const SLOTS: usize = 256;

/// One message's shared publication.
struct Slot {
    id: MessageId,
    position: Option<Position>,
    publication: Arc<SharedPublication>,
}

/// Delivered publications of recent messages, shared by the sessions of the listeners (cheap to clone).
#[derive(Clone)]
pub struct Deliveries {
    slots: Arc<[Mutex<Option<Slot>>]>,
}

impl Default for Deliveries {
    fn default() -> Deliveries {
        Deliveries {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").field("slots", &SLOTS).finish()
    }
}

impl Deliveries {
    /// What a session delivers for `envelope`, the `Arc` its mailbox handed over: the shared publication while
    /// anyone else holds the message (built by `build` for all when nobody did yet); when the caller holds its last
    /// reference, the shared one if an earlier subscriber's build is still at hand, else `build`'s publication for
    /// the caller alone, kept out of the table since no one else will ask for it.
    pub fn body(&self, envelope: &Arc<Envelope>, build: impl FnOnce() -> Message) -> OutboundBody {
        if Arc::strong_count(envelope) > 1 {
            return OutboundBody::Delivered(self.get_or_build(envelope, build));
        }
        match self.get(envelope) {
            Some(shared) => OutboundBody::Delivered(shared),
            None => OutboundBody::Publication(vec![build()]),
        }
    }

    /// The publication already built for `envelope`, if its slot still holds it.
    fn get(&self, envelope: &Envelope) -> Option<Arc<SharedPublication>> {
        Slot::of(&self.slot(envelope).lock(), envelope)
    }

    /// The publication of `envelope`: the one already built for it, or `build`'s, kept for the next subscriber.
    pub fn get_or_build(
        &self,
        envelope: &Envelope,
        build: impl FnOnce() -> Message,
    ) -> Arc<SharedPublication> {
        let mut slot = self.slot(envelope).lock();
        if let Some(found) = Slot::of(&slot, envelope) {
            return found;
        }
        // Built under the slot's lock, taken once: a subscriber of the same message on another thread waits for
        // this publication instead of building its own.
        let publication = Arc::new(SharedPublication::new(build()));
        let replaced = slot.replace(Slot {
            id: envelope.id,
            position: envelope.position,
            publication: publication.clone(),
        });
        drop(slot);
        // The message it replaced is freed after the lock is released.
        drop(replaced);
        publication
    }

    fn slot(&self, envelope: &Envelope) -> &Mutex<Option<Slot>> {
        // The low bits of a message id are a counter: consecutive messages take consecutive slots.
        &self.slots[(envelope.id.0 % SLOTS as u128) as usize]
    }
}

impl Slot {
    /// The publication in `slot` when it is `envelope`'s.
    fn of(slot: &Option<Slot>, envelope: &Envelope) -> Option<Arc<SharedPublication>> {
        slot.as_ref()
            .filter(|found| found.id == envelope.id && found.position == envelope.position)
            .map(|found| found.publication.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use bytes::Bytes;
    use core_bus::{Bus, ConnectionId, Origin, Protocol, Topic};

    use super::*;
    use crate::messageloop::bridge::from_envelope;

    fn envelope() -> Envelope {
        let origin = Origin {
            protocol: Protocol::Internal,
            connection: ConnectionId::next(),
        };
        Envelope::new(
            Topic::parse("chat.room").unwrap(),
            Bytes::from_static(b"hi"),
            origin,
        )
    }

    /// Subscribers of one message share its publication, built once (one UUID id for all when the topic keeps no
    /// history); another message gets its own.
    #[test]
    fn a_message_is_built_once_for_all_subscribers() {
        let bus = Bus::new(Default::default());
        let deliveries = Deliveries::default();
        let builds = Cell::new(0);
        let build = |envelope: &Envelope| {
            builds.set(builds.get() + 1);
            from_envelope(envelope, false, &bus, "epoch")
        };
        let first = envelope();
        let a = deliveries.get_or_build(&first, || build(&first));
        let b = deliveries.get_or_build(&first, || build(&first));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(builds.get(), 1);
        assert_eq!(a.message().id.len(), 36, "a UUID: {:?}", a.message());
        let second = envelope();
        let c = deliveries.get_or_build(&second, || build(&second));
        assert_eq!(builds.get(), 2);
        assert_ne!(a.message().id, c.message().id);
        // A message whose slot another took is built again.
        let mut later = envelope();
        later.id = MessageId(first.id.0 + SLOTS as u128);
        deliveries.get_or_build(&later, || build(&later));
        let again = deliveries.get_or_build(&first, || build(&first));
        assert_eq!(builds.get(), 4);
        assert!(!Arc::ptr_eq(&a, &again));
    }

    /// `get` finds what `get_or_build` built, and builds nothing.
    #[test]
    fn get_finds_only_a_built_publication() {
        let bus = Bus::new(Default::default());
        let deliveries = Deliveries::default();
        let message = envelope();
        assert!(deliveries.get(&message).is_none());
        let built = deliveries.get_or_build(&message, || from_envelope(&message, false, &bus, "e"));
        let found = deliveries.get(&message).expect("built before");
        assert!(Arc::ptr_eq(&built, &found));
        let mut later = envelope();
        later.id = MessageId(message.id.0 + SLOTS as u128);
        assert!(deliveries.get(&later).is_none());
    }

    /// A message others still hold is shared through the table; one whose last holder asks is built for it alone,
    /// unless it was built before.
    #[test]
    fn body_is_shared_while_others_hold_the_message() {
        let bus = Bus::new(Default::default());
        let deliveries = Deliveries::default();
        let build = |envelope: &Envelope| from_envelope(envelope, false, &bus, "e");
        let alone = Arc::new(envelope());
        let body = deliveries.body(&alone, || build(&alone));
        assert!(matches!(&body, OutboundBody::Publication(messages) if messages.len() == 1));
        assert!(deliveries.get(&alone).is_none(), "not kept in the table");
        let shared = Arc::new(envelope());
        let other_holder = shared.clone();
        let OutboundBody::Delivered(first) = deliveries.body(&shared, || build(&shared)) else {
            panic!("a message someone else holds is shared");
        };
        drop(other_holder);
        let OutboundBody::Delivered(last) = deliveries.body(&shared, || panic!("built before"))
        else {
            panic!("the last holder finds the earlier build");
        };
        assert!(Arc::ptr_eq(&first, &last));
    }
}
