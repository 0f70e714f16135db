//! What a request on a master stream does: who it acts as, a publish and its one answering source, a subscription
//! with a source per topic it announces, a delivery framed onto its source, and the end of the request.

use std::time::Instant;

use bytes::Bytes;
use core_bus::metrics::{record_drop, DropReason};
use core_bus::{Delivery, Protocol, Topic};

use super::{Bound, MasterState, RequestId, Role, Session};
use crate::auth::{AuthError, Credentials, Identity};
use crate::chanserv::astranet::StreamId;
use crate::chanserv::bridge::{self, topic_header};
use crate::chanserv::codec::credentials;
use crate::chanserv::codec::selector::{
    self, Publish, PublishReply, Request, RequestError, Selector,
};
use crate::chanserv::subscription::{
    cap_header, subscribed_header, Routed, SelectorError, SourceState, Subscription,
};

impl Session {
    /// The identity a request acts as: its `AUTH` token's, else the session's unless credentials are required.
    fn request_identity(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let auth = &self.config.auth;
        match token {
            None if !auth.required() => Ok(self.identity.clone()),
            secret => auth.authenticate(Credentials {
                login: None,
                secret: secret.or(Some("")),
            }),
        }
    }

    pub(super) fn on_request(&mut self, master: StreamId, body: Bytes, now: Instant) {
        let (token, body) = credentials::split_token(body);
        let identity = match self.request_identity(token.as_deref()) {
            Ok(identity) => identity,
            Err(error) => {
                record_drop(DropReason::AclDenied, Protocol::Chanserv);
                return self.answer_err(master, &error.to_string(), now);
            }
        };
        match selector::parse(body) {
            Ok(Request::Publish(publish)) => {
                let reply = self.publish(publish, &identity);
                self.answer(master, &reply.encode(), now);
            }
            Ok(Request::Subscribe(selectors)) => self.subscribe(master, &selectors, &identity, now),
            Err(RequestError::Empty) => self.finish(master, now),
            Err(e) => {
                record_drop(DropReason::Malformed, Protocol::Chanserv);
                self.answer_err(master, &e.to_string(), now);
            }
        }
    }

    fn publish(&mut self, publish: Publish, identity: &Identity) -> PublishReply {
        let topic = match bridge::publish_topic(&publish) {
            Ok(topic) => topic,
            Err(e) => {
                record_drop(DropReason::Malformed, Protocol::Chanserv);
                return PublishReply::Err {
                    reason: format!("invalid topic: {e}"),
                };
            }
        };
        if !identity.may_publish(&topic) {
            record_drop(DropReason::AclDenied, Protocol::Chanserv);
            return PublishReply::Err {
                reason: format!("not allowed to publish to {}", publish.topic),
            };
        }
        let outcome = self
            .bus
            .publish(bridge::to_envelope(topic, publish, self.origin));
        if outcome.backpressure.is_some() {
            // Kept until the driver takes it: a later publish in the same input does not clear it.
            self.backpressure = outcome.backpressure;
        }
        PublishReply::Ok {
            offset: outcome.position.map(|p| p.offset),
        }
    }

    fn subscribe(
        &mut self,
        master: StreamId,
        selectors: &[Selector],
        identity: &Identity,
        now: Instant,
    ) {
        let limit = self.config.max_subscriptions;
        if self.subscriptions.saturating_add(selectors.len()) > limit {
            return self.answer_err(
                master,
                &format!("subscription limit of {limit} per connection reached"),
                now,
            );
        }
        let bus = &self.bus;
        let subscription = Subscription::new(
            master,
            self.bus.mailbox(self.origin),
            selectors,
            |pattern| identity.may_subscribe(pattern),
            |topic| bus.history_top(topic),
            self.config.max_sources_per_request,
            self.config.compression,
        );
        let subscription = match subscription {
            Ok(subscription) => subscription,
            Err(e) => {
                if matches!(e, SelectorError::Denied(_)) {
                    record_drop(DropReason::AclDenied, Protocol::Chanserv);
                }
                return self.answer_err(master, &e.to_string(), now);
            }
        };
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.subscriptions += subscription.subscription_count();
        let exact = subscription.exact_topics();
        self.requests.insert(id, subscription);
        if let Some(Role::Master(m)) = self.roles.get_mut(&master) {
            m.state = MasterState::Serving(id);
        }
        if let Some(deadlines) = self.deadlines.get_mut(&master) {
            deadlines.sourced(&self.config.timeouts, now);
        }
        if exact.is_empty() {
            // Wildcards only: nothing to announce yet, but the Go client waits for a first frame.
            self.announce_empty(master, &subscribed_header(), now);
        }
        for topic in exact {
            self.announce(id, topic, now);
        }
    }

    /// Announces a source for `topic` on the request's master (or reports the cap once).
    fn announce(&mut self, id: RequestId, topic: Topic, now: Instant) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        if request.has_source(&topic) {
            return;
        }
        let master = request.master;
        if !self.roles.contains_key(&master) {
            // The sourcing timeout closed the master: no new sources.
            return;
        }
        if !request.may_announce() {
            if request.cap_reached() {
                let header = cap_header(request.max_sources());
                self.announce_empty(master, &header, now);
            }
            return;
        }
        let bound = Bound::Source {
            request: id,
            topic: topic.clone(),
        };
        let Some(port) = self.bind(bound, now) else {
            return;
        };
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let complete = request.add_source(topic.clone(), port);
        if let Some(deadlines) = self.deadlines.get_mut(&master) {
            deadlines.sourced(&self.config.timeouts, now);
        }
        self.push_announcement(master, &topic_header(&topic, complete), port, now);
    }

    pub(super) fn on_delivery(&mut self, id: RequestId, delivery: &Delivery, now: Instant) {
        let Some(request) = self.requests.get_mut(&id) else {
            return;
        };
        let routed = match request.deliver(delivery) {
            Routed::NewTopic(topic) => {
                self.announce(id, topic, now);
                match self.requests.get_mut(&id) {
                    Some(request) => request.deliver(delivery),
                    None => return,
                }
            }
            routed => routed,
        };
        match routed {
            Routed::Queued(topic) => {
                let open = self
                    .requests
                    .get_mut(&id)
                    .and_then(|r| r.source_mut(&topic))
                    .map(|s| s.state);
                if let Some(SourceState::Open(stream)) = open {
                    self.flush(stream, now);
                }
            }
            Routed::Duplicate => {}
            Routed::NewTopic(_) | Routed::Dropped => {
                record_drop(DropReason::Unroutable, Protocol::Chanserv)
            }
            Routed::TooLarge(e) => {
                record_drop(DropReason::TooLarge, Protocol::Chanserv);
                tracing::debug!(
                    error = %e,
                    topic = %delivery.envelope.topic,
                    from = %delivery.envelope.origin.protocol,
                    "chanserv: message too large for a frame, not delivered"
                );
            }
        }
    }

    /// Ends a subscribe request: its bus subscriptions, every source, and the master.
    pub(super) fn end_request(&mut self, id: RequestId, now: Instant) {
        let Some(request) = self.requests.remove(&id) else {
            return;
        };
        self.subscriptions = self
            .subscriptions
            .saturating_sub(request.subscription_count());
        for (_, state) in request.sources() {
            match state {
                SourceState::Announced { port } => {
                    self.binds.remove(&port);
                    self.link.unbind(port);
                }
                SourceState::Open(stream) => self.finish(stream, now),
                SourceState::Gone => {}
            }
        }
        if let Some(Role::Master(master)) = self.roles.get_mut(&request.master) {
            master.state = MasterState::Answered;
        }
        self.finish(request.master, now);
    }
}
