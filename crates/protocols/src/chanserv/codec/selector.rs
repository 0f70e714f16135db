//! gatewayd's request-body grammar for chanserv (docs/protocols/chanserv.md, "Request body"; gatewayd's own design,
//! not upstream's).
//!
//! A body is one of:
//! - a subscription as UTF-8 text, one selector per line: `topic` or `topic/glob`, optionally followed by
//!   `;from=<offset|latest>`; blank lines are skipped and `\r\n` line ends are accepted;
//! - a subscription as JSON, when the first byte is `{`: `{"topics":["a","b/*"],"from":12}` (`from` optional, a
//!   number or `"latest"`, applying to every topic);
//! - a publish, when the body starts with `PUB `: `PUB <topic>\n<payload>` (payload = every byte after the first
//!   `\n`, binary allowed).
//!
//! A publish is answered with one source whose header is [`PublishReply`] (`ok offset=<n>`, `ok` or `err <reason>`).
//! A subscribe that cannot be served is answered the same way with an `err` source; an empty body gets no source
//! at all (the master just closes, docs/protocols/chanserv.md, "What comes back"). Topic names stay strings here;
//! mapping them onto bus topics is the session's job.

use bytes::Bytes;
use serde::Deserialize;

/// What a request body asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Stream these topics, one source per matching topic. Never empty.
    Subscribe(Vec<Selector>),
    Publish(Publish),
}

/// One subscription line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// `topic` or `topic/glob`, as written.
    pub pattern: String,
    /// Where to start; `None` leaves it to the bus default.
    pub from: Option<StartFrom>,
}

/// A `from=` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Only messages published from now on.
    Latest,
    /// From this offset.
    Offset(u64),
}

/// `PUB <topic>\n<payload>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
}

/// Why a body is not a request. The session answers [`RequestError::Empty`] by closing the master without sources,
/// anything else with an `err` source header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("empty request: no selector")]
    Empty,
    #[error("request is not UTF-8 text")]
    NotUtf8,
    #[error("line {line}: invalid topic pattern {pattern:?}")]
    BadPattern { line: usize, pattern: String },
    #[error("line {line}: unknown option {option:?}")]
    UnknownOption { line: usize, option: String },
    #[error("line {line}: invalid from value {value:?} (expected an offset or \"latest\")")]
    BadFrom { line: usize, value: String },
    #[error("line {line}: from given twice")]
    DuplicateFrom { line: usize },
    #[error("invalid JSON request: {0}")]
    Json(String),
    #[error("publish: {0}")]
    BadPublish(&'static str),
}

const PUB_PREFIX: &[u8] = b"PUB ";

/// Parses a request body (the first frame on a master stream).
pub fn parse(body: Bytes) -> Result<Request, RequestError> {
    if body.starts_with(PUB_PREFIX) {
        return parse_publish(body).map(Request::Publish);
    }
    let selectors = if body.first() == Some(&b'{') {
        parse_json(&body)?
    } else {
        parse_lines(std::str::from_utf8(&body).map_err(|_| RequestError::NotUtf8)?)?
    };
    if selectors.is_empty() {
        return Err(RequestError::Empty);
    }
    Ok(Request::Subscribe(selectors))
}

fn parse_lines(text: &str) -> Result<Vec<Selector>, RequestError> {
    let mut selectors = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(';');
        let pattern = parts.next().unwrap_or_default().trim();
        let pattern = valid_pattern(pattern).ok_or_else(|| RequestError::BadPattern {
            line: line_no,
            pattern: pattern.to_owned(),
        })?;
        let mut from = None;
        for option in parts {
            let option = option.trim();
            match option.split_once('=') {
                Some(("from", value)) => {
                    if from.is_some() {
                        return Err(RequestError::DuplicateFrom { line: line_no });
                    }
                    from = Some(
                        parse_from(value.trim()).ok_or_else(|| RequestError::BadFrom {
                            line: line_no,
                            value: value.trim().to_owned(),
                        })?,
                    );
                }
                _ => {
                    return Err(RequestError::UnknownOption {
                        line: line_no,
                        option: option.to_owned(),
                    })
                }
            }
        }
        selectors.push(Selector { pattern, from });
    }
    Ok(selectors)
}

