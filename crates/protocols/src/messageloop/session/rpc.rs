//! RPC: the publish ACL, then the first matching backend proxy route; without one, per
//! `messageloop.rpc_fallback`, NO_PROXY or the request on the bus's RPC topic with the first reply from the
//! connection's inbox (its name holds 128 random bits, so nobody else can answer into it), timeouts.

use super::*;

impl Session {
    pub(super) fn rpc(&mut self, id: String, request: RpcRequest, now: Now) {
        if request.channel.is_empty() {
            let error = Error::new(ErrorCode::BadRequest, "channel is required");
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        let topic = names::rpc_topic(
            RPC_PROTOCOL,
            [request.channel.as_bytes(), request.method.as_bytes()],
        );
        // The channel's own topic, or the exact RPC topic, must be publishable.
        let channel = match Topic::try_from_dotted(request.channel.as_bytes()) {
            Ok(channel) => channel,
            Err(e) => {
                let error = Error::new(ErrorCode::BadRequest, format!("invalid channel: {e}"));
                return self.reply(id, now, OutboundBody::Error(Box::new(error)));
            }
        };
        if !self.identity_allows_publish(&channel) && !self.identity_allows_publish(&topic) {
            let error = Error::new(
                ErrorCode::PermissionDenied,
                format!("rpc {:?} on {:?} denied", request.method, request.channel),
            );
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        if self.rpcs.len() >= MAX_PENDING_RPCS {
            let error = Error::new(ErrorCode::RateLimited, "too many RPCs waiting for a reply");
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        if let Some(target) = self.context.router.route(&request.channel, &request.method) {
            return self.proxy_rpc(id, request, target, now);
        }
        if self.context.settings.rpc_fallback == RpcFallback::None {
            let error = Error::new(
                ErrorCode::NoProxy,
                format!(
                    "no proxy route for rpc {:?} on {:?}",
                    request.method, request.channel
                ),
            );
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        let inbox = match &self.inbox {
            Some(inbox) => inbox.clone(),
            None => {
                let inbox = self
                    .mailbox
                    .inbox(crate::auth::unguessable_name().as_bytes());
                match self.mailbox.subscribe(Pattern::exact(&inbox)) {
                    Ok(bus_id) => {
                        self.routes.insert(bus_id, Route::Inbox);
                        self.inbox = Some(inbox.clone());
                        inbox
                    }
                    Err(error) => {
                        let error = Error::new(ErrorCode::InternalError, error.to_string());
                        return self.reply(id, now, OutboundBody::Error(Box::new(error)));
                    }
                }
            }
        };
        let correlation = self.next_call_id();
        let mut envelope = bridge::to_envelope(
            topic,
            request.payload,
            &request.headers,
            self.mailbox.owner(),
            now.unix_ms,
        );
        envelope.reply_to = Some(inbox);
        envelope.correlation_id = Some(correlation.clone());
        let outcome = self.context.bus.publish(envelope);
        if let Some(backpressure) = outcome.backpressure {
            self.backpressure = Some(Box::new(backpressure));
        }
        if outcome.delivered == 0 {
            let error = Error::new(
                ErrorCode::NoProxy,
                format!(
                    "no handler for rpc {:?} on {:?}",
                    request.method, request.channel
                ),
            );
            return self.reply(id, now, OutboundBody::Error(Box::new(error)));
        }
        self.rpcs.insert(
            correlation,
            PendingRpc {
                request_id: id,
                deadline: now.at + self.context.settings.rpc_timeout,
            },
        );
    }

    pub(super) fn rpc_reply(&mut self, envelope: &Envelope, now: Now) {
        let Some(rpc) = envelope
            .correlation_id
            .as_ref()
            .and_then(|correlation| self.rpcs.remove(correlation))
        else {
            return;
        };
        let reply = RpcReply {
            request_id: rpc.request_id.clone(),
            payload: payload_from(envelope.content_type.as_deref(), &envelope.payload),
            headers: envelope
                .headers
                .iter()
                .map(|(name, value)| (name.to_owned(), value.clone()))
                .collect(),
            error: None,
        };
        self.reply(rpc.request_id, now, OutboundBody::RpcReply(Box::new(reply)));
    }
}
