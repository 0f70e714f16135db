//! STOMP destination strings and what they name (docs/protocols/stomp.md, "Destinations").
//!
//! | destination | meaning |
//! |---|---|
//! | `/topic/N`, alias `/exchange/amq.topic/N` | fan-out `N`; SUBSCRIBE may use `*` / `#` words |
//! | `/queue/N`, alias `/amq/queue/N` | anycast `N` |
//! | `/temp-queue/X` | the connection's private inbox `X` (in `reply-to`, or SUBSCRIBE by its owner); `X` may be empty |
//! | `/reply-queue/O` | another connection's inbox, as rewritten into `reply-to` (`O` holds 128 random bits) |
//! | anything else | [`Destination::Unknown`]: ERROR "Unknown destination" or, by listener option, a topic |
//!
//! Names are kept as the client wrote them. Wildcards are not translated here: on SEND a topic
//! name is literal, on SUBSCRIBE [`Destination::is_pattern`] says whether it holds `*` or `#`
//! words (RabbitMQ topic syntax: `.`-separated words, `*` = one word, `#` = zero or more).

use std::fmt;

use super::error::StompError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    Topic(String),
    Queue(String),
    TempQueue(String),
    ReplyQueue(String),
    /// A destination with no prefix gatewayd knows, kept whole.
    Unknown(String),
}

const TOPIC: &str = "/topic/";
const QUEUE: &str = "/queue/";
const TEMP_QUEUE: &str = "/temp-queue/";
const REPLY_QUEUE: &str = "/reply-queue/";
const AMQ_TOPIC: &str = "/exchange/amq.topic/";
const AMQ_QUEUE: &str = "/amq/queue/";

/// Builds the variant a prefix stands for.
type Variant = fn(String) -> Destination;

/// Known prefixes, aliases included, and the variant each one makes.
const PREFIXES: [(&str, Variant); 6] = [
    (TOPIC, Destination::Topic),
    (AMQ_TOPIC, Destination::Topic),
    (QUEUE, Destination::Queue),
    (AMQ_QUEUE, Destination::Queue),
    (TEMP_QUEUE, Destination::TempQueue),
    (REPLY_QUEUE, Destination::ReplyQueue),
];

impl Destination {
    /// Parse a `destination` (or `reply-to`) header. A known prefix other than `/temp-queue/`
    /// with nothing after it is an error; an unknown prefix is [`Destination::Unknown`].
    pub fn parse(destination: &str) -> Result<Destination, StompError> {
        for (prefix, make) in PREFIXES {
            if let Some(name) = destination.strip_prefix(prefix) {
                if name.is_empty() && prefix != TEMP_QUEUE {
                    return Err(StompError::InvalidDestination {
                        destination: destination.to_owned(),
                        reason: "empty name",
                    });
                }
                return Ok(make(name.to_owned()));
            }
        }
        Ok(Destination::Unknown(destination.to_owned()))
    }

    /// The name after the prefix (the whole string for `Unknown`).
    pub fn name(&self) -> &str {
        match self {
            Destination::Topic(n)
            | Destination::Queue(n)
            | Destination::TempQueue(n)
            | Destination::ReplyQueue(n)
            | Destination::Unknown(n) => n,
        }
    }

    /// A `/topic/` name with a `*` or `#` word: a pattern when subscribing to it.
    pub fn is_pattern(&self) -> bool {
        match self {
            Destination::Topic(name) => name.split('.').any(|w| w == "*" || w == "#"),
            _ => false,
        }
    }
}

/// The canonical form (`/topic/N`, `/queue/N`, …): aliases come out with the main prefix.
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self {
            Destination::Topic(_) => TOPIC,
            Destination::Queue(_) => QUEUE,
            Destination::TempQueue(_) => TEMP_QUEUE,
            Destination::ReplyQueue(_) => REPLY_QUEUE,
            Destination::Unknown(_) => "",
        };
        write!(f, "{prefix}{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Destination {
        Destination::parse(s).unwrap()
    }

    #[test]
    fn prefixes() {
        assert_eq!(parse("/topic/a.b"), Destination::Topic("a.b".into()));
        assert_eq!(
            parse("/queue/interop-v12"),
            Destination::Queue("interop-v12".into())
        );
        assert_eq!(parse("/temp-queue/r1"), Destination::TempQueue("r1".into()));
        assert_eq!(parse("/temp-queue/"), Destination::TempQueue(String::new()));
        assert_eq!(
            parse("/reply-queue/xyz=="),
            Destination::ReplyQueue("xyz==".into())
        );
        assert_eq!(parse("/topic/a/b"), Destination::Topic("a/b".into()));
    }

    #[test]
    fn rabbitmq_aliases() {
        assert_eq!(
            parse("/exchange/amq.topic/k.x"),
            Destination::Topic("k.x".into())
        );
        assert_eq!(parse("/amq/queue/n"), Destination::Queue("n".into()));
        assert_eq!(parse("/exchange/amq.topic/k.x").to_string(), "/topic/k.x");
        assert_eq!(parse("/amq/queue/n").to_string(), "/queue/n");
    }

    #[test]
    fn unknown_prefixes_are_kept_whole() {
        for s in [
            "/bogus/interop-err",
            "demo",
            "/exchange/amq.fanout/x",
            "/topic",
            "",
            "/Topic/a",
        ] {
            assert_eq!(parse(s), Destination::Unknown(s.into()));
            assert_eq!(parse(s).to_string(), s);
        }
    }

    #[test]
    fn empty_names_are_invalid() {
        for s in ["/topic/", "/queue/", "/reply-queue/", "/amq/queue/"] {
            assert!(
                matches!(
                    Destination::parse(s),
                    Err(StompError::InvalidDestination { .. })
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn wildcards_are_whole_words_on_topics_only() {
        assert!(parse("/topic/a.*.c").is_pattern());
        assert!(parse("/topic/#").is_pattern());
        assert!(parse("/topic/a.#").is_pattern());
        assert!(!parse("/topic/a*.b").is_pattern());
        assert!(!parse("/topic/a.b#").is_pattern());
        assert!(!parse("/queue/*").is_pattern());
        assert_eq!(parse("/topic/a.*").name(), "a.*");
    }
}
