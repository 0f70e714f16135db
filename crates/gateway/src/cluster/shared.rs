//! What the NATS and Redis backends share: the names of the cluster metrics (`docs/metrics.md`), the filter of
//! recently received message ids, the hex text that keys presence members, how an interest is delivered and the
//! tag that names a named group (MQTT shared subscription) on the wire.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

use core_bus::events::Interested;
use core_bus::{ClusterDelivery, MessageId, Pattern};

pub(super) const FORWARDED: &str = "gatewayd_cluster_forwarded_total";
pub(super) const RECEIVED: &str = "gatewayd_cluster_received_total";
pub(super) const FAILED: &str = "gatewayd_cluster_failed_total";
pub(super) const CONNECTED: &str = "gatewayd_cluster_connected";

/// Ids of recently received envelopes (or other keys of one delivery): overlapping subscriptions deliver the same
/// message more than once.
pub(super) struct Recent<K = MessageId> {
    seen: HashSet<K>,
    order: VecDeque<K>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Recent {
            seen: HashSet::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Recent<K> {
    const CAPACITY: usize = 8_192;

    pub(super) fn first_time(&mut self, id: K) -> bool {
        if !self.seen.insert(id.clone()) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// How the cluster delivers to a local interest on `pattern`.
pub(super) fn delivery(pattern: &Pattern, by: Interested) -> ClusterDelivery {
    match by {
        Interested::Fanout => ClusterDelivery::Fanout,
        Interested::Group => ClusterDelivery::Group,
        Interested::Shared { name } => ClusterDelivery::Shared {
            name,
            pattern: pattern.clone(),
        },
    }
}

/// The named group `name` on `pattern` as 16 hex digits, the same on every node and every build: a 64-bit FNV-1a
/// hash of the name's length, the name and the pattern's canonical text (NATS queue names take a restricted
/// charset; Redis keys stay short).
pub(super) fn share_tag(name: &str, pattern: &Pattern) -> String {
    let length = (name.len() as u64).to_be_bytes();
    let pattern = pattern.to_string();
    let bytes = length
        .iter()
        .chain(name.as_bytes())
        .chain(pattern.as_bytes());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_tag_is_stable_and_tells_names_and_patterns_apart() {
        let tag = |name, pattern| share_tag(name, &Pattern::parse(pattern).expect("pattern"));
        assert_eq!(tag("g", "shared.jobs"), "b02cedd5ea433cd8");
        assert_ne!(tag("h", "shared.jobs"), tag("g", "shared.jobs"));
        assert_ne!(tag("g", "shared.#"), tag("g", "shared.jobs"));
        assert_ne!(tag("ga", "b"), tag("g", "ab"));
    }
}
