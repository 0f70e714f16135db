//! The frame limits (docs/limits.md) that the decoder enforces before it buffers or
//! allocates anything, and [`Limit`], the name of the one a frame broke.

use std::fmt;

/// Caps on what one inbound frame may hold. Sizes are in bytes. The `[stomp.limits]` config section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Whole frame, command line through the NUL, once CONNECTED was sent.
    pub max_frame_size: usize,
    /// Whole frame before the session has negotiated a version (the CONNECT frame and
    /// anything pipelined behind it).
    pub max_pre_connect_frame_size: usize,
    /// Body octets.
    pub max_body_size: usize,
    /// Header lines per frame.
    pub max_headers: usize,
    /// One header line, EOL excluded.
    pub max_header_line: usize,
    /// The command line, EOL excluded.
    pub max_command_line: usize,
}

impl Limits {
    /// The gatewayd defaults (docs/limits.md).
    pub const DEFAULT: Limits = Limits {
        max_frame_size: 4 * 1024 * 1024,
        max_pre_connect_frame_size: 64 * 1024,
        max_body_size: 4 * 1024 * 1024,
        max_headers: 100,
        max_header_line: 100 * 1024,
        max_command_line: 32,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which limit of [`Limits`] a frame exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    FrameSize,
    BodySize,
    HeaderCount,
    HeaderLine,
    CommandLine,
}

impl Limit {
    /// Short text for the ERROR frame's `message` header.
    pub fn message(self) -> &'static str {
        match self {
            Limit::FrameSize => "Frame too large",
            Limit::BodySize => "Body too large",
            Limit::HeaderCount => "Too many headers",
            Limit::HeaderLine => "Header too long",
            Limit::CommandLine => "Command too long",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_reference() {
        let l = Limits::default();
        assert_eq!(l.max_frame_size, 4_194_304);
        assert_eq!(l.max_pre_connect_frame_size, 65_536);
        assert_eq!(l.max_headers, 100);
        assert_eq!(l.max_header_line, 102_400);
        assert_eq!(l.max_command_line, 32);
        assert!(l.max_body_size <= l.max_frame_size);
    }

    #[test]
    fn every_limit_has_its_own_message() {
        let all = [
            Limit::FrameSize,
            Limit::BodySize,
            Limit::HeaderCount,
            Limit::HeaderLine,
            Limit::CommandLine,
        ];
        let mut messages: Vec<_> = all.iter().map(|l| l.message()).collect();
        messages.sort_unstable();
        messages.dedup();
        assert_eq!(messages.len(), all.len());
    }
}
