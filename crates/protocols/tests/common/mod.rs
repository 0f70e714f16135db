//! Helpers shared by the integration tests: the recorded wire transcripts, and origins on the bus.
#![allow(dead_code)]

use std::path::PathBuf;

use core_bus::{ConnectionId, Origin, Protocol};
use serde_json::Value;

/// The recorded transcripts, inside this crate.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
}

/// Every line of the JSONL transcript `name` (a path below [`fixtures_dir`]), header included.
pub fn transcript_lines(name: &str) -> Vec<Value> {
    let path = fixtures_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    text.lines()
        .map(|line| serde_json::from_str(line).expect("JSONL line"))
        .collect()
}

/// The bytes a string of hex digit pairs spells.
pub fn unhex(text: &str) -> Vec<u8> {
    assert_eq!(text.len() % 2, 0, "odd hex length");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// The origin of a message from a new connection of `protocol`.
pub fn origin(protocol: Protocol) -> Origin {
    Origin {
        protocol,
        connection: ConnectionId::next(),
    }
}
