//! Named anycast groups on patterns (MQTT shared subscriptions, `$share/<name>/<filter>`): one group per name and
//! pattern, so groups of different names on one pattern each get every message, and the pattern may have
//! wildcards. The group is an entry of its pattern in the index, offered every message the pattern matches (while
//! a cluster backend owns groups, only the messages the backend hands this node's group:
//! [`crate::ClusterDelivery::Shared`]), and it is removed with its last member. Joining
//! and removal happen under the index writer lock, so a member never joins a group that is being removed.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::anycast::{Credit, Group, GroupKey, MemberId};
use crate::bus::BusInner;
use crate::config::GroupPolicy;
use crate::events::Interested;
use crate::index::{FanoutTarget, Receiver};
use crate::queue::{Queue, SubscriptionId};
use crate::topic::Pattern;

struct Entry {
    /// The group's id in the index.
    id: SubscriptionId,
    group: Arc<Group>,
}

/// The named groups that exist, by name and pattern.
#[derive(Default)]
pub(crate) struct SharedGroups(Mutex<HashMap<GroupKey, Entry>>);

impl SharedGroups {
    pub(crate) fn groups(&self) -> Vec<Arc<Group>> {
        self.0.lock().values().map(|e| e.group.clone()).collect()
    }
}

/// A member that joined a named group.
pub(crate) struct Joined {
    pub(crate) group: Arc<Group>,
    pub(crate) member: MemberId,
}

impl BusInner {
    /// Adds `mailbox`'s `subscription` to the group `name` on `pattern` with `credit`, creating the group with
    /// `policy` when it does not exist.
    pub(crate) fn join_shared(
        &self,
        name: &str,
        pattern: &Pattern,
        policy: GroupPolicy,
        mailbox: Arc<Queue>,
        subscription: SubscriptionId,
        credit: Credit,
    ) -> Joined {
        let key = GroupKey::Shared {
            name: name.into(),
            pattern: pattern.clone(),
        };
        let (joined, created) = self.with_writer(|index| {
            let mut groups = self.shared_groups.0.lock();
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
            let member = group.join(mailbox, subscription, credit);
            let created = next.is_some();
            (next, (Joined { group, member }, created))
        });
        if created {
            // The backend makes the group one of the cluster's.
            let by = Interested::Shared { name: name.into() };
            self.emit_interest(pattern, by, true);
        }
        joined
    }

    /// Removes a named group that has no member left.
    pub(crate) fn collect_shared(&self, group: &Arc<Group>) {
        let GroupKey::Shared { name, pattern } = group.key() else {
            return;
        };
        let removed = self.with_writer(|index| {
            let mut groups = self.shared_groups.0.lock();
            let current = groups.get(group.key());
            let Some(id) = current
                .filter(|e| Arc::ptr_eq(&e.group, group) && group.is_idle())
                .map(|e| e.id)
            else {
                return (None, false);
            };
            groups.remove(group.key());
            (Some(index.without_fanout(pattern, id)), true)
        });
        if removed {
            let by = Interested::Shared { name: name.clone() };
            self.emit_interest(pattern, by, false);
        }
    }
}
