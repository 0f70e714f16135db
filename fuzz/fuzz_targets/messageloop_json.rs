//! MessageLoop JSON (protojson) decoder for G0, G1, G2 and auto-detection: any text frames never panic, a
//! connection's generation settles as it would on the wire, and whatever the direct readers of the plain shape
//! read (a G2 publish in gatewayd, a G2 publication or publish ack in the client) is what the protojson mapping
//! reads.
#![no_main]

use gatewayd_fuzz::pick;
use libfuzzer_sys::fuzz_target;
use protocols::messageloop::codec::pb::messageloop::client::v2::{InboundMessage, OutboundMessage};
use protocols::messageloop::codec::{json, publication_read, publish_json};
use protocols::messageloop::{Encoding, G2Wire, Generation, GenerationSetting, Wire, WsCodec};

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
            Ok(text) => {
                if let Some(direct) = publish_json::publish(text) {
                    let general = json::from_slice::<InboundMessage>(frame).map(G2Wire::inbound);
                    assert_eq!(general.ok(), Some(Ok(direct)));
                }
                if let Some(direct) = publication_read::read(text) {
                    assert_eq!(
                        json::from_slice::<OutboundMessage>(frame).ok(),
                        Some(direct.generated())
                    );
                }
                codec.decode_text(text)
            }
            Err(_) => codec.decode(frame),
        };
    }
});
