//! Presence across nodes, protocol-neutral: an adapter reports who is present on a topic on this node (a member id
//! and opaque data the adapter encodes) with [`crate::Bus::share_presence`]; a cluster backend replicates those
//! changes and reports other nodes' members with [`crate::Bus::presence_from_cluster`], which adapters read back
//! with [`crate::Bus::remote_presence`]. Without a backend nothing is shared and adapters keep their own table.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::topic::Topic;

/// One member joining (with its data) or leaving (`data: None`) a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub topic: Topic,
    pub member: String,
    pub data: Option<Bytes>,
}

/// Members other nodes reported, by topic then member id.
#[derive(Debug, Default)]
pub(crate) struct RemotePresence {
    topics: Mutex<HashMap<Topic, BTreeMap<String, Bytes>>>,
}

impl RemotePresence {
    pub(crate) fn apply(&self, change: PresenceChange) {
        let mut topics = self.topics.lock();
        match change.data {
            Some(data) => {
                topics
                    .entry(change.topic)
                    .or_default()
                    .insert(change.member, data);
            }
            None => {
                if let Some(members) = topics.get_mut(&change.topic) {
                    members.remove(&change.member);
                    if members.is_empty() {
                        topics.remove(&change.topic);
                    }
                }
            }
        }
    }

    pub(crate) fn members(&self, topic: &Topic) -> Vec<(String, Bytes)> {
        self.topics.lock().get(topic).map_or_else(Vec::new, |m| {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(topic: &str, member: &str, data: Option<&'static str>) -> PresenceChange {
        PresenceChange {
            topic: Topic::parse(topic).unwrap(),
            member: member.into(),
            data: data.map(|d| Bytes::from_static(d.as_bytes())),
        }
    }

    #[test]
    fn joins_and_leaves_by_topic() {
        let remote = RemotePresence::default();
        remote.apply(change("a", "m2", Some("two")));
        remote.apply(change("a", "m1", Some("one")));
        remote.apply(change("b", "m1", Some("b")));
        remote.apply(change("a", "m1", Some("one again")));
        let a = Topic::parse("a").unwrap();
        assert_eq!(
            remote.members(&a),
            [
                ("m1".to_owned(), Bytes::from_static(b"one again")),
                ("m2".to_owned(), Bytes::from_static(b"two"))
            ]
        );
        remote.apply(change("a", "m1", None));
        remote.apply(change("a", "m2", None));
        remote.apply(change("a", "gone", None));
        assert!(remote.members(&a).is_empty());
        assert_eq!(remote.members(&Topic::parse("b").unwrap()).len(), 1);
    }
}
