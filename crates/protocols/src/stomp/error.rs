//! [`StompError`]: every way a STOMP connection fails (docs/protocols/stomp.md, "Errors"), and the
//! ERROR frame each one is answered with.
//!
//! gatewayd closes the connection after every one of them (ERROR, flush, shut down
//! the write side, drain input briefly, close). [`StompError::to_frame`] builds the ERROR frame:
//! a short `message` header, `content-type:text/plain`, a body that explains, `receipt-id` when
//! the culprit frame asked for a receipt, and `version` on a version mismatch. A few failures
//! close without an ERROR frame; `to_frame` returns `None` for them.

use std::borrow::Cow;

use bytes::Bytes;

use super::codec::frame::{header, Command, Frame};
use super::codec::parser::DecodeError;
use super::limits::Limit;
use super::transaction::TxLimit;

/// Versions listed in the `version` header of a version-mismatch ERROR.
pub const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StompError {
    /// The byte stream broke the grammar or a frame limit.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A server frame (CONNECTED, MESSAGE, RECEIPT, ERROR) sent by a client.
    #[error("{0} is a server frame")]
    BadCommand(Command),
    /// Any frame but CONNECT/STOMP before the session is connected.
    #[error("{command} before CONNECT")]
    NotConnected { command: Command },
    /// CONNECT/STOMP on a connected session.
    #[error("{command} on a session that is already connected")]
    AlreadyConnected { command: Command },
    #[error("no common version in accept-version {offered:?}; supported: {SUPPORTED_VERSIONS}")]
    VersionMismatch { offered: String },
    #[error("Access refused for user {login:?}")]
    AccessRefused { login: String },
    #[error("heart-beat {value:?} is not two non-negative integers")]
    BadHeartBeat { value: String },
    #[error("{command} frame without the required '{header}' header")]
    MissingHeader {
        command: Command,
        header: &'static str,
    },
    #[error("{command} header '{header}': {reason}")]
    InvalidHeader {
        command: Command,
        header: &'static str,
        reason: &'static str,
    },
    #[error(
        "{destination:?} is not a valid destination. Valid destination types are: \
         /topic/, /queue/, /temp-queue/, /reply-queue/, /exchange/amq.topic/, /amq/queue/"
    )]
    UnknownDestination { destination: String },
    #[error("destination {destination:?}: {reason}")]
    InvalidDestination {
        destination: String,
        reason: &'static str,
    },
    #[error("the 'selector' header is not supported")]
    SelectorNotSupported,
    #[error("subscription id {id:?} is already in use on this connection")]
    DuplicateSubscription { id: String },
    /// An ACK/NACK naming an id this connection never delivered.
    #[error("no message with ack id {id:?} was delivered on this connection")]
    UnknownMessage { id: String },
    #[error("transaction {id:?} is already open")]
    DuplicateTransaction { id: String },
    #[error("transaction {id:?} is not open")]
    UnknownTransaction { id: String },
    #[error("{limit} (limit {max})")]
    TransactionLimit { limit: TxLimit, max: usize },
    /// The client does not drain its socket and its outbound queue passed the hard limit.
    #[error("the client does not read its messages fast enough")]
    SlowConsumer,
    /// SUBSCRIBE past the listener's `max_subscriptions_per_connection`.
    #[error("this connection already has {max} subscriptions (the limit)")]
    TooManySubscriptions { max: usize },
    /// A new durable subscription past `[stomp] max_durable_subscriptions` (all listeners together).
    #[error("gatewayd already keeps {max} durable subscriptions (the limit)")]
    TooManyDurableSubscriptions { max: usize },
    /// The identity's ACL does not allow publishing to or subscribing on this destination.
    #[error("{operation} on {destination:?} is not allowed for this login")]
    Forbidden {
        operation: &'static str,
        destination: String,
    },
    /// The daemon is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// No CONNECT in time: closed without ERROR.
    #[error("no CONNECT within the login timeout")]
    LoginTimeout,
    /// Nothing received for the negotiated grace period: closed without ERROR.
    #[error("no heart-beat from the client within the negotiated period")]
    HeartBeatTimeout,
}

