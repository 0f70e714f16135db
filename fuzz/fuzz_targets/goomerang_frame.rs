//! Goomerang frame decoder (protobuf wrapper, command payloads, headers, topic and kind checks): any binary
//! WebSocket message never panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocols::goomerang::{decode, Limits};

fuzz_target!(|data: &[u8]| {
    let _ = decode(Bytes::copy_from_slice(data), &Limits::default());
});
