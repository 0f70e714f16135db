//! Publish: gatewayd's ACL, then the backend's ([`super::acl`]), the bus envelope, the ack with its position, and Publications made from bus envelopes.

use super::*;

impl Session {
    pub(super) fn identity_allows_publish(&self, topic: &Topic) -> bool {
        self.identity()
            .is_some_and(|identity| identity.may_publish(topic))
    }

    pub(super) fn publish(&mut self, id: String, publish: Publish, now: Now) {
        let topic = match channel::publish_topic(&publish.channel) {
            Ok(topic) => topic,
            Err(error) => return self.reply(id, now, OutboundBody::Error(error)),
        };
        if !self.identity_allows_publish(&topic) {
            let error = Error::new(
                ErrorCode::PermissionDenied,
                format!("publish to {:?} denied", publish.channel),
            );
            return self.reply(id, now, OutboundBody::Error(error));
        }
        self.publish_check(id, publish, topic, now);
    }

    /// Publish once every ACL allowed it: the bus envelope and the ack.
    pub(super) fn publish_checked(&mut self, id: String, publish: Publish, topic: Topic, now: Now) {
        let mut envelope = self.envelope(topic.clone(), &publish.payload, &publish.headers);
        envelope.timestamp_ms = now.unix_ms;
        let outcome = self.context.bus.publish(envelope);
        if let Some(backpressure) = outcome.backpressure {
            self.backpressure = Some(backpressure);
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
        let ack = PublishAck {
            id: id.clone(),
            position,
        };
        self.reply(id, now, OutboundBody::PublishAck(ack));
    }

    /// A bus envelope for client data: payload bytes with a content type (a default by variant when the
    /// client gave none: `application/json`, `text/plain`; binary stays untyped) and metadata as headers.
    pub(super) fn envelope(
        &self,
        topic: Topic,
        payload: &Payload,
        headers: &[(String, Bytes)],
    ) -> Envelope {
        let mut envelope = Envelope::new(topic, payload.to_bytes(), self.mailbox.owner());
        envelope.content_type = match (&payload.data, payload.content_type.is_empty()) {
            (_, false) => Some(payload.content_type.clone()),
            (Some(PayloadData::Json(_)), true) => Some("application/json".to_owned()),
            (Some(PayloadData::Text(_)), true) => Some("text/plain".to_owned()),
            (Some(PayloadData::Binary(_)) | None, true) => None,
        };
        for (name, value) in headers {
            envelope.headers.push(name.clone(), value.clone());
        }
        envelope.adopt_trace_headers();
        envelope
    }

    /// One delivered message: the bus position (offset 0 and the listener epoch when the topic keeps no
    /// history), payload variant from the content type, headers as metadata.
    pub(super) fn message_from(&self, envelope: &Envelope, replay: bool) -> Message {
        let channel = envelope.topic.to_dotted().unwrap_or_else(|| {
            String::from_utf8_lossy(&envelope.topic.to_dotted_bytes()).into_owned()
        });
        let position = match envelope.position {
            Some(position) => Position {
                stream_epoch: self.context.bus.epoch_text(position.epoch),
                offset: Some(position.offset),
            },
            None => Position {
                stream_epoch: self.context.settings.epoch.clone(),
                offset: Some(0),
            },
        };
        let id = match position.offset {
            Some(offset) if offset > 0 => format!("{channel}-{offset}"),
            _ => uuid4(),
        };
        Message {
            id,
            channel,
            position,
            payload: payload_from(envelope.content_type.as_deref(), &envelope.payload),
            headers: envelope
                .headers_with_trace()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            replay,
        }
    }
}
