//! How gatewayd refuses a Loom stream. Loom has no error frame: a refusal is visible only at the transport.
//!
//! **QUIC** (upstream: FIN with zero bytes on the server's half, stop reading, keep the connection open).
//! gatewayd does the same and also sends STOP_SENDING on the client's half (docs/protocols/loom.md, "Refusals and
//! errors"). Upstream a refused Loom-go producer keeps writing until the ~512 KiB flow-control window fills, then
//! blocks forever; with STOP_SENDING its next write fails, so it reconnects and retries once instead of
//! hanging. Consumers see the same EOF as upstream. The connection is never closed for one bad stream.
//! Application error codes (Loom defines none; 0 is what clients use for a normal close):
//! - [`QUIC_REJECTED`] for a refused hello or authorization. One code for all of them, because upstream never
//!   tells a client why it was refused.
//! - [`QUIC_PROTOCOL_ERROR`] for a framing error after an accepted hello (bad key/chunk length, corrupt varint).
//! - [`QUIC_TOO_LARGE`] for a message over `max_streamed_message_bytes`, as soon as its header declares it or its
//!   body grows past it (upstream discards it silently and goes on; a producer told nothing would believe it
//!   sent), and for a message over `max_message_bytes` in a room without a Loom consumer to cut it through to.
//! - [`QUIC_CONSUMER_GONE`] when the Loom consumer a message was being cut through to went away mid-message.
//!
//! A consumer stream whose cut-through message cannot be finished is reset ([`QUIC_MESSAGE_CUT`] on raw QUIC,
//! `H3_INTERNAL_ERROR` on HTTP/3): Loom clients take a reset stream as an error, never as a whole message.
//!
//! **HTTP/3** (`POST /stream`, bodies always empty): see [`h3_route`] and [`Rejection::h3_status`].

use super::codec::hello::HelloError;
use super::codec::FrameError;

/// QUIC application error code in STOP_SENDING when the hello or authorization is refused.
pub const QUIC_REJECTED: u32 = 0x01;
/// QUIC application error code in STOP_SENDING when a stream breaks Loom framing after its hello.
pub const QUIC_PROTOCOL_ERROR: u32 = 0x02;

/// QUIC application error code in STOP_SENDING when a producer's message is over `max_message_bytes`.
pub const QUIC_TOO_LARGE: u32 = 0x03;

/// QUIC application error code in STOP_SENDING when the consumer of a cut-through message went away mid-message.
pub const QUIC_CONSUMER_GONE: u32 = 0x04;

/// QUIC application error code in RESET_STREAM of a consumer stream whose cut-through message was cut off.
pub const QUIC_MESSAGE_CUT: u32 = 0x05;

/// Application close code when gatewayd shuts down a raw-QUIC connection (0 = normal close, what clients send).
pub const QUIC_SHUTDOWN: u32 = 0x00;
/// ALPN of Loom over raw QUIC (Loom-go ≥ v1.0.1, Loom-net).
pub const ALPN: &[u8] = b"loom/1";
/// ALPN Loom-go v1.0.0 offered; upstream refuses it at the TLS stage, gatewayd accepts it
/// (docs/protocols/loom.md, "Port, ALPNs, TLS").
pub const ALPN_LEGACY: &[u8] = b"loom";
/// ALPN of Loom over HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";
/// The only HTTP/3 endpoint.
pub const H3_PATH: &str = "/stream";

/// Consumer accepted (sent at once, with `Content-Type: application/octet-stream`), or producer body ended
/// cleanly at a message boundary.
pub const H3_OK: u16 = 200;
/// Bad hello or role; producer framing error.
pub const H3_BAD_REQUEST: u16 = 400;
/// Authorization denied.
pub const H3_UNAUTHORIZED: u16 = 401;
/// A consumer over the connection's `max_subscriptions_per_connection` (a gatewayd limit, not upstream's).
pub const H3_TOO_MANY_REQUESTS: u16 = 429;
/// A producer's message is over `max_streamed_message_bytes` (or over `max_message_bytes` with no Loom consumer).
pub const H3_CONTENT_TOO_LARGE: u16 = 413;
/// The consumer a producer's message was being cut through to went away.
pub const H3_SERVICE_UNAVAILABLE: u16 = 503;
/// Any path other than [`H3_PATH`] (Go's mux default).
pub const H3_NOT_FOUND: u16 = 404;
/// [`H3_PATH`] with a method other than POST.
pub const H3_METHOD_NOT_ALLOWED: u16 = 405;
/// Content type of an accepted consumer's response.
pub const H3_CONTENT_TYPE: &str = "application/octet-stream";

