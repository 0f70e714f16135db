//! Topic and pattern parsing and matching: canonical text, every protocol's wildcard syntax, matching and ACL
//! coverage. Never panics, and what parses prints back to itself and matches the way a topic built from it does.
#![no_main]

use core_bus::{Pattern, Topic};
use libfuzzer_sys::fuzz_target;
use protocols::names::{pattern_from_name, pattern_to_name, topic_from_name, WildcardSyntax};

const SYNTAXES: [WildcardSyntax; 4] = [
    WildcardSyntax::Literal,
    WildcardSyntax::Amqp,
    WildcardSyntax::Nats,
    WildcardSyntax::MessageLoop,
];

fuzz_target!(|data: &[u8]| {
    // Input: <pattern text> NUL <topic text> NUL <second pattern text>.
    let mut parts = data.splitn(3, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let second = parts.next().unwrap_or_default();
    let third = parts.next().unwrap_or_default();
    let topic = topic_from_name(second);
    let _ = Topic::parse(topic.as_str()).map(|t| assert_eq!(t, topic));
    let _ = Topic::parse(&String::from_utf8_lossy(second));
    let Ok(text) = std::str::from_utf8(first) else {
        return;
    };
    let mut patterns = Vec::new();
    if let Ok(pattern) = Pattern::parse(text) {
        assert_eq!(Pattern::parse(pattern.as_str()), Ok(pattern.clone()));
        patterns.push(pattern);
    }
    for syntax in SYNTAXES {
        if let Ok(pattern) = pattern_from_name(text, syntax) {
            let _ = pattern_to_name(&pattern, syntax);
            patterns.push(pattern);
        }
    }
    let other = std::str::from_utf8(third).ok().and_then(|t| Pattern::parse(t).ok());
    for pattern in &patterns {
        let _ = pattern.matches(&topic);
        if let Some(exact) = pattern.as_topic() {
            assert!(pattern.matches(&exact));
        }
        if let Some(other) = &other {
            if pattern.is_covered_by(other) && pattern.matches(&topic) && !topic.is_internal() {
                assert!(other.matches(&topic), "{other} covers {pattern} but not {topic}");
            }
        }
    }
});
