//! Loom producer stream decoder (message headers, keys, chunks, reassembly): any bytes, split anywhere, never
//! panic, and every assembled message stays within the body limit.
#![no_main]

use bytes::BytesMut;
use gatewayd_fuzz::chunked;
use libfuzzer_sys::fuzz_target;
use protocols::loom::{Limits, MessageAssembler};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut assembler = MessageAssembler::new(&limits);
    let mut buf = BytesMut::new();
    for chunk in chunked(data) {
        buf.extend_from_slice(chunk);
        loop {
            match assembler.decode(&mut buf) {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    while let Ok(Some(_)) = assembler.decode_eof(&mut buf) {}
});
