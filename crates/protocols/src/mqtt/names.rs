//! MQTT topic names and filters (`/` between levels, `+` and `#`) translated to and from canonical topics and
//! patterns (`docs/topics.md`).

use core_bus::{
    escape_token_into, unescape_token, Pattern, Topic, TopicError, MAX_TOPIC_BYTES,
    MAX_TOPIC_SEGMENTS,
};

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
    if name.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len: name.len(),
            max: MAX_TOPIC_BYTES,
        });
    }
    if name.bytes().filter(|&b| b == b'/').count() >= MAX_TOPIC_SEGMENTS {
        return Err(TopicError::TooManySegments {
            max: MAX_TOPIC_SEGMENTS,
        });
    }
    Ok(())
}

/// The MQTT topic name of a canonical topic: its tokens joined with `/`. `None` when a token cannot be one
/// MQTT level (it holds `/`, `+`, `#` or NUL, or is not UTF-8), or for the one empty token, which would be an
/// empty name (MQTT names have at least one character; an empty one only goes with a topic alias).
pub fn topic_to_mqtt(topic: &Topic) -> Option<String> {
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
}
