//! gatewayd's own size limits for Goomerang (upstream has none: docs/protocols/goomerang.md, "Limits") and the
//! pre-scan that enforces the frame-level ones before prost allocates anything.
//!
//! The pre-scan walks the top-level fields of a `Frame` without decoding them: it rejects a `kind`
//! longer than [`Limits::max_kind_len`] and more than [`Limits::max_headers`] header entries (each
//! entry costs far more memory decoded than its two bytes on the wire). Where the bytes stop being
//! valid protobuf it stops and lets prost report the error: prost cannot decode past that point either.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::goomerang::close::CloseReason;

/// Size limits applied to every client message (config section `[goomerang.frame_limits]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest WebSocket message (one `Frame`), in bytes.
    pub max_message_size: usize,
    /// Longest topic of a subscribe, unsubscribe or publish command, in bytes.
    pub max_topic_len: usize,
    /// Longest `kind`, of the frame or of a published/broadcast message, in bytes.
    pub max_kind_len: usize,
    /// Most header entries in one frame.
    pub max_headers: usize,
}

impl Default for Limits {
    /// The documented defaults: 16 MiB messages, 1024-byte topics, 512-byte kinds, 64 headers.
    fn default() -> Self {
        Self {
            max_message_size: 16 * 1024 * 1024,
            max_topic_len: 1024,
            max_kind_len: 512,
            max_headers: 64,
        }
    }
}

/// A client message went over one of the [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitExceeded {
    #[error("message too big: {size} bytes, limit {limit}")]
    MessageTooBig { size: usize, limit: usize },
    #[error("kind of {len} bytes, limit {limit}")]
    KindTooLong { len: usize, limit: usize },
    #[error("topic of {len} bytes, limit {limit}")]
    TopicTooLong { len: usize, limit: usize },
    #[error("more than {limit} headers")]
    TooManyHeaders { limit: usize },
    /// Over the bus's own topic bounds (`core_bus::MAX_TOPIC_BYTES`, `MAX_TOPIC_SEGMENTS`).
    #[error("topic: {0}")]
    TopicOutOfBounds(core_bus::TopicError),
}

impl LimitExceeded {
    /// The close gatewayd initiates for this violation; `None` means drop the frame and keep reading.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match self {
            Self::MessageTooBig { .. } => Some(CloseReason::MessageTooBig),
            Self::KindTooLong { .. }
            | Self::TopicTooLong { .. }
            | Self::TooManyHeaders { .. }
            | Self::TopicOutOfBounds(_) => None,
        }
    }
}

impl Limits {
    /// Checks the whole message, then the frame-level fields, without decoding.
    pub(crate) fn check_frame(&self, message: &[u8]) -> Result<(), LimitExceeded> {
        if message.len() > self.max_message_size {
            return Err(LimitExceeded::MessageTooBig {
                size: message.len(),
                limit: self.max_message_size,
            });
        }
        self.scan_fields(message)
    }

    pub(crate) fn check_kind(&self, kind: &str) -> Result<(), LimitExceeded> {
        if kind.len() > self.max_kind_len {
            return Err(LimitExceeded::KindTooLong {
                len: kind.len(),
                limit: self.max_kind_len,
            });
        }
        Ok(())
    }

    pub(crate) fn check_topic(&self, topic: &str) -> Result<(), LimitExceeded> {
        if topic.len() > self.max_topic_len {
            return Err(LimitExceeded::TopicTooLong {
                len: topic.len(),
                limit: self.max_topic_len,
            });
        }
        core_bus::Topic::check_dotted(topic.as_bytes()).map_err(LimitExceeded::TopicOutOfBounds)
    }

    fn scan_fields(&self, mut buf: &[u8]) -> Result<(), LimitExceeded> {
        let mut headers = 0usize;
        // Nesting depth of (unknown) groups; only fields at depth 0 belong to the Frame.
        let mut groups = 0u32;
        while !buf.is_empty() {
            let Some(key) = read_varint(&mut buf) else {
                return Ok(());
            };
            let field = key >> 3;
            let skipped = match key & 7 {
                WIRE_VARINT => read_varint(&mut buf).map(drop),
                WIRE_FIXED64 => advance(&mut buf, 8),
                WIRE_FIXED32 => advance(&mut buf, 4),
                WIRE_LEN => {
                    let Some(len) = read_varint(&mut buf).and_then(|l| usize::try_from(l).ok())
                    else {
                        return Ok(());
                    };
                    if groups == 0 && field == FIELD_KIND && len > self.max_kind_len {
                        return Err(LimitExceeded::KindTooLong {
                            len,
                            limit: self.max_kind_len,
                        });
                    }
                    if groups == 0 && field == FIELD_HEADERS {
                        headers += 1;
                        if headers > self.max_headers {
                            return Err(LimitExceeded::TooManyHeaders {
                                limit: self.max_headers,
                            });
                        }
                    }
                    advance(&mut buf, len)
                }
                WIRE_START_GROUP => {
                    groups += 1;
                    (groups <= MAX_GROUP_DEPTH).then_some(())
                }
                WIRE_END_GROUP => groups.checked_sub(1).map(|depth| groups = depth),
                _ => None,
            };
            if skipped.is_none() {
                return Ok(());
            }
        }
        Ok(())
    }
}

