//! Loom codec properties across modules: the session test vectors (docs/protocols/loom.md, "Test vectors"), round
//! trips (our encoders → our decoders), random and mutated input never panics, and decoding does not depend on how
//! the input is split.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use protocols::loom::codec::delivery::CONSUMER_MAX_CHUNK_BYTES;
use protocols::loom::codec::varint;
use protocols::loom::{
    Assembled, ConsumerFrame, ConsumerKey, Delivery, FrameError, Hello, HelloError, Limits,
    MessageAssembler, MessageDecoder, MessageEvent, MessageHeader, Role, VarintError,
};

/// Everything a decoding run produced, in order, so runs over differently split input can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Hello(Hello),
    Event(MessageEvent),
    Message(Assembled),
    Frame(ConsumerFrame),
    CleanEnd,
    HelloErr(HelloError),
    FrameErr(FrameError),
    AckErr(VarintError),
}

/// What follows the hello on the stream being driven.
enum After {
    Events(MessageDecoder),
    Messages(MessageAssembler),
    Acks,
}

/// Drives a client→server stream (hello, then messages or acks) the way a listener would.
struct Driver {
    buf: BytesMut,
    limits: Limits,
    after: After,
    hello_done: bool,
    failed: bool,
    out: Vec<Out>,
}

impl Driver {
    fn run(after: fn(&Limits) -> After, pieces: &[&[u8]]) -> Vec<Out> {
        let limits = Limits::default();
        let mut d = Self {
            buf: BytesMut::new(),
            after: after(&limits),
            limits,
            hello_done: false,
            failed: false,
            out: Vec::new(),
        };
        for piece in pieces {
            d.buf.extend_from_slice(piece);
            d.drain(false);
        }
        d.drain(true);
        d.out
    }

    fn fail(&mut self, out: Out) {
        self.out.push(out);
        self.failed = true;
    }

    fn drain(&mut self, eof: bool) {
        if self.failed {
            return;
        }
        if !self.hello_done {
            let got = if eof {
                Hello::decode_eof(&mut self.buf, &self.limits).map(Some)
            } else {
                Hello::decode(&mut self.buf, &self.limits)
            };
            match got {
                Ok(Some(hello)) => {
                    self.out.push(Out::Hello(hello));
                    self.hello_done = true;
                }
                Ok(None) => return,
                Err(e) => return self.fail(Out::HelloErr(e)),
            }
        }
        loop {
            let step = match &mut self.after {
                After::Events(dec) => {
                    let r = if eof {
                        dec.decode_eof(&mut self.buf)
                    } else {
                        dec.decode(&mut self.buf)
                    };
                    r.map(|o| o.map(Out::Event)).map_err(Out::FrameErr)
                }
                After::Messages(asm) => {
                    let r = if eof {
                        asm.decode_eof(&mut self.buf)
                    } else {
                        asm.decode(&mut self.buf)
                    };
                    r.map(|o| o.map(Out::Message)).map_err(Out::FrameErr)
                }
                After::Acks => ConsumerFrame::decode(&mut self.buf)
                    .map(|o| o.map(Out::Frame))
                    .map_err(Out::AckErr),
            };
            match step {
                Ok(Some(out)) => self.out.push(out),
                Ok(None) => {
                    if eof {
                        self.out.push(Out::CleanEnd);
                    }
                    return;
                }
                Err(out) => return self.fail(out),
            }
        }
    }
}

fn events(limits: &Limits) -> After {
    After::Events(MessageDecoder::new(limits))
}

fn messages(limits: &Limits) -> After {
    After::Messages(MessageAssembler::new(limits))
}

fn acks(_: &Limits) -> After {
    After::Acks
}

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[test]
fn reference_consumer_session() {
    // Test vectors: client→server `hello(C) ‖ 01 07`, server→client `01 6b 05 07 05 68 65 6c 6c 6f 00`.
    let c2s = hex("4c 4f 4f 4d 04 43 02 63 31 07 64 65 66 61 75 6c 74 01 74  01 07");
    assert_eq!(
        Driver::run(acks, &[&c2s]),
        vec![
            Out::Hello(Hello {
                role: Role::Consumer,
                name: Bytes::from_static(b"c1"),
                room: Bytes::from_static(b"default"),
                token: Bytes::from_static(b"t"),
            }),
            Out::Frame(ConsumerFrame::Ack { msg_id: 7 }),
            Out::CleanEnd,
        ]
    );
    let delivery = Delivery {
        key: ConsumerKey::new(Bytes::from_static(b"k")).unwrap(),
        declared_size: 5,
        msg_id: 7,
        body: Bytes::from_static(b"hello"),
    };
    let mut s2c = Vec::new();
    delivery.encode(&mut s2c);
    assert_eq!(s2c, hex("01 6b 05 07 05 68 65 6c 6c 6f 00"));
}

