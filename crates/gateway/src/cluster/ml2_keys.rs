//! Upstream MessageLoop G2's Redis key layout (`messageloop_layout = "ml2"`; docs/cluster.md, "Sharing a Redis with
//! MessageLoop nodes"): which bus topics are MessageLoop channels, their keys (`ml2:stream:<channel>`,
//! `ml2:stream:seq:<channel>`, `ml2:stream:retained:<channel>`, Pub/Sub `ml2:pubsub:<channel>`, the epoch
//! `ml2:broker:epoch`), the Pub/Sub subscriptions a pattern needs (`<prefix>.*` glob plus the bare prefix for a
//! zero-token wildcard, as upstream compiles `**`), and the number gatewayd's bus uses for the epoch's UUID.

use core_bus::{unescape_token, Pattern, Segment, Topic};

use super::redis_keys::{escape, Channel};

pub(super) const PUBSUB: &str = "ml2:pubsub:";
pub(super) const STREAM: &str = "ml2:stream:";
pub(super) const EPOCH_KEY: &str = "ml2:broker:epoch";

/// The MessageLoop channel `topic` is: its dotted text when that reads back as the same topic, is not internal
/// (`$…`) and has no `*`. Other topics keep gatewayd's own layout.
pub(super) fn channel(topic: &Topic) -> Option<String> {
    let dotted = topic.to_dotted()?;
    let valid = !dotted.starts_with('$')
        && !dotted.contains('*')
        && !dotted.split('.').any(str::is_empty)
        && Topic::try_from_dotted(dotted.as_bytes()).ok().as_ref() == Some(topic);
    valid.then_some(dotted)
}

/// The topic of a channel name read from Redis (`None` for names no MessageLoop node would publish).
pub(super) fn topic(channel: &str) -> Option<Topic> {
    let topic = Topic::try_from_dotted(channel.as_bytes()).ok()?;
    (self::channel(&topic).as_deref() == Some(channel)).then_some(topic)
}

pub(super) fn pubsub(channel: &str) -> String {
    format!("{PUBSUB}{channel}")
}

pub(super) fn stream(channel: &str) -> String {
    format!("{STREAM}{channel}")
}

pub(super) fn seq_key(channel: &str) -> String {
    format!("{STREAM}seq:{channel}")
}

pub(super) fn retained_key(channel: &str) -> String {
    format!("{STREAM}retained:{channel}")
}

/// The literal head of `pattern` as channel text and the wildcard after it, if any; `None` when the pattern can
/// only match internal topics or tokens no channel has.
fn head(pattern: &Pattern) -> Option<(String, Option<&Segment>)> {
    let mut tokens: Vec<String> = Vec::new();
    let mut wildcard = None;
    for segment in pattern.segments() {
        let Segment::Literal(token) = segment else {
            wildcard = Some(segment);
            break;
        };
        let token = String::from_utf8(unescape_token(token).ok()?).ok()?;
        if token.is_empty() || token.contains(['.', '*']) {
            return None;
        }
        tokens.push(token);
    }
    let head = tokens.join(".");
    (!head.starts_with('$')).then_some((head, wildcard))
}

/// The `ml2:pubsub:` subscriptions whose union covers every MessageLoop channel `pattern` matches (empty when
/// it matches none).
pub(super) fn subscriptions(pattern: &Pattern) -> Vec<Channel> {
    let Some((head, wildcard)) = head(pattern) else {
        return Vec::new();
    };
    let Some(wildcard) = wildcard else {
        return vec![Channel::Exact(pubsub(&head))];
    };
    if head.is_empty() {
        return vec![Channel::Glob(format!("{}*", escape(PUBSUB)))];
    }
    let glob = Channel::Glob(format!("{}.*", escape(&pubsub(&head))));
    if matches!(wildcard, Segment::Hash) {
        vec![Channel::Exact(pubsub(&head)), glob]
    } else {
        vec![glob]
    }
}

/// The `SCAN MATCH` glob of the history streams of the channels `pattern` can match.
pub(super) fn stream_glob(pattern: &Pattern) -> Option<String> {
    let (head, wildcard) = head(pattern)?;
    Some(match wildcard {
        None => escape(&stream(&head)),
        Some(_) if head.is_empty() => format!("{}*", escape(STREAM)),
        Some(_) => format!("{}*", escape(&stream(&head))),
    })
}

/// The bus epoch standing for the epoch text upstream keeps in [`EPOCH_KEY`] (a UUID): 64-bit FNV-1a of the
/// text, halved to stay clear of the top bit, never 0. Every gatewayd node computes the same number.
pub(super) fn epoch_number(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash >> 1).max(1)
}

/// A random UUID (version 4) as text, for a Redis where no node created the epoch yet.
pub(super) fn new_epoch() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = super::shared::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(pattern: &str) -> Vec<Channel> {
        subscriptions(&Pattern::parse(pattern).expect("pattern"))
    }

    #[test]
    fn channels_are_plain_dotted_topics() {
        let topic = |s: &str| Topic::try_from_dotted(s.as_bytes()).expect("topic");
        assert_eq!(channel(&topic("chat.room")).as_deref(), Some("chat.room"));
        assert_eq!(channel(&topic("$messageloop.presence.x")), None);
        assert_eq!(channel(&Topic::from_tokens([b"a.b".as_slice()])), None);
        assert_eq!(self::topic("chat.room"), Some(topic("chat.room")));
        assert_eq!(self::topic("a..b"), None);
        assert_eq!(self::topic("$x"), None);
        assert_eq!(seq_key("a.b"), "ml2:stream:seq:a.b");
        assert_eq!(retained_key("a.b"), "ml2:stream:retained:a.b");
    }

    #[test]
    fn patterns_compile_like_upstream() {
        let exact = |s: &str| Channel::Exact(s.to_owned());
        let glob = |s: &str| Channel::Glob(s.to_owned());
        assert_eq!(subs("chat.room"), [exact("ml2:pubsub:chat.room")]);
        assert_eq!(subs("chat.*"), [glob("ml2:pubsub:chat.*")]);
        assert_eq!(
            subs("chat.#"),
            [exact("ml2:pubsub:chat"), glob("ml2:pubsub:chat.*")]
        );
        assert_eq!(subs("#"), [glob("ml2:pubsub:*")]);
        assert_eq!(subs("$messageloop.presence.x"), []);
        assert_eq!(subs("$inbox.>"), []);
        let pattern = |s: &str| Pattern::parse(s).expect("pattern");
        assert_eq!(
            stream_glob(&pattern("chat.#")).as_deref(),
            Some("ml2:stream:chat*")
        );
        assert_eq!(
            stream_glob(&pattern("chat.room")).as_deref(),
            Some("ml2:stream:chat.room")
        );
    }

    #[test]
    fn epochs_are_uuids_numbered_alike_everywhere() {
        let epoch = new_epoch();
        assert_eq!(epoch.len(), 36);
        assert_eq!(epoch.as_bytes()[14], b'4');
        assert_eq!(epoch_number(&epoch), epoch_number(&epoch.clone()));
        assert_ne!(epoch_number("a"), epoch_number("b"));
        assert!(epoch_number("") < 1 << 63);
    }
}
