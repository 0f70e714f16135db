//! Conversions between the proxy calls of [`crate::messageloop::proxy::call`] and the
//! `messageloop.proxy.v2` messages sent to backends.

use super::g2::{error_in, metadata_in, metadata_out, payload_in, payload_out};
use crate::messageloop::pb::messageloop::proxy::v2 as pb;
use crate::messageloop::pb::messageloop::shared::v2 as shared;
use crate::messageloop::proxy::call::{AclCall, AuthenticateCall, ProxyReply, RpcCall};
use crate::messageloop::proxy::hooks::Hook;

pub fn rpc_request(call: &RpcCall) -> pb::RpcRequest {
    pb::RpcRequest {
        id: call.id.clone(),
        channel: call.channel.clone(),
        method: call.method.clone(),
        payload: payload_out(&call.payload),
        metadata: metadata_out(&call.headers),
    }
}

pub fn rpc_reply(response: pb::RpcResponse) -> ProxyReply {
    ProxyReply::Rpc {
        payload: payload_in(response.payload),
        headers: metadata_in(response.metadata),
        error: response.error.map(error_in),
    }
}

pub fn authenticate_request(
    call: &AuthenticateCall,
    remote_addr: String,
) -> pb::AuthenticateRequest {
    pb::AuthenticateRequest {
        client_id: call.client_id.clone(),
        token: call.token.clone(),
        client_type: call.client_type.clone(),
        session_id: call.session_id.clone(),
        remote_addr,
    }
}

pub fn authenticate_reply(response: pb::AuthenticateResponse) -> ProxyReply {
    ProxyReply::Authenticate {
        user_id: response.user_info.map(|user| user.id).unwrap_or_default(),
        error: response.error.map(error_in),
    }
}

pub fn subscribe_acl_request(call: &AclCall) -> pb::SubscribeAclRequest {
    pb::SubscribeAclRequest {
        channel: call.channel.clone(),
        token: call.token.clone(),
        user_id: call.user_id.clone(),
        session_id: call.session_id.clone(),
    }
}

pub fn publish_acl_request(call: &AclCall) -> pb::PublishAclRequest {
    pb::PublishAclRequest {
        channel: call.channel.clone(),
        token: call.token.clone(),
        user_id: call.user_id.clone(),
        session_id: call.session_id.clone(),
    }
}

pub fn acl_reply(error: Option<shared::Error>) -> ProxyReply {
    ProxyReply::Acl {
        error: error.map(error_in),
    }
}

/// A hook as the request message of its method.
pub enum HookRequest {
    Connected(pb::OnConnectedRequest),
    Subscribed(pb::OnSubscribedRequest),
    Unsubscribed(pb::OnUnsubscribedRequest),
    Disconnected(pb::OnDisconnectedRequest),
}

pub fn hook_request(hook: &Hook) -> HookRequest {
    match hook.clone() {
        Hook::Connected {
            session_id,
            username,
        } => HookRequest::Connected(pb::OnConnectedRequest {
            session_id,
            username,
        }),
        Hook::Subscribed {
            session_id,
            channel,
            username,
        } => HookRequest::Subscribed(pb::OnSubscribedRequest {
            session_id,
            channel,
            username,
        }),
        Hook::Unsubscribed {
            session_id,
            channel,
            username,
        } => HookRequest::Unsubscribed(pb::OnUnsubscribedRequest {
            session_id,
            channel,
            username,
        }),
        Hook::Disconnected {
            session_id,
            username,
        } => HookRequest::Disconnected(pb::OnDisconnectedRequest {
            session_id,
            username,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messageloop::codes::ErrorCode;
    use crate::messageloop::message::{Error, Payload};
    use crate::messageloop::wire::g2::error_out;

    #[test]
    fn rpc_round_trip_keeps_payload_metadata_and_error() {
        let call = RpcCall {
            id: "7".into(),
            channel: "orders".into(),
            method: "get".into(),
            payload: Payload::text("text/plain", "hi"),
            headers: vec![("k".into(), bytes::Bytes::from_static(b"v"))],
        };
        let request = rpc_request(&call);
        let response = pb::RpcResponse {
            id: request.id,
            payload: request.payload,
            metadata: request.metadata,
            error: Some(error_out(&Error::new(
                ErrorCode::Other("NOPE".into()),
                "no",
            ))),
        };
        let ProxyReply::Rpc {
            payload,
            headers,
            error,
        } = rpc_reply(response)
        else {
            panic!("not an rpc reply");
        };
        assert_eq!(payload, call.payload);
        assert_eq!(headers, call.headers);
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::Other("NOPE".into())));
    }
}