#[test]
fn reference_producer_session() {
    // The test vectors' producer hello, then their message (its msg id 7 is not kept: the server assigns its own).
    let c2s = hex(
        "4c 4f 4f 4d 04 50 02 70 31 07 64 65 66 61 75 6c 74 01 74  01 6b 05 07 05 68 65 6c 6c 6f 00",
    );
    let out = Driver::run(messages, &[&c2s]);
    assert_eq!(out.len(), 3);
    assert!(
        matches!(&out[0], Out::Hello(h) if h.role == Role::Producer && h.name.as_ref() == b"p1")
    );
    assert!(matches!(&out[1], Out::Message(Assembled::Message(m))
        if m.key.as_ref() == b"k" && m.declared_size == 5 && m.body.as_ref() == b"hello"));
    assert_eq!(out[2], Out::CleanEnd);
}

#[test]
fn protocol_errors_end_the_stream() {
    let hello = hex("4c 4f 4f 4d 04 50 00 00 00");
    let cases: [(&str, Out); 4] = [
        ("00", Out::FrameErr(FrameError::EmptyKey)),
        (
            "81 02",
            Out::FrameErr(FrameError::KeyTooLong { len: 257, max: 256 }),
        ),
        (
            "01 6b 00 00 81 80 04",
            Out::FrameErr(FrameError::ChunkTooLong {
                len: 65537,
                max: 65536,
            }),
        ),
        ("01 6b 00 00 05 68 65", Out::FrameErr(FrameError::Truncated)),
    ];
    for (tail, want) in cases {
        let mut bytes = hello.clone();
        bytes.extend(hex(tail));
        let out = Driver::run(messages, &[&bytes]);
        assert_eq!(out.last(), Some(&want), "{tail}");
    }
}

// ---- generators -------------------------------------------------------------------------------------

fn bytes_up_to(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn hello_strategy() -> impl Strategy<Value = Hello> {
    (
        prop_oneof![Just(Role::Producer), Just(Role::Consumer)],
        bytes_up_to(128),
        bytes_up_to(128),
        bytes_up_to(1024),
    )
        .prop_map(|(role, name, room, token)| Hello {
            role,
            name,
            room,
            token,
        })
}

fn small_hello(role: Role) -> impl Strategy<Value = Hello> {
    (bytes_up_to(8), bytes_up_to(8), bytes_up_to(8)).prop_map(move |(name, room, token)| Hello {
        role,
        name,
        room,
        token,
    })
}

fn wire_value() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..300, 0..=varint::MAX_VALUE]
}

/// A producer-side message with arbitrary chunk boundaries (what real producers send).
#[derive(Debug, Clone)]
struct RawMessage {
    key: Vec<u8>,
    declared_size: u64,
    msg_id: u64,
    chunks: Vec<Vec<u8>>,
}

impl RawMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        varint::encode(self.key.len() as u64, out);
        out.extend_from_slice(&self.key);
        varint::encode(self.declared_size, out);
        varint::encode(self.msg_id, out);
        for chunk in &self.chunks {
            varint::encode(chunk.len() as u64, out);
            out.extend_from_slice(chunk);
        }
        out.push(0);
    }
}

fn raw_message() -> impl Strategy<Value = RawMessage> {
    (
        prop_oneof![
            4 => proptest::collection::vec(any::<u8>(), 1..=8),
            1 => proptest::collection::vec(any::<u8>(), 250..=256),
        ],
        wire_value(),
        wire_value(),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..=24), 0..=4),
    )
        .prop_map(|(key, declared_size, msg_id, chunks)| RawMessage {
            key,
            declared_size,
            msg_id,
            chunks,
        })
}

