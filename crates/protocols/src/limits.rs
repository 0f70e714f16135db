//! Limits every listener shares. Protocol-specific size limits live in each protocol's config; all of them are
//! listed in `docs/limits.md`.

use serde::{Deserialize, Serialize};

/// Connection-level limits of one listener; they can change on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_subscriptions_per_connection: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 100_000,
            max_subscriptions_per_connection: 1_024,
        }
    }
}