fn parse_from(value: &str) -> Option<StartFrom> {
    if value == "latest" {
        return Some(StartFrom::Latest);
    }
    // Digits only: `u64::from_str` would also take a leading `+`.
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().map(StartFrom::Offset)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    topics: Vec<String>,
    #[serde(default)]
    from: Option<JsonFrom>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFrom {
    Offset(u64),
    Named(String),
}

fn parse_json(body: &[u8]) -> Result<Vec<Selector>, RequestError> {
    let request: JsonRequest =
        serde_json::from_slice(body).map_err(|e| RequestError::Json(e.to_string()))?;
    let from = match request.from {
        None => None,
        Some(JsonFrom::Offset(offset)) => Some(StartFrom::Offset(offset)),
        Some(JsonFrom::Named(name)) if name == "latest" => Some(StartFrom::Latest),
        Some(JsonFrom::Named(value)) => return Err(RequestError::BadFrom { line: 1, value }),
    };
    request
        .topics
        .into_iter()
        .enumerate()
        .map(|(i, topic)| match valid_pattern(&topic) {
            Some(pattern) => Ok(Selector { pattern, from }),
            None => Err(RequestError::BadPattern {
                line: i + 1,
                pattern: topic,
            }),
        })
        .collect()
}

fn parse_publish(body: Bytes) -> Result<Publish, RequestError> {
    let rest = body.slice(PUB_PREFIX.len()..);
    let newline = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(RequestError::BadPublish("missing newline after the topic"))?;
    let topic_line = rest.get(..newline).unwrap_or_default();
    let topic_line = topic_line.strip_suffix(b"\r").unwrap_or(topic_line);
    let topic = std::str::from_utf8(topic_line)
        .map_err(|_| RequestError::BadPublish("topic is not UTF-8"))?;
    let topic = valid_pattern(topic).ok_or(RequestError::BadPublish("invalid topic"))?;
    Ok(Publish {
        topic,
        payload: rest.slice(newline + 1..),
    })
}

/// A topic or pattern: non-empty, no whitespace, no control characters, no `;` (the option separator).
fn valid_pattern(pattern: &str) -> Option<String> {
    let ok = !pattern.is_empty()
        && !pattern
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';');
    ok.then(|| pattern.to_owned())
}

/// The source header answering a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishReply {
    /// `ok offset=<n>` when the topic keeps history (the message's offset), else `ok`.
    Ok { offset: Option<u64> },
    /// `err <reason>`; line breaks and control characters in the reason are written as spaces.
    Err { reason: String },
}

impl PublishReply {
    pub fn encode(&self) -> Bytes {
        match self {
            PublishReply::Ok {
                offset: Some(offset),
            } => Bytes::from(format!("ok offset={offset}")),
            PublishReply::Ok { offset: None } => Bytes::from_static(b"ok"),
            PublishReply::Err { reason } => {
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                Bytes::from(format!("err {reason}"))
            }
        }
    }

