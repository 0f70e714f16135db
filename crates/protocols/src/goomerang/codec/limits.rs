//! gatewayd's own size limits for Goomerang (upstream has none: docs/protocols/goomerang.md, "Limits"), checked by
//! [`decode`](super::decode) as it reads: the message's size first, a `kind` by its length before anything else
//! is done with it, the header entries by their count before each is decoded (an entry costs far more memory
//! decoded than its two bytes on the wire).

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
    /// Checks the size of the whole message.
    pub(crate) fn check_message(&self, message: &[u8]) -> Result<(), LimitExceeded> {
        if message.len() > self.max_message_size {
            return Err(LimitExceeded::MessageTooBig {
                size: message.len(),
                limit: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Checks the length of a `kind`, of the frame or of a published/broadcast message.
    pub(crate) fn check_kind_len(&self, len: usize) -> Result<(), LimitExceeded> {
        if len > self.max_kind_len {
            return Err(LimitExceeded::KindTooLong {
                len,
                limit: self.max_kind_len,
            });
        }
        Ok(())
    }

    /// Checks the number of header entries read so far.
    pub(crate) fn check_headers(&self, count: usize) -> Result<(), LimitExceeded> {
        if count > self.max_headers {
            return Err(LimitExceeded::TooManyHeaders {
                limit: self.max_headers,
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Limits small enough to reach: 64-byte messages, 4-byte topics, 3-byte kinds, 2 headers.
    pub(crate) fn small() -> Limits {
        Limits {
            max_message_size: 64,
            max_topic_len: 4,
            max_kind_len: 3,
            max_headers: 2,
        }
    }

    #[test]
    fn message_size_is_checked() {
        let too_big = vec![0u8; 65];
        assert_eq!(
            small().check_message(&too_big),
            Err(LimitExceeded::MessageTooBig {
                size: 65,
                limit: 64
            })
        );
        assert_eq!(
            small().check_message(&too_big).unwrap_err().close_reason(),
            Some(CloseReason::MessageTooBig)
        );
        assert_eq!(small().check_message(&[0u8; 64]), Ok(()));
    }

    #[test]
    fn kinds_and_headers() {
        assert_eq!(small().check_kind_len(3), Ok(()));
        assert_eq!(
            small().check_kind_len(4),
            Err(LimitExceeded::KindTooLong { len: 4, limit: 3 })
        );
        assert_eq!(small().check_headers(2), Ok(()));
        assert_eq!(
            small().check_headers(3),
            Err(LimitExceeded::TooManyHeaders { limit: 2 })
        );
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
