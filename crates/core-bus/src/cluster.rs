//! How a bus reaches other gatewayd nodes. The default is [`SingleNode`]: no other node, no external service.

use std::sync::Arc;

use serde::Serialize;

use crate::envelope::Envelope;
use crate::events::BusEvent;
use crate::presence::PresenceChange;
use crate::topic::Topic;

/// Who numbers a topic with history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequencing {
    /// The bus: dense offsets in a per-process epoch.
    Local,
    /// The backend's log: a local publish only goes to [`ClusterBackend::forward`]; every node, the publishing
    /// one included, gets it back with its position through [`crate::Bus::publish_sequenced`].
    Cluster {
        /// The log's epoch: the epoch of every position it assigns.
        epoch: u64,
    },
    /// The backend's log, which is unreachable: the message is delivered on this node only, without a position
    /// and without being recorded.
    Unavailable,
}

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
    /// Sends a locally published envelope to the nodes that have interest in its topic; `groups` says whether
    /// the cluster still has its anycast groups to serve.
    fn forward(&self, envelope: &Arc<Envelope>, groups: Groups);
    /// Local interest changed.
    fn interest(&self, event: &BusEvent);
    /// True while the backend delivers anycast group messages cluster-wide (it picks the node); the publishing
    /// node then does only its local fanout. False falls back to local group delivery (for example while the
    /// cluster link is down).
    fn owns_groups(&self) -> bool;
    fn state(&self) -> ClusterState;
    /// A member joined or left a topic on this node ([`crate::Bus::share_presence`]).
    fn presence(&self, _change: &PresenceChange) {}
    /// Who numbers `topic`; asked only for topics with history.
    fn sequencing(&self, _topic: &Topic) -> Sequencing {
        Sequencing::Local
    }
    /// The text a log's epoch goes by on the wire when it is not its decimal number (a log shared with
    /// other software that names its epochs, such as MessageLoop's `ml2:broker:epoch` UUID).
    fn epoch_name(&self, _epoch: u64) -> Option<String> {
        None
    }
    /// The epoch an [`ClusterBackend::epoch_name`] stands for.
    fn epoch_named(&self, _name: &str) -> Option<u64> {
        None
    }
}

/// Who delivers a forwarded envelope to anycast groups (the topic's group and named groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Groups {
    /// The backend owned the groups when the envelope was published: one node's group takes it.
    Cluster,
    /// The publishing node delivered it to its own groups (the backend did not own them, for example while
    /// disconnected): other nodes deliver it to their fanout subscribers only, even when it reaches them late.
    Served,
}

/// The embedded single-node bus.
#[derive(Debug, Default)]
pub struct SingleNode;

impl ClusterBackend for SingleNode {
    fn forward(&self, _envelope: &Arc<Envelope>, _groups: Groups) {}

    fn interest(&self, _event: &BusEvent) {}

    fn owns_groups(&self) -> bool {
        false
    }

    fn state(&self) -> ClusterState {
        ClusterState::Standalone
    }
}