fn producer_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        small_hello(Role::Producer),
        proptest::collection::vec(raw_message(), 0..=4),
    )
        .prop_map(|(hello, msgs)| {
            let mut out = Vec::new();
            hello.encode(&mut out);
            for m in &msgs {
                m.encode(&mut out);
            }
            out
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// Feeds `bytes` whole, split in two at every boundary, and one byte at a time; all runs must agree.
fn assert_split_invariant(
    after: fn(&Limits) -> After,
    bytes: &[u8],
) -> Result<Vec<Out>, TestCaseError> {
    let whole = Driver::run(after, &[bytes]);
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        prop_assert_eq!(&Driver::run(after, &[a, b]), &whole, "split at {}", cut);
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    prop_assert_eq!(&Driver::run(after, &singles), &whole, "byte by byte");
    Ok(whole)
}

// ---- properties -------------------------------------------------------------------------------------

proptest! {
    #[test]
    fn hello_round_trip(hello in hello_strategy(), tail in bytes_up_to(8)) {
        let mut buf = BytesMut::new();
        hello.encode(&mut buf);
        buf.extend_from_slice(&tail);
        prop_assert_eq!(Hello::decode(&mut buf, &Limits::default()), Ok(Some(hello)));
        prop_assert_eq!(&buf[..], &tail[..]);
    }

    #[test]
    fn ack_round_trip(
        hello in small_hello(Role::Consumer),
        frames in proptest::collection::vec(
            prop_oneof![
                wire_value().prop_map(|msg_id| ConsumerFrame::Ack { msg_id }),
                (2..=varint::MAX_VALUE, wire_value())
                    .prop_map(|(frame_type, value)| ConsumerFrame::Unknown { frame_type, value }),
            ],
            0..8,
        ),
    ) {
        let mut bytes = Vec::new();
        hello.encode(&mut bytes);
        for f in &frames {
            f.encode(&mut bytes);
        }
        let mut want = vec![Out::Hello(hello)];
        want.extend(frames.into_iter().map(Out::Frame));
        want.push(Out::CleanEnd);
        prop_assert_eq!(assert_split_invariant(acks, &bytes)?, want);
    }

    #[test]
    fn producer_stream_split_invariant(bytes in producer_stream()) {
        let out = assert_split_invariant(events, &bytes)?;
        prop_assert_eq!(out.last(), Some(&Out::CleanEnd));
        let out = assert_split_invariant(messages, &bytes)?;
        prop_assert_eq!(out.last(), Some(&Out::CleanEnd));
    }

    #[test]
    fn raw_messages_decode_to_their_parts(msgs in proptest::collection::vec(raw_message(), 0..=4)) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.encode(&mut bytes);
        }
        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&bytes[..]);
        for m in &msgs {
            let start = MessageEvent::Start(MessageHeader {
                key: Bytes::from(m.key.clone()),
                declared_size: m.declared_size,
                msg_id: m.msg_id,
            });
            prop_assert_eq!(dec.decode_eof(&mut src), Ok(Some(start)));
            for c in &m.chunks {
                let chunk = MessageEvent::Chunk(Bytes::from(c.clone()));
                prop_assert_eq!(dec.decode_eof(&mut src), Ok(Some(chunk)));
            }
            prop_assert_eq!(dec.decode_eof(&mut src), Ok(Some(MessageEvent::End)));
        }
        prop_assert_eq!(dec.decode_eof(&mut src), Ok(None));
    }

    #[test]
    fn mutated_streams_never_panic_and_stay_split_invariant(
        bytes in producer_stream(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let bytes = mutate(bytes, &mutations);
        assert_split_invariant(events, &bytes)?;
        assert_split_invariant(messages, &bytes)?;
        assert_split_invariant(acks, &bytes)?;
    }

    #[test]
    fn random_bytes_never_panic(
        hello in small_hello(Role::Producer),
        with_hello in any::<bool>(),
        noise in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = Vec::new();
        if with_hello {
            hello.encode(&mut bytes);
        }
        bytes.extend_from_slice(&noise);
        assert_split_invariant(events, &bytes)?;
        assert_split_invariant(messages, &bytes)?;
        assert_split_invariant(acks, &bytes)?;
    }

    #[test]
    fn decoded_events_respect_limits(noise in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&noise[..]);
        while let Ok(Some(ev)) = dec.decode_eof(&mut src) {
            match ev {
                MessageEvent::Start(h) => prop_assert!((1..=256).contains(&h.key.len())),
                MessageEvent::Chunk(c) => prop_assert!((1..=65536).contains(&c.len())),
                MessageEvent::End => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Encode with the consumer encoder, decode with the message decoder and the assembler.
    #[test]
    fn delivery_round_trip(
        key in proptest::collection::vec(any::<u8>(), 0..400),
        declared_size in wire_value(),
        msg_id in wire_value(),
        len in prop_oneof![0usize..100, 65530usize..65540, 0usize..200_000],
        seed in any::<u8>(),
    ) {
        let body: Bytes = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let key = ConsumerKey::derive(&Bytes::from(key), msg_id);
        let delivery = Delivery { key: key.clone(), declared_size, msg_id, body: body.clone() };
        let mut wire = Vec::new();
        delivery.encode(&mut wire);

        let mut dec = MessageDecoder::new(&Limits::default());
        let mut src = BytesMut::from(&wire[..]);
        let start = MessageEvent::Start(MessageHeader {
            key: Bytes::from(key.clone()),
            declared_size,
            msg_id,
        });
        prop_assert_eq!(dec.decode_eof(&mut src), Ok(Some(start)));
        let mut joined = Vec::new();
        loop {
            match dec.decode_eof(&mut src) {
                Ok(Some(MessageEvent::Chunk(c))) => {
                    let rest = len - joined.len();
                    prop_assert_eq!(c.len(), rest.min(CONSUMER_MAX_CHUNK_BYTES));
                    joined.extend_from_slice(&c);
                }
                Ok(Some(MessageEvent::End)) => break,
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(&joined[..], &body[..]);
        prop_assert_eq!(dec.decode_eof(&mut src), Ok(None));

        let limits = Limits { max_message_bytes: u64::MAX, ..Limits::default() };
        let mut asm = MessageAssembler::new(&limits);
        let mut src = BytesMut::from(&wire[..]);
        match asm.decode_eof(&mut src) {
            Ok(Some(Assembled::Message(m))) => {
                prop_assert_eq!(m.key.as_ref(), key.as_bytes());
                prop_assert_eq!(m.declared_size, declared_size);
                prop_assert_eq!(m.body, body);
            }
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
