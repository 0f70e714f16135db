//! Incremental decoder for a Loom message stream: the producer→server half of a producer stream (and, since the
//! layout is identical, the server→consumer half of a consumer stream).
//!
//! Per message: uvarint key length (1..=`max_key_bytes`), key, uvarint declared size, uvarint msg id, then
//! chunks (uvarint length 1..=`max_chunk_bytes`, bytes) until a single `00` (end of message). Messages follow
//! each other with nothing in between.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::cursor::{within, Cursor};
use super::varint::{self, VarintError};
use crate::loom::limits::Limits;

/// The fields in front of a message's chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    /// Routing/partition key, 1..=`max_key_bytes` bytes.
    pub key: Bytes,
    /// Body size the sender announced; 0 = unknown. Informational, never checked against the body.
    pub declared_size: u64,
    /// From a producer: ignored by the server. Toward a consumer: the server-assigned id.
    pub msg_id: u64,
}

/// One step of a message stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEvent {
    /// A message header was read; chunks follow.
    Start(MessageHeader),
    /// One whole chunk (1..=`max_chunk_bytes` bytes), in the sender's chunk boundaries.
    Chunk(Bytes),
    /// End of message; the next event, if any, is a `Start`.
    End,
}

/// A message stream that can no longer be read. All but [`FrameError::Truncated`] are upstream's
/// `protocol:` errors (the ones its producer error tracker counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Varint(#[from] VarintError),
    #[error("protocol: empty key")]
    EmptyKey,
    #[error("protocol: key is {len} bytes, limit {max}")]
    KeyTooLong { len: u64, max: usize },
    #[error("protocol: chunk is {len} bytes, limit {max}")]
    ChunkTooLong { len: u64, max: usize },
    #[error("stream ended inside a message")]
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages: the next bytes are a header.
    Header,
    /// Inside a message: the next bytes are a chunk length or EOM.
    Body,
}

/// Sans-IO decoder: append received bytes to a `BytesMut`, then call [`MessageDecoder::decode`] until it returns
/// `Ok(None)`. Nothing is consumed from the buffer until a whole header or chunk is there, so at most one header
/// (≤ 10 + `max_key_bytes` + 20 bytes) or one chunk (≤ 10 + `max_chunk_bytes`) is ever buffered. After an error
/// the stream must be abandoned.
#[derive(Debug, Clone)]
pub struct MessageDecoder {
    max_key_bytes: usize,
    max_chunk_bytes: usize,
    state: State,
}

impl MessageDecoder {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_key_bytes: limits.max_key_bytes,
            max_chunk_bytes: limits.max_chunk_bytes,
            state: State::Header,
        }
    }

    /// True between a `Start` and its `End`.
    pub fn in_message(&self) -> bool {
        self.state == State::Body
    }

    /// The next event from the front of `src`, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MessageEvent>, FrameError> {
        match self.state {
            State::Header => self.decode_header(src),
            State::Body => self.decode_chunk(src),
        }
    }

    /// Like [`MessageDecoder::decode`], for when the stream has ended: `Ok(None)` is a clean end (the stream
    /// stopped exactly between two messages); an unfinished header or message is [`FrameError::Truncated`].
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<MessageEvent>, FrameError> {
        match self.decode(src)? {
            Some(event) => Ok(Some(event)),
            None if self.state == State::Header && src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }

    fn decode_header(&mut self, src: &mut BytesMut) -> Result<Option<MessageEvent>, FrameError> {
        let Some(layout) = scan_header(src, self.max_key_bytes)? else {
            return Ok(None);
        };
        // Copied (≤ max_key_bytes) so a queued message does not pin the receive buffer.
        let key = Bytes::copy_from_slice(src.get(layout.key).unwrap_or_default());
        src.advance(layout.len);
        self.state = State::Body;
        Ok(Some(MessageEvent::Start(MessageHeader {
            key,
            declared_size: layout.declared_size,
            msg_id: layout.msg_id,
        })))
    }

    fn decode_chunk(&mut self, src: &mut BytesMut) -> Result<Option<MessageEvent>, FrameError> {
        let Some((len, prefix)) = varint::decode(src)? else {
            return Ok(None);
        };
        if len == 0 {
            src.advance(prefix);
            self.state = State::Header;
            return Ok(Some(MessageEvent::End));
        }
        let too_long = FrameError::ChunkTooLong {
            len,
            max: self.max_chunk_bytes,
        };
        let n = within(len, self.max_chunk_bytes).ok_or(too_long)?;
        let total = prefix.checked_add(n).ok_or(too_long)?;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(prefix);
        Ok(Some(MessageEvent::Chunk(src.split_to(n).freeze())))
    }
}

