//! Canonical topics and patterns as Redis keys and Pub/Sub channels under the configured key prefix. A topic's
//! envelopes travel on the channel `<prefix>topic:<canonical topic>`; an anycast claim is the key
//! `<prefix>claim:<message id>` for the topic's group and `<prefix>claim:<message id>:<tag>` for a named group (tag:
//! `shared::share_tag`). A pattern becomes the exact channel of its literal head when it has no wildcard,
//! else a glob on that head (`PSUBSCRIBE <prefix>topic:<head>.*`, plus the bare head for `#`'s zero-token case):
//! Redis globs cannot express a single token, so the receiving node's own index does the exact matching. With the
//! ml2 layout, fanout subscriptions add upstream MessageLoop's channels (`ml2_keys.rs`).

use core_bus::{MessageId, Pattern, Segment, Topic};

/// A Pub/Sub subscription: an exact channel or a glob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Channel {
    Exact(String),
    Glob(String),
}

#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
    /// `messageloop_layout = "ml2"`: fanout interest also listens on the ml2 Pub/Sub channels.
    ml2: bool,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
            ml2: false,
        }
    }

    /// Keys whose fanout subscriptions include upstream MessageLoop's channels (`ml2_keys.rs`).
    pub(super) fn with_ml2(self) -> Keys {
        Keys { ml2: true, ..self }
    }

    /// The subscriptions a local fanout subscriber of `pattern` needs (upstream's first, so that a node
    /// subscribed to gatewayd's channel of a pattern is subscribed to all of them).
    pub(super) fn fanout(&self, pattern: &Pattern) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.ml2 {
            channels = super::ml2_keys::subscriptions(pattern);
        }
        channels.extend(self.pattern(pattern));
        channels
    }

    pub(super) fn topic(&self, topic: &Topic) -> String {
        format!("{}topic:{topic}", self.prefix)
    }

    /// The channel of presence announcements.
    pub(super) fn presence_channel(&self) -> String {
        format!("{}presence", self.prefix)
    }

    /// The hash of one node's presence members.
    pub(super) fn presence_hash(&self, node: u64) -> String {
        format!("{}presence:{node:016x}", self.prefix)
    }

    /// The set of nodes (hex ids) that keep a presence hash.
    pub(super) fn presence_nodes(&self) -> String {
        format!("{}presence-nodes", self.prefix)
    }

    pub(super) fn claim(&self, id: MessageId) -> String {
        format!("{}claim:{:032x}", self.prefix, id.0)
    }

    /// The claim of a message for the named group `tag` (`shared::share_tag`).
    pub(super) fn shared_claim(&self, id: MessageId, tag: &str) -> String {
        format!("{}:{tag}", self.claim(id))
    }

    /// The subscriptions whose union covers every topic `pattern` matches.
    pub(super) fn pattern(&self, pattern: &Pattern) -> Vec<Channel> {
        let mut head: Vec<String> = Vec::new();
        for segment in pattern.segments() {
            let zero_tokens = match segment {
                Segment::Literal(token) => {
                    head.push(token.to_string());
                    continue;
                }
                Segment::Star | Segment::Gt => false,
                Segment::Hash => true,
            };
            let base = format!("{}topic:", self.prefix);
            if head.is_empty() {
                return vec![Channel::Glob(format!("{}*", escape(&base)))];
            }
            let exact = format!("{base}{}", head.join("."));
            let glob = Channel::Glob(format!("{}.*", escape(&exact)));
            return if zero_tokens {
                vec![Channel::Exact(exact), glob]
            } else {
                vec![glob]
            };
        }
        vec![Channel::Exact(format!(
            "{}topic:{}",
            self.prefix,
            head.join(".")
        ))]
    }
}

/// Escapes Redis glob metacharacters.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(pattern: &str) -> Vec<Channel> {
        Keys::new("gw:").pattern(&Pattern::parse(pattern).unwrap())
    }

    #[test]
    fn patterns_map_onto_channels_and_globs() {
        let exact = |s: &str| Channel::Exact(s.to_owned());
        let glob = |s: &str| Channel::Glob(s.to_owned());
        assert_eq!(channels("a.b"), [exact("gw:topic:a.b")]);
        assert_eq!(channels("a.*.c"), [glob("gw:topic:a.*")]);
        assert_eq!(channels("a.>"), [glob("gw:topic:a.*")]);
        assert_eq!(channels("a.#"), [exact("gw:topic:a"), glob("gw:topic:a.*")]);
        assert_eq!(channels("#"), [glob("gw:topic:*")]);
        assert_eq!(channels("*.b"), [glob("gw:topic:*")]);
        assert_eq!(
            Keys::new("x[1]:").pattern(&Pattern::parse("a.>").unwrap()),
            [glob("x\\[1\\]:topic:a.*")]
        );
        let keys = Keys::new("gw:");
        assert_eq!(
            keys.topic(&Topic::from_dotted(b"x y.z")),
            "gw:topic:x%20y.z"
        );
        assert_eq!(keys.presence_hash(0xab), "gw:presence:00000000000000ab");
        assert_eq!(keys.presence_nodes(), "gw:presence-nodes");
        assert_eq!(
            keys.claim(MessageId(0xab)),
            "gw:claim:000000000000000000000000000000ab"
        );
        assert_eq!(
            keys.shared_claim(MessageId(0xab), "00ff"),
            "gw:claim:000000000000000000000000000000ab:00ff"
        );
    }
}
