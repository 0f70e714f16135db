//! Store-and-forward assembly of producer messages: turns [`MessageEvent`]s into whole bodies of at most
//! `max_message_bytes`, and drops oversized messages *whole*.
//!
//! Upstream discards a message whose declared size is over the limit, but delivers a truncated body (plus EOM)
//! when the actual bytes exceed it or the producer dies mid-message (reference §4.7). gatewayd does not
//! reproduce that (§7 decision 2): a message is either delivered complete or not at all.

use bytes::{Bytes, BytesMut};

use super::message::{FrameError, MessageDecoder, MessageEvent, MessageHeader};
use crate::loom::limits::Limits;

/// A complete producer message. The producer's msg id is not kept: the server assigns its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedMessage {
    pub key: Bytes,
    pub declared_size: u64,
    pub body: Bytes,
}

/// Why a whole message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The header announced more than `max_message_bytes`; the body was read and thrown away unbuffered.
    DeclaredTooLarge,
    /// The body grew past `max_message_bytes`; what was buffered was freed and the rest thrown away.
    BodyTooLarge,
}

/// A message read to its EOM but not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedMessage {
    pub key: Bytes,
    pub declared_size: u64,
    /// Body bytes the producer actually sent.
    pub received: u64,
    pub reason: DropReason,
}

/// What one message on a producer stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    Message(ProducedMessage),
    Dropped(DroppedMessage),
}

#[derive(Debug)]
enum Body {
    Keep(BytesMut),
    Discard(DropReason),
}

#[derive(Debug)]
struct Partial {
    key: Bytes,
    declared_size: u64,
    received: u64,
    body: Body,
}

/// Reads a producer stream (after the hello) one message at a time. Each call returns at most one message and
/// consumes nothing past its EOM, so a session applying Loom's stop-and-wait simply does not call again until
/// the previous message is acknowledged. Memory per stream is bounded by `max_message_bytes` plus one chunk.
#[derive(Debug)]
pub struct MessageAssembler {
    decoder: MessageDecoder,
    max_message_bytes: u64,
    current: Option<Partial>,
}

impl MessageAssembler {
    pub fn new(limits: &Limits) -> Self {
        Self {
            decoder: MessageDecoder::new(limits),
            max_message_bytes: limits.max_message_bytes,
            current: None,
        }
    }

