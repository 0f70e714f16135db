//! What the NATS and Redis backends share: the names of the cluster metrics (`docs/metrics.md`), the filter of
//! recently received message ids, and the hex text that keys presence members.

use std::collections::{HashSet, VecDeque};

use core_bus::MessageId;

pub(super) const FORWARDED: &str = "gatewayd_cluster_forwarded_total";
pub(super) const RECEIVED: &str = "gatewayd_cluster_received_total";
pub(super) const FAILED: &str = "gatewayd_cluster_failed_total";
pub(super) const CONNECTED: &str = "gatewayd_cluster_connected";

/// Ids of recently received envelopes: overlapping plain subscriptions deliver the same message more than once.
#[derive(Default)]
pub(super) struct Recent {
    seen: HashSet<MessageId>,
    order: VecDeque<MessageId>,
}

impl Recent {
    const CAPACITY: usize = 8_192;

    pub(super) fn first_time(&mut self, id: MessageId) -> bool {
        if !self.seen.insert(id) {
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