const FIELD_KIND: u64 = 2;
const FIELD_HEADERS: u64 = 6;
const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_START_GROUP: u64 = 3;
const WIRE_END_GROUP: u64 = 4;
const WIRE_FIXED32: u64 = 5;
/// prost refuses deeper nesting, so there is nothing left to scan past it.
const MAX_GROUP_DEPTH: u32 = 100;

/// Reads a base-128 varint of at most 10 bytes; `None` if truncated or too long.
fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = buf.get(i + 1..)?;
            return Some(value);
        }
    }
    None
}

fn advance(buf: &mut &[u8], len: usize) -> Option<()> {
    *buf = buf.get(len..)?;
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            max_message_size: 64,
            max_topic_len: 4,
            max_kind_len: 3,
            max_headers: 2,
        }
    }

    #[test]
    fn message_size_is_checked_first() {
        let too_big = vec![0u8; 65];
        assert_eq!(
            small().check_frame(&too_big),
            Err(LimitExceeded::MessageTooBig {
                size: 65,
                limit: 64
            })
        );
        assert_eq!(
            small().check_frame(&too_big).unwrap_err().close_reason(),
            Some(CloseReason::MessageTooBig)
        );
        assert_eq!(small().check_frame(&[0u8; 64]), Ok(()));
    }

    #[test]
    fn kind_length_is_checked_before_decoding() {
        assert_eq!(small().check_frame(b"\x12\x03abc"), Ok(()));
        assert_eq!(
            small().check_frame(b"\x12\x04abcd"),
            Err(LimitExceeded::KindTooLong { len: 4, limit: 3 })
        );
        // A truncated kind still counts by its declared length.
        assert_eq!(
            small().check_frame(b"\x12\x7f"),
            Err(LimitExceeded::KindTooLong { len: 127, limit: 3 })
        );
    }

    #[test]
    fn header_entries_are_counted_at_top_level_only() {
        assert_eq!(small().check_frame(b"\x32\x00\x32\x00"), Ok(()));
        assert_eq!(
            small().check_frame(b"\x32\x00\x32\x00\x32\x00"),
            Err(LimitExceeded::TooManyHeaders { limit: 2 })
        );
        // Field 6 inside an unknown group (field 9) is not a header; after the group it is again.
        assert_eq!(
            small().check_frame(b"\x4b\x32\x00\x32\x00\x32\x00\x4c\x32\x00"),
            Ok(())
        );
        assert_eq!(
            small().check_frame(b"\x4b\x4c\x32\x00\x32\x00\x32\x00"),
            Err(LimitExceeded::TooManyHeaders { limit: 2 })
        );
    }

    #[test]
    fn other_wire_types_are_skipped() {
        // varint (non-minimal), fixed64, fixed32, then a kind over the limit.
        let frame =
            b"\x18\x80\x80\x00\x49\x01\x02\x03\x04\x05\x06\x07\x08\x55\x01\x02\x03\x04\x12\x04abcd";
        assert_eq!(
            small().check_frame(frame),
            Err(LimitExceeded::KindTooLong { len: 4, limit: 3 })
        );
    }

    #[test]
    fn malformed_input_is_left_to_prost() {
        for input in [
            &b"\x80"[..],
            b"\x18",
            b"\x3a\x05ab",
            b"\x4c\x32\x00",
            b"\x0f",
        ] {
            assert_eq!(small().check_frame(input), Ok(()), "{input:?}");
        }
    }

    #[test]
    fn topic_limit() {
        assert_eq!(small().check_topic("news"), Ok(()));
        assert_eq!(
            small().check_topic("news!"),
            Err(LimitExceeded::TopicTooLong { len: 5, limit: 4 })
        );
        let wide = vec!["a"; core_bus::MAX_TOPIC_SEGMENTS + 1].join(".");
        assert!(matches!(
            Limits::default().check_topic(&wide),
            Err(LimitExceeded::TopicOutOfBounds(_))
        ));
        assert_eq!(small().check_kind("abc"), Ok(()));
        assert!(small().check_kind("abcd").is_err());
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let limits = Limits::default();
        assert_eq!(limits.max_message_size, 16 << 20);
        assert_eq!(
            (
                limits.max_topic_len,
                limits.max_kind_len,
                limits.max_headers
            ),
            (1024, 512, 64)
        );
    }
}
