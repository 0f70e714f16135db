//! MessageLoop's two kinds of failure signal: soft error codes carried in an `error` envelope (reference
//! §3.3) and disconnect codes that end the session (§3.10), with the strings and numbers the SDKs expect.

use std::fmt;

/// `Error.code` of an `error` envelope. Codes a backend proxy sends back are forwarded unchanged as
/// [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AuthRequired,
    AuthError,
    VersionUnsupported,
    BadRequest,
    PermissionDenied,
    PolicyDenied,
    PatternNotRoutable,
    RateLimited,
    NoProxy,
    ProxyError,
    RpcTimeout,
    RecoverFailed,
    RecoverSkipped,
    SurveyDisabled,
    SurveyTooManySubscribers,
    SurveyFailed,
    SurveyAnswerTooLarge,
    InternalError,
    /// gRPC disconnect notice (the stream has no close frame).
    DisconnectError,
    /// G1 spelling of an access-control refusal.
    AclDenied,
    /// G1 spelling of a failed access-control call.
    AclError,
    Other(String),
}

const KNOWN: [(ErrorCode, &str, &str); 21] = [
    (ErrorCode::AuthRequired, "AUTH_REQUIRED", "auth_error"),
    (ErrorCode::AuthError, "AUTH_ERROR", "auth_error"),
    (
        ErrorCode::VersionUnsupported,
        "VERSION_UNSUPPORTED",
        "version_error",
    ),
    (ErrorCode::BadRequest, "BAD_REQUEST", "request_error"),
    (
        ErrorCode::PermissionDenied,
        "PERMISSION_DENIED",
        "acl_error",
    ),
    (ErrorCode::PolicyDenied, "POLICY_DENIED", "policy_error"),
    (
        ErrorCode::PatternNotRoutable,
        "PATTERN_NOT_ROUTABLE",
        "request_error",
    ),
    (ErrorCode::RateLimited, "RATE_LIMITED", "rate_limit"),
    (ErrorCode::NoProxy, "NO_PROXY", "request_error"),
    (ErrorCode::ProxyError, "PROXY_ERROR", "proxy_error"),
    (ErrorCode::RpcTimeout, "RPC_TIMEOUT", "timeout"),
    (ErrorCode::RecoverFailed, "RECOVER_FAILED", "recover_error"),
    (
        ErrorCode::RecoverSkipped,
        "RECOVER_SKIPPED",
        "recover_error",
    ),
    (ErrorCode::SurveyDisabled, "SURVEY_DISABLED", "policy_error"),
    (
        ErrorCode::SurveyTooManySubscribers,
        "SURVEY_TOO_MANY_SUBSCRIBERS",
        "policy_error",
    ),
    (ErrorCode::SurveyFailed, "SURVEY_FAILED", "survey_error"),
    (
        ErrorCode::SurveyAnswerTooLarge,
        "SURVEY_ANSWER_TOO_LARGE",
        "survey_error",
    ),
    (ErrorCode::InternalError, "INTERNAL_ERROR", "server_error"),
    (
        ErrorCode::DisconnectError,
        "DISCONNECT_ERROR",
        "transport_error",
    ),
    (ErrorCode::AclDenied, "ACL_DENIED", "acl_error"),
    (ErrorCode::AclError, "ACL_ERROR", "acl_error"),
];

