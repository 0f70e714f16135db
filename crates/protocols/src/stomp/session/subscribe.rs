//! SUBSCRIBE and UNSUBSCRIBE: topics, queues, inboxes and durable subscriptions on the bus.

use super::*;

impl Connected {
    pub(super) fn check_capacity(&self) -> Result<(), StompError> {
        let max = self.settings.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(StompError::TooManySubscriptions { max });
        }
        Ok(())
    }

    pub(super) fn add(
        &mut self,
        id: &str,
        destination: &str,
        kind: Kind,
        bus: SubscriptionId,
        ack: AckMode,
    ) {
        self.by_bus.insert(bus, id.to_owned());
        self.subscriptions.insert(
            id.to_owned(),
            Subscription {
                destination: destination.to_owned(),
                kind,
                bus,
                ack,
                head: message::head(id, self.version),
                last: None,
            },
        );
    }

    /// Who owns the durable subscriptions this connection makes: its identity.
    fn durable_owner(&self) -> DurableOwner {
        DurableOwner {
            protocol: Protocol::Stomp,
            identity: self.identity.name.clone(),
        }
    }

    /// The backing queue a durable SUBSCRIBE or UNSUBSCRIBE names: the RabbitMQ form needs the
    /// subscription `id` and the topic name, the ActiveMQ form the CONNECT `client-id`.
    pub(super) fn durable_queue(
        &self,
        request: Request<'_>,
        id: Option<&str>,
        topic: &str,
    ) -> Result<Topic, StompError> {
        match request {
            Request::ById => {
                id.map(|id| durable::queue(id, topic))
                    .ok_or(StompError::MissingHeader {
                        command: Command::Subscribe,
                        header: header::ID,
                    })
            }
            Request::Named(name) => match &self.client_id {
                Some(client) => Ok(durable::queue(client, name)),
                None => Err(StompError::InvalidHeader {
                    command: Command::Subscribe,
                    header: durable::SUBSCRIPTION_NAME_HEADERS[0],
                    reason: "a durable subscription name needs client-id on CONNECT",
                }),
            },
        }
    }

    pub(super) fn subscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let name = frame.require_header(header::DESTINATION)?;
        if frame.header(header::SELECTOR).is_some() {
            return Err(StompError::SelectorNotSupported);
        }
        let explicit_id = frame.header_str(header::ID)?;
        let id = match (explicit_id, self.version) {
            (Some(id), _) => id,
            // 1.0 allows SUBSCRIBE without id; the destination names the subscription.
            (None, Version::V1_0) => name,
            (None, _) => {
                return Err(StompError::MissingHeader {
                    command: Command::Subscribe,
                    header: header::ID,
                })
            }
        };
        if self.subscriptions.contains_key(id) {
            return Err(StompError::DuplicateSubscription { id: id.to_owned() });
        }
        self.check_capacity()?;
        let ack = AckMode::from_header(frame.header_str(header::ACK)?)?;
        let prefetch = prefetch(frame)?;
        let may = |pattern: &Pattern| {
            if durable::is_backing_queue(pattern) {
                Err(invalid(name, DURABLE_ONLY))
            } else if self.identity.may_subscribe(pattern) {
                Ok(())
            } else {
                Err(forbidden("SUBSCRIBE", name))
            }
        };
        let credit = match (ack.client_ack(), prefetch) {
            (None, None | Some(0)) => Credit::AutoAck,
            (Some(_), Some(0)) => Credit::Window(u32::MAX),
            (_, Some(window)) => Credit::Window(window),
            (Some(_), None) => Credit::Window(self.settings.default_prefetch),
        };
        let (kind, bus) = match Destination::parse(name)? {
            Destination::Topic(n) => {
                let pattern = pattern_from_name(&n, WildcardSyntax::Amqp)
                    .map_err(|_| invalid(name, "not a valid topic pattern"))?;
                may(&pattern)?;
                match durable::request(frame) {
                    Some(request) => {
                        let queue = self.durable_queue(request, explicit_id, &n)?;
                        let max = self.settings.max_durable_subscriptions;
                        self.bus
                            .bind_durable(&queue, &pattern, &self.durable_owner(), max)
                            .map_err(|e| durable_refused(name, e))?;
                        let id = self
                            .mailbox
                            .join_group(&queue, credit, GroupPolicy::QUEUE)
                            .map_err(|e| refused(name, e))?;
                        (Kind::Durable, id)
                    }
                    None => {
                        let id = self
                            .mailbox
                            .subscribe(pattern)
                            .map_err(|e| refused(name, e))?;
                        (Kind::Topic, id)
                    }
                }
            }
            Destination::Queue(n) => {
                let topic = names::topic_from_name(n.as_bytes());
                may(&Pattern::exact(&topic))?;
                let id = self
                    .mailbox
                    .join_group(&topic, credit, GroupPolicy::QUEUE)
                    .map_err(|e| refused(name, e))?;
                (Kind::Queue, id)
            }
            Destination::TempQueue(n) => {
                let inbox = self.temp_queue(&n)?;
                let id = self
                    .mailbox
                    .subscribe(Pattern::exact(&inbox))
                    .map_err(|e| refused(name, e))?;
                (Kind::AsSubscribed, id)
            }
            Destination::ReplyQueue(_) => {
                return Err(invalid(name, "reply addresses can only be sent to"))
            }
            Destination::Unknown(raw) => match self.settings.unknown_destination {
                UnknownDestination::Error => {
                    return Err(StompError::UnknownDestination { destination: raw })
                }
                UnknownDestination::Topic => {
                    let pattern = Pattern::exact(&names::topic_from_name(raw.as_bytes()));
                    may(&pattern)?;
                    let id = self
                        .mailbox
                        .subscribe(pattern)
                        .map_err(|e| refused(name, e))?;
                    (Kind::Bare, id)
                }
            },
        };
        let id = id.to_owned();
        self.add(&id, name, kind, bus, ack);
        Ok(())
    }

    /// UNSUBSCRIBE by `id`, or by `destination` (1.0; accepted in every version). An unknown
    /// subscription is ignored: teardown paths repeat UNSUBSCRIBE. Repeating the durable
    /// headers of SUBSCRIBE also deletes the durable queue, whether or not the subscription is
    /// active on this connection.
    pub(super) fn unsubscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        let explicit_id = frame.header_str(header::ID)?;
        let ids: Vec<String> = match explicit_id {
            Some(id) => vec![id.to_owned()],
            None => {
                let Some(destination) = frame.header_str(header::DESTINATION)? else {
                    return Err(StompError::MissingHeader {
                        command: Command::Unsubscribe,
                        header: header::ID,
                    });
                };
                self.subscriptions
                    .iter()
                    .filter(|(_, s)| s.destination == destination)
                    .map(|(id, _)| id.clone())
                    .collect()
            }
        };
        let mut destination = frame.header_str(header::DESTINATION)?.map(str::to_owned);
        for id in ids {
            if let Some(subscription) = self.subscriptions.remove(&id) {
                self.by_bus.remove(&subscription.bus);
                // Dropped handles stay unacked until the membership ends, which requeues them.
                drop(self.acks.remove_subscription(&id));
                self.mailbox.unsubscribe(subscription.bus);
                destination.get_or_insert(subscription.destination);
            }
        }
        if let Some(request) = durable::request(frame) {
            let topic = match destination.as_deref().map(Destination::parse) {
                Some(Ok(Destination::Topic(n))) => Some(n),
                _ => None,
            };
            // A queue the frame does not fully name is left alone.
            let queue = match request {
                Request::ById => explicit_id
                    .zip(topic.as_deref())
                    .map(|(id, topic)| durable::queue(id, topic)),
                Request::Named(name) => self
                    .client_id
                    .as_deref()
                    .map(|client| durable::queue(client, name)),
            };
            if let Some(queue) = queue {
                self.bus
                    .unbind_durable(&queue, &self.durable_owner())
                    .map_err(|_| {
                        let name = destination.as_deref().unwrap_or_default();
                        forbidden("UNSUBSCRIBE", name)
                    })?;
            }
        }
        Ok(())
    }
}
