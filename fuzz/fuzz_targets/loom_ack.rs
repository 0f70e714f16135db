//! Loom consumer stream decoder (ack frames, unknown frames, uvarints): any bytes, split anywhere, never panic;
//! a decoded frame re-encodes to the bytes it took.
#![no_main]

use bytes::BytesMut;
use gatewayd_fuzz::chunked;
use libfuzzer_sys::fuzz_target;
use protocols::loom::ConsumerFrame;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::new();
    for chunk in chunked(data) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.clone();
            match ConsumerFrame::decode(&mut buf) {
                Ok(Some(frame)) => {
                    let taken = before.len() - buf.len();
                    let mut again = BytesMut::new();
                    frame.encode(&mut again);
                    // Uvarints may be written longer than needed; the value is what must survive.
                    let mut reread = again.clone();
                    assert_eq!(ConsumerFrame::decode(&mut reread), Ok(Some(frame)));
                    assert!(again.len() <= taken);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
