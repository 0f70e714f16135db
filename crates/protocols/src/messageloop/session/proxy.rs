//! Backend proxy calls: an RPC a route sends to a backend, the Connect token the `$authenticate` backend
//! checks, and what their answers (or their absence by the deadline) turn into.

use super::*;
use crate::messageloop::proxy::call::{
    AuthenticateCall, ProxyFailure, ProxyReply, ProxyRequest, RpcCall,
};
use crate::messageloop::proxy::hooks::Hook;
use crate::messageloop::proxy::route::Target;

impl Session {
    /// Takes the backend calls to make, in order; each answer goes to [`Session::on_proxy_answer`].
    pub fn take_proxy_calls(&mut self) -> Vec<ProxyCall> {
        std::mem::take(&mut self.proxy_calls)
    }

    /// A Connect token is with the backend: read nothing more from the client until it answered.
    pub fn authenticating(&self) -> bool {
        matches!(self.state, State::Authenticating(_))
    }

    pub(super) fn next_call_id(&mut self) -> String {
        let id = format!("{}-{}", self.session_id, self.next_rpc);
        self.next_rpc += 1;
        id
    }

    /// Sends an RPC to the backend `target`; its answer or the deadline replies to the envelope `id`.
    pub(super) fn proxy_rpc(&mut self, id: String, request: RpcRequest, target: Target, now: Now) {
        let call = self.next_call_id();
        self.rpcs.insert(
            call.clone(),
            PendingRpc {
                request_id: id.clone(),
                deadline: now.at + target.timeout,
            },
        );
        self.proxy_calls.push(ProxyCall {
            id: call,
            proxy: target.proxy,
            timeout: target.timeout,
            request: ProxyRequest::Rpc(RpcCall {
                id,
                channel: request.channel,
                method: request.method,
                payload: request.payload,
                headers: request.headers,
            }),
        });
    }

    /// Hands the Connect token to the backend `target` and waits for its answer.
    pub(super) fn authenticate_by_proxy(
        &mut self,
        id: String,
        connect: Connect,
        target: Target,
        now: Now,
    ) {
        let call = self.next_call_id();
        self.proxy_calls.push(ProxyCall {
            id: call.clone(),
            proxy: target.proxy,
            timeout: target.timeout,
            request: ProxyRequest::Authenticate(AuthenticateCall {
                client_id: connect.client_id.clone(),
                token: connect.token.clone(),
                client_type: connect.client_type.clone(),
                session_id: self.session_id.clone(),
            }),
        });
        self.state = State::Authenticating(Box::new(Authenticating {
            id,
            connect,
            call,
            deadline: now.at + target.timeout,
        }));
    }

    /// What a backend answered (or why it did not).
    pub fn on_proxy_answer(&mut self, answer: ProxyAnswer, now: Now) {
        if self.disconnect.is_some() {
            return;
        }
        if matches!(&self.state, State::Authenticating(authenticating) if authenticating.call == answer.id)
        {
            return self.authenticated(answer.outcome, now);
        }
        if self.awaits_acl(&answer.id) {
            return self.on_acl_answer(&answer.id, answer.outcome, now);
        }
        let Some(rpc) = self.rpcs.remove(&answer.id) else {
            return;
        };
        let body = match answer.outcome {
            Ok(ProxyReply::Rpc {
                error: Some(error), ..
            }) => OutboundBody::Error(Box::new(error)),
            Ok(ProxyReply::Rpc {
                payload, headers, ..
            }) => OutboundBody::RpcReply(Box::new(RpcReply {
                request_id: rpc.request_id.clone(),
                payload,
                headers,
                error: None,
            })),
            Ok(ProxyReply::Authenticate { .. } | ProxyReply::Acl { .. }) => {
                OutboundBody::Error(Box::new(Error::new(
                    ErrorCode::ProxyError,
                    "backend answered an rpc with another reply",
                )))
            }
            Err(ProxyFailure::Timeout) => {
                OutboundBody::Error(Box::new(Error::new(ErrorCode::RpcTimeout, "rpc timeout")))
            }
            Err(ProxyFailure::Failed(reason)) => {
                OutboundBody::Error(Box::new(Error::new(ErrorCode::ProxyError, reason)))
            }
        };
        self.reply(rpc.request_id, now, body);
    }

    fn authenticated(&mut self, outcome: Result<ProxyReply, ProxyFailure>, now: Now) {
        let State::Authenticating(authenticating) =
            std::mem::replace(&mut self.state, State::Connecting)
        else {
            return;
        };
        let Authenticating { id, connect, .. } = *authenticating;
        let refusal = match outcome {
            Ok(ProxyReply::Authenticate {
                user_id,
                error: None,
            }) => {
                let hook = Hook::Connected {
                    session_id: self.session_id.clone(),
                    username: connect.client_id.clone(),
                };
                self.fire_hook(self.context.router.authenticator(), hook);
                return self.connected(id, connect, Identity::trusted(user_id), now);
            }
            Ok(ProxyReply::Authenticate {
                error: Some(error), ..
            }) => error,
            Ok(ProxyReply::Rpc { .. } | ProxyReply::Acl { .. }) => Error::new(
                ErrorCode::AuthError,
                "backend answered authentication with another reply",
            ),
            Err(ProxyFailure::Timeout) => {
                Error::new(ErrorCode::AuthError, "authentication backend timed out")
            }
            Err(ProxyFailure::Failed(reason)) => Error::new(ErrorCode::AuthError, reason),
        };
        metrics::counter!(crate::auth::AUTH_REFUSALS, "protocol" => "messageloop", "reason" => "proxy")
            .increment(1);
        self.reply(id, now, OutboundBody::Error(Box::new(refusal)));
        self.close(DisconnectCode::InvalidToken);
    }

    pub(super) fn authentication_timed_out(&mut self, now: Now) {
        self.authenticated(Err(ProxyFailure::Timeout), now);
    }
}
