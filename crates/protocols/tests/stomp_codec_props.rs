//! Property tests of the STOMP codec: encode/decode round trips per version, invariance under
//! any split of the input, and hostile input (random and mutated streams) that must never
//! panic, never buffer past the frame cap, and fail the same way however it is chunked.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use protocols::stomp::{
    encode, Command, DecodeError, Decoded, Decoder, Frame, Headers, Limits, Version,
};

// ---------------------------------------------------------------------------------------------
// Generators

fn octet() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(vec![b'\n', b'\r', b':', b'\\', b' ', b'\t', 0, b'c', b'n', b'r']),
        6 => any::<u8>(),
    ]
}

fn octets(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(octet(), 0..max)
}

fn header_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::sample::select(vec![
            "destination", "content-type", "receipt", "id", "ack", "content-length", "x-user",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        3 => octets(10),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

fn version() -> impl Strategy<Value = Version> {
    prop::sample::select(Version::ALL.to_vec())
}

fn frame() -> impl Strategy<Value = Frame> {
    sized_frame(6, 16, 48)
}

/// Frames of up to `headers` headers, `value`-byte values and `body`-byte bodies.
fn sized_frame(headers: usize, value: usize, body: usize) -> impl Strategy<Value = Frame> {
    (
        command(),
        prop::collection::vec((header_name(), octets(value)), 0..headers),
        prop_oneof![2 => Just(Vec::new()), 3 => octets(body)],
    )
        .prop_map(|(command, headers, body)| {
            let mut frame = Frame::new(command).with_body(body);
            for (name, value) in headers {
                frame.headers.push(name, value);
            }
            frame
        })
}

// ---------------------------------------------------------------------------------------------
// An independent model of what the encoder keeps and the decoder gives back.

fn raw_mode(command: Command, version: Version) -> bool {
    version == Version::V1_0
        || matches!(
            command,
            Command::Connect | Command::Stomp | Command::Connected
        )
}

fn representable(command: Command, version: Version, name: &[u8], value: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    if raw_mode(command, version) {
        let eol = |s: &[u8]| s.contains(&b'\n') || s.contains(&b'\r');
        return !eol(name) && !eol(value) && !name.contains(&b':');
    }
    match version {
        Version::V1_1 => !name.contains(&b'\r') && !value.contains(&b'\r'),
        _ => true,
    }
}

/// The frame a peer decodes from `encode(frame, version)`, and how many headers were dropped.
fn expected(frame: &Frame, version: Version) -> (Frame, usize) {
    let needs_length = !frame.body.is_empty()
        || matches!(
            frame.command,
            Command::Send | Command::Message | Command::Error
        );
    let length = || Bytes::from(frame.body.len().to_string());
    let mut headers = Headers::new();
    let mut dropped = 0;
    let mut length_written = false;
    for h in &frame.headers {
        if h.name == b"content-length" {
            if needs_length && !length_written {
                headers.push("content-length", length());
                length_written = true;
            }
            continue;
        }
        if !representable(frame.command, version, h.name, h.value) {
            dropped += 1;
            continue;
        }
        let mut value = h.value;
        if version == Version::V1_0 {
            let blanks = value
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
            value = &value[blanks..];
        }
        headers.push(
            Bytes::copy_from_slice(h.name),
            Bytes::copy_from_slice(value),
        );
    }
    if needs_length && !length_written {
        headers.push("content-length", length());
    }
    let decoded = Frame {
        command: frame.command,
        headers,
        body: frame.body.clone(),
    };
    (decoded, dropped)
}

// ---------------------------------------------------------------------------------------------
// Driving the decoder

/// Everything a decoder produced from a stream.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Frame>,
    beats: usize,
    error: Option<DecodeError>,
    /// Bytes of an incomplete frame left in the buffer at the end.
    pending: usize,
}

fn small_limits() -> Limits {
    Limits {
        max_frame_size: 512,
        max_pre_connect_frame_size: 256,
        max_body_size: 128,
        max_headers: 6,
        max_header_line: 48,
        max_command_line: 32,
    }
}

fn decoder(limits: Limits, version: Option<Version>) -> Decoder {
    let mut d = Decoder::new(limits);
    if let Some(v) = version {
        d.set_version(v);
    }
    d
}

/// Feed `chunks` in order, checking the invariants every decoder answer must hold.
fn feed<'a>(mut d: Decoder, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let limits = *d.limits();
    let cap = match d.version() {
        None => limits.max_pre_connect_frame_size,
        Some(_) => limits.max_frame_size,
    };
    let mut out = Outcome {
        frames: Vec::new(),
        beats: 0,
        error: None,
        pending: 0,
    };
    let mut buf = BytesMut::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(Decoded::Frame(f))) => {
                    assert!(f.headers.len() <= limits.max_headers);
                    assert!(f.body.len() <= limits.max_body_size);
                    out.frames.push(f);
                }
                Ok(Some(Decoded::HeartBeat)) => out.beats += 1,
                Ok(None) => {
                    assert!(buf.len() <= cap, "buffered {} > cap {cap}", buf.len());
                    break;
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out.pending = buf.len();
    out
}

fn whole(limits: Limits, version: Option<Version>, input: &[u8]) -> Outcome {
    feed(decoder(limits, version), [input])
}

fn bytewise(limits: Limits, version: Option<Version>, input: &[u8]) -> Outcome {
    feed(decoder(limits, version), input.chunks(1))
}

