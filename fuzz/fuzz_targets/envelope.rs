//! The envelope encoding (cluster and durable storage form): any bytes decode or fail without panicking, and a
//! decoded envelope encodes to bytes that decode to the same envelope.
#![no_main]

use bytes::Bytes;
use core_bus::encoding::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = decode(Bytes::copy_from_slice(data)) {
        let again = decode(encode(&envelope)).expect("an encoded envelope decodes");
        assert_eq!(encode(&again), encode(&envelope));
    }
});
