//! Goomerang: protobuf `Frame`s over WebSocket binary messages (`go.eloylp.dev/goomerang`).
//!
//! The pure, IO-free half of the adapter:
//! - [`proto`]: the generated `goomerang.protocol` messages;
//! - [`codec`]: one binary WebSocket message ⇄ a [`Command`], and the frames gatewayd sends;
//! - [`headers`]: `Frame.headers` with protobuf map semantics, in wire order;
//! - [`limits`]: the size limits, checked before anything is decoded;
//! - [`mapping`]: how commands and deliveries translate to and from the bus (reserved topics, headers,
//!   the wrapper kind for foreign payloads);
//! - [`routing`]: the topics plain sends go to, and the kinds foreign messages are delivered as, per topic;
//! - [`close`]: the close-handshake policy (always close code 1000).
//!
//! And the half that meets the bus and the network:
//! - [`config`]: the `[goomerang]` config section; `settings`: what connections take of it; `reload`: applies a
//!   new one;
//! - [`session`]: one connection's subscriptions, publishes, broadcasts and sync requests over the bus;
//! - [`listener`]: the `goomerang.ws` WebSocket listener that drives the sessions.

pub mod bridge;
pub mod close;
pub mod codec;
pub mod config;
pub mod listener;
mod reload;
pub mod session;
mod settings;

pub use bridge::routing::{ForeignKinds, SendRoutes};
pub use bridge::WrapperKind;
pub use close::{CloseFrame, CloseHandshake, CloseReason, PeerClose};
pub use codec::headers::FrameHeaders;
pub use codec::limits::{LimitExceeded, Limits};
pub use codec::{
    decode, encode_command, encode_delivery, encode_sync_reply, Command, DecodeError, Delivery,
};
pub use config::Config;
pub use listener::start;
pub use session::{Inbound, Session, SessionSettings};
