//! The hello: the first bytes a client writes on every Loom stream (QUIC bidi stream or HTTP/3 request body).
//!
//! Layout (docs/protocols/loom.md, "Hello"): magic `LOOM`, version `0x04`, role `'P'`/`'C'`, then `name`, `room`
//! and `token`, each a uvarint length followed by that many bytes. There is no reply frame: a refused hello is
//! answered as described in [`crate::loom::reject`].

use std::fmt;
use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::cursor::{within, Cursor};
use super::varint::{self, VarintError};
use crate::loom::limits::Limits;

/// First four bytes of every stream.
pub const MAGIC: [u8; 4] = *b"LOOM";
/// The only protocol version spoken.
pub const VERSION: u8 = 0x04;
/// Room used for routing when the hello carries an empty room. Authorization still sees the raw (empty) room.
pub const DEFAULT_ROOM: &[u8] = b"default";

/// What the stream is for, fixed by the hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `'P'` (0x50): client→server messages, the server never writes.
    Producer,
    /// `'C'` (0x43): server→client messages, client→server acks.
    Consumer,
}

impl Role {
    /// The role byte on the wire.
    pub const fn byte(self) -> u8 {
        match self {
            Self::Producer => b'P',
            Self::Consumer => b'C',
        }
    }

    /// The role for a wire byte, `None` for anything but `'P'`/`'C'`.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'P' => Some(Self::Producer),
            b'C' => Some(Self::Consumer),
            _ => None,
        }
    }
}

/// The three length-prefixed hello fields, named for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloField {
    Name,
    Room,
    Token,
}

impl fmt::Display for HelloField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Name => "name",
            Self::Room => "room",
            Self::Token => "token",
        })
    }
}

/// Why a hello was refused. Every variant is answered the same way on the wire (QUIC: FIN + STOP_SENDING with
/// [`crate::loom::reject::QUIC_REJECTED`]; HTTP/3: 400), see [`crate::loom::reject::Rejection`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("bad handshake: magic is not LOOM")]
    BadMagic,
    #[error("bad handshake: version {0:#04x}, expected 0x04")]
    BadVersion(u8),
    #[error("bad handshake: unknown role byte {0:#04x}")]
    BadRole(u8),
    #[error("bad handshake: {field} is {len} bytes, limit {max}")]
    FieldTooLong {
        field: HelloField,
        len: u64,
        max: usize,
    },
    #[error("bad handshake: {field} length: {source}")]
    Varint {
        field: HelloField,
        source: VarintError,
    },
    #[error("bad handshake: stream ended inside the hello")]
    Truncated,
}

/// A decoded hello. Fields are raw bytes, as upstream treats them (UTF-8 in practice, never checked).
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    pub role: Role,
    /// Client name, only for logs and the producer error tracker; may be empty.
    pub name: Bytes,
    /// Room as sent; may be empty (see [`Hello::routing_room`]). Authorize with this raw value.
    pub room: Bytes,
    /// Auth token; empty means "no token".
    pub token: Bytes,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("role", &self.role)
            .field("name", &String::from_utf8_lossy(&self.name))
            .field("room", &String::from_utf8_lossy(&self.room))
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .finish()
    }
}

/// Where each part of a complete hello sits in the buffer.
struct Layout {
    role: Role,
    name: Range<usize>,
    room: Range<usize>,
    token: Range<usize>,
    len: usize,
}

impl Hello {
    /// Decodes the hello from the front of `src`.
    ///
    /// `Ok(Some)` consumes exactly the hello's bytes (anything after it stays in `src`); `Ok(None)` consumes
    /// nothing and needs more bytes. Magic, version and each field length are checked as soon as they are
    /// buffered, so an over-long field is refused before its bytes are awaited; the role is checked once the
    /// whole hello is in, as upstream does.
    pub fn decode(src: &mut BytesMut, limits: &Limits) -> Result<Option<Self>, HelloError> {
        let Some(layout) = scan(src, limits)? else {
            return Ok(None);
        };
        // Copied (at most ~1.3 KB) so the session does not pin the whole receive buffer for its lifetime.
        let field =
            |range: Range<usize>| Bytes::copy_from_slice(src.get(range).unwrap_or_default());
        let hello = Self {
            role: layout.role,
            name: field(layout.name),
            room: field(layout.room),
            token: field(layout.token),
        };
        src.advance(layout.len);
        Ok(Some(hello))
    }

