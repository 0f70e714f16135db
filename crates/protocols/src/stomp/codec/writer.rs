//! The frame encoder: a [`Frame`] to bytes for a session speaking a given [`Version`].
//!
//! Output rules (docs/protocols/stomp.md, "Frames on the wire"): LF EOLs only (the seed parser
//! cannot take CR); headers escaped per version, except on CONNECT/STOMP/CONNECTED;
//! `content-length` always on SEND/MESSAGE/ERROR and on any non-empty body, never on other empty
//! frames (a RECEIPT must hold only `receipt-id`); one LF after the NUL (RabbitMQ `trailing_lf`;
//! every client skips it).

use bytes::{BufMut, BytesMut};

use super::escape::Escaping;
use super::frame::{header, Frame, Version};

/// What [`encode`] had to leave out.
#[must_use = "headers that cannot be represented are dropped; log them"]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Headers that the version cannot carry: CR or LF (or `:` in a name) in 1.0 and in
    /// CONNECTED, CR in 1.1, and empty names.
    pub dropped_headers: usize,
}

/// Append `frame`, encoded for `version`, to `dst`.
///
/// A `content-length` header in `frame` only fixes where the header goes: its value is
/// always the body length, and later copies are dropped. Without one, it is appended after
/// the other headers when needed.
pub fn encode(frame: &Frame, version: Version, dst: &mut BytesMut) -> Written {
    let escaping = Escaping::for_frame(frame.command, version);
    let needs_length = !frame.body.is_empty() || frame.command.allows_body();
    let mut length_written = false;
    let mut written = Written::default();

    dst.reserve(estimate(frame));
    dst.put_slice(frame.command.as_str().as_bytes());
    dst.put_u8(b'\n');
    for h in &frame.headers {
        if h.name == header::CONTENT_LENGTH.as_bytes() {
            if needs_length && !length_written {
                put_content_length(frame, dst);
                length_written = true;
            }
            continue;
        }
        if !put_header(escaping, h.name, h.value, dst) {
            written.dropped_headers += 1;
        }
    }
    if needs_length && !length_written {
        put_content_length(frame, dst);
    }
    dst.put_u8(b'\n');
    dst.put_slice(&frame.body);
    dst.put_slice(b"\0\n");
    written
}

/// Append one heart-beat EOL.
pub fn encode_heart_beat(dst: &mut BytesMut) {
    dst.put_u8(b'\n');
}

/// Appends `name:value` and an EOL, escaped; `false` (and nothing written) when the escaping
/// cannot carry them.
pub(in crate::stomp) fn put_header(
    escaping: Escaping,
    name: &[u8],
    value: &[u8],
    dst: &mut BytesMut,
) -> bool {
    if !escaping.can_write_name(name) || !escaping.can_write_value(value) {
        return false;
    }
    escaping.write(name, dst);
    dst.put_u8(b':');
    escaping.write(value, dst);
    dst.put_u8(b'\n');
    true
}

