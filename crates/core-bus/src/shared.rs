//! Named anycast groups on patterns (MQTT shared subscriptions, `$share/<name>/<filter>`): one group per name and
//! pattern, so groups of different names on one pattern each get every message, and the pattern may have
//! wildcards. The group is an entry of its pattern in the index, offered every message the pattern matches (while
//! a cluster backend owns groups, only the messages the backend hands this node's group:
//! [`crate::ClusterDelivery::Shared`]), and it is removed with its last member. Joining
//! and removal happen under the index writer lock, so a member never joins a group that is being removed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::ack::MemberId;
use crate::anycast::{Group, GroupKey};
use crate::config::GroupPolicy;
use crate::index::{FanoutTarget, Index, Receiver};
use crate::queue::SubscriptionId;
use crate::topic::Pattern;

struct Entry {
    /// The group's id in the index.
    id: SubscriptionId,
    group: Arc<Group>,
}

/// The named groups that exist, by name and pattern.
#[derive(Default)]
pub(crate) struct SharedGroups(Mutex<HashMap<GroupKey, Entry>>);

/// A member that joined a named group.
pub(crate) struct Joined {
    pub(crate) group: Arc<Group>,
    pub(crate) member: MemberId,
}

impl SharedGroups {
    pub(crate) fn groups(&self) -> Vec<Arc<Group>> {
        self.0.lock().values().map(|e| e.group.clone()).collect()
    }

    /// Under the index writer lock: the group `name` on `pattern`, created with `policy` when it does not exist (then
    /// with `index` plus the new group).
    pub(crate) fn group(
        &self,
        index: &Index,
        name: &str,
        pattern: &Pattern,
        policy: GroupPolicy,
    ) -> (Option<Index>, Arc<Group>) {
        let key = GroupKey::Shared {
            name: name.into(),
            pattern: pattern.clone(),
        };
        let mut groups = self.0.lock();
        let (group, next) = match groups.get(&key) {
            Some(entry) => (entry.group.clone(), None),
            None => {
                let group = Arc::new(Group::new(key.clone(), policy));
                let id = SubscriptionId::next();
                let target = FanoutTarget {
                    receiver: Receiver::Shared(group.clone()),
                    subscription: id,
                };
                groups.insert(
                    key,
                    Entry {
                        id,
                        group: group.clone(),
                    },
                );
                (group, Some(index.with_fanout(pattern, target)))
            }
        };
        (next, group)
    }

    /// Under the index writer lock: removes `group` if it is a named group with no member left, and returns `index`
    /// without it.
    pub(crate) fn remove_idle(&self, index: &Index, group: &Arc<Group>) -> Option<Index> {
        let GroupKey::Shared { pattern, .. } = group.key() else {
            return None;
        };
        let mut groups = self.0.lock();
        let id = groups
            .get(group.key())
            .filter(|e| Arc::ptr_eq(&e.group, group) && group.is_idle())
            .map(|e| e.id)?;
        groups.remove(group.key());
        Some(index.without_fanout(pattern, id))
    }
}
