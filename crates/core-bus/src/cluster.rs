//! How a bus reaches other gatewayd nodes. The default is [`SingleNode`]: no other node, no external service.

use std::sync::Arc;

use serde::Serialize;

use crate::envelope::Envelope;
use crate::events::BusEvent;

/// What the admin API and metrics say about the cluster link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClusterState {
    /// Single node: nothing to connect to.
    Standalone,
    Connected {
        detail: String,
    },
    Disconnected {
        detail: String,
    },
}

/// A cluster link. The bus calls it for every envelope published locally and for every interest change; the
/// backend injects envelopes from other nodes with [`crate::Bus::publish_from_cluster`].
pub trait ClusterBackend: Send + Sync + 'static {
    /// Sends a locally published envelope to the nodes that have interest in its topic.
    fn forward(&self, envelope: &Arc<Envelope>);
    /// Local interest changed.
    fn interest(&self, event: &BusEvent);
    fn state(&self) -> ClusterState;
}

/// The embedded single-node bus.
#[derive(Debug, Default)]
pub struct SingleNode;

impl ClusterBackend for SingleNode {
    fn forward(&self, _envelope: &Arc<Envelope>) {}

    fn interest(&self, _event: &BusEvent) {}

    fn state(&self) -> ClusterState {
        ClusterState::Standalone
    }
}
