//! The STOMP decoder: line endings, escapes per version, content-length bodies, limits, errors, and partial input.

use super::*;

fn decoder(version: Option<Version>) -> Decoder {
    let mut d = Decoder::default();
    if let Some(v) = version {
        d.set_version(v);
    }
    d
}

/// Decode everything in `input`, returning frames, the heart-beat count and the error.
fn run(d: &mut Decoder, input: &[u8]) -> (Vec<Frame>, usize, Option<DecodeError>, BytesMut) {
    let mut buf = BytesMut::from(input);
    let mut frames = Vec::new();
    let mut beats = 0;
    loop {
        match d.decode(&mut buf) {
            Ok(Some(Decoded::Frame(f))) => frames.push(f),
            Ok(Some(Decoded::HeartBeat)) => beats += 1,
            Ok(None) => return (frames, beats, None, buf),
            Err(e) => return (frames, beats, Some(e), buf),
        }
    }
}

fn one(version: Option<Version>, input: &[u8]) -> Frame {
    let (mut frames, _, error, rest) = run(&mut decoder(version), input);
    assert_eq!(error, None);
    assert!(rest.is_empty(), "left over: {rest:?}");
    assert_eq!(frames.len(), 1);
    frames.remove(0)
}

fn error(version: Option<Version>, input: &[u8]) -> DecodeError {
    run(&mut decoder(version), input)
        .2
        .expect("expected an error")
}

fn headers(frame: &Frame) -> Vec<(&[u8], &[u8])> {
    frame.headers.iter().map(|h| (h.name, h.value)).collect()
}

