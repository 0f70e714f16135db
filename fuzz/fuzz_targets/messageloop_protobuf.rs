//! MessageLoop binary protobuf decoder for G0, G1, G2 and auto-detection: any binary frames never panic, and a
//! connection's generation settles as it would on the wire.
#![no_main]

use gatewayd_fuzz::pick;
use libfuzzer_sys::fuzz_target;
use protocols::messageloop::{Encoding, Generation, GenerationSetting, WsCodec};

fuzz_target!(|data: &[u8]| {
    let (setting, data) = pick(data, 4);
    let setting = match setting {
        0 => GenerationSetting::Auto,
        1 => GenerationSetting::Fixed(Generation::G0),
        2 => GenerationSetting::Fixed(Generation::G1),
        _ => GenerationSetting::Fixed(Generation::G2),
    };
    let mut codec = WsCodec::new(Encoding::Protobuf, setting);
    // Frames as <length byte><bytes>: a later frame is read with what the earlier ones settled.
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (frame, tail) = tail.split_at(usize::from(len).min(tail.len()));
        let _ = codec.decode(frame);
        rest = tail;
    }
});
