//! STOMP frame decoder: any bytes, split anywhere, before and after CONNECTED, never panic; a frame decoded
//! re-encodes.
#![no_main]

use bytes::BytesMut;
use gatewayd_fuzz::{chunked, pick};
use libfuzzer_sys::fuzz_target;
use protocols::stomp::{Decoded, Decoder, Limits, Version};

fuzz_target!(|data: &[u8]| {
    let (version, data) = pick(data, 4);
    let mut decoder = Decoder::new(Limits::default());
    match version {
        1 => decoder.set_version(Version::V1_0),
        2 => decoder.set_version(Version::V1_1),
        3 => decoder.set_version(Version::V1_2),
        _ => {}
    }
    let mut buf = BytesMut::new();
    for chunk in chunked(data) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Frame(frame))) => {
                    let mut out = BytesMut::new();
                    let version = decoder.version().unwrap_or(Version::V1_2);
                    // Only that encoding does not panic is checked: headers the version cannot carry are
                    // left out and counted in what `encode` returns.
                    let _written = protocols::stomp::encode(&frame, version, &mut out);
                }
                Ok(Some(Decoded::HeartBeat)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
