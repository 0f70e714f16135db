//! 5.0 topic aliases from gatewayd to the client (§3.3.2.3.4): the first PUBLISH of a topic carries its name and a
//! new alias, later ones only the alias (and an empty name). Aliases go to the first topics sent, up to the lower
//! of the client's Topic Alias Maximum and `mqtt.topic_alias_maximum`, and are never reassigned; like every alias
//! they last as long as the network connection, so a resumed session starts without any.

use std::collections::HashMap;

use mqttbytes::v5::Publish;

use crate::mqtt::bridge;

/// The aliases this connection has told its client.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    max: u16,
    by_topic: HashMap<String, u16>,
}

/// A new alias put on a publish; the client knows it only once that publish is written.
#[derive(Debug)]
pub(crate) struct NewAlias {
    topic: String,
    alias: u16,
}

impl OutboundAliases {
    /// `max` aliases at most (0: none).
    pub(crate) fn new(max: u16) -> OutboundAliases {
        OutboundAliases {
            max,
            by_topic: HashMap::new(),
        }
    }

    /// Puts the topic's alias on `publish`: a known one replaces the topic name, otherwise a free one is added
    /// next to the name and returned, to [`OutboundAliases::remember`] once the publish is written.
    pub(crate) fn apply(&self, publish: &mut Publish) -> Option<NewAlias> {
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            set_alias(publish, alias);
            publish.topic.clear();
            return None;
        }
        let alias = u16::try_from(self.by_topic.len() + 1)
            .ok()
            .filter(|&alias| alias <= self.max)?;
        set_alias(publish, alias);
        Some(NewAlias {
            topic: publish.topic.clone(),
            alias,
        })
    }

    pub(crate) fn remember(&mut self, new: NewAlias) {
        self.by_topic.insert(new.topic, new.alias);
    }
}

fn set_alias(publish: &mut Publish, alias: u16) {
    publish
        .properties
        .get_or_insert_with(bridge::empty_properties)
        .topic_alias = Some(alias);
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mqttbytes::QoS;

    use super::*;

    fn publish(topic: &str) -> Publish {
        Publish::from_bytes(topic, QoS::AtMostOnce, Bytes::from_static(b"x"))
    }

    fn alias(publish: &Publish) -> Option<u16> {
        publish.properties.as_ref().and_then(|p| p.topic_alias)
    }

    #[test]
    fn first_publish_names_the_topic_later_ones_only_the_alias() {
        let mut aliases = OutboundAliases::new(2);
        let mut first = publish("a/b");
        let new = aliases.apply(&mut first).expect("a new alias");
        assert_eq!((first.topic.as_str(), alias(&first)), ("a/b", Some(1)));
        aliases.remember(new);
        let mut second = publish("a/b");
        assert!(aliases.apply(&mut second).is_none());
        assert_eq!((second.topic.as_str(), alias(&second)), ("", Some(1)));
    }

    #[test]
    fn an_alias_not_remembered_is_offered_again_and_none_past_the_maximum() {
        let mut aliases = OutboundAliases::new(1);
        let mut dropped = publish("a");
        assert!(aliases.apply(&mut dropped).is_some());
        let mut first = publish("a");
        let new = aliases.apply(&mut first).expect("offered again");
        aliases.remember(new);
        let mut other = publish("b");
        assert!(aliases.apply(&mut other).is_none());
        assert_eq!((other.topic.as_str(), alias(&other)), ("b", None));
        let none = OutboundAliases::new(0);
        let mut plain = publish("a");
        assert!(none.apply(&mut plain).is_none());
        assert_eq!(alias(&plain), None);
    }
}
