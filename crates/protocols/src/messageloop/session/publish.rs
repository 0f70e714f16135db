//! Publish: gatewayd's ACL, then the backend's ([`super::acl`]), the bus envelope ([`bridge::to_envelope`]) and the ack with its position.

use super::*;

impl Session {
    pub(super) fn identity_allows_publish(&self, topic: &Topic) -> bool {
        self.identity()
            .is_some_and(|identity| identity.may_publish(topic))
    }

    pub(super) fn publish(&mut self, id: String, publish: Publish, now: Now) {
        let topic = match self.publish_topic(&publish.channel) {
            Ok(topic) => topic,
            Err(error) => return self.reply(id, now, OutboundBody::Error(Box::new(error))),
        };
        if !self.identity_allows_publish(&topic) {
            let error = Error::new(
                ErrorCode::PermissionDenied,
                format!("publish to {:?} denied", publish.channel),
            );
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        self.publish_check(id, publish, topic, now);
    }

    /// The topic `channel` publishes to ([`channel::publish_topic`]), parsed again only when the channel changed.
    fn publish_topic(&mut self, channel: &str) -> Result<Topic, Error> {
        if let Some(last) = &self.last_publish {
            if last.0 == channel {
                return Ok(last.1.clone());
            }
        }
        let topic = channel::publish_topic(channel)?;
        self.last_publish = Some(Box::new((channel.to_owned(), topic.clone())));
        Ok(topic)
    }

    /// Publish once every ACL allowed it: the bus envelope and the ack.
    pub(super) fn publish_checked(&mut self, id: String, publish: Publish, topic: Topic, now: Now) {
        let envelope = bridge::to_envelope(
            topic.clone(),
            publish.payload,
            &publish.headers,
            self.mailbox.owner(),
            now.unix_ms,
        );
        let outcome = self.context.bus.publish(envelope);
        if let Some(backpressure) = outcome.backpressure {
            self.backpressure = Some(Box::new(backpressure));
        }
        let position = match outcome.position {
            Some(position) => Position {
                stream_epoch: self.context.bus.epoch_text(position.epoch),
                offset: (!publish.transient).then_some(position.offset),
            },
            // A topic the cluster's log numbers (`cluster.history = "jetstream"`): the offset is assigned after
            // this ack, so the ack carries the topic's epoch without an offset.
            None => Position {
                stream_epoch: self.context.bus.history_top(&topic).map_or_else(
                    || self.context.settings.epoch.clone(),
                    |top| self.context.bus.epoch_text(top.epoch),
                ),
                offset: None,
            },
        };
        self.reply(id, now, OutboundBody::PublishAck(position));
    }
}
