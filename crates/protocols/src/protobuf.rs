//! The fields of one protobuf message, read in place: what Goomerang's decoder walks a frame and its command
//! with, and what MessageLoop's reads a G2 publish with, so that a publish is read in one pass and only what the
//! command keeps is copied.
//!
//! prost's generated decoders copy every `string` into an owned `String` through its generic buffer reader; here
//! a string is checked for UTF-8 where it lies and copied only where a command keeps it. Keys, varints and the
//! skipping of fields a message does not know (groups included, nested at most as deep as prost allows) are
//! prost's own [`encoding`] functions, so a message reads here exactly when prost would read it.
//!
//! The writing side is the two primitives the direct encoders (Goomerang's frames, MessageLoop's publications)
//! write every field with, [`put_key`] and [`put_varint`], into a `Vec` sized beforehand: prost's own go through
//! `BufMut`, which checks for room and copies a slice for every byte.

use prost::encoding::{self, DecodeContext, WireType};
use thiserror::Error;

/// Writes the key of field `tag` of `wire_type`.
#[inline]
pub fn put_key(tag: u32, wire_type: WireType, out: &mut Vec<u8>) {
    put_varint(u64::from(tag << 3 | wire_type as u32), out);
}

/// Writes `value` as a varint (LEB128, as prost writes it).
#[inline]
pub fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Why bytes are not the message they should be.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error(transparent)]
    Protobuf(#[from] prost::DecodeError),
    #[error("field {0} runs past the end of its message")]
    Truncated(u32),
    #[error("field {0} has the wrong wire type")]
    WireType(u32),
    #[error("string field {0} is not UTF-8")]
    NotUtf8(u32),
}

/// One field's value; fixed-size and group fields, which no message read here has, are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Skipped,
}

impl<'a> Value<'a> {
    /// This value as a `bytes` field `tag`.
    pub fn bytes(self, tag: u32) -> Result<&'a [u8], WireError> {
        match self {
            Self::Bytes(bytes) => Ok(bytes),
            Self::Varint(_) | Self::Skipped => Err(WireError::WireType(tag)),
        }
    }

    /// This value as a `string` field `tag`.
    pub fn string(self, tag: u32) -> Result<&'a str, WireError> {
        core_bus::text::utf8(self.bytes(tag)?).ok_or(WireError::NotUtf8(tag))
    }

    /// This value as a varint field `tag` (`int64`, `bool`).
    pub fn varint(self, tag: u32) -> Result<u64, WireError> {
        match self {
            Self::Varint(value) => Ok(value),
            Self::Bytes(_) | Self::Skipped => Err(WireError::WireType(tag)),
        }
    }
}

