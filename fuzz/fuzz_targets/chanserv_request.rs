//! chanserv requests: the length-prefixed request frame on a master stream, the request body (selector lines,
//! JSON selectors, `PUB`), each selector's topic pattern, and a frame channel item (plain or lz4): any bytes never
//! panic.
#![no_main]

use bytes::Bytes;
use gatewayd_fuzz::chunked;
use libfuzzer_sys::fuzz_target;
use protocols::chanserv::channel::RequestReader;
use protocols::chanserv::codec::frame::{decode_item, FrameDecoder};
use protocols::chanserv::codec::selector::{self, Request};
use protocols::chanserv::bridge::selector_pattern;

fuzz_target!(|data: &[u8]| {
    let _ = decode_item(Bytes::copy_from_slice(data), 1 << 16);
    check_body(Bytes::copy_from_slice(data));
    let mut reader = RequestReader::new(FrameDecoder::default());
    for chunk in chunked(data) {
        match reader.push(chunk) {
            Ok(Some(body)) => check_body(body),
            Ok(None) => {}
            Err(_) => return,
        }
    }
});

fn check_body(body: Bytes) {
    if let Ok(Request::Subscribe(selectors)) = selector::parse(body) {
        for selector in selectors {
            let _ = selector_pattern(&selector.pattern);
        }
    }
}