#[test]
fn decodes_a_simple_frame() {
    let f = one(None, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    assert_eq!(f.command, Command::Connect);
    assert_eq!(
        headers(&f),
        [(&b"accept-version"[..], &b"1.2"[..]), (b"host", b"/")]
    );
    assert!(f.body.is_empty());
}

#[test]
fn crlf_line_endings() {
    let f = one(Some(Version::V1_2), b"SEND\r\ndestination:/q/a\r\n\r\nhi\0");
    assert_eq!(headers(&f), [(&b"destination"[..], &b"/q/a"[..])]);
    assert_eq!(&f.body[..], b"hi");
}

#[test]
fn heart_beats_between_frames() {
    let (frames, beats, error, _) = run(
        &mut decoder(Some(Version::V1_2)),
        b"\n\r\n\0DISCONNECT\n\n\0\n\n",
    );
    assert_eq!(error, None);
    assert_eq!(frames.len(), 1);
    assert_eq!(beats, 5);
}

#[test]
fn bare_cr_is_fatal() {
    assert_eq!(error(None, b"\rX"), DecodeError::BareCr);
    assert_eq!(error(None, b"SEND\rX"), DecodeError::BareCr);
    assert_eq!(error(None, b"SEND\na:b\rc\n\n\0"), DecodeError::BareCr);
}

#[test]
fn content_length_body_may_hold_nuls() {
    let f = one(
        Some(Version::V1_2),
        b"SEND\ncontent-length:5\ndestination:/q\n\na\0b\0c\0",
    );
    assert_eq!(&f.body[..], b"a\0b\0c");
}

#[test]
fn content_length_must_be_followed_by_nul() {
    assert_eq!(
        error(Some(Version::V1_2), b"SEND\ncontent-length:2\n\nabc\0"),
        DecodeError::MissingNul
    );
}

#[test]
fn content_length_is_validated_before_the_body_arrives() {
    let v = Some(Version::V1_2);
    for bad in [&b"-1"[..], b"", b"abc", b"1 2", b"+5", b"0x10"] {
        let mut input = b"SEND\ncontent-length:".to_vec();
        input.extend_from_slice(bad);
        input.extend_from_slice(b"\n\n");
        assert!(
            matches!(error(v, &input), DecodeError::InvalidContentLength(_)),
            "{bad:?}"
        );
    }
    // Too big for the body cap, for usize, and for the frame cap: fails with no body.
    for big in [&b"4194305"[..], b"99999999999999999999999999"] {
        let mut input = b"SEND\ncontent-length:".to_vec();
        input.extend_from_slice(big);
        input.extend_from_slice(b"\n\n");
        assert_eq!(
            error(v, &input),
            DecodeError::LimitExceeded {
                limit: Limit::BodySize,
                max: Limits::DEFAULT.max_body_size
            }
        );
    }
    assert_eq!(
        error(v, b"SEND\ncontent-length:4194304\n\n"),
        DecodeError::LimitExceeded {
            limit: Limit::FrameSize,
            max: Limits::DEFAULT.max_frame_size
        }
    );
    // Blanks around the number are tolerated.
    let f = one(v, b"SEND\ncontent-length: 2 \n\nab\0");
    assert_eq!(&f.body[..], b"ab");
}

#[test]
fn first_content_length_wins() {
    let f = one(
        Some(Version::V1_2),
        b"SEND\ncontent-length:1\ncontent-length:5\n\na\0",
    );
    assert_eq!(&f.body[..], b"a");
    assert_eq!(f.headers.len(), 2);
}

#[test]
fn repeated_headers_are_kept_in_order() {
    let f = one(Some(Version::V1_2), b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
    assert_eq!(f.header("foo").unwrap(), b"World");
    assert_eq!(f.headers.len(), 2);
}

#[test]
fn escaping_per_version() {
    let input = b"SEND\na\\cb:x\\ny\\\\z\\rw\n\n\0";
    let raw = one(Some(Version::V1_0), input);
    assert_eq!(headers(&raw), [(&b"a\\cb"[..], &b"x\\ny\\\\z\\rw"[..])]);
    let v11 = one(Some(Version::V1_1), input);
    assert_eq!(headers(&v11), [(&b"a:b"[..], &b"x\ny\\z\rw"[..])]);
    let v12 = one(Some(Version::V1_2), input);
    assert_eq!(headers(&v12), [(&b"a:b"[..], &b"x\ny\\z\rw"[..])]);
    // Before negotiation nothing is unescaped.
    let none = one(None, input);
    assert_eq!(headers(&none), headers(&raw));
}

#[test]
fn connect_frames_are_never_unescaped() {
    let f = one(Some(Version::V1_2), b"STOMP\nlogin:a\\tb\n\n\0");
    assert_eq!(f.header("login").unwrap(), b"a\\tb");
    let f = one(Some(Version::V1_2), b"CONNECTED\nserver:x\\c\n\n\0");
    assert_eq!(f.header("server").unwrap(), b"x\\c");
}

#[test]
fn unknown_escape_is_fatal_after_1_0() {
    for v in [Version::V1_1, Version::V1_2] {
        assert_eq!(
            error(Some(v), b"SEND\na:b\\t\n\n\0"),
            DecodeError::InvalidEscape
        );
        assert_eq!(
            error(Some(v), b"SEND\na:b\\\n\n\0"),
            DecodeError::InvalidEscape
        );
    }
}

#[test]
fn version_1_0_trims_leading_blanks_and_splits_at_first_colon() {
    let f = one(
        Some(Version::V1_0),
        b"SEND\nlogin: \tguest \nx-h:a:b\nblank:  \n\n\0",
    );
    assert_eq!(
        headers(&f),
        [
            (&b"login"[..], &b"guest "[..]),
            (b"x-h", b"a:b"),
            (b"blank", b"")
        ]
    );
    let f = one(Some(Version::V1_2), b"SEND\nlogin: guest\n\n\0");
    assert_eq!(f.header("login").unwrap(), b" guest");
}

#[test]
fn malformed_header_lines() {
    assert_eq!(
        error(None, b"SEND\nnocolon\n\n\0"),
        DecodeError::HeaderWithoutColon
    );
    assert_eq!(
        error(None, b"SEND\n:value\n\n\0"),
        DecodeError::EmptyHeaderName
    );
    // An empty value is fine.
    let f = one(None, b"SEND\nname:\n\n\0");
    assert_eq!(f.header("name").unwrap(), b"");
}

#[test]
fn unknown_commands_fail_fast() {
    assert_eq!(
        error(None, b"send\n\n\0"),
        DecodeError::UnknownCommand("s".into())
    );
    assert_eq!(
        error(None, b"GET / HTTP/1.1\r\n"),
        DecodeError::UnknownCommand("G".into())
    );
    assert_eq!(
        error(None, b"SENDX"),
        DecodeError::UnknownCommand("SENDX".into())
    );
    assert_eq!(
        error(None, b"SEN\n\n\0"),
        DecodeError::UnknownCommand("SEN".into())
    );
    assert_eq!(error(None, b"\x16\x03\x01"), DecodeError::TlsHandshake);
    // A valid prefix waits for more.
    let (_, _, e, rest) = run(&mut decoder(None), b"UNSUBSCRI");
    assert_eq!(e, None);
    assert_eq!(&rest[..], b"UNSUBSCRI");
}

#[test]
fn limits_name_the_limit() {
    let limits = Limits {
        max_frame_size: 32,
        max_pre_connect_frame_size: 32,
        max_body_size: 8,
        max_headers: 2,
        max_header_line: 16,
        max_command_line: 4,
    };
    let decode = |input: &[u8]| {
        let mut d = Decoder::new(limits);
        d.set_version(Version::V1_2);
        run(&mut d, input)
    };
    let check = |input: &[u8], limit: Limit, max: usize| {
        assert_eq!(
            decode(input).2,
            Some(DecodeError::LimitExceeded { limit, max }),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    };
    check(b"SUBSCRIBE\n\n\0", Limit::CommandLine, 4);
    check(b"SEND\na:1\nb:2\nc:3\n\n\0", Limit::HeaderCount, 2);
    check(b"SEND\nabcdefgh:ijklmnopq\n\n\0", Limit::HeaderLine, 16);
    check(b"SEND\n\n123456789\0", Limit::BodySize, 8);
    check(b"SEND\ncontent-length:9\n\n", Limit::BodySize, 8);
    check(
        b"SEND\nabcdefgh:1\nbbbbbbbb:2\n\n1234\0",
        Limit::FrameSize,
        32,
    );
    check(b"SEND\ncontent-length:8\nb:2\n\n", Limit::FrameSize, 32);
    // Exactly at every cap is fine: 16-byte line, 2 headers, 8-byte body, 32-byte frame.
    let (frames, _, e, _) = decode(b"SEND\nabcdefgh:1234567\n\n12345678\0");
    assert_eq!(e, None);
    assert_eq!(frames.len(), 1);
    let (frames, _, e, _) = decode(b"SEND\ncontent-length:3\n\n1\x002\0");
    assert_eq!(e, None);
    assert_eq!(frames.len(), 1);
    let (frames, _, e, _) = decode(b"SEND\nabcdefgh:1\nbbbbbbbb:2\n\n123\0");
    assert_eq!(e, None);
    assert_eq!(frames.len(), 1);
}

#[test]
fn frame_without_nul_stops_at_the_frame_cap() {
    let mut d = Decoder::default();
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    buf.extend_from_slice(&vec![b'x'; Limits::DEFAULT.max_pre_connect_frame_size - 6]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"x");
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::LimitExceeded {
            limit: Limit::FrameSize,
            max: Limits::DEFAULT.max_pre_connect_frame_size
        })
    );
}

#[test]
fn pre_connect_cap_applies_until_version_is_set() {
    let body = vec![b'x'; 70 * 1024];
    let mut input = format!("SEND\ncontent-length:{}\n\n", body.len()).into_bytes();
    input.extend_from_slice(&body);
    input.push(0);
    assert!(matches!(
        error(None, &input),
        DecodeError::LimitExceeded {
            limit: Limit::FrameSize,
            ..
        }
    ));
    assert_eq!(one(Some(Version::V1_2), &input).body.len(), body.len());
}

#[test]
fn errors_are_sticky() {
    let mut d = Decoder::default();
    let mut buf = BytesMut::from(&b"BOGUS\n\n\0"[..]);
    let first = d.decode(&mut buf);
    assert!(first.is_err());
    let mut fresh = BytesMut::from(&b"SEND\n\n\0"[..]);
    assert_eq!(d.decode(&mut fresh), first);
}

#[test]
fn partial_input_waits_and_keeps_the_next_frame() {
    let mut d = Decoder::default();
    let mut buf = BytesMut::from(&b"CONNECT\nlogin:guest\n"[..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"\n\0SUBSCRIBE\nid:1\n\n\0SE");
    let Ok(Some(Decoded::Frame(f))) = d.decode(&mut buf) else {
        panic!("no CONNECT");
    };
    assert_eq!(f.command, Command::Connect);
    d.set_version(Version::V1_2);
    let Ok(Some(Decoded::Frame(f))) = d.decode(&mut buf) else {
        panic!("no SUBSCRIBE");
    };
    assert_eq!(f.command, Command::Subscribe);
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], b"SE");
}

#[test]
fn body_without_content_length_on_any_frame_is_kept() {
    let f = one(Some(Version::V1_2), b"SUBSCRIBE\nid:1\n\nstray\0");
    assert_eq!(&f.body[..], b"stray");
}