    /// Reads a reply header (what a client of gatewayd's publish sees).
    pub fn parse(header: &[u8]) -> Option<PublishReply> {
        let text = std::str::from_utf8(header).ok()?;
        if text == "ok" {
            return Some(PublishReply::Ok { offset: None });
        }
        if let Some(offset) = text.strip_prefix("ok offset=") {
            return match parse_from(offset)? {
                StartFrom::Offset(offset) => Some(PublishReply::Ok {
                    offset: Some(offset),
                }),
                StartFrom::Latest => None,
            };
        }
        text.strip_prefix("err ").map(|reason| PublishReply::Err {
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sel(pattern: &str, from: Option<StartFrom>) -> Selector {
        Selector {
            pattern: pattern.to_owned(),
            from,
        }
    }

    fn parse_str(s: &str) -> Result<Request, RequestError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn text_selectors() {
        assert_eq!(
            parse_str("orders\r\n\nmetrics/cpu.*;from=latest\n  audit ; from=42 \n"),
            Ok(Request::Subscribe(vec![
                sel("orders", None),
                sel("metrics/cpu.*", Some(StartFrom::Latest)),
                sel("audit", Some(StartFrom::Offset(42))),
            ]))
        );
        // The fixture's request bodies are plain topic names.
        assert_eq!(
            parse_str("hello-cs"),
            Ok(Request::Subscribe(vec![sel("hello-cs", None)]))
        );
    }

    #[test]
    fn text_selector_errors() {
        assert_eq!(parse_str(""), Err(RequestError::Empty));
        assert_eq!(parse_str("\n \r\n"), Err(RequestError::Empty));
        assert_eq!(
            parse(Bytes::from_static(b"\xff\xfe")),
            Err(RequestError::NotUtf8)
        );
        assert_eq!(
            parse_str("a\nb c"),
            Err(RequestError::BadPattern {
                line: 2,
                pattern: "b c".into()
            })
        );
        assert_eq!(
            parse_str(";from=1"),
            Err(RequestError::BadPattern {
                line: 1,
                pattern: "".into()
            })
        );
        assert_eq!(
            parse_str("a;from=soon"),
            Err(RequestError::BadFrom {
                line: 1,
                value: "soon".into()
            })
        );
        assert_eq!(
            parse_str("a;from=+1"),
            Err(RequestError::BadFrom {
                line: 1,
                value: "+1".into()
            })
        );
        assert_eq!(
            parse_str("a;from=1;from=2"),
            Err(RequestError::DuplicateFrom { line: 1 })
        );
        assert_eq!(
            parse_str("a;envelope=1"),
            Err(RequestError::UnknownOption {
                line: 1,
                option: "envelope=1".into()
            })
        );
    }

    #[test]
    fn json_selectors() {
        assert_eq!(
            parse_str(r#"{"topics":["a","b/*"],"from":7}"#),
            Ok(Request::Subscribe(vec![
                sel("a", Some(StartFrom::Offset(7))),
                sel("b/*", Some(StartFrom::Offset(7)))
            ]))
        );
        assert_eq!(
            parse_str(r#"{"topics":["a"],"from":"latest"}"#),
            Ok(Request::Subscribe(vec![sel("a", Some(StartFrom::Latest))]))
        );
        assert_eq!(
            parse_str(r#"{"topics":["a"]}"#),
            Ok(Request::Subscribe(vec![sel("a", None)]))
        );
        assert_eq!(parse_str(r#"{"topics":[]}"#), Err(RequestError::Empty));
        assert!(matches!(
            parse_str(r#"{"topics":["a"],"from":-1}"#),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(
            parse_str(r#"{"topics":["a"],"x":1}"#),
            Err(RequestError::Json(_))
        ));
        assert!(matches!(parse_str("{"), Err(RequestError::Json(_))));
        assert_eq!(
            parse_str(r#"{"topics":["a"],"from":"first"}"#),
            Err(RequestError::BadFrom {
                line: 1,
                value: "first".into()
            })
        );
        assert_eq!(
            parse_str(r#"{"topics":["ok","a;from=1"]}"#),
            Err(RequestError::BadPattern {
                line: 2,
                pattern: "a;from=1".into()
            })
        );
    }

    #[test]
    fn publish() {
        assert_eq!(
            parse(Bytes::from_static(b"PUB orders\r\n{\"id\":1}\n\xff")),
            Ok(Request::Publish(Publish {
                topic: "orders".into(),
                payload: Bytes::from_static(b"{\"id\":1}\n\xff"),
            }))
        );
        assert_eq!(
            parse_str("PUB t\n"),
            Ok(Request::Publish(Publish {
                topic: "t".into(),
                payload: Bytes::new()
            }))
        );
        assert_eq!(
            parse_str("PUB t"),
            Err(RequestError::BadPublish("missing newline after the topic"))
        );
        assert_eq!(
            parse_str("PUB \nx"),
            Err(RequestError::BadPublish("invalid topic"))
        );
        assert_eq!(
            parse_str("PUB a b\nx"),
            Err(RequestError::BadPublish("invalid topic"))
        );
        assert_eq!(
            parse(Bytes::from_static(b"PUB \xff\nx")),
            Err(RequestError::BadPublish("topic is not UTF-8"))
        );
        // Without the space it is a selector named PUB.
        assert_eq!(
            parse_str("PUB"),
            Ok(Request::Subscribe(vec![sel("PUB", None)]))
        );
    }

    #[test]
    fn publish_reply_texts() {
        assert_eq!(
            &PublishReply::Ok { offset: Some(17) }.encode()[..],
            b"ok offset=17"
        );
        assert_eq!(
            &PublishReply::Err {
                reason: "no such\ntopic".into()
            }
            .encode()[..],
            b"err no such topic"
        );
        assert_eq!(
            PublishReply::parse(b"ok offset=17"),
            Some(PublishReply::Ok { offset: Some(17) })
        );
        assert_eq!(PublishReply::parse(b"ok offset=latest"), None);
        assert_eq!(
            PublishReply::parse(b"ok"),
            Some(PublishReply::Ok { offset: None })
        );
        assert_eq!(PublishReply::parse(b"okay"), None);
        assert_eq!(
            PublishReply::parse(b"err denied"),
            Some(PublishReply::Err {
                reason: "denied".into()
            })
        );
    }

    proptest! {
        #[test]
        fn any_body_parses_or_errors_without_panicking(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(Bytes::from(body));
        }

        #[test]
        fn text_selectors_round_trip(
            patterns in proptest::collection::vec("[a-z0-9._*/-]{1,12}", 1..5),
            offsets in proptest::collection::vec(proptest::option::of(any::<u64>()), 5),
        ) {
            let selectors: Vec<Selector> = patterns
                .iter()
                .zip(&offsets)
                .map(|(p, o)| sel(p, o.map(StartFrom::Offset)))
                .collect();
            let body: String = selectors
                .iter()
                .map(|s| match s.from {
                    Some(StartFrom::Offset(o)) => format!("{};from={o}\n", s.pattern),
                    _ => format!("{}\n", s.pattern),
                })
                .collect();
            prop_assert_eq!(parse_str(&body), Ok(Request::Subscribe(selectors)));
        }

        #[test]
        fn publish_reply_round_trip(offset in any::<u64>(), reason in "[^\\p{Cc}]{0,40}") {
            for reply in [PublishReply::Ok { offset: Some(offset) }, PublishReply::Ok { offset: None }, PublishReply::Err { reason: reason.clone() }] {
                prop_assert_eq!(PublishReply::parse(&reply.encode()), Some(reply));
            }
        }
    }
}