    /// Whether the message being read is already over `max_message_bytes` (declared or received): it will be
    /// [`Assembled::Dropped`] at its end.
    pub fn discarding(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|partial| matches!(partial.body, Body::Discard(_)))
    }

    /// The next finished message from `src`, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Assembled>, FrameError> {
        while let Some(event) = self.decoder.decode(src)? {
            if let Some(done) = self.push(event) {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    /// Like [`MessageAssembler::decode`] once the stream has ended: `Ok(None)` is a clean end at a message
    /// boundary; a stream ending inside a message is [`FrameError::Truncated`] and that message is lost.
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Assembled>, FrameError> {
        while let Some(event) = self.decoder.decode_eof(src)? {
            if let Some(done) = self.push(event) {
                return Ok(Some(done));
            }
        }
        Ok(None)
    }

    fn push(&mut self, event: MessageEvent) -> Option<Assembled> {
        match event {
            MessageEvent::Start(header) => {
                self.current = Some(Partial::new(header, self.max_message_bytes));
                None
            }
            MessageEvent::Chunk(chunk) => {
                if let Some(partial) = &mut self.current {
                    partial.push(&chunk, self.max_message_bytes);
                }
                None
            }
            MessageEvent::End => self.current.take().map(Partial::finish),
        }
    }
}

impl Partial {
    fn new(header: MessageHeader, max: u64) -> Self {
        let body = if header.declared_size > max {
            Body::Discard(DropReason::DeclaredTooLarge)
        } else {
            Body::Keep(BytesMut::new())
        };
        Self {
            key: header.key,
            declared_size: header.declared_size,
            received: 0,
            body,
        }
    }

    fn push(&mut self, chunk: &[u8], max: u64) {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if let Body::Keep(buf) = &mut self.body {
            if self.received > max {
                self.body = Body::Discard(DropReason::BodyTooLarge);
            } else {
                buf.extend_from_slice(chunk);
            }
        }
    }

    fn finish(self) -> Assembled {
        match self.body {
            Body::Keep(buf) => Assembled::Message(ProducedMessage {
                key: self.key,
                declared_size: self.declared_size,
                body: buf.freeze(),
            }),
            Body::Discard(reason) => Assembled::Dropped(DroppedMessage {
                key: self.key,
                declared_size: self.declared_size,
                received: self.received,
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loom::varint;

    fn message(key: &[u8], declared: u64, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        varint::encode(key.len() as u64, &mut out);
        out.extend_from_slice(key);
        varint::encode(declared, &mut out);
        out.push(0x00);
        for c in chunks {
            varint::encode(c.len() as u64, &mut out);
            out.extend_from_slice(c);
        }
        out.push(0x00);
        out
    }

    fn limits(max: u64) -> Limits {
        Limits {
            max_message_bytes: max,
            ..Limits::default()
        }
    }

    fn all(bytes: &[u8], limits: &Limits) -> Result<Vec<Assembled>, FrameError> {
        let mut asm = MessageAssembler::new(limits);
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(a) = asm.decode_eof(&mut src)? {
            out.push(a);
        }
        Ok(out)
    }

    #[test]
    fn reference_vector_assembles() {
        let bytes = [
            0x01, 0x6b, 0x05, 0x07, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(
            all(&bytes, &Limits::default()),
            Ok(vec![Assembled::Message(ProducedMessage {
                key: Bytes::from_static(b"k"),
                declared_size: 5,
                body: Bytes::from_static(b"hello"),
            })])
        );
    }

    #[test]
    fn chunks_are_joined_and_empty_body_allowed() {
        let mut bytes = message(b"k", 0, &[b"ab", b"c", b"def"]);
        bytes.extend(message(b"e", 0, &[]));
        let got = all(&bytes, &Limits::default()).unwrap();
        assert_eq!(
            got,
            vec![
                Assembled::Message(ProducedMessage {
                    key: Bytes::from_static(b"k"),
                    declared_size: 0,
                    body: Bytes::from_static(b"abcdef"),
                }),
                Assembled::Message(ProducedMessage {
                    key: Bytes::from_static(b"e"),
                    declared_size: 0,
                    body: Bytes::new(),
                }),
            ]
        );
    }

    #[test]
    fn body_at_limit_kept_over_limit_dropped_whole() {
        assert!(matches!(
            all(&message(b"k", 0, &[b"abc", b"d"]), &limits(4)).unwrap()[..],
            [Assembled::Message(ref m)] if m.body.as_ref() == b"abcd"
        ));
        let mut bytes = message(b"k", 0, &[b"abc", b"de", b"f"]);
        bytes.extend(message(b"n", 0, &[b"ok"]));
        assert_eq!(
            all(&bytes, &limits(4)),
            Ok(vec![
                Assembled::Dropped(DroppedMessage {
                    key: Bytes::from_static(b"k"),
                    declared_size: 0,
                    received: 6,
                    reason: DropReason::BodyTooLarge,
                }),
                Assembled::Message(ProducedMessage {
                    key: Bytes::from_static(b"n"),
                    declared_size: 0,
                    body: Bytes::from_static(b"ok"),
                }),
            ])
        );
    }

    #[test]
    fn declared_over_limit_dropped_even_if_body_small() {
        assert_eq!(
            all(&message(b"k", 5, &[b"a"]), &limits(4)),
            Ok(vec![Assembled::Dropped(DroppedMessage {
                key: Bytes::from_static(b"k"),
                declared_size: 5,
                received: 1,
                reason: DropReason::DeclaredTooLarge,
            })])
        );
        // Declared exactly at the limit is fine.
        assert!(matches!(
            all(&message(b"k", 4, &[b"a"]), &limits(4)).unwrap()[..],
            [Assembled::Message(_)]
        ));
    }

    #[test]
    fn default_limit_is_sixteen_mib() {
        let chunk = vec![0u8; 65536];
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&chunk[..], 256).collect();
        let exact = message(b"k", 0, &chunks);
        assert!(matches!(
            all(&exact, &Limits::default()).unwrap()[..],
            [Assembled::Message(ref m)] if m.body.len() == 16 << 20
        ));
        let mut over = chunks.clone();
        over.push(b"x");
        assert!(matches!(
            all(&message(b"k", 0, &over), &Limits::default()).unwrap()[..],
            [Assembled::Dropped(DroppedMessage { reason: DropReason::BodyTooLarge, received, .. })]
                if received == (16 << 20) + 1
        ));
    }

    #[test]
    fn truncated_message_is_never_delivered() {
        let bytes = message(b"k", 0, &[b"abc"]);
        for cut in 1..bytes.len() {
            assert_eq!(
                all(&bytes[..cut], &Limits::default()),
                Err(FrameError::Truncated)
            );
        }
    }

    #[test]
    fn stops_at_each_eom() {
        let mut bytes = message(b"a", 0, &[b"1"]);
        let second = message(b"b", 0, &[b"2"]);
        bytes.extend_from_slice(&second);
        let mut asm = MessageAssembler::new(&Limits::default());
        let mut src = BytesMut::from(&bytes[..]);
        assert!(matches!(
            asm.decode(&mut src),
            Ok(Some(Assembled::Message(_)))
        ));
        assert_eq!(&src[..], &second[..]);
    }
}
