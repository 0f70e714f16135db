//! Who a client is and what it may touch: [`Identity`] with its publish and subscribe ACLs on canonical topics,
//! checked at every name a client uses. Beside it, a listener's `[auth]` section (`config`), the authenticator
//! built from it (static tokens, HS256/RS256 JWT, TLS client certificates; `authenticator`), and the token a
//! WebSocket upgrade carries (`upgrade`).

mod authenticator;
mod config;
mod upgrade;

use core_bus::names::INBOX_TOKEN;
use core_bus::{Pattern, Topic};
use serde::{Deserialize, Serialize};

pub use authenticator::{Authenticator, AUTH_REFUSALS};
pub use config::{
    check_anonymous, AnonymousBypass, AuthConfig, AuthConfigError, CertificateIdentity,
    JwtAlgorithm, JwtConfig, StaticToken,
};
pub use upgrade::{upgrade_token, ACCESS_TOKEN};

/// Allowed topics for one operation: every topic (`None` in config) or a list of patterns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Allowed {
    #[default]
    #[serde(skip)]
    Everything,
    Patterns(Vec<Pattern>),
}

/// Why a client was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("credentials required")]
    Missing,
    #[error("invalid credentials")]
    Invalid,
    #[error("invalid token: {0}")]
    Token(String),
}

/// Who a connection is and what it may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    #[serde(default, skip_serializing_if = "is_everything")]
    pub publish: Allowed,
    #[serde(default, skip_serializing_if = "is_everything")]
    pub subscribe: Allowed,
}

fn is_everything(allowed: &Allowed) -> bool {
    matches!(allowed, Allowed::Everything)
}

impl Identity {
    /// An identity allowed everything.
    pub fn trusted(name: impl Into<String>) -> Identity {
        Identity {
            name: name.into(),
            publish: Allowed::Everything,
            subscribe: Allowed::Everything,
        }
    }

    /// A publish to `topic` is allowed when an allowed pattern matches it. A reply into another connection's
    /// inbox (`$inbox.<connection>.<name>`, whose name nobody can write down in advance) is also allowed by
    /// the entry `$inbox`.
    pub fn may_publish(&self, topic: &Topic) -> bool {
        match &self.publish {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => {
                let inbox = is_inbox(topic).then(|| Topic::from_tokens([INBOX_TOKEN]));
                patterns.iter().any(|p| {
                    p.matches(topic) || inbox.as_ref().is_some_and(|inbox| p.matches(inbox))
                })
            }
        }
    }

    /// Whether this identity can reach any topic at all (publish or subscribe).
    pub fn reaches_anything(&self) -> bool {
        let any = |allowed: &Allowed| match allowed {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => !patterns.is_empty(),
        };
        any(&self.publish) || any(&self.subscribe)
    }

    /// A subscription is allowed when one allowed pattern covers every topic the requested pattern can match.
    pub fn may_subscribe(&self, pattern: &Pattern) -> bool {
        match &self.subscribe {
            Allowed::Everything => true,
            Allowed::Patterns(patterns) => patterns.iter().any(|allowed| covers(allowed, pattern)),
        }
    }
}

fn is_inbox(topic: &Topic) -> bool {
    topic.tokens().next() == Some(INBOX_TOKEN)
}

/// A name nobody can guess: 128 random bits as 32 lowercase hex digits (temp queues, reply inboxes).
pub fn unguessable_name() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether every topic matched by `requested` is matched by `allowed`.
pub fn covers(allowed: &Pattern, requested: &Pattern) -> bool {
    requested.is_covered_by(allowed)
}

/// Credentials as a protocol carries them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// STOMP `login`; ignored by token protocols.
    pub login: Option<&'a str>,
    /// STOMP `passcode`, Loom token, MessageLoop Connect token.
    pub secret: Option<&'a str>,
}

#[cfg(test)]
mod tests;
