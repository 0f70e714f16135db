//! Loom's configurable limits (docs/protocols/loom.md, "Wire format" and "Delivery"): the hello's and the
//! framing's field limits, gatewayd's store-and-forward ceiling for whole messages and the larger ceiling of
//! messages cut through to one Loom consumer.

/// Upstream default for `max_name_bytes` (hello `name`).
pub const DEFAULT_MAX_NAME_BYTES: usize = 128;
/// Upstream default for `max_room_bytes` (hello `room`).
pub const DEFAULT_MAX_ROOM_BYTES: usize = 128;
/// Upstream default for `max_token_bytes` (hello `token`).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 1024;
/// Upstream default for `max_key_bytes`; also the hard ceiling real consumers accept (see [`crate::loom::key`]).
pub const DEFAULT_MAX_KEY_BYTES: usize = 256;
/// Upstream default for `max_chunk_bytes`; also the hard ceiling real consumers accept.
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 64 << 10;
/// gatewayd's store-and-forward ceiling for one message body. Upstream's `max_message_bytes` defaults to 256 MiB,
/// but gatewayd holds a whole body in memory before routing it through the bus, so it defaults to 16 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 16 << 20;
/// Largest message body cut through to a Loom consumer: upstream's `max_message_bytes` default (256 MiB).
pub const DEFAULT_MAX_STREAMED_MESSAGE_BYTES: u64 = 256 << 20;
/// Upstream default for `max_backlog_depth`: messages queued per consumer.
pub const DEFAULT_MAX_BACKLOG_DEPTH: usize = 128;

/// Limits applied to one Loom stream. `Default` gives upstream's defaults, except `max_message_bytes`
/// (gatewayd's 16 MiB store-and-forward maximum); upstream's 256 MiB is `max_streamed_message_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest hello `name`; longer → hello rejected.
    pub max_name_bytes: usize,
    /// Longest hello `room`; longer → hello rejected.
    pub max_room_bytes: usize,
    /// Longest hello `token`; longer → hello rejected.
    pub max_token_bytes: usize,
    /// Longest producer key; longer (or empty) → producer protocol error.
    pub max_key_bytes: usize,
    /// Longest producer chunk; longer → producer protocol error.
    pub max_chunk_bytes: usize,
    /// Largest body held whole and put on the bus; a larger one is cut through to one Loom consumer.
    pub max_message_bytes: u64,
    /// Largest body cut through; a larger declared or actual body ends the producer stream. Equal to
    /// `max_message_bytes`: nothing is cut through.
    pub max_streamed_message_bytes: u64,
    /// Messages queued per consumer before `partition_full_behavior` applies (used by the session, not the codec).
    pub max_backlog_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_room_bytes: DEFAULT_MAX_ROOM_BYTES,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_streamed_message_bytes: DEFAULT_MAX_STREAMED_MESSAGE_BYTES,
            max_backlog_depth: DEFAULT_MAX_BACKLOG_DEPTH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_reference_and_gatewayd_ceiling() {
        let l = Limits::default();
        assert_eq!(
            (l.max_name_bytes, l.max_room_bytes, l.max_token_bytes),
            (128, 128, 1024)
        );
        assert_eq!((l.max_key_bytes, l.max_chunk_bytes), (256, 65536));
        assert_eq!(l.max_message_bytes, 16 * 1024 * 1024);
        assert_eq!(l.max_streamed_message_bytes, 256 * 1024 * 1024);
        assert_eq!(l.max_backlog_depth, 128);
    }
}