impl ErrorCode {
    /// The wire string (`"BAD_REQUEST"`).
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(code) => code,
            known => KNOWN
                .iter()
                .find(|(code, _, _)| code == known)
                .map_or("", |(_, name, _)| name),
        }
    }

    /// The `Error.type` the reference server pairs with this code. BAD_REQUEST for an undecodable
    /// frame uses `client_error` instead (see [`crate::messageloop::message::Error::undecodable`]).
    pub fn default_type(&self) -> &'static str {
        KNOWN
            .iter()
            .find(|(code, _, _)| code == self)
            .map_or("", |(_, _, kind)| kind)
    }

    /// Parses a wire string; unknown codes become [`ErrorCode::Other`].
    pub fn parse(code: &str) -> Self {
        KNOWN.iter().find(|(_, name, _)| *name == code).map_or_else(
            || ErrorCode::Other(code.to_owned()),
            |(known, _, _)| known.clone(),
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the server ends a session. Delivered as the WebSocket close status, or on gRPC inside a
/// `DISCONNECT_ERROR` error envelope (`metadata.disconnect_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectCode {
    /// Internal code 0: normal teardown (WebSocket 1000).
    Normal,
    ConnectionClosed,
    InvalidToken,
    BadRequest,
    Stale,
    ForceDisconnect,
    ConnectionLimit,
    ChannelLimit,
    InappropriateProtocol,
    PermissionDenied,
    NotAvailable,
    TooManyErrors,
    IdleTimeout,
    SlowConsumer,
    InternalError,
    UnsupportedVersion,
}

impl DisconnectCode {
    /// How `gatewayd_connections_closed_total{reason}` counts a connection that ends with this code.
    pub fn cause(self) -> crate::CloseCause {
        use crate::CloseCause;
        match self {
            DisconnectCode::Normal | DisconnectCode::ConnectionClosed => CloseCause::Client,
            DisconnectCode::ForceDisconnect => CloseCause::Shutdown,
            DisconnectCode::Stale | DisconnectCode::IdleTimeout => CloseCause::Deadline,
            DisconnectCode::SlowConsumer => CloseCause::SlowConsumer,
            DisconnectCode::InvalidToken
            | DisconnectCode::BadRequest
            | DisconnectCode::ConnectionLimit
            | DisconnectCode::ChannelLimit
            | DisconnectCode::InappropriateProtocol
            | DisconnectCode::PermissionDenied
            | DisconnectCode::NotAvailable
            | DisconnectCode::TooManyErrors
            | DisconnectCode::InternalError
            | DisconnectCode::UnsupportedVersion => CloseCause::ProtocolError,
        }
    }
}

const DISCONNECTS: [(DisconnectCode, u16, &str); 16] = [
    (DisconnectCode::Normal, 0, ""),
    (DisconnectCode::ConnectionClosed, 3000, "connection closed"),
    (DisconnectCode::InvalidToken, 3500, "invalid token"),
    (DisconnectCode::BadRequest, 3501, "bad request"),
    (DisconnectCode::Stale, 3502, "stale"),
    (DisconnectCode::ForceDisconnect, 3503, "force disconnect"),
    (DisconnectCode::ConnectionLimit, 3504, "connection limit"),
    (DisconnectCode::ChannelLimit, 3505, "channel limit"),
    (
        DisconnectCode::InappropriateProtocol,
        3506,
        "inappropriate protocol",
    ),
    (DisconnectCode::PermissionDenied, 3507, "permission denied"),
    (DisconnectCode::NotAvailable, 3508, "not available"),
    (DisconnectCode::TooManyErrors, 3509, "too many errors"),
    (DisconnectCode::IdleTimeout, 3511, "idle timeout"),
    (DisconnectCode::SlowConsumer, 3512, "slow consumer"),
    (DisconnectCode::InternalError, 3513, "internal error"),
    (
        DisconnectCode::UnsupportedVersion,
        3514,
        "unsupported version",
    ),
];

impl DisconnectCode {
    fn entry(self) -> (u16, &'static str) {
        DISCONNECTS
            .iter()
            .find(|(code, _, _)| *code == self)
            .map_or((0, ""), |(_, number, reason)| (*number, reason))
    }

    /// The protocol's number (0 for [`DisconnectCode::Normal`]); this is what gRPC's
    /// `disconnect_code` carries.
    pub fn code(self) -> u16 {
        self.entry().0
    }

    /// Reason text sent with the code.
    pub fn reason(self) -> &'static str {
        self.entry().1
    }

    /// WebSocket close status: the code itself, 0 mapped to 1000.
    pub fn ws_close_code(self) -> u16 {
        match self.code() {
            0 => 1000,
            code => code,
        }
    }

    /// The code for a number (0 or 1000 give [`DisconnectCode::Normal`]).
    pub fn from_code(code: u16) -> Option<Self> {
        if code == 1000 {
            return Some(DisconnectCode::Normal);
        }
        DISCONNECTS
            .iter()
            .find(|(_, number, _)| *number == code)
            .map(|(known, _, _)| *known)
    }
}

impl fmt::Display for DisconnectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_through_their_wire_strings() {
        for (code, name, kind) in KNOWN {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.default_type(), kind);
            assert_eq!(ErrorCode::parse(name), code);
        }
        let forwarded = ErrorCode::parse("BACKEND_SAID_NO");
        assert_eq!(forwarded, ErrorCode::Other("BACKEND_SAID_NO".into()));
        assert_eq!(forwarded.as_str(), "BACKEND_SAID_NO");
        assert_eq!(forwarded.default_type(), "");
    }

    #[test]
    fn disconnect_codes_match_the_reference_table() {
        assert_eq!(DisconnectCode::InvalidToken.code(), 3500);
        assert_eq!(DisconnectCode::InvalidToken.reason(), "invalid token");
        assert_eq!(DisconnectCode::UnsupportedVersion.ws_close_code(), 3514);
        assert_eq!(DisconnectCode::Normal.code(), 0);
        assert_eq!(DisconnectCode::Normal.ws_close_code(), 1000);
        assert_eq!(
            DisconnectCode::from_code(1000),
            Some(DisconnectCode::Normal)
        );
        assert_eq!(DisconnectCode::from_code(3510), None);
        for (code, number, _) in DISCONNECTS {
            assert_eq!(DisconnectCode::from_code(number), Some(code));
        }
    }
}
