//! Backend ACL checks (docs/protocols/messageloop.md, "Backend proxy"): after gatewayd's own ACL allowed a
//! subscribe entry or a publish, the backend a `(channel, "subscribe")` or `(channel, "publish")` route names has
//! the last word. While its answers are out the request waits in [`PendingAcl`] and the driver reads nothing more
//! from the client; the answers (or the deadline) resume it. A backend `error` refuses with that error unchanged; a
//! failed or timed-out call refuses with PROXY_ERROR. `sub_refresh` asks again, without a token, for the listed
//! channels and quietly ends the subscriptions the backend no longer allows.

use std::collections::HashMap;

use super::*;
use crate::messageloop::proxy::call::{AclCall, ProxyFailure, ProxyReply, ProxyRequest};
use crate::messageloop::proxy::route::Target;

/// A request whose backend ACL answers are out.
pub(super) struct PendingAcl {
    request: Deferred,
    /// Outstanding call id → index of the entry it checks (0 for a publish).
    calls: HashMap<String, usize>,
    /// Entries the backend refused, by index.
    refused: Refusals,
    deadline: Instant,
}

/// Backend refusals by entry index.
pub(super) type Refusals = HashMap<usize, Error>;

/// What resumes once every answer is in.
enum Deferred {
    Subscribe {
        id: String,
        entries: Vec<Subscription>,
    },
    /// Connect's own subscriptions; Connected follows them.
    Connect { id: String, connect: Connect },
    Publish {
        id: String,
        publish: Publish,
        topic: Topic,
    },
    /// The channels of a `sub_refresh`, by index.
    SubRefresh { id: String, channels: Vec<String> },
}

impl Session {
    /// A subscribe, publish or Connect token is with a backend: read nothing more from the client.
    pub fn waiting_for_backend(&self) -> bool {
        self.authenticating() || self.pending_acl.is_some()
    }

    pub(super) fn acl_deadline(&self) -> Option<Instant> {
        self.pending_acl.as_ref().map(|pending| pending.deadline)
    }

    fn acl_call(&mut self, request: ProxyRequest, target: Target) -> String {
        let id = self.next_call_id();
        self.proxy_calls.push(ProxyCall {
            id: id.clone(),
            proxy: target.proxy,
            timeout: target.timeout,
            request,
        });
        id
    }

    fn acl_fields(&self, channel: &str, token: &str) -> AclCall {
        AclCall {
            channel: channel.to_owned(),
            token: token.to_owned(),
            user_id: self.user_id(),
            session_id: self.session_id.clone(),
        }
    }

    /// Asks the backend about each entry that is routable, allowed by gatewayd's ACL and routed; `None`
    /// when no entry needs asking.
    fn subscribe_checks(
        &mut self,
        entries: &[Subscription],
        now: Now,
    ) -> Option<(HashMap<String, usize>, Instant)> {
        let mut calls = HashMap::new();
        let mut deadline = now.at;
        for (index, entry) in entries.iter().enumerate() {
            let Ok(pattern) = channel::subscribe_pattern(&entry.channel, self.generation) else {
                continue;
            };
            if !self
                .identity()
                .is_some_and(|identity| identity.may_subscribe(&pattern))
            {
                continue;
            }
            let Some(target) = self.context.router.subscriber(&entry.channel) else {
                continue;
            };
            let request = ProxyRequest::SubscribeAcl(self.acl_fields(&entry.channel, &entry.token));
            calls.insert(self.acl_call(request, target), index);
            deadline = deadline.max(now.at + target.timeout);
        }
        (!calls.is_empty()).then_some((calls, deadline))
    }

    /// Subscribe: the backend checks first when routes ask for it.
    pub(super) fn subscribe(&mut self, id: &str, entries: Vec<Subscription>, now: Now) {
        match self.subscribe_checks(&entries, now) {
            None => self.subscribe_checked(id, entries, &Refusals::new(), now),
            Some((calls, deadline)) => {
                let request = Deferred::Subscribe {
                    id: id.to_owned(),
                    entries,
                };
                self.pending_acl = Some(Box::new(PendingAcl {
                    request,
                    calls,
                    refused: Refusals::new(),
                    deadline,
                }));
            }
        }
    }

    /// Connect's subscriptions, asking the backend first when routes ask for it, then Connected.
    pub(super) fn connect_subscriptions(&mut self, id: String, connect: Connect, now: Now) {
        match self.subscribe_checks(&connect.subscriptions, now) {
            None => self.finish_connect(id, connect, &Refusals::new(), now),
            Some((calls, deadline)) => {
                self.pending_acl = Some(Box::new(PendingAcl {
                    request: Deferred::Connect { id, connect },
                    calls,
                    refused: Refusals::new(),
                    deadline,
                }));
            }
        }
    }

