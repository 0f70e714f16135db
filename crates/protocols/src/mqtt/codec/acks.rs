//! The packets gatewayd writes by hand, a few bytes each: PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK and
//! the server's DISCONNECT. In 5.0 each carries its reason code and, when there is one, a [`ReasonString`] in its
//! property list (one writer, [`properties`], for all of them); a success stays 2 to 4 bytes. 3.1.1 has neither.

use bytes::{BufMut, BytesMut};

use super::{write_varint, Version};
use crate::mqtt::reason::{self, ReasonString};

/// Property identifier of a reason string.
const REASON_STRING: u8 = 0x1F;

/// PUBACK, PUBREC, PUBREL or PUBCOMP: the packet id, the 5.0 reason code and, for a failure, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub pkid: u16,
    pub reason: u8,
    pub reason_string: Option<ReasonString>,
}

impl Ack {
    pub fn success(pkid: u16) -> Ack {
        Ack {
            pkid,
            reason: reason::SUCCESS,
            reason_string: None,
        }
    }

    /// A failure `reason` (0x80 or above) with `why` as its reason string.
    pub fn failure(pkid: u16, reason: u8, why: impl Into<String>) -> Ack {
        Ack {
            pkid,
            reason,
            reason_string: ReasonString::new(why),
        }
    }
}

/// A 5.0 acknowledgement's property list: its length, then the reason string if there is one.
fn properties(out: &mut BytesMut, reason_string: Option<&ReasonString>) {
    let Some(text) = reason_string else {
        out.put_u8(0);
        return;
    };
    let text = text.as_str().as_bytes();
    write_varint(out, 3 + text.len());
    out.put_u8(REASON_STRING);
    // A ReasonString holds at most u16::MAX bytes.
    out.put_u16(text.len() as u16);
    out.put_slice(text);
}

/// Appends the fixed header `first` and `body`.
fn frame(out: &mut BytesMut, first: u8, body: &[u8]) {
    out.put_u8(first);
    write_varint(out, body.len());
    out.put_slice(body);
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP: the packet id; in 5.0 the reason code unless it is a success, and the property
/// list only when it holds a reason string (§3.4.2.2.1: it may be left out when empty).
pub(super) fn ack(out: &mut BytesMut, first: u8, ack: &Ack, version: Version) {
    let mut body = BytesMut::new();
    body.put_u16(ack.pkid);
    if version == Version::V5 {
        match &ack.reason_string {
            Some(text) => {
                body.put_u8(ack.reason);
                properties(&mut body, Some(text));
            }
            None if ack.reason != reason::SUCCESS => body.put_u8(ack.reason),
            None => {}
        }
    }
    frame(out, first, &body);
}

/// SUBACK and UNSUBACK: the packet id, the property list in 5.0, one code per filter.
pub(super) fn list_ack(
    out: &mut BytesMut,
    first: u8,
    pkid: u16,
    codes: &[u8],
    reason_string: Option<&ReasonString>,
    version: Version,
) {
    let mut body = BytesMut::new();
    body.put_u16(pkid);
    if version == Version::V5 {
        properties(&mut body, reason_string);
    }
    body.put_slice(codes);
    frame(out, first, &body);
}

/// The server's 5.0 DISCONNECT: the reason code and the property list.
pub(super) fn disconnect(out: &mut BytesMut, reason: u8, reason_string: Option<&ReasonString>) {
    let mut body = BytesMut::new();
    body.put_u8(reason);
    properties(&mut body, reason_string);
    frame(out, 0xE0, &body);
}
