//! SEND: destination to topic, reply-to inboxes, the publish ACL (on every destination form), the bus
//! envelope; and the connection's temp queues, whose inboxes have unguessable names.

use super::*;

impl Connected {
    pub(super) fn send(
        &mut self,
        frame: &Frame,
        now_ms: u64,
    ) -> Result<Option<Backpressure>, StompError> {
        let topic = match (&self.last_topic, frame.header(header::DESTINATION)) {
            (Some(last), Some(name)) if last.0 == name => last.1.clone(),
            _ => self.send_topic(frame)?,
        };
        let reply_to = match frame.header_str(header::REPLY_TO)? {
            None => None,
            Some(address) => self.reply_to(address)?,
        };
        let envelope = bridge::to_envelope(frame, topic, reply_to, self.mailbox.owner(), now_ms);
        Ok(self.bus.publish(envelope).backpressure)
    }

    /// The topic a SEND goes to, if the client may publish there. A `/topic/` destination is
    /// remembered, so a run of SENDs to one topic resolves and checks it once.
    fn send_topic(&mut self, frame: &Frame) -> Result<Topic, StompError> {
        let name = frame.require_header(header::DESTINATION)?;
        Ok(match Destination::parse(name)? {
            Destination::Topic(n) => {
                let topic = self.publishable(name, names::topic_from_name(n.as_bytes()))?;
                self.last_topic = Some(Box::new((
                    Bytes::copy_from_slice(name.as_bytes()),
                    topic.clone(),
                )));
                topic
            }
            Destination::Queue(n) => {
                let topic = self.publishable(name, names::topic_from_name(n.as_bytes()))?;
                self.bus.declare_group(&topic, GroupPolicy::QUEUE);
                topic
            }
            Destination::TempQueue(n) => {
                let inbox = self.temp_queue(&n)?;
                self.publishable(name, inbox)?
            }
            Destination::ReplyQueue(opaque) => {
                let inbox = bridge::inbox_of_reply_queue(&opaque)
                    .ok_or_else(|| invalid(name, "not a reply address gatewayd issued"))?;
                self.publishable(name, inbox)?
            }
            Destination::Unknown(raw) => match self.settings.unknown_destination {
                UnknownDestination::Error => {
                    return Err(StompError::UnknownDestination { destination: raw })
                }
                UnknownDestination::Topic => {
                    self.publishable(name, names::topic_from_name(raw.as_bytes()))?
                }
            },
        })
    }

    pub(super) fn publishable(&self, name: &str, topic: Topic) -> Result<Topic, StompError> {
        if durable::is_backing_queue(&Pattern::exact(&topic)) {
            return Err(invalid(name, DURABLE_ONLY));
        }
        if self.identity.may_publish(&topic) {
            Ok(topic)
        } else {
            Err(forbidden("SEND", name))
        }
    }

    /// The inbox behind `/temp-queue/<name>`, made on first use: `$inbox.<connection>.<128 random
    /// bits>`, so its `/reply-queue/` address cannot be guessed; only this connection may subscribe
    /// to it (the bus checks). A connection keeps at most `max_subscriptions` of them.
    pub(super) fn temp_queue(&mut self, name: &str) -> Result<Topic, StompError> {
        if let Some(inbox) = self.temp_queues.get(name) {
            return Ok(inbox.clone());
        }
        let max = self.settings.max_subscriptions;
        if self.temp_queues.len() >= max {
            return Err(StompError::TooManySubscriptions { max });
        }
        let inbox = self
            .mailbox
            .inbox(crate::auth::unguessable_name().as_bytes());
        self.temp_queues.insert(name.to_owned(), inbox.clone());
        Ok(inbox)
    }

    /// Resolves a SEND `reply-to`. `/temp-queue/X` creates and subscribes the private inbox;
    /// an address gatewayd cannot resolve stays a plain header (`None`).
    pub(super) fn reply_to(&mut self, address: &str) -> Result<Option<Topic>, StompError> {
        Ok(match Destination::parse(address) {
            Ok(Destination::TempQueue(name)) => {
                let inbox = self.temp_queue(&name)?;
                if !self.subscriptions.contains_key(address) {
                    self.check_capacity()?;
                    let id = self
                        .mailbox
                        .subscribe(Pattern::exact(&inbox))
                        .map_err(|e| refused(address, e))?;
                    self.add(address, address, Kind::AsSubscribed, id, AckMode::Auto);
                }
                Some(inbox)
            }
            Ok(Destination::Topic(name) | Destination::Queue(name)) => {
                Some(names::topic_from_name(name.as_bytes()))
            }
            Ok(Destination::ReplyQueue(opaque)) => bridge::inbox_of_reply_queue(&opaque),
            Ok(Destination::Unknown(_)) | Err(_) => None,
        })
    }
}
