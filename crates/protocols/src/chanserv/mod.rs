//! chanserv over AstraNet: gatewayd as a chanserv server that unchanged Go clients (`LookupAndPost`) can use.
//!
//! - [`astranet`]: the multiplexer (op codec, link state machine, stream table, flow control).
//! - [`frame`]: chanserv's u64-LE length-prefixed frames, lz4 compressed frames, source announcements.
//! - [`channel`]: the request reader of a master stream and the outbox that feeds frames into a stream's credit.
//! - [`selector`]: gatewayd's request-body grammar (subscribe selectors, `PUB`, ack/err source headers).
//!
//! Everything here is pure: no sockets, no clock, no bus.

pub mod astranet;
pub mod channel;
pub mod frame;
pub mod selector;
