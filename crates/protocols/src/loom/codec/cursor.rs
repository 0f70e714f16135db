//! A read-only cursor over buffered wire bytes, shared by the hello and message-header scanners. It never
//! consumes: scanners first find a complete frame, then the caller splits it off the buffer.

use std::ops::Range;

use super::varint::{self, VarintError};

pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes scanned so far.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    pub(super) fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// Next uvarint; `Ok(None)` when the buffer ends inside it.
    pub(super) fn uvarint(&mut self) -> Result<Option<u64>, VarintError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        Ok(varint::decode(rest)?.map(|(value, len)| {
            self.pos += len;
            value
        }))
    }

    /// Range of the next `n` bytes, or `None` when fewer are buffered.
    pub(super) fn take(&mut self, n: usize) -> Option<Range<usize>> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())?;
        let range = self.pos..end;
        self.pos = end;
        Some(range)
    }
}

/// `len` as a usize if it is at most `max`: the check every wire length passes before anything waits for
/// (or allocates) its bytes.
pub(super) fn within(len: u64, max: usize) -> Option<usize> {
    usize::try_from(len).ok().filter(|&n| n <= max)
}
