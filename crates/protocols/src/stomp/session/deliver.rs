//! ACK/NACK settlement and the MESSAGE frames made from bus deliveries.

use super::*;

impl Connected {
    pub(super) fn settle(&mut self, frame: &Frame, nack: bool) -> Result<(), StompError> {
        let id = ack_id(frame, self.version)?;
        let requeue = frame.header(bridge::REQUEUE).map(|v| &v[..]) != Some(b"false");
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

    pub(super) fn message(&mut self, delivery: Delivery) -> Option<Frame> {
        let Some((id, subscription)) = self
            .by_bus
            .get(&delivery.subscription)
            .and_then(|id| self.subscriptions.get_key_value(id))
        else {
            if let Some(ack) = delivery.ack {
                ack.nack(true);
            }
            return None;
        };
        let client_ack = subscription.ack.client_ack();
        let message_id = match (client_ack, delivery.ack) {
            (Some(mode), Some(handle)) => self.acks.track(id, mode, handle),
            (None, Some(handle)) => {
                // auto with a prefetch window: consumed once handed to the writer.
                handle.ack();
                self.acks.auto_id()
            }
            (_, None) => self.acks.auto_id(),
        };
        let topic = &delivery.envelope.topic;
        let destination = match subscription.kind {
            Kind::Topic => bridge::named("/topic/", topic),
            Kind::Queue => bridge::named("/queue/", topic),
            Kind::AsSubscribed => Bytes::from(subscription.destination.clone()),
            Kind::Bare => Bytes::from(names::topic_to_name(topic)),
            Kind::Durable => match delivery
                .envelope
                .headers
                .get_str(SOURCE_TOPIC)
                .and_then(|source| Topic::parse(source).ok())
            {
                Some(source) => bridge::named("/topic/", &source),
                None => Bytes::from(subscription.destination.clone()),
            },
        };
        Some(bridge::message_frame(
            Delivered {
                subscription: id,
                destination,
                message_id: &message_id,
                ack: client_ack.is_some() && self.version == Version::V1_2,
                redelivered: delivery.redelivered,
            },
            &delivery.envelope,
        ))
    }
}
