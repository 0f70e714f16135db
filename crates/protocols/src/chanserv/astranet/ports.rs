//! The node's virtual port counter. Like AstraNet's, it is one counter per node, shared by every link, starting at
//! `1 << 24`: the first value (16 777 217) is the service's, as a Go server's named `Bind` draws it, and every
//! chanserv source gets the next one. Ports are opaque to clients (they only echo them back in a DIAL), but a
//! node-wide counter keeps every address gatewayd announces unique, as upstream's are.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Ports come from a counter that starts here.
pub const PORT_BASE: u32 = 1 << 24;

/// The port the service is bound on: the counter's first value.
pub const SERVICE_PORT: u32 = PORT_BASE + 1;

/// A shared handle on the counter; clones count together.
#[derive(Debug, Clone)]
pub struct PortCounter(Arc<AtomicU32>);

impl Default for PortCounter {
    fn default() -> Self {
        PortCounter::new()
    }
}

impl PortCounter {
    /// A fresh counter whose first value is already taken by the service.
    pub fn new() -> PortCounter {
        PortCounter(Arc::new(AtomicU32::new(SERVICE_PORT)))
    }

    /// The next free port; `None` once all 2^32 values are used up.
    pub fn next(&self) -> Option<u32> {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                last.checked_add(1)
            })
            .ok()
            .and_then(|last| last.checked_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_sequence_after_the_service_port() {
        let a = PortCounter::new();
        let b = a.clone();
        assert_eq!(a.next(), Some(16_777_218));
        assert_eq!(b.next(), Some(16_777_219));
        assert_eq!(PortCounter::new().next(), Some(SERVICE_PORT + 1));
    }

    #[test]
    fn exhaustion_is_reported_not_wrapped() {
        let c = PortCounter(Arc::new(AtomicU32::new(u32::MAX - 1)));
        assert_eq!(c.next(), Some(u32::MAX));
        assert_eq!(c.next(), None);
        assert_eq!(c.next(), None);
    }
}
