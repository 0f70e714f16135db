//! The dotted names STOMP, MessageLoop, Goomerang, Loom and chanserv give topics, and each one's wildcard
//! syntax, translated to and from canonical topics and patterns (`docs/topics.md`). MQTT's `/` names are in
//! `mqtt::names`.

use core_bus::{escape_token_into, Pattern, Topic, TopicError};

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
    use core_bus::{unescape_token, Segment};
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

#[cfg(test)]
mod tests {
    use super::*;
    use core_bus::names::rpc_topic;

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
}
