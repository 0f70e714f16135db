//! MessageLoop binary protobuf decoder for G0, G1, G2 and auto-detection: any binary frames never panic, a
//! connection's generation settles as it would on the wire, and whatever the direct reader of a G2 publish reads
//! is what prost's decoders and the G2 conversion read.
#![no_main]

use gatewayd_fuzz::pick;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use protocols::messageloop::codec::pb::messageloop::client::v2::InboundMessage;
use protocols::messageloop::codec::publish_pb;
use protocols::messageloop::{Encoding, G2Wire, Generation, GenerationSetting, Wire, WsCodec};

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
        if let Some(direct) = publish_pb::publish(frame) {
            let general = InboundMessage::decode(frame).map(G2Wire::inbound);
            assert_eq!(general, Ok(Ok(direct)));
        }
        let _ = codec.decode(frame);
        rest = tail;
    }
});