impl StompError {
    /// The `message` header of the ERROR frame. `None` when the connection closes silently.
    pub fn message(&self) -> Option<Cow<'static, str>> {
        let text = match self {
            StompError::Decode(e) => match e {
                DecodeError::LimitExceeded { limit, .. } => limit.message(),
                DecodeError::UnknownCommand(_) => "Bad command",
                DecodeError::TlsHandshake => return None,
                DecodeError::InvalidContentLength(_) => "Invalid content-length",
                DecodeError::MissingNul => "Missing NUL after body",
                DecodeError::HeaderWithoutColon | DecodeError::EmptyHeaderName => "Invalid header",
                DecodeError::InvalidEscape => "Invalid escape",
                DecodeError::BareCr => "Malformed frame",
            },
            StompError::BadCommand(_) => "Bad command",
            StompError::NotConnected { .. } => "Must CONNECT first",
            StompError::AlreadyConnected { .. } => "Already connected",
            StompError::VersionMismatch { .. } => "Version mismatch",
            StompError::AccessRefused { .. } => "Bad CONNECT",
            StompError::BadHeartBeat { .. } => "Invalid heart-beat",
            StompError::MissingHeader { header, .. } => {
                return Some(Cow::Owned(format!("Missing {header}")))
            }
            StompError::InvalidHeader { .. } => "Invalid header",
            StompError::UnknownDestination { .. } => "Unknown destination",
            StompError::InvalidDestination { .. } => "Invalid destination",
            StompError::SelectorNotSupported => "Selector not supported",
            StompError::DuplicateSubscription { .. } => "Duplicated subscription identifier",
            StompError::UnknownMessage { .. } => "Message not found",
            StompError::DuplicateTransaction { .. }
            | StompError::UnknownTransaction { .. }
            | StompError::TransactionLimit { .. } => "Bad transaction",
            StompError::SlowConsumer => "Slow consumer",
            StompError::TooManySubscriptions { .. } => "Too many subscriptions",
            StompError::TooManyDurableSubscriptions { .. } => "Too many durable subscriptions",
            StompError::Forbidden { .. } => "Access refused",
            StompError::ShuttingDown => "server shutting down",
            StompError::LoginTimeout | StompError::HeartBeatTimeout => return None,
        };
        Some(Cow::Borrowed(text))
    }

    /// The limit a frame broke, if that is what this error is.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            StompError::Decode(DecodeError::LimitExceeded { limit, .. }) => Some(*limit),
            _ => None,
        }
    }

    /// The ERROR frame to send before closing, or `None` to close without one.
    /// `receipt_id` is the culprit frame's `receipt` header ([`Frame::receipt_request`]).
    pub fn to_frame(&self, receipt_id: Option<Bytes>) -> Option<Frame> {
        let message = self.message()?;
        let mut frame = Frame::new(Command::Error)
            .with_header(header::MESSAGE, message.into_owned())
            .with_header(header::CONTENT_TYPE, "text/plain");
        if matches!(self, StompError::VersionMismatch { .. }) {
            frame.headers.push(header::VERSION, SUPPORTED_VERSIONS);
        }
        if let Some(id) = receipt_id {
            frame.headers.push(header::RECEIPT_ID, id);
        }
        Some(frame.with_body(format!("{self}\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(frame: &'a Frame, name: &str) -> Option<&'a [u8]> {
        frame.header(name)
    }

    #[test]
    fn error_frame_shape() {
        let e = StompError::UnknownDestination {
            destination: "/bogus/x".into(),
        };
        let frame = e.to_frame(Some(Bytes::from_static(b"rcpt-1"))).unwrap();
        assert_eq!(frame.command, Command::Error);
        let names: Vec<_> = frame.headers.iter().map(|h| h.name).collect();
        assert_eq!(names, [&b"message"[..], b"content-type", b"receipt-id"]);
        assert_eq!(value(&frame, "message"), Some(&b"Unknown destination"[..]));
        assert_eq!(value(&frame, "content-type"), Some(&b"text/plain"[..]));
        assert_eq!(value(&frame, "receipt-id"), Some(&b"rcpt-1"[..]));
        let body = std::str::from_utf8(&frame.body).unwrap();
        assert!(body.starts_with("\"/bogus/x\" is not a valid destination."));
        assert!(body.ends_with('\n'));
    }

    #[test]
    fn no_receipt_id_unless_asked() {
        let frame = StompError::SlowConsumer.to_frame(None).unwrap();
        assert!(value(&frame, "receipt-id").is_none());
    }

    #[test]
    fn version_mismatch_lists_supported_versions() {
        let frame = StompError::VersionMismatch {
            offered: "2.0".into(),
        }
        .to_frame(None)
        .unwrap();
        assert_eq!(value(&frame, "message"), Some(&b"Version mismatch"[..]));
        assert_eq!(value(&frame, "version"), Some(&b"1.0,1.1,1.2"[..]));
        assert_eq!(
            &frame.body[..],
            b"no common version in accept-version \"2.0\"; supported: 1.0,1.1,1.2\n"
        );
    }

    #[test]
    fn limit_errors_name_the_limit() {
        let e = StompError::from(DecodeError::LimitExceeded {
            limit: Limit::HeaderCount,
            max: 100,
        });
        assert_eq!(e.limit(), Some(Limit::HeaderCount));
        let frame = e.to_frame(None).unwrap();
        assert_eq!(value(&frame, "message"), Some(&b"Too many headers"[..]));
        assert_eq!(&frame.body[..], b"Too many headers (limit 100)\n");
    }

    #[test]
    fn silent_closes() {
        for e in [
            StompError::Decode(DecodeError::TlsHandshake),
            StompError::LoginTimeout,
            StompError::HeartBeatTimeout,
        ] {
            assert_eq!(e.to_frame(None), None, "{e:?}");
        }
    }

    #[test]
    fn missing_header_message_names_the_header() {
        let e = StompError::MissingHeader {
            command: Command::Send,
            header: "destination",
        };
        assert_eq!(e.message().as_deref(), Some("Missing destination"));
    }

    #[test]
    fn access_refused_matches_rabbitmq_wording() {
        let e = StompError::AccessRefused {
            login: "guest".into(),
        };
        let frame = e.to_frame(None).unwrap();
        assert_eq!(value(&frame, "message"), Some(&b"Bad CONNECT"[..]));
        assert_eq!(&frame.body[..], b"Access refused for user \"guest\"\n");
    }
}
