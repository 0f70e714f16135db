//! The STOMP frames the client writes: [`encode`] a client frame with 1.2 escaping and a `content-length`, and
//! the pre-encoded SEND head of [`send_head`] and [`encode_send`] for the common publish. Server frames are read
//! with the broker's own decoder ([`decoder`]).

use bytes::{BufMut, BytesMut};
use protocols::stomp::{put_decimal, Decoder, Escaping, Limits, Version};

/// Largest frame accepted from the server.
const MAX_FRAME: usize = 64 << 20;

/// The broker's STOMP decoder set up for server frames: STOMP 1.2 unescaping, and no cap but [`MAX_FRAME`] (a
/// header line, a body and the number of headers are bounded by the frame).
pub(super) fn decoder() -> Decoder {
    let mut decoder = Decoder::new(Limits {
        max_frame_size: MAX_FRAME,
        max_pre_connect_frame_size: MAX_FRAME,
        max_body_size: MAX_FRAME,
        max_headers: MAX_FRAME,
        max_header_line: MAX_FRAME,
        max_command_line: Limits::DEFAULT.max_command_line,
    });
    decoder.set_version(Version::V1_2);
    decoder
}

fn put_escaped(out: &mut BytesMut, text: &str) {
    Escaping::V1_2.write(text.as_bytes(), out);
}

/// Appends one client frame with escaped headers, a `content-length` on SEND and the closing NUL.
pub(super) fn encode(out: &mut BytesMut, command: &str, headers: &[(&str, &str)], body: &[u8]) {
    out.reserve(command.len() + body.len() + 64);
    out.put_slice(command.as_bytes());
    out.put_u8(b'\n');
    for (key, value) in headers {
        put_escaped(out, key);
        out.put_u8(b':');
        put_escaped(out, value);
        out.put_u8(b'\n');
    }
    if command == "SEND" {
        put_content_length(out, body.len());
    }
    out.put_u8(b'\n');
    out.put_slice(body);
    out.put_u8(0);
}

/// The start of a SEND to `destination` with no other header, for [`encode_send`].
pub(super) fn send_head(destination: &str) -> Vec<u8> {
    let mut head = BytesMut::new();
    head.put_slice(b"SEND\ndestination:");
    put_escaped(&mut head, destination);
    head.put_u8(b'\n');
    head.to_vec()
}

/// Appends a SEND made of `head` (from [`send_head`]), a `content-length` and `body`.
pub(super) fn encode_send(out: &mut BytesMut, head: &[u8], body: &[u8]) {
    out.reserve(head.len() + body.len() + 24);
    out.put_slice(head);
    put_content_length(out, body.len());
    out.put_u8(b'\n');
    out.put_slice(body);
    out.put_u8(0);
}

fn put_content_length(out: &mut BytesMut, length: usize) {
    out.put_slice(b"content-length:");
    put_decimal(length as u64, out);
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::stomp::{Command, Decoded, Frame};

    fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out, command, headers, body);
        out
    }

    fn decode(buf: &mut BytesMut) -> Frame {
        match decoder().decode(buf) {
            Ok(Some(Decoded::Frame(frame))) => frame,
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn the_broker_decodes_what_it_encodes_with_escapes_and_nul_bodies() {
        let mut buf = frame_bytes("SEND", &[("a:b", "line\nnext\\")], b"x\0y");
        let frame = decode(&mut buf);
        assert_eq!(frame.command, Command::Send);
        assert_eq!(frame.header("a:b"), Some(&b"line\nnext\\"[..]));
        assert_eq!(frame.header("content-length"), Some(&b"3"[..]));
        assert_eq!(&frame.body[..], b"x\0y");
        assert!(buf.is_empty());
    }

    #[test]
    fn content_length_of_every_size() {
        for size in [0, 9, 10, 1000] {
            let mut buf = frame_bytes("SEND", &[], &vec![b'x'; size]);
            let frame = decode(&mut buf);
            assert_eq!(
                frame.header("content-length").map(|v| v.to_vec()),
                Some(size.to_string().into_bytes())
            );
            assert_eq!(frame.body.len(), size);
        }
    }

    #[test]
    fn a_send_from_its_head_is_the_same_frame() {
        let body = b"payload";
        let mut fast = BytesMut::new();
        encode_send(&mut fast, &send_head("/topic/a:b"), body);
        assert_eq!(
            fast,
            frame_bytes("SEND", &[("destination", "/topic/a:b")], body)
        );
    }
}
