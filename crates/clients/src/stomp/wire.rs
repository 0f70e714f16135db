//! The STOMP wire format as the client needs it: [`encode`] a client frame with 1.2 escaping
//! and a `content-length`, [`parse`] a server frame. A parsed frame keeps its header block as
//! received, checked once, and unescapes a header only when it is read, so receiving a MESSAGE
//! costs no allocation per header.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocols::stomp::{put_decimal, Escaping};

use crate::ClientError;

/// Largest frame accepted from the server.
pub(super) const MAX_FRAME: usize = 64 << 20;

/// A server frame: command, header lines (escaped, in order) and body.
#[derive(Debug)]
pub(super) struct Frame {
    /// The command line, then the header lines; checked UTF-8 with valid escapes.
    text: String,
    command_len: usize,
    /// Some header holds an escape.
    escaped: bool,
    pub(super) body: Bytes,
}

impl Frame {
    pub(super) fn command(&self) -> &str {
        &self.text[..self.command_len]
    }

    /// Every header, unescaped, in order.
    pub(super) fn headers(&self) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
        self.text[self.command_len..]
            .split('\n')
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| {
                if self.escaped {
                    (unescape(name), unescape(value))
                } else {
                    (Cow::Borrowed(name), Cow::Borrowed(value))
                }
            })
    }

    /// The first header called `name`.
    pub(super) fn header(&self, name: &str) -> Option<Cow<'_, str>> {
        self.headers().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// One frame from the front of `buf` (heart-beat EOLs skipped), or `None` until it is complete.
pub(super) fn parse(buf: &mut BytesMut) -> Result<Option<Frame>, ClientError> {
    let skip = buf
        .iter()
        .take_while(|b| **b == b'\n' || **b == b'\r')
        .count();
    buf.advance(skip);
    let Some((head_len, body_start)) = head_end(buf) else {
        if buf.len() > MAX_FRAME {
            return Err(ClientError::Protocol("frame header too long".into()));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len])
        .map_err(|_| ClientError::Protocol("frame header is not UTF-8".into()))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut text = String::with_capacity(head.len());
    text.push_str(lines.next().unwrap_or_default());
    let command_len = text.len();
    let escaped = head.contains('\\');
    let mut length = None;
    for line in lines {
        let Some((key, value)) = line.split_once(':') else {
            return Err(ClientError::Protocol(format!("bad header line {line:?}")));
        };
        if escaped {
            check_escapes(key)?;
            check_escapes(value)?;
        }
        if key == "content-length" && length.is_none() {
            let parsed: usize = value
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad content-length {value:?}")))?;
            if parsed > MAX_FRAME {
                return Err(ClientError::Protocol("frame too large".into()));
            }
            length = Some(parsed);
        }
        text.push('\n');
        text.push_str(line);
    }
    let body_len = match length {
        Some(length) => {
            if buf.len() < body_start + length + 1 {
                return Ok(None);
            }
            if buf[body_start + length] != 0 {
                return Err(ClientError::Protocol("frame does not end with NUL".into()));
            }
            length
        }
        None => match buf[body_start..].iter().position(|b| *b == 0) {
            Some(at) => at,
            None if buf.len() > MAX_FRAME => {
                return Err(ClientError::Protocol("frame too large".into()))
            }
            None => return Ok(None),
        },
    };
    buf.advance(body_start);
    let body = buf.split_to(body_len).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        text,
        command_len,
        escaped,
        body,
    }))
}

/// Where the header block ends (before its blank line) and where the body starts.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(offset) = buf.get(at..)?.iter().position(|b| *b == b'\n') {
        let eol = at + offset;
        match buf.get(eol + 1..) {
            Some([b'\n', ..]) => return Some((eol, eol + 2)),
            Some([b'\r', b'\n', ..]) => return Some((eol, eol + 3)),
            _ => at = eol + 1,
        }
    }
    None
}

fn check_escapes(text: &str) -> Result<(), ClientError> {
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'\\' && !matches!(bytes.next(), Some(b'n' | b'r' | b'c' | b'\\')) {
            return Err(ClientError::Protocol(format!("bad escape in {text:?}")));
        }
    }
    Ok(())
}

/// `text` without its escapes, which [`parse`] checked.
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('r') => '\r',
            Some('c') => ':',
            _ => '\\',
        });
    }
    Cow::Owned(out)
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

    fn frame_bytes(command: &str, headers: &[(&str, &str)], body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out, command, headers, body);
        out
    }

    #[test]
    fn parses_what_it_encodes_with_escapes_and_nul_bodies() {
        let mut buf = frame_bytes("SEND", &[("a:b", "line\nnext\\")], b"x\0y");
        let frame = parse(&mut buf).unwrap().unwrap();
        assert_eq!(frame.command(), "SEND");
        assert_eq!(frame.header("a:b").as_deref(), Some("line\nnext\\"));
        assert_eq!(frame.header("content-length").as_deref(), Some("3"));
        assert_eq!(&frame.body[..], b"x\0y");
        assert!(buf.is_empty());
    }

    #[test]
    fn content_length_of_every_size() {
        for size in [0, 9, 10, 1000] {
            let mut buf = frame_bytes("SEND", &[], &vec![b'x'; size]);
            let frame = parse(&mut buf).unwrap().unwrap();
            assert_eq!(
                frame.header("content-length"),
                Some(size.to_string().into())
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

    #[test]
    fn waits_for_the_whole_frame_at_every_split() {
        let whole = frame_bytes("SEND", &[("destination", "/topic/a")], b"hello");
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(parse(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(&parse(&mut buf).unwrap().unwrap().body[..], b"hello");
        }
    }

    #[test]
    fn heart_beats_and_frames_without_content_length() {
        let mut buf =
            BytesMut::from(&b"\n\r\nRECEIPT\r\nreceipt-id:r-1\r\n\r\n\0MESSAGE\n\nbody\0"[..]);
        let receipt = parse(&mut buf).unwrap().unwrap();
        assert_eq!(receipt.command(), "RECEIPT");
        assert_eq!(receipt.header("receipt-id").as_deref(), Some("r-1"));
        let message = parse(&mut buf).unwrap().unwrap();
        assert_eq!(message.command(), "MESSAGE");
        assert_eq!(message.headers().count(), 0);
        assert_eq!(&message.body[..], b"body");
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for input in [
            &b"MESSAGE\ncontent-length:x\n\n\0"[..],
            b"MESSAGE\ncontent-length:1\n\nab",
            b"MESSAGE\nnocolon\n\n\0",
            b"MESSAGE\nbad:\\q\n\n\0",
            b"MESSAGE\nbad:end\\\n\n\0",
        ] {
            assert!(parse(&mut BytesMut::from(input)).is_err(), "{input:?}");
        }
    }
}
