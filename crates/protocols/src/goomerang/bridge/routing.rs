//! Where Goomerang messages that name no topic go, and what kind foreign messages arrive as.
//!
//! - [`SendRoutes`]: a plain `Send(msg)` is meant for the server's handler of its kind; gatewayd publishes it on a
//!   topic derived from the kind, `<send_topic_prefix>.<kind>` (the kind's dots separate tokens, so
//!   `goomerang.send.acme.v1.Order`), or on the topic `[goomerang.send_topics]` names for that kind. A handler
//!   of any protocol subscribes to that topic.
//! - [`ForeignKinds`]: `[[goomerang.foreign_kinds]]` rules (a topic pattern and a kind, first match wins) say
//!   that a foreign message (one without a `goomerang-kind` header) on a matching topic already is the
//!   protobuf encoding of that kind: it is delivered as that kind, body unchanged, instead of wrapped.

use std::collections::BTreeMap;

use core_bus::{Pattern, Topic};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::WrapperKind;

/// The default `send_topic_prefix`.
pub const DEFAULT_SEND_PREFIX: &str = "goomerang.send";
/// Most `[[goomerang.foreign_kinds]]` rules: each delivery of a foreign message tries them in order.
pub const MAX_FOREIGN_KINDS: usize = 256;

/// A routing setting that cannot be used; [`RoutingError::key`] names its key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoutingError {
    #[error("{0:?} must be a non-empty topic name outside the internal `$` namespace")]
    Prefix(String),
    #[error("{0:?} is not a protobuf message full name")]
    SendKind(String),
    #[error("{topic:?} must be a non-empty topic name outside the internal `$` namespace")]
    SendTopic { kind: String, topic: String },
    #[error("{0:?} is not a topic pattern")]
    Pattern(String),
    #[error("{0:?} is not a protobuf message full name")]
    ForeignKind(String),
    #[error("at most {MAX_FOREIGN_KINDS} rules")]
    TooManyRules,
}

impl RoutingError {
    /// The key of the refused value.
    pub fn key(&self) -> String {
        match self {
            RoutingError::Prefix(_) => "goomerang.send_topic_prefix".to_owned(),
            RoutingError::SendKind(_) => "goomerang.send_topics".to_owned(),
            RoutingError::SendTopic { kind, .. } => format!("goomerang.send_topics.{kind:?}"),
            RoutingError::Pattern(_)
            | RoutingError::ForeignKind(_)
            | RoutingError::TooManyRules => "goomerang.foreign_kinds".to_owned(),
        }
    }
}

impl From<RoutingError> for crate::config::ConfigError {
    fn from(error: RoutingError) -> Self {
        crate::config::ConfigError::new(error.key(), error)
    }
}

/// One `[[goomerang.foreign_kinds]]` rule as written in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKindRule {
    /// A canonical topic pattern (`orders.#`, `sensors.*.raw`; `docs/topics.md`).
    pub topic: String,
    /// The full name of the protobuf message the bodies on those topics are encoded as.
    pub kind: String,
}

/// A dotted name usable as a topic a Goomerang client could also publish on.
fn plain_topic(name: &str) -> Option<Topic> {
    (!name.is_empty() && !name.starts_with('$')).then(|| Topic::from_dotted(name.as_bytes()))
}

/// Which topic each `Send(msg)` is published on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRoutes {
    prefix: Topic,
    overrides: BTreeMap<String, Topic>,
}

impl Default for SendRoutes {
    fn default() -> Self {
        SendRoutes {
            prefix: Topic::from_dotted(DEFAULT_SEND_PREFIX.as_bytes()),
            overrides: BTreeMap::new(),
        }
    }
}

impl SendRoutes {
    /// Routes from `send_topic_prefix` and `send_topics` (kind → topic name).
    pub fn new(prefix: &str, overrides: &BTreeMap<String, String>) -> Result<Self, RoutingError> {
        let prefix = plain_topic(prefix).ok_or_else(|| RoutingError::Prefix(prefix.to_owned()))?;
        let overrides = overrides
            .iter()
            .map(|(kind, topic)| {
                WrapperKind::new(kind.as_str())
                    .map_err(|_| RoutingError::SendKind(kind.clone()))?;
                let target = plain_topic(topic).ok_or_else(|| RoutingError::SendTopic {
                    kind: kind.clone(),
                    topic: topic.clone(),
                })?;
                Ok((kind.clone(), target))
            })
            .collect::<Result<_, RoutingError>>()?;
        Ok(SendRoutes { prefix, overrides })
    }

