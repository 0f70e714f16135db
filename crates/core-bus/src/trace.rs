//! The hook through which the daemon records a message's path as trace spans: when a local publish enters the bus,
//! when it goes to and comes from other nodes, and when a subscriber's connection takes a delivery from its queue. The bus knows no tracing library; without
//! a hook (the default) nothing is recorded and nothing is spent.

use crate::envelope::{Envelope, Protocol};

pub trait TraceHook: Send + Sync {
    /// A local publish enters the bus. The hook records the ingress span and may set `envelope.traceparent` to it,
    /// so that the spans of its deliveries, on this node and on others, join the same trace.
    fn published(&self, envelope: &mut Envelope);

    /// A connection of protocol `subscriber` took `envelope` from its queue to write it.
    fn delivered(&self, subscriber: Protocol, envelope: &Envelope);

    /// `envelope`, published here, leaves for the other nodes through the cluster backend.
    fn forwarded(&self, envelope: &Envelope);

    /// `envelope` arrived from another node.
    fn arrived(&self, envelope: &Envelope);
}
