//! Canonical topic names and subscription patterns.
//!
//! A topic is a non-empty sequence of tokens. Its canonical text joins the tokens with `.`; inside a token the
//! characters that would be read as syntax are escaped as `%XX` (two upper-case hex digits): `.`, `*`, `#`, `>`,
//! `%`, space, control characters and bytes that are not UTF-8. An empty token is written `%_`. The canonical text is
//! therefore never ambiguous, never has empty segments and is a valid NATS subject.
//!
//! A pattern is a topic in which a whole token may be `*` (exactly one token), `#` (zero or more tokens, anywhere)
//! or, as the last token only, `>` (one or more tokens). Topics whose first token starts with `$` are internal:
//! no pattern with a wildcard matches them.
//!
//! Parsing bounds every topic and pattern ([`MAX_TOPIC_BYTES`], [`MAX_TOPIC_SEGMENTS`]) before anything else reads
//! it, and a run of `#` tokens in a pattern collapses into one (`a.#.#.b` is `a.#.b`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::matching::{self, Segment};

/// Longest canonical text of a topic or pattern, in bytes (escapes count as written: `%2E` is 3 bytes).
pub const MAX_TOPIC_BYTES: usize = 4096;
/// Most tokens in a topic or pattern.
pub const MAX_TOPIC_SEGMENTS: usize = 128;

/// Why a text is not a valid canonical topic or pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("a topic must not be empty")]
    Empty,
    #[error("empty token at position {0} (write an empty token as %_)")]
    EmptyToken(usize),
    #[error("bad escape sequence in token {0:?}")]
    BadEscape(String),
    #[error("character {ch:?} must be escaped in token {token:?}")]
    Unescaped { token: String, ch: char },
    #[error("wildcard {0:?} is not allowed in a topic")]
    Wildcard(String),
    #[error("'>' may only be the last token of a pattern")]
    GtNotLast,
    #[error("topic is {len} bytes long (at most {max})")]
    TooLong { len: usize, max: usize },
    #[error("topic has more than {max} tokens")]
    TooManySegments { max: usize },
}

/// Refuses canonical text over [`MAX_TOPIC_BYTES`] or [`MAX_TOPIC_SEGMENTS`] before it is split or copied.
fn check_bounds(canonical: &str) -> Result<(), TopicError> {
    if canonical.is_empty() {
        return Err(TopicError::Empty);
    }
    if canonical.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong {
            len: canonical.len(),
            max: MAX_TOPIC_BYTES,
        });
    }
    if canonical.bytes().filter(|&b| b == b'.').count() >= MAX_TOPIC_SEGMENTS {
        return Err(TopicError::TooManySegments {
            max: MAX_TOPIC_SEGMENTS,
        });
    }
    Ok(())
}

/// A concrete topic in canonical form. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

/// A subscription pattern in canonical form. A pattern with no wildcard is an exact topic.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: Arc<str>,
    segments: Arc<[Segment]>,
}

const EMPTY_TOKEN: &str = "%_";

fn needs_escape(byte: u8) -> bool {
    matches!(byte, b'.' | b'*' | b'#' | b'>' | b'%' | b' ' | 0x7f) || byte < 0x20
}

/// Appends one raw token (any bytes) to `out` in escaped canonical form.
pub fn escape_token_into(raw: &[u8], out: &mut String) {
    if raw.is_empty() {
        out.push_str(EMPTY_TOKEN);
        return;
    }
    let mut rest = raw;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(err) => {
                let (good, bad) = rest.split_at(err.valid_up_to());
                let bad_len = err.error_len().unwrap_or(bad.len());
                // `good` is valid UTF-8 by construction of `valid_up_to`.
                (
                    std::str::from_utf8(good).unwrap_or_default(),
                    &bad[..bad_len],
                )
            }
        };
        for ch in valid.chars() {
            if ch.is_ascii() && needs_escape(ch as u8) {
                push_hex(ch as u8, out);
            } else {
                out.push(ch);
            }
        }
        for &byte in invalid {
            push_hex(byte, out);
        }
        rest = &rest[valid.len() + invalid.len()..];
    }
}