fn split_at(limits: Limits, version: Option<Version>, input: &[u8], at: usize) -> Outcome {
    let (a, b) = input.split_at(at);
    feed(decoder(limits, version), [a, b])
}

fn chunked(limits: Limits, version: Option<Version>, input: &[u8], sizes: &[usize]) -> Outcome {
    let mut chunks = Vec::new();
    let mut rest = input;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(size.clamp(1, rest.len()));
        chunks.push(a);
        rest = b;
    }
    feed(decoder(limits, version), chunks)
}

fn encoded(frames: &[(Frame, Vec<u8>)], version: Version) -> Vec<u8> {
    let mut buf = BytesMut::new();
    for (frame, noise) in frames {
        buf.extend_from_slice(noise);
        let _ = encode(frame, version, &mut buf);
    }
    buf.to_vec()
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\0"]), 0..3)
        .prop_map(|parts| parts.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), octet()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<Index>(), octet()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Delete),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
            Mutation::Delete(i) => {
                bytes.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        }
    }
    bytes
}

fn any_version() -> impl Strategy<Value = Option<Version>> {
    prop_oneof![Just(None), version().prop_map(Some)]
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn parse_of_serialize_is_identity(frame in frame(), version in version()) {
        let (want, want_dropped) = expected(&frame, version);
        let mut buf = BytesMut::new();
        let written = encode(&frame, version, &mut buf);
        prop_assert_eq!(written.dropped_headers, want_dropped);
        let got = whole(Limits::default(), Some(version), &buf);
        prop_assert_eq!(got.error, None);
        prop_assert_eq!(got.pending, 0);
        prop_assert_eq!(got.beats, 1, "the LF after the NUL");
        prop_assert_eq!(got.frames, vec![want.clone()]);
        // The decoded frame is a fixed point: it survives another round trip unchanged.
        let mut again = BytesMut::new();
        let written = encode(&want, version, &mut again);
        prop_assert_eq!(written.dropped_headers, 0);
        let got = whole(Limits::default(), Some(version), &again);
        prop_assert_eq!(got.frames, vec![want]);
    }

    #[test]
    fn any_split_parses_the_same(
        frames in prop::collection::vec((frame(), noise()), 1..4),
        version in version(),
    ) {
        let input = encoded(&frames, version);
        let reference = whole(Limits::default(), Some(version), &input);
        prop_assert_eq!(reference.error.clone(), None);
        prop_assert_eq!(reference.frames.len(), frames.len());
        for at in 0..=input.len() {
            let split = split_at(Limits::default(), Some(version), &input, at);
            prop_assert_eq!(&split, &reference, "split at {}", at);
        }
        prop_assert_eq!(bytewise(Limits::default(), Some(version), &input), reference);
    }

    #[test]
    fn mutated_streams_fail_the_same_however_chunked(
        frames in prop::collection::vec((frame(), noise()), 1..4),
        encode_as in version(),
        decode_as in any_version(),
        mutations in prop::collection::vec(mutation(), 1..6),
        sizes in prop::collection::vec(1usize..40, 1..8),
    ) {
        let input = mutate(encoded(&frames, encode_as), &mutations);
        let reference = whole(small_limits(), decode_as, &input);
        prop_assert_eq!(&bytewise(small_limits(), decode_as, &input), &reference);
        prop_assert_eq!(&chunked(small_limits(), decode_as, &input, &sizes), &reference);
    }

    #[test]
    fn oversized_frames_fail_the_same_however_chunked(
        frames in prop::collection::vec((sized_frame(10, 64, 300), noise()), 1..4),
        encode_as in version(),
        decode_as in any_version(),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let input = encoded(&frames, encode_as);
        let reference = whole(small_limits(), decode_as, &input);
        prop_assert_eq!(&bytewise(small_limits(), decode_as, &input), &reference);
        prop_assert_eq!(&chunked(small_limits(), decode_as, &input, &sizes), &reference);
    }

    #[test]
    fn random_bytes_never_panic_or_overbuffer(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        decode_as in any_version(),
        sizes in prop::collection::vec(1usize..300, 1..8),
    ) {
        let reference = whole(small_limits(), decode_as, &input);
        prop_assert_eq!(&chunked(small_limits(), decode_as, &input, &sizes), &reference);
    }

    #[test]
    fn stomp_like_noise_never_panics(
        parts in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                &b"SEND\n"[..], b"MESSAGE\r\n", b"CONNECT\n", b"content-length:", b"4", b"99999",
                b"-1", b"\n", b"\r\n", b"\r", b"\0", b":", b"\\", b"\\c", b"\\r", b"\\t",
                b"destination:/queue/a\n", b"x:y\n", b"\n\n",
            ]).prop_map(|s| s.to_vec()),
            octets(8),
        ], 0..64),
        decode_as in any_version(),
        sizes in prop::collection::vec(1usize..20, 1..8),
    ) {
        let input = parts.concat();
        let reference = whole(small_limits(), decode_as, &input);
        prop_assert_eq!(&bytewise(small_limits(), decode_as, &input), &reference);
        prop_assert_eq!(&chunked(small_limits(), decode_as, &input, &sizes), &reference);
    }
}

#[test]
fn oversized_content_length_fails_before_the_body_is_sent() {
    // The decoder answers as soon as the headers end: the listener never waits for (or
    // buffers) the announced gigabyte.
    let out = whole(
        Limits::default(),
        Some(Version::V1_2),
        b"SEND\ndestination:/queue/a\ncontent-length:1073741824\n\n",
    );
    assert!(matches!(out.error, Some(DecodeError::LimitExceeded { .. })));
}
