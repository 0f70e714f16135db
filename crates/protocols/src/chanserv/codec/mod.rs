//! Bytes ↔ chanserv messages, pure, both directions (`docs/protocols/chanserv.md`, "Wire format"):
//!
//! - [`frame`]: the u64-LE length-prefixed frames, lz4 compressed frames, source announcements;
//! - [`credentials`]: the optional `AUTH <token>` line in front of a request;
//! - [`selector`]: gatewayd's request-body grammar (subscribe selectors, `PUB`) and the publish answer's header.
//!
//! The AstraNet ops under them are the multiplexer's own codec, [`super::astranet::op`].

pub mod credentials;
pub mod frame;
pub mod selector;
