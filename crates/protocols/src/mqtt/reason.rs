//! The MQTT 5.0 reason codes gatewayd sends (§2.4 of 5.0), and the [`ReasonString`] that may go with a failure.
//! 3.1.1 connections get the nearest 3.1.1 code (see `codec::encode`) or, where 3.1.1 has none, a closed
//! connection, and never a reason string.

pub const SUCCESS: u8 = 0x00;
pub const GRANTED_QOS_1: u8 = 0x01;
pub const GRANTED_QOS_2: u8 = 0x02;
pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
pub const MALFORMED_PACKET: u8 = 0x81;
pub const PROTOCOL_ERROR: u8 = 0x82;
pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
pub const NOT_AUTHORIZED: u8 = 0x87;
pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
pub const SESSION_TAKEN_OVER: u8 = 0x8E;
pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
pub const TOPIC_NAME_INVALID: u8 = 0x90;
pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
pub const PACKET_TOO_LARGE: u8 = 0x95;
pub const QUOTA_EXCEEDED: u8 = 0x97;
pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;

/// A 5.0 Reason String (property 0x1F, §3.2.2.3.8): a short human-readable account of a failure for the client's
/// logs. Always a whole, well-formed MQTT UTF-8 string of at most 65,535 bytes: it is sent whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonString(String);

impl ReasonString {
    /// `text` with control characters (which may come from a client's own names: §1.5.4 forbids NUL and
    /// discourages the rest) replaced by U+FFFD; `None` when it would be over 65,535 bytes.
    pub fn new(text: impl Into<String>) -> Option<ReasonString> {
        let mut text = text.into();
        if text.chars().any(char::is_control) {
            text = text
                .chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect();
        }
        (text.len() <= usize::from(u16::MAX)).then_some(ReasonString(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}
