//! Header escaping ("Value Encoding" in the 1.1/1.2 specs) for names and values
//! (docs/protocols/stomp.md, "Frames on the wire").
//!
//! | mode | decode | encode |
//! |---|---|---|
//! | `Raw` (1.0, and CONNECT/STOMP/CONNECTED in every version) | none | LF, CR (and `:` in names) cannot be written |
//! | `V1_1` | `\n` `\c` `\\`, and `\r` leniently | `\n` `\c` `\\`; CR cannot be written |
//! | `V1_2` | `\n` `\c` `\\` `\r`, anything else is fatal | `\n` `\c` `\\` `\r` |

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{Command, Version};

/// How the headers of one frame are escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escaping {
    Raw,
    V1_1,
    V1_2,
}

/// An escape sequence the version does not define (or a `\` ending the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InvalidEscape;

impl Escaping {
    /// The escaping of a `command` frame in a session speaking `version`.
    pub(in crate::stomp) fn for_frame(command: Command, version: Version) -> Escaping {
        match version {
            _ if command.is_connect() => Escaping::Raw,
            Version::V1_0 => Escaping::Raw,
            Version::V1_1 => Escaping::V1_1,
            Version::V1_2 => Escaping::V1_2,
        }
    }

    /// Decode `raw`, a slice of the received frame. Text without a backslash is returned as
    /// is, without copying.
    pub(super) fn unescape(self, raw: Bytes) -> Result<Bytes, InvalidEscape> {
        if self == Escaping::Raw || memchr::memchr(b'\\', &raw).is_none() {
            return Ok(raw);
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut bytes = raw.iter();
        while let Some(&b) = bytes.next() {
            if b != b'\\' {
                out.push(b);
                continue;
            }
            out.push(match bytes.next() {
                Some(b'n') => b'\n',
                Some(b'c') => b':',
                Some(b'\\') => b'\\',
                Some(b'r') => b'\r',
                _ => return Err(InvalidEscape),
            });
        }
        Ok(Bytes::from(out))
    }

    /// Whether `name` can be written as a header name in this mode.
    pub(super) fn can_write_name(self, name: &[u8]) -> bool {
        !name.is_empty()
            && match self {
                Escaping::Raw => !name.iter().any(|b| matches!(b, b'\n' | b'\r' | b':')),
                Escaping::V1_1 => !name.contains(&b'\r'),
                Escaping::V1_2 => true,
            }
    }

    /// Whether `value` can be written as a header value in this mode.
    pub(super) fn can_write_value(self, value: &[u8]) -> bool {
        match self {
            Escaping::Raw => !value.iter().any(|b| matches!(b, b'\n' | b'\r')),
            Escaping::V1_1 => !value.contains(&b'\r'),
            Escaping::V1_2 => true,
        }
    }

    /// Append `text` escaped. The caller has checked it with `can_write_*`.
    /// Text without anything to escape is copied in one piece.
    pub fn write(self, text: &[u8], dst: &mut BytesMut) {
        let special = |b: &u8| matches!(b, b'\\' | b'\n' | b':' | b'\r');
        if self == Escaping::Raw || !text.iter().any(special) {
            dst.put_slice(text);
            return;
        }
        let mut rest = text;
        while let Some(at) = rest.iter().position(special) {
            dst.put_slice(&rest[..at]);
            dst.put_slice(match rest[at] {
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b':' => b"\\c",
                _ => b"\\r",
            });
            rest = &rest[at + 1..];
        }
        dst.put_slice(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescape(mode: Escaping, raw: &'static [u8]) -> Result<Bytes, InvalidEscape> {
        mode.unescape(Bytes::from_static(raw))
    }

    #[test]
    fn version_and_command_pick_the_mode() {
        assert_eq!(
            Escaping::for_frame(Command::Send, Version::V1_0),
            Escaping::Raw
        );
        assert_eq!(
            Escaping::for_frame(Command::Send, Version::V1_1),
            Escaping::V1_1
        );
        assert_eq!(
            Escaping::for_frame(Command::Message, Version::V1_2),
            Escaping::V1_2
        );
        for c in [Command::Connect, Command::Stomp, Command::Connected] {
            assert_eq!(Escaping::for_frame(c, Version::V1_2), Escaping::Raw);
        }
    }

    #[test]
    fn raw_keeps_backslashes_literally() {
        assert_eq!(
            unescape(Escaping::Raw, b"a\\tb\\").unwrap(),
            &b"a\\tb\\"[..]
        );
    }

    #[test]
    fn decodes_the_defined_escapes() {
        for mode in [Escaping::V1_1, Escaping::V1_2] {
            assert_eq!(
                unescape(mode, b"a\\nb\\cc\\\\d\\re").unwrap(),
                &b"a\nb:c\\d\re"[..]
            );
        }
    }

    #[test]
    fn rejects_unknown_and_dangling_escapes() {
        for mode in [Escaping::V1_1, Escaping::V1_2] {
            assert_eq!(unescape(mode, b"a\\tb"), Err(InvalidEscape));
            assert_eq!(unescape(mode, b"ab\\"), Err(InvalidEscape));
        }
    }

    #[test]
    fn text_without_backslash_is_not_copied() {
        let raw = Bytes::from_static(b"plain value");
        let out = Escaping::V1_2.unescape(raw.clone()).unwrap();
        assert_eq!(out.as_ptr(), raw.as_ptr());
    }

    #[test]
    fn encodes_and_reports_what_cannot_be_written() {
        let mut dst = BytesMut::new();
        Escaping::V1_2.write(b"a\nb:c\\d\re", &mut dst);
        assert_eq!(&dst[..], b"a\\nb\\cc\\\\d\\re");

        assert!(!Escaping::Raw.can_write_value(b"a\nb"));
        assert!(Escaping::Raw.can_write_value(b"a:b"));
        assert!(!Escaping::Raw.can_write_name(b"a:b"));
        assert!(!Escaping::V1_1.can_write_value(b"a\rb"));
        assert!(Escaping::V1_1.can_write_value(b"a\nb:"));
        assert!(Escaping::V1_2.can_write_value(b"a\rb"));
        for mode in [Escaping::Raw, Escaping::V1_1, Escaping::V1_2] {
            assert!(!mode.can_write_name(b""));
        }
    }
}
