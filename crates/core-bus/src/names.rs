//! Translation between each protocol's names and canonical topics, and the names of gatewayd's internal topics.
//! The full table is in `docs/topics.md`.

use crate::envelope::ConnectionId;
use crate::topic::{escape_token_into, Pattern, Topic, TopicError};

/// First token of private inboxes: `$inbox.<connection>.<name>`.
pub const INBOX_TOKEN: &str = "$inbox";
/// First token of RPC request topics: `$rpc.<protocol>.<name tokens…>`.
pub const RPC_TOKEN: &str = "$rpc";

/// The wildcard syntax of a protocol's subscription names. Names are split on `.` in every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildcardSyntax {
    /// No wildcards: every character is literal (Goomerang topics, Loom rooms, SEND destinations).
    Literal,
    /// AMQP / RabbitMQ topic patterns: a whole token `*` is one token, `#` zero or more (STOMP `/topic/`).
    Amqp,
    /// NATS: `*` one token, a final `>` one or more.
    Nats,
    /// MessageLoop channels: `*` one token, a final `**` zero or more.
    MessageLoop,
}

/// Translates a protocol's topic name into a canonical topic. Internal names (first character `$`) are written in
/// canonical form in every protocol, so a name gatewayd printed (an RPC request topic, an inbox) is used as is,
/// escapes included; other names are split on `.` with every other character literal.
pub fn topic_from_name(name: &[u8]) -> Topic {
    if name.first() == Some(&b'$') {
        if let Some(topic) = std::str::from_utf8(name)
            .ok()
            .and_then(|text| Topic::parse(text).ok())
        {
            return topic;
        }
    }
    Topic::from_dotted(name)
}

/// The inverse of [`topic_from_name`]: internal topics in canonical form, others as their dotted name.
pub fn topic_to_name(topic: &Topic) -> Vec<u8> {
    if topic.is_internal() {
        topic.as_str().as_bytes().to_vec()
    } else {
        topic.to_dotted_bytes()
    }
}

/// Translates a protocol's subscription name into a canonical pattern. Internal names (first character `$`) are
/// canonical text, as in [`topic_from_name`].
pub fn pattern_from_name(name: &str, syntax: WildcardSyntax) -> Result<Pattern, TopicError> {
    if name.starts_with('$') {
        if let Ok(pattern) = Pattern::parse(name) {
            return Ok(pattern);
        }
    }
    let tokens: Vec<&str> = name.split('.').collect();
    let last = tokens.len() - 1;
    let mut text = String::with_capacity(name.len());
    for (i, token) in tokens.into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        let wildcard = match (syntax, token) {
            (WildcardSyntax::Amqp | WildcardSyntax::Nats | WildcardSyntax::MessageLoop, "*") => {
                Some("*")
            }
            (WildcardSyntax::Amqp, "#") => Some("#"),
            (WildcardSyntax::Nats, ">") if i == last => Some(">"),
            (WildcardSyntax::MessageLoop, "**") if i == last => Some("#"),
            _ => None,
        };
        match wildcard {
            Some(w) => text.push_str(w),
            None => escape_token_into(token.as_bytes(), &mut text),
        }
    }
    Pattern::parse(&text)
}

/// Renders a canonical pattern in a protocol's syntax; `None` if that syntax cannot express it.
pub fn pattern_to_name(pattern: &Pattern, syntax: WildcardSyntax) -> Option<String> {
    use crate::topic::{unescape_token, Segment};
    let segments = pattern.segments();
    let last = segments.len() - 1;
    let mut parts = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        parts.push(match (segment, syntax) {
            (Segment::Literal(token), _) => String::from_utf8(unescape_token(token).ok()?).ok()?,
            (Segment::Star, WildcardSyntax::Literal) => return None,
            (Segment::Star, _) => "*".to_owned(),
            (Segment::Hash, WildcardSyntax::Amqp) => "#".to_owned(),
            (Segment::Hash, WildcardSyntax::MessageLoop) if i == last => "**".to_owned(),
            (Segment::Gt, WildcardSyntax::Nats) => ">".to_owned(),
            _ => return None,
        });
    }
    Some(parts.join("."))
}

