//! ACK/NACK settlement and the MESSAGE frames made from bus deliveries.

use super::*;

impl Connected {
    pub(super) fn settle(&mut self, frame: &Frame, nack: bool) -> Result<(), StompError> {
        let id = ack_id(frame, self.version)?;
        let requeue = frame.header(bridge::REQUEUE) != Some(b"false");
        if let Some(settled) = self.acks.settle(id)? {
            for handle in settled.tags {
                if nack {
                    handle.nack(requeue);
                } else {
                    handle.ack();
                }
            }
        }
        Ok(())
    }

    /// Appends the MESSAGE frame for `delivery` to `outbox`; a delivery for a subscription
    /// that is gone goes back to its group.
    pub(super) fn message(&mut self, delivery: Delivery, outbox: &mut Outbox) {
        let Some((id, subscription)) = self
            .by_bus
            .get(&delivery.subscription)
            .and_then(|id| self.subscriptions.get_mut(id).map(|s| (id, s)))
        else {
            if let Some(ack) = delivery.ack {
                ack.nack(true);
            }
            return;
        };
        let client_ack = subscription.ack.client_ack();
        let seq = match (client_ack, delivery.ack) {
            (Some(mode), Some(handle)) => self.acks.track(id, mode, handle),
            (None, Some(handle)) => {
                // auto with a prefetch window: consumed once handed to the writer.
                handle.ack();
                self.acks.auto_seq()
            }
            (_, None) => self.acks.auto_seq(),
        };
        let destination = subscription.destination_of(&delivery.envelope);
        let delivered = Delivered {
            head: &subscription.head,
            destination: &destination,
            id_prefix: self.acks.prefix(),
            id_seq: seq,
            ack: client_ack.is_some() && self.version == Version::V1_2,
            redelivered: delivery.redelivered,
        };
        outbox.push_message(&delivered, &delivery.envelope, self.version);
    }
}

impl Subscription {
    /// The `destination` of a MESSAGE carrying `envelope`. The last one is kept, so a
    /// subscription that receives one topic names it once.
    fn destination_of(&mut self, envelope: &Envelope) -> Bytes {
        if self.kind == Kind::Durable {
            return match envelope
                .headers
                .get_str(SOURCE_TOPIC_HEADER)
                .and_then(|source| Topic::parse(source).ok())
            {
                Some(source) => bridge::named("/topic/", &source),
                None => Bytes::from(self.destination.clone()),
            };
        }
        let topic = &envelope.topic;
        if let Some((last, name)) = &self.last {
            if last == topic {
                return name.clone();
            }
        }
        let name = match self.kind {
            Kind::Topic => bridge::named("/topic/", topic),
            Kind::Queue => bridge::named("/queue/", topic),
            Kind::AsSubscribed | Kind::Durable => Bytes::from(self.destination.clone()),
            Kind::Bare => Bytes::from(names::topic_to_name(topic)),
        };
        self.last = Some((topic.clone(), name.clone()));
        name
    }
}
