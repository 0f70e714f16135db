//! The fields of one protobuf message, read in place: what Goomerang's decoder walks a frame and its command
//! with, and what MessageLoop's reads a G2 publish with, so that a publish is read in one pass and only what the
//! command keeps is copied.
//!
//! prost's generated decoders copy every `string` into an owned `String` through its generic buffer reader; here
//! a string is checked for UTF-8 where it lies and copied only where a command keeps it. Keys, varints and the
//! skipping of fields a message does not know (groups included, nested at most as deep as prost allows) are
//! prost's own [`encoding`] functions, so a message reads here exactly when prost would read it.

use prost::encoding::{self, DecodeContext, WireType};
use thiserror::Error;

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
        std::str::from_utf8(self.bytes(tag)?).map_err(|_| WireError::NotUtf8(tag))
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

    fn read(&mut self) -> Result<(u32, Value<'a>), WireError> {
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
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

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
