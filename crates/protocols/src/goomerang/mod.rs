//! Goomerang: protobuf `Frame`s over WebSocket binary messages (`go.eloylp.dev/goomerang`), on the wire as
//! docs/protocols/goomerang.md describes. The parts, in the adapter contract's order:
//! - [`config`]: the `[goomerang]` config section;
//! - `settings`: what connections take of it;
//! - `reload`: applies a new section to the running listener;
//! - [`codec`]: one binary WebSocket message ⇄ a [`Command`], and the frames gatewayd sends; with
//!   [`codec::proto`] (the generated `goomerang.protocol` messages), [`codec::headers`] (`Frame.headers` with
//!   protobuf map semantics, in wire order) and [`codec::limits`] (the size limits, checked before anything is
//!   decoded);
//! - [`bridge`]: how commands and deliveries translate to and from the bus (reserved topics, headers, the wrapper
//!   kind for foreign payloads); [`bridge::routing`]: the topics plain sends go to, and the kinds foreign
//!   messages are delivered as, per topic;
//! - [`session`]: one connection's subscriptions, publishes, broadcasts and sync requests over the bus, sans IO;
//! - `driver`: the tokio loop of one upgraded connection (reads, deliveries, idle pings, closing);
//! - [`listener`]: the `goomerang.ws` WebSocket listener: bind, accept, TLS, upgrade, one driver per connection.
//!
//! And one part of its own:
//! - [`close`]: the close-handshake policy (always close code 1000), used by the codec, the session and the
//!   driver.

pub mod bridge;
pub mod close;
pub mod codec;
pub mod config;
mod driver;
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
    decode, encode_command, encode_delivery, encode_publish, encode_sync_reply, Command,
    DecodeError, Delivery,
};
pub use config::Config;
pub use listener::start;
pub use session::{Inbound, Session, SessionSettings};
