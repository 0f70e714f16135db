//! What a session asks of a backend and what comes back, free of any transport: the session queues
//! [`ProxyCall`]s, the listener runs them and feeds each [`ProxyAnswer`] back into the session.

use std::time::Duration;

use super::super::message::{Error, Headers, Payload};

/// One call for the listener to make.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyCall {
    /// Unique within the session; the answer carries it back.
    pub id: String,
    /// Index of the backend in `messageloop.proxy`.
    pub proxy: usize,
    /// Time the call may take; the session's own deadline is the same.
    pub timeout: Duration,
    pub request: ProxyRequest,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProxyRequest {
    Rpc(RpcCall),
    Authenticate(AuthenticateCall),
    /// Route `(channel, "subscribe")`.
    SubscribeAcl(AclCall),
    /// Route `(channel, "publish")`.
    PublishAcl(AclCall),
}

/// A client `rpc_request`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    /// The client's envelope id.
    pub id: String,
    pub channel: String,
    pub method: String,
    pub payload: Payload,
    pub headers: Headers,
}

/// A Connect token to check; the listener adds the client's address.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthenticateCall {
    pub client_id: String,
    pub token: String,
    pub client_type: String,
    /// The server-generated session id.
    pub session_id: String,
}

/// A subscribe or publish to check, after gatewayd's own ACL allowed it.
#[derive(Debug, Clone, PartialEq)]
pub struct AclCall {
    pub channel: String,
    /// The Subscription's or Publish's own token.
    pub token: String,
    pub user_id: String,
    pub session_id: String,
}

/// The outcome of the call `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyAnswer {
    pub id: String,
    pub outcome: Result<ProxyReply, ProxyFailure>,
}

/// What the backend answered.
#[derive(Debug, Clone, PartialEq)]
pub enum ProxyReply {
    Rpc {
        payload: Payload,
        headers: Headers,
        /// The backend's own error, forwarded unchanged.
        error: Option<Error>,
    },
    Authenticate {
        user_id: String,
        /// The backend's own error, forwarded unchanged.
        error: Option<Error>,
    },
    /// A subscribe or publish ACL verdict: allowed unless `error` is set.
    Acl {
        /// The backend's own error, forwarded unchanged.
        error: Option<Error>,
    },
}

/// Why there is no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The call took longer than its timeout.
    Timeout,
    /// Connection refused, non-200 status, oversized or unreadable body, …
    Failed(String),
}