    /// The topic a `Send` of `kind` goes to.
    pub fn topic(&self, kind: &str) -> Topic {
        match self.overrides.get(kind) {
            Some(topic) => topic.clone(),
            None => self.prefix.child(kind.split('.')),
        }
    }
}

/// The `[[goomerang.foreign_kinds]]` rules, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignKinds {
    rules: Vec<(Pattern, String)>,
}

impl ForeignKinds {
    pub fn new(rules: &[ForeignKindRule]) -> Result<Self, RoutingError> {
        if rules.len() > MAX_FOREIGN_KINDS {
            return Err(RoutingError::TooManyRules);
        }
        let rules = rules
            .iter()
            .map(|rule| {
                let pattern = Pattern::parse(&rule.topic)
                    .map_err(|_| RoutingError::Pattern(rule.topic.clone()))?;
                WrapperKind::new(rule.kind.as_str())
                    .map_err(|_| RoutingError::ForeignKind(rule.kind.clone()))?;
                Ok((pattern, rule.kind.clone()))
            })
            .collect::<Result<_, RoutingError>>()?;
        Ok(ForeignKinds { rules })
    }

    /// The kind foreign bodies on `topic` are encoded as, if a rule says so.
    pub fn kind_of(&self, topic: &Topic) -> Option<&str> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(topic))
            .map(|(_, kind)| kind.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_topics_derive_from_the_kind_unless_overridden() {
        let routes = SendRoutes::default();
        assert_eq!(
            routes.topic("acme.v1.Order").as_str(),
            "goomerang.send.acme.v1.Order"
        );
        let overrides = BTreeMap::from([("acme.v1.Order".to_owned(), "orders.new".to_owned())]);
        let routes = SendRoutes::new("handlers", &overrides).unwrap();
        assert_eq!(routes.topic("acme.v1.Order").as_str(), "orders.new");
        assert_eq!(
            routes.topic("acme.v1.Ping").as_str(),
            "handlers.acme.v1.Ping"
        );
        // A kind with odd characters stays inside the prefix: its tokens are escaped.
        assert_eq!(routes.topic("a.*").as_str(), "handlers.a.%2A");
    }

    #[test]
    fn bad_send_routes_are_refused() {
        let none = BTreeMap::new();
        for prefix in ["", "$goomerang.send"] {
            assert_eq!(
                SendRoutes::new(prefix, &none),
                Err(RoutingError::Prefix(prefix.into()))
            );
        }
        let bad_kind = BTreeMap::from([("not a kind".to_owned(), "t".to_owned())]);
        assert!(matches!(
            SendRoutes::new("p", &bad_kind),
            Err(RoutingError::SendKind(_))
        ));
        let bad_topic = BTreeMap::from([("a.B".to_owned(), "$inbox.x".to_owned())]);
        assert!(matches!(
            SendRoutes::new("p", &bad_topic),
            Err(RoutingError::SendTopic { .. })
        ));
    }

    #[test]
    fn foreign_kinds_first_match_wins() {
        let rule = |topic: &str, kind: &str| ForeignKindRule {
            topic: topic.into(),
            kind: kind.into(),
        };
        let kinds = ForeignKinds::new(&[
            rule("orders.eu", "acme.v1.EuOrder"),
            rule("orders.#", "acme.v1.Order"),
        ])
        .unwrap();
        let kind = |name: &str| kinds.kind_of(&Topic::from_dotted(name.as_bytes()));
        assert_eq!(kind("orders.eu"), Some("acme.v1.EuOrder"));
        assert_eq!(kind("orders.us.west"), Some("acme.v1.Order"));
        assert_eq!(kind("metrics"), None);
        assert!(matches!(
            ForeignKinds::new(&[rule("a.>.b", "a.B")]),
            Err(RoutingError::Pattern(_))
        ));
        assert!(matches!(
            ForeignKinds::new(&[rule("a", "type.googleapis.com/a.B")]),
            Err(RoutingError::ForeignKind(_))
        ));
        let many = vec![rule("a", "a.B"); MAX_FOREIGN_KINDS + 1];
        assert_eq!(ForeignKinds::new(&many), Err(RoutingError::TooManyRules));
    }
}