/// Checks an HTTP/3 request line before any body is read: `Err(status)` to answer with an empty body.
/// Headers are not looked at (upstream ignores them, Content-Type included).
pub fn h3_route(method: &str, path: &str) -> Result<(), u16> {
    if path != H3_PATH {
        Err(H3_NOT_FOUND)
    } else if method != "POST" {
        Err(H3_METHOD_NOT_ALLOWED)
    } else {
        Ok(())
    }
}

/// Why a stream is being refused or cut off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Hello(#[from] HelloError),
    /// Authorization denied. The reason stays in logs; it is never sent.
    #[error("authorization denied")]
    Unauthorized,
    #[error(transparent)]
    Protocol(#[from] FrameError),
    /// The connection already has `max_subscriptions_per_connection` consumer streams.
    #[error("too many consumer streams on this connection")]
    TooManyConsumers,
    /// A producer's message is over the limit that applies to it (`max_streamed_message_bytes`, or
    /// `max_message_bytes` when there is no Loom consumer to cut it through to).
    #[error("message over {limit} bytes")]
    TooLarge { limit: u64 },
    /// The consumer a message was being cut through to went away before its end.
    #[error("the consumer of a cut-through message went away")]
    ConsumerGone,
}

impl Rejection {
    /// HTTP/3 status to answer with.
    pub const fn h3_status(&self) -> u16 {
        match self {
            Self::Hello(_) | Self::Protocol(_) => H3_BAD_REQUEST,
            Self::Unauthorized => H3_UNAUTHORIZED,
            Self::TooManyConsumers => H3_TOO_MANY_REQUESTS,
            Self::TooLarge { .. } => H3_CONTENT_TOO_LARGE,
            Self::ConsumerGone => H3_SERVICE_UNAVAILABLE,
        }
    }

    /// QUIC application error code for STOP_SENDING (sent together with a zero-byte FIN of our half).
    pub const fn quic_code(&self) -> u32 {
        match self {
            Self::Hello(_) | Self::Unauthorized | Self::TooManyConsumers => QUIC_REJECTED,
            Self::Protocol(_) => QUIC_PROTOCOL_ERROR,
            Self::TooLarge { .. } => QUIC_TOO_LARGE,
            Self::ConsumerGone => QUIC_CONSUMER_GONE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::codec::varint::VarintError;

    #[test]
    fn h3_routing() {
        assert_eq!(h3_route("POST", "/stream"), Ok(()));
        assert_eq!(h3_route("GET", "/stream"), Err(405));
        assert_eq!(h3_route("PUT", "/stream"), Err(405));
        assert_eq!(h3_route("POST", "/"), Err(404));
        assert_eq!(h3_route("POST", "/stream/"), Err(404));
    }

    #[test]
    fn status_and_code_mapping() {
        let cases = [
            (Rejection::Hello(HelloError::BadMagic), 400, QUIC_REJECTED),
            (
                Rejection::Hello(HelloError::BadVersion(3)),
                400,
                QUIC_REJECTED,
            ),
            (
                Rejection::Hello(HelloError::BadRole(b'X')),
                400,
                QUIC_REJECTED,
            ),
            (Rejection::Hello(HelloError::Truncated), 400, QUIC_REJECTED),
            (Rejection::Unauthorized, 401, QUIC_REJECTED),
            (Rejection::TooManyConsumers, 429, QUIC_REJECTED),
            (
                Rejection::Protocol(FrameError::EmptyKey),
                400,
                QUIC_PROTOCOL_ERROR,
            ),
            (
                Rejection::Protocol(FrameError::Varint(VarintError::TooLarge)),
                400,
                QUIC_PROTOCOL_ERROR,
            ),
            (Rejection::TooLarge { limit: 1 }, 413, QUIC_TOO_LARGE),
            (Rejection::ConsumerGone, 503, QUIC_CONSUMER_GONE),
        ];
        for (rejection, status, code) in cases {
            assert_eq!(rejection.h3_status(), status, "{rejection:?}");
            assert_eq!(rejection.quic_code(), code, "{rejection:?}");
        }
        assert_ne!(QUIC_REJECTED, 0);
        assert_ne!(QUIC_PROTOCOL_ERROR, QUIC_REJECTED);
    }
}