    /// Like [`Hello::decode`], for when the stream has ended: an incomplete hello is [`HelloError::Truncated`].
    pub fn decode_eof(src: &mut BytesMut, limits: &Limits) -> Result<Self, HelloError> {
        Self::decode(src, limits)?.ok_or(HelloError::Truncated)
    }

    /// Appends the wire form. Lengths are not checked against any [`Limits`].
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_slice(&MAGIC);
        dst.put_u8(VERSION);
        dst.put_u8(self.role.byte());
        for field in [&self.name, &self.room, &self.token] {
            varint::encode(field.len() as u64, dst);
            dst.put_slice(field);
        }
    }

    /// The room messages are routed in: the raw room, or [`DEFAULT_ROOM`] when it is empty.
    pub fn routing_room(&self) -> &[u8] {
        if self.room.is_empty() {
            DEFAULT_ROOM
        } else {
            &self.room
        }
    }
}

fn scan(buf: &[u8], limits: &Limits) -> Result<Option<Layout>, HelloError> {
    let seen = buf.len().min(MAGIC.len());
    if buf.get(..seen) != MAGIC.get(..seen) {
        return Err(HelloError::BadMagic);
    }
    let mut c = Cursor::new(buf);
    if c.take(MAGIC.len()).is_none() {
        return Ok(None);
    }
    let Some(version) = c.byte() else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(HelloError::BadVersion(version));
    }
    let Some(role) = c.byte() else {
        return Ok(None);
    };
    let Some(name) = field(&mut c, HelloField::Name, limits.max_name_bytes)? else {
        return Ok(None);
    };
    let Some(room) = field(&mut c, HelloField::Room, limits.max_room_bytes)? else {
        return Ok(None);
    };
    let Some(token) = field(&mut c, HelloField::Token, limits.max_token_bytes)? else {
        return Ok(None);
    };
    let role = Role::from_byte(role).ok_or(HelloError::BadRole(role))?;
    Ok(Some(Layout {
        role,
        name,
        room,
        token,
        len: c.pos(),
    }))
}