    /// Publish after gatewayd's ACL: the backend checks first when a route asks for it.
    pub(super) fn publish_check(&mut self, id: String, publish: Publish, topic: Topic, now: Now) {
        let Some(target) = self.context.router.publisher(&publish.channel) else {
            return self.publish_checked(id, publish, topic, now);
        };
        let request = ProxyRequest::PublishAcl(self.acl_fields(&publish.channel, &publish.token));
        let call = self.acl_call(request, target);
        self.pending_acl = Some(Box::new(PendingAcl {
            request: Deferred::Publish { id, publish, topic },
            calls: HashMap::from([(call, 0)]),
            refused: Refusals::new(),
            deadline: now.at + target.timeout,
        }));
    }

    /// `sub_refresh`: each listed channel a `(channel, "subscribe")` route names is checked again (with no
    /// token); the ack follows the answers.
    pub(super) fn sub_refresh(&mut self, id: String, channels: Vec<String>, now: Now) {
        let mut calls = HashMap::new();
        let mut deadline = now.at;
        for (index, channel) in channels.iter().enumerate() {
            let Some(target) = self.context.router.subscriber(channel) else {
                continue;
            };
            let request = ProxyRequest::SubscribeAcl(self.acl_fields(channel, ""));
            calls.insert(self.acl_call(request, target), index);
            deadline = deadline.max(now.at + target.timeout);
        }
        if calls.is_empty() {
            return self.reply(id, now, OutboundBody::SubRefreshAck);
        }
        self.pending_acl = Some(Box::new(PendingAcl {
            request: Deferred::SubRefresh { id, channels },
            calls,
            refused: Refusals::new(),
            deadline,
        }));
    }

    /// Whether `call` is an ACL check still out.
    pub(super) fn awaits_acl(&self, call: &str) -> bool {
        self.pending_acl
            .as_ref()
            .is_some_and(|pending| pending.calls.contains_key(call))
    }

    /// The answer to the ACL check `call`.
    pub(super) fn on_acl_answer(
        &mut self,
        call: &str,
        outcome: Result<ProxyReply, ProxyFailure>,
        now: Now,
    ) {
        let Some(pending) = self.pending_acl.as_mut() else {
            return;
        };
        let Some(index) = pending.calls.remove(call) else {
            return;
        };
        if let Some(error) = refusal(outcome) {
            pending.refused.insert(index, error);
        }
        if pending.calls.is_empty() {
            self.resume_acl(now);
        }
    }

    /// The deadline passed: every check still out is a timeout.
    pub(super) fn acl_timed_out(&mut self, now: Now) {
        if let Some(pending) = self.pending_acl.as_mut() {
            for (_, index) in pending.calls.drain() {
                pending.refused.insert(index, timeout_error());
            }
        }
        self.resume_acl(now);
    }

    fn resume_acl(&mut self, now: Now) {
        let Some(pending) = self.pending_acl.take() else {
            return;
        };
        match pending.request {
            Deferred::Subscribe { id, entries } => {
                self.subscribe_checked(&id, entries, &pending.refused, now)
            }
            Deferred::Connect { id, connect } => {
                self.finish_connect(id, connect, &pending.refused, now)
            }
            Deferred::Publish { id, publish, topic } => match pending.refused.get(&0) {
                Some(error) => self.reply(id, now, OutboundBody::Error(Box::new(error.clone()))),
                None => self.publish_checked(id, publish, topic, now),
            },
            Deferred::SubRefresh { id, channels } => {
                for index in pending.refused.keys() {
                    if let Some(channel) = channels.get(*index) {
                        self.drop_subscription(channel, true);
                    }
                }
                self.reply(id, now, OutboundBody::SubRefreshAck);
            }
        }
    }
}

fn timeout_error() -> Error {
    Error::new(ErrorCode::ProxyError, "acl backend timed out")
}

/// The error an ACL answer refuses with, `None` when it allows.
fn refusal(outcome: Result<ProxyReply, ProxyFailure>) -> Option<Error> {
    match outcome {
        Ok(ProxyReply::Acl { error }) => error,
        Ok(ProxyReply::Rpc { .. } | ProxyReply::Authenticate { .. }) => Some(Error::new(
            ErrorCode::ProxyError,
            "backend answered an acl check with another reply",
        )),
        Err(ProxyFailure::Timeout) => Some(timeout_error()),
        Err(ProxyFailure::Failed(reason)) => Some(Error::new(ErrorCode::ProxyError, reason)),
    }
}
