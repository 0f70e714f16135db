//! Canonical topics and patterns as NATS subjects under the configured prefix. Canonical text is already a valid
//! NATS subject (tokens are escaped), so a topic maps one to one; `#` has no NATS equivalent and is widened to
//! `>` (plus the bare prefix for its zero-token case) — the receiving node's own index does the exact matching.

use core_bus::{Pattern, Segment, Topic};

pub fn topic_subject(prefix: &str, topic: &Topic) -> String {
    format!("{prefix}.{topic}")
}

/// The NATS subjects whose union covers every topic `pattern` matches.
pub fn pattern_subjects(prefix: &str, pattern: &Pattern) -> Vec<String> {
    let mut tokens = vec![prefix.to_owned()];
    for segment in pattern.segments() {
        match segment {
            Segment::Literal(token) => tokens.push(token.to_string()),
            Segment::Star => tokens.push("*".to_owned()),
            Segment::Gt => tokens.push(">".to_owned()),
            Segment::Hash => {
                let zero = tokens.join(".");
                tokens.push(">".to_owned());
                let more = tokens.join(".");
                return if zero == prefix {
                    vec![more]
                } else {
                    vec![zero, more]
                };
            }
        }
    }
    vec![tokens.join(".")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(pattern: &str) -> Vec<String> {
        pattern_subjects("gw", &Pattern::parse(pattern).unwrap())
    }

    #[test]
    fn wildcards_map_onto_nats() {
        assert_eq!(subjects("a.b"), ["gw.a.b"]);
        assert_eq!(subjects("a.*.c"), ["gw.a.*.c"]);
        assert_eq!(subjects("a.>"), ["gw.a.>"]);
        assert_eq!(subjects("a.#"), ["gw.a", "gw.a.>"]);
        assert_eq!(subjects("a.#.z"), ["gw.a", "gw.a.>"]);
        assert_eq!(subjects("#"), ["gw.>"]);
        assert_eq!(
            topic_subject("gw", &Topic::from_dotted(b"x y.z")),
            "gw.x%20y.z"
        );
    }
}
