//! Replays the byte-exact STOMP transcripts of `tests/fixtures/wire/stomp/` through the
//! decoder: the raw chunks of each connection and direction must decode to exactly the frames
//! the transcript lists (command, headers in wire order with duplicates, body), whether the
//! bytes come in the recorded chunks or one at a time. The session's version switch is
//! reproduced: after CONNECT/STOMP (client side) or CONNECTED (server side) the decoder gets
//! the negotiated version. The other way, our encoder must write each recorded server frame as the
//! reference server did, with that version's header escaping.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::BytesMut;
use common::*;
use protocols::stomp::{
    encode, negotiate, Command, Decoded, Decoder, Frame, HeartBeatPolicy, Limits, Version,
};
use serde_json::Value;

/// A frame as the transcript lists it.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    command: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl From<&Frame> for Listed {
    fn from(f: &Frame) -> Self {
        Listed {
            command: f.command.as_str().to_owned(),
            headers: f
                .headers
                .iter()
                .map(|h| (h.name.to_vec(), h.value.to_vec()))
                .collect(),
            body: f.body.to_vec(),
        }
    }
}

/// One direction of one connection.
#[derive(Default)]
struct Stream {
    chunks: Vec<Vec<u8>>,
    frames: Vec<Listed>,
}

fn load(path: &PathBuf) -> BTreeMap<(u64, String), Stream> {
    let text = std::fs::read_to_string(path).expect("read transcript");
    let mut streams: BTreeMap<(u64, String), Stream> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).expect("JSON line");
        let (Some(conn), Some(dir)) = (v["conn"].as_u64(), v["dir"].as_str()) else {
            continue;
        };
        let stream = streams.entry((conn, dir.to_owned())).or_default();
        if let Some(h) = v["hex"].as_str() {
            stream.chunks.push(unhex(h));
        } else if let Some(command) = v["stomp_command"].as_str() {
            let headers = v["stomp_headers"]
                .as_array()
                .expect("stomp_headers")
                .iter()
                .map(|pair| {
                    let s = |i: usize| pair[i].as_str().expect("header string").as_bytes().to_vec();
                    (s(0), s(1))
                })
                .collect();
            let body = match (v["body_text"].as_str(), v["body_hex"].as_str()) {
                (Some(t), _) => t.as_bytes().to_vec(),
                (None, Some(h)) => unhex(h),
                (None, None) => panic!("frame without body in {}", path.display()),
            };
            stream.frames.push(Listed {
                command: command.to_owned(),
                headers,
                body,
            });
        }
    }
    streams
}

/// Decode `chunks` in order, switching versions like the session would. Returns the frames
/// and the number of heart-beats.
fn replay(chunks: &[Vec<u8>], client_side: bool) -> (Vec<Frame>, usize) {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut beats = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(decoded) = decoder.decode(&mut buf).expect("transcript decodes") {
            let Decoded::Frame(frame) = decoded else {
                beats += 1;
                continue;
            };
            match frame.command {
                Command::Connect | Command::Stomp if client_side => {
                    let connect = negotiate(&frame, &HeartBeatPolicy::default())
                        .expect("transcript CONNECT negotiates");
                    decoder.set_version(connect.version);
                }
                Command::Connected if !client_side => {
                    let version = frame
                        .header("version")
                        .map(|v| Version::from_bytes(v).expect("known version"))
                        .unwrap_or(Version::V1_0);
                    decoder.set_version(version);
                }
                _ => {}
            }
            frames.push(frame);
        }
    }
    assert!(buf.is_empty(), "undecoded bytes left: {buf:?}");
    (frames, beats)
}

/// The streams of the transcript whose file name ends with `name`; `what` names it when it is missing.
fn load_named(name: &str, what: &str) -> BTreeMap<(u64, String), Stream> {
    let path = transcripts()
        .into_iter()
        .find(|p| p.ends_with(name))
        .expect(what);
    load(&path)
}