/// An MQTT topic name (`/` separates levels) as a canonical topic: each level is one token, every other
/// character literal (so `a.b/c` is the two tokens `a.b` and `c`), an empty level an empty token. Refused: an
/// empty name, `+` or `#` anywhere (they are filter syntax), NUL, and names over the topic bounds.
pub fn topic_from_mqtt(name: &str) -> Result<Topic, TopicError> {
    if name.is_empty() {
        return Err(TopicError::Empty);
    }
    if let Some(ch) = name.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        return Err(TopicError::Wildcard(ch.to_string()));
    }
    check_mqtt_bounds(name)?;
    let topic = Topic::from_tokens(name.split('/'));
    Topic::parse(topic.as_str())
}

fn check_mqtt_bounds(name: &str) -> Result<(), TopicError> {
    if name.len() > crate::topic::MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len: name.len(),
            max: crate::topic::MAX_TOPIC_BYTES,
        });
    }
    if name.bytes().filter(|&b| b == b'/').count() >= crate::topic::MAX_TOPIC_SEGMENTS {
        return Err(TopicError::TooManySegments {
            max: crate::topic::MAX_TOPIC_SEGMENTS,
        });
    }
    Ok(())
}

/// The MQTT topic name of a canonical topic: its tokens joined with `/`. `None` when a token cannot be one
/// MQTT level (it holds `/`, `+`, `#` or NUL, or is not UTF-8), or for the one empty token, which would be an
/// empty name (MQTT names have at least one character; an empty one only goes with a topic alias).
pub fn topic_to_mqtt(topic: &Topic) -> Option<String> {
    use crate::topic::unescape_token;
    let mut name = String::with_capacity(topic.as_str().len());
    for (i, token) in topic.tokens().enumerate() {
        if i > 0 {
            name.push('/');
        }
        let raw = String::from_utf8(unescape_token(token).ok()?).ok()?;
        if raw.contains(['/', '+', '#', '\0']) {
            return None;
        }
        name.push_str(&raw);
    }
    (!name.is_empty()).then_some(name)
}

/// An MQTT topic filter as a canonical pattern: a level `+` is `*` (one token), a final level `#` is `#`
/// (zero or more tokens, so `a/#` also matches `a`), every other level one literal token. Refused: `+` or `#`
/// inside a level, `#` before the last level, NUL, and filters over the topic bounds.
pub fn pattern_from_mqtt(filter: &str) -> Result<Pattern, TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    check_mqtt_bounds(filter)?;
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len() - 1;
    let mut text = String::with_capacity(filter.len());
    for (i, level) in levels.into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        match level {
            "+" => text.push('*'),
            "#" if i == last => text.push('#'),
            _ if level.contains(['+', '#', '\0']) => {
                return Err(TopicError::Unescaped {
                    token: level.to_owned(),
                    ch: level
                        .chars()
                        .find(|c| matches!(c, '+' | '#' | '\0'))
                        .unwrap_or('#'),
                })
            }
            _ => escape_token_into(level.as_bytes(), &mut text),
        }
    }
    Pattern::parse(&text)
}

/// The private inbox `$inbox.<connection>.<name>` of a connection.
pub fn inbox(connection: ConnectionId, name: &[u8]) -> Topic {
    Topic::from_tokens([
        INBOX_TOKEN.as_bytes(),
        connection.0.to_string().as_bytes(),
        name,
    ])
}

