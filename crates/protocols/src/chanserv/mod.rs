//! chanserv over AstraNet: gatewayd as a chanserv server that unchanged Go clients (`LookupAndPost`) can use
//! (`docs/protocols/chanserv.md`).
//!
//! The parts, in the adapter contract's order (`docs/architecture.md`, "An adapter"):
//!
//! * [`config`]: the `[chanserv]` section; `settings`: what connections take of it; `reload`: applies a new one
//!   to the running listener, for the connections it accepts from then on.
//! * [`codec`]: bytes ↔ chanserv messages, pure: frames (u64-LE length prefix, lz4, source announcements), the
//!   `AUTH <token>` line, the request-body grammar.
//! * [`bridge`]: chanserv message ↔ bus envelope: `PUB` → envelope, selector → canonical pattern, delivery →
//!   frame and its `topic=` source header.
//! * [`session`]: one connection's sans-IO state machine (AstraNet link + chanserv server); it alone calls the
//!   bus. It reads its requests' mailboxes itself (`poll_deliveries`), each only while that request's sources
//!   have room.
//! * `driver`: the tokio task of one connection: socket bytes, timers and deliveries into the session, what it
//!   returns onto the socket.
//! * [`listener`]: `chanserv.tcp`, started by [`start`]: binds, accepts, hands each connection to a driver.
//!
//! chanserv's own parts:
//!
//! * [`astranet`]: the multiplexer: op codec, link state machine, stream table, flow control.
//! * [`channel`]: the request reader of a master stream and the outbox that feeds frames into a stream's credit.
//! * [`subscription`]: a subscribe request on the bus: its mailbox, one source per topic.
//! * [`timeouts`]: the server timeouts (`[chanserv.timeouts]`) and one stream's deadlines.
//!
//! Everything but the driver and the listener is pure: no sockets, no clock of its own.

pub mod config;
mod reload;
mod settings;

pub mod codec;

pub mod bridge;

pub mod session;

mod driver;
pub mod listener;

pub mod astranet;
pub mod channel;
pub mod subscription;
pub mod timeouts;

pub use config::Config;
pub use listener::start;