fn push_hex(byte: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Decodes one escaped canonical token back to its raw bytes.
pub fn unescape_token(token: &str) -> Result<Vec<u8>, TopicError> {
    if token == EMPTY_TOKEN {
        return Ok(Vec::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let value = bytes
                .get(i + 1)
                .and_then(|&hi| hex_value(hi))
                .zip(bytes.get(i + 2).and_then(|&lo| hex_value(lo)))
                .map(|(hi, lo)| hi << 4 | lo)
                .ok_or_else(|| TopicError::BadEscape(token.to_owned()))?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn validate_token(token: &str, position: usize) -> Result<(), TopicError> {
    if token.is_empty() {
        return Err(TopicError::EmptyToken(position));
    }
    if token == EMPTY_TOKEN {
        return Ok(());
    }
    for ch in token.chars() {
        if ch.is_ascii() && ch != '%' && needs_escape(ch as u8) {
            return Err(TopicError::Unescaped {
                token: token.to_owned(),
                ch,
            });
        }
    }
    unescape_token(token).map(|_| ())
}

impl Topic {
    /// Parses canonical text (as written in config, ACLs and `docs/topics.md`).
    pub fn parse(canonical: &str) -> Result<Topic, TopicError> {
        check_bounds(canonical)?;
        for (position, token) in canonical.split('.').enumerate() {
            if matches!(token, "*" | "#" | ">") {
                return Err(TopicError::Wildcard(token.to_owned()));
            }
            validate_token(token, position)?;
        }
        Ok(Topic(canonical.into()))
    }

    /// Builds a topic from raw tokens; every token is escaped, so a `.` inside a token stays part of it.
    pub fn from_tokens<T: AsRef<[u8]>>(tokens: impl IntoIterator<Item = T>) -> Topic {
        let mut text = String::new();
        for (i, token) in tokens.into_iter().enumerate() {
            if i > 0 {
                text.push('.');
            }
            escape_token_into(token.as_ref(), &mut text);
        }
        if text.is_empty() {
            text.push_str(EMPTY_TOKEN);
        }
        Topic(text.into())
    }

    /// Builds a topic from a literal protocol name in which `.` separates tokens and every other character is
    /// literal (STOMP destinations, MessageLoop channels, Goomerang topics, chanserv topics, Loom rooms).
    pub fn from_dotted(name: &[u8]) -> Topic {
        Topic::from_tokens(name.split(|&b| b == b'.'))
    }

    /// [`Topic::from_dotted`] for a name a client sent: refused past [`MAX_TOPIC_BYTES`] (checked on the raw
    /// name before anything is built) or [`MAX_TOPIC_SEGMENTS`].
    pub fn try_from_dotted(name: &[u8]) -> Result<Topic, TopicError> {
        if name.len() > MAX_TOPIC_BYTES {
            return Err(TopicError::TooLong {
                len: name.len(),
                max: MAX_TOPIC_BYTES,
            });
        }
        let topic = Topic::from_dotted(name);
        check_bounds(&topic.0)?;
        Ok(topic)
    }

    /// Whether [`Topic::try_from_dotted`] accepts `name` (its error if not), without building the topic when
    /// the name is too short for its canonical form to pass the bounds: escaping turns one byte into at most
    /// three, and an empty token into two.
    pub fn check_dotted(name: &[u8]) -> Result<(), TopicError> {
        let dots = name.iter().filter(|&&b| b == b'.').count();
        let widest = name.len() * 3 + (dots + 1) * EMPTY_TOKEN.len();
        if dots < MAX_TOPIC_SEGMENTS && widest <= MAX_TOPIC_BYTES {
            return Ok(());
        }
        Topic::try_from_dotted(name).map(drop)
    }

    /// The literal protocol name this topic came from: the inverse of [`Topic::from_dotted`].
    pub fn to_dotted_bytes(&self) -> Vec<u8> {
        if self.is_plain() {
            return self.0.as_bytes().to_vec();
        }
        let mut out = Vec::with_capacity(self.0.len());
        for (i, token) in self.tokens().enumerate() {
            if i > 0 {
                out.push(b'.');
            }
            // Canonical text is validated on construction, so every token unescapes.
            out.extend(unescape_token(token).unwrap_or_default());
        }
        out
    }

    /// [`Topic::to_dotted_bytes`] as text, for protocols whose names are UTF-8; `None` if it is not UTF-8.
    pub fn to_dotted(&self) -> Option<String> {
        if self.is_plain() {
            return Some(self.0.to_string());
        }
        String::from_utf8(self.to_dotted_bytes()).ok()
    }

    /// No token is escaped: every escape (the empty token's included) starts with `%`, so the canonical text is
    /// the dotted name itself.
    fn is_plain(&self) -> bool {
        !self.0.contains('%')
    }

    /// Escaped tokens of the canonical text.
    pub fn tokens(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Internal topics (inboxes, RPC requests, broadcast) start with `$`; wildcards never match them.
    pub fn is_internal(&self) -> bool {
        self.0.starts_with('$')
    }

    /// Appends raw tokens to this topic.
    pub fn child<T: AsRef<[u8]>>(&self, tokens: impl IntoIterator<Item = T>) -> Topic {
        let mut text = String::from(&*self.0);
        for token in tokens {
            text.push('.');
            escape_token_into(token.as_ref(), &mut text);
        }
        Topic(text.into())
    }

    /// Whether this topic starts with all the tokens of `prefix`.
    pub fn starts_with(&self, prefix: &Topic) -> bool {
        self.0.len() >= prefix.0.len()
            && self.0.starts_with(&*prefix.0)
            && (self.0.len() == prefix.0.len() || self.0.as_bytes()[prefix.0.len()] == b'.')
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({})", self.0)
    }
}

impl Pattern {
    /// Parses canonical pattern text: canonical tokens, or `*`, `#`, and a final `>`. A run of `#` becomes one
    /// `#`, in the segments and in the text.
    pub fn parse(canonical: &str) -> Result<Pattern, TopicError> {
        check_bounds(canonical)?;
        let tokens: Vec<&str> = canonical.split('.').collect();
        let last = tokens.len() - 1;
        let mut segments = Vec::with_capacity(tokens.len());
        let mut collapsed = false;
        for (position, token) in tokens.into_iter().enumerate() {
            segments.push(match token {
                "*" => Segment::Star,
                "#" if segments.last() == Some(&Segment::Hash) => {
                    collapsed = true;
                    continue;
                }
                "#" => Segment::Hash,
                ">" if position == last => Segment::Gt,
                ">" => return Err(TopicError::GtNotLast),
                literal => {
                    validate_token(literal, position)?;
                    Segment::Literal(literal.into())
                }
            });
        }
        let text = if collapsed {
            let texts: Vec<&str> = segments.iter().map(Segment::as_str).collect();
            texts.join(".").into()
        } else {
            canonical.into()
        };
        Ok(Pattern {
            text,
            segments: segments.into(),
        })
    }

    /// Whether every topic this pattern matches is also matched by `allowed` (ACL checks of subscriptions).
    pub fn is_covered_by(&self, allowed: &Pattern) -> bool {
        match self.as_topic() {
            Some(topic) => allowed.matches(&topic),
            None => matching::covers(allowed.segments(), &self.segments),
        }
    }

    /// The pattern that matches exactly one topic.
    pub fn exact(topic: &Topic) -> Pattern {
        Pattern {
            text: topic.0.clone(),
            segments: topic.tokens().map(|t| Segment::Literal(t.into())).collect(),
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact topic, when the pattern has no wildcard.
    pub fn as_topic(&self) -> Option<Topic> {
        self.is_exact().then(|| Topic(self.text.clone()))
    }

    pub fn is_exact(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Whether `topic` matches, in time linear in pattern × topic length. The subscription index uses a trie and
    /// is tested against this function.
    pub fn matches(&self, topic: &Topic) -> bool {
        if self.is_exact() {
            return *self.text == *topic.0;
        }
        if topic.is_internal() {
            return false;
        }
        matching::matches(&self.segments, topic.tokens())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({})", self.text)
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Topic {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Topic::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Pattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(text: &str) -> Topic {
        Topic::parse(text).unwrap()
    }

    fn pattern(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    #[test]
    fn dotted_names_round_trip_with_escapes() {
        for name in [
            "a.b.c",
            "",
            "a..b",
            ".",
            "a*b",
            "#",
            ">",
            "100%",
            "x y",
            "tab\there",
        ] {
            let t = Topic::from_dotted(name.as_bytes());
            assert_eq!(t.to_dotted().as_deref(), Some(name), "canonical {t}");
            assert_eq!(Topic::parse(t.as_str()), Ok(t.clone()));
        }
        assert_eq!(Topic::from_dotted(b"a..b").as_str(), "a.%_.b");
        assert_eq!(Topic::from_dotted(b"a*b").as_str(), "a%2Ab");
    }

    #[test]
    fn raw_bytes_round_trip() {
        let raw = [0xff, b'.', 0x00, b'x'];
        let t = Topic::from_dotted(&raw);
        assert_eq!(t.to_dotted_bytes(), raw);
        assert_eq!(t.to_dotted(), None);
    }

    #[test]
    fn tokens_keep_dots() {
        let t = Topic::from_tokens(["$rpc", "goomerang", "pkg.Msg"]);
        assert_eq!(t.as_str(), "$rpc.goomerang.pkg%2EMsg");
        assert_eq!(t.tokens().count(), 3);
    }

    #[test]
    fn parse_rejects_bad_text() {
        assert_eq!(Topic::parse(""), Err(TopicError::Empty));
        assert!(matches!(
            Topic::parse("a..b"),
            Err(TopicError::EmptyToken(1))
        ));
        assert!(matches!(Topic::parse("a.*"), Err(TopicError::Wildcard(_))));
        assert!(matches!(Topic::parse("a%2"), Err(TopicError::BadEscape(_))));
        assert!(matches!(
            Topic::parse("a b"),
            Err(TopicError::Unescaped { .. })
        ));
        assert!(matches!(
            Pattern::parse("a.>.b"),
            Err(TopicError::GtNotLast)
        ));
    }

    #[test]
    fn parse_bounds_length_and_tokens() {
        let deep = format!("{}x", "*.".repeat(5000));
        assert_eq!(
            Pattern::parse(&deep),
            Err(TopicError::TooLong {
                len: deep.len(),
                max: MAX_TOPIC_BYTES
            })
        );
        let many = vec!["a"; MAX_TOPIC_SEGMENTS + 1].join(".");
        let max = MAX_TOPIC_SEGMENTS;
        assert_eq!(
            Topic::parse(&many),
            Err(TopicError::TooManySegments { max })
        );
        assert_eq!(
            Pattern::parse(&many),
            Err(TopicError::TooManySegments { max })
        );
        assert_eq!(
            Topic::try_from_dotted(many.as_bytes()),
            Err(TopicError::TooManySegments { max })
        );
        let escaped = "%".repeat(MAX_TOPIC_BYTES / 2);
        assert!(matches!(
            Topic::try_from_dotted(escaped.as_bytes()),
            Err(TopicError::TooLong { .. })
        ));
        let widest = vec!["a"; MAX_TOPIC_SEGMENTS].join(".");
        assert!(Topic::try_from_dotted(widest.as_bytes()).is_ok());
        let empties = ".".repeat(MAX_TOPIC_SEGMENTS - 1);
        let at_limit = "%".repeat((MAX_TOPIC_BYTES - 2) / 3);
        let over = "%".repeat((MAX_TOPIC_BYTES - 2) / 3 + 1);
        for name in [
            &many, &escaped, &widest, &empties, &at_limit, &over, "", "a..b",
        ] {
            assert_eq!(
                Topic::check_dotted(name.as_bytes()),
                Topic::try_from_dotted(name.as_bytes()).map(drop),
                "{name:?}"
            );
        }
        assert!(Pattern::parse(&widest).is_ok());
        assert!(Topic::parse(&"a".repeat(MAX_TOPIC_BYTES)).is_ok());
        assert!(matches!(
            Topic::parse(&"a".repeat(MAX_TOPIC_BYTES + 1)),
            Err(TopicError::TooLong { .. })
        ));
    }

    #[test]
    fn runs_of_hash_collapse() {
        let p = pattern("a.#.#.#.b.#.#");
        assert_eq!(p.as_str(), "a.#.b.#");
        assert_eq!(p, pattern("a.#.b.#"));
        assert!(p.matches(&topic("a.b")));
        assert_eq!(pattern("#.*.#").as_str(), "#.*.#");
    }

    #[test]
    fn many_hashes_stay_fast() {
        // Exponential with backtracking: each `#` tries every split of the topic.
        let p = pattern("#.a.#.a.#.a.#.a.#.a.#.b");
        let t = topic(&vec!["a"; 100].join("."));
        assert!(!p.matches(&t));
    }

    #[test]
    fn wildcard_semantics() {
        assert!(pattern("a.*").matches(&topic("a.b")));
        assert!(!pattern("a.*").matches(&topic("a.b.c")));
        assert!(pattern("a.#").matches(&topic("a")));
        assert!(pattern("a.#.z").matches(&topic("a.z")));
        assert!(pattern("a.#.z").matches(&topic("a.b.c.z")));
        assert!(pattern("#").matches(&topic("x.y")));
        assert!(pattern("a.>").matches(&topic("a.b.c")));
        assert!(!pattern("a.>").matches(&topic("a")));
    }

    #[test]
    fn internal_topics_need_exact_patterns() {
        let inbox = topic("$inbox.7.x");
        assert!(!pattern("#").matches(&inbox));
        assert!(!pattern("$inbox.*.x").matches(&inbox));
        assert!(pattern("$inbox.7.x").matches(&inbox));
    }

    #[test]
    fn prefix_test_respects_token_boundaries() {
        assert!(topic("a.b.c").starts_with(&topic("a.b")));
        assert!(topic("a.b").starts_with(&topic("a.b")));
        assert!(!topic("a.bc").starts_with(&topic("a.b")));
    }
}
