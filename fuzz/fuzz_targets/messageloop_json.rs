//! MessageLoop JSON (protojson) decoder for G0, G1, G2 and auto-detection: any text frames never panic, and a
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
    let mut codec = WsCodec::new(Encoding::Json, setting);
    // Frames separated by NUL: a later frame is read with what the earlier ones settled. A text frame is UTF-8 (the
    // WebSocket layer checks), anything else arrives as a binary frame.
    for frame in data.split(|&b| b == 0) {
        let _ = match std::str::from_utf8(frame) {
            Ok(text) => codec.decode_text(text),
            Err(_) => codec.decode(frame),
        };
    }
});
