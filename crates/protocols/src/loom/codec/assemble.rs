//! Assembly of producer messages: turns [`MessageEvent`]s into whole bodies of at most `max_message_bytes`, passes
//! larger bodies of at most `max_streamed_message_bytes` on chunk by chunk (cut-through), and drops messages over
//! that *whole*.
//!
//! Upstream discards a message whose declared size is over the limit, but delivers a truncated body (plus EOM)
//! when the actual bytes exceed it or the producer dies mid-message. gatewayd does not reproduce that
//! (docs/protocols/loom.md, "Delivery"): a message is either delivered complete or not at all. A streamed message
//! that fails is reported as such, and whoever relays it must make the receiving end see an error.

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

/// The front of a message over `max_message_bytes`: from here on its body is passed on as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    pub key: Bytes,
    pub declared_size: u64,
    /// The body bytes held before the message passed `max_message_bytes` (empty when its header declared more).
    pub held: Bytes,
}

/// Why a whole message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The header announced more than `max_streamed_message_bytes`; the body was read and thrown away unbuffered.
    DeclaredTooLarge,
    /// The body grew past `max_streamed_message_bytes`; what was buffered was freed and the rest thrown away.
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

/// What the next bytes of a producer stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// A whole message of at most `max_message_bytes`.
    Message(ProducedMessage),
    Dropped(DroppedMessage),
    /// A message passed `max_message_bytes`: it is cut through. [`Assembled::Chunk`]s follow, then
    /// [`Assembled::End`]; or, should it pass `max_streamed_message_bytes`, nothing more
    /// ([`MessageAssembler::discarding`]).
    Streamed(StreamStart),
    /// The next body bytes of the streamed message.
    Chunk(Bytes),
    /// The streamed message is complete: `received` body bytes in all.
    End {
        received: u64,
    },
}

#[derive(Debug)]
enum Body {
    Keep(BytesMut),
    Stream,
    Discard(DropReason),
}

#[derive(Debug)]
struct Partial {
    key: Bytes,
    declared_size: u64,
    received: u64,
    body: Body,
}

/// The two ceilings a message is measured against.
#[derive(Debug, Clone, Copy)]
struct Ceilings {
    whole: u64,
    streamed: u64,
}

/// Reads a producer stream (after the hello) one message at a time. Each call returns at most one item and
/// consumes nothing past a message's EOM, so a session applying Loom's stop-and-wait simply does not call again
/// until the previous message is acknowledged. Memory per stream is bounded by `max_message_bytes` plus one chunk:
/// a streamed message's chunks are handed out as they are read.
#[derive(Debug)]
pub struct MessageAssembler {
    decoder: MessageDecoder,
    ceilings: Ceilings,
    current: Option<Partial>,
}

impl MessageAssembler {
    pub fn new(limits: &Limits) -> Self {
        Self {
            decoder: MessageDecoder::new(limits),
            ceilings: Ceilings {
                whole: limits.max_message_bytes,
                streamed: limits
                    .max_streamed_message_bytes
                    .max(limits.max_message_bytes),
            },
            current: None,
        }
    }

    /// Whether the message being read is already over `max_streamed_message_bytes` (declared or received): it
    /// will be [`Assembled::Dropped`] at its end.
    pub fn discarding(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|partial| matches!(partial.body, Body::Discard(_)))
    }

    /// The next item from `src`, `Ok(None)` if more bytes are needed.
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
                let (partial, streamed) = Partial::new(header, self.ceilings);
                self.current = Some(partial);
                streamed
            }
            MessageEvent::Chunk(chunk) => self
                .current
                .as_mut()
                .and_then(|partial| partial.push(chunk, self.ceilings)),
            MessageEvent::End => self.current.take().map(Partial::finish),
        }
    }
}

impl Partial {
    fn new(header: MessageHeader, ceilings: Ceilings) -> (Self, Option<Assembled>) {
        let (body, streamed) = if header.declared_size > ceilings.streamed {
            (Body::Discard(DropReason::DeclaredTooLarge), None)
        } else if header.declared_size > ceilings.whole {
            let start = StreamStart {
                key: header.key.clone(),
                declared_size: header.declared_size,
                held: Bytes::new(),
            };
            (Body::Stream, Some(Assembled::Streamed(start)))
        } else {
            (Body::Keep(BytesMut::new()), None)
        };
        let partial = Self {
            key: header.key,
            declared_size: header.declared_size,
            received: 0,
            body,
        };
        (partial, streamed)
    }