/// Appends `n` in decimal.
pub fn put_decimal(n: u64, dst: &mut BytesMut) {
    dst.put_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn put_content_length(frame: &Frame, dst: &mut BytesMut) {
    dst.put_slice(header::CONTENT_LENGTH.as_bytes());
    dst.put_u8(b':');
    put_decimal(frame.body.len() as u64, dst);
    dst.put_u8(b'\n');
}

/// Room for the frame without escapes; escaping may grow it a little further.
fn estimate(frame: &Frame) -> usize {
    let headers: usize = frame
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len() + 2)
        .sum();
    frame.command.as_str().len() + headers + frame.body.len() + 40
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stomp::codec::frame::Command;

    fn write(frame: &Frame, version: Version) -> (Vec<u8>, usize) {
        let mut dst = BytesMut::new();
        let w = encode(frame, version, &mut dst);
        (dst.to_vec(), w.dropped_headers)
    }

    #[test]
    fn receipt_has_no_content_length() {
        let frame = Frame::receipt("r1".into());
        assert_eq!(
            write(&frame, Version::V1_2),
            (b"RECEIPT\nreceipt-id:r1\n\n\0\n".to_vec(), 0)
        );
    }

    #[test]
    fn message_and_error_always_carry_content_length() {
        let msg = Frame::new(Command::Message).with_header("destination", "/topic/a");
        assert_eq!(
            write(&msg, Version::V1_0).0,
            b"MESSAGE\ndestination:/topic/a\ncontent-length:0\n\n\0\n"
        );
        let err = Frame::new(Command::Error)
            .with_header("message", "x")
            .with_body("why");
        assert_eq!(
            write(&err, Version::V1_1).0,
            b"ERROR\nmessage:x\ncontent-length:3\n\nwhy\0\n"
        );
    }

    #[test]
    fn content_length_is_computed_at_the_first_position() {
        let frame = Frame::new(Command::Message)
            .with_header("a", "1")
            .with_header("content-length", "999")
            .with_header("b", "2")
            .with_header("content-length", "7")
            .with_body("a\0b");
        assert_eq!(
            write(&frame, Version::V1_2).0,
            b"MESSAGE\na:1\ncontent-length:3\nb:2\n\na\0b\0\n"
        );
        // A stale content-length on an empty frame that needs none disappears.
        let frame = Frame::new(Command::Receipt)
            .with_header("receipt-id", "r")
            .with_header("content-length", "0");
        assert_eq!(
            write(&frame, Version::V1_2).0,
            b"RECEIPT\nreceipt-id:r\n\n\0\n"
        );
    }

    #[test]
    fn escapes_per_version() {
        let frame = Frame::new(Command::Message).with_header("k:\\", "v\n:\\");
        assert_eq!(
            write(&frame, Version::V1_2).0,
            b"MESSAGE\nk\\c\\\\:v\\n\\c\\\\\ncontent-length:0\n\n\0\n"
        );
        assert_eq!(
            write(&frame, Version::V1_1).0,
            write(&frame, Version::V1_2).0
        );
        let cr = Frame::new(Command::Message).with_header("k", "a\rb");
        assert_eq!(
            write(&cr, Version::V1_2).0,
            b"MESSAGE\nk:a\\rb\ncontent-length:0\n\n\0\n"
        );
        assert_eq!(
            write(&cr, Version::V1_1),
            (b"MESSAGE\ncontent-length:0\n\n\0\n".to_vec(), 1)
        );
    }

    #[test]
    fn version_1_0_writes_raw_and_drops_what_it_cannot_carry() {
        let frame = Frame::new(Command::Message)
            .with_header("x-user", "a:b\\c")
            .with_header("multi", "line\none")
            .with_header("na:me", "v")
            .with_header("", "v");
        assert_eq!(
            write(&frame, Version::V1_0),
            (
                b"MESSAGE\nx-user:a:b\\c\ncontent-length:0\n\n\0\n".to_vec(),
                3
            )
        );
    }

    #[test]
    fn connected_is_never_escaped() {
        let frame = Frame::new(Command::Connected)
            .with_header("version", "1.2")
            .with_header("server", "gatewayd/0.1 (a:b)")
            .with_header("bad", "x\ny");
        assert_eq!(
            write(&frame, Version::V1_2),
            (
                b"CONNECTED\nversion:1.2\nserver:gatewayd/0.1 (a:b)\n\n\0\n".to_vec(),
                1
            )
        );
    }

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut dst = BytesMut::new();
            put_decimal(n, &mut dst);
            assert_eq!(&dst[..], n.to_string().as_bytes());
        }
    }

    #[test]
    fn heart_beat_is_one_lf() {
        let mut dst = BytesMut::new();
        encode_heart_beat(&mut dst);
        assert_eq!(&dst[..], b"\n");
    }
}