/// An RPC request topic: `$rpc.<protocol>.<parts…>`, each part one token (dots inside a part are escaped).
pub fn rpc_topic<T: AsRef<[u8]>>(protocol: &str, parts: impl IntoIterator<Item = T>) -> Topic {
    Topic::from_tokens([RPC_TOKEN.as_bytes(), protocol.as_bytes()]).child(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_names_meet_dotted_names() {
        let topic = topic_from_mqtt("a/b/c").unwrap();
        assert_eq!(topic, Topic::from_dotted(b"a.b.c"));
        assert_eq!(topic_to_mqtt(&topic).as_deref(), Some("a/b/c"));
        // A dot inside a level is literal, and round-trips.
        let dotted = topic_from_mqtt("v1.0/x").unwrap();
        assert_eq!(dotted.as_str(), "v1%2E0.x");
        assert_eq!(topic_to_mqtt(&dotted).as_deref(), Some("v1.0/x"));
        // Empty levels are empty tokens.
        let empty = topic_from_mqtt("/a//b").unwrap();
        assert_eq!(topic_to_mqtt(&empty).as_deref(), Some("/a//b"));
        assert!(topic_from_mqtt("$SYS/x").unwrap().is_internal());
        assert!(topic_from_mqtt("a/+").is_err());
        assert!(topic_from_mqtt("a/#").is_err());
        assert!(topic_from_mqtt("").is_err());
        assert_eq!(topic_to_mqtt(&Topic::from_tokens(["a/b"])), None);
        assert_eq!(topic_to_mqtt(&Topic::from_tokens([""])), None);
        assert_eq!(
            topic_to_mqtt(&Topic::from_tokens(["", ""])).as_deref(),
            Some("/")
        );
    }

    #[test]
    fn mqtt_filters_translate() {
        let pattern = pattern_from_mqtt("a/+/c/#").unwrap();
        assert_eq!(pattern.as_str(), "a.*.c.#");
        assert!(pattern_from_mqtt("a/#")
            .unwrap()
            .matches(&Topic::from_dotted(b"a")));
        assert!(pattern_from_mqtt("a/#/b").is_err());
        assert!(pattern_from_mqtt("a+/b").is_err());
        assert!(pattern_from_mqtt("a/b#").is_err());
        // Wildcards never match internal topics.
        assert!(!pattern_from_mqtt("+/x")
            .unwrap()
            .matches(&topic_from_mqtt("$SYS/x").unwrap()));
        assert!(!pattern_from_mqtt("#")
            .unwrap()
            .matches(&topic_from_mqtt("$SYS/x").unwrap()));
    }

    #[test]
    fn protocol_wildcards_translate() {
        assert_eq!(
            pattern_from_name("a.*.#", WildcardSyntax::Amqp)
                .unwrap()
                .as_str(),
            "a.*.#"
        );
        assert_eq!(
            pattern_from_name("a.#", WildcardSyntax::Nats)
                .unwrap()
                .as_str(),
            "a.%23"
        );
        assert_eq!(
            pattern_from_name("a.>", WildcardSyntax::Nats)
                .unwrap()
                .as_str(),
            "a.>"
        );
        assert_eq!(
            pattern_from_name("chat.**", WildcardSyntax::MessageLoop)
                .unwrap()
                .as_str(),
            "chat.#"
        );
        assert_eq!(
            pattern_from_name("a*b.*", WildcardSyntax::Literal)
                .unwrap()
                .as_str(),
            "a%2Ab.%2A"
        );
    }

    #[test]
    fn names_round_trip_per_syntax() {
        for (name, syntax) in [
            ("orders.*.eu", WildcardSyntax::Amqp),
            ("orders.#", WildcardSyntax::Amqp),
            ("orders.>", WildcardSyntax::Nats),
            ("chat.**", WildcardSyntax::MessageLoop),
            ("room with spaces.x", WildcardSyntax::Literal),
        ] {
            let pattern = pattern_from_name(name, syntax).unwrap();
            assert_eq!(pattern_to_name(&pattern, syntax).as_deref(), Some(name));
        }
    }

    #[test]
    fn internal_names_are_canonical_in_every_protocol() {
        let rpc = rpc_topic("goomerang", ["pkg.Msg"]);
        let printed = String::from_utf8(topic_to_name(&rpc)).unwrap();
        assert_eq!(printed, "$rpc.goomerang.pkg%2EMsg");
        assert_eq!(topic_from_name(printed.as_bytes()), rpc);
        assert_eq!(
            pattern_from_name(&printed, WildcardSyntax::Amqp).unwrap(),
            Pattern::exact(&rpc)
        );
        let plain = Topic::from_dotted(b"100%.x");
        assert_eq!(topic_from_name(&topic_to_name(&plain)), plain);
    }

    #[test]
    fn internal_names() {
        assert_eq!(inbox(ConnectionId(5), b"r.1").as_str(), "$inbox.5.r%2E1");
        assert_eq!(
            rpc_topic("messageloop", ["chat.room", "echo"]).as_str(),
            "$rpc.messageloop.chat%2Eroom.echo"
        );
    }
}
