//! What the proxy responder sends a backend for a bus request, and the reply it publishes to the request's
//! `reply_to`: the backend's payload (content type from the payload) and metadata as headers; an error (the
//! backend's own, a failed or timed-out call, too many calls at once) as a `text/plain` reply whose
//! [`ERROR_HEADER`] names the code and whose body is the message.

use bytes::Bytes;
use core_bus::{Envelope, Origin, Topic};

use super::super::call::{ProxyFailure, ProxyReply, RpcCall};
use crate::messageloop::bridge::{content_type, payload_from};
use crate::messageloop::codes::ErrorCode;
use crate::messageloop::message::Error;

/// The reply header that marks an error reply and carries its code (`PROXY_ERROR`, `RPC_TIMEOUT`, the
/// backend's own code, …).
pub const ERROR_HEADER: &str = "rpc-error";

/// The backend call for `request` on `channel` with `method`: payload variant from its content type,
/// headers as metadata, the request's message id as the call id.
pub fn call_of(request: &Envelope, channel: String, method: String) -> RpcCall {
    RpcCall {
        id: request.id.to_string(),
        channel,
        method,
        payload: payload_from(request.content_type.as_deref(), &request.payload),
        headers: request
            .headers_with_trace()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    }
}

/// The reply to publish on `reply_to` for what the backend answered (or why it did not).
pub fn answer(
    reply_to: Topic,
    correlation_id: Option<String>,
    outcome: Result<ProxyReply, ProxyFailure>,
    origin: Origin,
) -> Envelope {
    let error = match outcome {
        Ok(ProxyReply::Rpc {
            error: Some(error), ..
        }) => error,
        Ok(ProxyReply::Rpc {
            payload, headers, ..
        }) => {
            let mut envelope = Envelope::new(reply_to, payload.to_bytes(), origin);
            envelope.content_type = content_type(&payload);
            for (name, value) in headers {
                envelope.headers.push(name, value);
            }
            envelope.adopt_trace_headers();
            envelope.correlation_id = correlation_id;
            return envelope;
        }
        Ok(ProxyReply::Authenticate { .. } | ProxyReply::Acl { .. }) => Error::new(
            ErrorCode::ProxyError,
            "backend answered an rpc with another call's reply",
        ),
        Err(ProxyFailure::Timeout) => Error::new(ErrorCode::RpcTimeout, "rpc timeout"),
        Err(ProxyFailure::Failed(reason)) => Error::new(ErrorCode::ProxyError, reason),
    };
    error_reply(reply_to, correlation_id, &error, origin)
}

/// An error reply: [`ERROR_HEADER`] = the code, the message as a `text/plain` body.
pub fn error_reply(
    reply_to: Topic,
    correlation_id: Option<String>,
    error: &Error,
    origin: Origin,
) -> Envelope {
    let mut envelope = Envelope::new(reply_to, error.message.clone(), origin);
    envelope.content_type = Some("text/plain".into());
    envelope.headers.push(
        ERROR_HEADER,
        Bytes::copy_from_slice(error.code.as_str().as_bytes()),
    );
    envelope.correlation_id = correlation_id;
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messageloop::message::Payload;
    use core_bus::{ConnectionId, Protocol};

    fn origin() -> Origin {
        Origin {
            protocol: Protocol::Internal,
            connection: ConnectionId(1),
        }
    }

    #[test]
    fn answers_carry_payload_headers_and_correlation_errors_a_header() {
        let inbox = Topic::parse("$inbox.1.x").unwrap();
        let ok = answer(
            inbox.clone(),
            Some("c-1".into()),
            Ok(ProxyReply::Rpc {
                payload: Payload::text("", "hi"),
                headers: vec![("k".into(), Bytes::from_static(b"v"))],
                error: None,
            }),
            origin(),
        );
        assert_eq!(ok.payload, Bytes::from_static(b"hi"));
        assert_eq!(ok.content_type.as_deref(), Some("text/plain"));
        assert_eq!(ok.headers.get_str("k"), Some("v"));
        assert_eq!(ok.correlation_id.as_deref(), Some("c-1"));
        assert_eq!(ok.headers.get(ERROR_HEADER), None);

        let backend = Error::new(ErrorCode::Other("ORDER_MISSING".into()), "no such order");
        let failed = answer(
            inbox.clone(),
            Some("c-2".into()),
            Ok(ProxyReply::Rpc {
                payload: Payload::text("", ""),
                headers: Vec::new(),
                error: Some(backend),
            }),
            origin(),
        );
        assert_eq!(failed.headers.get_str(ERROR_HEADER), Some("ORDER_MISSING"));
        assert_eq!(failed.payload, Bytes::from_static(b"no such order"));
        let timeout = answer(inbox, None, Err(ProxyFailure::Timeout), origin());
        assert_eq!(timeout.headers.get_str(ERROR_HEADER), Some("RPC_TIMEOUT"));
    }
}
