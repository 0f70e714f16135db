//! chanserv over AstraNet: gatewayd as a chanserv server that unchanged Go clients (`LookupAndPost`) can use.
//!
//! - [`astranet`]: the multiplexer (op codec, link state machine, stream table, flow control).
//! - [`codec`]: bytes ↔ chanserv messages: frames (u64-LE length prefix, lz4, source announcements), the
//!   `AUTH <token>` line, the request-body grammar.
//! - [`channel`]: the request reader of a master stream and the outbox that feeds frames into a stream's credit.
//! - [`bridge`]: chanserv message ↔ bus envelope: `PUB` → envelope, selector → pattern, delivery → frame and
//!   `topic=` header.
//! - [`subscription`]: a subscribe request mapped onto the bus: its mailbox, one source per topic.
//! - [`session`]: one connection's state machine (link + chanserv server + bus), no sockets and no clock.
//! - [`timeouts`]: the server timeouts (`[chanserv.timeouts]`) and one stream's deadlines.
//! - `driver`: the tokio task of one connection, which drives its session.
//! - [`listener`]: the TCP listener: binds, accepts, hands each connection to a driver.
//! - [`config`]: the `[chanserv]` config section; `settings`: what connections take of it; `reload`: applies a
//!   new one.
//!
//! Everything but the listener is pure: no sockets, no clock of its own.

pub mod astranet;
pub mod bridge;
pub mod channel;
pub mod codec;
pub mod config;
mod driver;
pub mod listener;
mod reload;
pub mod session;
mod settings;
pub mod subscription;
pub mod timeouts;

pub use config::Config;
pub use listener::start;