/// The fields of one message in wire order, each as its number and [`Value`].
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(message: &'a [u8]) -> Self {
        Self { rest: message }
    }

    #[inline]
    fn read(&mut self) -> Result<(u32, Value<'a>), WireError> {
        match self.read_short() {
            Some(field) => Ok(field),
            None => self.read_general(),
        }
    }

    /// Any field, with prost's decoders.
    fn read_general(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let (tag, wire_type) = encoding::decode_key(&mut self.rest)?;
        let value = match wire_type {
            WireType::Varint => Value::Varint(encoding::decode_varint(&mut self.rest)?),
            WireType::LengthDelimited => {
                let len = encoding::decode_varint(&mut self.rest)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated(tag))?;
                let (bytes, rest) = self
                    .rest
                    .split_at_checked(len)
                    .ok_or(WireError::Truncated(tag))?;
                self.rest = rest;
                Value::Bytes(bytes)
            }
            _ => {
                encoding::skip_field(wire_type, tag, &mut self.rest, DecodeContext::default())?;
                Value::Skipped
            }
        };
        Ok((tag, value))
    }

    /// The common field, read without prost's general decoders: a one-byte key (a field number up to 15) of a
    /// varint under 128 or of bytes shorter than 128 that fit. `None` leaves the bytes for
    /// [`Fields::read_general`], which reads every other field, and every malformed one, as prost does.
    #[inline]
    fn read_short(&mut self) -> Option<(u32, Value<'a>)> {
        let [key, first, ..] = *self.rest else {
            return None;
        };
        if key >= 0x80 || first >= 0x80 || key >> 3 == 0 {
            return None;
        }
        let tag = u32::from(key >> 3);
        match key & 7 {
            0 => {
                self.rest = &self.rest[2..];
                Some((tag, Value::Varint(u64::from(first))))
            }
            2 => {
                let end = 2 + usize::from(first);
                let bytes = self.rest.get(2..end)?;
                self.rest = &self.rest[end..];
                Some((tag, Value::Bytes(bytes)))
            }
            _ => None,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = self.read();
        if field.is_err() {
            // Nothing after a field that cannot be read is a field.
            self.rest = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Every field read with prost's decoders alone, up to the first that cannot be read.
    fn general(message: &[u8]) -> Vec<Result<(u32, Value<'_>), WireError>> {
        let mut fields = Fields::new(message);
        let mut out = Vec::new();
        while !fields.rest.is_empty() {
            let field = fields.read_general();
            let failed = field.is_err();
            out.push(field);
            if failed {
                break;
            }
        }
        out
    }

    #[test]
    fn short_fields_read_as_prost_reads_them() {
        let message = [
            0x08, 0x05, 0x12, 0x02, b'h', b'i', 0x1a, 0x00, 0x08, 0x96, 0x01,
        ];
        let fields: Vec<_> = Fields::new(&message).collect();
        assert_eq!(fields, general(&message));
        assert_eq!(
            fields,
            [
                Ok((1, Value::Varint(5))),
                Ok((2, Value::Bytes(b"hi"))),
                Ok((3, Value::Bytes(b""))),
                Ok((1, Value::Varint(150))),
            ]
        );
        // A length over 127 and a varint of ten bytes.
        let mut message = vec![0x12, 0x82, 0x01];
        message.extend([b'x'; 130]);
        message.extend([
            0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        let fields: Vec<_> = Fields::new(&message).collect();
        assert_eq!(fields, general(&message));
        assert_eq!(
            fields,
            [
                Ok((2, Value::Bytes(&[b'x'; 130]))),
                Ok((3, Value::Varint(u64::MAX)))
            ]
        );
        // Field number 0, bytes running past the end: prost's errors.
        for bad in [&[0x02, 0x00][..], &[0x12, 0x03, b'a']] {
            let fields: Vec<_> = Fields::new(bad).collect();
            assert_eq!(fields, general(bad));
            assert!(fields[0].is_err());
        }
    }

    proptest! {
        #[test]
        fn keys_and_varints_are_written_as_prost_writes_them(tag in 1u32..(1 << 29), value: u64) {
            for wire_type in [WireType::Varint, WireType::LengthDelimited] {
                let (mut ours, mut prosts) = (Vec::new(), Vec::new());
                put_key(tag, wire_type, &mut ours);
                put_varint(value, &mut ours);
                encoding::encode_key(tag, wire_type, &mut prosts);
                encoding::encode_varint(value, &mut prosts);
                prop_assert_eq!(ours, prosts);
            }
        }

        #[test]
        fn any_bytes_read_as_prost_reads_them(message in proptest::collection::vec(any::<u8>(), 0..64)) {
            let fields: Vec<_> = Fields::new(&message).collect();
            prop_assert_eq!(fields, general(&message));
        }

        #[test]
        fn short_fields_of_any_kind_read_as_prost_reads_them(
            fields in proptest::collection::vec((1u8..16, 0u8..6, any::<u8>(), proptest::collection::vec(any::<u8>(), 0..8)), 0..8)
        ) {
            let mut message = Vec::new();
            for (tag, wire_type, first, rest) in fields {
                message.push(tag << 3 | wire_type);
                message.push(first);
                message.extend(rest);
            }
            let read: Vec<_> = Fields::new(&message).collect();
            prop_assert_eq!(read, general(&message));
        }
    }
}