fn field(
    c: &mut Cursor<'_>,
    field: HelloField,
    max: usize,
) -> Result<Option<Range<usize>>, HelloError> {
    let Some(len) = c
        .uvarint()
        .map_err(|source| HelloError::Varint { field, source })?
    else {
        return Ok(None);
    };
    let n = within(len, max).ok_or(HelloError::FieldTooLong { field, len, max })?;
    Ok(c.take(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/protocols/loom.md, "Test vectors": producer hello `p1`/`default`/`t`.
    const PRODUCER: &[u8] = &[
        0x4c, 0x4f, 0x4f, 0x4d, 0x04, 0x50, 0x02, 0x70, 0x31, 0x07, 0x64, 0x65, 0x66, 0x61, 0x75,
        0x6c, 0x74, 0x01, 0x74,
    ];
    /// docs/protocols/loom.md, "Test vectors": consumer hello `c1`/`default`/`t`.
    const CONSUMER: &[u8] = &[
        0x4c, 0x4f, 0x4f, 0x4d, 0x04, 0x43, 0x02, 0x63, 0x31, 0x07, 0x64, 0x65, 0x66, 0x61, 0x75,
        0x6c, 0x74, 0x01, 0x74,
    ];

    fn hello(role: Role, name: &str, room: &str, token: &str) -> Hello {
        Hello {
            role,
            name: Bytes::copy_from_slice(name.as_bytes()),
            room: Bytes::copy_from_slice(room.as_bytes()),
            token: Bytes::copy_from_slice(token.as_bytes()),
        }
    }

    fn decode(bytes: &[u8]) -> Result<Option<Hello>, HelloError> {
        Hello::decode(&mut BytesMut::from(bytes), &Limits::default())
    }

    fn encoded(h: &Hello) -> Vec<u8> {
        let mut out = Vec::new();
        h.encode(&mut out);
        out
    }

    /// Found by the `loom_hello` fuzz target: a room length written as a non-minimal uvarint (`81 00` = 1) is
    /// accepted, as upstream does; the hello re-encodes minimal, to bytes that decode to the same hello.
    #[test]
    fn non_minimal_lengths_decode_and_re_encode_minimal() {
        let bytes = [
            0x00, 0x4c, 0x4f, 0x4f, 0x4d, 0x04, 0x50, 0x02, 0x6e, 0x31, 0x81, 0x00, 0x00, 0x00,
            0x00, 0x03,
        ];
        let h = decode(&bytes[1..]).unwrap().unwrap();
        assert_eq!(h, hello(Role::Producer, "n1", "\0", ""));
        let again = encoded(&h);
        assert!(again.len() < bytes.len() - 1);
        assert_eq!(decode(&again), Ok(Some(h)));
    }

    #[test]
    fn producer_vector() {
        let h = hello(Role::Producer, "p1", "default", "t");
        assert_eq!(PRODUCER.len(), 19);
        assert_eq!(decode(PRODUCER), Ok(Some(h.clone())));
        assert_eq!(encoded(&h), PRODUCER);
    }

    #[test]
    fn consumer_vector() {
        let h = hello(Role::Consumer, "c1", "default", "t");
        assert_eq!(decode(CONSUMER), Ok(Some(h.clone())));
        assert_eq!(encoded(&h), CONSUMER);
    }

    #[test]
    fn empty_token_vector() {
        let h = hello(Role::Consumer, "c1", "default", "");
        let mut bytes = CONSUMER[..17].to_vec();
        bytes.push(0x00);
        assert_eq!(encoded(&h), bytes);
        assert!(bytes.ends_with(&[0x74, 0x00]));
        assert_eq!(decode(&bytes), Ok(Some(h)));
    }

    #[test]
    fn consumes_only_the_hello() {
        let mut src = BytesMut::from(CONSUMER);
        src.extend_from_slice(&[0x01, 0x07]);
        let h = Hello::decode(&mut src, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.role, Role::Consumer);
        assert_eq!(&src[..], &[0x01, 0x07]);
    }

    #[test]
    fn every_prefix_needs_more_and_consumes_nothing() {
        for cut in 0..PRODUCER.len() {
            let mut src = BytesMut::from(&PRODUCER[..cut]);
            assert_eq!(Hello::decode(&mut src, &Limits::default()), Ok(None));
            assert_eq!(src.len(), cut);
            assert_eq!(
                Hello::decode_eof(&mut src, &Limits::default()),
                Err(HelloError::Truncated)
            );
        }
    }

    #[test]
    fn empty_name_and_room_allowed_and_room_defaults_for_routing() {
        let h = hello(Role::Producer, "", "", "");
        let got = decode(&encoded(&h)).unwrap().unwrap();
        assert_eq!(got, h);
        assert_eq!(got.room, Bytes::new());
        assert_eq!(got.routing_room(), b"default");
        assert_eq!(
            hello(Role::Producer, "", "r", "").routing_room(),
            b"r".as_slice()
        );
    }

    #[test]
    fn bad_magic_rejected_at_first_wrong_byte() {
        assert_eq!(decode(b"X"), Err(HelloError::BadMagic));
        assert_eq!(decode(b"LOOm"), Err(HelloError::BadMagic));
        assert_eq!(decode(b"loom\x04P\x00\x00\x00"), Err(HelloError::BadMagic));
        assert_eq!(decode(b"LO"), Ok(None));
    }

    #[test]
    fn bad_version_rejected() {
        let mut bytes = PRODUCER.to_vec();
        bytes[4] = 0x03;
        assert_eq!(decode(&bytes), Err(HelloError::BadVersion(0x03)));
        assert_eq!(decode(&bytes[..5]), Err(HelloError::BadVersion(0x03)));
    }

    #[test]
    fn bad_role_rejected_only_after_whole_hello() {
        let mut bytes = PRODUCER.to_vec();
        bytes[5] = b'X';
        assert_eq!(decode(&bytes), Err(HelloError::BadRole(b'X')));
        assert_eq!(decode(&bytes[..18]), Ok(None));
        // Lower-case role is not accepted.
        bytes[5] = b'p';
        assert_eq!(decode(&bytes), Err(HelloError::BadRole(b'p')));
    }

    #[test]
    fn field_limits_are_inclusive() {
        let at_limit = Hello {
            role: Role::Producer,
            name: Bytes::from(vec![b'n'; 128]),
            room: Bytes::from(vec![b'r'; 128]),
            token: Bytes::from(vec![b't'; 1024]),
        };
        assert_eq!(decode(&encoded(&at_limit)), Ok(Some(at_limit.clone())));

        for (field, max) in [
            (HelloField::Name, 128),
            (HelloField::Room, 128),
            (HelloField::Token, 1024),
        ] {
            let mut h = at_limit.clone();
            let long = Bytes::from(vec![b'x'; max + 1]);
            match field {
                HelloField::Name => h.name = long,
                HelloField::Room => h.room = long,
                HelloField::Token => h.token = long,
            }
            let want = Err(HelloError::FieldTooLong {
                field,
                len: max as u64 + 1,
                max,
            });
            assert_eq!(decode(&encoded(&h)), want);
        }
    }

    #[test]
    fn too_long_field_rejected_before_its_bytes_arrive() {
        // Header, then a name length of 2^40 and nothing else.
        let mut bytes = b"LOOM\x04P".to_vec();
        varint::encode(1 << 40, &mut bytes);
        assert_eq!(
            decode(&bytes),
            Err(HelloError::FieldTooLong {
                field: HelloField::Name,
                len: 1 << 40,
                max: 128
            })
        );
    }

    #[test]
    fn field_limit_order_is_name_room_token() {
        let h = Hello {
            role: Role::Producer,
            name: Bytes::from(vec![b'n'; 10]),
            room: Bytes::from(vec![b'r'; 200]),
            token: Bytes::from(vec![b't'; 2000]),
        };
        assert!(matches!(
            decode(&encoded(&h)),
            Err(HelloError::FieldTooLong {
                field: HelloField::Room,
                ..
            })
        ));
    }

    #[test]
    fn corrupt_length_varint_rejected() {
        let mut bytes = b"LOOM\x04C\x02c1".to_vec();
        bytes.extend_from_slice(&[0xff; 10]);
        assert_eq!(
            decode(&bytes),
            Err(HelloError::Varint {
                field: HelloField::Room,
                source: VarintError::TooLarge
            })
        );
    }

    #[test]
    fn limits_are_configurable() {
        let limits = Limits {
            max_token_bytes: 0,
            ..Limits::default()
        };
        let err = Hello::decode(&mut BytesMut::from(PRODUCER), &limits);
        assert!(matches!(
            err,
            Err(HelloError::FieldTooLong {
                field: HelloField::Token,
                len: 1,
                max: 0
            })
        ));
    }

    #[test]
    fn debug_redacts_token() {
        let dbg = format!("{:?}", hello(Role::Producer, "p1", "default", "secret"));
        assert!(!dbg.contains("secret"));
        assert!(dbg.contains("<6 bytes>"));
    }

    #[test]
    fn role_bytes() {
        assert_eq!(Role::Producer.byte(), 0x50);
        assert_eq!(Role::Consumer.byte(), 0x43);
        assert_eq!(Role::from_byte(0x50), Some(Role::Producer));
        assert_eq!(Role::from_byte(0x43), Some(Role::Consumer));
        assert_eq!(Role::from_byte(0x00), None);
    }
}
