//! Loom hello decoder: any bytes, split anywhere, never panic; a decoded hello re-encodes to bytes that decode to
//! the same hello (not always the bytes it took: non-minimal uvarints are accepted and written minimal).
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
        let before = buf.len();
        match Hello::decode(&mut buf, &limits) {
            Ok(Some(hello)) => {
                let taken = before - buf.len();
                let mut again = BytesMut::new();
                hello.encode(&mut again);
                assert!(again.len() <= taken);
                let decoded = Hello::decode(&mut again, &limits);
                assert!(matches!(decoded, Ok(Some(ref d)) if *d == hello));
                assert!(again.is_empty());
                return;
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let _ = Hello::decode_eof(&mut buf, &limits);
});