    fn push(&mut self, chunk: Bytes, ceilings: Ceilings) -> Option<Assembled> {
        self.received = self.received.saturating_add(chunk.len() as u64);
        if matches!(self.body, Body::Discard(_)) {
            return None;
        }
        if self.received > ceilings.streamed {
            self.body = Body::Discard(DropReason::BodyTooLarge);
            return None;
        }
        match &mut self.body {
            Body::Keep(buf) if self.received > ceilings.whole => {
                buf.extend_from_slice(&chunk);
                let held = std::mem::take(buf).freeze();
                self.body = Body::Stream;
                Some(Assembled::Streamed(StreamStart {
                    key: self.key.clone(),
                    declared_size: self.declared_size,
                    held,
                }))
            }
            Body::Keep(buf) => {
                buf.extend_from_slice(&chunk);
                None
            }
            Body::Stream => Some(Assembled::Chunk(chunk)),
            Body::Discard(_) => None,
        }
    }

    fn finish(self) -> Assembled {
        match self.body {
            Body::Keep(buf) => Assembled::Message(ProducedMessage {
                key: self.key,
                declared_size: self.declared_size,
                body: buf.freeze(),
            }),
            Body::Stream => Assembled::End {
                received: self.received,
            },
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
    use crate::loom::codec::varint;

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

    /// Whole messages up to `max`, nothing cut through.
    fn limits(max: u64) -> Limits {
        streaming(max, max)
    }

    fn streaming(whole: u64, streamed: u64) -> Limits {
        Limits {
            max_message_bytes: whole,
            max_streamed_message_bytes: streamed,
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
    fn default_limits_hold_sixteen_mib_whole_and_stream_more() {
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
            [Assembled::Streamed(StreamStart { ref held, .. }), Assembled::End { received }]
                if held.len() == (16 << 20) + 1 && received == (16 << 20) + 1
        ));
    }

    #[test]
    fn declared_over_whole_limit_streams_from_the_first_chunk() {
        assert_eq!(
            all(&message(b"k", 5, &[b"ab", b"cde"]), &streaming(4, 8)),
            Ok(vec![
                Assembled::Streamed(StreamStart {
                    key: Bytes::from_static(b"k"),
                    declared_size: 5,
                    held: Bytes::new(),
                }),
                Assembled::Chunk(Bytes::from_static(b"ab")),
                Assembled::Chunk(Bytes::from_static(b"cde")),
                Assembled::End { received: 5 },
            ])
        );
    }

    #[test]
    fn undeclared_body_is_held_until_it_passes_the_whole_limit() {
        let mut bytes = message(b"k", 0, &[b"abc", b"de", b"f"]);
        bytes.extend(message(b"n", 0, &[b"ok"]));
        assert_eq!(
            all(&bytes, &streaming(4, 8)),
            Ok(vec![
                Assembled::Streamed(StreamStart {
                    key: Bytes::from_static(b"k"),
                    declared_size: 0,
                    held: Bytes::from_static(b"abcde"),
                }),
                Assembled::Chunk(Bytes::from_static(b"f")),
                Assembled::End { received: 6 },
                Assembled::Message(ProducedMessage {
                    key: Bytes::from_static(b"n"),
                    declared_size: 0,
                    body: Bytes::from_static(b"ok"),
                }),
            ])
        );
    }

    #[test]
    fn streamed_body_over_its_limit_is_discarded() {
        let mut asm = MessageAssembler::new(&streaming(4, 8));
        let mut src = BytesMut::from(&message(b"k", 6, &[b"abcde", b"fghij"])[..]);
        assert!(matches!(
            asm.decode(&mut src),
            Ok(Some(Assembled::Streamed(_)))
        ));
        assert!(matches!(
            asm.decode(&mut src),
            Ok(Some(Assembled::Chunk(_)))
        ));
        assert!(!asm.discarding());
        assert!(matches!(
            asm.decode(&mut src),
            Ok(Some(Assembled::Dropped(DroppedMessage {
                reason: DropReason::BodyTooLarge,
                received: 10,
                ..
            })))
        ));
        // Declared over the streamed limit: never started.
        assert!(matches!(
            all(&message(b"k", 9, &[b"a"]), &streaming(4, 8)).unwrap()[..],
            [Assembled::Dropped(DroppedMessage {
                reason: DropReason::DeclaredTooLarge,
                ..
            })]
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
