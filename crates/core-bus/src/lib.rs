//! gatewayd's core bus: one protocol-neutral [`Envelope`], canonical [`Topic`]s with wildcard [`Pattern`]s, and a
//! [`Bus`] that delivers every publish to all matching fanout subscribers and one member of the topic's anycast
//! group. A subscriber that falls behind slows its publishers down ([`Backpressure`]) before it is cut. Adapters talk
//! to it only through [`Bus`] and [`Mailbox`]; it knows nothing about wire formats.

mod ack;
mod anycast;
mod buckets;
mod bus;
pub mod cluster;
pub mod config;
mod durable;
pub mod encoding;
mod envelope;
pub mod events;
mod flow;
pub mod history;
mod index;
mod level;
mod mailbox;
mod matching;
pub mod metrics;
pub mod names;
pub mod presence;
mod queue;
mod router;
mod shared;
pub mod text;
mod topic;
pub mod trace;

pub use ack::AckHandle;
pub use anycast::{Credit, GroupKey, GroupStats};
pub use bus::{Bus, ClusterDelivery, TopicStats};
pub use durable::{DurableError, DurableOwner, NotOwner, SOURCE_TOPIC_HEADER};
pub use envelope::{
    now_ms, ConnectionId, Envelope, Headers, MessageId, Origin, Position, Protocol,
    TRACEPARENT_HEADER, TRACESTATE_HEADER,
};
pub use flow::{Backpressure, FlowStatus};
pub use mailbox::Mailbox;
pub use matching::Segment;
pub use names::SubscribeError;
pub use queue::{Closed, Delivery, MailboxOptions, SubscriptionId};
pub use router::PublishOutcome;
pub use topic::{
    escape_token_into, unescape_token, Pattern, Topic, TopicError, MAX_TOPIC_BYTES,
    MAX_TOPIC_SEGMENTS,
};