/// Where a complete header sits in the buffer.
struct HeaderLayout {
    key: Range<usize>,
    declared_size: u64,
    msg_id: u64,
    len: usize,
}

fn scan_header(buf: &[u8], max_key: usize) -> Result<Option<HeaderLayout>, FrameError> {
    let mut c = Cursor::new(buf);
    let Some(key_len) = c.uvarint()? else {
        return Ok(None);
    };
    if key_len == 0 {
        return Err(FrameError::EmptyKey);
    }
    let n = within(key_len, max_key).ok_or(FrameError::KeyTooLong {
        len: key_len,
        max: max_key,
    })?;
    let Some(key) = c.take(n) else {
        return Ok(None);
    };
    let Some(declared_size) = c.uvarint()? else {
        return Ok(None);
    };
    let Some(msg_id) = c.uvarint()? else {
        return Ok(None);
    };
    Ok(Some(HeaderLayout {
        key,
        declared_size,
        msg_id,
        len: c.pos(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector (docs/protocols/loom.md, "Test vectors"): key `k`, declared size 5, msg id 7, body `hello`
    /// in one chunk.
    const HELLO_MESSAGE: &[u8] = &[
        0x01, 0x6b, 0x05, 0x07, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];

    fn events(bytes: &[u8], limits: &Limits) -> Result<Vec<MessageEvent>, FrameError> {
        let mut dec = MessageDecoder::new(limits);
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(ev) = dec.decode_eof(&mut src)? {
            out.push(ev);
        }
        Ok(out)
    }

    fn start(key: &'static [u8], declared_size: u64, msg_id: u64) -> MessageEvent {
        MessageEvent::Start(MessageHeader {
            key: Bytes::from_static(key),
            declared_size,
            msg_id,
        })
    }

    #[test]
    fn reference_message_vector() {
        assert_eq!(
            events(HELLO_MESSAGE, &Limits::default()),
            Ok(vec![
                start(b"k", 5, 7),
                MessageEvent::Chunk(Bytes::from_static(b"hello")),
                MessageEvent::End,
            ])
        );
    }

    #[test]
    fn empty_body_and_back_to_back_messages() {
        let mut bytes = vec![0x01, b'a', 0x00, 0x00, 0x00];
        bytes.extend_from_slice(HELLO_MESSAGE);
        assert_eq!(
            events(&bytes, &Limits::default()),
            Ok(vec![
                start(b"a", 0, 0),
                MessageEvent::End,
                start(b"k", 5, 7),
                MessageEvent::Chunk(Bytes::from_static(b"hello")),
                MessageEvent::End,
            ])
        );
    }

    #[test]
    fn largest_chunk_accepted_one_more_rejected() {
        // docs/protocols/loom.md, "Test vectors": a 65536-byte chunk's length prefix is `80 80 04`.
        let mut bytes = vec![0x01, b'k', 0x00, 0x00, 0x80, 0x80, 0x04];
        bytes.extend(std::iter::repeat_n(0xaa, 65536));
        bytes.push(0x00);
        let got = events(&bytes, &Limits::default()).unwrap();
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[1], MessageEvent::Chunk(c) if c.len() == 65536));

        let mut too_long = vec![0x01, b'k', 0x00, 0x00];
        varint::encode(65537, &mut too_long);
        assert_eq!(
            events(&too_long, &Limits::default()),
            Err(FrameError::ChunkTooLong {
                len: 65537,
                max: 65536
            })
        );
    }

    #[test]
    fn key_bounds() {
        assert_eq!(
            events(&[0x00, 0x00, 0x00], &Limits::default()),
            Err(FrameError::EmptyKey)
        );
        let mut at_limit = vec![0x80, 0x02];
        at_limit.extend(std::iter::repeat_n(b'k', 256));
        at_limit.extend_from_slice(&[0x00, 0x00, 0x00]);
        let got = events(&at_limit, &Limits::default()).unwrap();
        assert!(matches!(&got[0], MessageEvent::Start(h) if h.key.len() == 256));

        // Refused from the length alone, before the key bytes arrive.
        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&[0x81, 0x02][..]);
        assert_eq!(
            dec.decode(&mut src),
            Err(FrameError::KeyTooLong { len: 257, max: 256 })
        );
    }

    #[test]
    fn chunk_length_refused_before_bytes_arrive() {
        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&[0x01, b'k', 0x00, 0x00][..]);
        assert!(matches!(
            dec.decode(&mut src),
            Ok(Some(MessageEvent::Start(_)))
        ));
        varint::encode(1 << 40, &mut src);
        assert!(matches!(
            dec.decode(&mut src),
            Err(FrameError::ChunkTooLong {
                len: 1099511627776,
                ..
            })
        ));
    }

    #[test]
    fn varint_guard_applies_to_every_field() {
        let big = {
            let mut v = Vec::new();
            varint::encode(varint::MAX_VALUE + 1, &mut v);
            v
        };
        for prefix in [&[][..], &[0x01, b'k'][..], &[0x01, b'k', 0x00][..]] {
            let mut bytes = prefix.to_vec();
            bytes.extend_from_slice(&big);
            bytes.extend_from_slice(&[0x00, 0x00, 0x00]);
            assert_eq!(
                events(&bytes, &Limits::default()),
                Err(FrameError::Varint(VarintError::TooLarge))
            );
        }
        // 2^50 itself is fine as declared size and msg id.
        let mut ok = vec![0x01, b'k'];
        varint::encode(varint::MAX_VALUE, &mut ok);
        varint::encode(varint::MAX_VALUE, &mut ok);
        ok.push(0x00);
        assert!(events(&ok, &Limits::default()).is_ok());
    }

    #[test]
    fn eof_only_clean_between_messages() {
        assert_eq!(events(&[], &Limits::default()), Ok(vec![]));
        for cut in 1..HELLO_MESSAGE.len() {
            assert_eq!(
                events(&HELLO_MESSAGE[..cut], &Limits::default()),
                Err(FrameError::Truncated),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn partial_input_consumes_nothing() {
        for cut in 0..4 {
            let mut dec = MessageDecoder::new(&Limits::default());
            let mut src = BytesMut::from(&HELLO_MESSAGE[..cut]);
            assert_eq!(dec.decode(&mut src), Ok(None));
            assert_eq!(src.len(), cut);
            assert!(!dec.in_message());
        }
        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&HELLO_MESSAGE[..8]);
        assert!(dec.decode(&mut src).unwrap().is_some());
        assert!(dec.in_message());
        assert_eq!(dec.decode(&mut src), Ok(None));
        assert_eq!(&src[..], &[0x05, 0x68, 0x65, 0x6c]);
    }

    #[test]
    fn configured_limits_apply() {
        let limits = Limits {
            max_key_bytes: 1,
            max_chunk_bytes: 4,
            ..Limits::default()
        };
        assert_eq!(
            events(HELLO_MESSAGE, &limits),
            Err(FrameError::ChunkTooLong { len: 5, max: 4 })
        );
        assert_eq!(
            events(&[0x02, b'a', b'b', 0x00, 0x00, 0x00], &limits),
            Err(FrameError::KeyTooLong { len: 2, max: 1 })
        );
    }
}
