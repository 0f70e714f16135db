//! The `goomerang.protocol` messages generated from `proto/goomerang/protocol.proto`, and the full
//! names (`Frame.kind`) of the four built-in commands.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/goomerang.protocol.rs"));

/// Package of the envelope and the built-in commands; no other kind may use it.
pub const PACKAGE_PREFIX: &str = "goomerang.protocol.";
/// Kind of a [`SubscribeCmd`] payload.
pub const SUBSCRIBE_CMD: &str = "goomerang.protocol.SubscribeCmd";
/// Kind of an [`UnsubscribeCmd`] payload.
pub const UNSUBSCRIBE_CMD: &str = "goomerang.protocol.UnsubscribeCmd";
/// Kind of a [`PublishCmd`] payload.
pub const PUBLISH_CMD: &str = "goomerang.protocol.PublishCmd";
/// Kind of a [`BroadcastCmd`] payload.
pub const BROADCAST_CMD: &str = "goomerang.protocol.BroadcastCmd";