fn transcripts() -> Vec<PathBuf> {
    let dir = fixtures_dir().join("stomp");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_transcript_decodes_to_its_listed_frames() {
    let files = transcripts();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "stomp-goclient-refstomp.jsonl",
        "stomp10-rabbitmq.jsonl",
        "stomp11-rabbitmq.jsonl",
        "stomp12-rabbitmq.jsonl",
        "stomp12-rabbitmq-errors.jsonl",
        "stomp12-rabbitmq-heartbeat.jsonl",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
    for path in &files {
        let streams = load(path);
        let c2s_frames: usize = streams
            .iter()
            .filter(|((_, dir), _)| dir == "c2s")
            .map(|(_, s)| s.frames.len())
            .sum();
        assert!(c2s_frames > 0, "{}: no client frames", path.display());
        for ((conn, dir), stream) in &streams {
            let client_side = dir == "c2s";
            let (frames, _) = replay(&stream.chunks, client_side);
            let decoded: Vec<Listed> = frames.iter().map(Listed::from).collect();
            assert_eq!(
                decoded,
                stream.frames,
                "{} conn {conn} {dir}",
                path.display()
            );
            // The same bytes one at a time.
            let bytes: Vec<Vec<u8>> = stream
                .chunks
                .concat()
                .into_iter()
                .map(|b| vec![b])
                .collect();
            let (frames, _) = replay(&bytes, client_side);
            let decoded: Vec<Listed> = frames.iter().map(Listed::from).collect();
            assert_eq!(
                decoded,
                stream.frames,
                "{} conn {conn} {dir} bytewise",
                path.display()
            );
        }
    }
}

/// Our encoder writes every frame a reference server sent byte for byte as it did, with the escaping of the
/// negotiated version (none on CONNECTED and in 1.0), in the recorded header order, each frame found in order
/// in the recorded server bytes (heart-beat EOLs between frames aside). The seed server ends a frame with a
/// bare NUL where gatewayd, like RabbitMQ, adds an LF, which every client skips.
#[test]
fn server_frames_encode_to_the_recorded_bytes() {
    for path in transcripts() {
        let bare_nul = path.ends_with("stomp-goclient-refstomp.jsonl");
        for ((conn, dir), stream) in &load(&path) {
            if dir != "s2c" {
                continue;
            }
            let recorded = stream.chunks.concat();
            let (frames, _) = replay(&stream.chunks, false);
            let mut version = Version::V1_0;
            let mut at = 0;
            for frame in &frames {
                if frame.command == Command::Connected {
                    version = frame
                        .header("version")
                        .and_then(Version::from_bytes)
                        .unwrap_or(Version::V1_0);
                }
                let mut ours = BytesMut::new();
                let written = encode(frame, version, &mut ours);
                assert_eq!(written.dropped_headers, 0, "{}", path.display());
                if bare_nul {
                    assert_eq!(ours.last(), Some(&b'\n'));
                    ours.truncate(ours.len() - 1);
                }
                let found = recorded[at..]
                    .windows(ours.len())
                    .position(|window| window == &ours[..])
                    .unwrap_or_else(|| {
                        panic!(
                            "{} conn {conn}: {:?} not in the recorded bytes after {at}",
                            path.display(),
                            String::from_utf8_lossy(&ours)
                        )
                    });
                assert!(
                    recorded[at..at + found].iter().all(|b| *b == b'\n'),
                    "{} conn {conn}: only heart-beats before {:?}",
                    path.display(),
                    frame.command
                );
                at += found + ours.len();
            }
        }
    }
}

#[test]
fn seed_peer_connects_as_1_0_without_accept_version() {
    let streams = load_named("stomp-goclient-refstomp.jsonl", "seed transcript");
    let (frames, beats) = replay(&streams[&(1, "c2s".to_owned())].chunks, true);
    assert_eq!(frames[0].command, Command::Connect);
    assert!(frames[0].header("accept-version").is_none());
    let connect = negotiate(&frames[0], &HeartBeatPolicy::default()).unwrap();
    assert_eq!(connect.version, Version::V1_0);
    assert_eq!(connect.login.as_deref(), Some("guest"));
    assert_eq!(beats, 0, "the seed writes a bare NUL, no EOL");
    // The publisher's first SEND was split right after its command line.
    let (frames, _) = replay(&streams[&(2, "c2s".to_owned())].chunks, true);
    let sends: Vec<_> = frames
        .iter()
        .filter(|f| f.command == Command::Send)
        .collect();
    assert_eq!(sends.len(), 2);
    assert!(sends.iter().all(|f| &f.body[..] == b"hello-stomp"));
}

#[test]
fn heart_beat_transcript_counts_client_beats() {
    let streams = load_named("stomp12-rabbitmq-heartbeat.jsonl", "heart-beat transcript");
    let (frames, beats) = replay(&streams[&(1, "c2s".to_owned())].chunks, true);
    let connect = negotiate(&frames[0], &HeartBeatPolicy::default()).unwrap();
    assert_eq!(connect.version, Version::V1_2);
    assert_eq!(connect.heart_beat.server.header_value(), "1000,1000");
    assert_eq!(beats, 3, "stomp.py sent three LF heart-beats");
    // RabbitMQ: six LF beats plus the LF after each of its two frames.
    let (_, beats) = replay(&streams[&(1, "s2c".to_owned())].chunks, false);
    assert_eq!(beats, 8);
}
