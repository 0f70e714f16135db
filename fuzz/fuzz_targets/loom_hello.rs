//! Loom hello decoder: any bytes, split anywhere, never panic; a decoded hello re-encodes to the bytes it took.
#![no_main]

use bytes::BytesMut;
use gatewayd_fuzz::chunked;
use libfuzzer_sys::fuzz_target;
use protocols::loom::{Hello, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    for chunk in chunked(data) {
        buf.extend_from_slice(chunk);
        let before = buf.clone();
        match Hello::decode(&mut buf, &limits) {
            Ok(Some(hello)) => {
                let taken = before.len() - buf.len();
                let mut again = BytesMut::new();
                hello.encode(&mut again);
                assert_eq!(&again[..], &before[..taken]);
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let _ = Hello::decode_eof(&mut buf, &limits);
});
